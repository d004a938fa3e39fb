import Dispatch
import Glibc
import Logging
import SMTPServer

/// Runs the gateway as a daemon: starts the SMTP server, and on SIGINT/SIGTERM stops accepting, lets
/// open transactions finish (bounded by the shutdown grace period) and exits 0.
public enum GatewayDaemon {
    /// Raises the soft limit on open descriptors to the hard limit: every SMTP connection, outbox write and
    /// ACS connection needs one, and the usual soft limit (1024) is below what the connection limits allow.
    static func raiseDescriptorLimit(logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
        let previous = limit.rlim_cur
        limit.rlim_cur = limit.rlim_max
        if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            logger.debug("raised the open-file limit", metadata: ["from": "\(previous)", "to": "\(limit.rlim_cur)"])
        }
    }

    /// Starts `server` and never returns: the process ends through `exit`.
    public static func run(server: SMTPServer, logger: Logger) -> Never {
        // A peer that vanishes must not kill the process; sockets use MSG_NOSIGNAL, this covers the rest.
        signal(SIGPIPE, SIG_IGN)
        // Dispatch signal sources see signals only when the default action is disabled first
        // (and never call signal(SIG_IGN) after creating a source: on Linux that disables it).
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        raiseDescriptorLimit(logger: logger)
        let signalQueue = DispatchQueue(label: "gateway.signals")
        var sources: [DispatchSourceSignal] = []
        for signalNumber in [SIGINT, SIGTERM] {
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: signalQueue)
            var received = false
            source.setEventHandler {
                let name = signalNumber == SIGINT ? "SIGINT" : "SIGTERM"
                if received {
                    logger.notice("\(name) again while shutting down; still waiting for open transactions")
                    return
                }
                received = true
                logger.notice("\(name) received; shutting down")
                server.shutdown {
                    logger.info("stopped")
                    exit(0)
                }
            }
            source.resume()
            sources.append(source)
        }
        do {
            let addresses = try server.start()
            logger.notice("ready", metadata: ["listen": "\(addresses.map(\.description).joined(separator: ","))"])
        } catch {
            logger.critical("cannot start: \(error)")
            exit(1)
        }
        withExtendedLifetime(sources) {
            dispatchMain()
        }
    }
}
