import Foundation
import SMTPProtocol

/// The seam between the SMTP server and whatever delivers messages (the outbox, ACS).
///
/// The server calls `submit` once per complete message and does not read further input from that
/// client until `completion` is called with the outcome. `completion` may be called on any thread,
/// exactly once. Submitters must not block the calling queue: do the work elsewhere.
///
/// The outcome is more than the reply: the connection, which knows the session, the envelope, the size
/// and the timing, writes the one audit line per message and counts it in the metrics, and the submitter
/// adds what only it knows (the ACS operation and status, a bounded reason).
public protocol MessageSubmitter: Sendable {
    func submit(_ message: ReceivedMessage, completion: @escaping @Sendable (SubmissionResult) -> Void)
}

/// What became of one submitted message: the reply the client gets, and facts for the audit line and metrics.
public struct SubmissionResult: Sendable, Hashable {
    public var reply: SMTPReply
    public var annotations: SubmissionAnnotations

    public init(reply: SMTPReply, annotations: SubmissionAnnotations) {
        self.reply = reply
        self.annotations = annotations
    }

    /// A reply with only a reason (no ACS facts): the outbox, tests.
    public init(_ reply: SMTPReply, reason: SubmissionReason) {
        self.init(reply: reply, annotations: SubmissionAnnotations(reason: reason))
    }
}

/// Facts a submitter knows about a message's outcome, for the audit line (never secrets, never content).
public struct SubmissionAnnotations: Sendable, Hashable {
    /// Why the message got its reply, as a metric label (bounded).
    public var reason: SubmissionReason
    /// The ACS operation id, when ACS was asked.
    public var acsOperationID: String?
    /// The operation's status as ACS last reported it (`Running`, `Succeeded`, `Failed`, `Canceled`).
    public var acsStatus: String?
    /// ACS's error code when it refused or failed the message (`InvalidEmailAddress`, `TooManyRequests`…).
    public var acsErrorCode: String?
    /// The `x-ms-request-id` of ACS's last answer, for support cases.
    public var acsRequestID: String?
    /// HTTP attempts made for the send.
    public var acsAttempts: Int?
    /// The translation rule that refuses the message for ACS (`senderNotMappable`…), also when the outbox
    /// stores it anyway.
    public var translationRejection: String?

    public init(
        reason: SubmissionReason, acsOperationID: String? = nil, acsStatus: String? = nil,
        acsErrorCode: String? = nil, acsRequestID: String? = nil, acsAttempts: Int? = nil,
        translationRejection: String? = nil
    ) {
        self.reason = reason
        self.acsOperationID = acsOperationID
        self.acsStatus = acsStatus
        self.acsErrorCode = acsErrorCode
        self.acsRequestID = acsRequestID
        self.acsAttempts = acsAttempts
        self.translationRejection = translationRejection
    }
}

/// Why a message got its reply: a short token from a fixed vocabulary, logged as `reason` and used as the
/// `reason` label of `acsgw_smtp_messages_total`. Only string literals make one, so label values stay bounded
/// (design.md principle 6: an extensible struct, not a closed enum, so submitters can add their own).
public struct SubmissionReason: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: String

    public init(_ rawValue: StaticString) {
        self.rawValue = rawValue.description
    }

    public var description: String { rawValue }

    /// The submitter gave no reason.
    public static let unspecified = SubmissionReason("unspecified")
    /// Written to the outbox.
    public static let stored = SubmissionReason("stored")
    /// The outbox could not be written (451).
    public static let storageFailed = SubmissionReason("storage_failed")
    /// The translation to ACS refused the message (sender policy, limits).
    public static let translationRefused = SubmissionReason("translation_refused")
    /// ACS accepted the message (202, or polled to Succeeded).
    public static let acsAccepted = SubmissionReason("acs_accepted")
    /// ACS's operation ended Failed or Canceled.
    public static let acsFailed = SubmissionReason("acs_failed")
    /// ACS refused the request (4xx with an ACS error).
    public static let acsRejected = SubmissionReason("acs_rejected")
    /// ACS refused the gateway's credentials (401/403).
    public static let acsAuthentication = SubmissionReason("acs_authentication")
    /// No credentials could be obtained (token endpoint, unreadable secret).
    public static let acsNoCredentials = SubmissionReason("acs_no_credentials")
    /// Still throttled (429) when the retry budget ran out.
    public static let acsThrottled = SubmissionReason("acs_throttled")
    /// 5xx, timeouts or network failures until the retry budget ran out.
    public static let acsUnavailable = SubmissionReason("acs_unavailable")
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
    public var clientAddress: SocketAddress
    /// The HELO/EHLO name the client gave.
    public var heloName: String
    /// "DATA" or "BDAT".
    public var transfer: String

    public init(sessionID: String, clientAddress: SocketAddress, heloName: String, transfer: String) {
        self.sessionID = sessionID
        self.clientAddress = clientAddress
        self.heloName = heloName
        self.transfer = transfer
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
