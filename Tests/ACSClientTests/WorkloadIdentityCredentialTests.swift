import Foundation
import Testing

@testable import ACSClient

/// Workload identity: the federated token file as client_assertion, re-read on rotation (acs-email-api.md §4.4).
struct WorkloadIdentityCredentialTests {
    private static func write(_ text: String, to url: URL, modified: Date) throws {
        try Data(text.utf8).write(to: url)
        try FileManager.default.setAttributes([.modificationDate: modified], ofItemAtPath: url.path)
    }

    private static func assertion(in request: HTTPRequest?) -> String? {
        guard let body = request?.bodyText else { return nil }
        for field in body.split(separator: "&") where field.hasPrefix("client_assertion=") {
            return String(field.dropFirst("client_assertion=".count)).removingPercentEncoding
        }
        return nil
    }

    @Test func sendsTheFileAsClientAssertion() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("azure-identity-token")
        try Self.write("eyJ.first.jwt\n", to: file, modified: Date(timeIntervalSince1970: 1_700_000_000))
        let transport = FakeTransport([FakeTransport.token("wi")])
        let credential = try WorkloadIdentityCredential(
            tenantID: "tenant", clientID: "client", tokenFile: file.path, authorityHost: "https://login.example.test/",
            transport: transport, now: TestClock().function)
        #expect(try immediateToken(credential)?.get().token == "wi")
        let request = try #require(transport.requests.first)
        #expect(request.url == "https://login.example.test/tenant/oauth2/v2.0/token")
        #expect(
            request.bodyText == "client_id=client&grant_type=client_credentials&client_assertion=eyJ.first.jwt"
                + "&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer"
                + "&scope=https%3A%2F%2Fcommunication.azure.com%2F%2F.default")
    }

    @Test func theFileIsReReadWhenItChanges_orWhenTheCopyIsTenMinutesOld() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("token")
        let firstModified = Date(timeIntervalSince1970: 1_700_000_000)
        try Self.write("assertion-1", to: file, modified: firstModified)
        let clock = TestClock()
        let transport = FakeTransport()
        let credential = try WorkloadIdentityCredential(
            tenantID: "tenant", clientID: "client", tokenFile: file.path, transport: transport, now: clock.function)
        // Short tokens, so that each step below needs a new one.
        func fetch() throws -> String? {
            transport.enqueue(FakeTransport.token("t", expiresIn: 60))
            _ = try #require(immediateToken(credential)).get()
            clock.advance(61)
            return Self.assertion(in: transport.requests.last)
        }
        #expect(try fetch() == "assertion-1")

        // Same modification time, copy younger than 10 min: the copy in memory is used.
        try Self.write("assertion-ignored", to: file, modified: firstModified)
        #expect(try fetch() == "assertion-1")

        // Kubernetes rotated the file: new modification time → re-read at once.
        try Self.write("assertion-2", to: file, modified: firstModified.addingTimeInterval(3600))
        #expect(try fetch() == "assertion-2")

        // Same modification time but the copy is over 600 s old → re-read anyway.
        try Self.write("assertion-3", to: file, modified: firstModified.addingTimeInterval(3600))
        clock.advance(600)
        #expect(try fetch() == "assertion-3")
    }

    @Test func aMissingFile_isAConfigurationErrorNamingTheVariable() throws {
        let credential = try WorkloadIdentityCredential(
            tenantID: "tenant", clientID: "client", tokenFile: "/nonexistent/acs-test/token",
            transport: FakeTransport(), now: TestClock().function)
        let error = try #require(immediateToken(credential)?.error)
        #expect(!error.isTransient)
        #expect(error.message.contains("AZURE_FEDERATED_TOKEN_FILE"))
        #expect(error.message.contains("/nonexistent/acs-test/token"))
    }

    @Test func theAssertionNeverAppearsInMessages() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("token")
        try Self.write("eyJhbGciOi.secret-assertion.sig", to: file, modified: Date())
        let transport = FakeTransport([
            FakeTransport.json(
                400,
                #"{"error":"invalid_client","error_description":"#
                    + #""assertion eyJhbGciOi.secret-assertion.sig expired"}"#)
        ])
        let credential = try WorkloadIdentityCredential(
            tenantID: "tenant", clientID: "client", tokenFile: file.path, transport: transport,
            now: TestClock().function)
        let error = try #require(immediateToken(credential)?.error)
        #expect(!error.isTransient)
        #expect(!error.message.contains("secret-assertion"))
    }
}
