import Foundation
import Testing

@testable import ACSClient

/// The libcurl multi transport against a local Python HTTP(S) server (loopback only).
@Suite(.serialized) struct CurlMultiTransportTests {
    /// A running `Fixtures/http_test_server.py`.
    final class TestServer {
        let process = Process()
        let port: Int
        let scheme: String

        init(tls: TestCertificates? = nil, script name: String = "http_test_server.py") throws {
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                .appendingPathComponent("Fixtures/\(name)").path
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments =
                ["python3", script] + (tls.map { ["--cert", $0.serverCertificate, "--key", $0.serverKey] } ?? [])
            let output = Pipe()
            process.standardOutput = output
            try process.run()
            let line = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
            guard let port = Int(line.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                kill(process.processIdentifier, SIGKILL)
                throw TestCertificates.Failure(description: "test server did not start: \(line)")
            }
            self.port = port
            self.scheme = tls == nil ? "http" : "https"
        }

        func url(_ path: String, host: String = "127.0.0.1") -> String { "\(scheme)://\(host):\(port)\(path)" }

        deinit {
            // SIGKILL, not terminate(): a child spawned from a Dispatch worker inherits its blocked
            // signal mask, so SIGTERM would never be delivered.
            // Reaped with waitpid(2), not waitUntilExit(): under load Foundation's exit monitor once missed the
            // exit, and the suite spun for half an hour waiting for a server that was long gone.
            let pid = process.processIdentifier
            kill(pid, SIGKILL)
            var status: Int32 = 0
            while waitpid(pid, &status, 0) == -1 && errno == EINTR {}
        }
    }

    private static func perform(_ transport: HTTPTransport, _ request: HTTPRequest) async -> Result<
        HTTPResponse, HTTPTransportError
    > {
        await withCheckedContinuation { continuation in
            transport.perform(request) { continuation.resume(returning: $0) }
        }
    }

    @Test func getReturnsStatusHeadersAndBody() async throws {
        let server = try TestServer()
        let transport = try CurlMultiTransport()
        let response = try await Self.perform(transport, HTTPRequest(method: "GET", url: server.url("/status/429")))
            .get()
        #expect(response.status == 429)
        #expect(response.header("X-Test") == "yes")
        #expect(response.header("retry-after") == "7")
        #expect(response.body == Array("status".utf8))
        #expect(response.httpVersion == "1.1")
    }

    @Test func postSendsExactlyTheGivenOctetsAndHeaders() async throws {
        let server = try TestServer()
        let transport = try CurlMultiTransport()
        let body: [UInt8] = Array("{\"a\":\"é\\u00e9\"}".utf8) + [0, 255]
        let request = HTTPRequest(
            method: "POST", url: server.url("/emails:send?api-version=2025-09-01"),
            headers: [("Content-Type", "application/json"), ("x-ms-date", "Mon, 01 Jan 2024 00:00:00 GMT")], body: body)
        let response = try await Self.perform(transport, request).get()
        let echo = try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
        #expect(echo["method"] as? String == "POST")
        #expect(echo["path"] as? String == "/emails:send?api-version=2025-09-01")
        let headers = try #require(echo["headers"] as? [String: String])
        #expect(headers["host"] == "127.0.0.1:\(server.port)")
        #expect(headers["x-ms-date"] == "Mon, 01 Jan 2024 00:00:00 GMT")
        #expect(headers["expect"] == nil)
        #expect(Data(base64Encoded: echo["body_base64"] as? String ?? "").map(Array.init) == body)
    }

