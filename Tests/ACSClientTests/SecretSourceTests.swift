import Foundation
import Testing

@testable import ACSClient

/// Secrets from systemd credentials, files and the environment; ACS credential resolution.
struct SecretSourceTests {
    static let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw=="
    static let connectionString = "endpoint=https://contoso.communication.azure.com/;accesskey=\(key)"

    private static func write(_ text: String, _ url: URL, mode: Int = 0o600) throws {
        try Data(text.utf8).write(to: url)
        try FileManager.default.setAttributes([.posixPermissions: mode], ofItemAtPath: url.path)
    }

    @Test func order_credentialsDirectory_thenFile_thenEnvironment() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let credentials = directory.appendingPathComponent("creds")
        try FileManager.default.createDirectory(at: credentials, withIntermediateDirectories: true)
        let file = directory.appendingPathComponent("secret-file")
        try Self.write("from-file\n", file)
        var environment = ["AZURE_CLIENT_SECRET": "from-env"]

        var loaded = try #require(try SecretSource(environment: environment).load(.clientSecret, file: file.path))
        #expect(loaded.secret.value == "from-file")
        #expect(loaded.origin == .file(path: file.path))

        loaded = try #require(try SecretSource(environment: environment).load(.clientSecret))
        #expect(loaded.secret.value == "from-env")
        #expect(loaded.origin == .environment(variable: "AZURE_CLIENT_SECRET"))

        environment["CREDENTIALS_DIRECTORY"] = credentials.path
        // A credentials directory without this credential: fall through.
        loaded = try #require(try SecretSource(environment: environment).load(.clientSecret, file: file.path))
        #expect(loaded.secret.value == "from-file")

        // Mode bits of systemd credentials are systemd's business (the mount is private): no warning.
        try Self.write("from-systemd\r\n", credentials.appendingPathComponent("azure-client-secret"), mode: 0o444)
        loaded = try #require(try SecretSource(environment: environment).load(.clientSecret, file: file.path))
        #expect(loaded.secret.value == "from-systemd")
        let credentialPath = credentials.appendingPathComponent("azure-client-secret").path
        #expect(loaded.origin == .systemdCredential(path: credentialPath))
        #expect(loaded.warnings.isEmpty)

