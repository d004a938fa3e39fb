import ArgumentParser
import Foundation
import Glibc
import SMTPServer

/// `send-test`: one test message through a running gateway, with a transcript summary — the quickest way
/// for an operator to see the whole path (SMTP → translation → ACS) work, and the operation id ACS gave.
struct SendTest: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "send-test",
        abstract: "Send one test message through a running gateway and show what happened.",
        discussion: "Exits 0 when the gateway accepted the message (250), 1 otherwise.")

    @Option(help: "Recipient of the test message.")
    var to: String

    @Option(help: "Envelope and header sender (default: the recipient, so the reply-to address is a real one).")
    var from: String?

    @Option(
        help:
            "The gateway, HOST:PORT. Default: 127.0.0.1:2525 (serve's default), else 127.0.0.1:25 (the socket unit's).")
    var server: String?

    @Option(help: "Seconds to wait for each reply (delivery to ACS may take up to the retry budget).")
    var timeout: Double = 120

    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    func run() throws {
        let connection: SMTPClientConnection
        if let server {
            guard let address = SocketAddress(hostAndPort: server) else {
                throw ValidationError("--server \(server): expected IP:PORT or [IPv6]:PORT")
            }
            connection = try SMTPClientConnection(to: address, timeout: timeout)
        } else {
            connection = try Self.connectToLocalGateway(timeout: timeout)
        }
        defer { connection.close() }
        let from = self.from ?? to
        let hostname = ProcessInfo.processInfo.hostName
        let date = Self.rfc5322Date(Date())
        let messageID = "<\(UUID().uuidString.lowercased())@acs-smtp-gateway.send-test>"
        let message = [
            "From: \(from)", "To: \(to)", "Subject: acs-smtp-gateway test message", "Date: \(date)",
            "Message-ID: \(messageID)", "MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8", "",
            "This is a test message sent by `acs-smtp-gateway send-test` from \(hostname).",
            "If you can read it, SMTP intake, translation and delivery work.", "",
        ].joined(separator: "\r\n")

        var transcript: [(command: String, reply: SMTPClientConnection.Reply)] = []
        func step(_ command: String?, label: String? = nil, expect: Int) throws -> SMTPClientConnection.Reply {
            if let command { try connection.send(command + "\r\n") }
            let reply = try connection.readReply()
            let shown = label ?? command.map { $0.count > 60 ? String($0.prefix(57)) + "..." : $0 } ?? ""
            transcript.append((shown, reply))
            print("\(shown) -> \(reply.code) \(reply.lines.first ?? "")")
            guard reply.code == expect else {
                throw Failure(description: "the gateway answered \(reply.code) \(reply.lines.joined(separator: " / "))")
            }
            return reply
        }
        _ = try step(nil, label: "(connect)", expect: 220)
        _ = try step("EHLO \(hostname)", expect: 250)
        _ = try step("MAIL FROM:<\(from)>", expect: 250)
        _ = try step("RCPT TO:<\(to)>", expect: 250)
        _ = try step("DATA", expect: 354)
        try connection.sendMessageData(Array(message.utf8))
        let final = try step(nil, label: "(message, \(message.utf8.count) octets)", expect: 250)
        _ = try? step("QUIT", expect: 221)
        let text = final.lines.last ?? ""
        if let range = text.range(of: "queued as ") {
            print("accepted; ACS operation id: \(text[range.upperBound...])")
        } else {
            print("accepted (no ACS operation id: the gateway delivers to its outbox): \(text)")
        }
    }

    /// `serve` run by hand listens on 127.0.0.1:2525; installed, the socket unit listens on 127.0.0.1:25.
    static func connectToLocalGateway(timeout: Double) throws -> SMTPClientConnection {
        let candidates = ["127.0.0.1:2525", "127.0.0.1:25"].compactMap { SocketAddress(hostAndPort: $0) }
        var failures: [String] = []
        for address in candidates {
            do {
                let connection = try SMTPClientConnection(to: address, timeout: timeout)
                print("gateway: \(address)")
                return connection
            } catch {
                failures.append("\(error)")
            }
        }
        throw Failure(description: failures.joined(separator: "; ") + " (give --server HOST:PORT)")
    }

    /// `Mon, 07 Dec 2026 10:00:00 +0000`, in `timeZone` (UTC unless given).
    static func rfc5322Date(_ date: Date, timeZone: TimeZone = TimeZone(identifier: "UTC")!) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = timeZone
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        return formatter.string(from: date)
    }
}
