import Glibc

/// Monotonic seconds for deadlines and durations, injectable so that tests move time forward instead of
/// sleeping through a timeout.
public struct MonotonicClock: Sendable {
    private let read: @Sendable () -> Double

    public init(_ read: @escaping @Sendable () -> Double) {
        self.read = read
    }

    /// Seconds since an arbitrary, fixed origin; never goes backwards.
    public func now() -> Double { read() }

    /// `CLOCK_MONOTONIC`: unaffected by changes to the wall clock (NTP steps, an administrator's `date`).
    public static let system = MonotonicClock {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}
