import Foundation
import Glibc
import Testing

@testable import Spool

/// Group commit: writers share rounds of flushes, and none hears "done" before the round that covers it.
@Suite struct SpoolCommitterTests {
    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("spool-\(UUID().uuidString)").path

    static func id(_ number: Int) -> String { String(format: "0192f0c4-0000-7000-8000-%012d", number) }

    static func record(_ number: Int) -> SpoolRecord {
        SpoolRecord(
            id: id(number), operationID: id(number), receivedAt: Date(timeIntervalSince1970: 1_800_000_000),
            envelope: SpoolEnvelope(mailFrom: "app@example.com", rcptTo: ["a@example.net"]),
            client: SpoolClient(address: "127.0.0.1", helo: "app", sessionID: "s1", transfer: "DATA"),
            size: 1, nextAttemptAt: Date(timeIntervalSince1970: 1_800_000_000))
    }

    /// What the committer's system calls did, in order; the first flush can be held at a gate so that writers
    /// pile up behind the first round.
    final class Recorder: @unchecked Sendable {
        private let lock = NSLock()
        private var log: [String] = []
        let entered = DispatchSemaphore(value: 0)
        let gate = DispatchSemaphore(value: 0)
        private var holdFirst: Bool
        /// A data flush of a path containing this fails with EIO.
        var failDataSyncOf: String?
        var failDirectorySyncs = 0
        var failFilesystemSync = false

        init(holdFirst: Bool) { self.holdFirst = holdFirst }

        var events: [String] { lock.withLock { log } }

        private func holdIfFirst() {
            let hold = lock.withLock {
                defer { holdFirst = false }
                return holdFirst
            }
            if hold {
                entered.signal()
                gate.wait()
            }
        }

        /// The system calls, recorded; rounds of at least `filesystemSyncFrom` files flush with one `syncfs`
        /// (never, by default: each file has its own flush).
        func calls(filesystemSyncFrom: Int = .max) -> SpoolCommitter.SystemCalls {
            var calls = SpoolCommitter.SystemCalls()
            calls.filesystemSyncFrom = filesystemSyncFrom
            let system = calls.syncFilesystem
            calls.syncFilesystem = { descriptor in
                self.holdIfFirst()
                if self.failFilesystemSync {
                    errno = EIO
                    return -1
                }
                self.lock.withLock { self.log.append("filesystem") }
                return system?(descriptor) ?? 0
            }
            calls.syncData = { descriptor, path in
                self.holdIfFirst()
                if let failing = self.failDataSyncOf, path.contains(failing) {
                    errno = EIO
                    return -1
                }
                self.lock.withLock { self.log.append("data \(path)") }
                return fdatasync(descriptor)
            }
            calls.syncDirectory = { descriptor, path in
                let fail = self.lock.withLock {
                    defer { self.failDirectorySyncs = max(0, self.failDirectorySyncs - 1) }
                    return self.failDirectorySyncs > 0
                }
                if fail {
                    errno = EIO
                    return -1
                }
                self.lock.withLock { self.log.append("directory \(path)") }
                return fsync(descriptor)
            }
            calls.rename = { from, to in
                let result = Glibc.rename(from, to)
                self.lock.withLock { self.log.append("rename \(to)") }
                return result
            }
            return calls
        }
    }

    /// Results handed to completions, checked on the test's thread.
    final class Outcomes: @unchecked Sendable {
        private let lock = NSLock()
        private var results: [Int: Result<Void, SpoolError>] = [:]
        private var coveredWhenAnswered: [Int: Bool] = [:]
        let group = DispatchGroup()

        func record(_ number: Int, _ result: Result<Void, SpoolError>, covered: Bool) {
            lock.withLock {
                results[number] = result
                coveredWhenAnswered[number] = covered
            }
            group.leave()
        }
        var count: Int { lock.withLock { results.count } }
        func result(_ number: Int) -> Result<Void, SpoolError>? { lock.withLock { results[number] } }
        func covered(_ number: Int) -> Bool { lock.withLock { coveredWhenAnswered[number] ?? false } }
    }

    /// Whether, in `events`, both files of message `number` were flushed (each on its own, or by a flush of
    /// the filesystem in the round that renamed them: the files were written before they were handed over)
    /// and renamed, and the queue directory was flushed after the last of those.
    static func isCovered(_ number: Int, in events: [String], queue: String) -> Bool {
        let id = id(number)
        guard let jsonRename = events.firstIndex(of: "rename \(queue)/\(id).json"),
            let emlRename = events.firstIndex(of: "rename \(queue)/\(id).eml")
        else { return false }
        let flushes: [Int]
        if let emlData = events.firstIndex(where: { $0.hasPrefix("data ") && $0.contains("\(id).eml.") }),
            let jsonData = events.firstIndex(where: { $0.hasPrefix("data ") && $0.contains("\(id).json.") })
        {
            flushes = [emlData, jsonData]
        } else if let filesystem = events[..<min(emlRename, jsonRename)].lastIndex(of: "filesystem"),
            !events[filesystem..<min(emlRename, jsonRename)].contains(where: { $0.hasPrefix("directory ") })
        {
            flushes = [filesystem]  // the round's own flush, not an earlier round's
        } else {
            return false
        }
        let last = (flushes + [jsonRename, emlRename]).max()!
        return events[(last + 1)...].contains("directory \(queue)")
    }

