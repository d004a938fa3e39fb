/// A command line sent by the client, parsed per RFC 5321 §4.1.
public enum SMTPCommand: Hashable, Sendable {
    case hello(domain: String)
    case extendedHello(domain: String)
    /// `MAIL FROM:<reverse-path> [parameters]`; `from` is `.null` for `<>`.
    case mail(from: ReversePath, parameters: ESMTPParameters)
    /// `RCPT TO:<forward-path> [parameters]`.
    case recipient(to: ForwardPath, parameters: ESMTPParameters)
    case data
    /// `BDAT <size> [LAST]` (RFC 3030 §2): exactly `size` octets of message follow, unstuffed.
    case binaryData(size: Int, last: Bool)
    case reset
    case noop
    case quit
    case verify(String)
    case expand(String)
    case help(String?)
    /// `STARTTLS` (RFC 3207).
    case startTLS
    /// `AUTH mechanism [initial-response]` (RFC 4954 §4); the mechanism upper-cased, the initial response as sent
    /// (base64, or `=` for an empty one). The response is a credential: it is never logged.
    case auth(mechanism: String, initialResponse: String?)
    /// Recognized verbs this gateway does not offer: TURN, ETRN…
    /// They get 502 rather than 500: the command exists, it is just not available here.
    case notImplemented(verb: String)
}

/// Why a command line could not be parsed, as the reply to send.
public struct SMTPCommandError: Error, Hashable, Sendable {
    public var reply: SMTPReply
    /// True when the client's byte stream can no longer be framed (a BDAT size we cannot read):
    /// the only safe continuation is to close the connection.
    public var losesFraming: Bool

    public init(_ reply: SMTPReply, losesFraming: Bool = false) {
        self.reply = reply
        self.losesFraming = losesFraming
    }
}

/// The reverse-path of `MAIL FROM`: a mailbox, or the null path `<>` used by bounces.
public enum ReversePath: Hashable, Sendable, CustomStringConvertible {
    case null
    case mailbox(Mailbox)

    /// The address as it appears in the envelope record: "" for the null path.
    public var address: String {
        switch self {
        case .null: ""
        case .mailbox(let mailbox): mailbox.address
        }
    }

    public var description: String { "<\(address)>" }
}

/// The forward-path of `RCPT TO`: a mailbox, or the special `<postmaster>` (RFC 5321 §4.1.1.3).
public enum ForwardPath: Hashable, Sendable, CustomStringConvertible {
    case postmaster
    case mailbox(Mailbox)

    public var address: String {
        switch self {
        case .postmaster: "postmaster"
        case .mailbox(let mailbox): mailbox.address
        }
    }

    public var description: String { "<\(address)>" }
}

/// `local-part@domain`, as written by the client (quoted local parts keep their quotes).
public struct Mailbox: Hashable, Sendable {
    public var localPart: String
    public var domain: String

    public init(localPart: String, domain: String) {
        self.localPart = localPart
        self.domain = domain
    }

    public var address: String { "\(localPart)@\(domain)" }

    /// True when the address needs SMTPUTF8 (RFC 6531): any octet above 0x7F.
    public var isInternational: Bool { address.utf8.contains { $0 >= 0x80 } }
}

/// ESMTP parameters of MAIL or RCPT (`SIZE=1000 BODY=8BITMIME SMTPUTF8`), in the order given.
/// Keywords are case-insensitive and stored upper-cased; a keyword without `=` has a `nil` value.
public struct ESMTPParameters: Hashable, Sendable, Sequence {
    public private(set) var entries: [(keyword: String, value: String?)]

    public init(_ entries: [(keyword: String, value: String?)] = []) {
        self.entries = entries.map { (keyword: $0.keyword.uppercased(), value: $0.value) }
    }

    public subscript(keyword: String) -> String?? {
        let key = keyword.uppercased()
        return entries.first(where: { $0.keyword == key }).map { $0.value }
    }

    public func contains(_ keyword: String) -> Bool { self[keyword] != nil }

    public var isEmpty: Bool { entries.isEmpty }

    public func makeIterator() -> IndexingIterator<[(keyword: String, value: String?)]> {
        entries.makeIterator()
    }

