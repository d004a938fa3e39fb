import Dispatch
import Foundation
import Glibc
import Logging
import Prometheus
import SMTPServer

/// Why the admin listener cannot be configured or started.
public struct AdminServerError: Error, CustomStringConvertible {
    public var description: String
}

/// Whether the gateway should get traffic: `/readyz` answers 200 only while ``State/ready``.
public final class ServiceReadiness: @unchecked Sendable {
    public enum State: String, Sendable {
        /// Not listening yet.
        case starting
        /// Listening for SMTP.
        case ready
        /// A shutdown began: no new connections are accepted.
        case stopping
    }

    private let lock = NSLock()
    private var current = State.starting
    private var dependency: (@Sendable () -> String?)?

    public init() {}

    public var state: State { lock.withLock { current } }

    /// Adds a condition for readiness: while it returns a reason, `/readyz` answers 503 with it.
    public func require(_ check: @escaping @Sendable () -> String?) { lock.withLock { dependency = check } }

    /// Why the gateway is not ready although listening, if anything.
    public var notReadyReason: String? { lock.withLock { dependency }?() }

    /// The SMTP listener is up.
    public func markReady() { lock.withLock { if current == .starting { current = .ready } } }

    /// The shutdown started; this is final.
    public func markStopping() { lock.withLock { current = .stopping } }
}

/// The optional admin HTTP listener: `GET /metrics` (Prometheus text), `GET /healthz` (200 while the SMTP
/// server's queue answers), `GET /readyz` (200 once listening and until the shutdown starts, else 503).
///
/// Loopback only — the routes have no authentication — and strict, since anything local may connect: one
/// request per connection, a request head of at most 8 KiB read within a few seconds (else 431 or 408),
/// GET and HEAD only (405), unknown paths 404, `Connection: close` after each response, and a bounded number
/// of connections at once. It runs on Dispatch like the SMTP listener (one serial queue, read/write sources,
/// no thread per connection) and shares its socket helpers; the gateway links no SwiftNIO.
public final class AdminServer: @unchecked Sendable {
    /// Every limit with its default and reason (design.md principle 4).
    public struct Limits: Sendable {
        /// Request line and header fields, in octets: a scrape request is a few hundred.
        public var maxHeadOctets = 8 * 1024
        /// Seconds from accept to a complete request head (slow clients are answered 408 and closed).
        public var readTimeout = 5.0
        /// Seconds to write a response (a client that does not read is cut off).
        public var writeTimeout = 5.0
        /// Seconds `/healthz` waits for the SMTP server's queue before answering 503.
        public var livenessTimeout = 2.0
        /// Admin connections at once; more are answered 503 and closed.
        public var maxConnections = 16
        /// Seconds the listener pauses after `accept(2)` failed (out of descriptors: EMFILE, ENFILE, ENOBUFS,
        /// ENOMEM). The pending connection stays in the backlog and would wake the listener again at once, so
        /// retrying without a pause spins and floods the log
        /// (`test_admin_listener_out_of_descriptors_pauses_instead_of_spinning_and_recovers`). A closing admin
        /// connection
        /// frees a descriptor and ends the pause early.
        public var acceptPause = 0.2

        public init() {}
    }

    public let address: SocketAddress
    public let readiness: ServiceReadiness
    let limits: Limits
    private let registry: PrometheusCollectorRegistry
    private let liveness: @Sendable (@escaping @Sendable () -> Void) -> Void
    private let logger: Logger
    private let queue = DispatchQueue(label: "gateway.admin")

    private var listener: DispatchListener?
    private var connections: [ObjectIdentifier: AdminConnection] = [:]
    private var stopped = false
    /// `accept(2)` on the listening socket. A seam for tests (a failing accept without exhausting the test
    /// process's descriptors); set it before `start()`.
    var acceptConnection: @Sendable (Int32) -> ListeningSocket.Accepted = { ListeningSocket.accept(on: $0) }

    /// Parses `--admin-listen` (`HOST:PORT`, `[::1]:PORT`, `localhost:PORT`) and refuses anything but a
    /// loopback address: `/metrics` and the probes have no authentication.
    public static func listenAddress(_ text: String) throws -> SocketAddress {
        guard let address = SocketAddress(hostAndPort: text) else {
            throw AdminServerError(description: "--admin-listen \(text): expected IP:PORT or [IPv6]:PORT")
        }
        guard IPNetwork.loopback.contains(where: { $0.contains(address) }) else {
            throw AdminServerError(
                description: "--admin-listen \(text): the admin listener serves loopback addresses only "
                    + "(127.0.0.0/8 or [::1]), because /metrics, /healthz and /readyz have no authentication")
        }
        return address
    }