    private func add(
        _ spool: Spool, _ recorder: Recorder, _ outcomes: Outcomes, _ number: Int
    ) {
        outcomes.group.enter()
        let queue = spool.queueDirectory
        spool.add(Self.record(number), message: Array("message \(number)".utf8)) { result in
            outcomes.record(number, result, covered: Self.isCovered(number, in: recorder.events, queue: queue))
        }
    }

    @Test func writersArrivingDuringAFlush_shareTheNextRound_andEachHearsDoneOnlyOnceItIsCovered() throws {
        let recorder = Recorder(holdFirst: true)
        let spool = try Spool(directory: directory, create: true, calls: recorder.calls())
        let outcomes = Outcomes()
        add(spool, recorder, outcomes, 0)
        recorder.entered.wait()  // round 1 (message 0 alone) is flushing
        let writers = 40
        DispatchQueue.concurrentPerform(iterations: writers) { index in add(spool, recorder, outcomes, index + 1) }
        #expect(outcomes.count == 0)  // nobody is answered while its round has not even started
        recorder.gate.signal()
        #expect(outcomes.group.wait(timeout: .now() + 30) == .success)
        for number in 0...writers {
            guard case .success = outcomes.result(number) else {
                Issue.record("message \(number): \(String(describing: outcomes.result(number)))")
                continue
            }
            #expect(outcomes.covered(number), "message \(number) was answered before its files were durable")
            #expect(try spool.message(id: Self.id(number)) == Array("message \(number)".utf8))
            #expect(try spool.record(id: Self.id(number)) == Self.record(number))
        }
        spool.committer.waitUntilIdle()
        #expect(spool.committer.rounds == 2)  // 41 messages, two rounds: the one that was running and the next
        let directorySyncs = recorder.events.filter { $0.hasPrefix("directory ") }
        #expect(directorySyncs == ["directory \(spool.queueDirectory)", "directory \(spool.queueDirectory)"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(directory)/tmp").isEmpty)
    }

    @Test func aFailingDataFlush_failsEveryWriterOfItsRound_andLeavesNoneOfThemQueued() throws {
        let recorder = Recorder(holdFirst: true)
        recorder.failDataSyncOf = Self.id(3)
        let spool = try Spool(directory: directory, create: true, calls: recorder.calls())
        let outcomes = Outcomes()
        add(spool, recorder, outcomes, 0)
        recorder.entered.wait()
        for number in 1...5 { add(spool, recorder, outcomes, number) }
        recorder.gate.signal()
        #expect(outcomes.group.wait(timeout: .now() + 30) == .success)
        guard case .success = outcomes.result(0) else {
            Issue.record("the round before the failure is not affected")
            return
        }
        for number in 1...5 {
            guard case .failure(let error) = outcomes.result(number) else {
                Issue.record("message \(number) shared the failed round but was told it is queued")
                continue
            }
            #expect(error.description.contains("fdatasync"))
            #expect(error.description.contains(Self.id(3)))
            #expect(error.description.contains(String(cString: strerror(EIO))))
        }
        #expect(spool.ids() == [Self.id(0)])
        #expect(spool.recoverAfterCrash().isEmpty)  // nothing half-done was left behind
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(directory)/tmp").isEmpty)
        recorder.failDataSyncOf = nil
        try spool.add(Self.record(6), message: [6])  // the next round works again
        #expect(spool.ids() == [Self.id(0), Self.id(6)])
    }

