import ACSClient
import ArgumentParser
import Gateway
import Logging
import SMTPProtocol
import SMTPServer

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Accept SMTP and deliver each message (to the outbox directory when no ACS is configured).")

    @Option(name: .customLong("listen"), help: "Address to listen on, HOST:PORT or [IPv6]:PORT (repeatable).")
    var listen: [String] = ["127.0.0.1:2525"]

    @Option(name: .customLong("allow-network"),
            help: "Also admit clients from this network, CIDR (repeatable). Loopback is always admitted.")
    var allowNetworks: [String] = []

    @Option(help: "Directory where accepted messages are written (default ./outbox without ACS; with ACS, a copy of what was sent).")
    var outbox: String?

    @Option(help: "Name used in the greeting and EHLO reply.")
    var hostname: String = "localhost"

    @Option(help: "Largest accepted message in octets (advertised as SIZE).")
    var maxMessageSize: Int = SMTPLimits().maxMessageSize

    @Option(help: "Recipients per message; extra RCPTs get 452 and are retried by the client (ACS takes at most 50).")
    var maxRecipients: Int = SMTPLimits().maxRecipients

    @Option(help: "Address RCPT TO:<postmaster> is delivered to; without it, <postmaster> is refused (550 5.1.1).")
    var postmasterAddress: String?

    @Option(help: "Longest command line in octets including CRLF (at least 512).")
    var maxCommandLineLength: Int = SMTPLimits().maxCommandLineLength

    @Option(help: "Protocol errors tolerated per session before 421.")
    var maxErrors: Int = SMTPLimits().maxErrors

    @Option(help: "Bare LF handling: normalize (store as CRLF) or reject (550 after the data).")
    var bareLf: String = SMTPLimits().bareLineFeedPolicy.rawValue

    @Option(help: "Seconds to wait for a complete command.")
    var commandTimeout: Double = SMTPTimeouts().command

    @Option(help: "Seconds of silence allowed while message data is arriving.")
    var dataTimeout: Double = SMTPTimeouts().dataBlock

    @Option(help: "Seconds delivery may take before the client gets 451.")
    var submissionTimeout: Double = SMTPTimeouts().submission

    @Option(help: "Minimum message data rate in octets/s after the grace period (0 disables).")
    var minDataRate: Double = SMTPTimeouts().minDataRate

    @Option(help: "Seconds open transactions may take to finish on shutdown.")
    var shutdownGrace: Double = SMTPTimeouts().shutdownGracePeriod

    @Option(help: "Simultaneous connections in total.")
    var maxConnections: Int = SMTPServerConfiguration().maxConnections

    @Option(help: "Simultaneous connections per client address.")
    var maxConnectionsPerClient: Int = SMTPServerConfiguration().maxConnectionsPerClient

    @Option(help: "trace, debug, info, notice, warning, error or critical.")
    var logLevel: String = "info"

    @Option(help: "Log line format on standard error: logfmt or json (each line starts with its syslog priority).")
    var logFormat: String = LineLogHandler.Format.logfmt.rawValue

    @Option(help: "Serve /metrics, /healthz and /readyz on this loopback HOST:PORT (off by default).")
    var adminListen: String?

    @OptionGroup(title: "Translation to ACS")
    var translation: TranslationOptions

    @OptionGroup(title: "ACS delivery")
    var delivery: DeliveryOptions

    func validate() throws {
        guard Logger.Level(rawValue: logLevel) != nil else {
            throw ValidationError("--log-level must be one of trace, debug, info, notice, warning, error, critical")
        }
        guard LineLogHandler.Format(rawValue: logFormat) != nil else {
            throw ValidationError("--log-format must be logfmt or json")
        }
        guard BareLineFeedPolicy(rawValue: bareLf) != nil else {
            throw ValidationError("--bare-lf must be normalize or reject")
        }
        guard maxCommandLineLength >= 512 else {
            throw ValidationError("--max-command-line-length must be at least 512 (RFC 5321 §4.5.3.1.4)")
        }
        guard maxMessageSize > 0, maxRecipients > 0, maxErrors >= 0 else {
            throw ValidationError("--max-message-size and --max-recipients must be positive")
        }
        for timeout in [commandTimeout, dataTimeout, submissionTimeout, shutdownGrace]
        where !(timeout > 0 && timeout.isFinite && timeout <= 86_400) {
            throw ValidationError("timeouts must be positive seconds, at most a day (got \(timeout))")
        }
        guard minDataRate >= 0, minDataRate.isFinite else { throw ValidationError("--min-data-rate must be >= 0") }
        _ = try serverConfiguration()
        if let adminListen {
            do { _ = try AdminServer.listenAddress(adminListen) } catch { throw ValidationError("\(error)") }
        }
        let policy = try translation.policy()
        if delivery.acsConfigured() && !delivery.dryRun && maxRecipients > policy.maxRecipients {
            // More would be accepted over SMTP and then refused whole by ACS (review finding F9).
            throw ValidationError("--max-recipients \(maxRecipients): ACS takes at most \(policy.maxRecipients) per message")
        }
    }

    func serverConfiguration() throws -> SMTPServerConfiguration {
        var configuration = SMTPServerConfiguration()
        configuration.listenAddresses = try listen.map { text in
            guard let address = SocketAddress(hostAndPort: text) else {
                throw ValidationError("--listen \(text): expected IP:PORT or [IPv6]:PORT")
            }
            return address
        }
        configuration.allowedNetworks = try IPNetwork.loopback + allowNetworks.map { text in
            guard let network = IPNetwork(text) else {
                throw ValidationError("--allow-network \(text): expected a CIDR such as 192.0.2.0/24 or 2001:db8::/32")
            }
            return network
        }
        configuration.hostname = hostname
        configuration.limits.maxMessageSize = maxMessageSize
        configuration.limits.maxRecipients = maxRecipients
        if let postmasterAddress {
            guard case .success(.recipient(.mailbox(let mailbox), _)) = SMTPCommand.parse(Array("RCPT TO:<\(postmasterAddress)>".utf8))
            else { throw ValidationError("--postmaster-address \(postmasterAddress) is not an address (local@domain)") }
            configuration.limits.postmaster = mailbox
        }
        configuration.limits.maxCommandLineLength = maxCommandLineLength
        configuration.limits.maxErrors = maxErrors
        configuration.limits.bareLineFeedPolicy = BareLineFeedPolicy(rawValue: bareLf) ?? .normalize
        configuration.timeouts.command = commandTimeout
        configuration.timeouts.dataBlock = dataTimeout
        configuration.timeouts.submission = submissionTimeout
        configuration.timeouts.minDataRate = minDataRate
        configuration.timeouts.shutdownGracePeriod = shutdownGrace
        configuration.maxConnections = maxConnections
        configuration.maxConnectionsPerClient = maxConnectionsPerClient
        return configuration
    }

    func run() throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        let format = LineLogHandler.Format(rawValue: logFormat) ?? .logfmt
        LoggingSystem.bootstrap { label in
            LineLogHandler(label: label, format: format, level: level)
        }
        let logger = Logger(label: "acs-smtp-gateway")
        // Before the SMTP server and the ACS client exist: they take their metric handles when created.
        let metricsRegistry = adminListen.map { _ in GatewayMetrics.bootstrap() }
        var configuration = try serverConfiguration()
        let submitter: MessageSubmitter
        if delivery.acsConfigured() && !delivery.dryRun {
            submitter = try acsSubmitter(logger: logger)
            // An ACS call in flight at shutdown must be allowed to finish: cutting it off with 421 while ACS
            // may still accept the message would make the client send it again.
            // The same holds for the submission timeout: a 451 sent while ACS may still accept the message
            // would make the client send it twice (review finding F5). Token fetches take at most 10 s more.
            let needed = delivery.retryBudget + delivery.pollDeadlineIfFinal + 15
            if configuration.timeouts.shutdownGracePeriod < needed {
                configuration.timeouts.shutdownGracePeriod = needed
                logger.notice("shutdown grace raised to cover an ACS call in flight", metadata: ["grace_s": "\(needed)"])
            }
            if configuration.timeouts.submission < needed {
                configuration.timeouts.submission = needed
                logger.notice("submission timeout raised to cover an ACS call", metadata: ["timeout_s": "\(needed)"])
            }
        } else {
            submitter = try outboxSubmitter(logger: logger)
        }
        GatewayDaemon.prepareDescriptors(for: &configuration, logger: logger)
        let server = SMTPServer(configuration: configuration, submitter: submitter, logger: logger)
        var admin: AdminServer?
        if let adminListen, let metricsRegistry {
            admin = try AdminServer(
                address: AdminServer.listenAddress(adminListen), registry: metricsRegistry,
                liveness: { server.whenResponsive($0) }, logger: logger)
        }
        GatewayDaemon.run(server: server, logger: logger, admin: admin)
    }

    /// ACS delivery: credentials resolved at start-up, so a mistake stops the daemon with a clear message
    /// instead of failing every message later.
    private func acsSubmitter(logger: Logger) throws -> MessageSubmitter {
        let policy = try translation.policy()
        guard translation.hasSenderPolicy else {
            throw ValidationError(
                "ACS delivery needs --sender-address (a MailFrom address of the ACS resource) or --verified-domain")
        }
        let transport = try CurlMultiTransport(options: .init(caFile: delivery.acsCaFile, proxy: delivery.acsProxy))
        let credentials = try ACSCredentials.resolve(delivery.credentialOptions, transport: transport)
        for warning in credentials.warnings { logger.warning("\(warning)") }
        let client = ACSEmailClient(
            configuration: delivery.clientConfiguration(
                endpoint: credentials.endpoint, apiVersion: policy.apiVersion.rawValue),
            authenticator: credentials.authenticator, transport: transport)
        let copy = try outbox.map { try OutboxSubmitter(directory: $0, logger: logger) }
        logger.notice(
            "delivering through ACS",
            metadata: [
                "acs.endpoint": "\(credentials.endpoint)", "acs.auth": "\(credentials.method)",
                "acs.reply_after": "\(delivery.replyAfter)", "outbox_copy": "\(outbox ?? "none")",
            ])
        return ACSSubmitter(
            client: client, translator: MessageTranslator(policy: policy), outboxCopy: copy, logger: logger)
    }

    /// The outbox: a strict dry run with a sender policy, capture-everything without one.
    private func outboxSubmitter(logger: Logger) throws -> MessageSubmitter {
        let directory = outbox ?? "./outbox"
        var policy = try translation.policy()
        if !translation.hasSenderPolicy {
            // A dry run: show the request each message would produce, with its own sender.
            policy.verifiedDomains = ["*"]
            logger.notice(
                "no --sender-address or --verified-domain: the outbox keeps every message and each one's own sender")
        }
        let submitter = try OutboxSubmitter(
            directory: directory, translator: MessageTranslator(policy: policy),
            refuseUntranslatable: translation.hasSenderPolicy, logger: logger)
        logger.notice(
            delivery.dryRun ? "dry run: delivering to the outbox" : "delivering to the outbox (no ACS configured)",
            metadata: ["outbox": "\(directory)"])
        return submitter
    }
}
