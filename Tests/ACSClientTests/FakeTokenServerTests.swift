import Foundation
import Testing

@testable import ACSClient

/// Token caching and refresh through the real `CurlMultiTransport`, against `Fixtures/fake_token_server.py`
/// (an Entra ID token endpoint over https with a test CA, and IMDS over plain http; loopback only).
@Suite(.serialized) struct FakeTokenServerTests {
    static let secret = "fake-server-client-secret"

    /// A running `fake_token_server.py`.
    final class TokenServer {
        let process = Process()
        let port: Int
        let base: String

        init(tls: TestCertificates?) throws {
            let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
                .appendingPathComponent("Fixtures/fake_token_server.py").path
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments =
                ["python3", script, "--secret", FakeTokenServerTests.secret]
                + (tls.map { ["--cert", $0.serverCertificate, "--key", $0.serverKey] } ?? [])
            let output = Pipe()
            process.standardOutput = output
            try process.run()
            let line = String(decoding: output.fileHandleForReading.availableData, as: UTF8.self)
            guard let port = Int(line.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                kill(process.processIdentifier, SIGKILL)
                throw TestCertificates.Failure(description: "fake token server did not start: \(line)")
            }
            self.port = port
            base = "\(tls == nil ? "http" : "https")://127.0.0.1:\(port)"
        }

        deinit {
            // SIGKILL, not terminate(): a child spawned from a Dispatch worker inherits its blocked signal mask.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }

        func configure(_ json: String, through transport: HTTPTransport) async throws {
            let response = try await perform(
                transport, HTTPRequest(method: "POST", url: base + "/admin/config", body: Array(json.utf8))
            ).get()
            #expect(response.status == 200)
        }

        func stats(through transport: HTTPTransport) async throws -> [String: Any] {
            let response = try await perform(transport, HTTPRequest(method: "GET", url: base + "/admin/stats")).get()
            return try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
        }

        func tokenRequests(through transport: HTTPTransport) async throws -> Int {
            try await stats(through: transport)["token_requests"] as? Int ?? -1
        }
    }

    static func perform(
        _ transport: HTTPTransport, _ request: HTTPRequest
    ) async -> Result<HTTPResponse, HTTPTransportError> {
        await withCheckedContinuation { continuation in
            transport.perform(request) { continuation.resume(returning: $0) }
        }
    }

