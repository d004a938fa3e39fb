import Dispatch
import Foundation
import Logging
import SMTPProtocol

/// One client connection: an `SMTPSession` over a ``ByteStream`` on the connection's own serial queue. Bytes
/// from the stream go into the session; its output goes to the stream, the submitter and the authenticator.
/// The stream does the socket work (reads, bounded writes, suspend and resume) and, once TLS is on (implicit,
/// or after STARTTLS), the encryption; this type decides the timeout policy, keeps the submission bookkeeping,
/// writes the audit line and handles the shutdown.
///
/// Concurrency: every mutable property is touched only on `queue` (asserted at entry points). The
/// submitter's completion hops back onto `queue`. No call here blocks.
final class SMTPConnection: @unchecked Sendable, ByteStreamDelegate {
    let id: String
    let client: SMTPPeer
    let queue: DispatchQueue

    /// The stream the session reads and writes: the socket, or TLS over it.
    private var stream: any ByteStream
    /// The socket below, which a TLS layer wraps (at start for implicit TLS, after STARTTLS's 220 otherwise).
    private let socket: SocketStream
    private let tlsContext: TLSContext?
    private let implicitTLS: Bool
    private var session: SMTPSession
    private let submitter: MessageSubmitter
    private let authenticator: (any SMTPAuthenticator)?
    private let statistics: SMTPServerStatistics
    private let metrics: SMTPServerMetrics
    private let timeouts: SMTPTimeouts
    private let clock: MonotonicClock
    /// The grace this connection was promised at shutdown: its delivery (an ACS call with the retry budget
    /// of the configuration it started under) may need all of it, even after a reload lowered the default.
    var shutdownGracePeriod: Double { timeouts.shutdownGracePeriod }
    private var logger: Logger

    private let timer: DispatchSourceTimer

    /// Where the connection is in its life. Reading, writing and their suspension are the stream's business.
    enum Lifecycle: Equatable {
        /// Serving the session.
        case open
        /// Serving, but a shutdown was requested: the connection closes as soon as the session is idle.
        case draining
        /// The last reply is being written; the connection closes once it is out, or after
        /// ``SMTPConnection/finalReplyTimeout`` when the client does not read it.
        case closing(since: Double)
        /// Closed: the stream is closed, nothing more happens.
        case closed
    }
    private var lifecycle = Lifecycle.open

    /// Why the connection closed, for its closing log line.
    enum CloseReason: Equatable, CustomStringConvertible {
        case quit
        /// The stream ended: the client closed or a read or write failed.
        case stream(StreamEnd)
        /// The session ended with this reply (421 after too many errors, 500 for a line too long…).
        case reply(SMTPReply)
        case commandTimeout
        case dataTimeout
        case dataRateTooLow
        case submissionTimeout
        case shutdown
        /// The client's address failed AUTH too often.
        case authenticationFailures

        var description: String {
            switch self {
            case .quit: "quit"
            case .stream(let end): "\(end)"
            case .reply(let reply): "\(reply)"
            case .commandTimeout: "command timeout"
            case .dataTimeout: "data timeout"
            case .dataRateTooLow: "data rate too low"
            case .submissionTimeout: "submission timeout"
            case .shutdown: "shutdown"
            case .authenticationFailures: "too many authentication failures"
            }
        }
    }
    private var closeReason = CloseReason.quit

    private var heloName = ""
    private var auditedSession = AuditedSession()

    // Timing (monotonic seconds, from `clock`).
    private let openedAt: Double
    private var commandDeadline: Double
    private var lastReadAt: Double
    private var dataStartedAt: Double?
    private var dataOctets = 0
    /// The message with the submitter, if any: what its audit line needs once it is answered.
    private var pending: AuditedMessage?

    // Statistics for the closing log line.
    private var octetsIn = 0
    private var messagesAccepted = 0
    private var messagesRejected = 0

    /// How long a closing connection waits for its last reply to be written.
    static let finalReplyTimeout = 10.0

