import Foundation

/// Paces sends to ACS for the whole gateway, because an ACS quota belongs to the resource, not to a message
/// (a new resource may send 30 a minute and 100 an hour).
///
/// - After a 429, nothing is sent until its `Retry-After` has passed; meanwhile hybrid mode spools at once.
/// - Optional configured rates (`acs.max_per_minute`, `acs.max_per_hour`) keep the gateway under a known
///   quota without provoking 429s: sliding windows over the starts of sends.
/// - A bounded number of spool sends in flight (`delivery.max_in_flight`; they share one HTTP/2 connection).
/// - It learns the quota: a 429 records how many sends ACS accepted since the last pause ended. After the
///   next pause, that many start freely; beyond them, one send at a time probes whether the window has room
///   (a larger quota, or older sends that left the window). So once the quota is known, each window costs
///   at most one 429 (the probe), however many messages wait. `DeliveryPacerTests` pins each rule.
///
/// Times are monotonic seconds from the injected clock. Thread-safe: the scheduler and the hybrid
/// submitter's connections ask it concurrently.
public final class DeliveryPacer: @unchecked Sendable {
    public struct Limits: Sendable, Hashable {
        /// Spool sends in flight at once. Default 16: enough to keep one HTTP/2 connection busy at ACS's
        /// latency, few enough that a quota boundary cannot be overrun by many requests at once.
        public var maxInFlight = 16
        /// Sends started in any `minuteWindow`; nil: no configured rate.
        public var perMinute: Int?
        /// Sends started in any `hourWindow`; nil: no configured rate.
        public var perHour: Int?
        /// The window lengths, in seconds (60 and 3600; shorter only in tests).
        public var minuteWindow: Double = 60
        public var hourWindow: Double = 3600
        /// The pause after a 429 that gave no `Retry-After`, in seconds. Default 60: ACS's minute quota.
        public var defaultPause: Double = 60

        public init() {}
    }

    /// Whether a send may start now.
    public enum Decision: Sendable, Equatable {
        /// Start it; report its outcome with ``finished(_:now:)`` exactly once.
        case go
        /// Not now: ask again at `until` (monotonic seconds), or when a send in flight finishes (`until` nil).
        case wait(until: Double?, reason: WaitReason)
    }

    public enum WaitReason: String, Sendable {
        /// ACS said 429; its `Retry-After` has not passed.
        case throttled
        /// A configured rate is used up for now.
        case rate
        /// The learned quota is used up: only a single probe may run.
        case probing
        /// `maxInFlight` sends are running.
        case busy
    }

    /// How a send that was allowed to start ended.
    public enum Outcome: Sendable, Equatable {
        case accepted
        case throttled(retryAfter: Double?)
        /// Anything else (refusal, outage): it tells nothing about the quota.
        case other
    }

    public let limits: Limits
    private let lock = NSLock()
    private var inFlight = 0
    private var pausedUntil: Double = -.infinity
    /// Starts inside the longest configured window, oldest first.
    private var starts: [Double] = []
    private var learnedBudget: Int?
    private var startedSinceResume = 0
    private var acceptedSinceResume = 0
    private var pauses = 0

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    /// Asks to start a send. `direct`: a first try inside an SMTP transaction, bounded by the SMTP
    /// connections already, so `maxInFlight` does not apply; it never probes (the scheduler does).
    public func request(now: Double, direct: Bool = false) -> Decision {
        lock.withLock {
            if now < pausedUntil { return .wait(until: pausedUntil, reason: .throttled) }
            if let resume = rateResume(now: now) { return .wait(until: resume, reason: .rate) }
            if let learnedBudget, startedSinceResume >= learnedBudget {
                if direct || inFlight > 0 { return .wait(until: nil, reason: .probing) }
            } else if !direct, inFlight >= limits.maxInFlight {
                return .wait(until: nil, reason: .busy)
            }
            inFlight += 1
            startedSinceResume += 1
            if limits.perMinute != nil || limits.perHour != nil { starts.append(now) }
            return .go
        }
    }

    /// Reports how a started send ended.
    public func finished(_ outcome: Outcome, now: Double) {
        lock.withLock {
            inFlight = max(0, inFlight - 1)
            switch outcome {
            case .accepted:
                acceptedSinceResume += 1
                if let learned = learnedBudget, acceptedSinceResume > learned {
                    learnedBudget = acceptedSinceResume  // a probe got through: the window has more room
                }
            case .throttled(let retryAfter):
                let until = now + max(1, retryAfter ?? limits.defaultPause)
                if now >= pausedUntil {
                    // A new pause (answers of sends already in flight only confirm it): learn what fit.
                    pauses += 1
                    learnedBudget = max(1, acceptedSinceResume)
                    startedSinceResume = 0
                    acceptedSinceResume = 0
                }
                pausedUntil = max(pausedUntil, until)
            case .other:
                break
            }
        }
    }

    /// The end of the current 429 pause, if one is running.
    public func pausedUntil(now: Double) -> Double? {
        lock.withLock { now < pausedUntil ? pausedUntil : nil }
    }

    /// Pauses started by a 429 since the gateway started (a metric).
    public var pauseCount: Int { lock.withLock { pauses } }

    /// Sends in flight now.
    public var sendsInFlight: Int { lock.withLock { inFlight } }

    /// When the configured rates allow the next start, or nil when they allow it now. Drops starts that
    /// have left the longest window.
    private func rateResume(now: Double) -> Double? {
        let longest = max(
            limits.perMinute == nil ? 0 : limits.minuteWindow, limits.perHour == nil ? 0 : limits.hourWindow)
        if let index = starts.firstIndex(where: { $0 > now - longest }) {
            if index > 0 { starts.removeFirst(index) }
        } else {
            starts.removeAll()
        }
        var resume: Double?
        for (limit, window) in [(limits.perMinute, limits.minuteWindow), (limits.perHour, limits.hourWindow)] {
            guard let limit else { continue }
            let inWindow = starts.filter { $0 > now - window }
            if inWindow.count >= limit {
                // The oldest start in the window leaves it first.
                let leaves = inWindow[inWindow.count - limit] + window
                resume = max(resume ?? leaves, leaves)
            }
        }
        return resume
    }
}
