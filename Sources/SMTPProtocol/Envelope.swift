/// The SMTP envelope of one transaction: who the message is from and to whom it must go.
///
/// Recipients come from `RCPT TO` only — never from the message's headers (design.md principle 3):
/// that is how Bcc recipients are delivered without their addresses travelling in the message.
public struct Envelope: Hashable, Sendable {
    /// The reverse-path of `MAIL FROM`; `.null` for bounces (`<>`).
    public var reversePath: ReversePath
    /// ESMTP parameters given on `MAIL FROM` (SIZE, BODY, SMTPUTF8…).
    public var mailParameters: ESMTPParameters
    /// Accepted recipients in the order of their `RCPT TO` commands.
    public var forwardPaths: [ForwardPath]

    public init(
        reversePath: ReversePath, mailParameters: ESMTPParameters = ESMTPParameters(),
        forwardPaths: [ForwardPath] = []
    ) {
        self.reversePath = reversePath
        self.mailParameters = mailParameters
        self.forwardPaths = forwardPaths
    }

    /// True when the client declared SMTPUTF8 on MAIL, allowing UTF-8 addresses (RFC 6531 §3.4).
    public var allowsInternationalAddresses: Bool { mailParameters.contains("SMTPUTF8") }
}

/// What the client declared about the body on `MAIL FROM: … BODY=` (RFC 6152).
public enum BodyType: String, Hashable, Sendable {
    case sevenBit = "7BIT"
    case eightBitMIME = "8BITMIME"
}

/// The named limits of one SMTP session. Each has a default, a unit and a reason
/// (design.md principle 4); the server's configuration overrides them.
public struct SMTPLimits: Hashable, Sendable {
    /// Largest accepted message, in octets, after dot-unstuffing. Advertised as `SIZE` (RFC 1870).
    /// Default 7 MiB: ACS accepts requests up to 10 MB of JSON, and a message's base64 and text grow a little
    /// in the request (JSON escapes, re-encoded parts), so 7 MiB of MIME stays under it
    /// (smtp-behaviour #10) — a client that checks SIZE is not refused for size after its upload
    /// (`test_default_size_limit_advertised_size_is_accepted`). The exact check still happens after translation.
    public var maxMessageSize: Int = 7 * 1024 * 1024

    /// Longest command line in octets, including CRLF. RFC 5321 §4.5.3.1.4 requires at least 512;
    /// 2048 matches Postfix's `line_length_limit` and leaves room for long paths with parameters.
    public var maxCommandLineLength: Int = 2048

    /// Longest text line in DATA, in octets including CRLF. RFC 5321 §4.5.3.1.6 sets 1000, but real-world
    /// HTML exceeds it and the gateway re-encodes content for ACS anyway (smtp-behaviour #5), so the
    /// cap is generous: 64 KiB.
    public var maxTextLineLength: Int = 64 * 1024

    /// Recipients per transaction. Default 50: the ACS per-message maximum. Extra RCPTs get 452 so the
    /// client sends them in another transaction (RFC 5321 §4.5.3.1.10).
    public var maxRecipients: Int = 50

    /// Protocol errors tolerated per session before it is closed with 421 (smtp-behaviour #17:
    /// Postfix `smtpd_soft_error_limit = 10`). The session may make this many errors; the next one closes it.
    public var maxErrors: Int = 10

    /// Where `RCPT TO:<postmaster>` (RFC 5321 §4.1.1.3, §4.5.1), or postmaster at the gateway's own name, goes:
    /// this gateway has no local mailboxes, so the special recipient is mapped to this address. Without one the
    /// outbox keeps it as written, and with ``plainRecipientsOnly`` (ACS) it is refused (550 5.1.1), never
    /// accepted and then failed for the whole message by ACS
    /// (`SMTPSessionTests.postmaster_withoutAnAddress_isRefusedForACS_andNotAnError`).
    public var postmaster: Mailbox?

    /// Local recipients (`root`, `user@localhost`, a user at one of the host's names) and their aliases.
    public var localRecipients = LocalRecipients()

    /// What to do with a bare LF (not preceded by CR) in commands and message data.
    public var bareLineFeedPolicy: BareLineFeedPolicy = .normalize

    /// Accept only recipients of the plain `local@domain.tld` form: no quoted local part, no address literal
    /// (`[192.0.2.1]`), no domain without a dot, a local part of at most 64 octets. RFC 5321 allows the
    /// others, but ACS refuses them (`InvalidEmailAddress`, acs-email-api.md §2.2), and it refuses the whole
    /// message: refusing the one recipient at RCPT (553 5.1.3) lets the client deliver to the rest.
    /// On whenever delivery goes to ACS.
    public var plainRecipientsOnly = false

    public init() {}
}

extension Mailbox {
    /// Why this address is not of the plain `local@domain.tld` form, or nil when it is.
    public var notPlainReason: String? {
        if localPart.hasPrefix("\"") { return "a quoted local part" }
        if domain.hasPrefix("[") { return "an address literal" }
        if !domain.contains(".") { return "a domain without a dot" }
        if localPart.utf8.count > 64 { return "a local part longer than 64 octets" }
        return nil
    }
}

/// How bare line feeds are treated (RFC 5321 §2.3.8, smtp-behaviour #1 and #2).
///
/// Whatever the policy, a bare LF never ends message data: only `<CRLF>.<CRLF>` does, which is what
/// closes the SMTP smuggling class of attacks (CVE-2023-51764 and relatives).
public enum BareLineFeedPolicy: String, Hashable, Sendable, CaseIterable {
    /// Accept LF-terminated commands, and store a bare LF in message data as CRLF (Postfix `normalize`).
    case normalize
    /// Reject: a bare LF in a command gets 500 and the connection is closed; a bare LF in message data
    /// makes the message fail with 550 5.5.2 after its real end (Postfix `reject`).
    case reject
}