    @Test func manyRequestsRunInParallel() async throws {
        let server = try TestServer()
        let transport = try CurlMultiTransport()
        let started = Date()
        let url = server.url("/delay/1000")
        let statuses = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<20 {
                group.addTask {
                    let result = await Self.perform(transport, HTTPRequest(method: "GET", url: url))
                    return (try? result.get().status) ?? -1
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(statuses == Array(repeating: 200, count: 20))
        // Sequentially this would take 20 s; in parallel about 1 s. Half the serial time is the bound: with 0.3 s
        // delays and a 3 s bound, a busy machine once took 3.3 s.
        #expect(Date().timeIntervalSince(started) < 10)
        #expect(transport.inFlight == 0)
    }

    @Test func stalledRequest_timesOut() async throws {
        let server = try TestServer()
        let transport = try CurlMultiTransport()
        let result = await Self.perform(
            transport, HTTPRequest(method: "GET", url: server.url("/delay/3000"), timeout: 0.5))
        guard case .failure(let error) = result else {
            Issue.record("a stalled request completed: \(result)")
            return
        }
        #expect(error.kind == .timeout)
    }

    @Test func refusedConnection_isConnectionFailed() async throws {
        let transport = try CurlMultiTransport()
        // Port 9 (discard) on loopback: nothing listens there in the test environment.
        let result = await Self.perform(transport, HTTPRequest(method: "GET", url: "http://127.0.0.1:9/", timeout: 2))
        guard case .failure(let error) = result else {
            Issue.record("expected a connection failure, got \(result)")
            return
        }
        #expect(error.kind == .connectionFailed)
    }

    @Test func oversizeResponse_isCutOff() async throws {
        let server = try TestServer()
        var options = CurlMultiTransport.Options()
        options.maxResponseSize = 1000
        let transport = try CurlMultiTransport(options: options)
        let result = await Self.perform(transport, HTTPRequest(method: "GET", url: server.url("/big/5000")))
        guard case .failure = result else {
            Issue.record("an oversize body was accepted")
            return
        }
        let small = try await Self.perform(transport, HTTPRequest(method: "GET", url: server.url("/big/1000"))).get()
        #expect(small.body.count == 1000)
    }

    @Test func nonHTTPSchemes_areRefused() async throws {
        let transport = try CurlMultiTransport()
        let result = await Self.perform(transport, HTTPRequest(method: "GET", url: "file:///etc/hostname"))
        guard case .failure = result else {
            Issue.record("file:// was fetched")
            return
        }
    }

    @Test func https_withTheTestCA_succeeds_andWithoutIt_failsVerification() async throws {
        let certificates = try TestCertificates.make()
        let server = try TestServer(tls: certificates)
        let trusting = try CurlMultiTransport(options: .init(caFile: certificates.caCertificate))
        let response = try await Self.perform(trusting, HTTPRequest(method: "GET", url: server.url("/status/202")))
            .get()
        #expect(response.status == 202)

        let systemTrust = try CurlMultiTransport()
        let result = await Self.perform(systemTrust, HTTPRequest(method: "GET", url: server.url("/status/202")))
        guard case .failure(let error) = result else {
            Issue.record("an unknown CA was trusted")
            return
        }
        #expect(error.kind == .tls)
    }

    @Test func explicitProxy_isUsed_butNotForRequestsThatMustBypassIt() async throws {
        let server = try TestServer()
        let proxy = try TestServer(script: "forward_proxy.py")
        let transport = try CurlMultiTransport(options: .init(proxy: "http://127.0.0.1:\(proxy.port)"))
        let proxied = try await Self.perform(transport, HTTPRequest(method: "GET", url: server.url("/status/200")))
            .get()
        #expect(proxied.header("x-via-test-proxy") == "yes")
        let direct = try await Self.perform(
            transport, HTTPRequest(method: "GET", url: server.url("/status/200"), useProxy: false)
        ).get()
        #expect(direct.header("x-via-test-proxy") == nil)
        #expect(direct.status == 200)
    }

    @Test func hostNamesResolve_andManyTransfersByNameAllComplete() async throws {
        // By name, libcurl's threaded resolver registers and closes a socketpair of its own:
        // the watched descriptors must survive that, or transfers stall.
        let server = try TestServer()
        let transport = try CurlMultiTransport()
        let url = server.url("/status/200", host: "localhost")
        let statuses = await withTaskGroup(of: Int.self) { group in
            for _ in 0..<40 {
                group.addTask {
                    let result = await Self.perform(transport, HTTPRequest(method: "GET", url: url, timeout: 10))
                    return (try? result.get().status) ?? -1
                }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(statuses == Array(repeating: 200, count: 40))
        for _ in 0..<20 {
            let response = try await Self.perform(transport, HTTPRequest(method: "GET", url: url, timeout: 10)).get()
            #expect(response.status == 200)
        }
    }

    @Test func reusesConnections() async throws {
        let server = try TestServer()
        let transport = try CurlMultiTransport()
        for _ in 0..<5 {
            let response = try await Self.perform(transport, HTTPRequest(method: "GET", url: server.url("/status/200")))
                .get()
            #expect(response.status == 200)
        }
        #expect(transport.inFlight == 0)
    }
}

/// A throw-away CA and a server certificate for 127.0.0.1/localhost, made with the openssl CLI.
struct TestCertificates {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    var directory: String
    var caCertificate: String { "\(directory)/ca.pem" }
    var serverCertificate: String { "\(directory)/server.pem" }
    var serverKey: String { "\(directory)/server.key" }

    static func make() throws -> TestCertificates {
        let directory = NSTemporaryDirectory() + "test-ca-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let script = """
            set -e
            cd '\(directory)'
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
              -days 2 -subj /CN=acs-gateway-test-ca -addext basicConstraints=critical,CA:TRUE \
              -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout server.key -out server.csr \
              -subj /CN=localhost 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n' > ext.cnf
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 \
              -extfile ext.cnf 2>/dev/null
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", script]
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw Failure(description: "openssl failed to make test certificates")
        }
        return TestCertificates(directory: directory)
    }
}
