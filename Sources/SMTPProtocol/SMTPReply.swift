/// An enhanced mail system status code (RFC 3463), such as `5.5.2`.
///
/// Once `ENHANCEDSTATUSCODES` is advertised (RFC 2034 §3), every 2xx, 4xx and 5xx reply carries one;
/// 354 (start mail input) is the only reply without.
public struct EnhancedStatusCode: Hashable, Sendable, CustomStringConvertible {
    public var `class`: Int
    public var subject: Int
    public var detail: Int

    public init(_ `class`: Int, _ subject: Int, _ detail: Int) {
        self.class = `class`
        self.subject = subject
        self.detail = detail
    }

    public var description: String { "\(self.class).\(subject).\(detail)" }
}

/// One SMTP reply: a three-digit code, an optional enhanced status code and one or more text lines.
///
/// Every reply the gateway can send is built here, in one vocabulary (design.md principle 5), so the
/// codes are consistent and each can be found and tested in one place.
public struct SMTPReply: Hashable, Sendable, CustomStringConvertible {
    public var code: Int
    public var enhancedCode: EnhancedStatusCode?
    public var lines: [String]

    public init(_ code: Int, _ enhancedCode: EnhancedStatusCode?, _ lines: [String]) {
        precondition((200...599).contains(code), "SMTP reply codes are three digits from 2xx to 5xx")
        self.code = code
        self.enhancedCode = enhancedCode
        // A reply always has at least one line; an empty text is legal (RFC 5321 §4.2).
        self.lines = lines.isEmpty ? [""] : lines.map(Self.sanitize)
    }

    public init(_ code: Int, _ enhancedCode: EnhancedStatusCode?, _ text: String) {
        self.init(code, enhancedCode, [text])
    }

    /// 2xx: the command was accepted.
    public var isPositive: Bool { (200..<400).contains(code) }
    /// 4xx: a temporary failure; the client keeps the message and retries.
    public var isTransientFailure: Bool { (400..<500).contains(code) }
    /// 5xx: a permanent failure.
    public var isPermanentFailure: Bool { code >= 500 }

    /// The first line's text, for logs.
    public var description: String {
        let enhanced = enhancedCode.map { " \($0)" } ?? ""
        return "\(code)\(enhanced) \(lines.joined(separator: " / "))"
    }

    /// The reply as it goes on the wire: `250-first` … `250 last`, each line ending in CRLF.
    public var wireBytes: [UInt8] {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(lines.reduce(0) { $0 + $1.utf8.count + 12 })
        for (index, line) in lines.enumerated() {
            bytes.append(contentsOf: String(code).utf8)
            bytes.append(index == lines.count - 1 ? UInt8(ascii: " ") : UInt8(ascii: "-"))
            if let enhancedCode {
                bytes.append(contentsOf: enhancedCode.description.utf8)
                if !line.isEmpty { bytes.append(UInt8(ascii: " ")) }
            }
            bytes.append(contentsOf: line.utf8)
            bytes.append(contentsOf: [13, 10])
        }
        return bytes
    }

    /// Longest reply text per line, in octets. RFC 5321 §4.5.3.1.5 bounds a reply line at 512 octets with the
    /// code; text echoing attachment names or ACS error messages could otherwise exceed what clients accept
    /// (Python's smtplib turns a line over 8 KiB into a permanent 500).
    public static let maxTextLength = 400

