import Foundation
import SMTPProtocol

/// The seam between the SMTP server and whatever delivers messages (the outbox, ACS).
///
/// The server calls `submit` once per complete message and does not read further input from that
/// client until `completion` is called with the reply to send. `completion` may be called on any
/// thread, exactly once. Submitters must not block the calling queue: do the work elsewhere.
public protocol MessageSubmitter: Sendable {
    func submit(_ message: ReceivedMessage, completion: @escaping @Sendable (SMTPReply) -> Void)
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
