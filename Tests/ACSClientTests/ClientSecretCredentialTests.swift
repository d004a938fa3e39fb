import Foundation
import Testing

@testable import ACSClient

/// The client-credentials grant (acs-email-api.md §4.2) and how its failures are reported.
struct ClientSecretCredentialTests {
    static let secret = "s3cr3t~value/with+chars="

    private func credential(
        _ transport: FakeTransport, clock: TestClock = TestClock(), authority: String = AuthorityHost.publicCloud
    ) throws -> ClientSecretCredential {
        try ClientSecretCredential(
            tenantID: "72f988bf-86f1-41af-91ab-2d7cd011db47", clientID: "00000000-1111-2222-3333-444444444444",
            clientSecret: Secret(Self.secret), authorityHost: authority, transport: transport, now: clock.function)
    }

    @Test func sendsTheExactFormPostWithTheDoubleSlashScope() throws {
        let transport = FakeTransport([FakeTransport.token("tok-1")])
        let clock = TestClock()
        let result = immediateToken(try credential(transport, clock: clock))
        let token = try #require(try result?.get())
        #expect(token.token == "tok-1")
        #expect(token.expiresOn == clock.now.addingTimeInterval(3599))
        let request = try #require(transport.requests.first)
        #expect(request.method == "POST")
        #expect(
            request.url
                == "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/oauth2/v2.0/token")
        #expect(request.header("Content-Type") == "application/x-www-form-urlencoded")
        #expect(request.header("Accept") == "application/json")
        #expect(request.useProxy)
        #expect(
            request.bodyText == "client_id=00000000-1111-2222-3333-444444444444&grant_type=client_credentials"
                + "&client_secret=s3cr3t~value%2Fwith%2Bchars%3D"
                + "&scope=https%3A%2F%2Fcommunication.azure.com%2F%2F.default")
    }

    @Test func authorityHost_isNormalised_andMustBeHTTPS() throws {
        let transport = FakeTransport([FakeTransport.token("t")])
        _ = immediateToken(try credential(transport, authority: "login.microsoftonline.us/"))
        #expect(transport.requests.first?.url.hasPrefix("https://login.microsoftonline.us/72f988bf") == true)

        #expect(throws: CredentialConfigurationError.self) {
            try credential(FakeTransport(), authority: "http://login.example.test")
        }
        #expect(throws: CredentialConfigurationError.self) {
            try ClientSecretCredential(
                tenantID: "../evil", clientID: "c", clientSecret: Secret("s"), transport: FakeTransport())
        }
    }

    @Test(arguments: [
        (
            400, #"{"error":"invalid_client","error_description":"AADSTS7000215: Invalid client secret provided."}"#,
            false, "invalid_client"
        ),
        (
            401,
            #"{"error":"invalid_client","error_description":"AADSTS7000222: The client secret keys are expired."}"#,
            false, "AADSTS7000222"
        ),
        (400, #"{"error":"invalid_scope","error_description":"AADSTS70011: bad scope"}"#, false, "invalid_scope"),
        (429, #"{"error":"temporarily_unavailable"}"#, true, "429"),
        (500, "oops", true, "500"),
        (503, "", true, "503"),
    ])
    func httpErrors_areClassified(status: Int, body: String, transient: Bool, mentions: String) throws {
        let transport = FakeTransport([FakeTransport.json(status, body)])
        let error = try #require(immediateToken(try credential(transport))?.error)
        #expect(error.isTransient == transient)
        #expect(error.message.contains(mentions))
        #expect(error.message.contains("login.microsoftonline.com"))
    }

    @Test(arguments: [HTTPTransportError.Kind.timeout, .connectionFailed, .tls, .connectionLost])
    func networkFailures_areTransient(kind: HTTPTransportError.Kind) throws {
        let transport = FakeTransport([.failure(HTTPTransportError(kind, "boom"))])
        let error = try #require(immediateToken(try credential(transport))?.error)
        #expect(error.isTransient)
        #expect(error.message.contains(kind.rawValue))
    }

    @Test func theSecretNeverAppearsInMessages() throws {
        // An endpoint (or a proxy) echoing the request back must not leak the secret into the log.
        let echo =
            #"{"error":"invalid_client","error_description":"bad client_secret=\#(Self.secret) and "#
            + #"s3cr3t~value%2Fwith%2Bchars%3D"}"#
        let transport = FakeTransport([
            FakeTransport.json(401, echo),
            .failure(HTTPTransportError(.other, "curl said client_secret=\(Self.secret)")),
        ])
        let credential = try credential(transport)
        for _ in 0..<2 {
            let error = try #require(immediateToken(credential)?.error)
            #expect(!error.message.contains(Self.secret))
            #expect(!error.message.contains("s3cr3t~value%2F"))
            #expect(error.message.contains("***"))
        }
        #expect(!"\(credential)".contains(Self.secret))
        #expect(!String(reflecting: Secret(Self.secret)).contains(Self.secret))
    }

    /// Messages quote the endpoint's own words (a `token_type` that is not Bearer, an error description, a
    /// Retry-After), cut to a length limit: an endpoint that echoes the request there must not put the secret in
    /// the log, whole or cut short by the limit, nor the access token it sent beside it.
    @Test func theSecretNeverAppearsInQuotedAnswers() throws {
        let secret = Self.secret
        let transport = FakeTransport([
            FakeTransport.json(200, #"{"access_token":"e_t.sig","token_type":"Bea\#(secret)rer","expires_in":60}"#),
            FakeTransport.json(
                200, #"{"access_token":"e_t.sig","token_type":"\#(String(repeating: "x", count: 30))\#(secret)"}"#),
            FakeTransport.json(
                200, #"{"access_token":"tok-secret-1","token_type":"pop tok-secret-1","expires_in":60}"#),
            FakeTransport.json(
                401,
                #"{"error":"invalid_client","error_description":"\#(String(repeating: "x", count: 290))\#(secret)"}"#),
            FakeTransport.json(
                429, "{}", headers: [("Retry-After", String(repeating: "1", count: 30) + secret)]),
        ])
        let credential = try credential(transport)
        for expected in ["not a Bearer token", "not a Bearer token", "not a Bearer token", "invalid_client", "retry"] {
            let error = try #require(immediateToken(credential)?.error)
            #expect(error.message.contains(expected))
            #expect(!error.message.contains(secret.prefix(6)), "\(error.message)")
            #expect(!error.message.contains("tok-secret-1"))
        }
    }

    @Test func malformedSuccess_isAConfigurationError() throws {
        let transport = FakeTransport([
            .success(HTTPResponse(status: 200, body: Array("<html>captive portal</html>".utf8))),
            FakeTransport.json(200, #"{"access_token":"x","token_type":"pop","expires_in":60}"#),
        ])
        let credential = try credential(transport)
        let first = try #require(immediateToken(credential)?.error)
        #expect(!first.isTransient)
        #expect(first.message.contains("without an access_token"))
        let second = try #require(immediateToken(credential)?.error)
        #expect(second.message.contains("not a Bearer token"))
    }

    @Test func refreshIn_becomesRefreshOn() throws {
        let clock = TestClock()
        let transport = FakeTransport([FakeTransport.token("t", expiresIn: 7200, extra: #","refresh_in":3600"#)])
        let token = try #require(try immediateToken(try credential(transport, clock: clock))?.get())
        #expect(token.refreshOn == clock.now.addingTimeInterval(3600))
        #expect(!"\(token)".contains("\"t\""))
        #expect("\(token)".contains("***"))
    }
}
