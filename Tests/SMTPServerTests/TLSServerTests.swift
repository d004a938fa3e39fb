import COpenSSL
import Foundation
import Logging
import SMTPProtocol
import Testing

@testable import SMTPServer

/// The SMTP server over implicit TLS, in process, with a blocking OpenSSL client: the session works through
/// the TLS layer, and back-pressure still reaches the client's TCP window.
@Suite(.serialized) struct TLSServerTests {
    /// A blocking TLS client (no certificate check: the test trusts its own server).
    final class TLSClient {
        let fd: Int32
        private let context: OpaquePointer
        private let ssl: OpaquePointer
        private var buffer: [UInt8] = []

        init(to address: SocketAddress) throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var time = timeval(tv_sec: 5, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
            let connected = address.withSockAddr { connect(fd, $0, $1) }
            let context = SSL_CTX_new(TLS_client_method())!
            acsgw_ssl_ctx_set_mode(context, acsgw_ssl_mode_partial_write())
            let ssl = SSL_new(context)!
            SSL_set_fd(ssl, fd)
            (self.fd, self.context, self.ssl) = (fd, context, ssl)
            try #require(connected == 0)
            try #require(SSL_connect(ssl) == 1, "TLS handshake failed")
        }

        deinit {
            SSL_free(ssl)
            SSL_CTX_free(context)
            close(fd)
        }

        var version: String { String(cString: SSL_get_version(ssl)) }

        func send(_ text: String) throws {
            let bytes = Array(text.utf8)
            try #require(bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) } == bytes.count)
        }

        /// One write without blocking (the socket is non-blocking): octets taken, 0 when the kernel's buffers
        /// are full.
        func trySend(_ bytes: [UInt8]) -> Int {
            let written = bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
            return max(0, Int(written))
        }

        func readCodes(_ count: Int) throws -> [Int] {
            var codes: [Int] = []
            while codes.count < count {
                if let newline = buffer.firstIndex(of: 10) {
                    let line = Array(buffer[..<newline])
                    buffer.removeFirst(newline + 1)
                    let isLast = line.count >= 4 && line[3] == UInt8(ascii: " ")
                    if isLast, let code = Int(String(decoding: line.prefix(3), as: UTF8.self)) { codes.append(code) }
                    continue
                }
                var chunk = [UInt8](repeating: 0, count: 4096)
                let count = chunk.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
                try #require(count > 0, "connection closed or timed out")
                buffer += chunk[0..<Int(count)]
            }
            return codes
        }
    }

    static func start(submitter: MessageSubmitter) throws -> (SMTPServer, SocketAddress) {
        let files = try TLSContextTests.makeFiles()
        var configuration = SMTPServerConfiguration()
        configuration.listeners = [SMTPListener(address: SocketAddress(ip: "127.0.0.1", port: 0)!, tls: .implicit)]
        configuration.tls = try TLSContext(certificateFile: files.certificate, keyFile: files.key)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let server = SMTPServer(configuration: configuration, submitter: submitter, logger: logger)
        return (server, try server.start()[0])
    }

    static func stop(_ server: SMTPServer) async {
        await withCheckedContinuation { (done: CheckedContinuation<Void, Never>) in server.shutdown { done.resume() } }
    }

    @Test func aSessionOverImplicitTLS_deliversAndQuits() async throws {
        let submitter = RecordingSubmitter()
        let (server, address) = try Self.start(submitter: submitter)
        let client = try TLSClient(to: address)
        #expect(client.version == "TLSv1.3")
        #expect(try client.readCodes(1) == [220])
        try client.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n")
        #expect(try client.readCodes(4) == [250, 250, 250, 354])
        try client.send("Subject: over TLS\r\n\r\nhi\r\n.\r\nQUIT\r\n")
        #expect(try client.readCodes(2) == [250, 221])
        let messages = submitter.messages.map { String(decoding: $0.data, as: UTF8.self) }
        #expect(messages == ["Subject: over TLS\r\n\r\nhi\r\n"])
        await Self.stop(server)
    }

    @Test func whileTheSubmitterWorks_nothingIsReadOverTLSEither() async throws {
        // As in plaintext (SMTPServerTests): with back-pressure the kernel's buffers fill and writes stall;
        // without it the TLS layer would decrypt and buffer everything the client sends.
        let submitter = RecordingSubmitter(delay: 1.5)
        let (server, address) = try Self.start(submitter: submitter)
        let client = try TLSClient(to: address)
        var small: Int32 = 64 * 1024
        setsockopt(client.fd, SOL_SOCKET, SO_SNDBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        _ = try client.readCodes(1)
        try client.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n")
        _ = try client.readCodes(4)
        try client.send("x\r\n.\r\n")
        try await Task.sleep(for: .milliseconds(100))  // the message is now with the submitter
        _ = fcntl(client.fd, F_SETFL, fcntl(client.fd, F_GETFL) | O_NONBLOCK)
        let noops = [UInt8](String(repeating: "NOOP\r\n", count: 16 * 1024 / 6).utf8)
        let accepted = flood(for: 1.0, noops) { client.trySend($0) }
        #expect(accepted < 4 << 20, "the server kept reading during the submission: \(accepted) octets taken")
        await Self.stop(server)
    }
}
