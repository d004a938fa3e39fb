import Dispatch
import Glibc
import Logging
import SMTPProtocol

/// Why the server could not start.
public struct SMTPServerError: Error, CustomStringConvertible {
    public var description: String
}

/// The SMTP listener: non-blocking listening sockets watched by Dispatch read sources, one
/// `SMTPConnection` (with its own serial queue) per accepted client. No thread per connection.
///
/// Concurrency: the registry of connections and listeners lives on `queue`. Connection queues target one
/// shared concurrent queue, so connections run in parallel on Dispatch's bounded worker pool.
public final class SMTPServer: @unchecked Sendable {
    // Both change on a configuration reload (``reconfigure(_:submitter:)``); read and written on `queue`.
    private var configuration: SMTPServerConfiguration
    private var submitter: MessageSubmitter
    private let logger: Logger
    private let queue = DispatchQueue(label: "smtp.server")
    private let connectionTargetQueue = DispatchQueue(label: "smtp.connections", attributes: .concurrent)

    /// Connection and message counters since start (for the service manager's status line).
    public let statistics = SMTPServerStatistics()
    /// The same events, and latencies, for the metrics backend (Prometheus when the admin listener is on).
    private let metrics: SMTPServerMetrics

    /// The accept loop; created on `queue` by the first ``start()`` or ``adopt(listeningSocket:)``.
    private var listener: DispatchListener?
    /// What each listening socket offers, by its index in `listener`.
    private var boundListeners: [BoundListener] = []

    /// A listening socket: a network listener, or the local submission socket.
    private enum BoundListener {
        case network(SMTPListener)
        /// `unlinkAtStop`: the server made the socket file, so it removes it when it stops listening.
        case local(path: String, unlinkAtStop: Bool)
    }
    private let clock: MonotonicClock
    private var connections: [ObjectIdentifier: SMTPConnection] = [:]
    private var connectionsPerClient: [[UInt8]: Int] = [:]
    private var shuttingDown = false
    private var shutdownCompletion: (@Sendable () -> Void)?
    private var shutdownTimer: DispatchSourceTimer?

    public init(
        configuration: SMTPServerConfiguration, submitter: MessageSubmitter, logger: Logger,
        metrics: SMTPServerMetrics = SMTPServerMetrics(), clock: MonotonicClock = .system
    ) {
        self.configuration = configuration
        self.submitter = submitter
        self.logger = logger
        self.metrics = metrics
        self.clock = clock
    }

    /// Binds every listen address and starts accepting. Returns the bound addresses (with the real port
    /// when port 0 was asked for). On failure nothing stays bound.
    /// The local submission socket (``SMTPServerConfiguration/localSocketPath``) is bound too, unless
    /// `localSocket` is false (systemd passed one).
    @discardableResult
    public func start(localSocket: Bool = true) throws -> [SocketAddress] {
        try queue.sync {
            var bound: [(Int32, SMTPListener)] = []
            var local: Int32?
            do {
                for listener in configuration.listeners {
                    let (fd, address) = try ListeningSocket.bind(listener.address, backlog: configuration.listenBacklog)
                    var actual = listener
                    actual.address = address
                    bound.append((fd, actual))
                }
                if localSocket, let path = configuration.localSocketPath {
                    local = try ListeningSocket.bindLocal(path: path, backlog: configuration.listenBacklog)
                }
            } catch {
                for (fd, _) in bound { close(fd) }
                throw error
            }
            for (fd, listener) in bound { adoptListeningSocket(fd, as: .network(listener)) }
            if let local, let path = configuration.localSocketPath {
                adoptListeningSocket(local, as: .local(path: path, unlinkAtStop: true))
            }
            return bound.map { $0.1.address }
        }
    }

