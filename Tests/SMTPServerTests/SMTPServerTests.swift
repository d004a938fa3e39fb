import Foundation
import Logging
import SMTPProtocol
import Testing

@testable import SMTPServer

/// The listener over real loopback sockets, in process, with a recording submitter.
@Suite(.serialized) struct SMTPServerTests {
    private static func startServer(
        submitter: MessageSubmitter = RecordingSubmitter(), clock: MonotonicClock = .system,
        configure: (inout SMTPServerConfiguration) -> Void = { _ in }
    ) throws -> (SMTPServer, SocketAddress) {
        var configuration = SMTPServerConfiguration()
        configuration.listenAddresses = [SocketAddress(ip: "127.0.0.1", port: 0)!]
        configuration.hostname = "gateway.test"
        configure(&configuration)
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        let server = SMTPServer(configuration: configuration, submitter: submitter, logger: logger, clock: clock)
        let addresses = try server.start()
        return (server, addresses[0])
    }

    private static func stop(_ server: SMTPServer) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            server.shutdown { continuation.resume() }
        }
    }

    @Test func acceptsAMessageAndHandsItToTheSubmitter() async throws {
        let submitter = RecordingSubmitter()
        let (server, address) = try Self.startServer(submitter: submitter)
        let client = try TestClient(to: address)
        #expect(try client.readReply().code == 220)
        try client.send("EHLO c.example\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n")
        #expect(try client.readReplies(4).map(\.code) == [250, 250, 250, 354])
        try client.send("Subject: t\r\n\r\nhello\r\n.\r\nQUIT\r\n")
        let replies = try client.readReplies(2)
        #expect(replies.map(\.code) == [250, 221])
        #expect(client.isClosedByServer())
        let message = try #require(submitter.messages.first)
        #expect(String(decoding: message.data, as: UTF8.self) == "Subject: t\r\n\r\nhello\r\n")
        #expect(message.session.heloName == "c.example")
        #expect(message.session.client.address?.ipString == "127.0.0.1")
        #expect(message.id.count == 36)
        await Self.stop(server)
    }

    @Test func nothingIsReadWhileTheSubmitterWorks_thenPipelinedInputIsAnsweredInOrder() async throws {
        let submitter = RecordingSubmitter(delay: 0.3)
        let (server, address) = try Self.startServer(submitter: submitter)
        let client = try TestClient(to: address)
        _ = try client.readReply()
        try client.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\nNOOP\r\nQUIT\r\n")
        let replies = try client.readReplies(7)
        #expect(replies.map(\.code) == [250, 250, 250, 354, 250, 250, 221])
        #expect(replies[4].lines == ["2.0.0 OK stored"])
        await Self.stop(server)
    }

    @Test func whileTheSubmitterWorks_theServerStopsReading_soAFloodingClientIsHeldByTheKernel() async throws {
        // The reply order alone cannot show back-pressure. Here a client keeps writing
        // pipelined commands while its message is with a slow submitter; without back-pressure the server
        // would read (and buffer) everything, with it the kernel's socket buffers fill and send() stalls.
        let submitter = RecordingSubmitter(delay: 1.5)
        let (server, address) = try Self.startServer(submitter: submitter)
        let client = try TestClient(to: address)
        var small: Int32 = 64 * 1024
        setsockopt(client.fd, SOL_SOCKET, SO_SNDBUF, &small, socklen_t(MemoryLayout<Int32>.size))
        _ = try client.readReply()
        try client.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n")
        _ = try client.readReplies(4)
        try client.send("x\r\n.\r\n")
        try await Task.sleep(for: .milliseconds(100))  // the message is now with the submitter
        _ = fcntl(client.fd, F_SETFL, fcntl(client.fd, F_GETFL) | O_NONBLOCK)
        let noops = [UInt8](String(repeating: "NOOP\r\n", count: 64 * 1024 / 6).utf8)
        let accepted = flood(for: 1.0, noops) { chunk in
            max(0, chunk.withUnsafeBytes { send(client.fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) })
        }
        // Measured: 256 KiB with back-pressure (socket buffers), about 20 MiB without it.
        #expect(accepted < 4 << 20, "the server kept reading during the submission: \(accepted) octets taken")
        await Self.stop(server)
    }

    @Test func clientOutsideAllowedNetworks_gets554AtConnect() async throws {
        let (server, address) = try Self.startServer { $0.allowedNetworks = [IPNetwork("192.0.2.0/24")!] }
        let client = try TestClient(to: address)
        let reply = try client.readReply()
        #expect(reply.code == 554)
        #expect(reply.enhancedCode == "5.7.1")
        #expect(client.isClosedByServer())
        await Self.stop(server)
    }

    @Test func perClientConnectionLimit_gets421() async throws {
        let (server, address) = try Self.startServer {
            $0.maxConnectionsPerClient = 2
            $0.connectionLimitExceptions = []
        }
        let first = try TestClient(to: address)
        let second = try TestClient(to: address)
        #expect(try first.readReply().code == 220)
        #expect(try second.readReply().code == 220)
        let third = try TestClient(to: address)
        let reply = try third.readReply()
        #expect(reply.code == 421)
        #expect(reply.enhancedCode == "4.7.0")
        await Self.stop(server)
    }

    /// Every local application shares 127.0.0.1, so by default the per-client limit spares loopback (Postfix
    /// `smtpd_client_connection_limit_exceptions = $mynetworks`); the global limit still applies to it.
    @Test func perClientConnectionLimit_sparesLoopbackByDefault_butTheGlobalLimitHolds() async throws {
        let (server, address) = try Self.startServer {
            $0.maxConnectionsPerClient = 2
            $0.maxConnections = 4
        }
        var clients: [TestClient] = []
        for _ in 0..<4 {
            let client = try TestClient(to: address)
            #expect(try client.readReply().code == 220)
            clients.append(client)
        }
        let extra = try TestClient(to: address)
        #expect(try extra.readReply().code == 421)
        #expect(SMTPServerConfiguration().connectionLimitExceptions == IPNetwork.loopback)
        await Self.stop(server)
    }

    @Test func globalConnectionLimit_gets421() async throws {
        let (server, address) = try Self.startServer { $0.maxConnections = 1 }
        let first = try TestClient(to: address)
        #expect(try first.readReply().code == 220)
        let second = try TestClient(to: address)
        #expect(try second.readReply().code == 421)
        await Self.stop(server)
    }

    // The timeout tests move an injected clock instead of sleeping: the defaults (5 min, 3 min, 500 octets/s after
    // 30 s) apply unchanged, and each check runs at a known moment.

    @Test func idleClient_isClosedWith421AfterTheCommandTimeout() async throws {
        let time = ManualClock()
        let (server, address) = try Self.startServer(clock: time.clock)
        let client = try TestClient(to: address)
        _ = try client.readReply()
        try client.send("EHLO c\r\nNOOP")  // an incomplete command does not extend the deadline
        #expect(try client.readReply().code == 250)
        time.advance(by: 299)
        server.checkTimeoutsNow()
        try client.send("\r\n")  // still open: the NOOP is answered, and its reply starts a new 5 minutes
        #expect(try client.readReply().code == 250)
        try client.send("NOOP")
        time.advance(by: 300)
        server.checkTimeoutsNow()
        let reply = try client.readReply()
        #expect(reply.code == 421)
        #expect(reply.enhancedCode == "4.4.2")
        #expect(client.isClosedByServer())
        await Self.stop(server)
    }

    @Test func clientStallingMidData_isClosed_andNothingIsSubmitted() async throws {
        let submitter = RecordingSubmitter()
        let time = ManualClock()
        let (server, address) = try Self.startServer(submitter: submitter, clock: time.clock)
        let client = try TestClient(to: address)
        _ = try client.readReply()
        // The start of the message goes with DATA, so it has been read once the 354 arrives.
        try client.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nSubject: half a message\r\n")
        #expect(try client.readReplies(4).map(\.code) == [250, 250, 250, 354])
        time.advance(by: 180)
        server.checkTimeoutsNow()
        let reply = try client.readReply()
        #expect(reply.code == 421)
        #expect(reply.enhancedCode == "4.4.2")
        #expect(client.isClosedByServer())
        #expect(submitter.messages.isEmpty)
        await Self.stop(server)
    }

    @Test func tricklingClient_isCutOffByTheMinimumDataRate() async throws {
        let submitter = RecordingSubmitter()
        let time = ManualClock()
        let (server, address) = try Self.startServer(submitter: submitter, clock: time.clock)
        let client = try TestClient(to: address)
        _ = try client.readReply()
        let trickle = String(repeating: "x", count: 100)
        try client.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n\(trickle)")
        #expect(try client.readReplies(4).map(\.code) == [250, 250, 250, 354])
        // 31 s after the start of the data, 100 octets: far below 500 octets/s once the 30 s grace is over,
        // although the data timeout (180 s of silence) is far away.
        time.advance(by: 31)
        server.checkTimeoutsNow()
        let reply = try client.readReply()
        #expect(reply.code == 421)
        #expect(client.isClosedByServer())
        #expect(submitter.messages.isEmpty)
        await Self.stop(server)
    }

    @Test func clientVanishingMidData_submitsNothing_andFreesTheConnection() async throws {
        let submitter = RecordingSubmitter()
        let (server, address) = try Self.startServer(submitter: submitter)
        do {
            let client = try TestClient(to: address)
            _ = try client.readReply()
            try client.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\npartial\r\n")
            _ = try client.readReplies(4)
        }
        for _ in 0..<50 where server.connectionCount > 0 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(server.connectionCount == 0)
        #expect(submitter.messages.isEmpty)
        await Self.stop(server)
    }

    @Test func shutdown_closesIdleSessionsWith421_andWaitsForOpenTransactions() async throws {
        let submitter = RecordingSubmitter(delay: 0.3)
        let (server, address) = try Self.startServer(submitter: submitter)
        let idle = try TestClient(to: address)
        let busy = try TestClient(to: address)
        _ = try idle.readReply()
        _ = try busy.readReply()
        try busy.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n")
        _ = try busy.readReplies(4)
        try busy.send("x\r\n.\r\n")
        try await Task.sleep(for: .milliseconds(50))  // the message is now with the submitter
        let stopped = Task { await Self.stop(server) }
        let idleReply = try idle.readReply()
        #expect(idleReply.code == 421)
        #expect(idleReply.enhancedCode == "4.3.2")
        let busyReplies = try busy.readReplies(2)
        #expect(busyReplies.map(\.code) == [250, 421])  // the transaction finished, then the session closed
        await stopped.value
        #expect(submitter.messages.count == 1)
        #expect(throws: TestClient.Failure.self) { _ = try TestClient(to: address) }
    }

    @Test func statistics_countConnectionsAndRepliesToTheEndOfData() async throws {
        let (server, address) = try Self.startServer {
            $0.maxConnectionsPerClient = 1
            $0.connectionLimitExceptions = []
        }
        let client = try TestClient(to: address)
        #expect(try client.readReply().code == 220)
        let refused = try TestClient(to: address)
        #expect(try refused.readReply().code == 421)
        try client.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n")
        _ = try client.readReplies(4)
        try client.send("x\r\n.\r\n")
        #expect(try client.readReply().code == 250)
        var snapshot = server.statistics.snapshot
        #expect(snapshot.openConnections == 1)
        #expect(snapshot.connectionsAdmitted == 1)
        #expect(snapshot.connectionsRefused == 1)
        #expect(snapshot.messagesAccepted == 1)
        #expect(snapshot.messagesDeferred == 0 && snapshot.messagesRejected == 0)
        try client.send("QUIT\r\n")
        _ = try client.readReply()
        for _ in 0..<50 where server.statistics.snapshot.openConnections > 0 {
            try await Task.sleep(for: .milliseconds(20))
        }
        snapshot = server.statistics.snapshot
        #expect(snapshot.openConnections == 0)
        await Self.stop(server)
    }

    @Test func deferredAndRejectedMessages_areCountedApart() async throws {
        let deferring = RecordingSubmitter(reply: SMTPReply(451, EnhancedStatusCode(4, 3, 0), "later"))
        let (server, address) = try Self.startServer(submitter: deferring)
        let client = try TestClient(to: address)
        _ = try client.readReply()
        try client.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\n")
        #expect(try client.readReplies(5).map(\.code) == [250, 250, 250, 354, 451])
        #expect(server.statistics.snapshot.messagesDeferred == 1)
        await Self.stop(server)

        let rejecting = RecordingSubmitter(reply: SMTPReply(554, EnhancedStatusCode(5, 6, 0), "no"))
        let (server2, address2) = try Self.startServer(submitter: rejecting)
        let client2 = try TestClient(to: address2)
        _ = try client2.readReply()
        try client2.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\n")
        #expect(try client2.readReplies(5).map(\.code) == [250, 250, 250, 354, 554])
        #expect(server2.statistics.snapshot.messagesRejected == 1)
        #expect(server2.statistics.snapshot.messagesAccepted == 0)
        await Self.stop(server2)
    }

    @Test func listensOnIPv6Loopback() async throws {
        guard let v6 = SocketAddress(ip: "::1", port: 0) else { return }
        let (server, address): (SMTPServer, SocketAddress)
        do {
            (server, address) = try Self.startServer { $0.listenAddresses = [v6] }
        } catch {
            return  // no IPv6 on this machine: nothing to test
        }
        let client = try TestClient(to: address)
        #expect(try client.readReply().code == 220)
        await Self.stop(server)
    }

    @Test func bindingAnAddressInUse_failsWithAClearError() throws {
        let (server, address) = try Self.startServer()
        #expect(throws: SMTPServerError.self) {
            _ = try Self.startServer { $0.listenAddresses = [address] }
        }
        _ = server
    }
}
