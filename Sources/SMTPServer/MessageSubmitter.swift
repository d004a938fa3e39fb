import Foundation
import SMTPProtocol

/// The seam between the SMTP server and whatever delivers messages (the outbox, ACS, the spool).
///
/// The server calls `submit` once per complete message and does not read further input from that
/// client until `completion` is called with the outcome. `completion` may be called on any thread,
/// exactly once. Submitters must not block the calling queue: do the work elsewhere.
///
/// The outcome is more than the reply: the connection, which knows the session, the envelope, the size
/// and the timing, writes the one audit line per message and counts it in the metrics, and the submitter
/// adds what only it knows as bounded audit fields. The server speaks SMTP only: what those fields mean
/// (a delivery service's operation id, status, error code) is the submitter's business.
public protocol MessageSubmitter: Sendable {
    func submit(_ message: ReceivedMessage, completion: @escaping @Sendable (SubmissionResult) -> Void)

    /// The reply for a new transaction (MAIL FROM) when the submitter cannot take one now (its storage is
    /// full or unwritable), else nil. Asked before each MAIL, so a client hears 452 before it sends the
    /// message rather than after. The default takes everything.
    func admissionRefusal() -> SMTPReply?
}

extension MessageSubmitter {
    public func admissionRefusal() -> SMTPReply? { nil }
}

/// What became of one submitted message: the reply the client gets, and facts for the audit line and metrics.
public struct SubmissionResult: Sendable, Hashable {
    public var reply: SMTPReply
    /// Why the message got its reply, as a metric label (bounded).
    public var reason: SubmissionReason
    /// The submitter's facts for the audit line, in order (never secrets, never content).
    public var auditFields: [AuditField]

    public init(reply: SMTPReply, reason: SubmissionReason, auditFields: [AuditField] = []) {
        self.reply = reply
        self.reason = reason
        self.auditFields = auditFields
    }

    /// A reply with only a reason: the outbox, tests.
    public init(_ reply: SMTPReply, reason: SubmissionReason) {
        self.init(reply: reply, reason: reason)
    }

    /// The value of the audit field `key`, if the submitter gave one.
    public subscript(field key: String) -> String? {
        auditFields.first { $0.key == key }?.value
    }
}

/// One fact for the audit line: a key from a fixed vocabulary (only string literals make one, so log and
/// metric keys stay bounded) and its value.
public struct AuditField: Sendable, Hashable {
    public let key: String
    public var value: String

    public init(_ key: StaticString, _ value: String) {
        self.key = key.description
        self.value = value
    }
}

/// Why a message got its reply: a short token from a fixed vocabulary, logged as `reason` and used as the
/// `reason` label of `acsgw_smtp_messages_total`. Only string literals make one, so label values stay bounded
/// (design.md principle 6: an extensible struct, not a closed enum, so submitters add their own; the
/// delivery reasons live with the submitters in `Gateway`).
public struct SubmissionReason: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String

    public init(_ rawValue: StaticString) {
        self.rawValue = rawValue.description
    }

    public var description: String { rawValue }

    /// The submitter gave no reason.
    public static let unspecified = SubmissionReason("unspecified")
    /// The submitter did not answer within the submission timeout (set by the connection).
    public static let submissionTimeout = SubmissionReason("submission_timeout")
    /// The shutdown deadline came while the message was being delivered (set by the connection).
    public static let shutdown = SubmissionReason("shutdown")
    /// The message was larger than the size limit (refused at the end of DATA).
    public static let tooLarge = SubmissionReason("too_large")
    /// A text line was longer than the limit (refused at the end of DATA).
    public static let lineTooLong = SubmissionReason("line_too_long")
    /// A bare LF with `--bare-lf reject` (refused at the end of DATA).
    public static let bareLineFeed = SubmissionReason("bare_lf")
    /// The submitter could not take a new transaction (refused at MAIL).
    public static let admissionRefused = SubmissionReason("admission_refused")
}

/// A message as received over SMTP, with its envelope and where it came from.
public struct ReceivedMessage: Sendable {
    /// Unique, time-ordered id (UUIDv7), used in logs, file names and replies.
    public var id: String
    public var receivedAt: Date
    public var envelope: Envelope
    /// The message octets: dot-unstuffed, CRLF line ends.
    public var data: [UInt8]
    public var session: SessionInfo

    public init(id: String, receivedAt: Date, envelope: Envelope, data: [UInt8], session: SessionInfo) {
        self.id = id
        self.receivedAt = receivedAt
        self.envelope = envelope
        self.data = data
        self.session = session
    }
}

/// Facts about the SMTP session a message arrived on.
public struct SessionInfo: Sendable, Hashable {
    /// Short random id shared by every log line of the session.
    public var sessionID: String
    /// The network client, or the local process (the sendmail command) as the kernel identified it.
    public var client: SMTPPeer
    /// The HELO/EHLO name the client gave.
    public var heloName: String
    /// "DATA" or "BDAT".
    public var transfer: String

    public init(sessionID: String, client: SMTPPeer, heloName: String, transfer: String) {
        self.sessionID = sessionID
        self.client = client
        self.heloName = heloName
        self.transfer = transfer
    }

    /// A session from a network client.
    public init(sessionID: String, clientAddress: SocketAddress, heloName: String, transfer: String) {
        self.init(sessionID: sessionID, client: .network(clientAddress), heloName: heloName, transfer: transfer)
    }
}

/// Identifiers for sessions and messages.
public enum Identifiers {
    /// A UUIDv7 (RFC 9562 §5.7): 48-bit Unix milliseconds, then random bits. Sorting ids sorts by
    /// arrival time, which keeps an outbox directory listing in order, and it is a valid ACS Operation-Id.
    public static func messageID(now: Date = Date()) -> String {
        var generator = SystemRandomNumberGenerator()
        var bytes = (0..<16).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let milliseconds = UInt64(max(0, now.timeIntervalSince1970 * 1000))
        for index in 0..<6 { bytes[index] = UInt8(truncatingIfNeeded: milliseconds >> (8 * (5 - index))) }
        bytes[6] = 0x70 | (bytes[6] & 0x0F)  // version 7
        bytes[8] = 0x80 | (bytes[8] & 0x3F)  // RFC 9562 variant
        let hex = hexString(bytes)
        let parts = [hex.prefix(8), hex.dropFirst(8).prefix(4), hex.dropFirst(12).prefix(4),
                     hex.dropFirst(16).prefix(4), hex.dropFirst(20)]
        return parts.joined(separator: "-")
    }

    /// When a message id (``messageID(now:)``) was made, from its 48-bit millisecond prefix; nil for
    /// anything else.
    public static func timestamp(ofMessageID id: String) -> Date? {
        let hex = id.replacingOccurrences(of: "-", with: "").prefix(12)
        guard hex.count == 12, let milliseconds = UInt64(hex, radix: 16) else { return nil }
        return Date(timeIntervalSince1970: Double(milliseconds) / 1000)
    }

    /// Twelve random hex digits: enough to tell sessions apart in logs.
    public static func sessionID() -> String {
        var generator = SystemRandomNumberGenerator()
        return hexString((0..<6).map { _ in UInt8.random(in: .min ... .max, using: &generator) })
    }

    private static func hexString(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef")
        return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0F)]] })
    }
}
