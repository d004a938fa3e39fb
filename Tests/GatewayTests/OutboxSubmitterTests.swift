import ACSEmail
import Foundation
import Logging
import SMTPProtocol
import SMTPServer
import Testing

@testable import Gateway

@Suite struct OutboxSubmitterTests {
    private func temporaryDirectory() -> String {
        let path = NSTemporaryDirectory() + "outbox-test-\(UUID().uuidString)"
        return path
    }

    private func message(data: String = "Subject: x\r\n\r\nbody\r\n") -> ReceivedMessage {
        let envelope = Envelope(
            reversePath: .null,
            mailParameters: ESMTPParameters([("SIZE", "20"), ("SMTPUTF8", nil)]),
            forwardPaths: [.mailbox(Mailbox(localPart: "b", domain: "x.org")), .postmaster])
        return ReceivedMessage(
            id: Identifiers.messageID(), receivedAt: Date(timeIntervalSince1970: 1_800_000_000.25),
            envelope: envelope, data: Array(data.utf8),
            session: SessionInfo(
                sessionID: "s1", clientAddress: SocketAddress(ip: "127.0.0.1", port: 4000)!, heloName: "client.example",
                transfer: "DATA"))
    }

    private func submit(_ submitter: OutboxSubmitter, _ message: ReceivedMessage) async -> SMTPReply {
        await withCheckedContinuation { continuation in
            submitter.submit(message) { continuation.resume(returning: $0.reply) }
        }
    }

    @Test func writesTheMessageAndItsRecord_thenReplies250WithTheID() async throws {
        let directory = temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let submitter = try OutboxSubmitter(directory: directory, logger: Logger(label: "test"))
        let message = message()
        let reply = await submit(submitter, message)
        #expect(reply.code == 250)
        #expect(reply.lines == ["OK \(message.id)"])
        let eml = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(message.id).eml"))
        #expect(Array(eml) == message.data)
        let json = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(message.id).json"))
        let record = try #require(try JSONSerialization.jsonObject(with: json) as? [String: Any])
        #expect(record["id"] as? String == message.id)
        #expect(record["receivedAt"] as? String == "2027-01-15T08:00:00.250Z")
        let client = try #require(record["client"] as? [String: Any])
        #expect(client["address"] as? String == "127.0.0.1")
        #expect(client["helo"] as? String == "client.example")
        let envelope = try #require(record["envelope"] as? [String: Any])
        #expect(envelope["mailFrom"] as? String == "")
        #expect(envelope["rcptTo"] as? [String] == ["b@x.org", "postmaster"])
        let parameters = try #require(envelope["parameters"] as? [String: Any])
        #expect(parameters["SIZE"] as? String == "20")
        #expect(parameters["SMTPUTF8"] as? Bool == true)
        // No temporary files are left behind.
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
        #expect(Set(names) == ["\(message.id).eml", "\(message.id).json"])
    }

    @Test func createsAMissingDirectory() throws {
        let directory = temporaryDirectory() + "/nested/outbox"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        _ = try OutboxSubmitter(directory: directory, logger: Logger(label: "test"))
        var isDirectory: ObjCBool = false
        #expect(FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) && isDirectory.boolValue)
    }

    @Test func unwritableDirectory_isRefusedAtStartup() {
        #expect(throws: (any Error).self) {
            _ = try OutboxSubmitter(directory: "/proc/outbox-cannot-exist", logger: Logger(label: "test"))
        }
    }

    @Test func failureToWrite_answers451_soTheClientKeepsTheMessage() async throws {
        let directory = temporaryDirectory()
        var quiet = Logger(label: "test")
        quiet.logLevel = .critical
        let submitter = try OutboxSubmitter(directory: directory, logger: quiet)
        try FileManager.default.removeItem(atPath: directory)  // the disk "goes away"
        let reply = await submit(submitter, message())
        #expect(reply.code == 451)
        #expect(reply.enhancedCode == EnhancedStatusCode(4, 3, 0))
    }
}

@Suite struct OutboxTranslationTests {
    private func message(_ text: String, from: String = "a@example.com") -> ReceivedMessage {
        ReceivedMessage(
            id: Identifiers.messageID(), receivedAt: Date(),
            envelope: SMTPProtocol.Envelope(
                reversePath: from.isEmpty ? .null : .mailbox(Mailbox(localPart: "a", domain: "example.com")),
                forwardPaths: [.mailbox(Mailbox(localPart: "b", domain: "example.net"))]),
            data: Array(text.utf8),
            session: SessionInfo(
                sessionID: "s", clientAddress: SocketAddress(ip: "127.0.0.1", port: 1)!, heloName: "c", transfer: "DATA"
            ))
    }

    private func submit(_ submitter: OutboxSubmitter, _ message: ReceivedMessage) async -> SMTPReply {
        await withCheckedContinuation { continuation in
            submitter.submit(message) { continuation.resume(returning: $0.reply) }
        }
    }

    private func quietLogger() -> Logger {
        var logger = Logger(label: "test")
        logger.logLevel = .critical
        return logger
    }

    @Test func recordCarriesTheExactRequestBytes() async throws {
        let directory = NSTemporaryDirectory() + "outbox-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var policy = TranslationPolicy()
        policy.verifiedDomains = ["example.com"]
        let translator = MessageTranslator(policy: policy)
        let submitter = try OutboxSubmitter(directory: directory, translator: translator, logger: quietLogger())
        let message = message("From: a@example.com\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n")
        #expect(await submit(submitter, message).code == 250)
        let raw = try String(contentsOfFile: "\(directory)/\(message.id).json", encoding: .utf8)
        let expected = try translator.translate(message, logger: quietLogger()).get().requestBody
        #expect(raw.contains("\"acsRequest\" : " + String(decoding: expected, as: UTF8.self) + "\n}"))
        let record = try #require(try JSONSerialization.jsonObject(with: Data(raw.utf8)) as? [String: Any])
        #expect((record["acsRequest"] as? [String: Any])?["senderAddress"] as? String == "a@example.com")
    }

    @Test func strictDryRun_refusesWithTheTranslationsReply_andWritesNothing() async throws {
        let directory = NSTemporaryDirectory() + "outbox-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var policy = TranslationPolicy()
        policy.verifiedDomains = ["verified.example"]
        let submitter = try OutboxSubmitter(
            directory: directory, translator: MessageTranslator(policy: policy), logger: quietLogger())
        let reply = await submit(submitter, message("From: a@example.com\r\nSubject: hi\r\n\r\nbody\r\n"))
        #expect(reply.code == 550)
        #expect(reply.enhancedCode == EnhancedStatusCode(5, 7, 1))
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).isEmpty)
    }

    @Test func captureEverything_storesTheMessageWithTheRefusal() async throws {
        let directory = NSTemporaryDirectory() + "outbox-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var policy = TranslationPolicy()
        policy.verifiedDomains = ["*"]
        let submitter = try OutboxSubmitter(
            directory: directory, translator: MessageTranslator(policy: policy), refuseUntranslatable: false,
            logger: quietLogger())
        let message = message("Subject: bounce\r\n\r\nbody\r\n", from: "")
        #expect(await submit(submitter, message).code == 250)
        let data = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(message.id).json"))
        let record = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        #expect((record["acsRejection"] as? String)?.hasPrefix("550 5.7.1") == true)
        #expect(record["acsRequest"] == nil)
    }
}
