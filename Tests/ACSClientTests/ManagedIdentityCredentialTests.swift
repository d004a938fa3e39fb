import Foundation
import Testing

@testable import ACSClient

/// Managed identity: IMDS and the App Service / Container Apps endpoint (acs-email-api.md §4.3).
struct ManagedIdentityCredentialTests {
    /// The IMDS answer as §4.3 captured it: every number a string, `expires_on` an epoch.
    static func imdsAnswer(token: String, expiresOn: Int) -> FakeTransport.Outcome {
        FakeTransport.json(
            200,
            #"{"access_token":"\#(token)","client_id":"cid","expires_in":"86399","#
                + #""expires_on":"\#(expiresOn)","ext_expires_in":"86399","not_before":"\#(expiresOn - 86399)","#
                + #""resource":"https://communication.azure.com/","token_type":"Bearer"}"#)
    }

    @Test func imds_plainHTTP_noProxy_metadataHeader_stringNumbers() throws {
        let clock = TestClock()
        let expiresOn = Int(clock.now.timeIntervalSince1970) + 86_399
        let transport = FakeTransport([Self.imdsAnswer(token: "mi-token", expiresOn: expiresOn)])
        let credential = try ManagedIdentityCredential(environment: [:], transport: transport, now: clock.function)
        #expect(credential.source == .imds(base: "http://169.254.169.254"))
        let token = try #require(try immediateToken(credential)?.get())
        #expect(token.token == "mi-token")
        #expect(token.expiresOn == Date(timeIntervalSince1970: TimeInterval(expiresOn)))
        let request = try #require(transport.requests.first)
        #expect(request.method == "GET")
        #expect(
            request.url == "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01"
                + "&resource=https%3A%2F%2Fcommunication.azure.com%2F")
        #expect(request.header("Metadata") == "true")
        #expect(request.useProxy == false)
        #expect(request.connectTimeout == 2)
        #expect(request.header("Authorization") == nil)
    }

    @Test func imds_userAssigned_andPodIdentityOverride() throws {
        let transport = FakeTransport([Self.imdsAnswer(token: "t", expiresOn: 1_900_000_000)])
        let credential = try ManagedIdentityCredential(
            clientID: "11111111-2222-3333-4444-555555555555",
            environment: ["AZURE_POD_IDENTITY_AUTHORITY_HOST": "http://10.0.0.7:2579/"], transport: transport,
            now: TestClock().function)
        _ = immediateToken(credential)
        #expect(
            transport.requests.first?.url == "http://10.0.0.7:2579/metadata/identity/oauth2/token"
                + "?api-version=2018-02-01&resource=https%3A%2F%2Fcommunication.azure.com%2F"
                + "&client_id=11111111-2222-3333-4444-555555555555")
        #expect(transport.requests.first?.useProxy == false)
    }

    @Test func appService_apiVersionAndIdentityHeader() throws {
        let clock = TestClock()
        let expiresOn = Int(clock.now.timeIntervalSince1970) + 3600
        let transport = FakeTransport([
            FakeTransport.json(
                200,
                #"{"access_token":"app-token","expires_on":"\#(expiresOn)","#
                    + #""resource":"https://communication.azure.com/","token_type":"Bearer"}"#)
        ])
        let environment = [
            "IDENTITY_ENDPOINT": "http://localhost:42356/msi/token", "IDENTITY_HEADER": "header-secret-value",
        ]
        let credential = try ManagedIdentityCredential(
            clientID: "uami", environment: environment, transport: transport, now: clock.function)
        #expect(credential.source == .appService(endpoint: "http://localhost:42356/msi/token"))
        let token = try #require(try immediateToken(credential)?.get())
        #expect(token.token == "app-token")
        #expect(token.expiresOn == Date(timeIntervalSince1970: TimeInterval(expiresOn)))
        let request = try #require(transport.requests.first)
        #expect(
            request.url == "http://localhost:42356/msi/token?api-version=2019-08-01"
                + "&resource=https%3A%2F%2Fcommunication.azure.com%2F&client_id=uami")
        #expect(request.header("X-IDENTITY-HEADER") == "header-secret-value")
        #expect(request.useProxy == false)
        #expect(!"\(credential)".contains("header-secret-value"))
    }

    @Test func appService_identityHeaderNeverInMessages() throws {
        let transport = FakeTransport([
            FakeTransport.json(400, #"{"error":{"code":"bad","message":"header header-secret-value rejected"}}"#)
        ])
        let credential = try ManagedIdentityCredential(
            environment: [
                "IDENTITY_ENDPOINT": "http://127.0.0.1:41741/MSI/token/", "IDENTITY_HEADER": "header-secret-value",
            ],
            transport: transport, now: TestClock().function)
        let error = try #require(immediateToken(credential)?.error)
        #expect(!error.isTransient)
        #expect(!error.message.contains("header-secret-value"))
        #expect(error.message.contains("bad"))
    }

    @Test func appService_nonLoopbackHTTP_isRefused() {
        #expect(throws: CredentialConfigurationError.self) {
            try ManagedIdentityCredential(
                environment: ["IDENTITY_ENDPOINT": "http://identity.example.test/token", "IDENTITY_HEADER": "h"],
                transport: FakeTransport())
        }
    }

    @Test(arguments: [
        ["IDENTITY_ENDPOINT": "https://10.0.0.4:2377/", "IDENTITY_HEADER": "h", "IDENTITY_SERVER_THUMBPRINT": "ab"],
        ["IDENTITY_ENDPOINT": "http://localhost:40342/metadata/identity/oauth2/token", "IMDS_ENDPOINT": "http://x"],
        ["MSI_ENDPOINT": "http://localhost:50342/oauth2/token"],
    ])
    func unsupportedSources_areNamed(environment: [String: String]) {
        #expect(throws: CredentialConfigurationError.self) {
            try ManagedIdentityCredential(environment: environment, transport: FakeTransport())
        }
    }

    @Test(arguments: [(400, false), (404, true), (410, true), (429, true), (500, true), (403, false)])
    func imdsErrors_areClassified(status: Int, transient: Bool) throws {
        let transport = FakeTransport([FakeTransport.json(status, #"{"error":"invalid_request"}"#)])
        let credential = try ManagedIdentityCredential(
            environment: [:], transport: transport, now: TestClock().function)
        let error = try #require(immediateToken(credential)?.error)
        #expect(error.isTransient == transient)
        if status == 400 { #expect(error.message.contains("no managed identity")) }
    }

    @Test func imdsUnreachable_isTransient() throws {
        let transport = FakeTransport([.failure(HTTPTransportError(.timeout, "Connection timed out after 2000 ms"))])
        let credential = try ManagedIdentityCredential(
            environment: [:], transport: transport, now: TestClock().function)
        let error = try #require(immediateToken(credential)?.error)
        #expect(error.isTransient)
        #expect(error.message.contains("169.254.169.254"))
    }

    @Test func resourceFromScope() {
        #expect(ACSTokenScope.resource(forScope: ACSTokenScope.communication) == "https://communication.azure.com/")
    }
}
