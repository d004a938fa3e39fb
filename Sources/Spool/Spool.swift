import Foundation
import Glibc

/// A durable queue of messages in one directory, readable by a person:
///
/// ```
/// spool/
///   lock              held (flock) by the one daemon that delivers from this spool; holds its pid
///   queue/<id>.eml    the message exactly as received (never rewritten)
///   queue/<id>.json   its ``SpoolRecord`` (rewritten whole, atomically, on every change)
///   failed/           messages whose bounce could not be sent, or that had none, kept for inspection
///   tmp/              files being written; anything left here after a crash is garbage
/// ```
///
/// Crash safety: every file is written under `tmp/`, made durable and renamed into place, and its directory
/// is fsynced, before the caller is told it is done. The flushes are shared (group commit, see
/// ``SpoolCommitter``): writers arriving while a round of flushes runs are covered by the next round, which
/// `fdatasync`s each of their files, renames them into place, then fsyncs each directory once, and only then
/// answers them all. So no caller (and no SMTP client) hears "done" before its data and its names are on
/// disk, and a failed flush fails every writer of its round.
///
/// What a crash can leave, and what start-up (``recoverAfterCrash()``) makes of it:
/// - files in `tmp/`: never renamed, never acknowledged: removed;
/// - an `.eml` without its `.json`, or a `.json` without its `.eml`: a new message whose round had not
///   finished (its two renames share one directory fsync, so either may survive alone: its client never
///   heard 250), or a removal or a move to `failed/` cut short (the message was delivered, or is in
///   `failed/`): removed. A message acknowledged and still queued always has both, since its round
///   finished before the 250 and a removal takes the record first;
/// - a record being rewritten: the old or the new one, whole (a rename replaces it atomically).
///
/// Concurrency: the daemon and the `queue` commands change records through ``lock(id:wait:)``, an
/// exclusive `flock` on the message's `.eml` (which, unlike the record, is never replaced, so the lock
/// stays on one inode). The daemon holds it for the whole of a delivery attempt, so a command waits for
/// the attempt to end, and then sees and changes the record the attempt wrote: no lost update, and a
/// held or deleted message is never sent by an attempt that started before the command.
public final class Spool: @unchecked Sendable {
    public let directory: String
    public var queueDirectory: String { directory + "/queue" }
    public var failedDirectory: String { directory + "/failed" }
    var temporaryDirectory: String { directory + "/tmp" }
    let committer: SpoolCommitter

    /// Opens the spool, creating its directories (mode 0700: messages are private) when `create` is set.
    public convenience init(directory: String, create: Bool = true) throws {
        try self.init(directory: directory, create: create, calls: SpoolCommitter.SystemCalls())
    }

    /// The same with the committer's system calls replaced (tests make them fail or watch them).
    init(directory: String, create: Bool, calls: SpoolCommitter.SystemCalls) throws {
        self.directory = directory
        for path in [directory, directory + "/queue", directory + "/failed", directory + "/tmp"] {
            var status = stat()
            if stat(path, &status) == 0 {
                guard (status.st_mode & S_IFMT) == S_IFDIR else { throw SpoolError("\(path) is not a directory") }
                continue
            }
            guard create else { throw SpoolError("no spool at \(directory) (\(path) is missing)") }
            guard mkdir(path, 0o700) == 0 || errno == EEXIST else { throw SpoolError.fromErrno("create \(path)") }
        }
        self.committer = SpoolCommitter(calls: calls, directory: directory, name: "spool.commit")
    }

    deinit { committer.stopWriting() }

    /// Stops taking writes: those already handed over are still committed, later ones fail at once
    /// (``SpoolError``), so nothing is half-written while the daemon stops.
    public func stopWriting() {
        committer.stopWriting()
    }

    /// ``stopWriting()``, then waits until every write handed over is durable (or failed) and its completion
    /// has run: what a stopping daemon does last, so that no client waits for an answer that never comes.
    public func finishWriting() {
        committer.stopWriting()
        committer.waitUntilIdle()
    }

    /// Whether `directory` is a spool with messages waiting, without creating anything.
    public static func hasMessages(in directory: String) -> Bool {
        !SpoolFile.names(in: directory + "/queue", suffix: ".json").isEmpty
    }

