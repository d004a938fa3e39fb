import ArgumentParser
import Foundation
import Gateway

// Command-line flags: the top layer of the configuration (defaults < file < ACSGW_… environment < flags).
// Every flag is a key of ConfigurationSchema; values are taken as text and read by the same parsers as the
// file, so `--max-message-size 10MiB` and `max_message_size: 10MiB` mean the same thing and fail the same way.

/// Help text that names the configuration key and its built-in default.
func keyHelp(_ flag: String, _ text: String) -> ArgumentHelp {
    guard let suffix = keySuffixes[flag] else { return ArgumentHelp(text) }
    return ArgumentHelp("\(text) \(suffix)")
}

/// `[section.key, default …]` for every flag, computed once: ArgumentParser builds the flag groups again
/// and again while it parses, and rendering every default each time made a `queue` command take seconds.
private let keySuffixes: [String: String] = {
    let defaults = GatewaySettings()
    var suffixes: [String: String] = [:]
    for key in ConfigurationSchema.keys {
        let values = key.values(in: defaults)
        let shown = values.isEmpty ? "" : ", default \(values.joined(separator: ","))"
        suffixes[key.flag] = "[\(key.path)\(shown)]"
    }
    return suffixes
}()

/// Collects the flags that were given, as (flag, values).
struct FlagOverrides {
    private(set) var entries: [(flag: String, values: [String])] = []
    mutating func add(_ flag: String, _ value: String?) { if let value { entries.append((flag, [value])) } }
    mutating func add(_ flag: String, _ values: [String]) { if !values.isEmpty { entries.append((flag, values)) } }
    /// `--flag` / `--no-flag`: either direction overrides the file and the environment.
    mutating func add(_ flag: String, _ value: Bool?) {
        if let value { entries.append((flag, [value ? "true" : "false"])) }
    }
}

/// `--config FILE`.
struct ConfigFileOption: ParsableArguments {
    @Option(
        name: .customLong("config"),
        help: ArgumentHelp(
            "Configuration file (YAML); `none` reads none. Default: $\(ConfigurationLoader.fileVariable), else "
                + "\(ConfigurationLoader.defaultPath) when it exists.", valueName: "file"))
    var path: String?

    func resolvedPath(environment: [String: String]) -> String? {
        ConfigurationLoader.filePath(flag: path, environment: environment)
    }
}

/// Sender and translation policy: shared by `serve`, `check-config` and `convert`, so all produce the same request.
struct TranslationFlags: ParsableArguments {
    @Option(
        help: keyHelp(
            "sender-address",
            "MailFrom address of the ACS resource, used when a message's sender is not on a verified domain."))
    var senderAddress: String?

    @Option(
        name: .customLong("verified-domain"),
        help: keyHelp("verified-domain", "A domain verified on the ACS resource; its senders are kept (repeatable)."))
    var verifiedDomains: [String] = []

    @Option(help: keyHelp("api-version", "ACS API version."))
    var apiVersion: String?

    @Option(
        help: keyHelp(
            "attachment-types", "Attachments of a type ACS does not list: send (ACS decides), reject (554) or suppress."
        ))
    var attachmentTypes: String?

    @Option(help: keyHelp("subject-placeholder", "Subject used when a message has none."))
    var subjectPlaceholder: String?

    @Option(help: keyHelp("empty-body-placeholder", "Body used when a message has no text or HTML body."))
    var emptyBodyPlaceholder: String?

    @Option(
        name: .customLong("forward-header"),
        help: keyHelp("forward-header", "Also forward this header to ACS (repeatable)."))
    var forwardHeaders: [String] = []

    @Option(
        name: .customLong("drop-header"), help: keyHelp("drop-header", "Never forward this header to ACS (repeatable).")
    )
    var dropHeaders: [String] = []

    @Flag(
        inversion: .prefixedNo, help: keyHelp("disable-engagement-tracking", "Ask ACS not to track opens and clicks."))
    var disableEngagementTracking: Bool?

    @Option(help: keyHelp("max-request-size", "Largest ACS request in octets of JSON (ACS accepts 10 MB)."))
    var maxRequestSize: String?

