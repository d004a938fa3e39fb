import Foundation

/// The managed identity of the host the gateway runs on (acs-email-api.md §4.3): App Service, Azure
/// Functions and Container Apps through `IDENTITY_ENDPOINT` + `IDENTITY_HEADER`, VMs, scale sets and AKS
/// nodes through IMDS. Caches its token (see ``TokenCredential``).
///
/// Service Fabric, Azure Arc and Azure ML/Cloud Shell (`IDENTITY_SERVER_THUMBPRINT`, `IMDS_ENDPOINT`,
/// `MSI_ENDPOINT`) are recognised and refused with a clear message rather than silently sent to IMDS.
public final class ManagedIdentityCredential: TokenCredential, CustomStringConvertible {
    /// Where tokens come from.
    public enum Source: Sendable, Equatable, CustomStringConvertible {
        /// `GET {IDENTITY_ENDPOINT}?api-version=2019-08-01` with `X-IDENTITY-HEADER`.
        case appService(endpoint: String)
        /// `GET {base}/metadata/identity/oauth2/token?api-version=2018-02-01` with `Metadata: true`, no proxy.
        case imds(base: String)

        public var description: String {
            switch self {
            case .appService(let endpoint): "App Service identity endpoint \(endpoint)"
            case .imds(let base): "IMDS \(base)"
            }
        }
    }

    /// The instance metadata service: a link-local, plain-http address by design.
    public static let imdsAddress = "http://169.254.169.254"
    static let imdsPath = "/metadata/identity/oauth2/token"
    static let imdsAPIVersion = "2018-02-01"
    static let appServiceAPIVersion = "2019-08-01"
    /// azure-identity gives IMDS a 2 s connect timeout: off Azure nothing answers at 169.254.169.254.
    static let imdsConnectTimeout: TimeInterval = 2

    public let source: Source
    /// The client id of a user-assigned identity; nil for the system-assigned one.
    public let clientID: String?
    private let cache: TokenCache

    /// - Parameters:
    ///   - clientID: a user-assigned identity's client id (`AZURE_CLIENT_ID`), or nil for system-assigned.
    ///   - environment: where `IDENTITY_ENDPOINT`, `IDENTITY_HEADER` and `AZURE_POD_IDENTITY_AUTHORITY_HOST`
    ///     are read from.
    public init(
        clientID: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment,
        transport: HTTPTransport, now: @escaping @Sendable () -> Date = { Date() }
    ) throws {
        func value(_ name: String) -> String? {
            guard let text = environment[name]?.trimmingCharacters(in: .whitespacesAndNewlines), !text.isEmpty
            else { return nil }
            return text
        }
        let clientID = clientID.flatMap { $0.isEmpty ? nil : $0 }
        self.clientID = clientID
        let identityHeader: Secret?
        if let endpoint = value("IDENTITY_ENDPOINT"), let header = value("IDENTITY_HEADER") {
            if value("IDENTITY_SERVER_THUMBPRINT") != nil {
                throw CredentialConfigurationError(
                    "managed identity: Service Fabric (IDENTITY_SERVER_THUMBPRINT is set) is not supported")
            }
            guard let components = URLComponents(string: endpoint), let host = components.host,
                let scheme = components.scheme?.lowercased(),
                scheme == "https" || (scheme == "http" && TokenEndpoint.isLoopback(host))
            else {
                throw CredentialConfigurationError(
                    "managed identity: IDENTITY_ENDPOINT '\(endpoint)' must be https, or http on localhost "
                        + "(App Service and Container Apps serve it there)")
            }
            source = .appService(endpoint: endpoint)
            identityHeader = Secret(header)
        } else if value("IDENTITY_ENDPOINT") != nil, value("IMDS_ENDPOINT") != nil {
            throw CredentialConfigurationError(
                "managed identity: Azure Arc (IDENTITY_ENDPOINT and IMDS_ENDPOINT are set) is not supported")
        } else if value("MSI_ENDPOINT") != nil {
            throw CredentialConfigurationError(
                "managed identity: Azure ML / Cloud Shell (MSI_ENDPOINT is set) is not supported")
        } else {
            var base = value("AZURE_POD_IDENTITY_AUTHORITY_HOST") ?? Self.imdsAddress
            while base.hasSuffix("/") { base.removeLast() }
            guard let components = URLComponents(string: base), let scheme = components.scheme?.lowercased(),
                scheme == "http" || scheme == "https", components.host?.isEmpty == false
            else {
                throw CredentialConfigurationError(
                    "managed identity: AZURE_POD_IDENTITY_AUTHORITY_HOST '\(base)' is not an http(s) URL")
            }
            source = .imds(base: base)
            identityHeader = nil
        }
        let source = self.source
        let endpoint = TokenEndpoint(credentialName: "managed identity credential", transport: transport, now: now)
        cache = TokenCache(now: now) { scope, completion in
            let request = Self.tokenRequest(
                source: source, identityHeader: identityHeader, clientID: clientID, scope: scope)
            switch source {
            case .appService:
                endpoint.requestToken(
                    request, secrets: identityHeader.map { [$0.value] } ?? [],
                    explainStatus: { status in
                        status == 400 || status == 404
                            ? "no managed identity, or the user-assigned identity is not assigned to this app" : nil
                    }, completion: completion)
            case .imds:
                // azure-identity retries IMDS on 404 and 410 too (the endpoint is still starting up, §4.3).
                endpoint.requestToken(
                    request, secrets: [], transientStatuses: [404, 410],
                    explainStatus: { status in
                        status == 400
                            ? "no managed identity on this host, or the user-assigned identity is not assigned to it"
                            : nil
                    }, completion: completion)
            }
        }
    }

    public func getToken(
        scope: String, completion: @escaping @Sendable (Result<AccessToken, AuthenticationError>) -> Void
    ) {
        cache.getToken(scope: scope, completion: completion)
    }

    public func invalidate(scope: String) -> Bool { cache.invalidate(scope: scope) }

    static func tokenRequest(source: Source, identityHeader: Secret?, clientID: String?, scope: String) -> HTTPRequest {
        let resource = ACSTokenScope.resource(forScope: scope)
        switch source {
        case .appService(let endpoint):
            var query = [("api-version", appServiceAPIVersion), ("resource", resource)]
            if let clientID { query.append(("client_id", clientID)) }
            let separator = endpoint.contains("?") ? "&" : "?"
            let host = URLComponents(string: endpoint)?.host ?? ""
            return HTTPRequest(
                method: "GET", url: endpoint + separator + TokenEndpoint.formEncode(query),
                // Metadata is harmless here and needed by Azure Automation (§4.3).
                headers: [("X-IDENTITY-HEADER", identityHeader?.value ?? ""), ("Metadata", "true")],
                timeout: TokenEndpoint.timeout, connectTimeout: TokenEndpoint.connectTimeout,
                // A sidecar on localhost: a proxy could not reach it.
                useProxy: !TokenEndpoint.isLoopback(host))
        case .imds(let base):
            var query = [("api-version", imdsAPIVersion), ("resource", resource)]
            if let clientID { query.append(("client_id", clientID)) }
            return HTTPRequest(
                method: "GET", url: base + imdsPath + "?" + TokenEndpoint.formEncode(query),
                headers: [("Metadata", "true")], timeout: TokenEndpoint.timeout, connectTimeout: imdsConnectTimeout,
                // IMDS must never be reached through a proxy (§4.3): the proxy would answer for itself.
                useProxy: false)
        }
    }

    public var description: String {
        "ManagedIdentityCredential(\(source)" + (clientID.map { ", client: \($0))" } ?? ")")
    }
}
