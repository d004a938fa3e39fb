/// SMTP AUTH (RFC 4954) and STARTTLS (RFC 3207) as values the state machine works with: what a session may
/// offer, what a client presented, and what an authenticated user may do. No I/O and no cryptography: the
/// connection performs the TLS handshake and the gateway checks the password.

/// Whether a listener offers AUTH, and whether it insists on it.
public enum AuthRequirement: String, CaseIterable, Sendable {
    /// No AUTH: only trusted networks (loopback and `smtp.allow_network`) connect, as without AUTH support.
    case none
    /// AUTH offered: anyone may connect; trusted networks relay without it, every other client must
    /// authenticate before MAIL.
    case optional
    /// Every client must authenticate before MAIL, trusted networks included.
    case required
}

/// What one session may do about TLS and AUTH, decided by its listener and its client's address.
public struct SessionSecurity: Sendable, Hashable {
    /// The listener offers STARTTLS (`tls: starttls`).
    public var startTLSOffered: Bool
    /// The session is encrypted: implicit TLS from the start, or after STARTTLS.
    public var tlsActive: Bool
    public var auth: AuthRequirement
    /// AUTH may be used without TLS: the client is on loopback (nothing to eavesdrop on), or the operator
    /// allowed it for a legacy LAN (`tls.allow_plaintext_auth`).
    public var authWithoutTLS: Bool
    /// The client is in a trusted network and relays without AUTH (unless AUTH is required).
    public var trustedClient: Bool

    public init(
        startTLSOffered: Bool = false, tlsActive: Bool = false, auth: AuthRequirement = .none,
        authWithoutTLS: Bool = false, trustedClient: Bool = true
    ) {
        self.startTLSOffered = startTLSOffered
        self.tlsActive = tlsActive
        self.auth = auth
        self.authWithoutTLS = authWithoutTLS
        self.trustedClient = trustedClient
    }

    /// AUTH can be used now, so EHLO advertises it: offered, and the channel is encrypted or exempt.
    public var authUsable: Bool { auth != .none && (tlsActive || authWithoutTLS) }

    /// MAIL needs an authenticated user first.
    public var authNeededForMail: Bool {
        switch auth {
        case .none: false
        case .optional: !trustedClient
        case .required: true
        }
    }
}

/// The SASL mechanisms offered: PLAIN (RFC 4616) and LOGIN (the de-facto one printers and scanners use).
public enum SASLMechanism: String, CaseIterable, Sendable {
    case plain = "PLAIN"
    case login = "LOGIN"
}

/// What a client presented in an AUTH exchange. The password is a secret: it is never part of a description,
/// so interpolating credentials into a log line cannot leak it.
public struct SASLCredentials: Sendable, Hashable, CustomStringConvertible, CustomDebugStringConvertible {
    public var mechanism: SASLMechanism
    /// The authorization identity of PLAIN (RFC 4616 §2), empty when the client sent none.
    public var authorizationIdentity: String
    /// The user name (PLAIN's authentication identity, LOGIN's first answer).
    public var username: String
    public var password: [UInt8]

    public init(mechanism: SASLMechanism, authorizationIdentity: String = "", username: String, password: [UInt8]) {
        self.mechanism = mechanism
        self.authorizationIdentity = authorizationIdentity
        self.username = username
        self.password = password
    }

    public var description: String { "SASLCredentials(\(mechanism.rawValue), password: ***)" }
    public var debugDescription: String { description }
}

/// One sender pattern of a user's rights: an address, every address of a domain (`*@domain`), or any (`*`).
/// Comparisons ignore case (domains are case-insensitive, and mail systems treat local parts alike).
public enum SenderPattern: Sendable, Hashable, CustomStringConvertible {
    case any
    case domain(String)
    case address(String)

