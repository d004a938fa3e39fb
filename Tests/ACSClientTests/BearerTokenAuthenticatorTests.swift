import Foundation
import Testing

@testable import ACSClient

/// `Authorization: Bearer` on ACS requests, and the https-only rule (acs-email-api.md §4.1).
struct BearerTokenAuthenticatorTests {
    /// A credential that hands out a fixed token and counts the calls.
    final class FixedCredential: TokenCredential, @unchecked Sendable {
        let result: Result<AccessToken, AuthenticationError>
        private let lock = NSLock()
        private var scopes: [String] = []

        init(_ result: Result<AccessToken, AuthenticationError>) {
            self.result = result
        }

        var requestedScopes: [String] { lock.withLock { scopes } }

        func getToken(
            scope: String, completion: @escaping @Sendable (Result<AccessToken, AuthenticationError>) -> Void
        ) {
            lock.withLock { scopes.append(scope) }
            completion(result)
        }
    }

    private func authenticate(
        _ authenticator: BearerTokenAuthenticator, url: String
    ) -> Result<HTTPRequest, AuthenticationError>? {
        let results = Results<Result<HTTPRequest, AuthenticationError>>()
        let request = HTTPRequest(
            method: "POST", url: url, headers: [("Content-Type", "application/json"), ("authorization", "stale")],
            body: Array("{}".utf8))
        authenticator.authenticate(request, host: "h", pathAndQuery: "/emails:send?api-version=2025-09-01") {
            results.append($0)
        }
        return results.all.first
    }

    static let token = AccessToken(token: "eyJ.token", expiresOn: Date().addingTimeInterval(3600))

    @Test func addsTheBearerHeader_forTheACSScope_andNoHMACHeaders() throws {
        let credential = FixedCredential(.success(Self.token))
        let authenticator = BearerTokenAuthenticator(credential: credential)
        let request = try #require(
            try authenticate(
                authenticator, url: "https://contoso.communication.azure.com/emails:send?api-version=2025-09-01")?.get()
        )
        #expect(request.headers.filter { $0.name.lowercased() == "authorization" }.map(\.value) == ["Bearer eyJ.token"])
        #expect(request.header("x-ms-date") == nil)
        #expect(request.header("x-ms-content-sha256") == nil)
        #expect(request.header("Content-Type") == "application/json")
        #expect(request.body == Array("{}".utf8))
        #expect(credential.requestedScopes == ["https://communication.azure.com//.default"])
    }

    @Test func refusesPlainHTTP_withoutAskingForAToken() throws {
        let credential = FixedCredential(.success(Self.token))
        let error = try #require(
            authenticate(
                BearerTokenAuthenticator(credential: credential), url: "http://127.0.0.1:8080/emails:send")?.error)
        #expect(!error.isTransient)
        #expect(error.message.contains("non-https"))
        #expect(credential.requestedScopes.isEmpty)
    }

    @Test func plainHTTP_onlyWithTheTestingFlag() throws {
        let authenticator = BearerTokenAuthenticator(
            credential: FixedCredential(.success(Self.token)), allowInsecureHTTPForTesting: true)
        let request = try #require(try authenticate(authenticator, url: "http://127.0.0.1:8080/emails:send")?.get())
        #expect(request.header("Authorization") == "Bearer eyJ.token")
    }

    @Test func tokenErrorsPassThrough() throws {
        let failure = AuthenticationError("token endpoint down", isTransient: true)
        let error = try #require(
            authenticate(
                BearerTokenAuthenticator(credential: FixedCredential(.failure(failure))),
                url: "https://contoso.communication.azure.com/emails:send")?.error)
        #expect(error == failure)
    }

    @Test func endToEnd_withAClientSecretCredential() throws {
        let transport = FakeTransport([FakeTransport.token("from-entra")])
        let credential = try ClientSecretCredential(
            tenantID: "t", clientID: "c", clientSecret: Secret("s3cret"), transport: transport)
        let request = try #require(
            try authenticate(
                BearerTokenAuthenticator(credential: credential), url: "https://contoso.communication.azure.com/x")?
                .get())
        #expect(request.header("Authorization") == "Bearer from-entra")
        #expect(!"\(BearerTokenAuthenticator(credential: credential))".contains("s3cret"))
    }
}