    @Test func aFailingDirectoryFlush_failsTheRound_andRemovesTheMessagesItRenamed() throws {
        let recorder = Recorder(holdFirst: false)
        recorder.failDirectorySyncs = 1
        let spool = try Spool(directory: directory, create: true, calls: recorder.calls())
        #expect {
            try spool.add(Self.record(1), message: [1])
        } throws: { error in
            "\(error)".contains("fsync \(spool.queueDirectory)")
        }
        #expect(spool.ids().isEmpty)
        #expect(try spool.record(id: Self.id(1)) == nil)
        try spool.add(Self.record(2), message: [2])
        #expect(spool.ids() == [Self.id(2)])
    }

    @Test func aClosedSpool_commitsWhatWasHandedOver_andRefusesWhatComesAfter() throws {
        let recorder = Recorder(holdFirst: true)
        let spool = try Spool(directory: directory, create: true, calls: recorder.calls())
        let outcomes = Outcomes()
        add(spool, recorder, outcomes, 1)
        recorder.entered.wait()
        add(spool, recorder, outcomes, 2)  // waits for round 2
        spool.stopWriting()
        add(spool, recorder, outcomes, 3)
        guard case .failure(let error) = outcomes.result(3) else {
            Issue.record("a closed spool took a message: \(String(describing: outcomes.result(3)))")
            return
        }
        #expect(error.description.contains("closed"))
        recorder.gate.signal()
        #expect(outcomes.group.wait(timeout: .now() + 30) == .success)
        #expect(outcomes.covered(1) && outcomes.covered(2))
        #expect(spool.ids() == [Self.id(1), Self.id(2)])
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(directory)/tmp").isEmpty)
        let lock = try #require(try spool.lock(id: Self.id(1), wait: false))
        #expect(throws: SpoolError.self) { try lock.write(Self.record(1)) }
    }

    @Test func recordRewritesAndRemovals_rideTheRounds() throws {
        let recorder = Recorder(holdFirst: false)
        let spool = try Spool(directory: directory, create: true, calls: recorder.calls())
        try spool.add(Self.record(1), message: [1])
        let lock = try #require(try spool.lock(id: Self.id(1), wait: false))
        var changed = Self.record(1)
        changed.state = .sending
        let written = DispatchSemaphore(value: 0)
        lock.write(changed) { result in
            if case .success = result { written.signal() }
        }
        #expect(written.wait(timeout: .now() + 10) == .success)
        #expect(try spool.record(id: Self.id(1))?.state == .sending)
        let removed = DispatchSemaphore(value: 0)
        lock.remove { result in
            if case .success = result { removed.signal() }
        }
        #expect(removed.wait(timeout: .now() + 10) == .success)
        #expect(spool.ids().isEmpty)
        #expect(recorder.events.last == "directory \(spool.queueDirectory)")  // the removal was flushed
    }

    @Test func aLargeRound_isFlushedWithOneSyncOfTheFilesystem_andEveryWriterIsCovered() throws {
        let recorder = Recorder(holdFirst: true)
        let spool = try Spool(directory: directory, create: true, calls: recorder.calls(filesystemSyncFrom: 8))
        let outcomes = Outcomes()
        add(spool, recorder, outcomes, 0)  // two files: flushed one by one
        recorder.entered.wait()
        DispatchQueue.concurrentPerform(iterations: 20) { index in add(spool, recorder, outcomes, index + 1) }
        recorder.gate.signal()
        #expect(outcomes.group.wait(timeout: .now() + 30) == .success)
        for number in 0...20 {
            guard case .success = outcomes.result(number) else {
                Issue.record("message \(number): \(String(describing: outcomes.result(number)))")
                continue
            }
            #expect(outcomes.covered(number), "message \(number) was answered before its files were durable")
            #expect(try spool.message(id: Self.id(number)) == Array("message \(number)".utf8))
        }
        spool.committer.waitUntilIdle()
        #expect(spool.committer.rounds == 2)
        let flushes = recorder.events.filter { !$0.hasPrefix("rename ") }.map { $0.split(separator: " ")[0] }
        #expect(flushes == ["data", "data", "directory", "filesystem", "directory"])
    }

    @Test func aFailingFilesystemFlush_failsEveryWriterOfItsRound_andAcknowledgesNone() throws {
        let recorder = Recorder(holdFirst: true)
        let spool = try Spool(directory: directory, create: true, calls: recorder.calls(filesystemSyncFrom: 1))
        let outcomes = Outcomes()
        add(spool, recorder, outcomes, 0)
        recorder.entered.wait()
        recorder.failFilesystemSync = true
        for number in 1...5 { add(spool, recorder, outcomes, number) }
        recorder.gate.signal()  // round 1 (message 0) fails too: the flag is read after the gate
        #expect(outcomes.group.wait(timeout: .now() + 30) == .success)
        for number in 0...5 {
            guard case .failure(let error) = outcomes.result(number) else {
                Issue.record("message \(number) was acknowledged although its round's flush failed")
                continue
            }
            #expect(error.description.contains("syncfs"))
        }
        #expect(!recorder.events.contains { $0.hasPrefix("rename ") })
        #expect(spool.ids().isEmpty)
        #expect(try FileManager.default.contentsOfDirectory(atPath: "\(directory)/tmp").isEmpty)
    }

    @Test func completionsRunInTheOrderOfSubmission_andAMessageIsRenamedBeforeItsRecord() throws {
        let recorder = Recorder(holdFirst: true)
        let spool = try Spool(directory: directory, create: true, calls: recorder.calls())
        let order = Order()
        let done = DispatchGroup()
        for number in 0..<12 {
            done.enter()
            spool.add(Self.record(number), message: [UInt8(number)]) { result in
                if case .success = result { order.append(number) }
                done.leave()
            }
            if number == 0 { recorder.entered.wait() }  // the rest queue up behind round 1
        }
        recorder.gate.signal()
        #expect(done.wait(timeout: .now() + 30) == .success)
        #expect(order.values == Array(0..<12))
        let renames = recorder.events.filter { $0.hasPrefix("rename ") }
        for number in 0..<12 {
            let eml = try #require(renames.firstIndex(of: "rename \(spool.queueDirectory)/\(Self.id(number)).eml"))
            let json = try #require(renames.firstIndex(of: "rename \(spool.queueDirectory)/\(Self.id(number)).json"))
            #expect(eml < json)
        }
    }

    final class Order: @unchecked Sendable {
        private let lock = NSLock()
        private var list: [Int] = []
        func append(_ value: Int) { lock.withLock { list.append(value) } }
        var values: [Int] { lock.withLock { list } }
    }
}
