import Foundation
import Glibc
import Logging
import Testing

@testable import Gateway

/// sd_notify(3) over a real `AF_UNIX` datagram socket, bound the way systemd binds `$NOTIFY_SOCKET`.
@Suite struct SystemdNotifierTests {
    /// A datagram socket standing in for systemd's notification socket.
    final class Receiver {
        let fd: Int32
        /// The `$NOTIFY_SOCKET` value that reaches it.
        let notifySocket: String
        private let cleanupPath: String?

        /// A socket file in a fresh temporary directory.
        init(path directory: URL) throws {
            let path = directory.appendingPathComponent("notify").path
            fd = try Self.boundSocket { address in
                withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
                return MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + path.utf8.count + 1
            }
            notifySocket = path
            cleanupPath = directory.path
        }

        /// A name in the abstract namespace (unix(7)): a NUL byte, then the name, with no terminator.
        init(abstractName: String) throws {
            fd = try Self.boundSocket { address in
                withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: [0] + Array(abstractName.utf8)) }
                return MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + 1 + abstractName.utf8.count
            }
            notifySocket = "@" + abstractName
            cleanupPath = nil
        }

        deinit {
            close(fd)
            if let cleanupPath { try? FileManager.default.removeItem(atPath: cleanupPath) }
        }

        private static func boundSocket(_ fill: (inout sockaddr_un) -> Int) throws -> Int32 {
            let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
            try #require(fd >= 0)
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            let length = fill(&address)
            let result = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(length)) }
            }
            try #require(result == 0, "bind: \(String(cString: strerror(errno)))")
            var timeout = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
            return fd
        }

        /// The next datagram, or nil after two seconds.
        func receive() -> String? {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            return count < 0 ? nil : String(decoding: buffer[0..<count], as: UTF8.self)
        }
    }

    private static let quiet: Logger = {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }()

    private static func temporaryDirectory() throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("sdnotify-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url
    }

    @Test func ready_status_stopping_watchdog_areTheExactDatagrams() throws {
        let receiver = try Receiver(path: try Self.temporaryDirectory())
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket], logger: Self.quiet)
        #expect(notifier.isEnabled)
        #expect(notifier.socketPath == receiver.notifySocket)
        notifier.ready(status: "Listening on 127.0.0.1:25")
        #expect(receiver.receive() == "READY=1\nSTATUS=Listening on 127.0.0.1:25")
        notifier.status("2 connections")
        #expect(receiver.receive() == "STATUS=2 connections")
        notifier.watchdog()
        #expect(receiver.receive() == "WATCHDOG=1")
        notifier.stopping(status: "Stopping")
        #expect(receiver.receive() == "STOPPING=1\nSTATUS=Stopping")
        notifier.reloaded(status: "Reloaded")
        #expect(receiver.receive() == "READY=1\nSTATUS=Reloaded")
    }

    @Test func reloading_carriesTheMonotonicClock() throws {
        let receiver = try Receiver(path: try Self.temporaryDirectory())
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket], logger: Self.quiet)
        let before = SystemdNotifier.monotonicMicroseconds()
        notifier.reloading(status: "Reloading")
        let lines = try #require(receiver.receive()).split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        #expect(lines.first == "RELOADING=1")
        #expect(lines.last == "STATUS=Reloading")
        let stamp = try #require(lines[1].hasPrefix("MONOTONIC_USEC=") ? UInt64(lines[1].dropFirst(15)) : nil)
        #expect(stamp >= before && stamp <= SystemdNotifier.monotonicMicroseconds())
    }

    @Test func abstractNamespaceSocket() throws {
        let receiver = try Receiver(abstractName: "acs-smtp-gateway-test-\(UUID().uuidString)")
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket], logger: Self.quiet)
        notifier.ready(status: "up")
        #expect(receiver.receive() == "READY=1\nSTATUS=up")
    }

    @Test func lineBreaksInAStatus_cannotForgeAssignments() throws {
        let receiver = try Receiver(path: try Self.temporaryDirectory())
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": receiver.notifySocket], logger: Self.quiet)
        notifier.status("bad\nREADY=1\r\nx")
        #expect(receiver.receive() == "STATUS=bad READY=1  x")
    }

    @Test func withoutNotifySocket_nothingIsSent() {
        let notifier = SystemdNotifier(environment: [:], logger: Self.quiet)
        #expect(!notifier.isEnabled)
        #expect(notifier.socketPath == nil)
        #expect(!notifier.send([("READY", "1")]))
    }

    @Test(arguments: ["relative/notify", "vsock:2:1234", "/" + String(repeating: "x", count: 200)])
    func unusableNotifySocket_disablesNotifications(_ value: String) {
        let notifier = SystemdNotifier(environment: ["NOTIFY_SOCKET": value], logger: Self.quiet)
        #expect(!notifier.isEnabled)
        #expect(!notifier.send([("READY", "1")]))
    }

    @Test func vanishedSocket_isReportedNotThrown() throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(at: directory) }
        let notifier = SystemdNotifier(
            environment: ["NOTIFY_SOCKET": directory.appendingPathComponent("gone").path], logger: Self.quiet)
        #expect(notifier.isEnabled)
        #expect(!notifier.send([("STATUS", "anyone?")]))
    }

    @Test func watchdogInterval_isHalfOfWatchdogUsec_forThisProcessOnly() {
        let me = getpid()
        #expect(
            SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "200000"], processID: me)
                == .milliseconds(100))
        #expect(
            SystemdNotifier.watchdogInterval(
                environment: ["WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "\(me)"], processID: me) == .seconds(15))
        #expect(
            SystemdNotifier.watchdogInterval(
                environment: ["WATCHDOG_USEC": "200000", "WATCHDOG_PID": "\(me + 1)"], processID: me) == nil)
        #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "0"], processID: me) == nil)
        #expect(SystemdNotifier.watchdogInterval(environment: ["WATCHDOG_USEC": "soon"], processID: me) == nil)
        #expect(SystemdNotifier.watchdogInterval(environment: [:], processID: me) == nil)
        let notifier = SystemdNotifier(environment: ["WATCHDOG_USEC": "200000"], logger: Self.quiet)
        #expect(notifier.watchdogInterval == .milliseconds(100))
    }
}
