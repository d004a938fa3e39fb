import Dispatch
import Glibc

/// Listening sockets watched by Dispatch read sources on the owner's serial queue: the accept loop shared by
/// the SMTP listener and the admin listener.
///
/// Each wake-up accepts what is pending, bounded so that one busy socket cannot starve the queue. When
/// `accept(2)` fails — in practice the process is out of descriptors (EMFILE, ENFILE) or kernel memory
/// (ENOBUFS, ENOMEM) — the pending connection stays in the backlog and the level-triggered source would fire
/// again at once and spin, logging each time (test_resource_limits.py). The listener pauses instead, for
/// ``Options/acceptPause`` or until the owner reports a closed connection (a descriptor is free again),
/// whichever comes first. Any failure pauses: a short pause costs a client little, and a spin never ends.
///
/// Concurrency: every method runs on `queue` (asserted), which the owner also uses for its registry.
public final class DispatchListener: @unchecked Sendable {
    /// The accept loop's limits, each with its reason.
    public struct Options: Sendable {
        /// Seconds accepting pauses after `accept(2)` failed.
        public var acceptPause: Double
        /// Connections accepted per wake-up of one listening socket.
        public var maxAcceptsPerEvent: Int

        public init(acceptPause: Double, maxAcceptsPerEvent: Int) {
            self.acceptPause = acceptPause
            self.maxAcceptsPerEvent = maxAcceptsPerEvent
        }
    }

    /// One accepted connection: its descriptor (non-blocking, close-on-exec), the peer (nil when not IPv4 or
    /// IPv6; the owner closes such a descriptor) and the index of the listening socket it came through.
    public struct Accepted {
        public var fd: Int32
        public var peer: SocketAddress?
        public var listener: Int
    }

    public let queue: DispatchQueue
    public let options: Options
    /// `accept(2)` on a listening socket. A seam for tests (a failing accept without exhausting the test
    /// process's descriptors); set it before the first ``listen(on:)``.
    public var accept: @Sendable (Int32) -> ListeningSocket.Accepted = { ListeningSocket.accept(on: $0) }

    private let onConnection: (Accepted) -> Void
    private let onAcceptFailed: (_ error: Int32, _ pause: Double) -> Void
    private var sockets: [(fd: Int32, source: DispatchSourceRead)] = []
    private var state = State.accepting

    private enum State: Equatable {
        case accepting
        /// Sources suspended after a failed accept; the number tells pauses apart, so that the timer of a pause
        /// a closing connection ended early cannot cut a later pause short.
        case paused(Int)
        case stopped
    }
    private var pauses = 0

    /// - Parameters:
    ///   - onConnection: each accepted connection, on `queue`.
    ///   - onAcceptFailed: `accept(2)` failed with this errno and accepting pauses for this many seconds; the
    ///     owner logs it in its own words. Called once per pause.
    public init(
        queue: DispatchQueue, options: Options, onConnection: @escaping (Accepted) -> Void,
        onAcceptFailed: @escaping (_ error: Int32, _ pause: Double) -> Void
    ) {
        self.queue = queue
        self.options = options
        self.onConnection = onConnection
        self.onAcceptFailed = onAcceptFailed
    }

    deinit {
        // Releasing a suspended source crashes libdispatch; an unstopped listener would keep its sockets.
        if case .paused = state { for socket in sockets { socket.source.resume() } }
        for socket in sockets { socket.source.cancel() }
    }

    /// Starts accepting on a bound, listening, non-blocking socket; returns its index for ``Accepted/listener``.
    /// The socket is closed when the listener stops.
    @discardableResult
    public func listen(on fd: Int32) -> Int {
        dispatchPrecondition(condition: .onQueue(queue))
        let index = sockets.count
        guard state != .stopped else {
            close(fd)
            return index
        }
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        source.setEventHandler { [unowned self] in acceptPending(on: fd, index: index) }
        source.setCancelHandler { close(fd) }
        sockets.append((fd, source))
        source.resume()
        // While paused, it waits suspended like the others, and is resumed with them when the pause ends.
        if case .paused = state { source.suspend() }
        return index
    }

    /// A connection closed, so a descriptor is free: a pause ends now rather than at its timer.
    public func connectionClosed() {
        dispatchPrecondition(condition: .onQueue(queue))
        resume()
    }

    /// Stops accepting for good and closes the listening sockets (once their sources are cancelled).
    public func stop() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard state != .stopped else { return }
        // A suspended source never runs its cancel handler, which closes the socket: resume it first.
        if case .paused = state { for socket in sockets { socket.source.resume() } }
        state = .stopped
        for socket in sockets { socket.source.cancel() }
    }

    private func acceptPending(on fd: Int32, index: Int) {
        dispatchPrecondition(condition: .onQueue(queue))
        for _ in 0..<options.maxAcceptsPerEvent {
            guard state == .accepting else { return }
            switch accept(fd) {
            case .nothingPending:
                return
            case .failed(let error):
                pause(after: error)
                return
            case .connection(let connection, let peer):
                onConnection(Accepted(fd: connection, peer: peer, listener: index))
            }
        }
    }

    private func pause(after error: Int32) {
        guard state == .accepting else { return }
        pauses += 1
        let pause = pauses
        state = .paused(pause)
        for socket in sockets { socket.source.suspend() }
        onAcceptFailed(error, options.acceptPause)
        queue.asyncAfter(deadline: .now() + options.acceptPause) { [weak self] in
            guard let self, state == .paused(pause) else { return }
            resume()
        }
    }

    private func resume() {
        guard case .paused = state else { return }
        state = .accepting
        for socket in sockets { socket.source.resume() }
    }
}