    init(
        socket: SocketStream, client: SMTPPeer, configuration: SMTPServerConfiguration,
        security: SessionSecurity = SessionSecurity(), submitter: MessageSubmitter, statistics: SMTPServerStatistics,
        metrics: SMTPServerMetrics, clock: MonotonicClock, logger: Logger
    ) {
        self.id = Identifiers.sessionID()
        self.socket = socket
        self.stream = socket
        self.tlsContext = configuration.tls
        self.implicitTLS = security.tlsActive
        self.client = client
        self.queue = socket.queue
        self.session = SMTPSession(hostname: configuration.hostname, limits: configuration.limits, security: security)
        self.submitter = submitter
        self.authenticator = configuration.authenticator
        self.statistics = statistics
        self.metrics = metrics
        self.timeouts = configuration.timeouts
        self.clock = clock
        var logger = logger
        logger[metadataKey: "smtp.session"] = "\(id)"
        logger[metadataKey: "smtp.client"] = "\(client)"
        self.logger = logger
        self.auditedSession.localPeer = client.localPeer
        self.timer = DispatchSource.makeTimerSource(queue: queue)
        let now = clock.now()
        self.openedAt = now
        self.lastReadAt = now
        self.commandDeadline = now + configuration.timeouts.command
    }

    /// Sends the greeting and starts reading. Called once, from any queue.
    func start() {
        queue.async { [self] in
            stream.delegate = self
            timer.setEventHandler { [unowned self] in checkTimeouts() }
            let interval = Self.timerInterval(for: timeouts)
            timer.schedule(deadline: .now() + interval, repeating: interval, leeway: .milliseconds(50))
            timer.resume()
            if implicitTLS {
                // RFC 8314: TLS from the first octet; the greeting is held until the handshake completes.
                guard layerTLS() else { return }
            }
            stream.start()
            logger.debug("connection opened")
            handle(session.greeting)
        }
    }

    /// Graceful shutdown: close now when idle, otherwise after the current transaction.
    func requestShutdown() {
        queue.async { [self] in
            guard lifecycle == .open else { return }
            lifecycle = .draining
            closeIfIdleDuringShutdown()
        }
    }

    /// End of the shutdown grace period: close whatever is still open with 421.
    func forceClose() {
        queue.async { [self] in
            guard lifecycle == .open || lifecycle == .draining else { return }
            let output = session.abort(.shuttingDown)
            if let message = pending {
                logger.warning(
                    "shutdown deadline reached while a message was being delivered; the client is told to retry",
                    metadata: ["smtp.message_id": "\(message.id)"])
                // The client is told 421 now; a late answer from the submitter must find nothing pending
                // (`SMTPSessionTests.lateSubmissionAnswer_afterAnAbort_isIgnored`).
                pending = nil
                metrics.submissionEnded()
                audit(message, SubmissionResult(output.replies.last ?? .shuttingDown, reason: .shutdown))
            }
            handle(output, closing: .shutdown)
        }
    }

    /// Checks the deadlines now rather than at the timer's next tick, and returns once checked (tests that move
    /// an injected clock). Never call it on `queue`.
    func checkTimeoutsNow() {
        queue.sync { checkTimeouts() }
    }

    // MARK: ByteStreamDelegate

