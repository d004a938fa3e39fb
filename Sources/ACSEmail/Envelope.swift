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

/// Address comparison as the translation rules need it (issue 3 "Recipients come from the envelope").
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
