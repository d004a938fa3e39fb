import ACSClient
import ACSEmail
import Glibc
import Logging
import SMTPProtocol
import SMTPServer

/// Everything the daemon is configured with, typed, after the layers were merged
/// (built-in defaults < configuration file < `ACSGW_…` environment < command-line flags).
///
/// Each stored property is one key of ``ConfigurationSchema``; the defaults written here are the built-in
/// defaults, and `etc/acs-smtp-gateway/gateway.conf` documents the same values (a test checks they agree).
/// Secrets are not here: only the files and identifiers that lead to them.
public struct GatewaySettings: Sendable {
    // MARK: smtp — listeners and access
    public var listen: [SocketAddress] = SMTPServerConfiguration().listenAddresses
    /// Listeners with TLS and AUTH settings, besides the plain ones of `listen` (whose default then goes unless
    /// it was set explicitly).
    public var listeners: [SMTPListener] = []
    /// Networks admitted besides loopback (always admitted).
    public var allowNetworks: [IPNetwork] = []
    public var hostname: String = SMTPServerConfiguration().hostname
    public var maxConnections: Int = SMTPServerConfiguration().maxConnections
    public var maxConnectionsPerClient: Int = SMTPServerConfiguration().maxConnectionsPerClient
    /// Clients the per-client limit spares; nil: loopback and ``allowNetworks`` (Postfix's `$mynetworks` default).
    public var connectionLimitExceptions: [IPNetwork]?
    /// Domains that mean this host for local recipients (`root@web1`); nil: ``hostName`` and ``hostname``.
    public var localDomains: [String]?

    // MARK: sendmail, aliases
    /// The local submission socket the sendmail command talks to; nil: none (unless systemd passes one).
    public var sendmailSocket: String?
    /// Local names and the addresses they stand for, in the file's order; the name `*` catches the others.
    public var aliases: [LocalAlias] = []

    // MARK: tls, auth
    public var tls = TLSSettings()
    public var auth = AuthSettings()

    // MARK: limits, timeouts
    public var limits = SMTPLimits()
    public var timeouts = SMTPTimeouts()

    // MARK: senders, translation (and acs.api_version)
    public var translation = TranslationPolicy()
    /// `translation.disable_engagement_tracking`; mapped to `userEngagementTrackingDisabled`.
    public var disableEngagementTracking = false

    // MARK: acs
    public var acs = ACSSettings()

    // MARK: delivery, spool
    public var delivery = DeliverySettings()

    // MARK: outbox, logging, admin
    /// Where accepted messages are written: the delivery target without ACS, a copy of what was sent with it.
    public var outboxDirectory: String?
    public var logLevel: Logger.Level = .info
    public var logFormat: LineLogHandler.Format = .logfmt
    /// The loopback address of the admin listener (metrics, health); nil keeps it off.
    public var adminListen: SocketAddress?

    public init() {}

    /// Whether the operator said which senders ACS may use.
    public var hasSenderPolicy: Bool { translation.senderAddress != nil || !translation.verifiedDomains.isEmpty }

    /// The SMTP server's configuration (loopback is always admitted).
    public var serverConfiguration: SMTPServerConfiguration {
        var configuration = SMTPServerConfiguration()
        configuration.listeners = listen.map { SMTPListener(address: $0) } + listeners
        configuration.allowPlaintextAuth = tls.allowPlaintextAuth
        configuration.allowedNetworks = IPNetwork.loopback + allowNetworks
        configuration.hostname = hostname
        configuration.limits = limits
        configuration.timeouts = timeouts
        configuration.maxConnections = maxConnections
        configuration.maxConnectionsPerClient = maxConnectionsPerClient
        configuration.connectionLimitExceptions = connectionLimitExceptions ?? IPNetwork.loopback + allowNetworks
        configuration.localSocketPath = sendmailSocket
        configuration.limits.localRecipients = localRecipients
        return configuration
    }

    /// The aliases and the host's names, as the SMTP session and the translation resolve local recipients.
    public var localRecipients: LocalRecipients {
        var named: [String: Mailbox] = [:]
        for alias in aliases where alias.name != LocalRecipients.catchAllName { named[alias.name] = alias.address }
        let catchAll = aliases.last { $0.name == LocalRecipients.catchAllName }?.address
        return LocalRecipients(
            aliases: named, catchAll: catchAll, localDomains: Set(localDomains ?? Self.hostNames(configured: hostname)))
    }