    /// Asks for tokens until `expected` arrives (a background refresh lands asynchronously), for up to 5 s.
    private static func awaitTokenValue(_ credential: TokenCredential, _ expected: String) async throws -> Bool {
        for _ in 0..<100 {
            if try await awaitToken(credential).get().token == expected { return true }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        return false
    }

    @Test func clientSecret_cachesAndRefreshes_overRealHTTPS() async throws {
        let certificates = try TestCertificates.make()
        let server = try TokenServer(tls: certificates)
        let transport = try CurlMultiTransport(options: .init(caFile: certificates.caCertificate))
        let clock = TestClock()
        let credential = try ClientSecretCredential(
            tenantID: "test-tenant", clientID: "test-client", clientSecret: Secret(Self.secret),
            authorityHost: server.base, transport: transport, now: clock.function)

        // First token, then served from the cache however many ask.
        #expect(try await awaitToken(credential).get().token == "token-1")
        let tokens = await withTaskGroup(of: String.self) { group in
            for _ in 0..<20 { group.addTask { (try? await awaitToken(credential).get().token) ?? "error" } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(tokens == Array(repeating: "token-1", count: 20))
        #expect(try await server.tokenRequests(through: transport) == 1)
        let stats = try await server.stats(through: transport)
        let form = try #require((stats["forms"] as? [[String: String]])?.first)
        #expect(form["scope"] == "https://communication.azure.com//.default")
        #expect(form["client_id"] == "test-client")
        #expect((stats["paths"] as? [String])?.first == "/test-tenant/oauth2/v2.0/token")

        // 299 s before expiry: the old token still serves while a refresh runs in the background.
        clock.advance(3301)
        #expect(try await awaitToken(credential).get().token == "token-1")
        #expect(try await Self.awaitTokenValue(credential, "token-2"))
        #expect(try await server.tokenRequests(through: transport) == 2)

        // A refresh that fails (503) while the token is valid: keep using it.
        try await server.configure(#"{"fail": [503]}"#, through: transport)
        clock.advance(3301)
        #expect(try await awaitToken(credential).get().token == "token-2")
        var waited = 0
        while try await server.tokenRequests(through: transport) < 3, waited < 100 {
            try await Task.sleep(nanoseconds: 20_000_000)
            waited += 1
        }
        #expect(try await server.tokenRequests(through: transport) == 3)
        #expect(try await awaitToken(credential).get().token == "token-2")

        // Past expiry with the endpoint still failing: a transient error, then recovery.
        try await server.configure(#"{"fail": [500]}"#, through: transport)
        clock.advance(400)
        let error = try #require(await awaitToken(credential).error)
        #expect(error.isTransient)
        #expect(error.message.contains("500"))
        #expect(try await awaitToken(credential).get().token == "token-3")
        #expect(try await server.tokenRequests(through: transport) == 5)
    }

    @Test func concurrentColdStart_makesOneRequest() async throws {
        let certificates = try TestCertificates.make()
        let server = try TokenServer(tls: certificates)
        let transport = try CurlMultiTransport(options: .init(caFile: certificates.caCertificate))
        try await server.configure(#"{"delay_ms": 300}"#, through: transport)
        let credential = try ClientSecretCredential(
            tenantID: "t", clientID: "c", clientSecret: Secret(Self.secret), authorityHost: server.base,
            transport: transport)
        let tokens = await withTaskGroup(of: String.self) { group in
            for _ in 0..<30 { group.addTask { (try? await awaitToken(credential).get().token) ?? "error" } }
            return await group.reduce(into: []) { $0.append($1) }
        }
        #expect(tokens == Array(repeating: "token-1", count: 30))
        #expect(try await server.tokenRequests(through: transport) == 1)
    }

    @Test func wrongSecret_isAConfigurationError_thatDoesNotEchoTheSecret() async throws {
        let certificates = try TestCertificates.make()
        let server = try TokenServer(tls: certificates)
        let transport = try CurlMultiTransport(options: .init(caFile: certificates.caCertificate))
        let credential = try ClientSecretCredential(
            tenantID: "t", clientID: "c", clientSecret: Secret("wrong-secret-value"), authorityHost: server.base,
            transport: transport)
        let error = try #require(await awaitToken(credential).error)
        #expect(!error.isTransient)
        #expect(error.message.contains("invalid_client"))
        #expect(error.message.contains("AADSTS7000215"))
        #expect(!error.message.contains("wrong-secret-value"))
    }

    @Test func untrustedCertificate_isTransientTLSFailure() async throws {
        let certificates = try TestCertificates.make()
        let server = try TokenServer(tls: certificates)
        let credential = try ClientSecretCredential(
            tenantID: "t", clientID: "c", clientSecret: Secret(Self.secret), authorityHost: server.base,
            transport: try CurlMultiTransport())
        let error = try #require(await awaitToken(credential).error)
        #expect(error.message.contains("tls"))
    }

    @Test func imds_overPlainHTTP_throughThePodIdentityOverride() async throws {
        let server = try TokenServer(tls: nil)
        let transport = try CurlMultiTransport()
        let credential = try ManagedIdentityCredential(
            clientID: "uami-client", environment: ["AZURE_POD_IDENTITY_AUTHORITY_HOST": server.base],
            transport: transport)
        let token = try await awaitToken(credential).get()
        #expect(token.token == "mi-token-1")
        // expires_on arrived as an epoch string: about an hour from now.
        #expect(abs(token.expiresOn.timeIntervalSinceNow - 3600) < 60)
        #expect(try await awaitToken(credential).get().token == "mi-token-1")
        let stats = try await server.stats(through: transport)
        #expect(stats["imds_requests"] as? Int == 1)
        #expect((stats["paths"] as? [String])?.first?.contains("client_id=uami-client") == true)
    }
}
