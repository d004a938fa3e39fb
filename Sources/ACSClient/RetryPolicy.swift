import Dispatch
import Glibc

/// When and how often a send is retried (acs-email-api.md §5.3). Units: seconds.
///
/// Every attempt of one message carries the same `Operation-Id`, so a retry after a request that did
/// reach ACS is recognised as the same operation and cannot send the mail twice.
public struct RetryPolicy: Sendable, Hashable {
    /// Total time for all attempts of one message, including waits. Default 60 s: well under the SMTP
    /// client's own wait for the reply to its message (RFC 5321 §4.5.3.2.6: 10 minutes), and short enough
    /// that a sender sees a 451 and requeues instead of hanging on an outage.
    public var budget: Double = 60

    /// Timeout of one attempt (connect, TLS, send, wait, receive). Default 20 s: far above a healthy ACS
    /// answer (well under a second) and well under the budget, so a stalled request is abandoned and retried.
    public var attemptTimeout: Double = 20

    /// Connection establishment timeout within an attempt. Default 10 s.
    public var connectTimeout: Double = 10

    /// First backoff when the server gave no `Retry-After`. Default 1 s, doubled each retry.
    public var initialBackoff: Double = 1

    /// Smallest wait between two attempts, even when the server says `Retry-After: 0`. Default 0.5 s.
    public var minimumDelay: Double = 0.5

    /// Largest backoff between two attempts. Default 16 s: with a 60 s budget that still leaves several tries.
    public var maxBackoff: Double = 16

    /// Largest `Retry-After` honoured inside the budget; a longer one ends the attempts at once (the SMTP
    /// client is told when to come back instead of waiting here).
    public var maxRetryAfter: Double = 60

    /// HTTP statuses worth another attempt (§5.3): throttling and server-side failures.
    public var retryableStatuses: Set<Int> = [408, 429, 500, 502, 503, 504]

    public init() {}

    /// The wait before attempt `attempt + 1` (attempt counts from 1), given the server's `Retry-After` if any
    /// and a uniform random number in 0..<1 for jitter ("full jitter" over the upper half of the backoff).
    public func delay(afterAttempt attempt: Int, retryAfter: Double?, random: Double) -> Double {
        if let retryAfter { return max(0, retryAfter) }
        let exponential = min(maxBackoff, initialBackoff * pow(2, Double(max(0, attempt - 1))))
        return exponential / 2 + exponential / 2 * random
    }
}

/// A source of time and delayed work, so retry schedules can be tested on a fake clock.
public protocol ACSClock: Sendable {
    /// Monotonic seconds.
    var now: Double { get }
    /// Runs `work` after `delay` seconds, on any queue.
    func schedule(after delay: Double, _ work: @escaping @Sendable () -> Void)
    /// A uniform random number in 0..<1 (jitter).
    func random() -> Double
}

/// The real clock: `CLOCK_MONOTONIC` and Dispatch timers.
public struct DispatchClock: ACSClock {
    private let queue: DispatchQueue

    public init(queue: DispatchQueue = DispatchQueue(label: "acs.client.timers")) {
        self.queue = queue
    }

    public var now: Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }

    public func schedule(after delay: Double, _ work: @escaping @Sendable () -> Void) {
        queue.asyncAfter(deadline: .now() + max(0, delay), execute: work)
    }

    public func random() -> Double { Double.random(in: 0..<1) }
}