    /// Binds only the local submission socket (when configured) unless it is one of `inherited` (the paths of
    /// the local sockets systemd passed): for a daemon whose sockets came from systemd. The configured path is
    /// where the sendmail command connects (it reads the same file), so it is served even beside another one.
    public func startLocalSocket(inherited: [String] = []) throws {
        try queue.sync {
            guard let path = configuration.localSocketPath, !inherited.contains(path) else { return }
            let fd = try ListeningSocket.bindLocal(path: path, backlog: configuration.listenBacklog)
            adoptListeningSocket(fd, as: .local(path: path, unlinkAtStop: true))
        }
    }

    /// Starts accepting local submissions on an inherited, listening UNIX socket (systemd's
    /// `FileDescriptorName=sendmail`). systemd owns its file, so it stays when the server stops.
    public func adopt(localSocket fd: Int32, name: String) {
        queue.sync {
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            adoptListeningSocket(fd, as: .local(path: "inherited \(name)", unlinkAtStop: false))
        }
    }

    /// Starts accepting on an already-listening socket (inherited from systemd socket activation), as the
    /// configured listener its `FileDescriptorName=` names, else the one with its address, else a plain listener
    /// (no TLS, no AUTH). Returns what it serves.
    @discardableResult
    public func adopt(listeningSocket fd: Int32, name: String = "") throws -> SMTPListener {
        try queue.sync {
            guard let address = ListeningSocket.localAddress(of: fd) else {
                throw SMTPServerError(description: "inherited descriptor \(fd) is not an IPv4/IPv6 socket")
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            var listener =
                configuration.listeners.first { $0.name == name }
                ?? configuration.listeners.first { $0.address == address } ?? SMTPListener(address: address)
            listener.address = address
            adoptListeningSocket(fd, as: .network(listener))
            return listener
        }
    }

    /// Applies a reloaded configuration (SIGHUP): connections accepted from now on get `configuration` and
    /// `submitter`; open ones keep what they started with until they close, so nothing in flight changes
    /// under a client's feet. The listening sockets stay as they are (changing them needs a restart), and
    /// so does the shutdown grace period once a shutdown has begun.
    public func reconfigure(_ newConfiguration: SMTPServerConfiguration, submitter newSubmitter: MessageSubmitter) {
        queue.sync {
            var merged = newConfiguration
            merged.listeners = configuration.listeners
            merged.listenBacklog = configuration.listenBacklog
            if shuttingDown { merged.timeouts.shutdownGracePeriod = configuration.timeouts.shutdownGracePeriod }
            configuration = merged
            submitter = newSubmitter
        }
    }

    /// The configuration new connections get (for tests and the reload log).
    public var currentConfiguration: SMTPServerConfiguration { queue.sync { configuration } }

    /// Number of open connections (for status and tests).
    public var connectionCount: Int { queue.sync { connections.count } }

    /// Runs `body` on the server's registry queue, asynchronously. The service manager's watchdog pings
    /// from here, so a wedged registry queue (nothing accepted any more) stops the pings and systemd
    /// restarts the daemon (`WatchdogSec=`, systemd.service(5)).
    public func whenResponsive(_ body: @escaping @Sendable () -> Void) {
        queue.async(execute: body)
    }

    /// Graceful shutdown: stop accepting, let open transactions finish for up to the grace period, then
    /// close the rest with 421. `completion` runs once every connection is closed.
    public func shutdown(completion: @escaping @Sendable () -> Void) {
        queue.async { [self] in
            guard !shuttingDown else { return }
            shuttingDown = true
            shutdownCompletion = completion
            listener?.stop()
            unlinkLocalSockets()
            // The longest grace any open connection was configured with: a reload may have lowered the
            // default while a connection still delivers under the old settings (an ACS call with the old
            // retry budget); cutting it short would answer 421 to a message ACS may still accept.
            let grace = connections.values.map(\.shutdownGracePeriod)
                .reduce(configuration.timeouts.shutdownGracePeriod, max)
            logger.info(
                "shutting down: no new connections; open transactions may finish",
                metadata: ["connections": "\(connections.count)", "grace_s": "\(grace)"])
            for connection in connections.values { connection.requestShutdown() }
            let timer = DispatchSource.makeTimerSource(queue: queue)
            timer.schedule(deadline: .now() + grace)
            timer.setEventHandler { [self] in
                if !connections.isEmpty {
                    logger.warning(
                        "shutdown grace period over; closing remaining connections with 421",
                        metadata: ["connections": "\(connections.count)"])
                }
                for connection in connections.values { connection.forceClose() }
            }
            timer.resume()
            shutdownTimer = timer
            finishShutdownIfDone()
        }
    }

    // MARK: Accepting

    /// Seconds accepting pauses when `accept(2)` fails (out of descriptors): the pending connection stays in the
    /// backlog, and a closing connection ends the pause early.
    static let acceptPause = 0.1
    /// Connections accepted per wake-up of one listening socket, so one busy listener cannot starve the
    /// registry queue.
    static let maxAcceptsPerEvent = 256

    private func adoptListeningSocket(_ fd: Int32, as served: BoundListener) {
        dispatchPrecondition(condition: .onQueue(queue))
        let listener =
            self.listener
            ?? DispatchListener(
                queue: queue,
                options: .init(acceptPause: Self.acceptPause, maxAcceptsPerEvent: Self.maxAcceptsPerEvent),
                onConnection: { [unowned self] accepted in
                    switch boundListeners[accepted.listener] {
                    case .network(let listener):
                        guard let client = accepted.peer else {
                            close(accepted.fd)
                            return
                        }
                        admit(fd: accepted.fd, client: client, listener: listener)
                    case .local:
                        admitLocal(fd: accepted.fd)
                    }
                },
                onAcceptFailed: { [unowned self] error, pause in
                    logger.error(
                        "cannot accept connections: out of file descriptors; pausing new connections for \(Int(pause * 1000)) ms",
                        metadata: [
                            "error": "\(String(cString: strerror(error)))", "connections": "\(connections.count)",
                        ])
                })
        self.listener = listener
        let index = listener.listen(on: fd)
        precondition(index == boundListeners.count, "listening sockets are numbered in order")
        boundListeners.append(served)
        switch served {
        case .network(let served):
            logger.info(
                "listening",
                metadata: [
                    "address": "\(served.address)", "listener.tls": "\(served.tls.rawValue)",
                    "listener.auth": "\(served.auth.rawValue)",
                ])
        case .local(let path, _):
            logger.info("listening for local submissions (the sendmail command)", metadata: ["socket": "\(path)"])
        }
    }

    /// Removes the socket files this server made: a stopped daemon leaves nothing a client could connect to and
    /// wait on (the sendmail command then fails at once with a temporary error).
    private func unlinkLocalSockets() {
        for case .local(let path, unlinkAtStop: true) in boundListeners { unlink(path) }
    }

    private func admit(fd: Int32, client: SocketAddress, listener: SMTPListener) {
        if shuttingDown {
            refuse(fd: fd, client: .network(client), reply: .shuttingDown, reason: .shuttingDown)
            return
        }
        let trusted = configuration.allowedNetworks.contains { $0.contains(client) }
        // A listener with AUTH admits everyone: clients outside the trusted networks must authenticate before MAIL.
        guard trusted || listener.auth != .none else {
            refuse(fd: fd, client: .network(client), reply: .accessDenied, reason: .accessDenied)
            return
        }
        guard connections.count < configuration.maxConnections else {
            refuse(fd: fd, client: .network(client), reply: .tooManyConnections, reason: .connectionLimit)
            return
        }
        let clientKey = client.unmappedIPBytes
        let isLimited = !configuration.connectionLimitExceptions.contains { $0.contains(client) }
        guard !isLimited || connectionsPerClient[clientKey, default: 0] < configuration.maxConnectionsPerClient else {
            refuse(fd: fd, client: .network(client), reply: .tooManyConnectionsFromClient, reason: .clientLimit)
            return
        }
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let loopback = IPNetwork.loopback.contains { $0.contains(client) }
        let security = SessionSecurity(
            startTLSOffered: listener.tls == .starttls && configuration.tls != nil,
            tlsActive: listener.tls == .implicit, auth: listener.auth,
            authWithoutTLS: loopback || configuration.allowPlaintextAuth, trustedClient: trusted)
        open(fd: fd, client: .network(client), security: security)
        connectionsPerClient[clientKey, default: 0] += 1
    }

    /// A local process on the submission socket: identified by the kernel, trusted like a loopback client, and
    /// offered neither TLS nor AUTH (there is no network to protect and nobody to authenticate). The total
    /// connection limit applies; the per-client one does not, as for loopback: a minute's cron jobs may all
    /// send at once.
    private func admitLocal(fd: Int32) {
        guard let peer = LocalPeer.of(socket: fd) else {
            close(fd)
            return
        }
        if shuttingDown {
            refuse(fd: fd, client: .local(peer), reply: .shuttingDown, reason: .shuttingDown)
            return
        }
        guard connections.count < configuration.maxConnections else {
            refuse(fd: fd, client: .local(peer), reply: .tooManyConnections, reason: .connectionLimit)
            return
        }
        open(fd: fd, client: .local(peer), security: SessionSecurity(trustedClient: true))
    }

    /// Starts a connection on an admitted descriptor.
    private func open(fd: Int32, client: SMTPPeer, security: SessionSecurity) {
        let connectionQueue = DispatchQueue(label: "smtp.connection", target: connectionTargetQueue)
        let closed = ConnectionHandle()
        let stream = SocketStream(fd: fd, queue: connectionQueue) { [weak self] in
            // Once: the handle lets go of the connection, which breaks the stream → handle → connection cycle.
            guard let connection = closed.connection else { return }
            closed.connection = nil
            self?.connectionClosed(connection)
        }
        let connection = SMTPConnection(
            socket: stream, client: client, configuration: configuration, security: security,
            submitter: submitter, statistics: statistics, metrics: metrics, clock: clock, logger: logger)
        closed.connection = connection
        connections[ObjectIdentifier(connection)] = connection
        statistics.connectionAdmitted()
        metrics.connectionOpened()
        connection.start()
    }

    /// Answers a refused client with one reply and closes. The socket is non-blocking and the reply
    /// fits any send buffer, so this never waits.
    private func refuse(fd: Int32, client: SMTPPeer, reply: SMTPReply, reason: SMTPServerMetrics.RefusalReason) {
        logger.notice(
            "connection refused",
            metadata: [
                "smtp.client": "\(client)", "reason": "\(reason.text)",
                "smtp.reply": "\(reply)",
            ])
        statistics.connectionRefused()
        metrics.connectionRefused(reason)
        let bytes = reply.wireBytes
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        Glibc.shutdown(fd, Int32(SHUT_WR))
        close(fd)
    }

    private func connectionClosed(_ connection: SMTPConnection) {
        queue.async { [self] in
            connections[ObjectIdentifier(connection)] = nil
            listener?.connectionClosed()  // a descriptor is free: an accept pause ends now
            statistics.connectionClosed()
            metrics.connectionClosed()
            if let key = connection.client.address?.unmappedIPBytes {
                let remaining = connectionsPerClient[key, default: 1] - 1
                connectionsPerClient[key] = remaining > 0 ? remaining : nil
            }
            finishShutdownIfDone()
        }
    }

    /// Checks every connection's deadlines now, and returns once they were checked (tests that move an injected
    /// clock instead of sleeping). Never call it on a connection's queue.
    func checkTimeoutsNow() {
        for connection in queue.sync(execute: { Array(connections.values) }) { connection.checkTimeoutsNow() }
    }

    private func finishShutdownIfDone() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard shuttingDown, connections.isEmpty, let completion = shutdownCompletion else { return }
        shutdownCompletion = nil
        shutdownTimer?.cancel()
        logger.info("all connections closed")
        completion()
    }
}

/// The connection a closing stream reports: set once the connection exists (the stream is made first).
/// Touched on the connection's queue only after being set on the registry queue, before `start()`.
private final class ConnectionHandle: @unchecked Sendable {
    var connection: SMTPConnection?
}