    /// How many messages wait in `directory`'s queue.
    public static func messageCount(in directory: String) -> Int {
        SpoolFile.names(in: directory + "/queue", suffix: ".json").count
    }

    // MARK: The daemon's lock

    /// Takes the spool for this process, or throws when another daemon has it. Released when the process
    /// ends, however it ends (the kernel drops `flock`s with the descriptor).
    public func lockForDelivery() throws -> SpoolDaemonLock {
        let path = directory + "/lock"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SpoolError.fromErrno("open \(path)") }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let holder = Self.readText(fd: fd).trimmingCharacters(in: .whitespacesAndNewlines)
            close(fd)
            throw SpoolError(
                "another daemon (pid \(holder.isEmpty ? "unknown" : holder)) delivers from the spool \(directory)")
        }
        let pid = Array("\(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = pid.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return SpoolDaemonLock(fd: fd)
    }

    /// The pid of the daemon that holds the spool, if one does.
    public func daemonPID() -> pid_t? {
        let fd = open(directory + "/lock", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        guard flock(fd, LOCK_SH | LOCK_NB) != 0, errno == EWOULDBLOCK else {
            flock(fd, LOCK_UN)
            return nil  // nobody holds it
        }
        return pid_t(Self.readText(fd: fd).trimmingCharacters(in: .whitespacesAndNewlines))
    }

    // MARK: Taking custody

    /// Writes a new message and its record durably. Only when this returns may the client hear 250.
    /// Blocks until the round that covers the message ends; see ``add(_:message:completion:)``.
    public func add(_ record: SpoolRecord, message: some Collection<UInt8>) throws {
        try committer.commitAndWait(try prepareAdd(record, message: message, completion: { _ in }))
    }

    /// Writes a new message and its record, and calls `completion` once both are durable (success: the client
    /// may hear 250) or cannot be (the error; nothing of the message stays in the queue). `completion` runs
    /// on the spool's commit thread and must not block. The files are written before this returns; only the
    /// flush is shared with other writers.
    public func add(
        _ record: SpoolRecord, message: some Collection<UInt8>,
        completion: @escaping @Sendable (Result<Void, SpoolError>) -> Void
    ) {
        committer.submit(completion: completion) { try prepareAdd(record, message: message, completion: completion) }
    }

    /// The files of a new message, written under `tmp/` but not synced: the `.eml` first, so the round renames
    /// it before its record.
    private func prepareAdd(
        _ record: SpoolRecord, message: some Collection<UInt8>,
        completion: @escaping @Sendable (Result<Void, SpoolError>) -> Void
    ) throws -> SpoolCommitter.Job {
        try SpoolFile.validate(id: record.id)
        let eml = "\(queueDirectory)/\(record.id).eml"
        guard access(eml, F_OK) != 0 else { throw SpoolError("message \(record.id) is already spooled") }
        let encoded = try record.encoded()
        let message = try pendingFile(Array(message), finalPath: eml)
        let json: SpoolCommitter.PendingFile
        do {
            json = try pendingFile(encoded, finalPath: "\(queueDirectory)/\(record.id).json")
        } catch {
            SpoolCommitter.discard([message])
            throw error
        }
        return SpoolCommitter.Job(files: [message, json], removeOnFailure: true, completion: completion)
    }

    // MARK: Reading

    /// The ids of the spooled messages, oldest first. Read from the `.eml` files, which are never replaced
    /// while a message is queued: a directory listing that runs while a record is being renamed over may
    /// miss that record's name (readdir(3) leaves it unspecified). A message still being written has no
    /// record yet; ``record(id:failed:)`` then answers nil.
    public func ids() -> [String] {
        SpoolFile.names(in: queueDirectory, suffix: ".eml").sorted()
    }

    /// The ids of the messages in `failed/`, oldest first.
    public func failedIDs() -> [String] {
        SpoolFile.names(in: failedDirectory, suffix: ".json").sorted()
    }

    /// A record as it is on disk now, without locking (a listing; never a base for a change).
    public func record(id: String, failed: Bool = false) throws -> SpoolRecord? {
        try SpoolFile.validate(id: id)
        let path = "\(failed ? failedDirectory : queueDirectory)/\(id).json"
        guard let bytes = try SpoolFile.read(path) else { return nil }
        do {
            return try SpoolRecord.decode(bytes)
        } catch {
            throw SpoolError("\(path) is not a readable record: \(error)")
        }
    }

    /// The message's raw octets.
    public func message(id: String, failed: Bool = false) throws -> [UInt8]? {
        try SpoolFile.validate(id: id)
        return try SpoolFile.read("\(failed ? failedDirectory : queueDirectory)/\(id).eml")
    }

    /// The change identity of a record file (inode and modification time), so a rescan re-reads only the
    /// records a command changed.
    public func stamp(id: String) -> SpoolStamp? {
        var status = stat()
        guard stat("\(queueDirectory)/\(id).json", &status) == 0 else { return nil }
        return SpoolStamp(
            inode: UInt64(status.st_ino), seconds: Int(status.st_mtim.tv_sec), nanoseconds: Int(status.st_mtim.tv_nsec))
    }

    // MARK: Changing

    /// Locks message `id` for a change. With `wait`, waits up to `timeout` seconds for an attempt in
    /// progress to end; without it, returns nil at once when the message is busy. Nil too when the
    /// message is gone (delivered, deleted) by the time the lock is held.
    public func lock(id: String, wait: Bool, timeout: Double = 120) throws -> SpoolMessageLock? {
        try SpoolFile.validate(id: id)
        let path = "\(queueDirectory)/\(id).eml"
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw SpoolError.fromErrno("open \(path)")
        }
        let deadline = Date().addingTimeInterval(timeout)
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK || errno == EINTR else {
                close(fd)
                throw SpoolError.fromErrno("lock \(path)")
            }
            guard wait, Date() < deadline else {
                close(fd)
                if wait { throw SpoolError("message \(id) stayed busy for \(Int(timeout)) s; try again") }
                return nil
            }
            usleep(20_000)
        }
        // Removed while we waited (delivered, deleted): the lock is on a file that no longer exists.
        var status = stat()
        guard fstat(fd, &status) == 0, status.st_nlink > 0 else {
            close(fd)
            return nil
        }
        return SpoolMessageLock(spool: self, id: id, fd: fd)
    }

    /// Removes a message from `failed/` (an operator's `queue delete`).
    public func deleteFailed(id: String) throws {
        try SpoolFile.validate(id: id)
        let record = "\(failedDirectory)/\(id).json"
        guard unlink(record) == 0 else { throw SpoolError.fromErrno("remove \(record)") }
        unlink("\(failedDirectory)/\(id).eml")
        try SpoolFile.syncDirectory(of: record)
    }

    // MARK: Usage and recovery

    /// Removes what a crash can leave: files in `tmp/`, messages whose record was never written, and records
    /// whose message is not there (a round that had not finished, so the client never got a 250; or a removal
    /// or a move to `failed/` cut short). Records found in state `sending` are the caller's to requeue.
    /// Returns the ids of the messages removed whose client never got a 250.
    public func recoverAfterCrash() -> [String] {
        var removed: [String] = []
        for name in SpoolFile.names(in: temporaryDirectory, suffix: "") {
            unlink("\(temporaryDirectory)/\(name)")
        }
        let records = Set(SpoolFile.names(in: queueDirectory, suffix: ".json"))
        let messages = Set(SpoolFile.names(in: queueDirectory, suffix: ".eml"))
        for id in messages.subtracting(records).sorted() {
            unlink("\(queueDirectory)/\(id).eml")
            removed.append(id)
        }
        for id in records.subtracting(messages).sorted() {
            unlink("\(queueDirectory)/\(id).json")
            // Unless a move to failed/ was cut short after the message went there (it stays there, acknowledged).
            if access("\(failedDirectory)/\(id).eml", F_OK) != 0 { removed.append(id) }
        }
        if !removed.isEmpty { try? SpoolFile.syncDirectory(of: "\(queueDirectory)/x") }
        return removed
    }

    /// Whether the spool can take a new file now (the directory is writable).
    public func isWritable() -> Bool {
        access(queueDirectory, W_OK | X_OK) == 0 && access(temporaryDirectory, W_OK | X_OK) == 0
    }

    // MARK: Files

    /// `bytes` in a new file under `tmp/`, written but not synced, open for the commit round to sync.
    func pendingFile(_ bytes: [UInt8], finalPath: String) throws -> SpoolCommitter.PendingFile {
        let name = finalPath.split(separator: "/").last.map(String.init) ?? "file"
        let temporary = "\(temporaryDirectory)/\(name).\(UInt32.random(in: .min ... .max))"
        let descriptor = try SpoolFile.create(bytes, at: temporary)
        return SpoolCommitter.PendingFile(descriptor: descriptor, temporaryPath: temporary, finalPath: finalPath)
    }

    /// A record rewrite for the next round.
    func recordJob(
        _ record: SpoolRecord, directory: String, completion: @escaping @Sendable (Result<Void, SpoolError>) -> Void
    ) throws -> SpoolCommitter.Job {
        let file = try pendingFile(try record.encoded(), finalPath: "\(directory)/\(record.id).json")
        return SpoolCommitter.Job(files: [file], completion: completion)
    }

    /// Writes a file with its own flushes, outside the rounds (moves to `failed/`, which are rare).
    func writeDurably(_ bytes: [UInt8], to finalPath: String, syncDirectory: Bool) throws {
        let name = finalPath.split(separator: "/").last.map(String.init) ?? "file"
        let temporary = "\(temporaryDirectory)/\(name).\(UInt32.random(in: .min ... .max))"
        try SpoolFile.write(bytes, to: temporary)
        guard rename(temporary, finalPath) == 0 else {
            let error = SpoolError.fromErrno("rename \(temporary) to \(finalPath)")
            unlink(temporary)
            throw error
        }
        if syncDirectory { try SpoolFile.syncDirectory(of: finalPath) }
    }

    fileprivate static func readText(fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        return count > 0 ? String(decoding: buffer[..<count], as: UTF8.self) : ""
    }
}

