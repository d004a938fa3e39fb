/// The SMTP envelope as the translation needs it: who sent (MAIL FROM) and who receives (RCPT TO).
///
/// The SMTP layer adapts its own envelope to this one. Recipients come from here, never from headers
/// (docs/design.md principle 3: envelope ≠ message; `Bcc:` headers never travel).
public struct Envelope: Sendable, Hashable, Codable {
    /// The reverse-path without angle brackets; `""` is the null sender (`MAIL FROM:<>`, RFC 5321 §4.5.5).
    public var mailFrom: String
    /// The forward-paths without angle brackets, in RCPT order.
    public var recipients: [String]

    public init(mailFrom: String, recipients: [String]) {
        self.mailFrom = mailFrom
        self.recipients = recipients
    }
}

/// Address comparison as the translation rules need it (recipients come from the envelope and are matched
/// against the header addresses).
///
/// The local part is compared exactly, because RFC 5321 §2.4 leaves its case to the receiving host; the
/// domain is compared case-insensitively (RFC 5321 §2.4), ignoring a trailing root dot.
enum AddressKey {
    /// A key under which two spellings of the same address are equal, e.g. `Jo@Example.COM` and
    /// `Jo@example.com`; `<>` around the address and surrounding spaces are ignored.
    static func key(_ address: String) -> String {
        let trimmed = stripped(address)
        guard let at = trimmed.lastIndex(of: "@") else {
            return trimmed
        }
        return String(trimmed[..<at]) + "@" + normalizedDomain(String(trimmed[trimmed.index(after: at)...]))
    }

    /// The lower-cased domain of `address` without a trailing dot, or nil when it has no `@domain`.
    static func domain(of address: String) -> String? {
        let trimmed = stripped(address)
        guard let at = trimmed.lastIndex(of: "@") else {
            return nil
        }
        let domain = normalizedDomain(String(trimmed[trimmed.index(after: at)...]))
        return domain.isEmpty ? nil : domain
    }

    static func normalizedDomain(_ domain: String) -> String {
        var lower = domain.lowercased()
        while lower.hasSuffix(".") {
            lower.removeLast()
        }
        return lower
    }

    /// The address without surrounding whitespace and angle brackets.
    static func stripped(_ address: String) -> String {
        var text = Substring(address)
        while let first = text.first, first == " " || first == "\t" {
            text.removeFirst()
        }
        while let last = text.last, last == " " || last == "\t" {
            text.removeLast()
        }
        if text.hasPrefix("<"), text.hasSuffix(">"), text.count >= 2 {
            text = text.dropFirst().dropLast()
        }
        return String(text)
    }
}

/// The address form ACS takes (acs-email-api.md §2.2: anything else is `400 InvalidEmailAddress`, which fails the
/// whole request): `local@domain.tld`, no quoted local part, no address literal, no domain without a dot, a local
/// part of at most 64 octets, no whitespace or control characters. The SMTP layer refuses such recipients at
/// RCPT (`SMTPLimits.plainRecipientsOnly`); header addresses that become request fields are checked here.
enum ACSAddress {
    /// Why ACS would refuse `address`, or nil when it takes it.
    static func refusalReason(_ address: String) -> String? {
        let text = AddressKey.stripped(address)
        guard let at = text.lastIndex(of: "@") else { return "no domain" }
        let local = text[..<at]
        let domain = text[text.index(after: at)...]
        if local.isEmpty { return "no local part" }
        if domain.isEmpty { return "no domain" }
        if local.hasPrefix("\"") { return "a quoted local part" }
        if domain.hasPrefix("[") { return "an address literal" }
        if !domain.contains(".") || domain.hasPrefix(".") || domain.hasSuffix("..") { return "a domain without a dot" }
        if local.utf8.count > 64 { return "a local part longer than 64 octets" }
        let specials = "<>()[],;\\".unicodeScalars
        if text.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F || specials.contains($0) }) {
            return "whitespace or a special character"
        }
        return nil
    }
}
