import Foundation

/// Adds authentication to an ACS request: an HMAC signature over the exact request (access key), or an
/// Entra ID bearer token. Asynchronous because a token may first have to be fetched.
public protocol RequestAuthenticator: Sendable {
    /// Returns `request` with its authentication headers added. `host` is the `Host` libcurl sends and
    /// `pathAndQuery` the request target exactly as sent; both are what an HMAC signature covers.
    /// `completion` is called exactly once, on any queue, and must not block.
    func authenticate(
        _ request: HTTPRequest, host: String, pathAndQuery: String,
        completion: @escaping @Sendable (Result<HTTPRequest, AuthenticationError>) -> Void)

    /// ACS answered 401 to a request this authenticator signed. Returns true when something changed (a cached
    /// token was dropped) so that one more attempt can succeed; false when retrying cannot help.
    func credentialsRejected() -> Bool
}

extension RequestAuthenticator {
    public func credentialsRejected() -> Bool { false }
}

/// Why a request could not be authenticated (no token could be obtained, a secret is unreadable…).
/// The message never contains a secret.
public struct AuthenticationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String
    /// True when trying again later may help (token endpoint unreachable or throttled); false for
    /// configuration errors the operator must fix.
    public var isTransient: Bool

    public init(_ message: String, isTransient: Bool) {
        self.message = message
        self.isTransient = isTransient
    }

    public var description: String { message }
}

/// HMAC-SHA256 with the resource's access key (acs-email-api.md §3): signs each request as it is sent.
public struct HMACAuthenticator: RequestAuthenticator {
    private let signer: RequestSigner
    private let now: @Sendable () -> Date

    public init(key: AccessKey, now: @escaping @Sendable () -> Date = { Date() }) {
        self.signer = RequestSigner(key: key)
        self.now = now
    }

    public func authenticate(
        _ request: HTTPRequest, host: String, pathAndQuery: String,
        completion: @escaping @Sendable (Result<HTTPRequest, AuthenticationError>) -> Void
    ) {
        var signed = request
        signed.headers += signer.headers(
            method: request.method, pathAndQuery: pathAndQuery, host: host, body: request.body, date: now())
        completion(.success(signed))
    }
}
