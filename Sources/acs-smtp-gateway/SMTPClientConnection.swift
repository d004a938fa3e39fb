import Foundation
import Glibc
import SMTPServer

/// A blocking SMTP client connection with send and receive timeouts, over TCP (`send-test`) or the gateway's local
/// UNIX socket (`sendmail`): fine for a one-shot command-line tool, which has nothing else to do while it waits.
final class SMTPClientConnection {
    struct Reply {
        var code: Int
        var lines: [String]

        /// `2.1.5` from the first line, when the reply has an enhanced status code.
        var enhancedCode: String? {
            guard let first = lines.first?.split(separator: " ").first,
                first.split(separator: ".").count == 3, first.allSatisfy({ $0.isNumber || $0 == "." })
            else { return nil }
            return String(first)
        }

        /// `550 5.1.1 text / more text`, one line.
        var text: String { "\(code) \(lines.joined(separator: " / "))" }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let fd: Int32
    private var buffer: [UInt8] = []
    /// Each command and reply, for `sendmail -v`.
    var transcript: ((String) -> Void)?

    init(to address: SocketAddress, timeout: Double) throws {
        fd = socket(address.isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        Self.setTimeouts(fd, timeout)
        guard address.withSockAddr({ connect(fd, $0, $1) }) == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw Failure(description: "cannot connect to \(address): \(reason) (is the gateway running?)")
        }
    }

    /// Connects to the UNIX socket at `path`; `timeout` nil waits as long as the daemon takes.
    init(unixPath path: String, timeout: Double?) throws {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        guard path.utf8.count < MemoryLayout.size(ofValue: address.sun_path) else {
            throw Failure(description: "\(path): socket path too long")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: Array(path.utf8) + [0]) }
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        if let timeout { Self.setTimeouts(fd, timeout) }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard connected == 0 else {
            let reason = String(cString: strerror(errno))
            Glibc.close(fd)
            throw Failure(description: "cannot connect to \(path): \(reason)")
        }
    }

    private static func setTimeouts(_ fd: Int32, _ timeout: Double) {
        var time = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - timeout.rounded(.down)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
    }

    func close() { Glibc.close(fd) }

    func send(_ text: String) throws {
        transcript?(">>> " + text.trimmingCharacters(in: .newlines))
        try send(bytes: Array(text.utf8))
    }

    func send(bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
            }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                throw Failure(description: "the gateway stopped reading: \(String(cString: strerror(errno)))")
            }
            offset += written
        }
    }

    /// Sends a message after DATA's 354: dot-stuffed (RFC 5321 §4.5.2), then the terminating `.`. The message's
    /// lines end in CRLF.
    func sendMessageData(_ message: [UInt8]) throws {
        var stuffed: [UInt8] = []
        stuffed.reserveCapacity(message.count + message.count / 64 + 5)
        var lineStart = true
        for byte in message {
            if lineStart && byte == UInt8(ascii: ".") { stuffed.append(UInt8(ascii: ".")) }
            stuffed.append(byte)
            lineStart = byte == UInt8(ascii: "\n")
        }
        if !lineStart { stuffed += [13, 10] }
        stuffed += Array(".\r\n".utf8)
        transcript?(">>> (message, \(message.count) octets)")
        try send(bytes: stuffed)
    }

    func readReply() throws -> Reply {
        var lines: [String] = []
        while true {
            let line = try readLine()
            guard line.count >= 3, let code = Int(line.prefix(3)) else {
                throw Failure(description: "not an SMTP reply: \(line.prefix(80))")
            }
            lines.append(String(line.dropFirst(4)))
            transcript?("<<< " + line)
            if line.count == 3 || line.dropFirst(3).first == " " { return Reply(code: code, lines: lines) }
        }
    }

    /// Sends `command` and reads its reply.
    func command(_ command: String) throws -> Reply {
        try send(command + "\r\n")
        return try readReply()
    }

    private func readLine() throws -> String {
        while true {
            if let index = buffer.firstIndex(of: 10) {
                let line = buffer[..<index]
                buffer.removeFirst(index + 1)
                return String(decoding: line.last == 13 ? line.dropLast() : line, as: UTF8.self)
            }
            var chunk = [UInt8](repeating: 0, count: 4096)
            let count = recv(fd, &chunk, chunk.count, 0)
            if count < 0 && errno == EINTR { continue }
            if count == 0 { throw Failure(description: "the gateway closed the connection") }
            if count < 0 { throw Failure(description: "no reply: \(String(cString: strerror(errno)))") }
            buffer += chunk[0..<count]
        }
    }
}