    public static func == (lhs: ESMTPParameters, rhs: ESMTPParameters) -> Bool {
        lhs.entries.elementsEqual(rhs.entries) { $0.keyword == $1.keyword && $0.value == $1.value }
    }

    public func hash(into hasher: inout Hasher) {
        for entry in entries {
            hasher.combine(entry.keyword)
            hasher.combine(entry.value)
        }
    }
}

extension SMTPCommand {
    /// RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the angle brackets.
    public static let maxPathLength = 256
    /// RFC 5321 §4.5.3.1.1 sets 64 for the local part; real systems exceed it, so we allow four times that
    /// while still bounding what we store.
    public static let maxLocalPartLength = 256

    /// Parses one command line (without its line terminator).
    public static func parse(_ line: some Collection<UInt8>) -> Result<SMTPCommand, SMTPCommandError> {
        // Byte-level up to the verb's dispatch: every command of every session passes here. The delimiters
        // (space, tab, control characters) are ASCII, and in UTF-8 no byte of a multi-byte character is ASCII,
        // so cutting at them yields valid UTF-8 pieces of a valid line.
        let bytes = Array(line)
        // Commands are text; a line that is not UTF-8 cannot be a valid command (addresses may be UTF-8
        // under SMTPUTF8, RFC 6531 §3.3).
        guard String(validating: bytes, as: UTF8.self) != nil else {
            return .failure(SMTPCommandError(.syntaxError("command line is not valid UTF-8")))
        }
        if bytes.contains(where: { $0 < 0x20 && $0 != 0x09 || $0 == 0x7F }) {
            return .failure(SMTPCommandError(.syntaxError("control characters in command line")))
        }
        let verbEnd = bytes.firstIndex(where: isBlank) ?? bytes.endIndex
        var argumentStart = verbEnd
        while argumentStart < bytes.endIndex, isBlank(bytes[argumentStart]) { argumentStart += 1 }
        var argumentEnd = bytes.endIndex
        while argumentEnd > argumentStart, isBlank(bytes[argumentEnd - 1]) { argumentEnd -= 1 }
        // Verbs are ASCII (RFC 5321 §2.4): only ASCII letters are folded, so no other script's case mapping
        // can turn a stranger's word into a command.
        let verb = String(
            decoding: bytes[..<verbEnd].map { (0x61...0x7A).contains($0) ? $0 - 0x20 : $0 }, as: UTF8.self)
        let trimmedArgument = String(decoding: bytes[argumentStart..<argumentEnd], as: UTF8.self)

        switch verb {
        case "HELO", "EHLO":
            let domain = trimmedArgument.split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(String.init)
            guard let domain, !domain.isEmpty else {
                return .failure(SMTPCommandError(.syntaxError("\(verb) requires a domain or address literal")))
            }
            return .success(verb == "EHLO" ? .extendedHello(domain: domain) : .hello(domain: domain))
        case "MAIL":
            return parseMail(trimmedArgument)
        case "RCPT":
            return parseRecipient(trimmedArgument)
        case "DATA":
            guard trimmedArgument.isEmpty else {
                return .failure(SMTPCommandError(.syntaxError("DATA takes no argument")))
            }
            return .success(.data)
        case "BDAT":
            return parseBinaryData(trimmedArgument)
        case "RSET":
            return trimmedArgument.isEmpty
                ? .success(.reset) : .failure(SMTPCommandError(.syntaxError("RSET takes no argument")))
        case "NOOP":
            return .success(.noop)  // RFC 5321 §4.1.1.9: the argument, if any, is ignored
        case "QUIT":
            return trimmedArgument.isEmpty
                ? .success(.quit) : .failure(SMTPCommandError(.syntaxError("QUIT takes no argument")))
        case "VRFY":
            guard !trimmedArgument.isEmpty else {
                return .failure(SMTPCommandError(.syntaxError("VRFY requires an argument")))
            }
            return .success(.verify(trimmedArgument))
        case "EXPN":
            return .success(.expand(trimmedArgument))
        case "HELP":
            return .success(.help(trimmedArgument.isEmpty ? nil : trimmedArgument))
        case "STARTTLS":
            return trimmedArgument.isEmpty
                ? .success(.startTLS) : .failure(SMTPCommandError(.syntaxError("STARTTLS takes no argument")))
        case "AUTH":
            let tokens = trimmedArgument.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard (1...2).contains(tokens.count) else {
                return .failure(SMTPCommandError(.syntaxError("expected AUTH mechanism [initial-response]")))
            }
            let initialResponse = tokens.dropFirst().first.map(String.init)
            return .success(.auth(mechanism: tokens[0].uppercased(), initialResponse: initialResponse))
        case "TURN", "ETRN", "ATRN", "SEND", "SOML", "SAML", "XCLIENT", "XFORWARD":
            return .success(.notImplemented(verb: verb))
        default:
            return .failure(SMTPCommandError(.commandNotRecognized))
        }
    }