    func addOverrides(to overrides: inout FlagOverrides) {
        overrides.add("sender-address", senderAddress)
        overrides.add("verified-domain", verifiedDomains)
        overrides.add("api-version", apiVersion)
        overrides.add("attachment-types", attachmentTypes)
        overrides.add("subject-placeholder", subjectPlaceholder)
        overrides.add("empty-body-placeholder", emptyBodyPlaceholder)
        overrides.add("forward-header", forwardHeaders)
        overrides.add("drop-header", dropHeaders)
        overrides.add("disable-engagement-tracking", disableEngagementTracking)
        overrides.add("max-request-size", maxRequestSize)
    }
}

/// Listeners, access, SMTP limits and timeouts, outbox, logging, admin listener.
struct ServerFlags: ParsableArguments {
    @Option(help: keyHelp("listen", "Address to listen on, HOST:PORT or [IPv6]:PORT (repeatable)."))
    var listen: [String] = []

    @Option(
        name: .customLong("listener"),
        help: keyHelp(
            "listener",
            "A listener with TLS and AUTH: \"ADDRESS tls=none|starttls|implicit auth=none|optional|required "
                + "[name=NAME]\" (repeatable)."))
    var listeners: [String] = []

    @Option(
        name: .customLong("allow-network"),
        help: keyHelp(
            "allow-network", "Also admit clients from this network, CIDR (repeatable). Loopback is always admitted."))
    var allowNetworks: [String] = []

    @Option(help: keyHelp("hostname", "Name used in the greeting and EHLO reply."))
    var hostname: String?

    @Option(help: keyHelp("max-connections", "Simultaneous connections in total."))
    var maxConnections: String?

    @Option(help: keyHelp("max-connections-per-client", "Simultaneous connections per client address."))
    var maxConnectionsPerClient: String?

    @Option(help: keyHelp("tls-certificate", "Certificate chain of the TLS listeners, PEM (server certificate first)."))
    var tlsCertificate: String?

    @Option(help: keyHelp("tls-key", "Private key of the TLS listeners, PEM, unencrypted, readable by root only."))
    var tlsKey: String?

    @Option(
        help: keyHelp(
            "tls-min-version", "Lowest TLS version accepted: 1.0, 1.1, 1.2 or 1.3 (below 1.2 logs a warning)."))
    var tlsMinVersion: String?

    @Option(help: keyHelp("tls-ciphers", "OpenSSL cipher list for TLS 1.2 and below."))
    var tlsCiphers: String?

    @Flag(
        inversion: .prefixedNo,
        help: keyHelp("allow-plaintext-auth", "Offer AUTH without TLS on non-loopback addresses (legacy LANs only)."))
    var allowPlaintextAuth: Bool?

    @Option(
        help: keyHelp(
            "users-file", "SMTP AUTH users: name:crypt-hash:senders per line (acs-smtp-gateway passwd writes it)."))
    var usersFile: String?

    @Option(
        help: keyHelp("auth-max-failures", "Failed AUTH attempts per client address, within the window, before 421."))
    var authMaxFailures: String?

    @Option(help: keyHelp("auth-failure-window", "How long a failed AUTH attempt counts."))
    var authFailureWindow: String?

    @Option(help: keyHelp("auth-failure-delay", "Wait before the 421 of a client over the failure limit."))
    var authFailureDelay: String?

    @Option(
        name: .customLong("connection-limit-exception"),
        help: keyHelp(
            "connection-limit-exception",
            "A network, CIDR, the per-client limit spares (repeatable; default loopback and allowed networks; "
                + "none: no exception)."))
    var connectionLimitExceptions: [String] = []

    @Option(
        help: keyHelp(
            "max-message-size", "Largest accepted message in octets (advertised as SIZE); K/KiB and M/MiB suffixes."))
    var maxMessageSize: String?

    @Option(help: keyHelp("max-recipients", "Recipients per message; extra RCPTs get 452 (ACS takes at most 50)."))
    var maxRecipients: String?

    @Option(help: keyHelp("max-command-line-length", "Longest command line in octets including CRLF (at least 512)."))
    var maxCommandLineLength: String?

    @Option(help: keyHelp("max-errors", "Protocol errors tolerated per session before 421."))
    var maxErrors: String?