    /// - Parameters:
    ///   - liveness: calls its argument once the process's queues are running (the SMTP server's
    ///     `whenResponsive`); `/healthz` answers 503 when that takes longer than `limits.livenessTimeout`.
    public init(
        address: SocketAddress, registry: PrometheusCollectorRegistry, readiness: ServiceReadiness = ServiceReadiness(),
        liveness: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void, limits: Limits = Limits(),
        logger: Logger
    ) throws {
        _ = try Self.listenAddress(address.description)
        self.address = address
        self.registry = registry
        self.readiness = readiness
        self.liveness = liveness
        self.limits = limits
        self.logger = logger
    }

    /// Binds and starts serving. Returns the bound address (the real port when port 0 was asked for).
    @discardableResult
    public func start() throws -> SocketAddress {
        try queue.sync {
            guard listener == nil, !stopped else {
                throw AdminServerError(description: "admin listener already started")
            }
            let (fd, bound): (Int32, SocketAddress)
            do {
                (fd, bound) = try ListeningSocket.bind(address, backlog: 16)
            } catch {
                throw AdminServerError(description: "admin listener: \(error)")
            }
            // Accepting pauses after a failed accept(2) (out of descriptors), until `limits.acceptPause` passes or an
            // admin connection closes. One warning per pause.
            let listener = DispatchListener(
                queue: queue, options: .init(acceptPause: limits.acceptPause, maxAcceptsPerEvent: 64),
                onConnection: { [unowned self] accepted in admit(accepted.fd) },
                onAcceptFailed: { [unowned self] error, pause in
                    logger.warning(
                        "admin listener: accept failed; pausing the admin listener",
                        metadata: [
                            "error": "\(String(cString: strerror(error)))", "pause_ms": "\(Int(pause * 1000))",
                            "connections": "\(connections.count)",
                        ])
                })
            listener.accept = acceptConnection
            listener.listen(on: fd)
            self.listener = listener
            logger.notice("admin listener serving /metrics, /healthz and /readyz", metadata: ["address": "\(bound)"])
            return bound
        }
    }

    /// Stops accepting and closes open admin connections.
    public func stop() {
        queue.sync {
            stopped = true
            listener?.stop()
            listener = nil
            for connection in connections.values { connection.close() }
        }
    }

    /// Open admin connections (for tests).
    var connectionCount: Int { queue.sync { connections.count } }

    private func admit(_ fd: Int32) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard connections.count < limits.maxConnections else {
            let bytes = AdminHTTP.busy.bytes(includeBody: true)
            _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            close(fd)
            return
        }
        let connection = AdminConnection(fd: fd, server: self, queue: queue)
        connections[ObjectIdentifier(connection)] = connection
        connection.start()
    }

    // MARK: Called by connections, on `queue`

    func connectionClosed(_ connection: AdminConnection) {
        dispatchPrecondition(condition: .onQueue(queue))
        connections[ObjectIdentifier(connection)] = nil
        listener?.connectionClosed()  // its descriptor is closed: one is free now, so an accept pause ends
    }

    /// Answers a complete request head through `respond`, possibly later (`/healthz`).
    func handle(_ head: AdminHTTP.RequestHead, respond: @escaping (AdminHTTP.Response) -> Void) {
        dispatchPrecondition(condition: .onQueue(queue))
        switch AdminHTTP.route(head) {
        case .respond(let response):
            respond(response)
        case .metrics:
            let text = registry.emitToBuffer()
            respond(AdminHTTP.Response(status: 200, contentType: AdminHTTP.metricsContentType, body: text))
        case .readiness:
            let state = readiness.state
            if state == .ready, let reason = readiness.notReadyReason {
                respond(AdminHTTP.Response(status: 503, body: "not ready: \(reason)\n"))
            } else {
                respond(AdminHTTP.Response(status: state == .ready ? 200 : 503, body: "\(state.rawValue)\n"))
            }
        case .health:
            let answer = OneAnswer(respond)
            queue.asyncAfter(deadline: .now() + limits.livenessTimeout) {
                answer(AdminHTTP.Response(status: 503, body: "unresponsive: the SMTP server's queue did not answer\n"))
            }
            liveness { [queue] in queue.async { answer(AdminHTTP.Response(status: 200, body: "ok\n")) } }
        }
    }
}

