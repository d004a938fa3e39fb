import Foundation
import Glibc
import Logging

/// The service manager's notification protocol, sd_notify(3), written in Swift instead of linking libsystemd:
/// one `AF_UNIX` datagram of newline-separated `VARIABLE=value` assignments to the socket named by
/// `$NOTIFY_SOCKET`.
///
/// Without `$NOTIFY_SOCKET` (not started by systemd, or not `Type=notify`) every call does nothing, so
/// the daemon runs the same way by hand. Sending never blocks (the socket is non-blocking) and never fails
/// into the caller: a notification that cannot be delivered is logged and dropped, as sd_notify(3)
/// callers are expected to carry on. Thread-safe.
public final class SystemdNotifier: Sendable {
    /// Where the notifications go, as given in `$NOTIFY_SOCKET`; nil when notifications are off.
    public let socketPath: String?
    /// How often to send `WATCHDOG=1`: half of `$WATCHDOG_USEC`, as sd_watchdog_enabled(3) advises.
    /// Nil when the watchdog is off or meant for another process (`$WATCHDOG_PID`).
    public let watchdogInterval: Duration?

    private let fd: Int32
    private let address: UnixDatagramAddress?
    private let logger: Logger

    /// Reads `$NOTIFY_SOCKET`, `$WATCHDOG_USEC` and `$WATCHDOG_PID` from `environment`.
    ///
    /// - Parameter unsetEnvironment: also remove the three variables from this process's environment, like
    ///   the `unset_environment` argument of sd_notify(3), so that child processes do not talk to systemd in
    ///   our name. The gateway starts no child processes and leaves them set: `unsetenv` is not safe while
    ///   other threads (Dispatch, libcurl) may read the environment.
    public init(
        environment: [String: String] = ProcessInfo.processInfo.environment, processID: pid_t = getpid(),
        unsetEnvironment: Bool = false, logger: Logger
    ) {
        self.logger = logger
        let path = environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
        var address: UnixDatagramAddress?
        if let path {
            address = UnixDatagramAddress(path)
            if address == nil {
                // sd_notify(3): "/" is a file system socket, "@" the abstract namespace. Newer systemd also
                // knows "vsock:" (for virtual machines), which a service never gets on a host.
                logger.warning(
                    "NOTIFY_SOCKET is neither a path nor an abstract socket name; systemd will not be notified",
                    metadata: ["notify_socket": "\(path)"])
            }
        }
        self.watchdogInterval = Self.watchdogInterval(environment: environment, processID: processID)
        if unsetEnvironment {
            for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] { unsetenv(name) }
        }
        var fd: Int32 = -1
        if address != nil {
            fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue), 0)
            if fd < 0 {
                logger.warning(
                    "cannot create the socket for systemd notifications",
                    metadata: ["error": "\(String(cString: strerror(errno)))"])
                address = nil
            }
        }
        self.fd = fd
        self.address = address
        self.socketPath = address == nil ? nil : path
    }

    deinit {
        if fd >= 0 { close(fd) }
    }

    /// Whether notifications are sent at all.
    public var isEnabled: Bool { address != nil }

    /// `READY=1`: start-up is complete (systemd.service(5) `Type=notify`: the unit becomes active, and units
    /// ordered after it start).
    public func ready(status: String) {
        send([("READY", "1"), ("STATUS", status)])
    }

    /// `STATUS=`: one free-form line shown by `systemctl status`.
    public func status(_ text: String) {
        send([("STATUS", text)])
    }

    /// `WATCHDOG=1`: still alive; due every `watchdogInterval` when `WatchdogSec=` is set.
    public func watchdog() {
        send([("WATCHDOG", "1")])
    }

    /// `STOPPING=1`: shutdown has begun; systemd shows the unit as deactivating.
    public func stopping(status: String) {
        send([("STOPPING", "1"), ("STATUS", status)])
    }

    /// `RELOADING=1` at the start of a configuration reload. `MONOTONIC_USEC=` (CLOCK_MONOTONIC, in µs) is
    /// what systemd ≥ 253 needs for `Type=notify-reload` to tell this reload from an earlier one; older
    /// versions ignore it. Follow with `reloaded(status:)`.
    public func reloading(status: String) {
        send([("RELOADING", "1"), ("MONOTONIC_USEC", "\(Self.monotonicMicroseconds())"), ("STATUS", status)])
    }

    /// `READY=1` at the end of a reload (sd_notify(3): a reload ends with READY=1, like start-up).
    public func reloaded(status: String) {
        send([("READY", "1"), ("STATUS", status)])
    }

    /// Sends `assignments` as one datagram. Values never contain line breaks: they would start a new
    /// assignment, so they are replaced by spaces. Returns whether the datagram was sent.
    @discardableResult
    public func send(_ assignments: [(String, String)]) -> Bool {
        guard let address else { return false }
        let text = assignments.map { name, value in
            // Scalars, not Characters: "\r\n" is one Character and would hide its "\n".
            let flat = value.unicodeScalars.map { $0 == "\n" || $0 == "\r" ? " " : $0 }
            return "\(name)=\(String(String.UnicodeScalarView(flat)))"
        }.joined(separator: "\n")
        let bytes = Array(text.utf8)
        let sent = address.withSockAddr { pointer, length in
            bytes.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL), pointer, length) }
        }
        guard sent == bytes.count else {
            // ENOENT/ECONNREFUSED: systemd is gone or the socket was removed; EAGAIN: its queue is full.
            // Either way the daemon serves on; the next status or watchdog ping tries again.
            logger.warning(
                "cannot notify systemd",
                metadata: [
                    "notify_socket": "\(socketPath ?? "")",
                    "error": "\(sent < 0 ? String(cString: strerror(errno)) : "short write")",
                ])
            return false
        }
        return true
    }

    /// sd_watchdog_enabled(3): `$WATCHDOG_USEC` is the timeout in µs; `$WATCHDOG_PID`, when set, names the
    /// one process that must ping. The pings go out at half the timeout.
    static func watchdogInterval(environment: [String: String], processID: pid_t) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let microseconds = UInt64(text), microseconds > 0 else {
            return nil
        }
        if let pidText = environment["WATCHDOG_PID"], !pidText.isEmpty {
            guard let pid = pid_t(pidText), pid == processID else { return nil }
        }
        return .microseconds(Int64(clamping: microseconds / 2))
    }

    static func monotonicMicroseconds() -> UInt64 {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return UInt64(time.tv_sec) * 1_000_000 + UInt64(time.tv_nsec) / 1_000
    }
}

