/// Chooses `senderAddress` and decides `replyTo` (docs/acs-email-api.md §2.2 "Sender",
/// §2.5).
///
/// ACS sends only from a MailFrom address on a domain linked to the resource; anything else fails with
/// `InvalidSenderUserName` or `DomainNotLinked` (§1.8). So the gateway never passes an arbitrary `From`
/// through. In order:
/// 1. The first `From` mailbox, then the `Sender` mailbox, then the envelope MAIL FROM (not the null sender),
///    whichever first has a domain in ``TranslationPolicy/verifiedDomains`` (compared case-insensitively,
///    exact domain, no subdomains: ACS verifies domains one by one). The entry `*` accepts every domain; the
///    gateway uses it only for a dry run (outbox, no ACS configured), so that the outbox shows the request
///    the message would produce.
/// 2. Otherwise the configured ``TranslationPolicy/senderAddress``.
/// 3. Otherwise the message is rejected with `550 5.7.1`, never sent from a wrong address.
///
/// When the chosen sender is not the first `From` address (the sender was *replaced*), the original `From`
/// mailboxes become `replyTo`, so replies still reach the author, unless the message has its own `Reply-To`,
/// which always wins. Without replacement, `replyTo` is the message's `Reply-To`, or absent. An address ACS would
/// refuse (``ACSAddress``, e.g. `user2` with no domain) is dropped from `replyTo`: ACS refuses the whole request
/// for one such address, and losing a reply address is better than losing the message.
public enum SenderPolicy {
    /// The outcome: the address ACS sends from and the `replyTo` list (nil when absent).
    public struct Resolution: Sendable, Hashable {
        public var senderAddress: String
        public var replyTo: [EmailAddress]?
        /// Whether the sender differs from the message's first `From` address.
        public var replaced: Bool
        /// Reply addresses left out because ACS would refuse them, each with the reason.
        public var droppedReplyTo: [(address: String, reason: String)] = []

        public static func == (lhs: Resolution, rhs: Resolution) -> Bool {
            lhs.senderAddress == rhs.senderAddress && lhs.replyTo == rhs.replyTo && lhs.replaced == rhs.replaced
                && lhs.droppedReplyTo.map(\.address) == rhs.droppedReplyTo.map(\.address)
        }

        public func hash(into hasher: inout Hasher) {
            hasher.combine(senderAddress)
            hasher.combine(replyTo)
            hasher.combine(replaced)
            hasher.combine(droppedReplyTo.map(\.address))
        }
    }

    public static func resolve(
        from: [EmailAddress],
        sender: EmailAddress?,
        replyTo: [EmailAddress],
        envelopeMailFrom: String,
        configuredSender: String?,
        verifiedDomains: [String]
    ) -> Result<Resolution, TranslationRejection> {
        let verified = Set(verifiedDomains.map(AddressKey.normalizedDomain))
        let envelopeSender = AddressKey.stripped(envelopeMailFrom)
        let candidates = [from.first?.address, sender?.address, envelopeSender.isEmpty ? nil : envelopeSender]
        let chosen =
            candidates.lazy.compactMap { $0 }.map(AddressKey.stripped)
            .first { address in
                // "*" (any domain) is for dry runs only: the outbox without ACS, where no domain is verified.
                AddressKey.domain(of: address).map { verified.contains("*") || verified.contains($0) } ?? false
            }
            ?? configuredSender.map(AddressKey.stripped).flatMap { $0.isEmpty ? nil : $0 }
        guard let chosen else {
            let shown = from.first?.address ?? (envelopeSender.isEmpty ? "<>" : envelopeSender)
            let detail =
                verified.isEmpty
                ? "no sender address is configured and no verified domain is listed (From \(shown))"
                : "the domain of \(shown) is not a verified ACS domain and no sender address is configured"
            return .failure(.senderNotMappable(detail))
        }
        let replaced = from.first.map { AddressKey.key($0.address) != AddressKey.key(chosen) } ?? true
        let replyToList: [EmailAddress]
        if !replyTo.isEmpty {
            replyToList = replyTo
        } else if replaced {
            replyToList = from
        } else {
            replyToList = []
        }
        var cleaned: [EmailAddress] = []
        var dropped: [(address: String, reason: String)] = []
        for address in replyToList {
            let stripped = AddressKey.stripped(address.address)
            if let reason = ACSAddress.refusalReason(stripped) {
                dropped.append((stripped, reason))
            } else {
                cleaned.append(
                    EmailAddress(address: stripped, displayName: RecipientMapping.nonBlank(address.displayName)))
            }
        }
        return .success(
            Resolution(
                senderAddress: chosen, replyTo: cleaned.isEmpty ? nil : cleaned, replaced: replaced,
                droppedReplyTo: dropped))
    }
}
