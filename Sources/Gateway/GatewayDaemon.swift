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
    /// Descriptors kept free beyond the SMTP connections: listeners, outbox writes (two files per writer),
    /// ACS connections and the resolver, the log, and libdispatch's own (epoll, eventfd, timerfds).
    public static let reservedDescriptors = 96

    /// glibc's `mallopt(3)` and its `M_ARENA_MAX` (malloc.h), which Swift's Glibc module does not import.
    static let mallocArenaMaxParameter: Int32 = -8
    static let mallopt: (@convention(c) (Int32, Int32) -> Int32)? = {
        guard let symbol = dlsym(dlopen(nil, RTLD_NOW), "mallopt") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int32, Int32) -> Int32).self)
    }()

    /// Limits glibc malloc to one arena per core, unless `MALLOC_ARENA_MAX` says otherwise. By default glibc
    /// gives threads up to eight arenas per core, each keeping its own freed memory; Dispatch runs a message's
    /// steps on whichever worker thread is free, so every arena ends up holding some. Under
    /// Tests/Benchmarks/cpu_per_message.py (20 clients, direct mode) the daemon's peak RSS was 47 to 51 MiB
    /// with the default and 42 to 44 MiB with two arenas on two cores, at the same CPU per message. Call it
    /// first, before threads allocate.
    public static func limitMallocArenas(environment: [String: String]) {
        guard environment["MALLOC_ARENA_MAX"] == nil else { return }  // glibc has applied the operator's value
        let cores = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        _ = mallopt?(mallocArenaMaxParameter, Int32(min(cores, 64)))
    }

    /// Makes sure running out of descriptors is a refusal at connect (421), never a crash: libdispatch aborts
    /// when it cannot create its internal descriptors (seen with `ulimit -n 24`;
    /// `test_resource_limits.py` pins the refusal).
    /// Raises the soft RLIMIT_NOFILE to the hard limit, clamps `maxConnections` to what then fits, and makes
    /// libdispatch create its timer descriptors now, while descriptors are plentiful.
    public static func prepareDescriptors(for configuration: inout SMTPServerConfiguration, logger: Logger) {
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
            if limit.rlim_cur < limit.rlim_max {
                let previous = limit.rlim_cur
                limit.rlim_cur = limit.rlim_max
                if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 {
                    logger.debug(
                        "raised the open-file limit", metadata: ["from": "\(previous)", "to": "\(limit.rlim_cur)"])
                } else {
                    limit.rlim_cur = previous
                }
            }
        }
        clampConnections(&configuration, logger: logger)
        let warmUp = DispatchSource.makeTimerSource(queue: DispatchQueue.global())
        warmUp.schedule(deadline: .now() + .milliseconds(1))
        warmUp.setEventHandler { warmUp.cancel() }
        warmUp.resume()
        DispatchQueue.global().asyncAfter(wallDeadline: .now() + .milliseconds(1)) {}
    }

    /// Clamps `maxConnections` to what the open-file limit leaves after ``reservedDescriptors``.
    static func clampConnections(_ configuration: inout SMTPServerConfiguration, logger: Logger) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        let fitting = max(1, Int(clamping: limit.rlim_cur) - reservedDescriptors)
        if configuration.maxConnections > fitting {
            logger.warning(
                "the open-file limit allows fewer connections than configured; extra clients get 421",
                metadata: [
                    "max_connections": "\(fitting)", "configured": "\(configuration.maxConnections)",
                    "open_file_limit": "\(limit.rlim_cur)",
                ])
            configuration.maxConnections = fitting
        }
    }

    /// Rebuilds the server configuration and submitter from the configuration file, the environment and
    /// the credentials, for SIGHUP. Throws when the new configuration is not usable; the old one then stays.
    public typealias Reload = @Sendable () throws -> GatewayAssembly

    /// - Parameters:
    ///   - admin: the optional admin listener (`/metrics`, `/healthz`, `/readyz`): started before the SMTP
    ///     listener, ready once it listens, not ready from the first shutdown signal on.
    ///   - reload: rebuilds the configuration on SIGHUP; without it SIGHUP is logged and ignored.
    public static func run(
        server: SMTPServer, logger: Logger,
        environment: [String: String] = ProcessInfo.processInfo.environment, statusInterval: Double = 5,
        admin: AdminServer? = nil, delivery: DeliveryRuntime? = nil, reload: Reload? = nil
    ) -> Never {
        // A peer that vanishes must not kill the process; sockets use MSG_NOSIGNAL, this covers the rest.
        signal(SIGPIPE, SIG_IGN)
        // Dispatch signal sources see signals only when the default action is disabled first
        // (and never call signal(SIG_IGN) after creating a source: on Linux that disables it).
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        signal(SIGHUP, SIG_IGN)
        signal(SIGUSR1, SIG_IGN)
        let notifier = SystemdNotifier(environment: environment, logger: logger)
        // Signals, status and watchdog timers share one serial queue: the state below needs no lock.
        let queue = DispatchQueue(label: "gateway.lifecycle")
        var listening = "nothing"
        var socketActivated = false  // then smtp.listen is not what the daemon listens on
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
                admin?.readiness.markStopping()
                logger.notice("\(name) received; shutting down")
                // sd_notify(3) STOPPING=1: systemd shows the unit as deactivating while the drain runs.
                lastStatus = statusLine(listening: listening, statistics: server.statistics.snapshot, stopping: true)
                notifier.stopping(status: lastStatus)
                if notifier.isEnabled { statusTimer.schedule(deadline: .now() + 1, repeating: 1) }
                // Read here, on the lifecycle queue: the completion below runs on the server's own queue.
                let grace = server.currentConfiguration.timeouts.shutdownGracePeriod
                server.shutdown {
                    // Spool deliveries in flight finish within the grace period; what is not delivered stays
                    // spooled. One cut off by the deadline is asked about (not re-sent) at the next start.
                    let stopped: @Sendable () -> Void = {
                        notifier.status("Stopped: " + countersText(server.statistics.snapshot))
                        logger.info("stopped")
                        // _exit, not exit: exit(3) runs libcrypto's and libcurl's atexit clean-ups while their
                        // threads may still hold the locks those clean-ups destroy, which crashed a stop now and
                        // then (SIGSEGV in pthread_rwlock_rdlock, seen in test_acs_http2). Logs are flushed first.
                        fflush(nil)
                        _exit(0)
                    }
                    guard let delivery else { return stopped() }
                    queue.asyncAfter(deadline: .now() + grace) {
                        logger.notice(
                            "spool deliveries still in flight at the shutdown deadline; ACS is asked about them at the next start"
                        )
                        stopped()
                    }
                    delivery.shutdown { queue.async { stopped() } }
                }
            }
            source.resume()
            sources.append(source)
        }

        // SIGHUP: re-read the configuration and credentials; open sessions keep what they started with.
        let hangUp = DispatchSource.makeSignalSource(signal: SIGHUP, queue: queue)
        hangUp.setEventHandler {
            guard !stopping else {
                logger.notice("SIGHUP while shutting down; not reloading")
                return
            }
            guard let reload else {
                logger.notice("SIGHUP: nothing to reload")
                return
            }
            notifier.reloading(status: "Reloading the configuration; " + countersText(server.statistics.snapshot))
            let outcome: String
            do {
                var assembly = try reload()
                let running = server.currentConfiguration
                if !socketActivated,
                    Set(assembly.serverConfiguration.listeners) != Set(running.listeners)
                {
                    logger.warning(
                        "smtp.listen or smtp.listeners changed; listeners change only on restart",
                        metadata: [
                            "listening": "\(listening)",
                            "configured":
                                "\(assembly.serverConfiguration.listeners.map(\.description).joined(separator: ","))",
                        ])
                }
                clampConnections(&assembly.serverConfiguration, logger: logger)
                server.reconfigure(assembly.serverConfiguration, submitter: assembly.submitter)
                logger.notice("configuration reloaded", metadata: ["delivery": "\(assembly.deliverySummary)"])
                outcome = "Reloaded"
            } catch {
                logger.error(
                    "configuration reload failed; the running configuration stays in force",
                    metadata: ["error": "\(error)"])
                outcome = "Reload failed, running configuration kept"
            }
            lastStatus = statusLine(listening: listening, statistics: server.statistics.snapshot, stopping: false)
            notifier.reloaded(status: "\(outcome); " + lastStatus)
        }
        hangUp.resume()
        sources.append(hangUp)

        // SIGUSR1: a `queue` command changed spool records (release, retry…): look at them now.
        let poke = DispatchSource.makeSignalSource(signal: SIGUSR1, queue: queue)
        poke.setEventHandler {
            logger.debug("SIGUSR1: rescanning the spool")
            delivery?.rescan()
        }
        poke.resume()
        sources.append(poke)

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
        let activated: Bool
        do {
            try admin?.start()
            (addresses, activated) = try startListening(server: server, environment: environment, logger: logger)
        } catch {
            logger.critical("cannot start: \(error)")
            notifier.status("Failed to start: \(error)")
            exit(1)
        }
        let listed = addresses.map(\.description).joined(separator: ",")
        logger.notice("ready", metadata: ["listen": "\(listed)"])
        admin?.readiness.markReady()
        queue.sync {
            listening = listed
            socketActivated = activated
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
    ) throws -> (addresses: [SocketAddress], activated: Bool) {
        switch try SocketActivation.listeningSockets(environment: environment) {
        case .inherited(let sockets):
            var addresses: [SocketAddress] = []
            for socket in sockets where socket.isLocal {
                server.adopt(localSocket: socket.fd, name: socket.name)
            }
            try server.startLocalSocket(
                inherited: sockets.filter(\.isLocal).compactMap { ListeningSocket.localPath(of: $0.fd) })
            for socket in sockets where !socket.isLocal {
                // FileDescriptorName= picks the listener (its TLS and AUTH settings); see SMTPServer.adopt.
                let listener = try server.adopt(listeningSocket: socket.fd, name: socket.name)
                logger.notice(
                    "listening on a socket passed by systemd",
                    metadata: [
                        "fd": "\(socket.fd)", "fd_name": "\(socket.name)", "address": "\(listener.address)",
                        "listener.tls": "\(listener.tls.rawValue)", "listener.auth": "\(listener.auth.rawValue)",
                    ])
                addresses.append(listener.address)
            }
            logger.notice("socket activation: the --listen addresses are not bound")
            return (addresses, true)
        case .notActivated(let reason):
            logger.info("no socket activation; binding the --listen addresses", metadata: ["reason": "\(reason)"])
            return (try server.start(), false)
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