    private static func parseMail(_ argument: String) -> Result<SMTPCommand, SMTPCommandError> {
        guard let rest = argument.droppingPrefix(caseInsensitive: "FROM:") else {
            return .failure(SMTPCommandError(.syntaxError("expected MAIL FROM:<address>")))
        }
        return parsePathAndParameters(rest, badAddress: SMTPReply.badSenderAddressSyntax).flatMap { path, parameters in
            switch path {
            case .null:
                return .success(.mail(from: .null, parameters: parameters))
            case .postmaster, .localName:
                return .failure(SMTPCommandError(.badSenderAddressSyntax("a sender address needs a domain")))
            case .mailbox(let mailbox):
                return .success(.mail(from: .mailbox(mailbox), parameters: parameters))
            }
        }
    }

    private static func parseRecipient(_ argument: String) -> Result<SMTPCommand, SMTPCommandError> {
        guard let rest = argument.droppingPrefix(caseInsensitive: "TO:") else {
            return .failure(SMTPCommandError(.syntaxError("expected RCPT TO:<address>")))
        }
        return parsePathAndParameters(rest, badAddress: SMTPReply.badRecipientAddressSyntax).flatMap {
            path, parameters in
            switch path {
            case .null:
                return .failure(SMTPCommandError(.badRecipientAddressSyntax("the null path is not a recipient")))
            case .postmaster:
                return .success(.recipient(to: .postmaster, parameters: parameters))
            case .localName(let name):
                // A bare local name (`RCPT TO:<root>`), as local tools write it: a mailbox without a domain,
                // which only the local recipients' aliases can resolve (``LocalRecipients``).
                return .success(.recipient(to: .mailbox(Mailbox(localPart: name, domain: "")), parameters: parameters))
            case .mailbox(let mailbox):
                return .success(.recipient(to: .mailbox(mailbox), parameters: parameters))
            }
        }
    }

    private enum ParsedPath {
        case null
        case postmaster
        /// A dot-atom with no `@`: a local user's name.
        case localName(String)
        case mailbox(Mailbox)
    }

    /// `<path> [SP params]`. Tolerates a space after the colon and a missing pair of angle brackets
    /// (both are common in the wild; Postfix accepts them with `strict_rfc821_envelopes = no`).
    private static func parsePathAndParameters(
        _ text: String, badAddress: (String) -> SMTPReply
    ) -> Result<(ParsedPath, ESMTPParameters), SMTPCommandError> {
        // Bytes: the delimiters are ASCII, so the path and the parameters are cut at character boundaries.
        let bytes = Array(text.utf8.drop(while: isBlank))
        var index = 0
        var pathBytes: [UInt8] = []
        if bytes.first == UInt8(ascii: "<") {
            index = 1
            var inQuotes = false
            var closed = false
            while index < bytes.count {
                let byte = bytes[index]
                if inQuotes && byte == UInt8(ascii: "\\") && index + 1 < bytes.count {
                    pathBytes.append(byte)
                    pathBytes.append(bytes[index + 1])
                    index += 2
                    continue
                }
                if byte == UInt8(ascii: "\"") { inQuotes.toggle() }
                if byte == UInt8(ascii: ">") && !inQuotes {
                    closed = true
                    index += 1
                    break
                }
                pathBytes.append(byte)
                index += 1
            }
            guard closed else { return .failure(SMTPCommandError(badAddress("missing closing '>'"))) }
            if index < bytes.count && !isBlank(bytes[index]) {
                return .failure(SMTPCommandError(badAddress("unexpected text after '>'")))
            }
        } else {
            while index < bytes.count && !isBlank(bytes[index]) {
                pathBytes.append(bytes[index])
                index += 1
            }
            if pathBytes.isEmpty { return .failure(SMTPCommandError(badAddress("missing address"))) }
        }
        guard pathBytes.count + 2 <= maxPathLength else {
            return .failure(SMTPCommandError(badAddress("path longer than \(maxPathLength) octets")))
        }
        let pathText = String(decoding: pathBytes, as: UTF8.self)
        let parameterText = String(decoding: bytes[index...], as: UTF8.self)

        let path: ParsedPath
        switch parseMailbox(pathText) {
        case .success(let parsed): path = parsed
        case .failure(let reason): return .failure(SMTPCommandError(badAddress(reason.text)))
        }
        return parseParameters(parameterText).map { (path, $0) }
    }