    func streamReceived(_ bytes: ArraySlice<UInt8>) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard lifecycle == .open || lifecycle == .draining else { return }
        octetsIn += bytes.count
        lastReadAt = clock.now()
        if session.phase == .messageData || session.phase == .chunkData { dataOctets += bytes.count }
        session.admissionRefusal = submitter.admissionRefusal()
        handle(session.receive(bytes))
    }

    func streamEnded(_ end: StreamEnd) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard lifecycle != .closed else { return }
        if case .closing = lifecycle {
            closeNow()  // the last reply cannot be written any more
            return
        }
        if case .tlsFailed(let reason) = end {
            logger.notice(
                auditedSession.tls == nil ? "TLS handshake failed; closing the connection" : "TLS failed; closing",
                metadata: ["reason": "\(reason)"])
        }
        if !session.machine.isIdle || session.phase != .command {
            // Nothing is delivered for a transaction that did not reach its end (RFC 5321 §4.1.1.4):
            // the message data is discarded with the session.
            logger.notice(
                "client disconnected during a transaction; nothing was accepted",
                metadata: ["reason": "\(end)", "smtp.phase": "\(session.phase)"])
        }
        closeReason = .stream(end)
        closeNow()
    }

    func streamDrained() {
        dispatchPrecondition(condition: .onQueue(queue))
        if case .closing = lifecycle { closeNow() }
    }

    func streamSecured(_ info: TLSSessionInfo) {
        dispatchPrecondition(condition: .onQueue(queue))
        auditedSession.tls = info
        logger.debug("TLS established", metadata: ["tls.version": "\(info.version)", "tls.cipher": "\(info.cipher)"])
        if session.phase == .tlsHandshake {
            session.tlsEstablished()  // after STARTTLS: the client speaks first (EHLO)
            commandDeadline = clock.now() + timeouts.command
        }
    }

    // MARK: TLS

    /// Puts TLS over the socket: the stream from now on. False (and the connection closed) when OpenSSL cannot
    /// make a session.
    private func layerTLS() -> Bool {
        guard let tlsContext else {
            logger.error("TLS requested but no certificate is configured; closing the connection")
            closeReason = .stream(.tlsFailed("no certificate configured"))
            closeNow()
            return false
        }
        do {
            let tls = try TLSStream(over: socket, context: tlsContext)
            tls.delegate = self
            stream = tls
            return true
        } catch {
            logger.error("cannot start TLS; closing the connection", metadata: ["error": "\(error)"])
            closeReason = .stream(.tlsFailed("\(error)"))
            closeNow()
            return false
        }
    }

    // MARK: Session output

    private func handle(_ output: SMTPSession.Output, closing reason: CloseReason? = nil) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard lifecycle == .open || lifecycle == .draining else { return }
        if let domain = session.machine.clientDomain { heloName = domain }
        if !output.replies.isEmpty {
            commandDeadline = clock.now() + timeouts.command
            for reply in output.replies where reply.code >= 500 && reply.code != 554 {
                logger.debug("protocol error reply", metadata: ["smtp.reply": "\(reply)"])
            }
        }
        for refused in output.refusedMessages { auditRefused(refused) }
        trackDataPhase()
        if output.close {
            if let reason {
                closeReason = reason
            } else if let last = output.replies.last, last.code == 421 || last.code == 500 {
                closeReason = .reply(last)
            }
            lifecycle = .closing(since: clock.now())
            stream.suspendReading()
            stream.write(output.bytes)
            if stream.unsentOctets == 0 { closeNow() }
            return
        }
        if !output.bytes.isEmpty { stream.write(output.bytes) }
        if output.discardedOctets > 0 {
            // A client may not send anything after STARTTLS before the handshake: these octets were pipelined
            // behind it (an injection attempt, or a broken client) and are never read as commands.
            logger.notice(
                "discarded input sent after STARTTLS before the TLS handshake",
                metadata: ["octets": "\(output.discardedOctets)"])
        }
        if output.startTLS {
            // The 220 went out in plaintext above; everything after it is TLS.
            guard layerTLS() else { return }
            stream.start()
            return
        }
        if let credentials = output.credentials {
            authenticate(credentials)
            return
        }
        if let submission = output.submission {
            // A client that vanished while its replies were being written has no one to tell the outcome to;
            // its message is not delivered
            // (`SMTPServerTests.clientVanishingMidData_submitsNothing_andFreesTheConnection`).
            guard lifecycle == .open || lifecycle == .draining else { return }
            submit(submission)
        }
        closeIfIdleDuringShutdown()
    }

    private func trackDataPhase() {
        switch session.phase {
        case .messageData, .chunkData:
            if dataStartedAt == nil {
                dataStartedAt = clock.now()
                dataOctets = 0
            }
        default:
            dataStartedAt = nil
        }
    }

    private func submit(_ submission: SMTPSession.Submission) {
        stream.suspendReading()  // back-pressure: nothing more is read until the submitter answers
        let messageID = Identifiers.messageID()
        let headers = HeaderScan.fields(
            logger.logLevel <= .debug ? ["message-id", "subject"] : ["message-id"], in: submission.message)
        let message = AuditedMessage(
            id: messageID, envelope: submission.envelope, size: submission.message.count,
            transfer: submission.transfer, startedAt: clock.now(), messageIDHeader: headers["message-id"],
            subject: headers["subject"])
        pending = message
        metrics.submissionStarted()
        let info = SessionInfo(
            sessionID: id, client: client, heloName: heloName,
            transfer: submission.transfer)
        let received = ReceivedMessage(
            id: messageID, receivedAt: Date(), envelope: submission.envelope, data: submission.message, session: info)
        // A strong reference: the outcome is audited even when the client has gone meanwhile. The submitter
        // answers exactly once, so the connection is released then.
        submitter.submit(received) { result in
            self.queue.async { self.submissionCompleted(result, for: message) }
        }
    }

    private func submissionCompleted(_ result: SubmissionResult, for message: AuditedMessage) {
        dispatchPrecondition(condition: .onQueue(queue))
        guard pending?.id == message.id else {
            // Answered already (submission timeout or shutdown): the client was told to retry, but the
            // submitter's late outcome is what happened to the message — a 2xx here means it may arrive twice.
            let late = AuditLine(
                message: message, session: auditedSession, result: result,
                duration: clock.now() - message.startedAt)
            logger.log(
                level: result.reply.isPositive ? .warning : .notice,
                "delivery answered after the client was told to retry", metadata: late.metadata)
            return
        }
        pending = nil
        metrics.submissionEnded()
        let answering = (lifecycle == .open || lifecycle == .draining) && session.phase == .awaitingSubmission
        audit(message, result, replySent: answering)
        guard answering else { return }
        let output = session.submissionCompleted(result.reply)
        stream.resumeReading()  // pipelined input behind the message may already be waiting
        handle(output)
    }

    // MARK: Authentication

    private func authenticate(_ credentials: SASLCredentials) {
        stream.suspendReading()  // nothing more is read until the credentials are checked
        let (mechanism, username) = (credentials.mechanism, credentials.username)
        // AUTH is offered on network listeners only: a local process is identified by the kernel instead.
        guard let authenticator, let clientAddress = client.address else {
            authenticationCompleted(AuthenticationResult(outcome: .temporaryFailure), mechanism, username)
            return
        }
        authenticator.authenticate(credentials, client: clientAddress) { result in
            self.queue.async { self.authenticationCompleted(result, mechanism, username) }
        }
    }

    private func authenticationCompleted(
        _ result: AuthenticationResult, _ mechanism: SASLMechanism, _ username: String
    ) {
        dispatchPrecondition(condition: .onQueue(queue))
        if result.delay > 0 {
            // The brake: the client waits before it hears 421 (timers of the connection's own queue, no thread).
            let delayed = AuthenticationResult(
                outcome: result.outcome, failures: result.failures, delay: 0, knownUser: result.knownUser)
            queue.asyncAfter(deadline: .now() + result.delay) { [self] in
                authenticationCompleted(delayed, mechanism, username)
            }
            return
        }
        guard lifecycle == .open || lifecycle == .draining, session.phase == .awaitingCredentials else { return }
        var metadata: Logger.Metadata = ["auth.mechanism": "\(mechanism.rawValue)"]
        if result.knownUser { metadata["auth.user"] = "\(username)" }
        metrics.authenticationAttempted(mechanism: mechanism, outcome: result.outcome)
        switch result.outcome {
        case .accepted(let user):
            auditedSession.authenticatedUser = user.name
            logger.info("authenticated", metadata: metadata)
        case .rejected, .tooManyFailures:
            // The fail2ban line (README "AUTH"): its message and `auth.client_ip` are a stable format.
            metadata["auth.client_ip"] = "\(client.address?.ipString ?? "local")"
            metadata["auth.failures"] = "\(result.failures)"
            if result.outcome == .tooManyFailures { metadata["reason"] = "too many failures" }
            logger.notice("authentication failed", metadata: metadata)
        case .temporaryFailure:
            logger.warning("authentication could not be checked now; the client may retry", metadata: metadata)
        }
        let output = session.authenticationCompleted(result.outcome)
        stream.resumeReading()
        handle(output, closing: result.outcome == .tooManyFailures ? .authenticationFailures : nil)
    }

    // MARK: Audit

    /// Writes the message's audit line and counts it (statistics, metrics, the closing line's counters).
    private func audit(_ message: AuditedMessage, _ result: SubmissionResult, replySent: Bool = true) {
        let line = AuditLine(
            message: message, session: auditedSession, result: result, duration: clock.now() - message.startedAt,
            replySent: replySent)
        if result.reply.isPositive { messagesAccepted += 1 } else { messagesRejected += 1 }
        statistics.messageAnswered(result.reply)
        metrics.messageAnswered(result.reply, reason: result.reason, seconds: line.duration)
        if let user = auditedSession.authenticatedUser { metrics.messageAnswered(result.reply, user: user) }
        line.write(to: logger)
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
        let message = AuditedMessage(
            id: Identifiers.messageID(), envelope: refused.envelope, size: refused.size,
            transfer: refused.transfer, startedAt: clock.now())
        audit(message, SubmissionResult(refused.reply, reason: reason))
    }

    private func closeIfIdleDuringShutdown() {
        guard lifecycle == .draining, session.machine.isIdle else { return }
        if handshaking {
            // Mid-handshake, no reply can be sent in either plaintext or TLS.
            closeReason = .shutdown
            closeNow()
        } else if session.phase == .command {
            handle(session.abort(.shuttingDown), closing: .shutdown)
        }
    }

    /// A TLS handshake runs (implicit TLS before the greeting, or after STARTTLS).
    private var handshaking: Bool {
        (stream as? TLSStream).map { $0.sessionInfo == nil } ?? false
    }

    // MARK: Timeouts

    private static func timerInterval(for timeouts: SMTPTimeouts) -> Double {
        let smallest = [timeouts.command, timeouts.dataBlock, timeouts.submission].min() ?? 1
        return max(0.05, min(1.0, smallest / 4))
    }

    private func checkTimeouts() {
        dispatchPrecondition(condition: .onQueue(queue))
        let now = clock.now()
        switch lifecycle {
        case .closed:
            return
        case .closing(let since):
            // The final reply could not be written (the client stopped reading): give up on it.
            if now - since >= Self.finalReplyTimeout { closeNow() }
            return
        case .open, .draining:
            break
        }
        switch session.phase {
        case .command, .tlsHandshake, .awaitingCredentials:
            // The handshake and the credential check run under the command deadline: a client that stalls its
            // handshake is cut off like one that stalls a command.
            if now >= commandDeadline {
                logger.notice("command timeout", metadata: ["timeout_s": "\(timeouts.command)"])
                if handshaking {
                    // Nothing can be said to a client that has not finished its TLS handshake.
                    closeReason = .commandTimeout
                    closeNow()
                } else {
                    handle(session.abort(.commandTimeout), closing: .commandTimeout)
                }
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
                handle(session.abort(.dataTimeout), closing: tooSlow ? .dataRateTooLow : .dataTimeout)
            }
        case .awaitingSubmission:
            if let message = pending, now - message.startedAt >= timeouts.submission {
                logger.error(
                    "delivery did not answer in time; the client is told to retry",
                    metadata: ["smtp.message_id": "\(message.id)", "timeout_s": "\(timeouts.submission)"])
                pending = nil
                metrics.submissionEnded()
                let output = session.abort(.submissionTimedOut)
                audit(message, SubmissionResult(output.replies.last ?? .submissionTimedOut, reason: .submissionTimeout))
                handle(output, closing: .submissionTimeout)
            }
        case .closed:
            break
        }
    }

    // MARK: Closing

    private func closeNow() {
        dispatchPrecondition(condition: .onQueue(queue))
        guard lifecycle != .closed else { return }
        lifecycle = .closed
        timer.cancel()
        stream.close()
        logger.info(
            "connection closed",
            metadata: [
                "smtp.helo": "\(heloName)",
                "messages_accepted": "\(messagesAccepted)",
                "messages_rejected": "\(messagesRejected)",
                "octets_in": "\(octetsIn)",
                "duration_ms": "\(Int((clock.now() - openedAt) * 1000))",
                "reason": "\(closeReason)",
                "smtp.tls": "\(auditedSession.tls?.version ?? "none")",
            ])
    }
}
