import Foundation

/// A scripted misbehaviour, posted as JSON to `POST /admin/faults` (see the module documentation).
///
/// A fault applies to requests on its `route` whose sender and recipients match its patterns, `count`
/// times (then it is used up; no count: forever). Faults are checked in the order they were posted and
/// the first match wins. What it does:
/// - `status` (400–599): answer with that status and the ACS error shape (`code`/`message`, defaults per
///   status); `retryAfter` adds `Retry-After` (429 `TooManyRequests`, or a 5xx that asks for a pause).
/// - `delayMs`: stall that long first, then answer with `status` if given, otherwise normally.
/// - `finalStatus` (`Failed`/`Canceled`/`Succeeded`): accept the send, but polling ends with that status
///   and `error` `{code, message}`. Used up only when a send is accepted.
///
/// An outage (`outageMs`) is timed instead of counted: for that many milliseconds after it is posted, every
/// request on its route is answered `status` (503 `ServiceUnavailable` by default; `retryAfter` adds
/// `Retry-After`) or, with `refuse`, gets its connection dropped without an answer (a network failure for
/// the client), before authentication and every other check; then it ends by itself. An outage takes no
/// patterns, `count`, `delayMs` or `finalStatus`: a service that is down is down for everyone. `refuse` is
/// for outages only: libcurl resends a request once, on a new connection, when a reused connection closes
/// before any answer, so one dropped request would go unseen (OutageTests pin both kinds).

public struct Fault: Sendable, Hashable, Codable {
    /// `send` (the default), `poll` or `any`.
    public var route: String?
    /// A pattern for `senderAddress`: `*` any run of characters, `?` one character, case-insensitive.
    public var sender: String?
    /// A pattern that at least one recipient (to, cc or bcc) must match.
    public var recipient: String?
    /// How many requests the fault applies to before it is used up. Nil: unlimited.
    public var count: Int?
    public var status: Int?
    public var retryAfter: Int?
    public var code: String?
    public var message: String?
    public var delayMs: Int?
    public var finalStatus: String?
    /// During an outage, drop the connection instead of answering.
    public var refuse: Bool?
    /// The length of an outage in milliseconds, from when the fault is posted. `GET /admin/faults` shows
    /// what is left of it.
    public var outageMs: Int?

    public init(
        route: String? = nil, sender: String? = nil, recipient: String? = nil, count: Int? = nil,
        status: Int? = nil, retryAfter: Int? = nil, code: String? = nil, message: String? = nil,
        delayMs: Int? = nil, finalStatus: String? = nil, refuse: Bool? = nil, outageMs: Int? = nil
    ) {
        self.route = route
        self.sender = sender
        self.recipient = recipient
        self.count = count
        self.status = status
        self.retryAfter = retryAfter
        self.code = code
        self.message = message
        self.delayMs = delayMs
        self.finalStatus = finalStatus
        self.refuse = refuse
        self.outageMs = outageMs
    }

    /// The terminal statuses a `finalStatus` may name (acs-email-api.md §1.6).
    static let finalStatuses = ["Succeeded", "Failed", "Canceled"]

    /// Why this fault cannot be used, or nil.
    var problem: String? {
        if status == nil && delayMs == nil && finalStatus == nil && outageMs == nil {
            return "a fault needs status, delayMs, finalStatus or outageMs"
        }
        if let status, !(400...599).contains(status) {
            return "status must be between 400 and 599"
        }
        if let route, !["send", "poll", "any"].contains(route) {
            return "route must be send, poll or any"
        }
        if let count, count < 1 {
            return "count must be at least 1"
        }
        if let delayMs, delayMs < 0 || delayMs > 600_000 {
            return "delayMs must be between 0 and 600000"
        }
        if let retryAfter, retryAfter < 0 {
            return "retryAfter must not be negative"
        }
        if let finalStatus {
            if !Self.finalStatuses.contains(finalStatus) {
                return "finalStatus must be Succeeded, Failed or Canceled"
            }
            if route == "poll" {
                return "finalStatus applies to sends, not to polls"
            }
        }
        if refuse == true && outageMs == nil {
            return "refuse needs outageMs: a single dropped request is resent unseen by clients such as libcurl"
        }
        if refuse == true && status != nil {
            return "refuse drops the connection: it takes no status"
        }
        if let outageMs {
            if outageMs < 1 || outageMs > Self.maxOutageMs {
                return "outageMs must be between 1 and \(Self.maxOutageMs)"
            }
            if sender != nil || recipient != nil || count != nil || delayMs != nil || finalStatus != nil {
                return "an outage applies to every request on its route for its duration: "
                    + "sender, recipient, count, delayMs and finalStatus do not apply"
            }
        }
        return nil
    }

    /// An hour: long enough for any test of a client's patience, short enough that a forgotten outage ends.
    static let maxOutageMs = 3_600_000

    /// Whether this fault is an outage (timed, checked before everything else) rather than a counted fault.
    var isOutage: Bool { outageMs != nil }

    /// The status an answering fault gives: its own, or 503 for an outage that does not drop connections.
    var answerStatus: Int? {
        status ?? (isOutage && refuse != true ? 503 : nil)
    }

    /// Whether the fault applies to a request on `route` from `senderAddress` to `recipients`. A pattern
    /// cannot match a request whose body could not be read.
    func matches(route requestRoute: EmulatorRoute, senderAddress: String?, recipients: [String]) -> Bool {
        switch route ?? "send" {
        case "any": break
        case "poll": guard requestRoute == .poll else { return false }
        default: guard requestRoute == .send else { return false }
        }
        if let sender {
            guard let senderAddress, Self.glob(sender, matches: senderAddress) else { return false }
        }
        if let recipient {
            guard recipients.contains(where: { Self.glob(recipient, matches: $0) }) else { return false }
        }
        return true
    }

    /// `*` and `?` wildcards, case-insensitive, over Unicode scalars.
    static func glob(_ pattern: String, matches text: String) -> Bool {
        let p = Array(pattern.lowercased().unicodeScalars)
        let t = Array(text.lowercased().unicodeScalars)
        var pi = 0
        var ti = 0
        var star: Int?
        var resume = 0
        while ti < t.count {
            if pi < p.count && (p[pi] == "?" || p[pi] == t[ti]) {
                pi += 1
                ti += 1
            } else if pi < p.count && p[pi] == "*" {
                star = pi
                resume = ti
                pi += 1
            } else if let star {
                pi = star + 1
                resume += 1
                ti = resume
            } else {
                return false
            }
        }
        while pi < p.count && p[pi] == "*" { pi += 1 }
        return pi == p.count
    }
}

/// The emulated ACS routes, as counted by `GET /admin/requests`.
public enum EmulatorRoute: String, Sendable, Hashable, Codable, CaseIterable {
    /// `POST /emails:send`
    case send
    /// `GET /emails/operations/{id}`
    case poll
    /// Anything else that is not an admin route (404, 405).
    case other
}
