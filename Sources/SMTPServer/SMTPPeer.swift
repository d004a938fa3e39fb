import Glibc

/// Who is at the other end of a session: a host on the network, or a process on this host that connected to the
/// local submission socket (the sendmail command). Only the kernel says which: a network client can claim to be
/// `root` in its headers or envelope, but it can never become ``local(_:)``.
public enum SMTPPeer: Sendable, Hashable, CustomStringConvertible {
    case network(SocketAddress)
    case local(LocalPeer)

    /// The network address, nil for a local process.
    public var address: SocketAddress? {
        if case .network(let address) = self { return address }
        return nil
    }

    /// The local process's identity, nil for a network client.
    public var localPeer: LocalPeer? {
        if case .local(let peer) = self { return peer }
        return nil
    }

    /// `127.0.0.1:40312` or `local uid=33(www-data) pid=4242`.
    public var description: String {
        switch self {
        case .network(let address): "\(address)"
        case .local(let peer): "\(peer)"
        }
    }
}

/// A process on this host, as the kernel identified it when it connected (`SO_PEERCRED`, unix(7)).
public struct LocalPeer: Sendable, Hashable, CustomStringConvertible {
    public var uid: UInt32
    public var gid: UInt32
    /// The process that connected (it may have exited since).
    public var pid: Int32
    /// The user name of `uid` from the password database, nil when it has none.
    public var userName: String?

    public init(uid: UInt32, gid: UInt32, pid: Int32, userName: String?) {
        self.uid = uid
        self.gid = gid
        self.pid = pid
        self.userName = userName
    }

    /// The user name, else the number (`uid 1234`), for log lines.
    public var user: String { userName ?? "uid \(uid)" }

    public var description: String { "local uid=\(uid)(\(userName ?? "?")) pid=\(pid)" }

    /// The credentials of the process at the other end of a connected UNIX socket; nil when the kernel gives
    /// none (not a UNIX socket).
    public static func of(socket fd: Int32) -> LocalPeer? {
        // `struct ucred` (pid_t pid; uid_t uid; gid_t gid), which Swift's Glibc module does not export because
        // glibc declares it only under _GNU_SOURCE.
        struct Credentials {
            var pid: Int32 = 0
            var uid: UInt32 = 0
            var gid: UInt32 = 0
        }
        var credentials = Credentials()
        var length = socklen_t(MemoryLayout<Credentials>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &credentials, &length) == 0,
            length == socklen_t(MemoryLayout<Credentials>.size)
        else { return nil }
        return LocalPeer(
            uid: credentials.uid, gid: credentials.gid, pid: credentials.pid, userName: userName(of: credentials.uid))
    }

    /// The name `getpwuid_r(3)` gives for `uid`, nil when the password database has none.
    public static func userName(of uid: UInt32) -> String? {
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil, let name = entry.pw_name
        else { return nil }
        return String(cString: name)
    }
}