    /// Reply text is one line of printable ASCII at most `maxTextLength` octets: CR or LF would forge extra
    /// reply lines (a reply-injection vector when text echoes client input or ACS messages), control
    /// characters become spaces, and non-ASCII (not allowed outside SMTPUTF8) becomes `?`.
    private static func sanitize(_ line: String) -> String {
        // Bytes, not scalars: every reply passes through here, and the output is ASCII by construction.
        var bytes: [UInt8] = []
        bytes.reserveCapacity(min(line.utf8.count, maxTextLength))
        for scalar in line.unicodeScalars {
            if bytes.count >= maxTextLength - 3 {
                bytes.append(contentsOf: "...".utf8)
                break
            }
            switch scalar.value {
            case 0..<0x20, 0x7F: bytes.append(0x20)
            case 0x80...: bytes.append(UInt8(ascii: "?"))
            default: bytes.append(UInt8(scalar.value))
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

// MARK: - The vocabulary

extension SMTPReply {
    // 2xx / 3xx

    /// 220, the greeting (RFC 5321 §4.2, §3.1).
    public static func greeting(hostname: String) -> SMTPReply {
        SMTPReply(220, nil, "\(hostname) ESMTP acs-smtp-gateway ready")
    }

    /// 221, the answer to QUIT.
    public static func closing(hostname: String) -> SMTPReply {
        SMTPReply(221, EnhancedStatusCode(2, 0, 0), "\(hostname) closing connection")
    }

    /// 250 to HELO (no extensions, so no enhanced code is promised; we send one anyway for uniformity).
    public static func helloAccepted(hostname: String, clientDomain: String) -> SMTPReply {
        SMTPReply(250, nil, "\(hostname) greets \(clientDomain)")
    }

    /// 250 multi-line answer to EHLO listing the extensions (RFC 5321 §4.1.1.1).
    public static func extendedHelloAccepted(hostname: String, clientDomain: String, extensions: [String]) -> SMTPReply
    {
        SMTPReply(250, nil, ["\(hostname) greets \(clientDomain)"] + extensions)
    }

    public static let ok = SMTPReply(250, EnhancedStatusCode(2, 0, 0), "OK")
    public static let senderOK = SMTPReply(250, EnhancedStatusCode(2, 1, 0), "Sender OK")
    public static let recipientOK = SMTPReply(250, EnhancedStatusCode(2, 1, 5), "Recipient OK")
    public static let resetOK = SMTPReply(250, EnhancedStatusCode(2, 0, 0), "Reset OK")
    public static let noopOK = SMTPReply(250, EnhancedStatusCode(2, 0, 0), "OK")

    /// 250 to a non-final BDAT chunk (RFC 3030 §2).
    public static func chunkReceived(octets: Int) -> SMTPReply {
        SMTPReply(250, EnhancedStatusCode(2, 0, 0), "\(octets) octets received")
    }

    /// 250 after a message was handed over; the text names where it went.
    public static func messageAccepted(_ detail: String) -> SMTPReply {
        SMTPReply(250, EnhancedStatusCode(2, 0, 0), detail)
    }

    /// 252 to VRFY: we never confirm or deny mailboxes (RFC 5321 §3.5.3, anti-harvesting).
    public static let cannotVerify = SMTPReply(
        252, EnhancedStatusCode(2, 5, 2), "Cannot VRFY user, but will accept message and attempt delivery")

    /// 214 to HELP.
    public static let help = SMTPReply(
        214, EnhancedStatusCode(2, 0, 0),
        [
            "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP",
            "This gateway relays mail to Azure Communication Services Email",
        ])

    /// 220 to STARTTLS: the TLS handshake starts after this line (RFC 3207 §4).
    public static let readyToStartTLS = SMTPReply(220, EnhancedStatusCode(2, 0, 0), "Ready to start TLS")

    /// 235 after a successful AUTH exchange (RFC 4954 §6).
    public static let authenticationSucceeded = SMTPReply(235, EnhancedStatusCode(2, 7, 0), "Authentication successful")

    /// 334 with a base64 challenge (RFC 4954 §4): empty for PLAIN, `Username:`/`Password:` for LOGIN. Like 354 it
    /// carries no enhanced code: its text is the challenge.
    public static func authenticationChallenge(_ base64: String) -> SMTPReply {
        SMTPReply(334, nil, base64)
    }

    /// 354 after DATA: the one reply without an enhanced code (RFC 2034 §3).
    public static let startMailInput = SMTPReply(354, nil, "Start mail input; end with <CRLF>.<CRLF>")

    // 4xx

    /// 421 at connect when the global connection limit is reached.
    public static let tooManyConnections = SMTPReply(
        421, EnhancedStatusCode(4, 7, 0), "Too many connections, try again later")
    /// 421 at connect when this client address already has its share of connections.
    public static let tooManyConnectionsFromClient = SMTPReply(
        421, EnhancedStatusCode(4, 7, 0), "Too many connections from your address, try again later")
    /// 421 after too many errors in one session (smtp-behaviour #17).
    public static let tooManyErrors = SMTPReply(
        421, EnhancedStatusCode(4, 7, 0), "Too many errors, closing connection")
    /// 421 when the client was idle longer than the command timeout (RFC 5321 §4.5.3.2.7).
    public static let commandTimeout = SMTPReply(
        421, EnhancedStatusCode(4, 4, 2), "Timeout waiting for a command, closing connection")
    /// 421 when message data stopped arriving, or arrived slower than the minimum rate.
    public static let dataTimeout = SMTPReply(
        421, EnhancedStatusCode(4, 4, 2), "Timeout or too slow while receiving message data, closing connection")
    /// 421 when the gateway is shutting down.
    public static let shuttingDown = SMTPReply(
        421, EnhancedStatusCode(4, 3, 2), "Service shutting down, try again later")
    /// 421 once a client's address failed AUTH too often: a delay, then this, then the connection closes.
    public static let tooManyAuthenticationFailures = SMTPReply(
        421, EnhancedStatusCode(4, 7, 0), "Too many failed authentication attempts, try again later")
    /// 454 when the credentials could not be checked now (RFC 4954 §6).
    public static let temporaryAuthenticationFailure = SMTPReply(
        454, EnhancedStatusCode(4, 7, 0), "Temporary authentication failure, try again later")
    /// 451 when the submitter did not answer in time; the client keeps the message.
    public static let submissionTimedOut = SMTPReply(
        451, EnhancedStatusCode(4, 4, 1), "Delivery did not complete in time, try again later")
    /// `452 4.3.1` (RFC 3463 X.3.1 "mail system full"): the mail store cannot take the message now.
    public static func insufficientStorage(_ detail: String) -> SMTPReply {
        SMTPReply(452, EnhancedStatusCode(4, 3, 1), "Insufficient system storage: \(detail), try again later")
    }
    /// 451 for an internal error while storing or handing over a message.
    public static func localError(_ detail: String) -> SMTPReply {
        SMTPReply(451, EnhancedStatusCode(4, 3, 0), "Local error: \(detail), try again later")
    }

    /// 452 for recipients past the per-transaction limit (RFC 5321 §4.5.3.1.10): the client sends
    /// the rest in another transaction.
    public static func tooManyRecipients(limit: Int) -> SMTPReply {
        SMTPReply(452, EnhancedStatusCode(4, 5, 3), "Too many recipients, at most \(limit) per message")
    }

    // 5xx

    public static let commandNotRecognized = SMTPReply(500, EnhancedStatusCode(5, 5, 2), "Command not recognized")
    public static func commandLineTooLong(limit: Int) -> SMTPReply {
        SMTPReply(500, EnhancedStatusCode(5, 5, 2), "Command line too long, at most \(limit) octets")
    }
    /// A text line in DATA above the hard cap (RFC 5321 §4.5.3.1.6 allows 1000; we accept far more).
    public static func textLineTooLong(limit: Int) -> SMTPReply {
        SMTPReply(500, EnhancedStatusCode(5, 5, 2), "Line too long, message text lines are limited to \(limit) octets")
    }
    /// A bare LF in message data when the bare-LF policy is `reject` (smtp-behaviour #1, #2).
    public static let bareLineFeedInData = SMTPReply(
        550, EnhancedStatusCode(5, 5, 2), "Bare <LF> received in message data; lines must end with <CRLF>")
    /// A bare LF ending a command when the bare-LF policy is `reject`.
    public static let bareLineFeedInCommand = SMTPReply(
        500, EnhancedStatusCode(5, 5, 2), "Bare <LF> received; commands must end with <CRLF>")
    /// 550 for `RCPT TO:<postmaster>` when delivery goes to ACS and no postmaster address is configured (the
    /// gateway has no mailboxes).
    public static let noPostmaster = SMTPReply(
        550, EnhancedStatusCode(5, 1, 1), "No local postmaster here: this gateway only relays; use a full address")
    /// 550 for a local recipient (`root`, `www-data@localhost`) with neither an alias nor a catch-all: the
    /// gateway has no mailboxes, so it says how to give the name one.
    public static func unknownLocalRecipient(_ mailbox: Mailbox) -> SMTPReply {
        let written = mailbox.domain.isEmpty ? mailbox.localPart : mailbox.address
        return SMTPReply(
            550, EnhancedStatusCode(5, 1, 1),
            "No alias for local recipient <\(written)>: add \"\(mailbox.localPart): address\" under aliases: in "
                + "the gateway's configuration, or a \"*\" catch-all")
    }
    public static func syntaxError(_ detail: String) -> SMTPReply {
        SMTPReply(501, EnhancedStatusCode(5, 5, 2), "Syntax error: \(detail)")
    }
    public static func parameterSyntaxError(_ detail: String) -> SMTPReply {
        SMTPReply(501, EnhancedStatusCode(5, 5, 4), "Syntax error in parameters: \(detail)")
    }
    public static func badSenderAddressSyntax(_ detail: String) -> SMTPReply {
        SMTPReply(501, EnhancedStatusCode(5, 1, 7), "Bad sender address syntax: \(detail)")
    }
    public static func badRecipientAddressSyntax(_ detail: String) -> SMTPReply {
        SMTPReply(501, EnhancedStatusCode(5, 1, 3), "Bad recipient address syntax: \(detail)")
    }
    public static func notImplemented(_ command: String) -> SMTPReply {
        SMTPReply(502, EnhancedStatusCode(5, 5, 1), "\(command) not implemented")
    }
    /// 503 for commands out of sequence (RFC 5321 §4.1.4, smtp-behaviour #12).
    public static func badSequence(_ detail: String) -> SMTPReply {
        SMTPReply(503, EnhancedStatusCode(5, 5, 1), "Bad sequence of commands: \(detail)")
    }
    public static func parameterNotImplemented(_ detail: String) -> SMTPReply {
        SMTPReply(504, EnhancedStatusCode(5, 5, 4), detail)
    }
    /// 501 to a `*` line: the client cancelled the AUTH exchange (RFC 4954 §4).
    public static let authenticationCancelled = SMTPReply(501, EnhancedStatusCode(5, 0, 0), "Authentication cancelled")
    /// 501 to an AUTH response that is not base64 (RFC 4954 §4).
    public static let authenticationResponseNotBase64 = SMTPReply(
        501, EnhancedStatusCode(5, 5, 2), "Cannot decode the response: not base64")
    /// 504 to AUTH with a mechanism not offered (RFC 4954 §4).
    public static let unrecognizedAuthenticationMechanism = SMTPReply(
        504, EnhancedStatusCode(5, 5, 4), "Unrecognized authentication type; use PLAIN or LOGIN")
    /// 530 to MAIL from a client that must authenticate first (RFC 4954 §6).
    public static let authenticationRequired = SMTPReply(530, EnhancedStatusCode(5, 7, 0), "Authentication required")
    /// 530 to MAIL on a connection that must authenticate, before STARTTLS made AUTH usable.
    public static let authenticationRequiredAfterStartTLS = SMTPReply(
        530, EnhancedStatusCode(5, 7, 0), "Authentication required; issue STARTTLS first")
    /// 535 for a wrong user name or password (RFC 4954 §6). The same text whichever was wrong.
    public static let authenticationFailed = SMTPReply(
        535, EnhancedStatusCode(5, 7, 8), "Authentication credentials invalid")
    /// 538 to AUTH on an unencrypted connection where AUTH needs TLS (RFC 4954 §6).
    public static let encryptionRequiredForAuthentication = SMTPReply(
        538, EnhancedStatusCode(5, 7, 11),
        "Encryption required for requested authentication mechanism; issue STARTTLS first")
    /// 553 to MAIL from an address the authenticated user may not send as.
    public static let senderNotAllowedForUser = SMTPReply(
        553, EnhancedStatusCode(5, 7, 1), "Sender address not allowed for the authenticated user")
    /// 552 for messages over the size limit, at MAIL (SIZE=) or after the data (RFC 1870 §6).
    public static func messageTooLarge(limit: Int) -> SMTPReply {
        SMTPReply(552, EnhancedStatusCode(5, 3, 4), "Message size exceeds fixed limit of \(limit) octets")
    }
    /// 553 for a recipient the delivery service cannot take (``SMTPLimits/plainRecipientsOnly``): refused at
    /// RCPT, so the client delivers to the other recipients and bounces only this one.
    public static func recipientNotDeliverable(_ detail: String) -> SMTPReply {
        SMTPReply(553, EnhancedStatusCode(5, 1, 3), "Recipient address not accepted for delivery: \(detail)")
    }
    /// 553 for a non-ASCII address without SMTPUTF8 (RFC 6531 §3.4).
    public static let internationalAddressWithoutSMTPUTF8 = SMTPReply(
        553, EnhancedStatusCode(5, 6, 7), "Non-ASCII address requires the SMTPUTF8 parameter on MAIL")
    /// 554 at connect for a client outside the allowed networks: the gateway is not an open relay.
    public static let accessDenied = SMTPReply(
        554, EnhancedStatusCode(5, 7, 1), "Access denied: your address is not allowed to use this gateway")
    /// 554 when a client sends message text after its DATA was refused (it did not wait for the 354):
    /// the rest of its input cannot be framed, so the connection is closed rather than the text being read
    /// as commands (the text could smuggle a transaction; Postfix `smtpd_forbid_unauth_pipelining`, Exim
    /// `smtp_enforce_sync`).
    public static let synchronizationError = SMTPReply(
        554, EnhancedStatusCode(5, 5, 0), "Protocol synchronization error: message text sent although DATA was refused")

    /// 555 for a MAIL or RCPT parameter we do not know or did not advertise (RFC 5321 §4.1.1.11).
    public static func unsupportedParameter(_ parameter: String) -> SMTPReply {
        SMTPReply(555, EnhancedStatusCode(5, 5, 4), "Unsupported parameter: \(parameter)")
    }
}
