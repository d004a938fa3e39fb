import Dispatch
import Foundation
import Glibc
import Logging
import SMTPServer

/// Runs the gateway as a daemon: starts the SMTP server, and on SIGINT/SIGTERM stops accepting, lets
/// open transactions finish (bounded by the shutdown grace period) and exits 0.
///
/// Under systemd it listens on the sockets of its `.socket` unit when they are passed (sd_listen_fds(3)),
/// and tells the service manager how it is doing over `$NOTIFY_SOCKET` (sd_notify(3)): `READY=1` once it
/// listens, `STATUS=` with its counters every few seconds, `WATCHDOG=1` when `WatchdogSec=` is set, and
/// `STOPPING=1` when a signal starts the shutdown. Started by hand, none of that applies and nothing changes.
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
    ///
    /// - Parameters:
    ///   - environment: where `LISTEN_*`, `NOTIFY_SOCKET` and `WATCHDOG_*` are read from.
    ///   - statusInterval: seconds between `STATUS=` updates while running (a changed line only); during the
    ///     shutdown it is updated every second, so `systemctl status` shows the drain progressing.
    public static func run(
        server: SMTPServer, logger: Logger,
        environment: [String: String] = ProcessInfo.processInfo.environment, statusInterval: Double = 5
    ) -> Never {
        // A peer that vanishes must not kill the process; sockets use MSG_NOSIGNAL, this covers the rest.
        signal(SIGPIPE, SIG_IGN)
        // Dispatch signal sources see signals only when the default action is disabled first
        // (and never call signal(SIG_IGN) after creating a source: on Linux that disables it).
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        raiseDescriptorLimit(logger: logger)
        let notifier = SystemdNotifier(environment: environment, logger: logger)
        // Signals, status and watchdog timers share one serial queue: the state below needs no lock.
        let queue = DispatchQueue(label: "gateway.lifecycle")
        var listening = "nothing"
        var stopping = false
        var lastStatus = ""
        let statusTimer = DispatchSource.makeTimerSource(queue: queue)
        statusTimer.setEventHandler {
            let line = statusLine(listening: listening, statistics: server.statistics.snapshot, stopping: stopping)
            guard line != lastStatus else { return }
            lastStatus = line
            notifier.status(line)
        }

        var sources: [DispatchSourceSignal] = []
        for signalNumber in [SIGINT, SIGTERM] {
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: queue)
            source.setEventHandler {
                let name = signalNumber == SIGINT ? "SIGINT" : "SIGTERM"
                if stopping {
                    logger.notice("\(name) again while shutting down; still waiting for open transactions")
                    return
                }
                stopping = true
                logger.notice("\(name) received; shutting down")
                // sd_notify(3) STOPPING=1: systemd shows the unit as deactivating while the drain runs.
                lastStatus = statusLine(listening: listening, statistics: server.statistics.snapshot, stopping: true)
                notifier.stopping(status: lastStatus)
                if notifier.isEnabled { statusTimer.schedule(deadline: .now() + 1, repeating: 1) }
                server.shutdown {
                    notifier.status("Stopped: " + countersText(server.statistics.snapshot))
                    logger.info("stopped")
                    exit(0)
                }
            }
            source.resume()
            sources.append(source)
        }

        // The watchdog ping goes through the server's own queue: if that queue is stuck, pings stop and
        // systemd restarts the service (systemd.service(5) WatchdogSec=, sd_watchdog_enabled(3)).
        var watchdogTimer: DispatchSourceTimer?
        if notifier.isEnabled, let interval = notifier.watchdogInterval {
            let timer = DispatchSource.makeTimerSource(queue: queue)
            let (seconds, attoseconds) = interval.components
            let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
            timer.schedule(
                deadline: .now(), repeating: .nanoseconds(Int(nanoseconds)),
                leeway: .nanoseconds(Int(nanoseconds / 10)))
            timer.setEventHandler { server.whenResponsive { notifier.watchdog() } }
            timer.resume()
            watchdogTimer = timer
            logger.info("systemd watchdog enabled", metadata: ["ping_interval_ms": "\(nanoseconds / 1_000_000)"])
        }

        let addresses: [SocketAddress]
        do {
            addresses = try startListening(server: server, environment: environment, logger: logger)
        } catch {
            logger.critical("cannot start: \(error)")
            notifier.status("Failed to start: \(error)")
            exit(1)
        }
        let listed = addresses.map(\.description).joined(separator: ",")
        logger.notice("ready", metadata: ["listen": "\(listed)"])
        queue.sync {
            listening = listed
            lastStatus = statusLine(listening: listening, statistics: server.statistics.snapshot, stopping: false)
            notifier.ready(status: lastStatus)
            if notifier.isEnabled {
                statusTimer.schedule(deadline: .now() + statusInterval, repeating: statusInterval)
                statusTimer.resume()
            }
        }
        withExtendedLifetime((sources, statusTimer, watchdogTimer)) {
            dispatchMain()
        }
    }

    /// Adopts the sockets systemd passed (sd_listen_fds(3)) or, without them, binds the `--listen` addresses.
    private static func startListening(
        server: SMTPServer, environment: [String: String], logger: Logger
    ) throws -> [SocketAddress] {
        switch try SocketActivation.listeningSockets(environment: environment) {
        case .inherited(let sockets):
            var addresses: [SocketAddress] = []
            for socket in sockets {
                let address = try server.adopt(listeningSocket: socket.fd)
                logger.notice(
                    "listening on a socket passed by systemd",
                    metadata: ["fd": "\(socket.fd)", "fd_name": "\(socket.name)", "address": "\(address)"])
                addresses.append(address)
            }
            logger.notice("socket activation: the --listen addresses are not bound")
            return addresses
        case .notActivated(let reason):
            logger.info("no socket activation; binding the --listen addresses", metadata: ["reason": "\(reason)"])
            return try server.start()
        }
    }

    /// The `STATUS=` line (sd_notify(3)), shown by `systemctl status`.
    static func statusLine(listening: String, statistics: SMTPServerStatistics.Snapshot, stopping: Bool) -> String {
        if stopping {
            let open = statistics.openConnections
            return "Stopping: \(open) connection\(open == 1 ? "" : "s") still open, finishing their transactions; "
                + countersText(statistics)
        }
        return "Listening on \(listening); " + countersText(statistics)
    }

    static func countersText(_ statistics: SMTPServerStatistics.Snapshot) -> String {
        "connections: \(statistics.openConnections) open, \(statistics.connectionsAdmitted) served, "
            + "\(statistics.connectionsRefused) refused; messages: \(statistics.messagesAccepted) accepted, "
            + "\(statistics.messagesDeferred) deferred, \(statistics.messagesRejected) rejected"
    }
}
