import Foundation
import SMTPProtocol

/// Running counters of one `SMTPServer`, read by the daemon for the service manager's status line
/// (`STATUS=` of sd_notify(3)) and by tests. Thread-safe: connections update it from their own queues.
public final class SMTPServerStatistics: @unchecked Sendable {
    /// The counters at one instant. "Messages" are ends of data answered by the submitter (or by the
    /// submission timeout, the shutdown deadline, or a refusal at the end of DATA such as 552), classified by
    /// the reply the client got.
    public struct Snapshot: Hashable, Sendable {
        /// Connections open now.
        public var openConnections = 0
        /// Connections admitted since start (each got a 220 greeting).
        public var connectionsAdmitted = 0
        /// Connections answered with one 421/554 reply and closed at connect (limits, access, shutdown).
        public var connectionsRefused = 0
        /// Messages answered 2xx.
        public var messagesAccepted = 0
        /// Messages answered 4xx: the client keeps them and retries.
        public var messagesDeferred = 0
        /// Messages answered 5xx.
        public var messagesRejected = 0

        public init() {}
    }

    private let lock = NSLock()
    private var counters = Snapshot()

    public init() {}

    /// A consistent copy of every counter.
    public var snapshot: Snapshot { lock.withLock { counters } }

    func connectionAdmitted() {
        lock.withLock {
            counters.openConnections += 1
            counters.connectionsAdmitted += 1
        }
    }

    func connectionClosed() { lock.withLock { counters.openConnections -= 1 } }

    func connectionRefused() { lock.withLock { counters.connectionsRefused += 1 } }

    func messageAnswered(_ reply: SMTPReply) {
        lock.withLock {
            if reply.isPositive {
                counters.messagesAccepted += 1
            } else if reply.isTransientFailure {
                counters.messagesDeferred += 1
            } else {
                counters.messagesRejected += 1
            }
        }
    }
}