/// A record file's change identity (see ``Spool/stamp(id:)``).
public struct SpoolStamp: Hashable, Sendable {
    public var inode: UInt64
    public var seconds: Int
    public var nanoseconds: Int
}

/// The daemon's hold on the spool; kept for the life of the process.
public final class SpoolDaemonLock: @unchecked Sendable {
    let fd: Int32
    init(fd: Int32) { self.fd = fd }
    deinit { close(fd) }
}

/// An exclusive hold on one message: read and rewrite its record, remove it, or move it to `failed/`.
/// ``unlock()`` (or deinit) releases it.
public final class SpoolMessageLock: @unchecked Sendable {
    public let id: String
    private let spool: Spool
    private var fd: Int32

    init(spool: Spool, id: String, fd: Int32) {
        self.spool = spool
        self.id = id
        self.fd = fd
    }

    deinit { unlock() }

    public func unlock() {
        guard fd >= 0 else { return }
        close(fd)  // drops the flock
        fd = -1
    }

    /// The record as it is now; nil when it is gone.
    public func read() throws -> SpoolRecord? {
        try spool.record(id: id)
    }

    public func message() throws -> [UInt8]? {
        try spool.message(id: id)
    }

    /// Replaces the record atomically and durably; blocks until the round that covers it ends.
    public func write(_ record: SpoolRecord) throws {
        precondition(record.id == id, "a lock writes only its own record")
        try spool.committer.commitAndWait(try spool.recordJob(record, directory: spool.queueDirectory) { _ in })
    }