        #expect(try SecretSource(environment: [:]).load(.clientSecret) == nil)
    }

    @Test func onlyTheTrailingNewlineIsTrimmed() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("s")
        try Self.write("  padded secret \n\n", file)
        let loaded = try SecretSource(environment: [:]).load(.clientSecret, file: file.path)
        #expect(loaded?.secret.value == "  padded secret ")
    }

    @Test func groupOrWorldReadableFiles_giveAWarning_notAnError() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let file = directory.appendingPathComponent("cs")
        for (mode, warns) in [(0o600, false), (0o640, true), (0o604, true), (0o400, false)] {
            try Self.write(Self.connectionString, file, mode: mode)
            let loaded = try #require(try SecretSource(environment: [:]).load(.connectionString, file: file.path))
            #expect(loaded.warnings.isEmpty == !warns, "mode \(String(mode, radix: 8))")
            if warns {
                #expect(loaded.warnings[0].contains(file.path))
                #expect(loaded.warnings[0].contains("chmod 600"))
                #expect(!loaded.warnings[0].contains(Self.key))
            }
        }
    }

    @Test func unreadableOrEmptyExplicitFiles_areErrorsNamingTheFile() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let missing = directory.appendingPathComponent("missing").path
        #expect {
            try SecretSource(environment: [:]).load(.connectionString, file: missing)
        } throws: { error in
            "\(error)".contains(missing) && "\(error)".contains("ACS_CONNECTION_STRING")
        }
        let empty = directory.appendingPathComponent("empty")
        try Self.write("\n", empty)
        #expect(throws: CredentialConfigurationError.self) {
            try SecretSource(environment: [:]).load(.connectionString, file: empty.path)
        }
        #expect(throws: CredentialConfigurationError.self) {
            try SecretSource(environment: [:]).load(.connectionString, file: directory.path)
        }
        #expect(throws: CredentialConfigurationError.self) {
            try SecretSource(environment: ["ACS_CONNECTION_STRING": ""]).load(.connectionString)
        }
    }

    @Test func secretsPrintAsStars() throws {
        let secret = Secret("hunter2-secret")
        let loaded = LoadedSecret(secret: secret, origin: .environment(variable: "X"), warnings: [])
        var dumped = ""
        dump(loaded, to: &dumped)
        let choice = DefaultCredential.Choice.clientSecret(tenantID: "t", clientID: "c", secret: secret)
        for text in [
            "\(secret)", String(reflecting: secret), "\(loaded)", String(reflecting: loaded), dumped,
            "\([secret])", "\(choice)", String(reflecting: choice),
        ] {
            #expect(!text.contains("hunter2"), "\(text)")
        }
        #expect("\(secret)" == "***")
        let token = AccessToken(token: "eyJ-token-value", expiresOn: Date())
        var dumpedToken = ""
        dump(token, to: &dumpedToken)
        #expect(!dumpedToken.contains("eyJ-token-value"))
        #expect(!"\([token])".contains("eyJ-token-value"))
    }

    // MARK: ACSCredentials

    @Test func connectionStringFromTheEnvironment_givesHMAC() throws {
        let resolved = try ACSCredentials.resolve(
            ACSCredentialOptions(),
            secrets: SecretSource(environment: ["ACS_CONNECTION_STRING": Self.connectionString]),
            transport: FakeTransport())
        #expect(resolved.endpoint.url == "https://contoso.communication.azure.com")
        #expect(resolved.authenticator is HMACAuthenticator)
        #expect("\(resolved)".contains("ACS_CONNECTION_STRING"))
        #expect(!"\(resolved)".contains(Self.key))
    }

    @Test func connectionStringFromSystemdCredentials_winsOverTheEnvironment() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        try Self.write(
            "endpoint=https://systemd.communication.azure.com;accesskey=\(Self.key)\n",
            directory.appendingPathComponent("acs-connection-string"))
        let resolved = try ACSCredentials.resolve(
            ACSCredentialOptions(),
            secrets: SecretSource(environment: [
                "CREDENTIALS_DIRECTORY": directory.path, "ACS_CONNECTION_STRING": Self.connectionString,
            ]), transport: FakeTransport())
        #expect(resolved.endpoint.url == "https://systemd.communication.azure.com")
    }

    @Test func endpointAndAccessKeyFile() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let keyFile = directory.appendingPathComponent("key")
        try Self.write(Self.key + "\n", keyFile, mode: 0o644)
        let resolved = try ACSCredentials.resolve(
            ACSCredentialOptions(endpoint: "http://127.0.0.1:8025", accessKeyFile: keyFile.path),
            secrets: SecretSource(environment: [:]), transport: FakeTransport())
        #expect(resolved.endpoint.url == "http://127.0.0.1:8025")
        #expect(resolved.authenticator is HMACAuthenticator)
        #expect(resolved.warnings.count == 1)
    }

    @Test func endpointAndClientSecretTrio_givesBearer() throws {
        let environment = [
            "ACS_ENDPOINT": "https://contoso.communication.azure.com", "AZURE_TENANT_ID": "tenant",
            "AZURE_CLIENT_ID": "client", "AZURE_CLIENT_SECRET": "the-client-secret",
            "AZURE_AUTHORITY_HOST": "https://login.microsoftonline.us",
        ]
        let transport = FakeTransport([FakeTransport.token("tok")])
        let resolved = try ACSCredentials.resolve(
            ACSCredentialOptions(), secrets: SecretSource(environment: environment), transport: transport)
        let bearer = try #require(resolved.authenticator as? BearerTokenAuthenticator)
        let chosen = try #require(bearer.credential as? DefaultCredential)
        #expect(chosen.chosen is ClientSecretCredential)
        #expect(!"\(resolved)".contains("the-client-secret"))
        #expect("\(resolved)".contains("AZURE_CLIENT_SECRET"))
        _ = immediateToken(bearer.credential)
        #expect(transport.requests.first?.url == "https://login.microsoftonline.us/tenant/oauth2/v2.0/token")
    }

    @Test func defaultCredentialOrder() throws {
        let directory = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let tokenFile = directory.appendingPathComponent("token").path
        let transport = FakeTransport()
        func choose(_ environment: [String: String]) throws -> TokenCredential {
            try DefaultCredential(secrets: SecretSource(environment: environment), transport: transport).chosen
        }
        let trio = ["AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s"]
        #expect(try choose(trio.merging(["AZURE_FEDERATED_TOKEN_FILE": tokenFile]) { $1 }) is ClientSecretCredential)
        #expect(
            try choose(["AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_FEDERATED_TOKEN_FILE": tokenFile])
                is WorkloadIdentityCredential)
        let managed = try #require(try choose(["AZURE_CLIENT_ID": "uami"]) as? ManagedIdentityCredential)
        #expect(managed.clientID == "uami")
        #expect(managed.source == .imds(base: "http://169.254.169.254"))
        let appService = try #require(
            try choose(["IDENTITY_ENDPOINT": "http://localhost:1/t", "IDENTITY_HEADER": "h"])
                as? ManagedIdentityCredential)
        #expect(appService.source == .appService(endpoint: "http://localhost:1/t"))
        // Explicit configuration wins over the environment.
        let explicit = try DefaultCredential(
            explicit: .managedIdentity(clientID: nil), secrets: SecretSource(environment: trio), transport: transport)
        #expect(explicit.chosen is ManagedIdentityCredential)
    }

    @Test(arguments: [
        (["AZURE_CLIENT_SECRET": "s", "AZURE_CLIENT_ID": "c"], "AZURE_TENANT_ID"),
        (["AZURE_CLIENT_SECRET": "s", "AZURE_TENANT_ID": "t"], "AZURE_CLIENT_ID"),
        (["AZURE_FEDERATED_TOKEN_FILE": "/f", "AZURE_CLIENT_ID": "c"], "AZURE_TENANT_ID"),
        (["AZURE_FEDERATED_TOKEN_FILE": "/f", "AZURE_TENANT_ID": "t"], "AZURE_CLIENT_ID"),
        (
            [
                "AZURE_CLIENT_SECRET": "s", "AZURE_CLIENT_ID": "c", "AZURE_TENANT_ID": "t",
                "AZURE_AUTHORITY_HOST": "http://login.example.test",
            ], "AZURE_AUTHORITY_HOST"
        ),
    ])
    func incompleteEntraConfiguration_namesWhatIsMissing(environment: [String: String], missing: String) {
        #expect {
            try DefaultCredential(secrets: SecretSource(environment: environment), transport: FakeTransport())
        } throws: { error in
            "\(error)".contains(missing) && !"\(error)".contains("=s")
        }
    }

    @Test func noEndpoint_namesEveryWayToGiveOne() {
        #expect {
            try ACSCredentials.resolve(
                ACSCredentialOptions(), secrets: SecretSource(environment: [:]), transport: FakeTransport())
        } throws: { error in
            let text = "\(error)"
            return text.contains("ACS_ENDPOINT") && text.contains("--acs-endpoint")
                && text.contains("ACS_CONNECTION_STRING") && text.contains("acs-connection-string")
        }
    }

    @Test func entraToAPlainHTTPEndpoint_isRefusedUnlessForTesting() throws {
        let environment = ["AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s"]
        #expect {
            try ACSCredentials.resolve(
                ACSCredentialOptions(endpoint: "http://127.0.0.1:8025"),
                secrets: SecretSource(environment: environment), transport: FakeTransport())
        } throws: { error in
            "\(error)".contains("https") && "\(error)".contains("--acs-endpoint")
        }
        let resolved = try ACSCredentials.resolve(
            ACSCredentialOptions(endpoint: "http://127.0.0.1:8025", allowInsecureHTTPForTesting: true),
            secrets: SecretSource(environment: environment), transport: FakeTransport())
        #expect((resolved.authenticator as? BearerTokenAuthenticator)?.allowInsecureHTTPForTesting == true)
    }

    @Test func conflictingEndpoints_andBadKeys_areExplained() throws {
        #expect {
            try ACSCredentials.resolve(
                ACSCredentialOptions(endpoint: "https://other.communication.azure.com"),
                secrets: SecretSource(environment: ["ACS_CONNECTION_STRING": Self.connectionString]),
                transport: FakeTransport())
        } throws: { error in
            "\(error)".contains("differs") && !"\(error)".contains(Self.key)
        }
        #expect {
            try ACSCredentials.resolve(
                ACSCredentialOptions(endpoint: "https://contoso.communication.azure.com"),
                secrets: SecretSource(environment: ["ACS_ACCESS_KEY": "not base64 !!"]), transport: FakeTransport())
        } throws: { error in
            "\(error)".contains("ACS_ACCESS_KEY") && !"\(error)".contains("not base64 !!")
        }
        #expect {
            try ACSCredentials.resolve(
                ACSCredentialOptions(),
                secrets: SecretSource(environment: ["ACS_CONNECTION_STRING": "endpoint=https://x.test;accesskey=@@@"]),
                transport: FakeTransport())
        } throws: { error in
            "\(error)".contains("ACS_CONNECTION_STRING") && !"\(error)".contains("@@@")
        }
    }
}
