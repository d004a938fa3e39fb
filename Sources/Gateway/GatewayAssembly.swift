import ACSClient
import ACSEmail
import Foundation
import Logging
import SMTPServer
import Spool

/// What a configuration turns into: the SMTP server's configuration and the submitter that delivers
/// accepted messages (ACS, or the outbox). Built at start-up and again on every SIGHUP reload, so both
/// paths resolve credentials and apply the same rules.
public struct GatewayAssembly: Sendable {
    public var serverConfiguration: SMTPServerConfiguration
    public var submitter: MessageSubmitter
    /// One line for the log: where messages go.
    public var deliverySummary: String

    /// Builds the submitter. With ACS configured (and no dry run), credentials are resolved now, so a
    /// mistake stops the daemon (or the reload) with a clear message instead of failing every message later.
    public static func assemble(
        _ settings: GatewaySettings, environment: [String: String], logger: Logger,
        runtime: DeliveryRuntime = DeliveryRuntime(), authServices: AuthenticationServices = .shared
    ) throws -> GatewayAssembly {
        var configuration = settings.serverConfiguration
        try configureTLSAndAuth(&configuration, settings, logger: logger, authServices: authServices)
        // ACS takes only plain local@domain.tld recipients; a dry run refuses what ACS would.
        configuration.limits.plainRecipientsOnly = settings.acs.isConfigured(environment: environment)
        if settings.acs.isConfigured(environment: environment) && !settings.acs.dryRun {
            let submitter = try acsSubmitter(settings, environment: environment, logger: logger, runtime: runtime)
            // An ACS call in flight at shutdown must be allowed to finish: cutting it off with 421 while ACS
            // may still accept the message would make the client send it again.
            // The same holds for the submission timeout: a 451 sent while ACS may still accept the message
            // would make the client send it twice. Token fetches take at most 10 s more.
            let needed: Double =
                switch settings.delivery.mode {
                case .direct: settings.acs.retryBudget + settings.acs.pollDeadlineIfFinal + 15
                case .hybrid: settings.delivery.directTimeout + 15
                case .queue: 15
                }
            if configuration.timeouts.shutdownGracePeriod < needed {
                configuration.timeouts.shutdownGracePeriod = needed
                logger.notice(
                    "shutdown grace raised to cover an ACS call in flight", metadata: ["grace_s": "\(needed)"])
            }
            if configuration.timeouts.submission < needed {
                configuration.timeouts.submission = needed
                logger.notice("submission timeout raised to cover an ACS call", metadata: ["timeout_s": "\(needed)"])
            }
            return GatewayAssembly(
                serverConfiguration: configuration, submitter: submitter.submitter, deliverySummary: submitter.summary)
        }
        let outbox = try outboxSubmitter(settings, logger: logger)
        return GatewayAssembly(
            serverConfiguration: configuration, submitter: outbox.submitter, deliverySummary: outbox.summary)
    }

    /// Loads the certificate and the users file (again, on a reload): a mismatched, expired or unreadable
    /// certificate, or a broken users file, stops the start or the reload with the file named.
    static func configureTLSAndAuth(
        _ configuration: inout SMTPServerConfiguration, _ settings: GatewaySettings, logger: Logger,
        authServices: AuthenticationServices
    ) throws {
        if let certificate = settings.tls.certificate, let key = settings.tls.key {
            let context = try TLSContext(
                certificateFile: certificate, keyFile: key, minimumVersion: settings.tls.minVersion,
                ciphers: settings.tls.ciphers)
            for warning in context.warnings { logger.warning("\(warning)") }
            logger.notice(
                "TLS certificate loaded",
                metadata: [
                    "tls.subject": "\(context.certificate.subject)",
                    "tls.not_after": "\(TLSContext.iso8601(context.certificate.notAfter))",
                    "tls.min_version": "\(settings.tls.minVersion.rawValue)",
                ])
            configuration.tls = context
        }
        if let path = settings.auth.usersFile {
            let users = try UsersFile.load(path: path)
            for warning in users.warnings { logger.warning("\(warning)") }
            authServices.tracker.currentLimits = settings.auth.failures
            configuration.authenticator = UsersAuthenticator(
                users: users, verifier: authServices.verifier, tracker: authServices.tracker)
            logger.notice(
                "AUTH users loaded", metadata: ["auth.users_file": "\(path)", "users": "\(users.entries.count)"])
        }
        if settings.tls.allowPlaintextAuth {
            logger.warning(
                """
                tls.allow_plaintext_auth is on: passwords may cross the network unencrypted; keep it for legacy \
                devices on a trusted LAN
                """)
        }
        for listener in configuration.listeners
        where listener.auth != .none && listener.tls == .none
            && !settings.tls.allowPlaintextAuth
            && !IPNetwork.loopback.contains(where: { $0.contains(listener.address) })
        {
            logger.warning(
                "AUTH on a listener without TLS is offered to loopback clients only (tls.allow_plaintext_auth is off)",
                metadata: ["address": "\(listener.address)"])
        }
    }

