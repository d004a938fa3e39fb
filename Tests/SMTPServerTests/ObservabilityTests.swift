import Foundation
import Logging
import Prometheus
import SMTPProtocol
import Testing

@testable import SMTPServer

/// Captures log events with the logger's metadata merged in, as the real handler would print them.
final class CapturedLog: @unchecked Sendable {
    struct Event {
        var level: Logger.Level
        var message: String
        var metadata: [String: String]
    }

    private let lock = NSLock()
    private var stored: [Event] = []

    var events: [Event] { lock.withLock { stored } }

    func append(_ event: Event) { lock.withLock { stored.append(event) } }

    /// The audit lines (`msg=message`).
    var auditLines: [Event] { events.filter { $0.message == "message" } }

    func logger(level: Logger.Level) -> Logger {
        var logger = Logger(label: "test") { _ in Handler(log: self) }
        logger.logLevel = level
        return logger
    }

    private struct Handler: LogHandler {
        let log: CapturedLog
        var logLevel: Logger.Level = .trace
        var metadata: Logger.Metadata = [:]

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            var merged = metadata
            if let extra = event.metadata { merged.merge(extra) { _, new in new } }
            log.append(
                Event(
                    level: event.level, message: "\(event.message)", metadata: merged.mapValues { "\($0)" }))
        }
    }
}

/// Answers with a fixed result, optionally after a delay.
final class AnnotatingSubmitter: MessageSubmitter, @unchecked Sendable {
    let result: SubmissionResult
    let delay: Double

    init(_ result: SubmissionResult, delay: Double = 0) {
        self.result = result
        self.delay = delay
    }

    func submit(_ message: ReceivedMessage, completion: @escaping @Sendable (SubmissionResult) -> Void) {
        let result = self.result
        DispatchQueue.global().asyncAfter(deadline: .now() + delay) { completion(result) }
    }
}

/// Holds the submission until the test releases it.
final class GatedSubmitter: MessageSubmitter, @unchecked Sendable {
    private let lock = NSLock()
    private var held: (@Sendable (SubmissionResult) -> Void)?

    var isHolding: Bool { lock.withLock { held != nil } }

    func submit(_ message: ReceivedMessage, completion: @escaping @Sendable (SubmissionResult) -> Void) {
        lock.withLock { held = completion }
    }

    func release(_ result: SubmissionResult) {
        let completion = lock.withLock {
            defer { held = nil }
            return held
        }
        completion?(result)
    }
}

/// The audit line and the metrics of the SMTP server, over real loopback sockets with a private Prometheus
/// registry (no global bootstrap, so suites cannot disturb each other).
@Suite(.serialized) struct ObservabilityTests {
    static let accepted = SubmissionResult(
        reply: .messageAccepted("OK queued as op-1"), reason: SubmissionReason("acs_accepted"),
        auditFields: [
            AuditField("acs.operation_id", "op-1"), AuditField("acs.status", "Running"),
            AuditField("acs.request_id", "req-9"), AuditField("acs.attempts", "1"),
        ])

    static let message =
        "Subject: Quarterly\r\n report\r\nmessage-id:\r\n  <folded.1@client.example>\r\nX-Other: y\r\n\r\n"
        + "body-secret\r\n"

    private struct Running {
        var server: SMTPServer
        var address: SocketAddress
        var registry: PrometheusCollectorRegistry
        var log: CapturedLog
    }

    private func start(
        _ submitter: MessageSubmitter, level: Logger.Level = .info,
        configure: (inout SMTPServerConfiguration) -> Void = { _ in }
    ) throws -> Running {
        var configuration = SMTPServerConfiguration()
        configuration.listenAddresses = [SocketAddress(ip: "127.0.0.1", port: 0)!]
        configure(&configuration)
        let registry = PrometheusCollectorRegistry()
        let log = CapturedLog()
        let server = SMTPServer(
            configuration: configuration, submitter: submitter, logger: log.logger(level: level),
            metrics: SMTPServerMetrics(factory: PrometheusMetricsFactory(registry: registry)))
        let address = try server.start()[0]
        return Running(server: server, address: address, registry: registry, log: log)
    }