    @Option(help: keyHelp("bare-lf", "Bare LF handling: normalize (store as CRLF) or reject."))
    var bareLf: String?

    @Option(help: keyHelp("command-timeout", "Time to wait for a complete command (30, 30s, 5m…)."))
    var commandTimeout: String?

    @Option(help: keyHelp("data-timeout", "Silence allowed while message data is arriving."))
    var dataTimeout: String?

    @Option(help: keyHelp("submission-timeout", "Time delivery may take before the client gets 451."))
    var submissionTimeout: String?

    @Option(
        help: keyHelp("min-data-rate", "Minimum message data rate in octets/s after a 30 s grace period (0 disables)."))
    var minDataRate: String?

    @Option(help: keyHelp("shutdown-grace", "Time open transactions may take to finish on shutdown."))
    var shutdownGrace: String?

    @Option(
        help: keyHelp(
            "postmaster-address",
            "Address RCPT TO:<postmaster> is delivered to; without it, delivery through ACS refuses <postmaster> "
                + "(550 5.1.1)."))
    var postmasterAddress: String?

    @Option(
        help: keyHelp(
            "outbox", "Directory for accepted messages (./outbox without ACS; with ACS, a copy of what was sent)."))
    var outbox: String?

    @Option(
        name: .customLong("alias"),
        help: keyHelp(
            "alias", "A local recipient's alias, NAME=ADDRESS (root=ops@example.com; * catches the rest; repeatable)."))
    var aliases: [String] = []

    @Option(
        name: .customLong("local-domain"),
        help: keyHelp(
            "local-domain",
            "A domain that means this host for local recipients (repeatable; default: the host's names)."))
    var localDomains: [String] = []

    @Option(help: keyHelp("sendmail-socket", "UNIX socket for the sendmail command, connectable by every local user."))
    var sendmailSocket: String?

    @Option(help: keyHelp("log-level", "trace, debug, info, notice, warning, error or critical."))
    var logLevel: String?

    @Option(
        help: keyHelp(
            "log-format", "Log lines on standard error: logfmt or json (each starts with its syslog priority)."))
    var logFormat: String?

    @Option(
        help: keyHelp(
            "admin-listen", "Serve /metrics, /healthz and /readyz on this loopback HOST:PORT (off by default)."))
    var adminListen: String?

    func addOverrides(to overrides: inout FlagOverrides) {
        overrides.add("listen", listen)
        overrides.add("listener", listeners)
        overrides.add("allow-network", allowNetworks)
        overrides.add("hostname", hostname)
        overrides.add("max-connections", maxConnections)
        overrides.add("max-connections-per-client", maxConnectionsPerClient)
        overrides.add("tls-certificate", tlsCertificate)
        overrides.add("tls-key", tlsKey)
        overrides.add("tls-min-version", tlsMinVersion)
        overrides.add("tls-ciphers", tlsCiphers)
        overrides.add("allow-plaintext-auth", allowPlaintextAuth)
        overrides.add("users-file", usersFile)
        overrides.add("auth-max-failures", authMaxFailures)
        overrides.add("auth-failure-window", authFailureWindow)
        overrides.add("auth-failure-delay", authFailureDelay)
        overrides.add("connection-limit-exception", connectionLimitExceptions)
        overrides.add("max-message-size", maxMessageSize)
        overrides.add("max-recipients", maxRecipients)
        overrides.add("max-command-line-length", maxCommandLineLength)
        overrides.add("max-errors", maxErrors)
        overrides.add("bare-lf", bareLf)
        overrides.add("command-timeout", commandTimeout)
        overrides.add("data-timeout", dataTimeout)
        overrides.add("submission-timeout", submissionTimeout)
        overrides.add("min-data-rate", minDataRate)
        overrides.add("shutdown-grace", shutdownGrace)
        overrides.add("postmaster-address", postmasterAddress)
        overrides.add("outbox", outbox)
        overrides.add("alias", aliases)
        overrides.add("local-domain", localDomains)
        overrides.add("sendmail-socket", sendmailSocket)
        overrides.add("log-level", logLevel)
        overrides.add("log-format", logFormat)
        overrides.add("admin-listen", adminListen)
    }
}

