import CoreMetrics
import Foundation
import Glibc
import Logging
import Prometheus
import SMTPServer
import Synchronization
import Testing

@testable import Gateway

/// The admin HTTP rules with no I/O: request heads, routes, response bytes.
@Suite struct AdminHTTPTests {
    private func parse(_ text: String, limit: Int = 8192) -> AdminHTTP.HeadState {
        AdminHTTP.parseHead(Array(text.utf8), maxHeadOctets: limit)
    }

    @Test func aCompleteHead_givesMethodAndPath_withoutTheQuery() {
        #expect(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") == .complete(.init(method: "GET", path: "/metrics")))
        #expect(parse("HEAD /readyz?x=1 HTTP/1.0\n\n") == .complete(.init(method: "HEAD", path: "/readyz")))
        #expect(parse("GET /healthz HTTP/1.1\r\n\r\n") == .complete(.init(method: "GET", path: "/healthz")))
    }

    @Test func anUnfinishedHead_asksForMore_untilTheLimit() {
        #expect(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n") == .incomplete)
        #expect(
            parse("GET /metrics HTTP/1.1\r\nX: " + String(repeating: "a", count: 100), limit: 64)
                == .invalid(AdminHTTP.headTooLarge))
        // The end of the head must lie within the limit, too.
        #expect(
            parse("GET / HTTP/1.1\r\nX: " + String(repeating: "a", count: 100) + "\r\n\r\n", limit: 64)
                == .invalid(AdminHTTP.headTooLarge))
    }

    @Test(arguments: [
        "garbage\r\n\r\n", "GET /metrics\r\n\r\n", "GET  /metrics HTTP/1.1\r\n\r\n", "get /metrics HTTP/1.1\r\n\r\n",
        "GET metrics HTTP/1.1\r\n\r\n", "GET /metrics HTTP/2.0\r\n\r\n", "GET /me\u{01}trics HTTP/1.1\r\n\r\n",
        "\r\n\r\n", "GET /metrics HTTP/1.1 extra\r\n\r\n",
    ])
    func malformedRequestLines_areBadRequests(_ text: String) {
        #expect(parse(text) == .invalid(AdminHTTP.badRequest))
    }

    @Test func routes_onlyGetAndHead_onlyThreePaths() {
        #expect(AdminHTTP.route(.init(method: "GET", path: "/metrics")) == .metrics)
        #expect(AdminHTTP.route(.init(method: "HEAD", path: "/healthz")) == .health)
        #expect(AdminHTTP.route(.init(method: "GET", path: "/readyz")) == .readiness)
        #expect(AdminHTTP.route(.init(method: "POST", path: "/metrics")) == .respond(AdminHTTP.methodNotAllowed))
        #expect(AdminHTTP.route(.init(method: "DELETE", path: "/readyz")) == .respond(AdminHTTP.methodNotAllowed))
        #expect(AdminHTTP.route(.init(method: "GET", path: "/")) == .respond(AdminHTTP.notFound))
        #expect(AdminHTTP.route(.init(method: "GET", path: "/metrics/")) == .respond(AdminHTTP.notFound))
    }

    @Test func responses_sayConnectionClose_andHeadOmitsTheBody() {
        let response = AdminHTTP.Response(status: 200, body: "ok\n")
        let full = String(decoding: response.bytes(includeBody: true), as: UTF8.self)
        #expect(
            full == "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n"
                + "Cache-Control: no-store\r\nConnection: close\r\n\r\nok\n")
        let head = String(decoding: response.bytes(includeBody: false), as: UTF8.self)
        #expect(head.hasSuffix("Content-Length: 3\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"))
        #expect(
            String(decoding: AdminHTTP.methodNotAllowed.bytes(includeBody: true), as: UTF8.self)
                .contains("\r\nAllow: GET, HEAD\r\n"))
    }

    @Test func onlyLoopbackAddresses_mayBeListenedOn() throws {
        #expect(try AdminServer.listenAddress("127.0.0.1:9464").description == "127.0.0.1:9464")
        #expect(try AdminServer.listenAddress("127.5.0.1:9464").description == "127.5.0.1:9464")
        #expect(try AdminServer.listenAddress("localhost:9464").description == "127.0.0.1:9464")
        #expect(try AdminServer.listenAddress("[::1]:9464").description == "[::1]:9464")
        for text in ["0.0.0.0:9464", "[::]:9464", "192.0.2.1:9464", "[2001:db8::1]:9464"] {
            #expect(throws: AdminServerError.self) { try AdminServer.listenAddress(text) }
        }
        #expect(throws: AdminServerError.self) { try AdminServer.listenAddress("nonsense") }
        let error = #expect(throws: AdminServerError.self) { try AdminServer.listenAddress("0.0.0.0:9464") }
        #expect(error?.description.contains("loopback addresses only") == true)
    }
}