    private func stop(_ running: Running) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            running.server.shutdown { continuation.resume() }
        }
    }

    private func sendMessage(_ client: TestClient, _ data: String, recipients: Int = 1) throws -> TestClient.Reply {
        _ = try client.readReply()
        let rcpts = (0..<recipients).map { "RCPT TO:<r\($0)@e.f>\r\n" }.joined()
        try client.send("EHLO c.example\r\nMAIL FROM:<a@b.c>\r\n\(rcpts)DATA\r\n")
        _ = try client.readReplies(3 + recipients)
        try client.send(data + ".\r\n")
        return try client.readReply()
    }

    private func samples(_ registry: PrometheusCollectorRegistry) -> [String: Double] {
        var samples: [String: Double] = [:]
        for line in registry.emitToString().split(separator: "\n") where !line.hasPrefix("#") {
            guard let space = line.lastIndex(of: " "), let value = Double(line[line.index(after: space)...]) else {
                continue
            }
            samples[String(line[..<space])] = value
        }
        return samples
    }

    private func waitForAudit(_ log: CapturedLog, count: Int = 1) async throws {
        for _ in 0..<100 where log.auditLines.count < count { try await Task.sleep(for: .milliseconds(10)) }
    }

    @Test func anAcceptedMessage_getsOneAuditLineWithEveryField_andIsCounted() async throws {
        let running = try start(AnnotatingSubmitter(Self.accepted))
        let client = try TestClient(to: running.address)
        #expect(try sendMessage(client, Self.message, recipients: 2).code == 250)
        try await waitForAudit(running.log)
        let line = try #require(running.log.auditLines.first)
        #expect(running.log.auditLines.count == 1)
        #expect(line.level == .info)
        let fields = line.metadata
        #expect(fields["smtp.session"]?.count == 12)
        #expect(fields["smtp.client"]?.hasPrefix("127.0.0.1:") == true)
        #expect(fields["smtp.mail_from"] == "<a@b.c>")
        #expect(fields["smtp.rcpt_count"] == "2")
        #expect(fields["smtp.size"] == "\(Self.message.utf8.count)")
        #expect(fields["smtp.transfer"] == "DATA")
        #expect(fields["smtp.message_id"]?.count == 36)
        #expect(fields["mail.message_id"] == "<folded.1@client.example>")
        #expect(fields["acs.operation_id"] == "op-1")
        #expect(fields["acs.status"] == "Running")
        #expect(fields["acs.request_id"] == "req-9")
        #expect(fields["acs.attempts"] == "1")
        #expect(fields["smtp.reply"] == "250 2.0.0 OK queued as op-1")
        #expect(fields["reason"] == "acs_accepted")
        #expect(Int(fields["duration_ms"] ?? "") != nil)
        #expect(fields["mail.subject"] == nil)  // info level: no subject
        #expect(!running.log.events.contains { $0.metadata.values.contains { $0.contains("body-secret") } })

        let values = samples(running.registry)
        #expect(values[#"acsgw_smtp_messages_total{outcome="accepted",reply_class="2xx",reason="acs_accepted"}"#] == 1)
        #expect(values[#"acsgw_smtp_transaction_duration_seconds_count{outcome="accepted"}"#] == 1)
        #expect(values["acsgw_smtp_connections_opened_total"] == 1)
        #expect(values["acsgw_smtp_connections_open"] == 1)
        #expect(values["acsgw_smtp_submissions_in_flight"] == 0)
        try client.send("QUIT\r\n")
        _ = try client.readReply()
        for _ in 0..<100 where samples(running.registry)["acsgw_smtp_connections_open"] != 0 {
            try await Task.sleep(for: .milliseconds(10))
        }
        #expect(samples(running.registry)["acsgw_smtp_connections_open"] == 0)
        await stop(running)
    }

    @Test func atDebugLevel_theAuditLineNamesTheSubject_unfolded() async throws {
        let running = try start(AnnotatingSubmitter(Self.accepted), level: .debug)
        let client = try TestClient(to: running.address)
        #expect(try sendMessage(client, Self.message).code == 250)
        try await waitForAudit(running.log)
        #expect(running.log.auditLines.first?.metadata["mail.subject"] == "Quarterly report")
        await stop(running)
    }

    @Test func whileTheSubmitterWorks_theInFlightGaugeIsOne() async throws {
        let submitter = GatedSubmitter()
        let running = try start(submitter)
        let client = try TestClient(to: running.address)
        _ = try client.readReply()
        try client.send("EHLO c\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\n")
        _ = try client.readReplies(4)
        for _ in 0..<200 where !submitter.isHolding { try await Task.sleep(for: .milliseconds(10)) }
        #expect(samples(running.registry)["acsgw_smtp_submissions_in_flight"] == 1)
        submitter.release(Self.accepted)
        #expect(try client.readReply().code == 250)
        #expect(samples(running.registry)["acsgw_smtp_submissions_in_flight"] == 0)
        await stop(running)
    }

    @Test func aMessageOverTheSizeLimit_isAuditedAndCountedAsRejected() async throws {
        let running = try start(AnnotatingSubmitter(Self.accepted)) { $0.limits.maxMessageSize = 100 }
        let client = try TestClient(to: running.address)
        let reply = try sendMessage(client, "Message-ID: <big@x>\r\n\r\n" + String(repeating: "y", count: 300) + "\r\n")
        #expect(reply.code == 552)
        try await waitForAudit(running.log)
        let line = try #require(running.log.auditLines.first)
        #expect(line.level == .notice)
        #expect(line.metadata["reason"] == "too_large")
        #expect(line.metadata["smtp.reply"]?.hasPrefix("552 5.3.4") == true)
        #expect(line.metadata["acs.operation_id"] == nil)
        let values = samples(running.registry)
        #expect(values[#"acsgw_smtp_messages_total{outcome="rejected",reply_class="5xx",reason="too_large"}"#] == 1)
        await stop(running)
    }

    @Test func aBdatMessageOverTheSizeLimit_isAuditedOnceAndCounted_likeOverDATA() async throws {
        let running = try start(AnnotatingSubmitter(Self.accepted)) { $0.limits.maxMessageSize = 100 }
        let client = try TestClient(to: running.address)
        _ = try client.readReply()
        try client.send("EHLO c.example\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<r@e.f>\r\n")
        _ = try client.readReplies(3)
        try client.send("BDAT 60\r\n" + String(repeating: "x", count: 60))
        #expect(try client.readReply().code == 250)
        // Over the limit at LAST; the client then sends more chunks of the failed transaction.
        try client.send("BDAT 60 LAST\r\n" + String(repeating: "y", count: 60) + "BDAT 5 LAST\r\nzzzzz")
        let replies = try client.readReplies(2)
        #expect(replies.map(\.code) == [552, 503])
        try await waitForAudit(running.log)
        try await Task.sleep(for: .milliseconds(100))
        #expect(running.log.auditLines.count == 1)
        let line = try #require(running.log.auditLines.first)
        #expect(line.level == .notice)
        #expect(line.metadata["reason"] == "too_large")
        #expect(line.metadata["smtp.transfer"] == "BDAT")
        #expect(line.metadata["smtp.size"] == "120")
        #expect(line.metadata["smtp.rcpt_count"] == "1")
        #expect(line.metadata["smtp.reply"]?.hasPrefix("552 5.3.4") == true)
        let values = samples(running.registry)
        #expect(values[#"acsgw_smtp_messages_total{outcome="rejected",reply_class="5xx",reason="too_large"}"#] == 1)
        #expect(running.server.statistics.snapshot.messagesRejected == 1)
        await stop(running)
    }

    @Test func aSubmissionTimeout_isAuditedAsDeferred_andTheLateOutcomeIsLogged() async throws {
        let running = try start(AnnotatingSubmitter(Self.accepted, delay: 0.6)) { $0.timeouts.submission = 0.2 }
        let client = try TestClient(to: running.address)
        let reply = try sendMessage(client, "Message-ID: <slow@x>\r\n\r\nz\r\n")
        #expect(reply.code == 451)
        try await waitForAudit(running.log)
        let line = try #require(running.log.auditLines.first)
        #expect(line.metadata["reason"] == "submission_timeout")
        #expect(line.metadata["mail.message_id"] == "<slow@x>")
        let values = samples(running.registry)
        let series = #"acsgw_smtp_messages_total{outcome="deferred",reply_class="4xx",reason="submission_timeout"}"#
        #expect(values[series] == 1)
        #expect(values["acsgw_smtp_submissions_in_flight"] == 0)
        let isLate = { (event: CapturedLog.Event) in event.message.hasPrefix("delivery answered after") }
        for _ in 0..<300 where !running.log.events.contains(where: isLate) {
            try await Task.sleep(for: .milliseconds(10))
        }
        let late = try #require(running.log.events.first(where: isLate))
        #expect(late.level == .warning)  // 2xx after a 451: the client may send it again
        #expect(late.metadata["smtp.message_id"] == line.metadata["smtp.message_id"])
        #expect(running.log.auditLines.count == 1)
        await stop(running)
    }

    @Test func refusedConnections_areCountedByReason() async throws {
        let running = try start(AnnotatingSubmitter(Self.accepted)) {
            $0.maxConnectionsPerClient = 1
            $0.connectionLimitExceptions = []
        }
        let first = try TestClient(to: running.address)
        #expect(try first.readReply().code == 220)
        let second = try TestClient(to: running.address)
        #expect(try second.readReply().code == 421)
        let values = samples(running.registry)
        #expect(values[#"acsgw_smtp_connections_refused_total{reason="client_limit"}"#] == 1)
        #expect(values["acsgw_smtp_connections_opened_total"] == 1)
        await stop(running)
    }

    /// Accepts `printer` / `pw` as the user `printer`, who may send as anyone; rejects everything else.
    struct StubAuthenticator: SMTPAuthenticator {
        func authenticate(
            _ credentials: SASLCredentials, client: SocketAddress,
            completion: @escaping @Sendable (AuthenticationResult) -> Void
        ) {
            let valid = credentials.username == "printer" && credentials.password == Array("pw".utf8)
            completion(
                valid
                    ? AuthenticationResult(outcome: .accepted(AuthenticatedUser(name: "printer", senders: [.any])))
                    : AuthenticationResult(
                        outcome: .rejected, failures: 1, knownUser: credentials.username == "printer"))
        }
    }

    @Test func anAuthenticatedUser_isNamedInTheAuditLine_andCountedByUser() async throws {
        let running = try start(AnnotatingSubmitter(Self.accepted)) {
            $0.listeners = [SMTPListener(address: SocketAddress(ip: "127.0.0.1", port: 0)!, auth: .required)]
            $0.authenticator = StubAuthenticator()
        }
        let client = try TestClient(to: running.address)
        _ = try client.readReply()
        let wrong = SASLBase64.encode(Array("\0printer\0nope".utf8))
        let right = SASLBase64.encode(Array("\0printer\0pw".utf8))
        try client.send("EHLO c\r\nAUTH PLAIN \(wrong)\r\nAUTH PLAIN \(right)\r\n")
        #expect(try client.readReplies(3).map(\.code) == [250, 535, 235])
        try client.send("MAIL FROM:<a@b.c>\r\nRCPT TO:<r@e.f>\r\nDATA\r\n")
        _ = try client.readReplies(3)
        try client.send("Subject: scan\r\n\r\nx\r\n.\r\n")
        #expect(try client.readReply().code == 250)
        try await waitForAudit(running.log)
        let line = try #require(running.log.auditLines.first)
        #expect(line.metadata["smtp.auth_user"] == "printer")
        #expect(line.metadata["smtp.tls"] == "none")
        let failed = try #require(running.log.events.first { $0.message == "authentication failed" })
        #expect(failed.metadata["auth.client_ip"] == "127.0.0.1")
        #expect(failed.metadata["auth.user"] == "printer")
        #expect(failed.metadata["auth.failures"] == "1")
        #expect(
            !running.log.events.contains { $0.metadata.values.contains { $0.contains("nope") || $0.contains(wrong) } })
        let values = samples(running.registry)
        #expect(values[#"acsgw_smtp_user_messages_total{user="printer",outcome="accepted"}"#] == 1)
        #expect(values[#"acsgw_smtp_auth_attempts_total{mechanism="PLAIN",outcome="rejected"}"#] == 1)
        #expect(values[#"acsgw_smtp_auth_attempts_total{mechanism="PLAIN",outcome="accepted"}"#] == 1)
        await stop(running)
    }
}