    /// Replaces the record atomically, and calls `completion` once the new record is durable (or cannot be:
    /// the record on disk is then the old one or the new one, whole). `completion` runs on the spool's commit
    /// thread and must not block. The lock stays held: release it after the completion.
    public func write(_ record: SpoolRecord, completion: @escaping @Sendable (Result<Void, SpoolError>) -> Void) {
        precondition(record.id == id, "a lock writes only its own record")
        spool.committer.submit(completion: completion) {
            try spool.recordJob(record, directory: spool.queueDirectory, completion: completion)
        }
    }

    /// Removes the message (delivered, bounced, deleted). The record goes first: a crash in between leaves
    /// an `.eml` without a record, which start-up removes, never a record without its message.
    public func remove() throws {
        try spool.committer.commitAndWait(try removal { _ in })
    }

    /// ``remove()`` whose directory fsync rides the next round; `completion` runs on the commit thread.
    public func remove(completion: @escaping @Sendable (Result<Void, SpoolError>) -> Void) {
        spool.committer.submit(completion: completion) { try removal(completion: completion) }
    }

    private func removal(
        completion: @escaping @Sendable (Result<Void, SpoolError>) -> Void
    ) throws -> SpoolCommitter.Job {
        let record = "\(spool.queueDirectory)/\(id).json"
        guard unlink(record) == 0 || errno == ENOENT else { throw SpoolError.fromErrno("remove \(record)") }
        unlink("\(spool.queueDirectory)/\(id).eml")
        return SpoolCommitter.Job(files: [], directories: [spool.queueDirectory], completion: completion)
    }

