import Foundation

/// What the spool knows about one message: the `<id>.json` beside the raw `<id>.eml`, written whole and
/// atomically on every change, so a person can read it and a restart finds every fact it needs.
///
/// ```json
/// {
///   "attempts" : 2,
///   "client" : { "address" : "127.0.0.1", "helo" : "app.example", "sessionId" : "…", "transfer" : "DATA" },
///   "envelope" : { "mailFrom" : "app@example.com", "parameters" : { "SIZE" : "899" }, "rcptTo" : [ "…" ] },
///   "id" : "0192…", "lastError" : "HTTP 503: ServiceUnavailable", "nextAttemptAt" : "2026-12-07T10:01:00Z",
///   "operationId" : "0192…", "receivedAt" : "2026-12-07T10:00:00Z", "size" : 912, "state" : "queued"
/// }
/// ```
///
/// The spool knows envelopes and bytes, not the service that delivers them: `operationId` is an opaque
/// idempotency key fixed when the message is spooled and presented on every attempt, across restarts.
public struct SpoolRecord: Codable, Sendable, Hashable {
    /// The gateway's message id (a UUIDv7: sorting ids sorts by arrival). Also the file names.
    public var id: String
    /// The idempotency key every delivery attempt carries (ACS's `Operation-Id`). Never changes.
    public var operationID: String
    public var receivedAt: Date
    public var envelope: SpoolEnvelope
    public var client: SpoolClient
    /// Octets of the `.eml`.
    public var size: Int
    public var state: SpoolState
    /// Delivery attempts started (a status check counts as one when it replaced a send).
    public var attempts: Int = 0
    /// When the scheduler may next act on the message (send, check, poll or bounce).
    public var nextAttemptAt: Date
    /// The last failure, one line, for `queue list` and the audit line.
    public var lastError: String?
    /// An earlier attempt may have reached the service unseen (a crash, a timeout, a lost connection): ask
    /// whether the operation exists before sending again.
    public var outcomeUnknown: Bool = false
    /// When the service accepted the message (state `accepted`, following its final status).
    public var acceptedAt: Date?
    /// Status reads made while following the final status.
    public var polls: Int = 0
    /// Why the message bounces (state `bouncing`), or why it sits in `failed/`.
    public var failure: SpoolFailure?
    /// The state to return to when an operator releases a held message.
    public var heldFrom: SpoolState?
    /// The idempotency key of the bounce, fixed before its first attempt like ``operationID``.
    public var bounceOperationID: String?

    public init(
        id: String, operationID: String, receivedAt: Date, envelope: SpoolEnvelope, client: SpoolClient,
        size: Int, state: SpoolState = .queued, nextAttemptAt: Date
    ) {
        self.id = id
        self.operationID = operationID
        self.receivedAt = receivedAt
        self.envelope = envelope
        self.client = client
        self.size = size
        self.state = state
        self.nextAttemptAt = nextAttemptAt
    }

    enum CodingKeys: String, CodingKey {
        case id, receivedAt, envelope, client, size, state, attempts, nextAttemptAt, lastError, outcomeUnknown
        case acceptedAt, polls, failure, heldFrom
        case operationID = "operationId"
        case bounceOperationID = "bounceOperationId"
    }
}

/// Where a spooled message is in its life. Every change is one atomic rewrite of the record.
public enum SpoolState: String, Codable, Sendable, Hashable, CaseIterable {
    /// Waiting for its next attempt (`nextAttemptAt`).
    case queued
    /// An attempt was started and its outcome is not recorded yet. Found at start-up, it means the daemon
    /// stopped mid-attempt: the message is queued again with `outcomeUnknown`, never simply re-sent.
    case sending
    /// The service accepted it; its final status is being followed.
    case accepted
    /// Delivery failed for good; a bounce is to be sent (`failure` says why).
    case bouncing
    /// An operator put it on hold: never retried until released.
    case held
    /// Kept in `failed/` for inspection: its bounce could not be sent, or none was allowed.
    case failed
}

/// The SMTP envelope as text: `mailFrom` is "" for the null sender.
public struct SpoolEnvelope: Codable, Sendable, Hashable {
    public var mailFrom: String
    public var rcptTo: [String]
    /// MAIL FROM parameters; a keyword without a value (SMTPUTF8) maps to nil.
    public var parameters: [String: String?]

    public init(mailFrom: String, rcptTo: [String], parameters: [String: String?] = [:]) {
        self.mailFrom = mailFrom
        self.rcptTo = rcptTo
        self.parameters = parameters
    }
}

/// Where a message came from.
public struct SpoolClient: Codable, Sendable, Hashable {
    /// The client's IP address; `local` for a local process (see ``local``).
    public var address: String
    public var helo: String
    public var sessionID: String
    public var transfer: String
    /// The local user who submitted it (the sendmail command), as the kernel identified the process.
    public var local: SpoolLocalUser?

    public init(address: String, helo: String, sessionID: String, transfer: String, local: SpoolLocalUser? = nil) {
        self.address = address
        self.helo = helo
        self.sessionID = sessionID
        self.transfer = transfer
        self.local = local
    }

    enum CodingKeys: String, CodingKey {
        case address, helo, transfer, local
        case sessionID = "sessionId"
    }
}

/// A local process's user: `{"uid": 33, "gid": 33, "pid": 4242, "user": "www-data"}`.
public struct SpoolLocalUser: Codable, Sendable, Hashable {
    public var uid: UInt32
    public var gid: UInt32
    public var pid: Int32
    public var user: String?

    public init(uid: UInt32, gid: UInt32, pid: Int32, user: String?) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.user = user
    }
}

/// A permanent failure: the enhanced status code, the reason as the service gave it, and the
/// audit word for what happened (`rejected`, `failed`, `expired`, `bounce_failed`…).
public struct SpoolFailure: Codable, Sendable, Hashable {
    public var status: String
    public var diagnostic: String
    public var kind: String

    public init(status: String, diagnostic: String, kind: String) {
        self.status = status
        self.diagnostic = diagnostic
        self.kind = kind
    }
}

extension SpoolRecord {
    static let encoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }()

    static let decoder: JSONDecoder = {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }()

    /// The record as the `.json` file holds it.
    public func encoded() throws -> [UInt8] {
        Array(try Self.encoder.encode(self)) + [10]
    }

    public static func decode(_ bytes: [UInt8]) throws -> SpoolRecord {
        try decoder.decode(SpoolRecord.self, from: Data(bytes))
    }
}