/// The header scan behind `mail.message_id` and `mail.subject`.
@Suite struct HeaderScanTests {
    private func scan(_ text: String, _ names: Set<String> = ["message-id", "subject"]) -> [String: String] {
        HeaderScan.fields(names, in: Array(text.utf8))
    }

    @Test func findsFieldsCaseInsensitively_andUnfoldsThem() {
        let fields = scan("SUBJECT: a\r\n\tb\r\nMessage-Id:\r\n <x@y>\r\n\r\nbody\r\n")
        #expect(fields == ["subject": "a\tb", "message-id": "<x@y>"])
    }

    @Test func stopsAtTheEndOfTheHeader_soTheBodyIsNeverRead() {
        #expect(scan("From: a@b\r\n\r\nMessage-ID: <in-body@x>\r\n") == [:])
    }

    @Test func absentFields_areMissing_andTheFirstOccurrenceWins() {
        #expect(scan("From: a@b\r\n\r\n") == [:])
        #expect(scan("Message-ID: <1@x>\r\nMessage-ID: <2@x>\r\n\r\n")["message-id"] == "<1@x>")
    }

    @Test func bareLineFeeds_aHeaderWithoutBody_andGarbage_areHandled() {
        #expect(scan("Message-ID: <lf@x>\nSubject: s\n\nbody") == ["message-id": "<lf@x>", "subject": "s"])
        #expect(scan("Message-ID: <eof@x>") == ["message-id": "<eof@x>"])
        #expect(scan("  continuation first\r\nno colon here\r\n: empty name\r\n\r\n") == [:])
        #expect(HeaderScan.fields(["message-id"], in: [0xFF, 0xFE, 0x0A, 0x0A]) == [:])
    }

    @Test func longValues_areCut() {
        let long = String(repeating: "a", count: 5000)
        #expect(scan("Subject: \(long)\r\n\r\n")["subject"]?.count == HeaderScan.maxValueLength)
    }
}
