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

    private var listeners: [(fd: Int32, source: DispatchSourceRead, address: SocketAddress)] = []
    /// True while accepting is paused because the process ran out of descriptors.
    private var acceptPaused = false
    private var connections: [ObjectIdentifier: SMTPConnection] = [:]
    private var connectionsPerClient: [[UInt8]: Int] = [:]
    private var shuttingDown = false
    private var shutdownCompletion: (@Sendable () -> Void)?
    private var shutdownTimer: DispatchSourceTimer?

    public init(
        configuration: SMTPServerConfiguration, submitter: MessageSubmitter, logger: Logger,
        metrics: SMTPServerMetrics = SMTPServerMetrics()
    ) {
        self.configuration = configuration
        self.submitter = submitter
        self.logger = logger
        self.metrics = metrics
    }

    /// Binds every listen address and starts accepting. Returns the bound addresses (with the real port
    /// when port 0 was asked for). On failure nothing stays bound.
    @discardableResult
    public func start() throws -> [SocketAddress] {
        try queue.sync {
            var bound: [(Int32, SocketAddress)] = []
            do {
                for address in configuration.listenAddresses {
                    bound.append(try ListeningSocket.bind(address, backlog: configuration.listenBacklog))
                }
            } catch {
                for (fd, _) in bound { close(fd) }
                throw error
            }
            for (fd, address) in bound { adoptListeningSocket(fd, address: address) }
            return bound.map { $0.1 }
        }
    }

    /// Starts accepting on an already-listening socket (inherited from systemd socket activation).
    public func adopt(listeningSocket fd: Int32) throws -> SocketAddress {
        try queue.sync {
            guard let address = ListeningSocket.localAddress(of: fd) else {
                throw SMTPServerError(description: "inherited descriptor \(fd) is not an IPv4/IPv6 socket")
            }
            _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
            adoptListeningSocket(fd, address: address)
            return address
        }
    }

    /// Applies a reloaded configuration (SIGHUP): connections accepted from now on get `configuration` and
    /// `submitter`; open ones keep what they started with until they close, so nothing in flight changes
    /// under a client's feet. The listening sockets stay as they are (changing them needs a restart), and
    /// so does the shutdown grace period once a shutdown has begun.
    public func reconfigure(_ newConfiguration: SMTPServerConfiguration, submitter newSubmitter: MessageSubmitter) {
        queue.sync {
            var merged = newConfiguration
            merged.listenAddresses = configuration.listenAddresses
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
            for listener in listeners {
                if acceptPaused { listener.source.resume() }  // a suspended source never runs its cancel handler
                listener.source.cancel()
            }
            acceptPaused = false
            listeners = []
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
                    logger.warning("shutdown grace period over; closing remaining connections with 421",
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

    private func adoptListeningSocket(_ fd: Int32, address: SocketAddress) {
        dispatchPrecondition(condition: .onQueue(queue))
        let source = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        source.setEventHandler { [unowned self] in acceptConnections(on: fd) }
        source.setCancelHandler { close(fd) }
        listeners.append((fd, source, address))
        source.resume()
        logger.info("listening", metadata: ["address": "\(address)"])
    }

    private func acceptConnections(on listenFD: Int32) {
        dispatchPrecondition(condition: .onQueue(queue))
        // Accept everything pending, bounded so one busy listener cannot starve the registry queue.
        for _ in 0..<256 {
            switch ListeningSocket.accept(on: listenFD) {
            case .nothingPending:
                return
            case .failed(let error):
                if error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM {
                    pauseAccepting(reason: String(cString: strerror(error)))
                } else {
                    logger.error("accept failed", metadata: ["error": "\(String(cString: strerror(error)))"])
                }
                return
            case .connection(let fd, nil):
                close(fd)
            case .connection(let fd, let client?):
                admit(fd: fd, client: client)
            }
        }
    }

    /// Out of descriptors: the pending connection stays in the backlog and the source would fire again at
    /// once, so listening pauses for a moment instead of spinning. Logged once per episode.
    private func pauseAccepting(reason: String) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !acceptPaused else { return }
        acceptPaused = true
        logger.error(
            "cannot accept connections: out of file descriptors; pausing new connections for 100 ms",
            metadata: ["error": "\(reason)", "connections": "\(connections.count)"])
        for listener in listeners { listener.source.suspend() }
        queue.asyncAfter(deadline: .now() + .milliseconds(100)) { [self] in
            guard acceptPaused else { return }
            acceptPaused = false
            for listener in listeners { listener.source.resume() }
        }
    }

    private func admit(fd: Int32, client: SocketAddress) {
        if shuttingDown {
            refuse(fd: fd, client: client, reply: .shuttingDown, reason: .shuttingDown)
            return
        }
        guard configuration.allowedNetworks.contains(where: { $0.contains(client) }) else {
            refuse(fd: fd, client: client, reply: .accessDenied, reason: .accessDenied)
            return
        }
        guard connections.count < configuration.maxConnections else {
            refuse(fd: fd, client: client, reply: .tooManyConnections, reason: .connectionLimit)
            return
        }
        let clientKey = client.unmappedIPBytes
        let isLimited = !configuration.connectionLimitExceptions.contains { $0.contains(client) }
        guard !isLimited || connectionsPerClient[clientKey, default: 0] < configuration.maxConnectionsPerClient else {
            refuse(fd: fd, client: client, reply: .tooManyConnectionsFromClient, reason: .clientLimit)
            return
        }
        var one: Int32 = 1
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        let connection = SMTPConnection(
            fd: fd, clientAddress: client, configuration: configuration, submitter: submitter,
            statistics: statistics, metrics: metrics, targetQueue: connectionTargetQueue, logger: logger
        ) { [weak self] connection in
            self?.connectionClosed(connection)
        }
        connections[ObjectIdentifier(connection)] = connection
        connectionsPerClient[clientKey, default: 0] += 1
        statistics.connectionAdmitted()
        metrics.connectionOpened()
        connection.start()
    }

    /// Answers a refused client with one reply and closes. The socket is non-blocking and the reply
    /// fits any send buffer, so this never waits.
    private func refuse(fd: Int32, client: SocketAddress, reply: SMTPReply, reason: SMTPServerMetrics.RefusalReason) {
        logger.notice("connection refused", metadata: ["smtp.client": "\(client)", "reason": "\(reason.text)",
                                                        "smtp.reply": "\(reply)"])
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
            statistics.connectionClosed()
            metrics.connectionClosed()
            let key = connection.clientAddress.unmappedIPBytes
            let remaining = connectionsPerClient[key, default: 1] - 1
            connectionsPerClient[key] = remaining > 0 ? remaining : nil
            finishShutdownIfDone()
        }
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
