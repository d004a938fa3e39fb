import Foundation

/// Chooses the Entra ID credential the way azure-identity's `DefaultAzureCredential` does, limited to what a
/// server needs: explicit configuration first; then a client secret (`AZURE_TENANT_ID`, `AZURE_CLIENT_ID`,
/// `AZURE_CLIENT_SECRET`); then workload identity (`AZURE_FEDERATED_TOKEN_FILE`); then managed identity
/// (acs-email-api.md §4.2–4.4). Unlike the SDK it does not try each in turn at token time: the choice is made
/// once, at start-up, and logged, so an operator can see which identity the gateway uses.
public final class DefaultCredential: TokenCredential, CustomStringConvertible {
    /// An explicitly configured credential.
    public enum Choice: Sendable, CustomStringConvertible {
        case clientSecret(tenantID: String, clientID: String, secret: Secret)
        case workloadIdentity(tenantID: String, clientID: String, tokenFile: String)
        /// `clientID` selects a user-assigned identity; nil means system-assigned.
        case managedIdentity(clientID: String?)

        public var description: String {
            switch self {
            case .clientSecret(let tenant, let client, _): "client secret (tenant \(tenant), client \(client))"
            case .workloadIdentity(let tenant, let client, let file):
                "workload identity (tenant \(tenant), client \(client), token file \(file))"
            case .managedIdentity(let client):
                client.map { "managed identity (user-assigned, client \($0))" } ?? "managed identity (system-assigned)"
            }
        }
    }

    /// The credential that was chosen.
    public let chosen: TokenCredential
    /// What was chosen and from where, for the start-up log.
    public let summary: String
    /// Things the operator should fix that did not prevent a choice (a secret file readable by others…).
    public let warnings: [String]

    /// - Parameters:
    ///   - explicit: a credential named by configuration; wins over the environment.
    ///   - clientSecretFile: a file holding the client secret, consulted after `$CREDENTIALS_DIRECTORY`.
    ///   - secrets: where secrets and `AZURE_*` settings are read from.
    public init(
        explicit: Choice? = nil, clientSecretFile: String? = nil, tenantID: String? = nil, clientID: String? = nil,
        federatedTokenFile: String? = nil, secrets: SecretSource = SecretSource(),
        transport: HTTPTransport, now: @escaping @Sendable () -> Date = { Date() }
    ) throws {
        let authority = secrets.setting("AZURE_AUTHORITY_HOST") ?? AuthorityHost.publicCloud
        var warnings: [String] = []

        func make(_ choice: Choice) throws -> TokenCredential {
            switch choice {
            case .clientSecret(let tenant, let client, let secret):
                return try ClientSecretCredential(
                    tenantID: tenant, clientID: client, clientSecret: secret, authorityHost: authority,
                    transport: transport, now: now)
            case .workloadIdentity(let tenant, let client, let file):
                return try WorkloadIdentityCredential(
                    tenantID: tenant, clientID: client, tokenFile: file, authorityHost: authority,
                    transport: transport, now: now)
            case .managedIdentity(let client):
                return try ManagedIdentityCredential(
                    clientID: client, environment: secrets.environment, transport: transport, now: now)
            }
        }

        if let explicit {
            chosen = try make(explicit)
            summary = "\(explicit), configured explicitly"
            self.warnings = warnings
            return
        }

        // Identifiers are not secret, but systemd credentials are a convenient place for them too.
        func identifier(_ name: SecretName) throws -> String? {
            if name == .tenantID, let tenantID, !tenantID.isEmpty { return tenantID }
            if name == .clientID, let clientID, !clientID.isEmpty { return clientID }
            guard let loaded = try secrets.load(name) else { return nil }
            warnings += loaded.warnings
            return loaded.secret.value.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        let tenant = try identifier(.tenantID)
        let client = try identifier(.clientID)
        let where_ = "(environment or $CREDENTIALS_DIRECTORY/"

        if let secret = try secrets.load(.clientSecret, file: clientSecretFile) {
            warnings += secret.warnings
            guard let tenant else {
                throw CredentialConfigurationError(
                    "client secret credential: AZURE_CLIENT_SECRET is set (\(secret.origin)) but AZURE_TENANT_ID is "
                        + "missing \(where_)\(SecretName.tenantID.credentialName))")
            }
            guard let client else {
                throw CredentialConfigurationError(
                    "client secret credential: AZURE_CLIENT_SECRET is set (\(secret.origin)) but AZURE_CLIENT_ID is "
                        + "missing \(where_)\(SecretName.clientID.credentialName))")
            }
            let choice = Choice.clientSecret(tenantID: tenant, clientID: client, secret: secret.secret)
            chosen = try make(choice)
            summary = "\(choice), secret from \(secret.origin), authority \(authority)"
        } else if let tokenFile = federatedTokenFile ?? secrets.setting("AZURE_FEDERATED_TOKEN_FILE") {
            guard let tenant else {
                throw CredentialConfigurationError(
                    "workload identity: AZURE_FEDERATED_TOKEN_FILE is set but AZURE_TENANT_ID is missing "
                        + "\(where_)\(SecretName.tenantID.credentialName))")
            }
            guard let client else {
                throw CredentialConfigurationError(
                    "workload identity: AZURE_FEDERATED_TOKEN_FILE is set but AZURE_CLIENT_ID is missing "
                        + "\(where_)\(SecretName.clientID.credentialName))")
            }
            let choice = Choice.workloadIdentity(tenantID: tenant, clientID: client, tokenFile: tokenFile)
            chosen = try make(choice)
            summary = "\(choice), authority \(authority)"
        } else {
            if tenant != nil {
                warnings.append(
                    "AZURE_TENANT_ID is set but neither AZURE_CLIENT_SECRET nor AZURE_FEDERATED_TOKEN_FILE is: "
                        + "using managed identity")
            }
            let choice = Choice.managedIdentity(clientID: client)
            let credential = try make(choice)
            chosen = credential
            summary = "\(choice) via \((credential as? ManagedIdentityCredential)?.source.description ?? "IMDS")"
        }
        self.warnings = warnings
    }

    public func getToken(
        scope: String, completion: @escaping @Sendable (Result<AccessToken, AuthenticationError>) -> Void
    ) {
        chosen.getToken(scope: scope, completion: completion)
    }

    public func invalidate(scope: String) -> Bool { chosen.invalidate(scope: scope) }

    public var description: String { "DefaultCredential(\(summary))" }
}
