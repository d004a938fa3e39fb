import Foundation

/// The Entra ID authority: `AZURE_AUTHORITY_HOST` or the public cloud's `https://login.microsoftonline.com`
/// (acs-email-api.md §4.2), validated to be https.
public enum AuthorityHost {
    public static let publicCloud = "https://login.microsoftonline.com"

    /// Normalises an authority host: a bare host name gets `https://` (as azure-identity does), the trailing
    /// `/` goes. Plain http is refused: the client secret or assertion would travel in clear.
    public static func normalize(_ text: String) throws -> String {
        var host = text.trimmingCharacters(in: .whitespacesAndNewlines)
        while host.hasSuffix("/") { host.removeLast() }
        if !host.contains("://") { host = "https://" + host }
        guard let components = URLComponents(string: host), components.scheme?.lowercased() == "https",
            let name = components.host, !name.isEmpty
        else {
            throw CredentialConfigurationError(
                "authority host '\(text)' (AZURE_AUTHORITY_HOST) must be an https URL: "
                    + "tokens are only fetched over https")
        }
        return host
    }

    /// `{authority}/{tenant}/oauth2/v2.0/token`.
    static func tokenURL(authority: String, tenantID: String) -> String {
        "\(authority)/\(TokenEndpoint.percentEncode(tenantID))/oauth2/v2.0/token"
    }

    /// Tenant ids are GUIDs or domain names; anything else would change the path of the token URL.
    static func validateTenant(_ tenantID: String) throws {
        let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-."))
        guard !tenantID.isEmpty, tenantID.unicodeScalars.allSatisfy(allowed.contains) else {
            throw CredentialConfigurationError(
                "tenant id '\(tenantID)' (AZURE_TENANT_ID) must be a GUID or a domain name")
        }
    }
}

/// A service principal with a client secret: the OAuth2 client-credentials grant against
/// `{authority}/{tenant}/oauth2/v2.0/token` (acs-email-api.md §4.2). Caches its token (see ``TokenCredential``).
public final class ClientSecretCredential: TokenCredential, CustomStringConvertible {
    public let tenantID: String
    public let clientID: String
    private let cache: TokenCache

    /// - Parameters:
    ///   - authorityHost: `AZURE_AUTHORITY_HOST`; must be https.
    ///   - now: the clock, injectable for tests.
    public init(
        tenantID: String, clientID: String, clientSecret: Secret, authorityHost: String = AuthorityHost.publicCloud,
        transport: HTTPTransport, now: @escaping @Sendable () -> Date = { Date() }
    ) throws {
        try AuthorityHost.validateTenant(tenantID)
        guard !clientID.isEmpty else { throw CredentialConfigurationError("client id (AZURE_CLIENT_ID) is empty") }
        guard !clientSecret.value.isEmpty else {
            throw CredentialConfigurationError("client secret (AZURE_CLIENT_SECRET) is empty")
        }
        self.tenantID = tenantID
        self.clientID = clientID
        let tokenURL = AuthorityHost.tokenURL(authority: try AuthorityHost.normalize(authorityHost), tenantID: tenantID)
        let endpoint = TokenEndpoint(credentialName: "client secret credential", transport: transport, now: now)
        cache = TokenCache(now: now) { scope, completion in
            endpoint.requestToken(
                Self.tokenRequest(url: tokenURL, clientID: clientID, clientSecret: clientSecret, scope: scope),
                secrets: [clientSecret.value, TokenEndpoint.percentEncode(clientSecret.value)], completion: completion)
        }
    }

    public func getToken(
        scope: String, completion: @escaping @Sendable (Result<AccessToken, AuthenticationError>) -> Void
    ) {
        cache.getToken(scope: scope, completion: completion)
    }

    public func invalidate(scope: String) -> Bool { cache.invalidate(scope: scope) }

    /// The token request exactly as §4.2 captured it from MSAL (minus its optional `client_info=1`).
    static func tokenRequest(url: String, clientID: String, clientSecret: Secret, scope: String) -> HTTPRequest {
        let body = TokenEndpoint.formEncode([
            ("client_id", clientID), ("grant_type", "client_credentials"), ("client_secret", clientSecret.value),
            ("scope", scope),
        ])
        return HTTPRequest(
            method: "POST", url: url,
            headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")],
            body: Array(body.utf8), timeout: TokenEndpoint.timeout, connectTimeout: TokenEndpoint.connectTimeout)
    }

    public var description: String { "ClientSecretCredential(tenant: \(tenantID), client: \(clientID), secret: ***)" }
}

/// Workload identity (AKS, federated credentials): the client-credentials grant with the projected
/// service-account token from `AZURE_FEDERATED_TOKEN_FILE` as `client_assertion` (acs-email-api.md §4.4).
///
/// Kubernetes rotates that file, so it is re-read when its modification time changes or when the copy in
/// memory is older than 10 minutes (azure-identity re-reads after 600 s).
public final class WorkloadIdentityCredential: TokenCredential, CustomStringConvertible {
    public let tenantID: String
    public let clientID: String
    public let tokenFile: String
    private let cache: TokenCache