/// Where and how to reach ACS. Secrets are never flags: they come from files, systemd credentials or the
/// environment.
struct DeliveryFlags: ParsableArguments {
    @Option(
        help: keyHelp("acs-endpoint", "ACS resource endpoint, https://NAME.communication.azure.com (or ACS_ENDPOINT)."))
    var acsEndpoint: String?

    @Option(
        help: keyHelp(
            "acs-auth",
            "How to authenticate: auto, connection-string, access-key, client-secret, workload-identity or managed-identity."
        ))
    var acsAuth: String?

    @Option(
        help: keyHelp("acs-connection-string-file", "File holding the ACS connection string (endpoint=…;accesskey=…)."))
    var acsConnectionStringFile: String?

    @Option(help: keyHelp("acs-access-key-file", "File holding the base64 ACS access key (with --acs-endpoint)."))
    var acsAccessKeyFile: String?

    @Option(help: keyHelp("azure-client-secret-file", "File holding the Entra ID client secret."))
    var azureClientSecretFile: String?

    @Option(help: keyHelp("azure-tenant-id", "Entra ID tenant (or AZURE_TENANT_ID)."))
    var azureTenantId: String?

    @Option(
        help: keyHelp(
            "azure-client-id",
            "Entra ID application (client) id, or a user-assigned managed identity's (or AZURE_CLIENT_ID)."))
    var azureClientId: String?

    @Option(
        help: keyHelp("azure-federated-token-file", "Workload identity token file (or AZURE_FEDERATED_TOKEN_FILE)."))
    var azureFederatedTokenFile: String?

    @Option(
        help: keyHelp("acs-ca-file", "PEM file of CA certificates to trust for ACS and token endpoints (a private CA).")
    )
    var acsCaFile: String?

    @Option(
        help: keyHelp(
            "acs-proxy", "HTTP(S) proxy for ACS; by default https_proxy/no_proxy from the environment are honoured."))
    var acsProxy: String?

    @Option(
        help: keyHelp(
            "reply-after",
            "Answer the SMTP client once ACS accepted the message (accepted) or after its final status (final)."))
    var replyAfter: String?

    @Option(help: keyHelp("retry-budget", "Time all attempts of one message may take before the client gets a 451."))
    var retryBudget: String?

    @Option(help: keyHelp("attempt-timeout", "Time one ACS request may take before it is abandoned and retried."))
    var attemptTimeout: String?

    @Option(help: keyHelp("poll-deadline", "With --reply-after final: time to wait for the final status."))
    var pollDeadline: String?

    @Flag(
        inversion: .prefixedNo,
        help: keyHelp("dry-run", "Write to the outbox even when ACS credentials are configured."))
    var dryRun: Bool?

    @Flag(
        inversion: .prefixedNo,
        help: keyHelp(
            "allow-insecure-http-for-testing", "Allow a bearer token over plain http (a local emulator only)."))
    var allowInsecureHttpForTesting: Bool?

    func addOverrides(to overrides: inout FlagOverrides) {
        overrides.add("acs-endpoint", acsEndpoint)
        overrides.add("acs-auth", acsAuth)
        overrides.add("acs-connection-string-file", acsConnectionStringFile)
        overrides.add("acs-access-key-file", acsAccessKeyFile)
        overrides.add("azure-client-secret-file", azureClientSecretFile)
        overrides.add("azure-tenant-id", azureTenantId)
        overrides.add("azure-client-id", azureClientId)
        overrides.add("azure-federated-token-file", azureFederatedTokenFile)
        overrides.add("acs-ca-file", acsCaFile)
        overrides.add("acs-proxy", acsProxy)
        overrides.add("reply-after", replyAfter)
        overrides.add("retry-budget", retryBudget)
        overrides.add("attempt-timeout", attemptTimeout)
        overrides.add("poll-deadline", pollDeadline)
        overrides.add("dry-run", dryRun)
        overrides.add("allow-insecure-http-for-testing", allowInsecureHttpForTesting)
    }
}

/// The daemon's whole configuration surface: `serve` and `check-config` take exactly these.
/// Delivery modes, pacing, retries, bounces and the spool.
struct CustodyFlags: ParsableArguments {
    @Option(
        help: keyHelp(
            "delivery-mode",
            "direct (the client hears every ACS outcome), hybrid (custody in the spool when ACS is busy) or queue (spool first)."
        ))
    var deliveryMode: String?