/// One admin connection over a ``SocketStream``: read a request head, answer, close. Every property is touched
/// only on the server's serial queue (asserted at entry points), hence `@unchecked Sendable`.
final class AdminConnection: ByteStreamDelegate, @unchecked Sendable {
    /// Strong: the server keeps its connections until they close, and a closing connection reports to it even
    /// after the server's owner let go of it.
    private let server: AdminServer
    private let queue: DispatchQueue
    private let stream: SocketStream
    private let timer: DispatchSourceTimer
    private var buffer: [UInt8] = []
    private var phase = Phase.reading

    private enum Phase {
        /// Reading the request head (until the read timeout).
        case reading
        /// A complete head is being answered (`/healthz` waits for the SMTP server).
        case answering
        /// Writing the response (until the write timeout).
        case writing
        /// Response sent and our side shut down: reading and discarding until the client closes, so that
        /// unread request bytes cannot turn the close into a reset that loses the response.
        case draining
        case closed
    }

    init(fd: Int32, server: AdminServer, queue: DispatchQueue) {
        self.server = server
        self.queue = queue
        var limits = SocketStream.Limits()
        limits.readSize = 4096  // a request head is at most a few KiB
        let handle = AdminConnectionHandle()
        stream = SocketStream(fd: fd, queue: queue, limits: limits) {
            guard let connection = handle.connection else { return }
            handle.connection = nil  // once; breaks the stream → handle → connection cycle
            server.connectionClosed(connection)
        }
        timer = DispatchSource.makeTimerSource(queue: queue)
        handle.connection = self
    }

    func start() {
        dispatchPrecondition(condition: .onQueue(queue))
        stream.delegate = self
        timer.setEventHandler { [unowned self] in timedOut() }
        timer.schedule(deadline: .now() + server.limits.readTimeout)
        timer.resume()
        stream.start()
    }

    func streamReceived(_ bytes: ArraySlice<UInt8>) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard phase == .reading else { return }  // draining: discard
        buffer += bytes
        switch AdminHTTP.parseHead(buffer, maxHeadOctets: server.limits.maxHeadOctets) {
        case .incomplete:
            return
        case .invalid(let response):
            respond(response, includeBody: true)
        case .complete(let head):
            phase = .answering
            stream.suspendReading()  // one request per connection: nothing more is read until the answer is sent
            server.handle(head) { [weak self] response in
                self?.respond(response, includeBody: head.method != "HEAD")
            }
        }
    }

    func streamEnded(_ end: StreamEnd) {
        close()  // the client closed (before a complete head, or after our answer), or the socket failed
    }

    func streamDrained() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard phase == .writing else { return }
        // Sent: our side is done. Read and discard whatever the client still sends until it closes (or a
        // short deadline), so a close with unread data does not reset the connection before it read the answer.
        stream.shutdownOutput()
        phase = .draining
        buffer = []
        timer.schedule(deadline: .now() + 1)
        stream.resumeReading()
    }

    private func respond(_ response: AdminHTTP.Response, includeBody: Bool) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard phase == .reading || phase == .answering else { return }
        phase = .writing
        stream.suspendReading()
        timer.schedule(deadline: .now() + server.limits.writeTimeout)
        stream.write(response.bytes(includeBody: includeBody))
    }

    private func timedOut() {
        dispatchPrecondition(condition: .onQueue(queue))
        switch phase {
        case .reading: respond(AdminHTTP.timeout, includeBody: true)
        case .answering: break  // the /healthz deadline answers first
        case .writing, .draining, .closed: close()
        }
    }

    func close() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard phase != .closed else { return }
        phase = .closed
        timer.cancel()
        stream.close()
    }
}

/// The connection a closing stream reports (the stream is made before the connection exists).
private final class AdminConnectionHandle: @unchecked Sendable {
    var connection: AdminConnection?
}

/// A response callback that runs at most once (`/healthz`: the liveness answer or its deadline, whichever
/// comes first). Touched only on the admin queue.
private final class OneAnswer: @unchecked Sendable {
    private var respond: ((AdminHTTP.Response) -> Void)?
    init(_ respond: @escaping (AdminHTTP.Response) -> Void) { self.respond = respond }

    func callAsFunction(_ response: AdminHTTP.Response) {
        guard let respond else { return }
        self.respond = nil
        respond(response)
    }
}