/// An `AF_UNIX` address from a `$NOTIFY_SOCKET` value: a path, or an abstract name when it starts with "@".
struct UnixDatagramAddress: Sendable {
    private let pathBytes: [UInt8]
    private let isAbstract: Bool

    init?(_ text: String) {
        var bytes = Array(text.utf8)
        let maxLength = MemoryLayout.size(ofValue: sockaddr_un().sun_path)
        if bytes.first == UInt8(ascii: "@") {
            // unix(7): an abstract address is a NUL byte followed by the name; its length is given
            // explicitly and it has no terminating NUL.
            bytes[0] = 0
            guard bytes.count >= 2, bytes.count <= maxLength else { return nil }
            isAbstract = true
        } else {
            // A path needs its terminating NUL inside sun_path.
            guard bytes.first == UInt8(ascii: "/"), bytes.count < maxLength, !bytes.contains(0) else { return nil }
            isAbstract = false
        }
        pathBytes = bytes
    }

    func withSockAddr<Result>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: pathBytes)
        }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path) ?? 2
        // The same lengths as libsystemd's sockaddr_un_len(): the NUL after a path counts, an abstract name
        // is exactly its bytes.
        let length = pathOffset + pathBytes.count + (isAbstract ? 0 : 1)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(length)) }
        }
    }
}
