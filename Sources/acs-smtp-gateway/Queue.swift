import ArgumentParser
import Foundation
import Gateway
import Glibc
import Spool

/// `queue …`: look at and steer the spool, safely while the daemon delivers from it.
///
/// Every change takes the message's spool lock, which the daemon holds for the whole of a delivery attempt,
/// so a command waits for an attempt to end and then changes the record that attempt wrote: no lost update,
/// and no send of a message that was held or deleted. The daemon is then told (SIGUSR1) to look again.
struct Queue: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List, inspect, retry, hold, release or delete spooled messages (safe while the daemon runs).",
        discussion: """
            The spool is spool.directory of the configuration (--config, ACSGW_SPOOL_DIRECTORY or \
            --spool-directory). Run as the user the daemon runs as, or root.
            """,
        subcommands: [List.self, Show.self, Retry.self, Hold.self, Release.self, Delete.self],
        defaultSubcommand: List.self)

    /// The spool named by the configuration: only the file and the one key the commands need, so they start
    /// at once (every serve flag, nested, makes ArgumentParser's validation take seconds).
    struct SpoolOptions: ParsableArguments {
        @OptionGroup var file: ConfigFileOption

        @Option(help: keyHelp("spool-directory", "The spool's directory."))
        var spoolDirectory: String?

        func open() throws -> Spool {
            let environment = ProcessInfo.processInfo.environment
            let settings: GatewaySettings
            do {
                settings = try ConfigurationLoader.load(
                    file: file.resolvedPath(environment: environment), environment: environment,
                    flags: spoolDirectory.map { [("spool-directory", [$0])] } ?? []
                ).settings
            } catch {
                reportConfigurationError(error)
                throw ExitCode(78)
            }
            do {
                return try Spool(directory: settings.delivery.spoolDirectory, create: false)
            } catch {
                throw QueueFailure("\(error)")
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "List spooled messages, oldest first (like mailq), and those kept in failed/.")

        @Flag(help: "One JSON array of the records instead of a table.")
        var json = false

        @OptionGroup var spool: SpoolOptions

        func run() throws {
            let spool = try spool.open()
            var rows: [SpoolRecord] = []
            for id in spool.ids() { if let record = try? spool.record(id: id) { rows.append(record) } }
            for id in spool.failedIDs() {
                if let record = try? spool.record(id: id, failed: true) { rows.append(record) }
            }
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                encoder.dateEncodingStrategy = .iso8601
                print(String(decoding: try encoder.encode(rows), as: UTF8.self))
                return
            }
            guard !rows.isEmpty else {
                print("Mail queue is empty")
                return
            }
            let now = Date()
            print(
                pad("ID", 36), pad("AGE", 7), pad("SIZE", 8), pad("STATE", 9), pad("TRIES", 5), pad("NEXT", 8),
                "SENDER -> RECIPIENTS")
            for record in rows {
                let next =
                    record.state == .held || record.state == .failed
                    ? "-"
                    : Self.duration(max(0, record.nextAttemptAt.timeIntervalSince(now)))
                print(
                    pad(record.id, 36), pad(Self.duration(now.timeIntervalSince(record.receivedAt)), 7),
                    pad("\(record.size)", 8), pad(record.state.rawValue, 9), pad("\(record.attempts)", 5),
                    pad(next, 8),
                    "<\(record.envelope.mailFrom)> -> \(record.envelope.rcptTo.joined(separator: ", "))")
                if let error = record.lastError { print("    \(error)") }
            }
            let queued = rows.filter { $0.state != .failed }.count
            print("-- \(queued) message\(queued == 1 ? "" : "s") in the queue, \(rows.count - queued) in failed/")
        }

        static func duration(_ seconds: Double) -> String {
            let value = Int(seconds)
            if value < 120 { return "\(value)s" }
            if value < 7200 { return "\(value / 60)m" }
            if value < 172_800 { return "\(value / 3600)h" }
            return "\(value / 86_400)d"
        }

        private func pad(_ text: String, _ width: Int) -> String {
            text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
        }
    }

    struct Show: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print a message's record and its header.")

        @Argument(help: "The message id.") var id: String
        @OptionGroup var spool: SpoolOptions

        func run() throws {
            let spool = try spool.open()
            let failed = (try? spool.record(id: id)) == nil
            guard let record = try spool.record(id: id, failed: failed),
                let message = try spool.message(id: id, failed: failed)
            else { throw QueueFailure("no message \(id) in the spool") }
            print(String(decoding: try record.encoded(), as: UTF8.self), terminator: "")
            print("--- header of \(failed ? "failed/" : "queue/")\(id).eml")
            let header = message.firstRange(of: [13, 10, 13, 10]).map { message[..<$0.lowerBound] } ?? message[...]
            print(String(decoding: header, as: UTF8.self))
        }
    }

    struct Retry: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Deliver a deferred message now (or every one with --all); held messages stay held.")

        @Argument(help: "The message id.") var id: String?
        @Flag(help: "Every queued message.") var all = false
        @OptionGroup var spool: SpoolOptions

        func validate() throws {
            guard (id == nil) != !all else { throw ValidationError("give a message id or --all") }
        }

        func run() throws {
            let spool = try spool.open()
            let ids = all ? spool.ids() : [id!]
            var changed = 0
            for id in ids {
                try Queue.change(spool, id: id, acrossTheQueue: all) { record in
                    guard record.state != .held else {
                        throw QueueFailure("\(id) is held; release it to deliver it")
                    }
                    guard record.state == .queued || record.state == .bouncing || record.state == .accepted else {
                        return false
                    }
                    record.nextAttemptAt = Date()
                    changed += 1
                    return true
                }
            }
            Queue.poke(spool)
            print("\(changed) message\(changed == 1 ? "" : "s") scheduled for delivery now")
        }
    }

    struct Hold: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Hold a message: it is never tried until released (an attempt in progress ends first).")

        @Argument(help: "The message id.") var id: String
        @OptionGroup var spool: SpoolOptions

        func run() throws {
            let spool = try spool.open()
            try Queue.change(spool, id: id) { record in
                guard record.state != .held else { return false }
                record.heldFrom = record.state == .sending ? .queued : record.state
                if record.state == .sending { record.outcomeUnknown = true }
                record.state = .held
                return true
            }
            Queue.poke(spool)
            print("held \(id)")
        }
    }

    struct Release: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Release a held message for delivery now.")

        @Argument(help: "The message id.") var id: String
        @OptionGroup var spool: SpoolOptions

        func run() throws {
            let spool = try spool.open()
            try Queue.change(spool, id: id) { record in
                guard record.state == .held else { throw QueueFailure("\(id) is not held") }
                record.state = record.heldFrom ?? .queued
                record.heldFrom = nil
                record.nextAttemptAt = Date()
                return true
            }
            Queue.poke(spool)
            print("released \(id)")
        }
    }

    struct Delete: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Delete a message from the queue or failed/ (an attempt in progress ends first); logged.")

        @Argument(help: "The message id.") var id: String
        @OptionGroup var spool: SpoolOptions

        func run() throws {
            let spool = try spool.open()
            if try spool.record(id: id) == nil, try spool.record(id: id, failed: true) != nil {
                try spool.deleteFailed(id: id)
                Queue.logFate(id: id, where: "failed/")
                return
            }
            guard let lock = try spool.lock(id: id, wait: true) else {
                throw QueueFailure("no message \(id) in the spool")
            }
            let record = try lock.read()
            try lock.remove()
            lock.unlock()
            Queue.poke(spool)
            Queue.logFate(id: id, where: "queue/", record: record)
        }
    }

    /// Applies `body` to a record under its lock; `body` returns whether it changed anything.
    /// With `acrossTheQueue` (`--all`), a message that is held, or gone or not yet written by the time its
    /// lock is held, is passed over instead of being an error.
    static func change(
        _ spool: Spool, id: String, acrossTheQueue: Bool = false, _ body: (inout SpoolRecord) throws -> Bool
    ) throws {
        let missing = QueueFailure("no message \(id) in the spool")
        guard let lock = try spool.lock(id: id, wait: true) else {
            if acrossTheQueue { return }
            throw missing
        }
        defer { lock.unlock() }
        guard var record = try lock.read() else {
            if acrossTheQueue { return }
            throw missing
        }
        if acrossTheQueue, record.state == .held { return }
        if try body(&record) { try lock.write(record) }
    }

    /// Tells the daemon, if one runs, to look at the changed records now instead of at its next rescan.
    static func poke(_ spool: Spool) {
        if let pid = spool.daemonPID() { kill(pid, SIGUSR1) }
    }

    /// Deleting is never silent: one line on stderr, in the audit line's format.
    static func logFate(id: String, where place: String, record: SpoolRecord? = nil) {
        var line = "msg=\"message fate\" fate=deleted smtp.message_id=\(id) spool=\(place)"
        if let record {
            line += " acs.operation_id=\(record.operationID) state=\(record.state.rawValue) by=\"queue delete\""
        }
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}

struct QueueFailure: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