    @Option(
        help: keyHelp("direct-timeout", "Hybrid mode: how long the first try inside the SMTP transaction may take."))
    var directTimeout: String?

    @Option(help: keyHelp("max-lifetime", "How long a spooled message is retried before it bounces."))
    var maxLifetime: String?

    @Option(help: keyHelp("min-backoff", "First retry delay of a spooled message (doubled per failure)."))
    var minBackoff: String?

    @Option(help: keyHelp("max-backoff", "Largest retry delay of a spooled message."))
    var maxBackoff: String?

    @Option(help: keyHelp("bounce", "Where bounces go: sender, none, or \"admin ADDRESS\"."))
    var bounce: String?

    @Option(help: keyHelp("max-in-flight", "Spool sends in flight at once."))
    var maxInFlight: String?

    @Option(help: keyHelp("acs-max-per-minute", "Sends per minute to stay under a known ACS quota (0: off)."))
    var acsMaxPerMinute: String?

    @Option(help: keyHelp("acs-max-per-hour", "Sends per hour to stay under a known ACS quota (0: off)."))
    var acsMaxPerHour: String?

    @Option(help: keyHelp("spool-directory", "The spool's directory."))
    var spoolDirectory: String?

    @Option(help: keyHelp("spool-max-messages", "Messages the spool holds at most (then 452)."))
    var spoolMaxMessages: String?

    @Option(help: keyHelp("spool-max-size", "Octets the spool holds at most (then 452)."))
    var spoolMaxSize: String?

    @Option(help: keyHelp("spool-min-free", "Free space the spool's file system must keep (else 452)."))
    var spoolMinFree: String?

    func addOverrides(to overrides: inout FlagOverrides) {
        overrides.add("delivery-mode", deliveryMode)
        overrides.add("direct-timeout", directTimeout)
        overrides.add("max-lifetime", maxLifetime)
        overrides.add("min-backoff", minBackoff)
        overrides.add("max-backoff", maxBackoff)
        overrides.add("bounce", bounce)
        overrides.add("max-in-flight", maxInFlight)
        overrides.add("acs-max-per-minute", acsMaxPerMinute)
        overrides.add("acs-max-per-hour", acsMaxPerHour)
        overrides.add("spool-directory", spoolDirectory)
        overrides.add("spool-max-messages", spoolMaxMessages)
        overrides.add("spool-max-size", spoolMaxSize)
        overrides.add("spool-min-free", spoolMinFree)
    }
}

struct GatewayConfigurationOptions: ParsableArguments {
    @OptionGroup var file: ConfigFileOption
    @OptionGroup(title: "Listeners, limits, timeouts, outbox, logging") var server: ServerFlags
    @OptionGroup(title: "Translation to ACS") var translation: TranslationFlags
    @OptionGroup(title: "ACS delivery") var delivery: DeliveryFlags
    @OptionGroup(title: "Delivery modes and the spool") var custody: CustodyFlags

    var overrides: [(flag: String, values: [String])] {
        var overrides = FlagOverrides()
        server.addOverrides(to: &overrides)
        translation.addOverrides(to: &overrides)
        delivery.addOverrides(to: &overrides)
        custody.addOverrides(to: &overrides)
        return overrides.entries
    }

    /// Loads defaults < file < environment < flags. On error, prints every problem and exits 78
    /// (EX_CONFIG, sysexits(3)), which systemd shows as "status=78/CONFIG".
    func load(environment: [String: String] = ProcessInfo.processInfo.environment) throws -> LoadedConfiguration {
        do {
            return try ConfigurationLoader.load(
                file: file.resolvedPath(environment: environment), environment: environment, flags: overrides)
        } catch {
            reportConfigurationError(error)
            throw ExitCode(78)
        }
    }
}

func reportConfigurationError(_ error: ConfigurationError) {
    let count = error.problems.count
    var text = "acs-smtp-gateway: configuration error\(count == 1 ? "" : "s (\(count))"):\n"
    text += error.problems.map { "  \($0)\n" }.joined()
    FileHandle.standardError.write(Data(text.utf8))
}
