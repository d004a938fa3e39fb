import Foundation

/// How the gateway is told to authenticate to ACS (command-line flags name files and ids, never secrets).
public struct ACSCredentialOptions: Sendable {
    /// `--acs-endpoint`; when nil, `ACS_ENDPOINT` from the environment.
    public var endpoint: String?
    /// `--acs-connection-string-file`.
    public var connectionStringFile: String?
    /// A file holding the base64 access key, used with ``endpoint``.
    public var accessKeyFile: String?
    /// A file holding the Entra client secret (`AZURE_CLIENT_SECRET`).
    public var clientSecretFile: String?
    /// An explicitly chosen Entra credential; wins over connection strings and keys.
    public var entraCredential: DefaultCredential.Choice?
    /// Lets a bearer token go to a plain-http endpoint (a local emulator). Never for production.
    public var allowInsecureHTTPForTesting: Bool

    public init(
        endpoint: String? = nil, connectionStringFile: String? = nil, accessKeyFile: String? = nil,
        clientSecretFile: String? = nil, entraCredential: DefaultCredential.Choice? = nil,
        allowInsecureHTTPForTesting: Bool = false
    ) {
        self.endpoint = endpoint
        self.connectionStringFile = connectionStringFile
        self.accessKeyFile = accessKeyFile
        self.clientSecretFile = clientSecretFile
        self.entraCredential = entraCredential
        self.allowInsecureHTTPForTesting = allowInsecureHTTPForTesting
    }
}

/// The ACS endpoint and the authenticator for it, resolved from configuration, systemd credentials and the
/// environment (issue 4, "Authentication"; acs-email-api.md §3.2, §4).
///
/// Order: an explicit Entra credential; a connection string (`$CREDENTIALS_DIRECTORY/acs-connection-string`,
/// `--acs-connection-string-file`, `ACS_CONNECTION_STRING`) giving endpoint and HMAC key; an endpoint with an
/// access key (`acs-access-key`, the access-key file, `ACS_ACCESS_KEY`); an endpoint with the Entra credential
/// ``DefaultCredential`` chooses from the environment.
public struct ACSCredentials: Sendable, CustomStringConvertible {
    /// Which kind of authentication was chosen, for the start-up log.
    public enum Method: Sendable, CustomStringConvertible {
        case connectionString(SecretOrigin)
        case accessKey(SecretOrigin)
        case entraID(String)

        public var description: String {
            switch self {
            case .connectionString(let origin): "HMAC access key from the connection string in \(origin)"
            case .accessKey(let origin): "HMAC access key from \(origin)"
            case .entraID(let summary): "Entra ID bearer token: \(summary)"
            }
        }
    }

    public let endpoint: ACSEndpoint
    public let authenticator: RequestAuthenticator
    public let method: Method
    /// Problems to log that did not stop resolution (secret files readable by others…).
    public let warnings: [String]

    public var description: String { "ACS \(endpoint) with \(method)" }

    /// Resolves the credentials or explains precisely what is missing.
    ///
    /// - Parameters:
    ///   - transport: used by Entra credentials to fetch tokens.
    ///   - now: the clock for HMAC dates and token expiry.
    public static func resolve(
        _ options: ACSCredentialOptions, secrets: SecretSource = SecretSource(), transport: HTTPTransport,
        now: @escaping @Sendable () -> Date = { Date() }
    ) throws -> ACSCredentials {
        let endpointText = options.endpoint.flatMap { $0.isEmpty ? nil : $0 } ?? secrets.setting("ACS_ENDPOINT")
        let endpointSource = options.endpoint?.isEmpty == false ? "--acs-endpoint" : "ACS_ENDPOINT"
        func explicitEndpoint() throws -> ACSEndpoint? {
            guard let endpointText else { return nil }
            guard let endpoint = ACSEndpoint(endpointText) else {
                throw CredentialConfigurationError(
                    "\(endpointSource) '\(endpointText)' is not an http(s) URL with a host and no path")
            }
            return endpoint
        }

        if options.entraCredential == nil,
            let loaded = try secrets.load(.connectionString, file: options.connectionStringFile)
        {
            let connectionString: ConnectionString
            do {
                connectionString = try ConnectionString(parsing: loaded.secret.value)
            } catch {
                throw CredentialConfigurationError("ACS connection string from \(loaded.origin): \(error)")
            }
            if let endpoint = try explicitEndpoint(), endpoint != connectionString.endpoint {
                throw CredentialConfigurationError(
                    "\(endpointSource) \(endpoint) differs from the endpoint \(connectionString.endpoint) of the "
                        + "connection string in \(loaded.origin): set only one")
            }
            return ACSCredentials(
                endpoint: connectionString.endpoint,
                authenticator: HMACAuthenticator(key: connectionString.accessKey, now: now),
                method: .connectionString(loaded.origin), warnings: loaded.warnings)
        }

        guard let endpoint = try explicitEndpoint() else {
            throw CredentialConfigurationError(
                "no ACS endpoint: set --acs-endpoint or ACS_ENDPOINT, or give a connection string in "
                    + "$CREDENTIALS_DIRECTORY/\(SecretName.connectionString.credentialName), "
                    + "--acs-connection-string-file or ACS_CONNECTION_STRING")
        }

        if options.entraCredential == nil, let loaded = try secrets.load(.accessKey, file: options.accessKeyFile) {
            guard let key = AccessKey(base64: loaded.secret.value) else {
                throw CredentialConfigurationError("ACS access key from \(loaded.origin) is not valid base64")
            }
            return ACSCredentials(
                endpoint: endpoint, authenticator: HMACAuthenticator(key: key, now: now),
                method: .accessKey(loaded.origin), warnings: loaded.warnings)
        }

        // Entra ID: the bearer token must not cross plain http (§4.1), so refuse here, at start-up, rather
        // than failing every message later.
        guard endpoint.scheme == "https" || options.allowInsecureHTTPForTesting else {
            throw CredentialConfigurationError(
                "\(endpointSource) \(endpoint) is plain http: Entra ID bearer tokens are only sent over https "
                    + "(an access key or connection string works with a local http emulator)")
        }
        let credential = try DefaultCredential(
            explicit: options.entraCredential, clientSecretFile: options.clientSecretFile, secrets: secrets,
            transport: transport, now: now)
        return ACSCredentials(
            endpoint: endpoint,
            authenticator: BearerTokenAuthenticator(
                credential: credential, allowInsecureHTTPForTesting: options.allowInsecureHTTPForTesting),
            method: .entraID(credential.summary), warnings: credential.warnings)
    }
}