    /// Parses `local@domain`, `*@domain` or `*`; nil for anything else.
    public init?(_ text: String) {
        if text == "*" {
            self = .any
            return
        }
        guard let at = text.lastIndex(of: "@"), at != text.startIndex, text.index(after: at) != text.endIndex,
            !text.contains(where: { $0 == " " || $0 == "," || $0 == ":" || $0 == "<" || $0 == ">" })
        else { return nil }
        let local = text[..<at]
        let domain = text[text.index(after: at)...].lowercased()
        guard SMTPCommand.isValidDomain(domain) else { return nil }
        if local == "*" {
            self = .domain(domain)
        } else {
            self = .address("\(local.lowercased())@\(domain)")
        }
    }

    public var description: String {
        switch self {
        case .any: "*"
        case .domain(let domain): "*@\(domain)"
        case .address(let address): address
        }
    }

    /// Whether this pattern allows `MAIL FROM:<path>`. The null path (bounces) is allowed by `*` only.
    public func allows(_ path: ReversePath) -> Bool {
        switch (self, path) {
        case (.any, _): true
        case (_, .null): false
        case (.domain(let domain), .mailbox(let mailbox)): mailbox.domain.lowercased() == domain
        case (.address(let address), .mailbox(let mailbox)): mailbox.address.lowercased() == address
        }
    }
}

/// A user the client authenticated as, with the senders it may use.
public struct AuthenticatedUser: Sendable, Hashable {
    public var name: String
    public var senders: [SenderPattern]

    public init(name: String, senders: [SenderPattern]) {
        self.name = name
        self.senders = senders
    }

    public func mayUse(_ path: ReversePath) -> Bool { senders.contains { $0.allows(path) } }
}

/// What checking a client's credentials gave.
public enum AuthenticationOutcome: Sendable, Hashable {
    case accepted(AuthenticatedUser)
    /// Wrong user name or password: 535 5.7.8.
    case rejected
    /// The check could not be made now (the pool is full): 454 4.7.0, the client may retry.
    case temporaryFailure
    /// The client's address failed too often: 421 4.7.0 and the connection closes.
    case tooManyFailures
}

/// Strict base64 (RFC 4648 §4, with padding) for SASL responses: no line breaks or spaces, as RFC 4954 §4
/// requires of each response line.
public enum SASLBase64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    private static let values: [UInt8: UInt8] = Dictionary(
        uniqueKeysWithValues: alphabet.enumerated().map { ($0.element, UInt8($0.offset)) })

    /// The decoded octets, or nil when `text` is not base64.
    public static func decode(_ text: some Collection<UInt8>) -> [UInt8]? {
        let bytes = Array(text)
        guard bytes.count % 4 == 0 else { return nil }
        var output: [UInt8] = []
        output.reserveCapacity(bytes.count / 4 * 3)
        var index = 0
        while index < bytes.count {
            let quad = bytes[index..<index + 4]
            let padding = quad.reversed().prefix(while: { $0 == UInt8(ascii: "=") }).count
            let isLast = index + 4 == bytes.count
            guard padding <= 2, padding == 0 || isLast else { return nil }
            var word: UInt32 = 0
            for byte in quad.prefix(4 - padding) {
                guard let value = values[byte] else { return nil }
                word = word << 6 | UInt32(value)
            }
            word <<= UInt32(6 * padding)
            let decoded = [
                UInt8(truncatingIfNeeded: word >> 16), UInt8(truncatingIfNeeded: word >> 8),
                UInt8(truncatingIfNeeded: word),
            ]
            output += decoded.prefix(3 - padding)
            index += 4
        }
        return output
    }

    public static func encode(_ bytes: [UInt8]) -> String {
        var output: [UInt8] = []
        var index = 0
        while index < bytes.count {
            let chunk = bytes[index..<min(index + 3, bytes.count)]
            var word: UInt32 = 0
            for byte in chunk { word = word << 8 | UInt32(byte) }
            word <<= UInt32(8 * (3 - chunk.count))
            for position in 0..<4 {
                if position <= chunk.count {
                    output.append(alphabet[Int((word >> UInt32(18 - 6 * position)) & 0x3F)])
                } else {
                    output.append(UInt8(ascii: "="))
                }
            }
            index += 3
        }
        return String(decoding: output, as: UTF8.self)
    }
}
