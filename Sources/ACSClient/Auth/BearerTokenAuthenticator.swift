import Foundation

/// Entra ID authentication of ACS requests: `Authorization: Bearer <token>` from a ``TokenCredential``,
/// with no HMAC headers (acs-email-api.md §4.1).
///
/// Like azure-core's `_enforce_https`, it refuses to put a token on a request to a non-https URL: anyone on
/// the path could replay it against the resource. A local plain-http emulator needs the explicit,
/// test-only ``allowInsecureHTTPForTesting``.
public struct BearerTokenAuthenticator: RequestAuthenticator, CustomStringConvertible {
    public let credential: TokenCredential
    public let scope: String
    public let allowInsecureHTTPForTesting: Bool

    public init(
        credential: TokenCredential, scope: String = ACSTokenScope.communication,
        allowInsecureHTTPForTesting: Bool = false
    ) {
        self.credential = credential
        self.scope = scope
        self.allowInsecureHTTPForTesting = allowInsecureHTTPForTesting
    }

    public func authenticate(
        _ request: HTTPRequest, host: String, pathAndQuery: String,
        completion: @escaping @Sendable (Result<HTTPRequest, AuthenticationError>) -> Void
    ) {
        let scheme = URLComponents(string: request.url)?.scheme?.lowercased()
        guard scheme == "https" || (scheme == "http" && allowInsecureHTTPForTesting) else {
            completion(
                .failure(
                    AuthenticationError(
                        "Bearer token authentication is not permitted for non-https URLs (\(host)); "
                            + "use an https ACS endpoint", isTransient: false)))
            return
        }
        credential.getToken(scope: scope) { result in
            switch result {
            case .success(let token):
                var authenticated = request
                authenticated.headers.removeAll { $0.name.lowercased() == "authorization" }
                authenticated.headers.append((name: "Authorization", value: "Bearer \(token.token)"))
                completion(.success(authenticated))
            case .failure(let error):
                completion(.failure(error))
            }
        }
    }

    /// A 401 for a bearer token usually means the token was revoked or issued for the wrong audience: drop it
    /// so the next attempt fetches a fresh one
    /// (`TokenCacheTests.aRefusedTokenIsDropped_andTheNextCallFetchesANewOne`).
    public func credentialsRejected() -> Bool { credential.invalidate(scope: scope) }

    public var description: String { "BearerTokenAuthenticator(\(credential), scope: \(scope))" }
}