    private struct Reason: Error { var text: String }

    /// Parses the text between the angle brackets: empty (null path), `postmaster`, or
    /// `[@route,@route:]local@domain` where a source route is accepted and ignored (RFC 5321 §4.1.2, C.).
    private static func parseMailbox(_ text: String) -> Result<ParsedPath, Reason> {
        if text.isEmpty { return .success(.null) }
        if text.lowercased() == "postmaster" { return .success(.postmaster) }
        var path = Substring(text)
        if path.hasPrefix("@") {
            // Obsolete source route: skip up to the colon that ends it.
            guard let colon = path.firstIndex(of: ":") else { return .failure(Reason(text: "malformed source route")) }
            path = path[path.index(after: colon)...]
        }
        // The local part ends at the last '@' outside a quoted string.
        var inQuotes = false
        var escaped = false
        var atIndex: Substring.Index?
        for index in path.indices {
            let character = path[index]
            if escaped {
                escaped = false
                continue
            }
            if inQuotes && character == "\\" {
                escaped = true
                continue
            }
            if character == "\"" { inQuotes.toggle() }
            if character == "@" && !inQuotes { atIndex = index }
        }
        guard !inQuotes else { return .failure(Reason(text: "unterminated quoted local part")) }
        guard let atIndex else {
            if isLocalName(path) { return .success(.localName(String(path))) }
            return .failure(Reason(text: "address needs a domain (local@domain)"))
        }
        let localPart = String(path[..<atIndex])
        let domain = String(path[path.index(after: atIndex)...])
        guard !localPart.isEmpty else { return .failure(Reason(text: "empty local part")) }
        guard localPart.utf8.count <= maxLocalPartLength else { return .failure(Reason(text: "local part too long")) }
        if !localPart.hasPrefix("\"") {
            // Dot-string: atext and dots (RFC 5321 §4.1.2), leniently allowing UTF-8 (RFC 6531).
            guard !localPart.utf8.contains(where: { forbiddenInDotString.contains($0) }) else {
                return .failure(Reason(text: "invalid character in local part"))
            }
        }
        guard isValidDomain(domain) else { return .failure(Reason(text: "invalid domain '\(domain)'")) }
        return .success(.mailbox(Mailbox(localPart: localPart, domain: domain)))
    }

    private static let forbiddenInDotString = Set(" \t<>()[],;:\\\"".utf8)

    private static func isBlank(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 }

    /// A local user's name as Unix tools write one (`root`, `www-data`, `first.last`): ASCII letters, digits,
    /// `.`, `_`, `-` and `+`, at most 64 octets, starting with a letter, digit or `_`.
    public static func isLocalName(_ text: Substring) -> Bool {
        guard let first = text.unicodeScalars.first, text.utf8.count <= 64, first.isASCIIAlphanumeric || first == "_"
        else { return false }
        return text.unicodeScalars.allSatisfy { $0.isASCIIAlphanumeric || "._-+".unicodeScalars.contains($0) }
    }

