import Dispatch
import Foundation
import Glibc
import Logging
import SMTPProtocol

/// One client connection: a non-blocking socket driven by Dispatch read/write sources on its own serial
/// queue. Bytes go into `SMTPSession`; its output goes to the socket and the submitter.
///
/// Concurrency: every mutable property is touched only on `queue` (asserted at entry points). The
/// submitter's completion hops back onto `queue`. No call here blocks.
final class SMTPConnection: @unchecked Sendable {
    let id: String
    let clientAddress: SocketAddress
    let queue: DispatchQueue

    private let fd: Int32
    private var session: SMTPSession
    private let submitter: MessageSubmitter
    private let statistics: SMTPServerStatistics
    private let metrics: SMTPServerMetrics
    private let timeouts: SMTPTimeouts
    /// The grace this connection was promised at shutdown: its delivery (an ACS call with the retry budget
    /// of the configuration it started under) may need all of it, even after a reload lowered the default.
    var shutdownGracePeriod: Double { timeouts.shutdownGracePeriod }
    private var logger: Logger
    private let onClose: @Sendable (SMTPConnection) -> Void

    private let readSource: DispatchSourceRead
    private let writeSource: DispatchSourceWrite
    private let timer: DispatchSourceTimer
    private var readSuspended = false
    private var writeSuspended = true
    private var closed = false

    private var pendingOutput: [UInt8] = []
    private var pendingOutputOffset = 0
    private var closeAfterFlush = false
    private var closeRequestedAt = 0.0
    private var closeReason = "quit"
    private var heloName = ""

    private var shutdownRequested = false

    // Timing (monotonic seconds).
    private let openedAt: Double
    private var commandDeadline: Double
    private var lastReadAt: Double
    private var dataStartedAt: Double?
    private var dataOctets = 0
    /// The message with the submitter, if any: what its audit line needs once it is answered.
    private var pending: PendingSubmission?

    // Statistics for the closing log line.
    private var octetsIn = 0
    private var messagesAccepted = 0
    private var messagesRejected = 0

    /// Read buffer size: large enough for a pipelined group or a fat DATA segment in one read.
    private static let readSize = 64 * 1024
    /// Reads in one turn before yielding the queue to other work (fairness between connections).
    private static let readsPerTurn = 16
    /// Unsent reply octets beyond which we stop reading: a client that does not read its replies
    /// must not make us buffer without bound.
    private static let maxPendingOutput = 256 * 1024
    /// How long a closing connection waits for its last reply to be written.
    private static let finalReplyTimeout = 10.0

    init(
        fd: Int32, clientAddress: SocketAddress, configuration: SMTPServerConfiguration,
        submitter: MessageSubmitter, statistics: SMTPServerStatistics, metrics: SMTPServerMetrics,
        targetQueue: DispatchQueue, logger: Logger,
        onClose: @escaping @Sendable (SMTPConnection) -> Void
    ) {
        self.id = Identifiers.sessionID()
        self.fd = fd
        self.clientAddress = clientAddress
        self.queue = DispatchQueue(label: "smtp.connection.\(id)", target: targetQueue)
        self.session = SMTPSession(hostname: configuration.hostname, limits: configuration.limits)
        self.submitter = submitter
        self.statistics = statistics
        self.metrics = metrics
        self.timeouts = configuration.timeouts
        var logger = logger
        logger[metadataKey: "smtp.session"] = "\(id)"
        logger[metadataKey: "smtp.client"] = "\(clientAddress)"
        self.logger = logger
        self.onClose = onClose
        self.readSource = DispatchSource.makeReadSource(fileDescriptor: fd, queue: queue)
        self.writeSource = DispatchSource.makeWriteSource(fileDescriptor: fd, queue: queue)
        self.timer = DispatchSource.makeTimerSource(queue: queue)
        let now = Self.now()
        self.openedAt = now
        self.lastReadAt = now
        self.commandDeadline = now + configuration.timeouts.command
    }

    /// Sends the greeting and starts reading. Called once, from any queue.
    func start() {
        queue.async { [self] in
            readSource.setEventHandler { [unowned self] in handleReadable() }
            writeSource.setEventHandler { [unowned self] in handleWritable() }
            timer.setEventHandler { [unowned self] in checkTimeouts() }
            // The fd is closed once all three sources are cancelled.
            ListeningSocket.closeWhenCancelled(fd, sources: [readSource, writeSource, timer], queue: queue) {
                [self] in onClose(self)
            }
            let interval = Self.timerInterval(for: timeouts)
            timer.schedule(deadline: .now() + interval, repeating: interval, leeway: .milliseconds(50))
            timer.resume()
            readSource.resume()
            logger.debug("connection opened")
            handle(session.greeting)
        }
    }

