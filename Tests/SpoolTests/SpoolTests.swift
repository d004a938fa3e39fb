import Foundation
import Glibc
import Testing

@testable import Spool

/// The spool's files, locks and crash recovery, on a real directory.
@Suite struct SpoolTests {
    let directory: String

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("spool-\(UUID().uuidString)").path
    }

    private func record(_ id: String, size: Int = 5) -> SpoolRecord {
        SpoolRecord(
            id: id, operationID: id, receivedAt: Date(timeIntervalSince1970: 1_800_000_000),
            envelope: SpoolEnvelope(
                mailFrom: "app@example.com", rcptTo: ["a@example.net"], parameters: ["SMTPUTF8": nil]),
            client: SpoolClient(address: "127.0.0.1", helo: "app", sessionID: "s1", transfer: "DATA"),
            size: size, nextAttemptAt: Date(timeIntervalSince1970: 1_800_000_000))
    }

    static let id1 = "0192f0c4-0000-7000-8000-000000000001"
    static let id2 = "0192f0c4-0000-7000-8000-000000000002"

    @Test func add_writesMessageAndRecord_readableByAPerson() throws {
        let spool = try Spool(directory: directory)
        try spool.add(record(Self.id1), message: Array("hello".utf8))
        #expect(try spool.message(id: Self.id1) == Array("hello".utf8))
        let text = try String(contentsOfFile: "\(directory)/queue/\(Self.id1).json", encoding: .utf8)
        #expect(text.contains("\"operationId\" : \"\(Self.id1)\""))
        #expect(text.contains("\"state\" : \"queued\""))
        #expect(try spool.record(id: Self.id1) == record(Self.id1))
        #expect(spool.ids() == [Self.id1])
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(directory)/tmp").isEmpty)
    }

    @Test func add_refusesADuplicateId_andIdsThatAreNotIds() throws {
        let spool = try Spool(directory: directory)
        try spool.add(record(Self.id1), message: [1])
        #expect(throws: SpoolError.self) { try spool.add(record(Self.id1), message: [2]) }
        #expect(try spool.message(id: Self.id1) == [1])
        #expect(throws: SpoolError.self) { try spool.add(record("../../etc/passwd"), message: [1]) }
        #expect(throws: SpoolError.self) { try spool.record(id: "../x") }
    }

    @Test func messageLock_excludesASecondHolder_untilUnlocked() throws {
        let spool = try Spool(directory: directory)
        try spool.add(record(Self.id1), message: [1])
        let first = try #require(try spool.lock(id: Self.id1, wait: false))
        #expect(try spool.lock(id: Self.id1, wait: false) == nil)
        #expect(throws: SpoolError.self) { try spool.lock(id: Self.id1, wait: true, timeout: 0.1) }
        first.unlock()
        #expect(try spool.lock(id: Self.id1, wait: false) != nil)
    }

    @Test func lockWaiter_seesTheChangeTheHolderWrote_andAGoneMessageAsNil() throws {
        let spool = try Spool(directory: directory)
        try spool.add(record(Self.id1), message: [1])
        let holder = try #require(try spool.lock(id: Self.id1, wait: false))
        let done = DispatchSemaphore(value: 0)
        DispatchQueue.global().asyncAfter(deadline: .now() + 0.2) {
            var changed = try! holder.read()!
            changed.state = .accepted
            try! holder.write(changed)
            holder.unlock()
            done.signal()
        }
        let waiter = try #require(try spool.lock(id: Self.id1, wait: true, timeout: 5))
        #expect(try waiter.read()?.state == .accepted)  // no lost update: it reads after the holder wrote
        try waiter.remove()
        waiter.unlock()
        done.wait()
        #expect(try spool.lock(id: Self.id1, wait: false) == nil)
        #expect(spool.ids().isEmpty)
    }

    @Test func moveToFailed_keepsBothFilesForInspection() throws {
        let spool = try Spool(directory: directory)
        try spool.add(record(Self.id1), message: [1, 2])
        let lock = try #require(try spool.lock(id: Self.id1, wait: false))
        var failed = try #require(try lock.read())
        failed.state = .failed
        try lock.moveToFailed(failed)
        #expect(spool.ids().isEmpty)
        #expect(spool.failedIDs() == [Self.id1])
        #expect(try spool.record(id: Self.id1, failed: true)?.state == .failed)
        #expect(try spool.message(id: Self.id1, failed: true) == [1, 2])
        try spool.deleteFailed(id: Self.id1)
        #expect(spool.failedIDs().isEmpty)
    }

    @Test func recovery_removesHalfWrittenFiles_butKeepsCompleteMessages() throws {
        let spool = try Spool(directory: directory)
        try spool.add(record(Self.id1), message: [1])
        // A crash between the two files of a new message: its .eml has no record (no 250 was given).
        _ = FileManager.default.createFile(atPath: "\(directory)/queue/\(Self.id2).eml", contents: Data([9]))
        _ = FileManager.default.createFile(atPath: "\(directory)/tmp/\(Self.id2).json.123", contents: Data([9]))
        #expect(spool.recoverAfterCrash() == [Self.id2])
        #expect(spool.ids() == [Self.id1])
        #expect(try spool.message(id: Self.id1) == [1])
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(directory)/tmp").isEmpty)
    }

    @Test func recovery_removesARecordWhoseMessageIsMissing() throws {
        let spool = try Spool(directory: directory)
        try spool.add(record(Self.id1), message: [1])
        // A crash inside a commit round: the message's two renames share one directory flush, so its record
        // may survive without its .eml. Its client never got a 250.
        _ = FileManager.default.createFile(
            atPath: "\(directory)/queue/\(Self.id2).json", contents: Data(try record(Self.id2).encoded()))
        #expect(spool.recoverAfterCrash() == [Self.id2])
        #expect(Spool.messageCount(in: directory) == 1)
        #expect(try spool.record(id: Self.id1) == record(Self.id1))
    }

    @Test func daemonLock_allowsOneDaemonPerSpool_andNamesIt() throws {
        let spool = try Spool(directory: directory)
        #expect(spool.daemonPID() == nil)
        let held = try spool.lockForDelivery()
        #expect(throws: SpoolError.self) { try Spool(directory: directory).lockForDelivery() }
        #expect(spool.daemonPID() == getpid())
        withExtendedLifetime(held) {}
    }

    @Test func openingWithoutCreate_failsOnAMissingSpool() {
        #expect(throws: SpoolError.self) { try Spool(directory: directory + "/missing", create: false) }
        #expect(!Spool.hasMessages(in: directory + "/missing"))
    }
}
