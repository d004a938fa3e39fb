import Foundation
import Glibc

/// Why inherited sockets cannot be used. The daemon stops with this message rather than fall back to
/// `--listen`: systemd meant it to serve these sockets, and binding something else would hide the mistake.
public struct SocketActivationError: Error, CustomStringConvertible, Equatable {
    public var description: String
}

/// systemd socket activation as sd_listen_fds(3) describes it, without libsystemd: the service manager
/// passes listening sockets as descriptors 3, 4, … and sets `LISTEN_FDS` (how many), `LISTEN_PID` (the
/// process they are meant for) and `LISTEN_FDNAMES` (colon-separated `FileDescriptorName=`s).
///
/// With a `.socket` unit, systemd binds port 25 itself, so the daemon needs no capability at all.
public enum SocketActivation {
    /// The first passed descriptor (`SD_LISTEN_FDS_START`).
    public static let firstDescriptor: Int32 = 3

    /// One inherited, validated listening socket.
    public struct ListeningSocket: Equatable, Sendable {
        public var fd: Int32
        /// Its `FileDescriptorName=` (systemd.socket(5)); "unknown" when `LISTEN_FDNAMES` is not set, as in
        /// sd_listen_fds_with_names(3).
        public var name: String
        /// A UNIX socket: the local submission socket (`FileDescriptorName=sendmail`).
        public var isLocal: Bool = false
    }

    /// The `FileDescriptorName=` of the local submission socket, the only UNIX socket the daemon takes.
    public static let localSubmissionName = "sendmail"

    /// What the environment says.
    public enum Outcome: Equatable, Sendable {
        /// Sockets were passed to this process; use them instead of binding `--listen`.
        case inherited([ListeningSocket])
        /// No sockets for this process, and why (for the log).
        case notActivated(reason: String)
    }

    /// Reads the `LISTEN_*` variables and validates each passed descriptor: it must be an IPv4 or IPv6
    /// socket of type `SOCK_STREAM` that is listening (`SO_ACCEPTCONN`), i.e. a `ListenStream=` socket with
    /// `Accept=no`. Each one gets `FD_CLOEXEC`, as sd_listen_fds(3) does, so no child inherits it.
    ///
    /// Variables meant for another process (`LISTEN_PID` is not ours, or unset) mean "not activated", as in
    /// sd_listen_fds(3). Malformed variables and unusable descriptors are errors. The variables are left in
    /// the environment (sd_listen_fds(3) `unset_environment` = 0): the gateway starts no child processes, and
    /// `LISTEN_PID` already keeps any child from taking the sockets for its own.
    public static func listeningSockets(
        environment: [String: String] = ProcessInfo.processInfo.environment, processID: pid_t = getpid()
    ) throws(SocketActivationError) -> Outcome {
        try listeningSockets(environment: environment, processID: processID, firstDescriptor: firstDescriptor)
    }

    /// The same, with the descriptors starting at `first` instead of 3 (tests cannot give up their own 3).
    static func listeningSockets(
        environment: [String: String], processID: pid_t, firstDescriptor first: Int32
    ) throws(SocketActivationError) -> Outcome {
        guard let countText = environment["LISTEN_FDS"] else {
            return .notActivated(reason: "LISTEN_FDS is not set")
        }
        guard let pidText = environment["LISTEN_PID"] else {
            return .notActivated(reason: "LISTEN_FDS is set but LISTEN_PID is not")
        }
        guard let pid = pid_t(pidText), pid > 0 else {
            throw SocketActivationError(description: "LISTEN_PID=\(pidText) is not a process id")
        }
        guard pid == processID else {
            return .notActivated(reason: "LISTEN_PID=\(pid) is another process (this one is \(processID))")
        }
        guard let count = Int32(countText), count >= 0 else {
            throw SocketActivationError(description: "LISTEN_FDS=\(countText) is not a number of descriptors")
        }
        guard count > 0 else {
            throw SocketActivationError(
                description: "LISTEN_FDS=0: socket activation for this process but no sockets were passed")
        }
        // Descriptors beyond the process's limit cannot exist; this also keeps 3 + count from overflowing.
        let limit = Int32(clamping: sysconf(Int32(_SC_OPEN_MAX)))
        guard count <= limit - first else {
            throw SocketActivationError(description: "LISTEN_FDS=\(count) is more than this process can have open")
        }
        let names: [String]
        if let namesText = environment["LISTEN_FDNAMES"] {
            names = namesText.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
            guard names.count == Int(count) else {
                throw SocketActivationError(
                    description: "LISTEN_FDNAMES=\(namesText) names \(names.count) descriptors but LISTEN_FDS=\(count)")
            }
        } else {
            names = Array(repeating: "unknown", count: Int(count))
        }
        var sockets: [ListeningSocket] = []
        for (offset, name) in names.enumerated() {
            let fd = first + Int32(offset)
            let isLocal = try validateListeningStreamSocket(fd, name: name)
            _ = fcntl(fd, F_SETFD, fcntl(fd, F_GETFD) | FD_CLOEXEC)
            sockets.append(ListeningSocket(fd: fd, name: name, isLocal: isLocal))
        }
        return .inherited(sockets)
    }

    /// Checks what sd_is_socket(3) checks, with an error that says what to fix in the `.socket` unit. Returns
    /// true for the local submission socket (a UNIX socket named ``localSubmissionName``).
    @discardableResult
    static func validateListeningStreamSocket(_ fd: Int32, name: String) throws(SocketActivationError) -> Bool {
        let which = "inherited descriptor \(fd) (\(name))"
        var status = stat()
        guard fstat(fd, &status) == 0 else {
            throw SocketActivationError(description: "\(which) is not open: \(String(cString: strerror(errno)))")
        }
        guard status.st_mode & S_IFMT == S_IFSOCK else {
            throw SocketActivationError(description: "\(which) is not a socket")
        }
        guard let type = socketOption(fd, SO_TYPE), type == Int32(SOCK_STREAM.rawValue) else {
            throw SocketActivationError(
                description:
                    "\(which) is not a stream socket: the .socket unit needs ListenStream=, not ListenDatagram=")
        }
        let family = socketOption(fd, SO_DOMAIN)
        let isLocal = family == AF_UNIX && name == localSubmissionName
        guard family == AF_INET || family == AF_INET6 || isLocal else {
            throw SocketActivationError(
                description: "\(which) is not an IPv4/IPv6 socket: ListenStream= must be a port or an ADDRESS:PORT "
                    + "(a path only for the sendmail socket, with FileDescriptorName=\(localSubmissionName))")
        }
        guard let listening = socketOption(fd, SO_ACCEPTCONN), listening != 0 else {
            throw SocketActivationError(
                description: "\(which) is not listening: the .socket unit needs Accept=no (the default)")
        }
        return isLocal
    }

    private static func socketOption(_ fd: Int32, _ option: Int32) -> Int32? {
        var value: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        return getsockopt(fd, SOL_SOCKET, option, &value, &length) == 0 ? value : nil
    }
}
