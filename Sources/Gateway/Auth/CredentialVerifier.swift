import Foundation

/// Runs password-hash checks on a small, fixed pool of threads of its own, with a bounded queue.
///
/// A yescrypt or bcrypt check takes tens of milliseconds of CPU on purpose. On the connections' Dispatch queues
/// an AUTH flood would occupy Dispatch's worker threads and starve every SMTP session; here it occupies at most
/// ``threadCount`` threads, and beyond ``maxQueued`` waiting checks a new one is refused at once (the client
/// gets `454 4.7.0` and may retry) instead of queueing without bound.
public final class CredentialVerifier: @unchecked Sendable {
    /// Checks that may wait for a thread; more are refused.
    public let maxQueued: Int
    public let threadCount: Int

    private let condition = NSCondition()
    private var jobs: [@Sendable () -> Void] = []
    private var stopped = false
    private var started = false

    /// - Parameter threads: default: half the processors (at least one), so checks never take every core. The
    ///   threads start with the first check: a gateway without AUTH has none.
    public init(threads: Int? = nil, maxQueued: Int = 128) {
        self.threadCount = max(1, threads ?? ProcessInfo.processInfo.activeProcessorCount / 2)
        self.maxQueued = maxQueued
    }

    /// Runs `job` on a pool thread; false (and `job` never runs) when the queue is full.
    public func submit(_ job: @escaping @Sendable () -> Void) -> Bool {
        condition.lock()
        defer { condition.unlock() }
        guard !stopped, jobs.count < maxQueued else { return false }
        if !started {
            started = true
            for index in 0..<threadCount {
                let thread = Thread { [self] in work() }
                thread.name = "auth-verify-\(index)"
                thread.start()
            }
        }
        jobs.append(job)
        condition.signal()
        return true
    }

    /// Lets the threads finish (tests); queued jobs still run.
    public func stop() {
        condition.lock()
        stopped = true
        condition.broadcast()
        condition.unlock()
    }

    private func work() {
        while true {
            condition.lock()
            while jobs.isEmpty && !stopped { condition.wait() }
            if jobs.isEmpty {
                condition.unlock()
                return
            }
            let job = jobs.removeFirst()
            condition.unlock()
            job()
        }
    }
}
