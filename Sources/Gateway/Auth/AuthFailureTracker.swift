import Foundation
import SMTPServer

/// Failed AUTH attempts per client address in a sliding window: the brute-force brake.
///
/// After ``Limits/maxFailures`` failures within ``Limits/window``, the address is limited until its oldest
/// counted failure leaves the window: every AUTH from it then gets a delay and `421 4.7.0`, and its password is
/// not even checked. A success clears the address's count (a user who mistyped is not held near the limit).
/// IPv4-mapped IPv6 clients count as their IPv4 address. Thread-safe; the clock is injected so tests move it.
public final class AuthFailureTracker: @unchecked Sendable {
    /// The brake's settings (`auth.max_failures`, `auth.failure_window`, `auth.failure_delay`).
    public struct Limits: Sendable, Hashable {
        /// Failures within the window that limit an address.
        public var maxFailures = 5
        /// Seconds a failure counts.
        public var window = 600.0
        /// Seconds a limited client waits before its `421`: slows scripted guessing, and fail2ban sees the line.
        public var delay = 5.0

        public init() {}
    }

    /// Addresses tracked at most; beyond it, those with only expired failures are dropped first. Bounds memory
    /// under a distributed attack.
    static let maxAddresses = 100_000

    private let lock = NSLock()
    private var failures: [[UInt8]: [Double]] = [:]
    private var limits: Limits
    private let clock: MonotonicClock

    public init(limits: Limits = Limits(), clock: MonotonicClock = .system) {
        self.limits = limits
        self.clock = clock
    }

    /// The current settings; a reload may change them (counts are kept).
    public var currentLimits: Limits {
        get { lock.withLock { limits } }
        set { lock.withLock { limits = newValue } }
    }

    /// Failures counted for `address` now.
    public func failureCount(_ address: SocketAddress) -> Int {
        lock.withLock { current(address.unmappedIPBytes, now: clock.now()).count }
    }

    /// True while `address` is over the limit.
    public func isLimited(_ address: SocketAddress) -> Bool {
        lock.withLock { current(address.unmappedIPBytes, now: clock.now()).count >= limits.maxFailures }
    }

    /// Counts a failure; returns the count within the window, this one included.
    @discardableResult
    public func recordFailure(_ address: SocketAddress) -> Int {
        lock.withLock {
            let now = clock.now()
            let key = address.unmappedIPBytes
            var times = current(key, now: now)
            times.append(now)
            if times.count > limits.maxFailures { times.removeFirst(times.count - limits.maxFailures) }
            failures[key] = times
            if failures.count > Self.maxAddresses { prune(now: now) }
            return times.count
        }
    }

    /// Forgets the address's failures.
    public func recordSuccess(_ address: SocketAddress) {
        lock.withLock { _ = failures.removeValue(forKey: address.unmappedIPBytes) }
    }

    private func current(_ key: [UInt8], now: Double) -> [Double] {
        (failures[key] ?? []).filter { now - $0 < limits.window }
    }

    private func prune(now: Double) {
        failures = failures.filter { _, times in times.contains { now - $0 < limits.window } }
        guard failures.count > Self.maxAddresses else { return }
        let newest = failures.sorted { ($0.value.last ?? 0) > ($1.value.last ?? 0) }.prefix(Self.maxAddresses)
        failures = Dictionary(uniqueKeysWithValues: newest.map { ($0.key, $0.value) })
    }
}
