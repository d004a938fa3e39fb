import ACSClient
import Foundation
import Logging
import Testing

@testable import ACSEmulator

/// An in-process emulator on a free loopback port, driven over real HTTP(S) by libcurl
/// (`CurlMultiTransport`) with requests signed by `RequestSigner`, as the gateway signs them.
final class EmulatorHarness: Sendable {
    /// The test access key: bytes 0x00…0x3f, the key of the SDK vectors (acs-email-api.md §3.3).
    static let key: AccessKey = {
        guard let key = AccessKey(base64: Data((0..<64).map { UInt8($0) }).base64EncodedString()) else {
            preconditionFailure("a 64-octet key is valid base64")
        }
        return key
    }()

    static let validMessage = #"""
        {"senderAddress":"DoNotReply@contoso.com","recipients":{"to":[{"address":"jane@example.com","displayName":"Jane"}]},
         "content":{"subject":"Hi","plainText":"Hello"}}
        """#

    let emulator: ACSEmulator
    let port: Int
    let scheme: String
    let transport: CurlMultiTransport
    private let task: Task<Void, Error>

    var host: String { "127.0.0.1:\(port)" }

    private init(
        emulator: ACSEmulator, port: Int, scheme: String, transport: CurlMultiTransport, task: Task<Void, Error>
    ) {
        self.emulator = emulator
        self.port = port
        self.scheme = scheme
        self.transport = transport
        self.task = task
    }

    /// Runs `body` against a fresh emulator, then stops it.
    static func with<T: Sendable>(
        _ configuration: EmulatorConfiguration = EmulatorConfiguration(accessKey: key),
        tls: TestCertificates? = nil,
        _ body: (EmulatorHarness) async throws -> T
    ) async throws -> T {
        let emulator = try ACSEmulator(
            configuration: configuration, logger: Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() }))
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let files = tls.map { ACSEmulator.TLSFiles(certificateChain: $0.serverCertificate, privateKey: $0.serverKey) }
        let task = Task {
            defer { continuation.finish() }
            try await emulator.run(host: "127.0.0.1", port: 0, tls: files, handleSignals: false) { port in
                continuation.yield(port)
            }
        }
        var iterator = ports.makeAsyncIterator()
        guard let port = await iterator.next() else {
            try await task.value
            throw TestCertificates.Failure(description: "the emulator stopped before listening")
        }
        let transport = try CurlMultiTransport(options: CurlMultiTransport.Options(caFile: tls?.caCertificate))
        let harness = EmulatorHarness(
            emulator: emulator, port: port, scheme: tls == nil ? "http" : "https", transport: transport, task: task)
        defer { task.cancel() }
        let result = try await body(harness)
        task.cancel()
        _ = try? await task.value
        return result
    }

    /// Sends a request; signs it with `key` unless `authorization` replaces the signature headers.
    func request(
        _ method: String, _ pathAndQuery: String, body: [UInt8] = [], headers: [(name: String, value: String)] = [],
        key: AccessKey? = EmulatorHarness.key, date: Date = Date(), signedHost: String? = nil,
        signedBody: [UInt8]? = nil, signedPath: String? = nil, timeout: Double = 20
    ) async throws -> HTTPResponse {
        var allHeaders = headers
        if !body.isEmpty || method == "POST" {
            allHeaders.append(("Content-Type", "application/json"))
        }
        if let key {
            allHeaders += RequestSigner(key: key).headers(
                method: method, pathAndQuery: signedPath ?? pathAndQuery, host: signedHost ?? host,
                body: signedBody ?? body, date: date)
        }
        let request = HTTPRequest(
            method: method, url: "\(scheme)://\(host)\(pathAndQuery)", headers: allHeaders, body: body, timeout: timeout
        )
        return try await withCheckedContinuation { continuation in
            transport.perform(request) { continuation.resume(returning: $0) }
        }.get()
    }

    func send(
        _ json: String = EmulatorHarness.validMessage, apiVersion: String = "2025-09-01", operationID: String? = nil,
        headers: [(name: String, value: String)] = []
    ) async throws -> HTTPResponse {
        try await request(
            "POST", "/emails:send?api-version=\(apiVersion)", body: Array(json.utf8),
            headers: headers + (operationID.map { [("Operation-Id", $0)] } ?? []))
    }

    func poll(_ id: String, apiVersion: String = "2025-09-01") async throws -> HTTPResponse {
        try await request("GET", "/emails/operations/\(id)?api-version=\(apiVersion)")
    }

    /// An unauthenticated admin request.
    func admin(_ method: String, _ path: String, json: String? = nil) async throws -> HTTPResponse {
        try await request(method, path, body: json.map { Array($0.utf8) } ?? [], key: nil)
    }

    func recordedMessages() async throws -> [RecordedMessage] {
        let response = try await admin("GET", "/admin/messages")
        return try JSONDecoder().decode([RecordedMessage].self, from: Data(response.body))
    }

    /// The number of requests seen on `route` with `status` (all statuses when nil).
    func requestCount(_ route: String, status: Int? = nil) async throws -> Int {
        let counts = try #require(JSONValue(parsing: try await admin("GET", "/admin/requests").body))
        if let status {
            return counts[route]?["statuses"]?[String(status)]?.intValue ?? 0
        }
        return counts[route]?["total"]?.intValue ?? 0
    }
}

extension HTTPResponse {
    /// The body as JSON.
    var json: JSONValue? { JSONValue(parsing: body) }

    /// `error.code` of an ACS error body.
    var errorCode: String? { json?["error"]?["code"]?.stringValue }

    var text: String { String(decoding: body, as: UTF8.self) }
}

/// A throwaway CA and a server certificate for 127.0.0.1 and localhost, made with the openssl CLI
/// (the same helper as `ACSClientTests`).
struct TestCertificates: Sendable {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    var directory: String
    var caCertificate: String { "\(directory)/ca.pem" }
    var serverCertificate: String { "\(directory)/server.pem" }
    var serverKey: String { "\(directory)/server.key" }

    static func make() throws -> TestCertificates {
        let directory = NSTemporaryDirectory() + "emulator-test-ca-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let script = """
            set -e
            cd '\(directory)'
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem \
              -days 2 -subj /CN=acs-emulator-test-ca -addext basicConstraints=critical,CA:TRUE \
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
