import Foundation
import Glibc
import SMTPProtocol

@testable import SMTPServer

/// A blocking SMTP client over a real socket, with a receive timeout so no test can hang.
final class TestClient {
    struct Reply: CustomStringConvertible {
        var code: Int
        var lines: [String]
        var description: String { "\(code) \(lines.joined(separator: " | "))" }
        var enhancedCode: String? { lines.last?.split(separator: " ").first.map(String.init) }
    }

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let fd: Int32
    private var buffer: [UInt8] = []

    init(to address: SocketAddress, from source: SocketAddress? = nil, timeout: Double = 5) throws {
        fd = socket(address.isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket failed") }
        var time = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - Double(Int(timeout))) * 1e6))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        if let source {
            guard source.withSockAddr({ bind(fd, $0, $1) }) == 0 else {
                close(fd)
                throw Failure(description: "bind to \(source) failed")
            }
        }
        guard address.withSockAddr({ connect(fd, $0, $1) }) == 0 else {
            close(fd)
            throw Failure(description: "connect to \(address) failed: \(String(cString: strerror(errno)))")
        }
    }

    deinit { close(fd) }

    func send(_ text: String) throws {
        try send(Array(text.utf8))
    }

    func send(_ bytes: [UInt8]) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL))
            }
            guard written > 0 else { throw Failure(description: "send failed: \(String(cString: strerror(errno)))") }
            offset += written
        }
    }

    /// Reads one (possibly multi-line) reply.
    func readReply() throws -> Reply {
        var lines: [String] = []
        while true {
            let line = try readLine()
            guard line.count >= 3, let code = Int(line.prefix(3)) else {
                throw Failure(description: "not a reply line: \(line)")
            }
            lines.append(String(line.dropFirst(4)))
            if line.count == 3 || line[line.index(line.startIndex, offsetBy: 3)] == " " {
                return Reply(code: code, lines: lines)
            }
        }
    }

    func readReplies(_ count: Int) throws -> [Reply] {
        try (0..<count).map { _ in try readReply() }
    }

    /// True when the server closed the connection (EOF) within the receive timeout.
    func isClosedByServer() -> Bool {
        var byte: UInt8 = 0
        while true {
            let count = recv(fd, &byte, 1, 0)
            if count == 0 { return true }
            if count < 0 { return errno == ECONNRESET }
        }
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
            if count == 0 { throw Failure(description: "connection closed by server") }
            if count < 0 { throw Failure(description: "recv failed: \(String(cString: strerror(errno)))") }
            buffer += chunk[0..<count]
        }
    }
}

/// Records submissions and answers them, optionally after a delay.
final class RecordingSubmitter: MessageSubmitter, @unchecked Sendable {
    private let lock = NSLock()
    private var stored: [ReceivedMessage] = []
    let delay: Double
    let reply: SMTPReply

    init(delay: Double = 0, reply: SMTPReply = .messageAccepted("OK stored")) {
        self.delay = delay
        self.reply = reply
    }

    var messages: [ReceivedMessage] {
        lock.lock()
        defer { lock.unlock() }
        return stored
    }

    func submit(_ message: ReceivedMessage, completion: @escaping @Sendable (SubmissionResult) -> Void) {
        lock.lock()
        stored.append(message)
        lock.unlock()
        let reply = self.reply
        DispatchQueue.global().asyncAfter(deadline: .now() + delay) {
            completion(SubmissionResult(reply, reason: .unspecified))
        }
    }
}

/// A clock the test moves by hand, so timeouts are reached without sleeping.
final class ManualClock: @unchecked Sendable {
    private let lock = NSLock()
    private var seconds = 1000.0

    var clock: MonotonicClock { MonotonicClock { self.now } }

    var now: Double { lock.withLock { seconds } }

    func advance(by interval: Double) { lock.withLock { seconds += interval } }
}

/// Writes `chunk` again and again for `seconds` through `send` (non-blocking: it returns the octets taken, 0 when
/// the kernel's buffers are full) and returns how much was taken: bounded when the server stops reading.
func flood(for seconds: Double, _ chunk: [UInt8], send: ([UInt8]) -> Int) -> Int {
    var accepted = 0
    let started = Date()
    while accepted < 32 << 20, Date().timeIntervalSince(started) < seconds {
        let written = send(chunk)
        if written > 0 {
            accepted += written
        } else {
            usleep(10_000)
        }
    }
    return accepted
}
