import Foundation

/// How the gateway is told to authenticate to ACS (command-line flags name files and ids, never secrets).
public struct ACSCredentialOptions: Sendable {
    /// Which authentication to use (`acs.auth`); ``Method/automatic`` picks from what is configured.
    public enum Method: String, Sendable, Hashable, CaseIterable {
        /// The first of: a connection string, an endpoint with an access key, an Entra ID credential from
        /// the environment (client secret, workload identity, managed identity).
        case automatic = "auto"
        case connectionString = "connection-string"
        case accessKey = "access-key"
        case clientSecret = "client-secret"
        case workloadIdentity = "workload-identity"
        case managedIdentity = "managed-identity"
    }

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
    /// The chosen method (`acs.auth`).
    public var method: Method = .automatic
    /// Entra ID identifiers (`acs.tenant_id`, `acs.client_id`); without them `AZURE_TENANT_ID`/`AZURE_CLIENT_ID`.
    public var tenantID: String?
    public var clientID: String?
    /// The workload identity token file (`acs.federated_token_file`); without it `AZURE_FEDERATED_TOKEN_FILE`.
    public var federatedTokenFile: String?

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
/// environment (acs-email-api.md §3.2, §4).
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
                    "\(endpointSource) '\(SecretRedaction.display(endpointText))' is not an http(s) URL with a host and no path"
                )
            }
            return endpoint
        }

        let method = options.entraCredential == nil ? options.method : .clientSecret
        let connectionString =
            [.automatic, .connectionString].contains(method)
            ? try secrets.load(.connectionString, file: options.connectionStringFile) : nil
        if method == .connectionString && connectionString == nil {
            throw CredentialConfigurationError(
                "acs.auth is connection-string, but there is no connection string in "
                    + "$CREDENTIALS_DIRECTORY/\(SecretName.connectionString.credentialName), "
                    + "acs.connection_string_file (--acs-connection-string-file) or ACS_CONNECTION_STRING")
        }
        if let loaded = connectionString {
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

        let accessKey =
            [.automatic, .accessKey].contains(method)
            ? try secrets.load(.accessKey, file: options.accessKeyFile) : nil
        if method == .accessKey && accessKey == nil {
            throw CredentialConfigurationError(
                "acs.auth is access-key, but there is no access key in "
                    + "$CREDENTIALS_DIRECTORY/\(SecretName.accessKey.credentialName), "
                    + "acs.access_key_file (--acs-access-key-file) or ACS_ACCESS_KEY")
        }
        if let loaded = accessKey {
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
            explicit: try options.entraCredential ?? explicitEntraChoice(options, method: method, secrets: secrets),
            clientSecretFile: options.clientSecretFile, tenantID: options.tenantID, clientID: options.clientID,
            federatedTokenFile: options.federatedTokenFile, secrets: secrets, transport: transport, now: now)
        return ACSCredentials(
            endpoint: endpoint,
            authenticator: BearerTokenAuthenticator(
                credential: credential, allowInsecureHTTPForTesting: options.allowInsecureHTTPForTesting),
            method: .entraID(credential.summary), warnings: credential.warnings)
    }

    /// The Entra credential `acs.auth` names, with everything it needs, or nil for automatic choice.
    private static func explicitEntraChoice(
        _ options: ACSCredentialOptions, method: ACSCredentialOptions.Method, secrets: SecretSource
    ) throws -> DefaultCredential.Choice? {
        func identifier(_ value: String?, _ name: SecretName, key: String) throws -> String? {
            if let value, !value.isEmpty { return value }
            return try secrets.load(name)?.secret.value.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func required(_ value: String?, _ name: SecretName, key: String) throws -> String {
            guard let found = try identifier(value, name, key: key) else {
                throw CredentialConfigurationError(
                    "acs.auth is \(method.rawValue), but \(key) is not set (nor \(name.environmentVariable) or "
                        + "$CREDENTIALS_DIRECTORY/\(name.credentialName))")
            }
            return found
        }
        switch method {
        case .automatic, .connectionString, .accessKey:
            return nil
        case .clientSecret:
            guard let secret = try secrets.load(.clientSecret, file: options.clientSecretFile) else {
                throw CredentialConfigurationError(
                    "acs.auth is client-secret, but there is no client secret in "
                        + "$CREDENTIALS_DIRECTORY/\(SecretName.clientSecret.credentialName), "
                        + "acs.client_secret_file (--azure-client-secret-file) or AZURE_CLIENT_SECRET")
            }
            return .clientSecret(
                tenantID: try required(options.tenantID, .tenantID, key: "acs.tenant_id"),
                clientID: try required(options.clientID, .clientID, key: "acs.client_id"), secret: secret.secret)
        case .workloadIdentity:
            guard let tokenFile = options.federatedTokenFile ?? secrets.setting("AZURE_FEDERATED_TOKEN_FILE") else {
                throw CredentialConfigurationError(
                    "acs.auth is workload-identity, but acs.federated_token_file (or AZURE_FEDERATED_TOKEN_FILE) is not set"
                )
            }
            return .workloadIdentity(
                tenantID: try required(options.tenantID, .tenantID, key: "acs.tenant_id"),
                clientID: try required(options.clientID, .clientID, key: "acs.client_id"), tokenFile: tokenFile)
        case .managedIdentity:
            return .managedIdentity(clientID: try identifier(options.clientID, .clientID, key: "acs.client_id"))
        }
    }
}