/// The admin listener over real loopback sockets: good requests, garbage, an oversize head, a slow client,
/// 404/405, the probes, and the connection limit.
@Suite(.serialized) struct AdminServerTests {
    /// Sends `payload` and reads until the server closes (5 s receive timeout). Returns nil when the server
    /// did not close in time.
    private static func exchange(_ address: SocketAddress, _ payload: [UInt8]) throws -> String? {
        let fd = try connect(address)
        defer { close(fd) }
        if !payload.isEmpty {
            _ = payload.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        }
        return readToEnd(fd)
    }

    private static func connect(_ address: SocketAddress) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var time = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        guard address.withSockAddr({ Glibc.connect(fd, $0, $1) }) == 0 else {
            close(fd)
            throw AdminServerError(description: "connect failed")
        }
        return fd
    }

    private static func readToEnd(_ fd: Int32) -> String? {
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = recv(fd, &chunk, chunk.count, 0)
            if count == 0 { return String(decoding: received, as: UTF8.self) }
            if count < 0 { return errno == ECONNRESET ? String(decoding: received, as: UTF8.self) : nil }
            received += chunk[0..<count]
        }
    }

    private static func get(_ address: SocketAddress, _ path: String, method: String = "GET") throws -> String? {
        try exchange(address, Array("\(method) \(path) HTTP/1.1\r\nHost: test\r\n\r\n".utf8))
    }

    private struct Running {
        var server: AdminServer
        var address: SocketAddress
    }

    private static func start(
        liveness: @escaping @Sendable (@escaping @Sendable () -> Void) -> Void = { $0() },
        accept: FlakyAccept? = nil, log: CapturedLines? = nil,
        configure: (inout AdminServer.Limits) -> Void = { _ in }
    ) throws -> Running {
        let registry = PrometheusCollectorRegistry()
        let factory = GatewayMetrics.makeFactory(registry: registry)
        CoreMetrics.Counter(label: "acsgw_test_total", dimensions: [("reason", "x")], factory: factory).increment(by: 3)
        var limits = AdminServer.Limits()
        configure(&limits)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        if let log {
            let handler = LineLogHandler(label: "test", format: .logfmt, level: .info) { line in log.append(line) }
            logger = Logger(label: "test", factory: { _ in handler })
        }
        let server = try AdminServer(
            address: SocketAddress(ip: "127.0.0.1", port: 0)!, registry: registry, liveness: liveness,
            limits: limits, logger: logger)
        if let accept { server.acceptConnection = { accept($0) } }
        return Running(server: server, address: try server.start())
    }

    @Test func metrics_isThePrometheusText() throws {
        let running = try Self.start()
        defer { running.server.stop() }
        let response = try #require(try Self.get(running.address, "/metrics"))
        #expect(response.hasPrefix("HTTP/1.1 200 OK\r\n"))
        #expect(response.contains("\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"))
        #expect(response.contains("\r\nConnection: close\r\n"))
        let body = try #require(response.components(separatedBy: "\r\n\r\n").last)
        #expect(body.contains("# TYPE acsgw_test_total counter\nacsgw_test_total{reason=\"x\"} 3\n"))
        #expect(response.contains("\r\nContent-Length: \(body.utf8.count)\r\n"))
        let head = try #require(try Self.get(running.address, "/metrics", method: "HEAD"))
        #expect(head.hasPrefix("HTTP/1.1 200 OK\r\n") && head.hasSuffix("\r\n\r\n"))
    }

    @Test func readyz_followsTheReadiness() throws {
        let running = try Self.start()
        defer { running.server.stop() }
        #expect(try Self.get(running.address, "/readyz")?.hasPrefix("HTTP/1.1 503 ") == true)
        running.server.readiness.markReady()
        let ready = try #require(try Self.get(running.address, "/readyz"))
        #expect(ready.hasPrefix("HTTP/1.1 200 OK") && ready.hasSuffix("\r\n\r\nready\n"))
        running.server.readiness.markStopping()
        running.server.readiness.markReady()  // stopping is final
        let stopping = try #require(try Self.get(running.address, "/readyz"))
        #expect(stopping.hasPrefix("HTTP/1.1 503 Service Unavailable") && stopping.hasSuffix("stopping\n"))
    }

    @Test func healthz_is200WhenTheQueueAnswers_and503WhenItDoesNot() throws {
        let answering = try Self.start()
        defer { answering.server.stop() }
        #expect(try Self.get(answering.address, "/healthz")?.hasSuffix("\r\n\r\nok\n") == true)

        let stuck = try Self.start(liveness: { _ in }, configure: { $0.livenessTimeout = 0.2 })
        defer { stuck.server.stop() }
        let started = Date()
        #expect(try Self.get(stuck.address, "/healthz")?.hasPrefix("HTTP/1.1 503 ") == true)
        #expect(Date().timeIntervalSince(started) >= 0.2)
    }

    @Test func unknownPaths_are404_andOtherMethods_are405() throws {
        let running = try Self.start()
        defer { running.server.stop() }
        #expect(try Self.get(running.address, "/")?.hasPrefix("HTTP/1.1 404 Not Found\r\n") == true)
        let post = try #require(
            try Self.exchange(
                running.address, Array("POST /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello".utf8)))
        #expect(post.hasPrefix("HTTP/1.1 405 Method Not Allowed\r\n") && post.contains("\r\nAllow: GET, HEAD\r\n"))
    }

    @Test func garbage_is400_andTheListenerCarriesOn() throws {
        let running = try Self.start()
        defer { running.server.stop() }
        let binary: [UInt8] = [0x16, 0x03, 0x01, 0x00, 0xFF, 0x0A, 0x00, 0x0A, 0x0A]
        #expect(try Self.exchange(running.address, binary)?.hasPrefix("HTTP/1.1 400 Bad Request\r\n") == true)
        #expect(try Self.exchange(running.address, Array("\r\n\r\n".utf8))?.hasPrefix("HTTP/1.1 400 ") == true)
        #expect(try Self.get(running.address, "/healthz")?.hasPrefix("HTTP/1.1 200 ") == true)
    }

    @Test func anOversizeHead_is431() throws {
        let running = try Self.start()
        defer { running.server.stop() }
        let big = Array(("GET /metrics HTTP/1.1\r\nX-Filler: " + String(repeating: "a", count: 9000)).utf8)
        #expect(try Self.exchange(running.address, big)?.hasPrefix("HTTP/1.1 431 ") == true)
    }

    @Test func aSlowClient_gets408AndIsClosed_afterTheReadTimeout() throws {
        let running = try Self.start(configure: { $0.readTimeout = 0.3 })
        defer { running.server.stop() }
        let started = Date()
        let response = try Self.exchange(running.address, Array("GET /metr".utf8))
        #expect(response?.hasPrefix("HTTP/1.1 408 Request Timeout\r\n") == true)
        #expect(Date().timeIntervalSince(started) >= 0.3)
        // A client that sends nothing at all is closed the same way.
        #expect(try Self.exchange(running.address, [])?.hasPrefix("HTTP/1.1 408 ") == true)
        for _ in 0..<50 where running.server.connectionCount > 0 { usleep(10_000) }
        #expect(running.server.connectionCount == 0)
    }

    @Test func connectionsOverTheLimit_get503_andTheLimitFreesUp() throws {
        let running = try Self.start(configure: {
            $0.maxConnections = 1
            $0.readTimeout = 2
        })
        defer { running.server.stop() }
        let held = try Self.connect(running.address)
        for _ in 0..<50 where running.server.connectionCount < 1 { usleep(10_000) }
        #expect(try Self.get(running.address, "/healthz")?.hasPrefix("HTTP/1.1 503 ") == true)
        close(held)
        for _ in 0..<100 where running.server.connectionCount > 0 { usleep(10_000) }
        #expect(try Self.get(running.address, "/healthz")?.hasPrefix("HTTP/1.1 200 ") == true)
    }

    /// An `accept(2)` that fails with EMFILE while `failing` is set, as when the process is out of descriptors:
    /// the pending connection stays in the backlog, so the listening source keeps firing. Counts the calls.
    final class FlakyAccept: Sendable {
        private let state = Mutex((failing: false, failures: 0))

        var failing: Bool {
            get { state.withLock { $0.failing } }
            set { state.withLock { $0.failing = newValue } }
        }
        var failures: Int { state.withLock { $0.failures } }

        func callAsFunction(_ listenFD: Int32) -> ListeningSocket.Accepted {
            let fail = state.withLock { state in
                if state.failing { state.failures += 1 }
                return state.failing
            }
            return fail ? .failed(EMFILE) : ListeningSocket.accept(on: listenFD)
        }
    }

    final class CapturedLines: Sendable {
        private let lines = Mutex<[String]>([])
        func append(_ line: String) { lines.withLock { $0.append(line) } }
        func count(containing text: String) -> Int { lines.withLock { $0.filter { $0.contains(text) }.count } }
        var all: [String] { lines.withLock { $0 } }
    }

    private static func sendRequest(_ fd: Int32, _ path: String = "/healthz") {
        let request = Array("GET \(path) HTTP/1.1\r\nHost: test\r\n\r\n".utf8)
        _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
    }

    @Test func whenAcceptFails_theListenerPauses_logsOncePerPause_andServesAgainAfterwards() throws {
        let accept = FlakyAccept()
        let log = CapturedLines()
        let running = try Self.start(accept: accept, log: log) { $0.acceptPause = 0.2 }
        defer { running.server.stop() }
        accept.failing = true
        let client = try Self.connect(running.address)  // waits in the backlog: every accept fails
        defer { close(client) }
        Self.sendRequest(client)
        Thread.sleep(forTimeInterval: 1.0)
        // Before the fix: the level-triggered source fired again at once, hundreds of thousands of times a
        // second, each with a warning. Now: one attempt per 0.2 s pause.
        let failures = accept.failures
        let warnings = log.count(containing: "msg=\"admin listener: accept failed")
        #expect((2...10).contains(failures), "accept was tried \(failures) times in 1 s")
        #expect((2...10).contains(warnings), "\(warnings) warnings in 1 s")
        #expect(
            log.all.filter { $0.contains("admin listener: accept failed") }.allSatisfy {
                $0.contains(" level=warning ") && $0.contains("error=\"Too many open files\"")
            })
        // Descriptors free again: the waiting client is served at the next attempt.
        accept.failing = false
        #expect(Self.readToEnd(client)?.hasPrefix("HTTP/1.1 200 ") == true)
        #expect(try Self.get(running.address, "/healthz")?.hasPrefix("HTTP/1.1 200 ") == true)
    }

    @Test func aClosingAdminConnection_endsThePauseEarly() throws {
        let accept = FlakyAccept()
        let running = try Self.start(accept: accept) {
            $0.acceptPause = 60  // far longer than the test: only the closing connection can end it
            $0.readTimeout = 30
        }
        defer { running.server.stop() }
        let held = try Self.connect(running.address)
        for _ in 0..<200 where running.server.connectionCount < 1 { usleep(10_000) }
        #expect(running.server.connectionCount == 1)
        accept.failing = true
        let waiting = try Self.connect(running.address)
        defer { close(waiting) }
        Self.sendRequest(waiting)
        for _ in 0..<200 where accept.failures < 1 { usleep(10_000) }
        accept.failing = false
        usleep(300_000)
        #expect(accept.failures == 1, "paused: no further attempt")
        let started = Date()
        close(held)  // frees a descriptor: accepting resumes now, not after 60 s
        #expect(Self.readToEnd(waiting)?.hasPrefix("HTTP/1.1 200 ") == true)
        #expect(Date().timeIntervalSince(started) < 4)
    }

    @Test func stop_duringAPause_stillClosesTheListeningSocket() throws {
        let accept = FlakyAccept()
        let running = try Self.start(accept: accept) { $0.acceptPause = 60 }
        accept.failing = true
        let pending = try Self.connect(running.address)
        defer { close(pending) }
        for _ in 0..<200 where accept.failures < 1 { usleep(10_000) }
        #expect(accept.failures == 1)
        // A suspended source never runs its cancel handler, which closes the socket: stop() must resume it.
        running.server.stop()
        var refused = false
        for _ in 0..<100 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            let result = running.address.withSockAddr { Glibc.connect(fd, $0, $1) }
            let error = errno
            close(fd)
            if result != 0 && error == ECONNREFUSED {
                refused = true
                break
            }
            usleep(10_000)
        }
        #expect(refused, "the admin port still accepts connections after stop()")
    }

    @Test func aNonLoopbackAddress_isRefused() {
        #expect(throws: AdminServerError.self) {
            _ = try AdminServer(
                address: SocketAddress(ip: "0.0.0.0", port: 0)!, registry: PrometheusCollectorRegistry(),
                liveness: { $0() }, logger: Logger(label: "test"))
        }
    }
}
