import Dispatch
import Glibc

/// Listening TCP sockets for the SMTP listener and the gateway's admin listener: non-blocking, close-on-exec,
/// `SO_REUSEADDR`, and IPv6-only for an IPv6 address.
public enum ListeningSocket {
    /// Binds and listens on `address`. Returns the descriptor and the bound address (with the real port when
    /// port 0 was asked for). On failure nothing stays open.
    public static func bind(_ address: SocketAddress, backlog: Int32) throws -> (Int32, SocketAddress) {
        let family = address.isIPv6 ? AF_INET6 : AF_INET
        let fd = socket(family, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SMTPServerError(description: "socket(): \(String(cString: strerror(errno)))") }
        var one: Int32 = 1
        _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        if address.isIPv6 {
            // An IPv6 listen address means IPv6 only; list 0.0.0.0 separately for IPv4. This keeps the
            // two address families' access rules explicit.
            _ = setsockopt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        let bindResult = address.withSockAddr { Glibc.bind(fd, $0, $1) }
        guard bindResult == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw SMTPServerError(description: "cannot listen on \(address): \(message)")
        }
        guard listen(fd, backlog) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw SMTPServerError(description: "listen() on \(address): \(message)")
        }
        return (fd, localAddress(of: fd) ?? address)
    }

    /// Binds and listens on a UNIX socket at `path`, connectable by every local user (mode 0666): the local
    /// submission socket, which identifies its peers by their credentials rather than by permission to connect.
    /// The parent directory is made (0755) when missing. A socket file left by a daemon that is gone is
    /// replaced; one that still answers, or anything that is not a socket, is an error, never deleted.
    public static func bindLocal(path: String, backlog: Int32) throws -> Int32 {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard path.hasPrefix("/"), path.utf8.count < capacity else {
            throw SMTPServerError(
                description: "local socket \(path): expected an absolute path under \(capacity) octets")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        let parent = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        // mkdir(2) applies the umask (0077 under the systemd unit): the mode is set again so that every user can
        // reach the socket inside.
        if !parent.isEmpty, mkdir(parent, 0o755) == 0 { _ = chmod(parent, 0o755) }
        var status = stat()
        if lstat(path, &status) == 0 {
            guard status.st_mode & S_IFMT == S_IFSOCK else {
                throw SMTPServerError(description: "local socket \(path): a file that is not a socket is in the way")
            }
            guard !answers(path: &address) else {
                throw SMTPServerError(description: "local socket \(path): another process is listening on it")
            }
            unlink(path)
        }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_NONBLOCK.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SMTPServerError(description: "socket(): \(String(cString: strerror(errno)))") }
        let length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, length) }
        }
        guard bound == 0, chmod(path, 0o666) == 0, listen(fd, backlog) == 0 else {
            let message = String(cString: strerror(errno))
            close(fd)
            throw SMTPServerError(description: "cannot listen on local socket \(path): \(message)")
        }
        return fd
    }

    /// True when something accepts connections on the UNIX socket at `address`.
    private static func answers(path address: inout sockaddr_un) -> Bool {
        let probe = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { return false }
        defer { close(probe) }
        let length = socklen_t(MemoryLayout<sockaddr_un>.size)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(probe, $0, length) }
        } == 0
    }

    /// The path a UNIX socket is bound to; nil for another socket or an unnamed one.
    public static func localPath(of fd: Int32) -> String? {
        var address = sockaddr_un()
        var length = socklen_t(MemoryLayout<sockaddr_un>.size)
        let result = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard result == 0, Int32(address.sun_family) == AF_UNIX else { return nil }
        let path = withUnsafeBytes(of: address.sun_path) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return path.hasPrefix("/") ? path : nil
    }

    /// True when `fd` is a UNIX stream socket (what systemd passes for a `ListenStream=/path` socket).
    public static func isLocal(_ fd: Int32) -> Bool {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return result == 0 && Int32(storage.ss_family) == AF_UNIX
    }

    /// The local address a socket is bound to, when it is an IPv4 or IPv6 socket.
    public static func localAddress(of fd: Int32) -> SocketAddress? {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return result == 0 ? SocketAddress(storage: storage) : nil
    }

    /// What one `accept(2)` gave.
    public enum Accepted {
        /// A connection: its descriptor (non-blocking, close-on-exec) and the peer's address (nil when the
        /// peer is not IPv4/IPv6; the caller closes such a descriptor).
        case connection(Int32, SocketAddress?)
        /// Nothing pending now (or an aborted connection, or an interrupted call): wait for the next event.
        case nothingPending
        /// `accept(2)` failed with this errno (EMFILE, ENFILE, ENOBUFS, ENOMEM…).
        case failed(Int32)
    }

    /// Accepts one pending connection on a non-blocking listening socket.
    public static func accept(on listenFD: Int32) -> Accepted {
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.accept(listenFD, $0, &length) }
        }
        if fd < 0 {
            let error = errno
            if error == EAGAIN || error == EWOULDBLOCK || error == EINTR || error == ECONNABORTED {
                return .nothingPending
            }
            return .failed(error)
        }
        // accept4() is not exported by Swift's Glibc module; set the flags separately.
        _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK)
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
        return .connection(fd, SocketAddress(storage: storage))
    }

    /// Closes `fd` once every source watching it has been cancelled — Dispatch requires that a descriptor
    /// outlive the sources monitoring it — then runs `closed` on `queue`. Replaces the sources' cancel handlers.
    public static func closeWhenCancelled(
        _ fd: Int32, sources: [any DispatchSourceProtocol], queue: DispatchQueue,
        then closed: @escaping @Sendable () -> Void
    ) {
        let group = DispatchGroup()
        for source in sources {
            group.enter()
            source.setCancelHandler { group.leave() }
        }
        group.notify(queue: queue) {
            Glibc.close(fd)
            closed()
        }
    }
}
