/// Local recipients and their aliases: what `root`, `www-data@localhost` or `user@<this host>` mean on a host
/// whose mail all leaves through a relay with no local mailboxes (the `aliases:` section of the configuration,
/// like aliases(5) for Postfix or nullmailer's `adminaddr`).
///
/// A recipient is local when it has no domain, when its domain is `localhost`, or when its domain is one of
/// ``localDomains`` (the host's names). A local recipient is delivered to its alias, else to the catch-all,
/// else refused: cron mail to `root` must reach a person or fail loudly, never vanish at a relay that
/// cannot deliver to `root@localhost`.
public struct LocalRecipients: Hashable, Sendable {
    /// Local names (lower-cased) and the address each one stands for.
    public var aliases: [String: Mailbox]
    /// Where every other local name goes (the `"*"` alias); nil refuses them.
    public var catchAll: Mailbox?
    /// Domains that mean this host (lower-cased), besides `localhost` and no domain at all.
    public var localDomains: Set<String>

    public init(aliases: [String: Mailbox] = [:], catchAll: Mailbox? = nil, localDomains: Set<String> = []) {
        self.aliases = Dictionary(
            aliases.map { ($0.key.lowercased(), $0.value) }, uniquingKeysWith: { _, last in last })
        self.catchAll = catchAll
        self.localDomains = Set(localDomains.map { $0.lowercased() })
    }

    /// The name of the catch-all entry in the aliases section.
    public static let catchAllName = "*"

    /// What a recipient resolves to.
    public enum Resolution: Hashable, Sendable {
        /// Not a local recipient: delivered as written.
        case notLocal
        /// A local recipient and the address it stands for.
        case alias(Mailbox)
        /// A local recipient with neither an alias nor a catch-all.
        case unknown
    }

    /// True when `mailbox` names a user of this host rather than an address elsewhere.
    public func isLocal(_ mailbox: Mailbox) -> Bool {
        isLocal(domain: mailbox.domain)
    }

    /// True when `domain` (possibly empty) means this host.
    public func isLocal(domain: String) -> Bool {
        let domain = domain.lowercased()
        return domain.isEmpty || domain == "localhost" || localDomains.contains(domain)
    }

    /// The alias of `mailbox` when it is local: its own, else the catch-all.
    public func resolve(_ mailbox: Mailbox) -> Resolution {
        guard isLocal(mailbox) else { return .notLocal }
        return resolve(localName: mailbox.localPart)
    }

    /// The alias of a local name: its own (names compare case-insensitively, as aliases(5) does), else the
    /// catch-all.
    public func resolve(localName: String) -> Resolution {
        if let alias = aliases[localName.lowercased()] ?? catchAll { return .alias(alias) }
        return .unknown
    }

    /// The alias of a local name, or nil when it has none (and there is no catch-all).
    public func alias(ofLocalName name: String) -> Mailbox? {
        if case .alias(let alias) = resolve(localName: name) { return alias }
        return nil
    }

    /// Resolves a header or envelope address written as text (`root`, `root@localhost`, `a@example.com`):
    /// the alias's address for a local one that has an alias, else nil.
    public func aliasAddress(for address: String) -> String? {
        let (localPart, domain): (Substring, Substring)
        if let at = address.lastIndex(of: "@") {
            (localPart, domain) = (address[..<at], address[address.index(after: at)...])
        } else {
            (localPart, domain) = (Substring(address), "")
        }
        guard !localPart.isEmpty, isLocal(domain: String(domain)),
            case .alias(let alias) = resolve(localName: String(localPart))
        else { return nil }
        return alias.address
    }
}