    /// The host's own names: the kernel's host name and the configured `smtp.hostname`.
    static func hostNames(configured: String) -> [String] {
        var buffer = [CChar](repeating: 0, count: 256)
        var names = [configured]
        if gethostname(&buffer, buffer.count) == 0 {
            names.append(String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        return names.filter { !$0.isEmpty }
    }

    /// The translation policy as used for delivery.
    public var translationPolicy: TranslationPolicy {
        var policy = translation
        policy.userEngagementTrackingDisabled = disableEngagementTracking ? true : nil
        policy.localRecipients = localRecipients
        return policy
    }
}

/// The `tls` section: the certificate of the TLS listeners and the protocol settings.
public struct TLSSettings: Sendable {
    /// The certificate chain, PEM: the server's certificate first, then its intermediates.
    public var certificate: String?
    /// The private key, PEM, unencrypted, readable by root only (or a systemd credential).
    public var key: String?
    public var minVersion: TLSVersion = .tls1_2
    /// OpenSSL cipher list for TLS 1.2 and below (TLS 1.3's suites are all strong and stay OpenSSL's).
    public var ciphers = TLSContext.defaultCiphers
    /// AUTH without TLS on non-loopback addresses, for legacy LANs.
    public var allowPlaintextAuth = false

    public init() {}

    /// Whether a certificate is configured at all.
    public var isConfigured: Bool { certificate != nil || key != nil }
}

/// The `auth` section: SMTP AUTH's users and the brake on failed attempts.
public struct AuthSettings: Sendable {
    public var usersFile: String?
    public var failures = AuthFailureTracker.Limits()

    public init() {}
}

/// The `acs` section: where and how to reach ACS. Secrets come from `$CREDENTIALS_DIRECTORY`, the named
/// files or the environment, never from the configuration file.
public struct ACSSettings: Sendable {
    public var endpoint: String?
    public var auth: ACSCredentialOptions.Method = .automatic
    public var connectionStringFile: String?
    public var accessKeyFile: String?
    public var clientSecretFile: String?
    public var tenantID: String?
    public var clientID: String?
    public var federatedTokenFile: String?
    public var caFile: String?
    public var proxy: String?
    public var replyAfter: ReplyAfter = .accepted
    public var retryBudget: Double = RetryPolicy().budget
    public var attemptTimeout: Double = RetryPolicy().attemptTimeout
    public var pollDeadline: Double = 120
    public var dryRun = false
    public var allowInsecureHTTPForTesting = false

    public init() {}

    public var credentialOptions: ACSCredentialOptions {
        var options = ACSCredentialOptions(
            endpoint: endpoint, connectionStringFile: connectionStringFile, accessKeyFile: accessKeyFile,
            clientSecretFile: clientSecretFile, allowInsecureHTTPForTesting: allowInsecureHTTPForTesting)
        options.method = auth
        options.tenantID = tenantID
        options.clientID = clientID
        options.federatedTokenFile = federatedTokenFile
        return options
    }

    /// The poll deadline when replies wait for the final status, else 0.
    public var pollDeadlineIfFinal: Double { replyAfter == .final ? pollDeadline : 0 }

    public func clientConfiguration(endpoint: ACSEndpoint, apiVersion: String) -> ACSClientConfiguration {
        var configuration = ACSClientConfiguration(endpoint: endpoint)
        configuration.apiVersion = apiVersion
        configuration.replyAfter = replyAfter
        configuration.retry.budget = retryBudget
        configuration.retry.attemptTimeout = attemptTimeout
        configuration.pollDeadline = pollDeadline
        return configuration
    }

    /// Whether the operator configured ACS at all (then any error in it is fatal, never a silent outbox):
    /// any `acs.*` endpoint, credential or Entra ID setting, an explicit auth method, or a credential in the
    /// environment or the systemd credentials. A half-done setup (an Entra secret without an endpoint) then
    /// stops with "no ACS endpoint" instead of answering 250 to mail that is never sent
    /// (`ConfigurationTests.halfDoneACSSetupsCountAsConfigured`).
    /// `AZURE_TENANT_ID`/`AZURE_CLIENT_ID` alone do not count: other software on the host sets them.
    public func isConfigured(environment: [String: String]) -> Bool {
        let settings: [String?] = [
            endpoint, connectionStringFile, accessKeyFile, clientSecretFile, tenantID, clientID, federatedTokenFile,
        ]
        if auth != .automatic || settings.contains(where: { $0 != nil }) { return true }
        let variables = [
            "ACS_CONNECTION_STRING", "ACS_ENDPOINT", "ACS_ACCESS_KEY", "AZURE_CLIENT_SECRET",
            "AZURE_FEDERATED_TOKEN_FILE",
        ]
        if variables.contains(where: { !(environment[$0] ?? "").isEmpty }) { return true }
        if let directory = environment["CREDENTIALS_DIRECTORY"], !directory.isEmpty {
            let credentials = [
                "acs-connection-string", "acs-access-key", "azure-client-secret", "azure-tenant-id",
                "azure-client-id",
            ]
            return credentials.contains { access("\(directory)/\($0)", F_OK) == 0 }
        }
        return false
    }
}

/// One entry of the `aliases:` section: a local name (or `*`) and the address it stands for.
public struct LocalAlias: Sendable, Hashable {
    public var name: String
    public var address: Mailbox

    public init(name: String, address: Mailbox) {
        self.name = name
        self.address = address
    }
}