    /// Graceful shutdown: close now when idle, otherwise after the current transaction.
    func requestShutdown() {
        queue.async { [self] in
            guard !closed else { return }
            shutdownRequested = true
            closeIfIdleDuringShutdown()
        }
    }

    /// End of the shutdown grace period: close whatever is still open with 421.
    func forceClose() {
        queue.async { [self] in
            guard !closed, !closeAfterFlush else { return }
            closeReason = "shutdown"
            let output = session.abort(.shuttingDown)
            if let message = pending {
                logger.warning(
                    "shutdown deadline reached while a message was being delivered; the client is told to retry",
                    metadata: ["smtp.message_id": "\(message.id)"])
                // The client is told 421 now; a late answer from the submitter must find nothing pending
                // (`SMTPSessionTests.lateSubmissionAnswer_afterAnAbort_isIgnored`).
                pending = nil
                metrics.submissionEnded()
                audit(message, reply: output.replies.last ?? .shuttingDown, result: SubmissionResult(.shuttingDown, reason: .shutdown))
            }
            handle(output)
        }
    }

    // MARK: Reading

    private func handleReadable() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !closed, !readSuspended else { return }
        var buffer = [UInt8](repeating: 0, count: Self.readSize)
        // Read until the socket is drained (EAGAIN) or at end of stream: Dispatch may not report the
        // descriptor again for data (or an EOF) that was already there when we stopped.
        for _ in 0..<Self.readsPerTurn {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, Self.readSize) }
            if count > 0 {
                octetsIn += count
                lastReadAt = Self.now()
                if session.phase == .messageData || session.phase == .chunkData { dataOctets += count }
                session.admissionRefusal = submitter.admissionRefusal()
                handle(session.receive(buffer[0..<count]))
                if closed || readSuspended || closeAfterFlush { return }
            } else if count == 0 {
                clientVanished("client closed the connection")
                return
            } else {
                let error = errno
                if error == EAGAIN || error == EWOULDBLOCK { return }
                if error == EINTR { continue }
                clientVanished("read failed: \(String(cString: strerror(error)))")
                return
            }
        }
        // A fast client still has data waiting: yield the queue to other work, then carry on.
        queue.async { [weak self] in self?.handleReadable() }
    }

    private func clientVanished(_ reason: String) {
        if !session.machine.isIdle || session.phase != .command {
            // Nothing is delivered for a transaction that did not reach its end (RFC 5321 §4.1.1.4):
            // the message data is discarded with the session.
            logger.notice(
                "client disconnected during a transaction; nothing was accepted",
                metadata: ["reason": "\(reason)", "smtp.phase": "\(session.phase)"])
        }
        closeReason = reason
        closeNow()
    }

    // MARK: Session output

    private func handle(_ output: SMTPSession.Output) {
        dispatchPrecondition(condition: .onQueue(queue))
        if let domain = session.machine.clientDomain { heloName = domain }
        if !output.replies.isEmpty {
            commandDeadline = Self.now() + timeouts.command
            for reply in output.replies where reply.code >= 500 && reply.code != 554 {
                logger.debug("protocol error reply", metadata: ["smtp.reply": "\(reply)"])
            }
        }
        for refused in output.refusedMessages { auditRefused(refused) }
        trackDataPhase()
        if !output.bytes.isEmpty { enqueue(output.bytes) }
        if output.close {
            if closeReason == "quit", let last = output.replies.last, last.code == 421 || last.code == 500 {
                closeReason = "\(last)"
            }
            closeAfterFlush = true
            closeRequestedAt = Self.now()
            suspendReading()
            flush()
            return
        }
        if let submission = output.submission {
            // A client that vanished while its replies were being written has no one to tell the outcome to;
            // its message is not delivered
            // (`SMTPServerTests.clientVanishingMidData_submitsNothing_andFreesTheConnection`).
            guard !closed else { return }
            submit(submission)
        }
        closeIfIdleDuringShutdown()
    }

    private func trackDataPhase() {
        switch session.phase {
        case .messageData, .chunkData:
            if dataStartedAt == nil {
                dataStartedAt = Self.now()
                dataOctets = 0
            }
        default:
            dataStartedAt = nil
        }
    }

    private func submit(_ submission: SMTPSession.Submission) {
        suspendReading()  // back-pressure: nothing more is read until the submitter answers
        let messageID = Identifiers.messageID()
        let headers = HeaderScan.fields(
            logger.logLevel <= .debug ? ["message-id", "subject"] : ["message-id"], in: submission.message)
        let message = PendingSubmission(
            id: messageID, envelope: submission.envelope, size: submission.message.count,
            transfer: submission.transfer, startedAt: Self.now(), messageIDHeader: headers["message-id"],
            subject: headers["subject"])
        pending = message
        metrics.submissionStarted()
        let info = SessionInfo(
            sessionID: id, clientAddress: clientAddress, heloName: heloName,
            transfer: submission.transfer)
        let received = ReceivedMessage(
            id: messageID, receivedAt: Date(), envelope: submission.envelope, data: submission.message, session: info)
        // A strong reference: the outcome is audited even when the client has gone meanwhile. The submitter
        // answers exactly once, so the connection is released then.
        submitter.submit(received) { result in
            self.queue.async { self.submissionCompleted(result, for: message) }
        }
    }

    private func submissionCompleted(_ result: SubmissionResult, for message: PendingSubmission) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard pending?.id == message.id else {
            // Answered already (submission timeout or shutdown): the client was told to retry, but the
            // submitter's late outcome is what happened to the message — a 2xx here means it may arrive twice.
            logger.log(
                level: result.reply.isPositive ? .warning : .notice,
                "delivery answered after the client was told to retry",
                metadata: Self.auditMetadata(message, result, duration: Self.now() - message.startedAt))
            return
        }
        pending = nil
        metrics.submissionEnded()
        let answering = !closed && !closeAfterFlush && session.phase == .awaitingSubmission
        audit(message, reply: result.reply, result: result, replySent: answering)
        guard answering else { return }
        let output = session.submissionCompleted(result.reply)
        resumeReading()
        handle(output)
        // Input pipelined behind the message may already be buffered in the socket.
        if !closed && !readSuspended { handleReadable() }
    }

    // MARK: Audit

    /// What the audit line of a message with the submitter needs.
    struct PendingSubmission: Sendable {
        var id: String
        var envelope: Envelope
        var size: Int
        var transfer: String
        /// Monotonic seconds at the end of DATA / BDAT LAST.
        var startedAt: Double
        var messageIDHeader: String?
        /// Only scanned when the logger's level is debug or trace: subjects are content.
        var subject: String?
    }

    /// The one audit line per message (`msg=message`), with its counters and metrics. Level info for 2xx,
    /// notice otherwise. Never the body, never AUTH data; the subject only at debug level.
    private func audit(
        _ message: PendingSubmission, reply: SMTPReply, result: SubmissionResult, replySent: Bool = true
    ) {
        let duration = Self.now() - message.startedAt
        if reply.isPositive { messagesAccepted += 1 } else { messagesRejected += 1 }
        statistics.messageAnswered(reply)
        metrics.messageAnswered(reply, reason: result.reason, seconds: duration)
        var result = result
        result.reply = reply
        var metadata = Self.auditMetadata(message, result, duration: duration)
        if !replySent { metadata["smtp.reply_sent"] = "false" }  // the client had gone
        logger.log(level: reply.isPositive ? .info : .notice, "message", metadata: metadata)
    }

    /// A message refused at the end of its data (size, over DATA or BDAT; line length, bare LF): audited like the
    /// others, with the transfer and size the session recorded.
    private func auditRefused(_ refused: SMTPSession.RefusedMessage) {
        let reason: SubmissionReason =
            switch refused.outcome {
            case .exceededSizeLimit: .tooLarge
            case .exceededLineLength: .lineTooLong
            case .bareLineFeed: .bareLineFeed
            case .complete: .unspecified
            }
        let message = PendingSubmission(
            id: Identifiers.messageID(), envelope: refused.envelope, size: refused.size,
            transfer: refused.transfer, startedAt: Self.now())
        audit(message, reply: refused.reply, result: SubmissionResult(refused.reply, reason: reason))
    }

    static func auditMetadata(
        _ message: PendingSubmission, _ result: SubmissionResult, duration: Double
    ) -> Logger.Metadata {
        var metadata: Logger.Metadata = [
            "smtp.message_id": "\(message.id)",
            "smtp.mail_from": "\(message.envelope.reversePath)",
            "smtp.rcpt_count": "\(message.envelope.forwardPaths.count)",
            "smtp.size": "\(message.size)",
            "smtp.transfer": "\(message.transfer)",
            "smtp.reply": "\(result.reply)",
            "reason": "\(result.reason)",
            "duration_ms": "\(Int((duration * 1000).rounded()))",
        ]
        if let header = message.messageIDHeader { metadata["mail.message_id"] = "\(header)" }
        if let subject = message.subject { metadata["mail.subject"] = "\(subject)" }
        for field in result.auditFields { metadata[field.key] = "\(field.value)" }
        return metadata
    }

    private func closeIfIdleDuringShutdown() {
        guard shutdownRequested, !closed, !closeAfterFlush,
            session.machine.isIdle, session.phase == .command
        else { return }
        closeReason = "shutdown"
        handle(session.abort(.shuttingDown))
    }

    // MARK: Writing

    private func enqueue(_ bytes: [UInt8]) {
        if pendingOutputOffset == pendingOutput.count {
            pendingOutput = bytes
            pendingOutputOffset = 0
        } else {
            pendingOutput.append(contentsOf: bytes)
        }
        flush()
    }

    private func flush() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !closed else { return }
        while pendingOutputOffset < pendingOutput.count {
            let written = pendingOutput.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + pendingOutputOffset, raw.count - pendingOutputOffset, Int32(MSG_NOSIGNAL))
            }
            if written > 0 {
                pendingOutputOffset += written
            } else if written < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                if writeSuspended {
                    writeSuspended = false
                    writeSource.resume()
                }
                if pendingOutput.count - pendingOutputOffset > Self.maxPendingOutput { suspendReading() }
                return
            } else if written < 0 && errno == EINTR {
                continue
            } else {
                clientVanished("write failed: \(String(cString: strerror(errno)))")
                return
            }
        }
        pendingOutput.removeAll(keepingCapacity: true)
        pendingOutputOffset = 0
        if !writeSuspended {
            writeSuspended = true
            writeSource.suspend()
        }
        if closeAfterFlush {
            closeNow()
        } else if readSuspended && session.phase != .awaitingSubmission {
            resumeReading()
        }
    }

    private func handleWritable() {
        flush()
    }

    // MARK: Timeouts

    private static func timerInterval(for timeouts: SMTPTimeouts) -> Double {
        let smallest = [timeouts.command, timeouts.dataBlock, timeouts.submission].min() ?? 1
        return max(0.05, min(1.0, smallest / 4))
    }

    private func checkTimeouts() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !closed else { return }
        let now = Self.now()
        if closeAfterFlush {
            // The final reply could not be written (the client stopped reading): give up on it.
            if now - closeRequestedAt >= Self.finalReplyTimeout { closeNow() }
            return
        }
        switch session.phase {
        case .command:
            if now >= commandDeadline {
                logger.notice("command timeout", metadata: ["timeout_s": "\(timeouts.command)"])
                closeReason = "command timeout"
                handle(session.abort(.commandTimeout))
            }
        case .messageData, .chunkData:
            let started = dataStartedAt ?? now
            let elapsed = now - started
            let tooSlow =
                elapsed > timeouts.minDataRateGracePeriod && Double(dataOctets) < timeouts.minDataRate * elapsed
            if now - lastReadAt >= timeouts.dataBlock || tooSlow {
                logger.notice(
                    "message data timeout; nothing was accepted",
                    metadata: [
                        "reason": "\(tooSlow ? "below minimum data rate" : "no data")",
                        "octets": "\(dataOctets)", "elapsed_s": "\(Int(elapsed))",
                    ])
                closeReason = tooSlow ? "data rate too low" : "data timeout"
                handle(session.abort(.dataTimeout))
            }
        case .awaitingSubmission:
            if let message = pending, now - message.startedAt >= timeouts.submission {
                logger.error(
                    "delivery did not answer in time; the client is told to retry",
                    metadata: ["smtp.message_id": "\(message.id)", "timeout_s": "\(timeouts.submission)"])
                pending = nil
                metrics.submissionEnded()
                closeReason = "submission timeout"
                let output = session.abort(.submissionTimedOut)
                audit(
                    message, reply: output.replies.last ?? .submissionTimedOut,
                    result: SubmissionResult(.submissionTimedOut, reason: .submissionTimeout))
                handle(output)
            }
        case .closed:
            break
        }
    }

    // MARK: Lifecycle

    private func suspendReading() {
        guard !readSuspended, !closed else { return }
        readSuspended = true
        readSource.suspend()
    }

    private func resumeReading() {
        guard readSuspended, !closed else { return }
        readSuspended = false
        readSource.resume()
    }

    private func closeNow() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard !closed else { return }
        closed = true
        // Cancelling a suspended source never delivers its cancel handler: resume first.
        if readSuspended { readSource.resume() }
        if writeSuspended { writeSource.resume() }
        readSource.cancel()
        writeSource.cancel()
        timer.cancel()
        logger.info(
            "connection closed",
            metadata: [
                "smtp.helo": "\(heloName)",
                "messages_accepted": "\(messagesAccepted)",
                "messages_rejected": "\(messagesRejected)",
                "octets_in": "\(octetsIn)",
                "duration_ms": "\(Int((Self.now() - openedAt) * 1000))",
                "reason": "\(closeReason)",
            ])
    }

    static func now() -> Double {
        var time = timespec()
        clock_gettime(CLOCK_MONOTONIC, &time)
        return Double(time.tv_sec) + Double(time.tv_nsec) / 1e9
    }
}
