/// ACS's send quotas (acs-email-api.md §5.1): at most ``perMinute`` accepted sends in any sliding minute and
/// ``perHour`` in any sliding hour; a send over either is answered 429 `TooManyRequests` with `Retry-After`.
/// Both are off by default. The windows can be shortened (a "minute" of 10 s) so tests see a window slide
/// without waiting a real minute.
///
/// Only sends that create an operation count: a refused send (400, 401, 409, a fault, a 429 itself) does
/// not, and neither does a repeated `Operation-Id`, which is the same operation and is answered as before
/// even when the quota is used up. Status reads (`GET /emails/operations/{id}`) are not limited: ACS's
/// separate status quota is twice the send quota, and a client that polls too often is better found by
/// `GET /admin/requests`.
public struct SendQuota: Sendable, Hashable {
    /// Accepted sends allowed in any window of ``minuteSeconds``. Nil: no per-minute quota.
    public var perMinute: Int?
    /// Accepted sends allowed in any window of ``hourSeconds``. Nil: no per-hour quota.
    public var perHour: Int?
    /// The length of the "minute" window in seconds (60 unless a test shortens it).
    public var minuteSeconds: Double
    /// The length of the "hour" window in seconds (3600 unless a test shortens it).
    public var hourSeconds: Double

    public init(perMinute: Int? = nil, perHour: Int? = nil, minuteSeconds: Double = 60, hourSeconds: Double = 3600) {
        self.perMinute = perMinute
        self.perHour = perHour
        self.minuteSeconds = minuteSeconds
        self.hourSeconds = hourSeconds
    }

    /// Whether no quota applies.
    public var isOff: Bool { perMinute == nil && perHour == nil }

    /// Why this quota cannot be used, or nil. A limit of 0 is refused: it would throttle every send with no
    /// send whose leaving the window could give a `Retry-After` (a `{"status":429}` fault does that).
    public var problem: String? {
        if let perMinute, perMinute < 1 { return "perMinute must be at least 1" }
        if let perHour, perHour < 1 { return "perHour must be at least 1" }
        for (name, seconds) in [("minuteSeconds", minuteSeconds), ("hourSeconds", hourSeconds)]
        where !(seconds > 0 && seconds <= Self.maxWindowSeconds) {
            return "\(name) must be more than 0 and at most \(Int(Self.maxWindowSeconds))"
        }
        return nil
    }

    /// A day: longer windows would only keep more send times in memory.
    static let maxWindowSeconds: Double = 86_400

    /// The quota with the members of a `POST /admin/quota` object applied: a number sets a member, `null`
    /// turns a limit off (or a window back to its real length), an absent member is left as it is.
    func updated(with json: JSONValue) -> Result<SendQuota, QuotaUpdateError> {
        guard case .object(let members) = json else {
            return .failure(QuotaUpdateError("the body must be a JSON object"))
        }
        var quota = self
        for (key, value) in members {
            switch (key, value) {
            case ("perMinute", .null): quota.perMinute = nil
            case ("perHour", .null): quota.perHour = nil
            case ("minuteSeconds", .null): quota.minuteSeconds = 60
            case ("hourSeconds", .null): quota.hourSeconds = 3600
            case ("perMinute", _), ("perHour", _):
                guard let limit = value.intValue else { return .failure(QuotaUpdateError("\(key) must be an integer")) }
                if key == "perMinute" { quota.perMinute = limit } else { quota.perHour = limit }
            case ("minuteSeconds", _), ("hourSeconds", _):
                guard let seconds = value.doubleValue else {
                    return .failure(QuotaUpdateError("\(key) must be a number"))
                }
                if key == "minuteSeconds" { quota.minuteSeconds = seconds } else { quota.hourSeconds = seconds }
            default:
                return .failure(QuotaUpdateError("unknown member '\(key)'"))
            }
        }
        if let problem = quota.problem {
            return .failure(QuotaUpdateError(problem))
        }
        return .success(quota)
    }