    private static func acsSubmitter(
        _ settings: GatewaySettings, environment: [String: String], logger: Logger, runtime: DeliveryRuntime
    ) throws -> (submitter: MessageSubmitter, summary: String) {
        let policy = settings.translationPolicy
        let transport = try CurlMultiTransport(options: .init(caFile: settings.acs.caFile, proxy: settings.acs.proxy))
        let credentials = try ACSCredentials.resolve(
            settings.acs.credentialOptions, secrets: SecretSource(environment: environment), transport: transport)
        for warning in credentials.warnings { logger.warning("\(warning)") }
        let client = ACSEmailClient(
            configuration: settings.acs.clientConfiguration(
                endpoint: credentials.endpoint, apiVersion: policy.apiVersion.rawValue),
            authenticator: credentials.authenticator, transport: transport)
        let copy = try settings.outboxDirectory.map { try OutboxSubmitter(directory: $0, logger: logger) }
        let mode = settings.delivery.mode
        logger.notice(
            "delivering through ACS",
            metadata: [
                "acs.endpoint": "\(credentials.endpoint)", "acs.auth": "\(credentials.method)",
                "delivery.mode": "\(mode)", "acs.reply_after": "\(settings.acs.replyAfter)",
                "outbox_copy": "\(settings.outboxDirectory ?? "none")",
                "spool": "\(mode == .direct ? "none" : settings.delivery.spoolDirectory)",
            ])
        let translator = MessageTranslator(policy: policy)
        let bouncer = Bouncer(
            recipientPolicy: settings.delivery.bounce, senderAddress: policy.senderAddress, hostname: settings.hostname,
            apiVersion: policy.apiVersion)
        let followUp = FinalStatusFollowUp(
            client: client, bouncer: bouncer, pollDeadline: settings.acs.pollDeadline, logger: logger)
        let dependencies = SpoolDelivery.Dependencies(
            client: client, translator: translator, settings: settings.delivery, bouncer: bouncer,
            pollDeadline: settings.acs.pollDeadline, attemptTimeout: settings.acs.attemptTimeout)
        let summary = "ACS \(credentials.endpoint) (\(credentials.method)), \(mode) mode"
        if mode == .direct {
            // No state on disk; but a spool left by an earlier mode is still delivered, never stranded.
            if runtime.hasDelivery || Spool.hasMessages(in: settings.delivery.spoolDirectory) {
                _ = try runtime.delivery(settings.delivery.spoolDirectory, dependencies: dependencies, logger: logger)
            }
            let submitter = ACSSubmitter(
                client: client, translator: translator, outboxCopy: copy, followUp: followUp, logger: logger)
            return (submitter, summary)
        }
        let delivery = try runtime.delivery(
            settings.delivery.spoolDirectory, dependencies: dependencies, logger: logger)
        let submitter = CustodySubmitter(
            mode: mode, delivery: delivery, client: client, translator: translator, settings: settings.delivery,
            followUp: followUp, logger: logger)
        return (submitter, summary)
    }

    /// The outbox: a strict dry run with a sender policy, capture-everything without one.
    private static func outboxSubmitter(
        _ settings: GatewaySettings, logger: Logger
    ) throws -> (submitter: MessageSubmitter, summary: String) {
        let directory = settings.outboxDirectory ?? "./outbox"
        var policy = settings.translationPolicy
        if !settings.hasSenderPolicy {
            // A dry run: show the request each message would produce, with its own sender.
            policy.verifiedDomains = ["*"]
            logger.notice(
                "no senders.sender_address or senders.verified_domains: the outbox keeps every message and each one's own sender"
            )
        }
        let submitter = try OutboxSubmitter(
            directory: directory, translator: MessageTranslator(policy: policy),
            refuseUntranslatable: settings.hasSenderPolicy, logger: logger)
        logger.notice(
            settings.acs.dryRun ? "dry run: delivering to the outbox" : "delivering to the outbox (no ACS configured)",
            metadata: ["outbox": "\(directory)"])
        return (submitter, "outbox \(directory)")
    }
}

/// What AUTH keeps for the life of the daemon, across reloads: the pool that checks password hashes and the
/// per-address failure counts. Created when first used (only with a users file).
public final class AuthenticationServices: Sendable {
    public let verifier: CredentialVerifier
    public let tracker: AuthFailureTracker

    public init(verifier: CredentialVerifier = CredentialVerifier(), tracker: AuthFailureTracker = AuthFailureTracker())
    {
        self.verifier = verifier
        self.tracker = tracker
    }

    public static let shared = AuthenticationServices()
}

/// What outlives a reload: the spool's scheduler and its lock, created the first time a configuration
/// needs them and handed the new client and settings on each reload.
public final class DeliveryRuntime: @unchecked Sendable {
    private let lock = NSLock()
    private var current: SpoolDelivery?

    public init() {}

    var hasDelivery: Bool { lock.withLock { current != nil } }

    func delivery(
        _ directory: String, dependencies: SpoolDelivery.Dependencies, logger: Logger
    ) throws -> SpoolDelivery {
        try lock.withLock {
            if let current {
                if current.spool.directory != directory {
                    logger.warning(
                        "spool.directory changes only on restart", metadata: ["spool": "\(current.spool.directory)"])
                }
                current.reconfigure(dependencies)
                return current
            }
            let created: SpoolDelivery
            do {
                created = try SpoolDelivery(directory: directory, dependencies: dependencies, logger: logger)
            } catch {
                throw SpoolError(
                    "cannot use the spool: \(error). Set spool.directory to a writable directory, or "
                        + "delivery.mode to direct")
            }
            created.start()
            current = created
            return created
        }
    }

    /// Why `/readyz` should say not ready, if anything: the spool cannot be written.
    public func notReadyReason() -> String? {
        guard let delivery = lock.withLock({ current }) else { return nil }
        return delivery.isWritable ? nil : "the spool \(delivery.spool.directory) is not writable"
    }

    /// Re-reads records changed by `queue` commands (SIGUSR1).
    public func rescan() { lock.withLock { current }?.rescan() }

    /// Lets deliveries in flight finish; the rest stays spooled.
    public func shutdown(completion: @escaping @Sendable () -> Void) {
        guard let delivery = lock.withLock({ current }) else {
            completion()
            return
        }
        delivery.shutdown(completion: completion)
    }
}
