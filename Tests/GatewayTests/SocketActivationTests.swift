import Foundation
import Glibc
import SMTPProtocol
import SMTPServer
import Testing

@testable import Gateway

/// sd_listen_fds(3) semantics. The descriptors under test are placed at high numbers (the test process
/// cannot give up its own descriptor 3), with `firstDescriptor` pointing there.
@Suite(.serialized) struct SocketActivationTests {
    private let me = getpid()

    /// Puts `fds` at consecutive descriptor numbers and returns the first; closes the originals.
    private func consecutive(_ fds: [Int32]) throws -> Int32 {
        var base: Int32 = 600
        while (0..<Int32(fds.count)).contains(where: { fcntl(base + $0, F_GETFD) >= 0 }) { base += 16 }
        for (offset, fd) in fds.enumerated() {
            try #require(dup2(fd, base + Int32(offset)) == base + Int32(offset))
            close(fd)
        }
        return base
    }

    private func closeAll(from first: Int32, count: Int) {
        for offset in 0..<Int32(count) { close(first + offset) }
    }

    private func tcpSocket(listening: Bool, family: Int32 = AF_INET) throws -> Int32 {
        let fd = socket(family, Int32(SOCK_STREAM.rawValue), 0)
        try #require(fd >= 0)
        if family == AF_INET {
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            try #require(bound == 0)
        } else {
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)  // autobind to an abstract name (unix(7))
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(2)) }
            }
            try #require(bound == 0)
        }
        if listening { try #require(listen(fd, 8) == 0) }
        return fd
    }

    private func activate(
        _ first: Int32, count: Int, names: String? = nil, pid: pid_t? = nil
    ) throws(SocketActivationError) -> SocketActivation.Outcome {
        var environment = ["LISTEN_FDS": "\(count)", "LISTEN_PID": "\(pid ?? me)"]
        environment["LISTEN_FDNAMES"] = names
        return try SocketActivation.listeningSockets(environment: environment, processID: me, firstDescriptor: first)
    }

    private func error(_ body: () throws -> SocketActivation.Outcome) -> String {
        do {
            return "no error: \(try body())"
        } catch let error as SocketActivationError {
            return error.description
        } catch {
            return "unexpected error: \(error)"
        }
    }

    @Test func twoListeningSockets_withTheirNames_getCloseOnExec() throws {
        let first = try consecutive([try tcpSocket(listening: true), try tcpSocket(listening: true)])
        defer { closeAll(from: first, count: 2) }
        _ = fcntl(first, F_SETFD, 0)
        let outcome = try activate(first, count: 2, names: "smtp:submission")
        #expect(outcome == .inherited([.init(fd: first, name: "smtp"), .init(fd: first + 1, name: "submission")]))
        #expect(fcntl(first, F_GETFD) & FD_CLOEXEC != 0)
        #expect(fcntl(first + 1, F_GETFD) & FD_CLOEXEC != 0)
    }

    @Test func withoutFdNames_theNameIsUnknown() throws {
        let first = try consecutive([try tcpSocket(listening: true)])
        defer { closeAll(from: first, count: 1) }
        #expect(try activate(first, count: 1) == .inherited([.init(fd: first, name: "unknown")]))
    }

    @Test func anInheritedSocket_servesSMTP() async throws {
        let first = try consecutive([try tcpSocket(listening: true)])
        guard case .inherited(let sockets) = try activate(first, count: 1, names: "smtp") else {
            Issue.record("not activated")
            return
        }
        let server = SMTPServer(
            configuration: SMTPServerConfiguration(), submitter: NullSubmitter(), logger: .init(label: "test"))
        let address = try server.adopt(listeningSocket: sockets[0].fd, name: sockets[0].name).address
        #expect(address.ipString == "127.0.0.1")
        #expect(address.port != 0)
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        var peer = sockaddr_in()
        peer.sin_family = sa_family_t(AF_INET)
        peer.sin_port = address.port.bigEndian
        peer.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(connected == 0)
        var buffer = [UInt8](repeating: 0, count: 512)
        let count = buffer.withUnsafeMutableBytes { recv(client, $0.baseAddress, $0.count, 0) }
        #expect(String(decoding: buffer[0..<max(0, count)], as: UTF8.self).hasPrefix("220 "))
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            server.shutdown { done.resume() }
        }
    }

    @Test func fileDescriptorNames_pickTheirListeners_thenAddresses_elsePlain() async throws {
        let named = try tcpSocket(listening: true)
        let byAddress = try tcpSocket(listening: true)
        let unknown = try tcpSocket(listening: true)
        let addressOfSecond = try #require(ListeningSocket.localAddress(of: byAddress))
        var configuration = SMTPServerConfiguration()
        configuration.listeners = [
            SMTPListener(address: SocketAddress(ip: "0.0.0.0", port: 587)!, tls: .starttls, auth: .required),
            SMTPListener(address: addressOfSecond, tls: .none, auth: .optional, name: "lan"),
        ]
        let server = SMTPServer(configuration: configuration, submitter: NullSubmitter(), logger: .init(label: "test"))
        let submission = try server.adopt(listeningSocket: named, name: "submission")
        #expect(submission.tls == .starttls && submission.auth == .required)
        #expect(submission.address == ListeningSocket.localAddress(of: named))  // the socket's, not the file's
        let lan = try server.adopt(listeningSocket: byAddress, name: "smtp")
        #expect(lan.auth == .optional && lan.name == "lan")
        let plain = try server.adopt(listeningSocket: unknown, name: "smtp")
        #expect(plain.tls == .none && plain.auth == .none)
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in
            server.shutdown { done.resume() }
        }
    }

    @Test func notSetOrForAnotherProcess_isNotActivation() throws {
        #expect(
            try SocketActivation.listeningSockets(environment: [:], processID: me)
                == .notActivated(reason: "LISTEN_FDS is not set"))
        #expect(
            try SocketActivation.listeningSockets(environment: ["LISTEN_FDS": "1"], processID: me)
                == .notActivated(reason: "LISTEN_FDS is set but LISTEN_PID is not"))
        let other = try SocketActivation.listeningSockets(
            environment: ["LISTEN_FDS": "1", "LISTEN_PID": "\(me + 1)"], processID: me)
        #expect(other == .notActivated(reason: "LISTEN_PID=\(me + 1) is another process (this one is \(me))"))
    }

    @Test func malformedVariables_areClearErrors() throws {
        #expect(
            error {
                try SocketActivation.listeningSockets(
                    environment: ["LISTEN_FDS": "1", "LISTEN_PID": "me"], processID: me)
            } == "LISTEN_PID=me is not a process id")
        #expect(
            error { try activate(3, count: 0) }
                == "LISTEN_FDS=0: socket activation for this process but no sockets were passed")
        #expect(
            error {
                try SocketActivation.listeningSockets(
                    environment: ["LISTEN_FDS": "two", "LISTEN_PID": "\(me)"], processID: me)
            }
                == "LISTEN_FDS=two is not a number of descriptors")
        #expect(
            error { try activate(3, count: 1_000_000_000) }
                == "LISTEN_FDS=1000000000 is more than this process can have open")
        #expect(
            error { try activate(3, count: 2, names: "smtp") }
                == "LISTEN_FDNAMES=smtp names 1 descriptors but LISTEN_FDS=2")
    }

    @Test func aFileIsNotASocket() throws {
        let fd = open("/dev/null", O_RDONLY)
        let first = try consecutive([fd])
        defer { closeAll(from: first, count: 1) }
        #expect(
            error { try activate(first, count: 1, names: "smtp") }
                == "inherited descriptor \(first) (smtp) is not a socket")
    }

    @Test func aClosedDescriptor_isReported() throws {
        let first = try consecutive([try tcpSocket(listening: true)])
        closeAll(from: first, count: 1)
        #expect(
            error { try activate(first, count: 1) }.hasPrefix("inherited descriptor \(first) (unknown) is not open"))
    }

    @Test func aDatagramSocket_isNotAStreamSocket() throws {
        let first = try consecutive([socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)])
        defer { closeAll(from: first, count: 1) }
        #expect(
            error { try activate(first, count: 1, names: "smtp") }
                == "inherited descriptor \(first) (smtp) is not a stream socket: "
                + "the .socket unit needs ListenStream=, not ListenDatagram="
        )
    }

    @Test func aSocketThatIsNotListening_isRefused() throws {
        let first = try consecutive([try tcpSocket(listening: false)])
        defer { closeAll(from: first, count: 1) }
        #expect(
            error { try activate(first, count: 1, names: "smtp") }
                == "inherited descriptor \(first) (smtp) is not listening: "
                + "the .socket unit needs Accept=no (the default)"
        )
    }

    @Test func aUnixSocket_isRefused_unlessItIsTheSendmailSocket() throws {
        let first = try consecutive([try tcpSocket(listening: true, family: AF_UNIX)])
        defer { closeAll(from: first, count: 1) }
        #expect(
            error { try activate(first, count: 1, names: "smtp") }
                == "inherited descriptor \(first) (smtp) is not an IPv4/IPv6 socket: "
                + "ListenStream= must be a port or an ADDRESS:PORT (a path only for the sendmail socket, with "
                + "FileDescriptorName=sendmail)"
        )
        #expect(
            try activate(first, count: 1, names: "sendmail")
                == .inherited([SocketActivation.ListeningSocket(fd: first, name: "sendmail", isLocal: true)]))
    }

    @Test func theSecondOfTwo_isChecked() throws {
        let first = try consecutive([try tcpSocket(listening: true), try tcpSocket(listening: false)])
        defer { closeAll(from: first, count: 2) }
        #expect(
            error { try activate(first, count: 2, names: "smtp:other") }
                == "inherited descriptor \(first + 1) (other) is not listening: "
                + "the .socket unit needs Accept=no (the default)"
        )
    }
}

/// Answers every message with 250 without keeping it.
private struct NullSubmitter: MessageSubmitter {
    func submit(_ message: ReceivedMessage, completion: @escaping @Sendable (SubmissionResult) -> Void) {
        completion(SubmissionResult(.ok, reason: .unspecified))
    }
}
