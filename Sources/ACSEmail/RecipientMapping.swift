/// Maps envelope recipients onto `to`, `cc` and `bcc` (docs/acs-email-api.md §2.5).
///
/// - An envelope recipient whose address appears in the `To` header goes to `to`, with the header's display
///   name; one in `Cc` (and not in `To`) goes to `cc`; every other envelope recipient goes to `bcc`, without
///   a display name. This is how a Bcc recipient stays invisible: ACS never shows `bcc` to the others.
/// - Header addresses that are not envelope recipients are not sent to: the SMTP client decided who gets
///   the message (RFC 5321 §3.3), and a relaying MTA may have split one message into several envelopes.
/// - Addresses match when equal with the domain compared case-insensitively (``AddressKey``); the address
///   sent is the envelope's spelling, because that is where SMTP was asked to deliver.
/// - A recipient given twice in the envelope is sent to once (ACS would otherwise deliver twice).
/// - `to` is `[]` when no envelope recipient is in `To` (a Bcc-only message, or no `To` header);
///   `cc` and `bcc` are `nil` (omitted) when empty (§2.2 "Recipients").
public enum RecipientMapping {
    /// The ACS recipients for `envelopeRecipients`, given the addresses of the `To` and `Cc` headers.
    public static func map(
        envelopeRecipients: [String],
        toHeader: [EmailAddress],
        ccHeader: [EmailAddress]
    ) -> EmailRecipients {
        // The first header occurrence of an address decides its display name.
        var toByKey: [String: EmailAddress] = [:]
        for address in toHeader where toByKey[AddressKey.key(address.address)] == nil {
            toByKey[AddressKey.key(address.address)] = address
        }
        var ccByKey: [String: EmailAddress] = [:]
        for address in ccHeader where ccByKey[AddressKey.key(address.address)] == nil {
            ccByKey[AddressKey.key(address.address)] = address
        }
        var to: [EmailAddress] = []
        var cc: [EmailAddress] = []
        var bcc: [EmailAddress] = []
        var seen: Set<String> = []
        for recipient in envelopeRecipients {
            let address = AddressKey.stripped(recipient)
            let key = AddressKey.key(address)
            guard !address.isEmpty, seen.insert(key).inserted else {
                continue
            }
            if let header = toByKey[key] {
                to.append(EmailAddress(address: address, displayName: nonBlank(header.displayName)))
            } else if let header = ccByKey[key] {
                cc.append(EmailAddress(address: address, displayName: nonBlank(header.displayName)))
            } else {
                bcc.append(EmailAddress(address: address))
            }
        }
        return EmailRecipients(to: to, cc: cc.isEmpty ? nil : cc, bcc: bcc.isEmpty ? nil : bcc)
    }

    /// A display name worth sending: absent rather than empty or blank.
    static func nonBlank(_ name: String?) -> String? {
        guard let name, name.contains(where: { !$0.isWhitespace }) else {
            return nil
        }
        return name
    }
}
