import ArgumentParser
import Foundation
import Gateway
import Logging
import SMTPServer

struct Serve: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Accept SMTP and deliver each message (to the outbox directory when no ACS is configured).",
        discussion: """
            Configuration: built-in defaults < the configuration file (--config) < ACSGW_SECTION_KEY environment \
            variables < these flags. Each flag's help names its key. `acs-smtp-gateway check-config` shows the \
            result. SIGHUP re-reads the file and the credentials; SIGTERM drains and exits 0.
            """)

    @OptionGroup var options: GatewayConfigurationOptions

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        GatewayDaemon.limitMallocArenas(environment: environment)
        let loaded = try options.load(environment: environment)
        let settings = loaded.settings
        let levelControl = LogLevelControl(settings.logLevel)
        LoggingSystem.bootstrap { label in
            LineLogHandler(label: label, format: settings.logFormat, levelControl: levelControl)
        }
        let logger = Logger(label: "acs-smtp-gateway")
        logger.info("configuration loaded", metadata: ["config_file": "\(loaded.file ?? "none")"])
        // Before the SMTP server and the ACS client exist: they take their metric handles when created.
        // Once per process (swift-metrics), so a reload keeps the registry and the admin listener.
        let metricsRegistry = settings.adminListen.map { _ in GatewayMetrics.bootstrap() }

        let delivery = DeliveryRuntime()
        let server = try Self.makeServer(settings, environment: environment, logger: logger, delivery: delivery)
        var admin: AdminServer?
        if let address = settings.adminListen, let metricsRegistry {
            admin = try AdminServer(
                address: address, registry: metricsRegistry, liveness: { server.whenResponsive($0) }, logger: logger)
            admin?.readiness.require { delivery.notReadyReason() }
        }

        // SIGHUP: the same file, environment and flags, read again; credentials resolved again.
        let file = loaded.file
        let flags = options.overrides
        GatewayDaemon.run(
            server: server, logger: logger, environment: environment, admin: admin, delivery: delivery
        ) {
            let reloaded: LoadedConfiguration
            do {
                reloaded = try ConfigurationLoader.load(file: file, environment: environment, flags: flags)
            } catch let error as ConfigurationError {
                throw ReloadError(description: "configuration error: " + error.problems.joined(separator: "; "))
            }
            let new = reloaded.settings
            if new.logFormat != settings.logFormat {
                logger.warning("logging.format changes only on restart")
            }
            if new.adminListen != settings.adminListen {
                logger.warning("admin.listen changes only on restart")
            }
            let assembly = try GatewayAssembly.assemble(
                new, environment: environment, logger: logger, runtime: delivery)
            levelControl.level = new.logLevel
            return assembly
        }
    }
}

extension Serve {
    /// The server with the start-up assembly. Only the server keeps the submitter: after a reload replaced
    /// it, the start-up ACS client and its pooled connection go away once idle rather than holding a
    /// connection to ACS for the life of the daemon.
    static func makeServer(
        _ settings: GatewaySettings, environment: [String: String], logger: Logger, delivery: DeliveryRuntime
    ) throws -> SMTPServer {
        var assembly: GatewayAssembly
        do {
            assembly = try GatewayAssembly.assemble(
                settings, environment: environment, logger: logger, runtime: delivery)
        } catch {
            logger.critical("cannot start: \(error)")
            throw ExitCode(78)  // EX_CONFIG: systemd shows status=78/CONFIG
        }
        GatewayDaemon.prepareDescriptors(for: &assembly.serverConfiguration, logger: logger)
        return SMTPServer(configuration: assembly.serverConfiguration, submitter: assembly.submitter, logger: logger)
    }
}

struct ReloadError: Error, CustomStringConvertible {
    var description: String
}