    /// A domain name (letters, digits, hyphens, underscores and UTF-8 labels) or an address literal.
    static func isValidDomain(_ domain: String) -> Bool {
        guard !domain.isEmpty, domain.utf8.count <= 255 else { return false }
        if domain.hasPrefix("[") {
            guard domain.hasSuffix("]"), domain.count > 2 else { return false }
            let literal = domain.dropFirst().dropLast()
            return literal.allSatisfy { $0.isLetter || $0.isNumber || $0 == "." || $0 == ":" || $0 == "-" }
        }
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        return labels.allSatisfy { label in
            !label.isEmpty && label.utf8.count <= 63 && label.first != "-"
                && label.unicodeScalars.allSatisfy { scalar in
                    scalar.value >= 0x80 || scalar.isASCIIAlphanumeric || scalar == "-" || scalar == "_"
                }
        }
    }

    private static func parseParameters(_ text: String) -> Result<ESMTPParameters, SMTPCommandError> {
        var entries: [(keyword: String, value: String?)] = []
        for token in text.split(whereSeparator: { $0 == " " || $0 == "\t" }) {
            let keyword: Substring
            let value: String?
            if let equals = token.firstIndex(of: "=") {
                keyword = token[..<equals]
                value = String(token[token.index(after: equals)...])
            } else {
                keyword = token
                value = nil
            }
            // RFC 5321 §4.1.2: esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-")
            guard let first = keyword.unicodeScalars.first, first.isASCIIAlphanumeric,
                keyword.unicodeScalars.allSatisfy({ $0.isASCIIAlphanumeric || $0 == "-" })
            else {
                return .failure(SMTPCommandError(.parameterSyntaxError("malformed parameter '\(token.prefix(40))'")))
            }
            if let value, value.isEmpty || value.contains("=") {
                return .failure(SMTPCommandError(.parameterSyntaxError("malformed value for \(keyword.uppercased())")))
            }
            let upper = keyword.uppercased()
            guard !entries.contains(where: { $0.keyword == upper }) else {
                return .failure(SMTPCommandError(.parameterSyntaxError("duplicate parameter \(upper)")))
            }
            entries.append((keyword: upper, value: value))
        }
        return .success(ESMTPParameters(entries))
    }

    private static func parseBinaryData(_ argument: String) -> Result<SMTPCommand, SMTPCommandError> {
        let tokens = argument.split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard let sizeToken = tokens.first, tokens.count <= 2 else {
            return .failure(SMTPCommandError(.parameterSyntaxError("expected BDAT <size> [LAST]"), losesFraming: true))
        }
        // RFC 3030 §2: chunk-size = 1*DIGIT. We bound it to 32 bits like go-smtp; beyond that the stream
        // cannot be followed, so the connection is closed rather than misread.
        guard sizeToken.allSatisfy({ $0.isASCII && $0.isNumber }), sizeToken.count <= 10,
            let size = Int(sizeToken), size <= Int(UInt32.max)
        else {
            return .failure(SMTPCommandError(.parameterSyntaxError("invalid BDAT chunk size"), losesFraming: true))
        }
        var last = false
        if tokens.count == 2 {
            guard tokens[1].uppercased() == "LAST" else {
                return .failure(
                    SMTPCommandError(.parameterSyntaxError("expected LAST after the chunk size"), losesFraming: true))
            }
            last = true
        }
        return .success(.binaryData(size: size, last: last))
    }
}

extension Unicode.Scalar {
    fileprivate var isASCIIAlphanumeric: Bool {
        ("a"..."z").contains(self) || ("A"..."Z").contains(self) || ("0"..."9").contains(self)
    }
}

extension String {
    /// The rest of the string after `prefix` (ASCII, case-insensitive), skipping spaces after it.
    fileprivate func droppingPrefix(caseInsensitive prefix: String) -> String? {
        // Tolerate "MAIL FROM :<a>" (space before the colon) is NOT accepted: RFC 5321 has none and
        // accepting it widens the grammar for no client we know. "MAIL FROM: <a>" is accepted.
        guard self.utf8.count >= prefix.utf8.count,
            self.prefix(prefix.count).uppercased() == prefix.uppercased()
        else { return nil }
        return String(self.dropFirst(prefix.count))
    }
}