    public init(
        tenantID: String, clientID: String, tokenFile: String, authorityHost: String = AuthorityHost.publicCloud,
        transport: HTTPTransport, now: @escaping @Sendable () -> Date = { Date() }
    ) throws {
        try AuthorityHost.validateTenant(tenantID)
        guard !clientID.isEmpty else { throw CredentialConfigurationError("client id (AZURE_CLIENT_ID) is empty") }
        guard !tokenFile.isEmpty else {
            throw CredentialConfigurationError("federated token file (AZURE_FEDERATED_TOKEN_FILE) is empty")
        }
        self.tenantID = tenantID
        self.clientID = clientID
        self.tokenFile = tokenFile
        let tokenURL = AuthorityHost.tokenURL(authority: try AuthorityHost.normalize(authorityHost), tenantID: tenantID)
        let endpoint = TokenEndpoint(credentialName: "workload identity credential", transport: transport, now: now)
        let assertionFile = AssertionFile(path: tokenFile, now: now)
        cache = TokenCache(now: now) { scope, completion in
            let assertion: String
            do throws(AuthenticationError) {
                assertion = try assertionFile.current()
            } catch {
                return completion(.failure(error))
            }
            endpoint.requestToken(
                Self.tokenRequest(url: tokenURL, clientID: clientID, assertion: assertion, scope: scope),
                secrets: [assertion, TokenEndpoint.percentEncode(assertion)], completion: completion)
        }
    }

    public func getToken(
        scope: String, completion: @escaping @Sendable (Result<AccessToken, AuthenticationError>) -> Void
    ) {
        cache.getToken(scope: scope, completion: completion)
    }

    public func invalidate(scope: String) -> Bool { cache.invalidate(scope: scope) }

    /// §4.2's request with the certificate/federated variant's `client_assertion` in place of the secret.
    static func tokenRequest(url: String, clientID: String, assertion: String, scope: String) -> HTTPRequest {
        let body = TokenEndpoint.formEncode([
            ("client_id", clientID), ("grant_type", "client_credentials"),
            ("client_assertion", assertion),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("scope", scope),
        ])
        return HTTPRequest(
            method: "POST", url: url,
            headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Accept", "application/json")],
            body: Array(body.utf8), timeout: TokenEndpoint.timeout, connectTimeout: TokenEndpoint.connectTimeout)
    }

    public var description: String {
        "WorkloadIdentityCredential(tenant: \(tenantID), client: \(clientID), tokenFile: \(tokenFile))"
    }
}

/// The federated token file and the copy of it in memory.
final class AssertionFile: @unchecked Sendable {
    /// How long a read assertion is trusted without re-reading the file (azure-identity: 600 s).
    static let maxAge: TimeInterval = 600
    /// Projected service-account tokens are a few KiB; anything much larger is not one.
    static let maxSize = 64 * 1024

    private struct Cached {
        var value: String
        var modification: timespec
        var readAt: Date
    }

    let path: String
    private let now: @Sendable () -> Date
    private let lock = NSLock()
    private var cached: Cached?

    init(path: String, now: @escaping @Sendable () -> Date) {
        self.path = path
        self.now = now
    }

    /// The current assertion: the copy in memory unless the file changed or the copy is too old. A small
    /// local file read, done only when a token is fetched (about once an hour).
    func current() throws(AuthenticationError) -> String {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw AuthenticationError(
                "workload identity credential: cannot stat AZURE_FEDERATED_TOKEN_FILE \(path): "
                    + String(cString: strerror(errno)), isTransient: false)
        }
        let modification = status.st_mtim
        let date = now()
        lock.lock()
        let copy = cached
        lock.unlock()
        if let copy, copy.modification.tv_sec == modification.tv_sec,
            copy.modification.tv_nsec == modification.tv_nsec, date.timeIntervalSince(copy.readAt) < Self.maxAge
        {
            return copy.value
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw AuthenticationError(
                "workload identity credential: cannot read AZURE_FEDERATED_TOKEN_FILE \(path)", isTransient: false)
        }
        defer { try? handle.close() }
        guard let data = try? handle.read(upToCount: Self.maxSize + 1) else {
            throw AuthenticationError(
                "workload identity credential: cannot read AZURE_FEDERATED_TOKEN_FILE \(path)", isTransient: false)
        }
        guard data.count <= Self.maxSize else {
            throw AuthenticationError(
                "workload identity credential: AZURE_FEDERATED_TOKEN_FILE \(path) is too large "
                    + "for a service-account token",
                isTransient: false)
        }
        let value = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !value.isEmpty else {
            throw AuthenticationError(
                "workload identity credential: AZURE_FEDERATED_TOKEN_FILE \(path) is empty", isTransient: false)
        }
        lock.lock()
        cached = Cached(value: value, modification: modification, readAt: date)
        lock.unlock()
        return value
    }
}