    /// `{"perMinute","perHour","minuteSeconds","hourSeconds"}`, limits `null` when off.
    var json: [String: JSONValue] {
        [
            "perMinute": perMinute.map { .integer(Int64($0)) } ?? .null,
            "perHour": perHour.map { .integer(Int64($0)) } ?? .null,
            "minuteSeconds": .number(minuteSeconds),
            "hourSeconds": .number(hourSeconds),
        ]
    }
}

/// Why a `POST /admin/quota` body was refused.
struct QuotaUpdateError: Error, Sendable, Equatable {
    var message: String

    init(_ message: String) {
        self.message = message
    }
}

/// A send refused by a quota: which one, and the whole seconds until a send is allowed again.
struct QuotaThrottle: Sendable, Hashable {
    var limit: Int
    var windowSeconds: Double
    var retryAfter: Int

    /// The ACS answer (§1.7 row 429).
    var response: ACSErrorResponse {
        ACSErrorResponse(
            status: 429, code: "TooManyRequests",
            message: "The send quota of \(limit) emails per \(Self.format(windowSeconds)) seconds was exceeded. "
                + "Try again in \(retryAfter) seconds.",
            headers: [("Retry-After", String(retryAfter))])
    }

    private static func format(_ seconds: Double) -> String {
        seconds == seconds.rounded() ? String(Int(seconds)) : String(seconds)
    }
}

/// The accepted sends of the last window, oldest first, and the decision for the next one.
///
/// Send times come from one clock in one actor, so they are appended in order and a window's sends are
/// found by binary search. Times older than the longer window are dropped as sends arrive.
struct SendQuotaWindow: Sendable {
    private var times: [ContinuousClock.Instant] = []
    /// Times before this index have left every window (dropped lazily, so appending stays amortised O(1)).
    private var start = 0

    /// Records a send at `now` and returns nil when `quota` allows it; otherwise records nothing and returns
    /// the quota that refused it, with the wait: until enough sends have left the full window that one more
    /// fits (for a window holding exactly its limit, until the oldest send leaves it), in whole seconds
    /// rounded up, at least 1. When both quotas refuse, the longer wait wins.
    mutating func admit(at now: ContinuousClock.Instant, quota: SendQuota) -> QuotaThrottle? {
        guard !quota.isOff else { return nil }
        prune(before: now - Self.duration(max(quota.minuteSeconds, quota.hourSeconds)))
        var refusal: QuotaThrottle?
        for (limit, seconds) in [(quota.perMinute, quota.minuteSeconds), (quota.perHour, quota.hourSeconds)] {
            guard let limit else { continue }
            let window = Self.duration(seconds)
            let first = firstIndex(after: now - window)
            let inWindow = times.count - first
            guard inWindow >= limit else { continue }
            // The send whose leaving brings the window below its limit.
            let wait = times[first + inWindow - limit] + window - now
            let retryAfter = max(1, Int(Self.seconds(wait).rounded(.up)))
            if retryAfter > refusal?.retryAfter ?? 0 {
                refusal = QuotaThrottle(limit: limit, windowSeconds: seconds, retryAfter: retryAfter)
            }
        }
        if refusal == nil {
            times.append(now)
        }
        return refusal
    }

    /// The sends counted in each window at `now`.
    func used(at now: ContinuousClock.Instant, quota: SendQuota) -> (minute: Int, hour: Int) {
        (
            times.count - firstIndex(after: now - Self.duration(quota.minuteSeconds)),
            times.count - firstIndex(after: now - Self.duration(quota.hourSeconds))
        )
    }

    mutating func reset() {
        times.removeAll()
        start = 0
    }

    /// The index of the first time later than `instant` (a send exactly one window old has left it).
    private func firstIndex(after instant: ContinuousClock.Instant) -> Int {
        var low = start
        var high = times.count
        while low < high {
            let middle = (low + high) / 2
            if times[middle] > instant { high = middle } else { low = middle + 1 }
        }
        return low
    }

    private mutating func prune(before instant: ContinuousClock.Instant) {
        start = firstIndex(after: instant)
        if start > 1024 && start > times.count / 2 {
            times.removeFirst(start)
            start = 0
        }
    }

    static func duration(_ seconds: Double) -> Duration {
        .nanoseconds(Int64((seconds * 1e9).rounded()))
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }
}