    /// Moves the message to `failed/` with `record` as its last record.
    public func moveToFailed(_ record: SpoolRecord) throws {
        let failed = spool.failedDirectory
        try spool.writeDurably(try record.encoded(), to: "\(failed)/\(id).json", syncDirectory: false)
        let from = "\(spool.queueDirectory)/\(id).eml"
        guard rename(from, "\(failed)/\(id).eml") == 0 else { throw SpoolError.fromErrno("move \(from) to failed/") }
        try SpoolFile.syncDirectory(of: "\(failed)/\(id).eml")
        unlink("\(spool.queueDirectory)/\(id).json")
        try SpoolFile.syncDirectory(of: from)
    }
}

/// A spool failure with the system's reason.
public struct SpoolError: Error, CustomStringConvertible, Sendable {
    public var description: String
    public init(_ description: String) { self.description = description }
    static func fromErrno(_ what: String) -> SpoolError { SpoolError("\(what): \(String(cString: strerror(errno)))") }
}

/// Plain file operations, each checked.
enum SpoolFile {
    /// Ids become file names: only the characters of a UUID, so no id can reach outside the spool.
    static func validate(id: String) throws {
        guard !id.isEmpty, id.utf8.count <= 64,
            id.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) || $0 == 45 })
        else { throw SpoolError("\"\(id.prefix(80))\" is not a message id") }
    }

    static func names(in directory: String, suffix: String) -> [String] {
        guard let dir = opendir(directory) else { return [] }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            guard name != ".", name != "..", !name.hasPrefix(".") else { continue }
            if suffix.isEmpty {
                names.append(name)
            } else if name.hasSuffix(suffix) {
                names.append(String(name.dropLast(suffix.count)))
            }
        }
        return names
    }

    static func read(_ path: String) throws -> [UInt8]? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return nil }
            throw SpoolError.fromErrno("open \(path)")
        }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw SpoolError.fromErrno("read \(path)")
            }
            if count == 0 { return bytes }
            bytes.append(contentsOf: chunk[..<count])
        }
    }

    /// Creates `path` with `bytes`, not synced, and returns the open descriptor (the caller closes it).
    static func create(_ bytes: [UInt8], at path: String) throws -> Int32 {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SpoolError.fromErrno("create \(path)") }
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                let error = SpoolError.fromErrno("write \(path)")
                close(fd)
                unlink(path)
                throw error
            }
            offset += written
        }
        return fd
    }

    static func write(_ bytes: [UInt8], to path: String) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw SpoolError.fromErrno("create \(path)") }
        var ok = false
        defer {
            close(fd)
            if !ok { unlink(path) }
        }
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 {
                if errno == EINTR { continue }
                throw SpoolError.fromErrno("write \(path)")
            }
            offset += written
        }
        guard fsync(fd) == 0 else { throw SpoolError.fromErrno("fsync \(path)") }
        ok = true
    }

    static func syncDirectory(of path: String) throws {
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.endIndex)])
        let fd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw SpoolError.fromErrno("open \(directory)") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw SpoolError.fromErrno("fsync \(directory)") }
    }
}
