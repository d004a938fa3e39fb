import ACSEmail
import Dispatch
import Foundation
import Glibc
import Logging
import SMTPProtocol
import SMTPServer

/// Writes each accepted message to a directory — the safe local default when no ACS is configured,
/// and a dry run / copy of what is sent when it is.
///
/// With a translator, each message is first parsed and translated into the ACS request; the record then
/// carries that exact request body as `acsRequest`. A message the translation refuses either gets the
/// same 5xx reply real delivery would give (`refuseUntranslatable`, a strict dry run — nothing is written),
/// or is stored anyway with the refusal recorded as `acsRejection` (the capture-everything default when no
/// sender policy is configured, so a local outbox never loses mail over ACS-only rules).
///
/// For message `<id>` it writes `<id>.eml` (the message exactly as received) and then `<id>.json`
/// (the envelope and session facts), each atomically: temporary file, `fsync`, `rename`, then
/// `fsync` of the directory. Only when both are durable does the client get `250 2.0.0 OK <id>`;
/// a failure gives 451 so the client keeps the message and retries. A `.json` file therefore always
/// has its `.eml` beside it.
///
/// Disk I/O blocks, so it runs on a few dedicated serial queues, never on a connection's queue.
public final class OutboxSubmitter: MessageSubmitter, @unchecked Sendable {
    public let directory: String
    private let translator: MessageTranslator?
    private let refuseUntranslatable: Bool
    private let logger: Logger
    private let ioQueues: [DispatchQueue]
    private let translationQueue = DispatchQueue(label: "outbox.translate", attributes: .concurrent)
    private let nextQueue = Atomic()

    /// Opens (creating if needed) the outbox directory and checks it is writable.
    /// - Parameter ioConcurrency: parallel writers; several let the file system batch `fsync`s.
    public init(
        directory: String, translator: MessageTranslator? = nil, refuseUntranslatable: Bool = true,
        ioConcurrency: Int = 4, logger: Logger
    ) throws {
        self.directory = directory
        self.translator = translator
        self.refuseUntranslatable = refuseUntranslatable
        self.logger = logger
        self.ioQueues = (0..<max(1, ioConcurrency)).map { DispatchQueue(label: "outbox.io.\($0)") }
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        guard access(directory, W_OK | X_OK) == 0 else {
            throw OutboxError("outbox directory \(directory) is not writable: \(String(cString: strerror(errno)))")
        }
    }

    public func submit(_ message: ReceivedMessage, completion: @escaping @Sendable (SubmissionResult) -> Void) {
        // Parsing and translating is CPU work: it runs on the shared work queue, so a large message does not
        // hold up the serial I/O queue other messages' fsyncs are waiting on.
        translationQueue.async { [self] in
            var acsRequest: [UInt8]?
            var acsRejection: TranslationRejection?
            if let translator {
                switch translator.translate(message, logger: logger) {
                case .success(let translated):
                    acsRequest = translated.requestBody
                case .failure(let rejection):
                    // The connection's audit line names the rule (acs.rejection), stored or refused.
                    if refuseUntranslatable {
                        completion(
                            SubmissionResult(
                                reply: ACSReplyMapping.reply(for: rejection), reason: .translationRefused,
                                auditFields: DeliveryAudit.rejection(rejection)))
                        return
                    }
                    acsRejection = rejection
                }
            }
            let request = acsRequest
            let rejection = acsRejection
            ioQueues[nextQueue.increment() % ioQueues.count].async { [self] in
                do {
                    try store(
                        message, acsRequest: request,
                        acsRejection: rejection.map { ACSReplyMapping.reply(for: $0).description })
                    completion(
                        SubmissionResult(
                            reply: .messageAccepted("OK \(message.id)"), reason: .stored,
                            auditFields: DeliveryAudit.rejection(rejection)))
                } catch {
                    logger.error(
                        "could not write message to the outbox; the client will retry",
                        metadata: ["smtp.message_id": "\(message.id)", "error": "\(error)", "outbox": "\(directory)"])
                    completion(SubmissionResult(.localError("could not store the message"), reason: .storageFailed))
                }
            }
        }
    }

    /// Writes a copy of a message that was delivered elsewhere (ACS), on the outbox's I/O queues.
    public func storeCopy(
        _ message: ReceivedMessage, acsRequest: [UInt8], completion: @escaping @Sendable (Bool) -> Void
    ) {
        let queue = ioQueues[nextQueue.increment() % ioQueues.count]
        queue.async { [self] in
            do {
                try store(message, acsRequest: acsRequest)
                completion(true)
            } catch {
                logger.error("outbox copy failed", metadata: ["smtp.message_id": "\(message.id)", "error": "\(error)"])
                completion(false)
            }
        }
    }

    /// Writes both files durably. Throws on any failure, leaving no partial file under a final name.
    func store(_ message: ReceivedMessage, acsRequest: [UInt8]? = nil, acsRejection: String? = nil) throws {
        let record = try OutboxRecord(message: message, acsRequest: acsRequest, acsRejection: acsRejection).jsonPieces()
        try writeAtomically(name: "\(message.id).eml", pieces: [message.data])
        try writeAtomically(name: "\(message.id).json", pieces: record)
        try syncDirectory()
    }

    /// Writes `pieces` one after the other to a temporary file, fsyncs it and renames it to `name`.
    private func writeAtomically(name: String, pieces: [[UInt8]]) throws {
        let finalPath = "\(directory)/\(name)"
        let temporaryPath = "\(directory)/.\(name).tmp"
        let fd = open(temporaryPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw OutboxError.fromErrno("open \(temporaryPath)") }
        var ok = false
        defer {
            if !ok { unlink(temporaryPath) }
        }
        do {
            defer { close(fd) }
            for piece in pieces {
                var offset = 0
                while offset < piece.count {
                    let written = piece.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
                    if written < 0 {
                        if errno == EINTR { continue }
                        throw OutboxError.fromErrno("write \(temporaryPath)")
                    }
                    offset += written
                }
            }
            guard fsync(fd) == 0 else { throw OutboxError.fromErrno("fsync \(temporaryPath)") }
        }
        guard rename(temporaryPath, finalPath) == 0 else { throw OutboxError.fromErrno("rename to \(finalPath)") }
        ok = true
    }

    private func syncDirectory() throws {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw OutboxError.fromErrno("open \(directory)") }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw OutboxError.fromErrno("fsync \(directory)") }
    }
}

/// An outbox failure, with the system's reason.
public struct OutboxError: Error, CustomStringConvertible {
    public var description: String
    init(_ description: String) { self.description = description }

    static func fromErrno(_ what: String) -> OutboxError {
        OutboxError("\(what): \(String(cString: strerror(errno)))")
    }
}

/// A tiny lock-protected counter for round-robin queue choice.
private final class Atomic: @unchecked Sendable {
    private var value = 0
    private let lock = NSLock()

    func increment() -> Int {
        lock.lock()
        defer { lock.unlock() }
        value &+= 1
        return value & Int.max
    }
}
