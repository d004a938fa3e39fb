/// One SMTP session as bytes in, bytes and submissions out — the whole server-side protocol with no I/O.
///
/// `SMTPSession` frames the input (command lines, DATA, BDAT chunks), drives `SMTPServerStateMachine`,
/// and batches replies: everything answerable from the bytes at hand is answered in one `Output`, so a
/// pipelined group (RFC 2920) gets its replies in order and in one write. When a message is complete
/// the session stops and returns a `Submission`; nothing further is processed until
/// `submissionCompleted(_:)` — the connection suspends reading meanwhile (back-pressure).
public struct SMTPSession: Sendable {
    /// What the connection must do after feeding bytes or a submission result.
    public struct Output: Sendable, Equatable {
        /// Reply octets to write, in order (possibly several replies).
        public var bytes: [UInt8] = []
        /// The replies contained in `bytes`, for logging and tests.
        public var replies: [SMTPReply] = []
        /// A complete message to hand over; the session waits for `submissionCompleted(_:)`.
        public var submission: Submission?
        /// Close the connection after writing `bytes`.
        public var close = false
        /// Messages whose data arrived in full but were refused at its end (size, line length, bare LF), in
        /// order, for the audit log and metrics: they never reach the submitter. One per transaction: over
        /// DATA at the end of the data; over BDAT with the 552 for the chunk that took the message over the
        /// size limit (a LAST chunk or an earlier one), which ends the transaction — chunks the client sends
        /// after it belong to no transaction (503) and add nothing here.
        public var refusedMessages: [RefusedMessage] = []
        /// STARTTLS was answered (its 220 is the last of `bytes`): write `bytes` in plaintext, then perform the TLS
        /// handshake and call `tlsEstablished()`. Nothing is processed until then.
        public var startTLS = false
        /// Octets the client sent after STARTTLS, before the handshake, that were discarded unread (RFC 3207 §4.2;
        /// the command injection of CVE-2011-0411).
        public var discardedOctets = 0
        /// Credentials to check; the session waits for `authenticationCompleted(_:)`.
        public var credentials: SASLCredentials?

        public init() {}
    }

    /// A message refused at the end of its data, with the envelope it had and why.
    public struct RefusedMessage: Sendable, Equatable {
        public var envelope: Envelope
        public var outcome: SMTPServerStateMachine.MessageDataOutcome
        /// The reply the client got (552 for size; 421 when that refusal was one protocol error too many).
        public var reply: SMTPReply
        /// "DATA" or "BDAT", for logs.
        public var transfer: String
        /// Octets of message the client sent, kept or not: for DATA dot-unstuffed, for BDAT every chunk of
        /// the transaction, the discarded one included.
        public var size: Int
    }

    /// A complete message and its envelope.
    public struct Submission: Sendable, Equatable {
        public var envelope: Envelope
        /// The message as received: dot-unstuffed, CRLF line ends (bare LFs normalized per policy).
        public var message: [UInt8]
        /// "DATA" or "BDAT", for logs.
        public var transfer: String
    }

    /// What the session is waiting for, which decides the timeout that applies (RFC 5321 §4.5.3.2).
    public enum Phase: Hashable, Sendable {
        case command
        case messageData
        case chunkData
        case awaitingSubmission
        /// STARTTLS answered; the TLS handshake runs.
        case tlsHandshake
        /// Credentials are being checked.
        case awaitingCredentials
        case closed
    }

    private enum InputMode: Sendable {
        case commands
        case messageData(MessageDataDecoder)
        case chunk(remaining: Int, keep: Bool)
        case awaitingSubmission
        case startingTLS
        case awaitingCredentials
        case closed
    }

    public private(set) var machine: SMTPServerStateMachine
    public let limits: SMTPLimits
    private var mode: InputMode = .commands
    private var buffer: [UInt8] = []
    private var readIndex = 0
    /// BDAT chunks of the current transaction, accumulated until LAST.
    private var chunkedMessage: [UInt8] = []
    /// Set after a refused DATA: the next line must be a real command, not message text.
    private var dataWasRefused = false

    public init(hostname: String, limits: SMTPLimits = SMTPLimits(), security: SessionSecurity = SessionSecurity()) {
        self.machine = SMTPServerStateMachine(hostname: hostname, limits: limits, security: security)
        self.limits = limits
    }

    public var phase: Phase {
        switch mode {
        case .commands: .command
        case .messageData: .messageData
        case .chunk: .chunkData
        case .awaitingSubmission: .awaitingSubmission
        case .startingTLS: .tlsHandshake
        case .awaitingCredentials: .awaitingCredentials
        case .closed: .closed
        }
    }

    /// The reply MAIL gets while the submitter cannot take new transactions
    /// (``SMTPServerStateMachine/admissionRefusal``).
    public var admissionRefusal: SMTPReply? {
        get { machine.admissionRefusal }
        set { machine.admissionRefusal = newValue }
    }

    /// Octets received but not yet processed (pipelined input waiting behind a submission).
    public var bufferedOctets: Int { buffer.count - readIndex }

    /// The greeting to send when the connection opens.
    public var greeting: Output {
        var output = Output()
        append(.greeting(hostname: machine.hostname), to: &output)
        return output
    }

    /// Feeds received octets and processes as much as possible.
    public mutating func receive(_ bytes: some Collection<UInt8>) -> Output {
        switch mode {
        case .closed:
            return Output()
        case .startingTLS:
            // Plaintext sent before the handshake is never read as commands (RFC 3207 §4.2).
            var output = Output()
            output.discardedOctets = bytes.count
            return output
        default:
            buffer.append(contentsOf: bytes)
            return process()
        }
    }

    /// The TLS handshake after STARTTLS completed: the session starts again, awaiting EHLO.
    public mutating func tlsEstablished() {
        guard case .startingTLS = mode else { return }
        machine.tlsEstablished()
        mode = .commands
    }

    /// The credentials handed over in `Output.credentials` were checked; resumes processing pipelined input.
    public mutating func authenticationCompleted(_ outcome: AuthenticationOutcome) -> Output {
        guard case .awaitingCredentials = mode else { return Output() }
        mode = .commands
        var output = Output()
        apply(machine.authenticationCompleted(outcome), to: &output)
        output.merge(process())
        return output
    }

    /// The submitter answered; resumes processing any pipelined input.
    public mutating func submissionCompleted(_ reply: SMTPReply) -> Output {
        // A late answer after the session was aborted (timeout, shutdown) is ignored, never a crash.
        guard case .awaitingSubmission = mode else { return Output() }
        mode = .commands
        var output = Output()
        apply(machine.submissionCompleted(reply), to: &output)
        let more = process()
        output.merge(more)
        return output
    }

    /// Ends the session from the server side (timeout, shutdown): the reply is sent and the connection closed.
    public mutating func abort(_ reply: SMTPReply) -> Output {
        var output = Output()
        apply(machine.abort(reply), to: &output)
        return output
    }

    // MARK: Processing

    private mutating func process() -> Output {
        var output = Output()
        loop: while true {
            switch mode {
            case .closed, .awaitingSubmission, .startingTLS, .awaitingCredentials:
                break loop
            case .commands:
                guard processCommandLine(into: &output) else { break loop }
            case .messageData(var decoder):
                mode = .awaitingSubmission  // drop the enum's reference so the message buffer is not copied on write
                let (next, ended) = buffer.withUnsafeBufferPointer { decoder.decode($0, from: readIndex) }
                readIndex = next
                guard ended else {
                    mode = .messageData(decoder)
                    break loop
                }
                let envelope = machine.currentEnvelope
                let action = machine.messageDataEnded(decoder.outcome)
                if case .submit(let envelope) = action {
                    mode = .awaitingSubmission
                    output.submission = Submission(envelope: envelope, message: decoder.message, transfer: "DATA")
                } else {
                    mode = .commands
                    if let envelope, case .reply(let reply) = action {
                        output.refusedMessages.append(
                            RefusedMessage(
                                envelope: envelope, outcome: decoder.outcome, reply: reply, transfer: "DATA",
                                size: decoder.decodedOctets))
                    }
                    apply(action, to: &output)
                }
            case .chunk(let remaining, let keep):
                let available = min(remaining, buffer.count - readIndex)
                if keep { chunkedMessage.append(contentsOf: buffer[readIndex..<readIndex + available]) }
                readIndex += available
                guard available == remaining else {
                    mode = .chunk(remaining: remaining - available, keep: keep)
                    break loop
                }
                mode = .commands
                let refusal = machine.chunkRefusal
                let action = machine.chunkEnded()
                if case .submit(let envelope) = action {
                    mode = .awaitingSubmission
                    output.submission = Submission(envelope: envelope, message: chunkedMessage, transfer: "BDAT")
                    chunkedMessage = []
                } else {
                    if !keep { chunkedMessage = [] }  // a rejected chunk aborts the transaction
                    switch (refusal, action) {
                    case (let refusal?, .reply(let reply)), (let refusal?, .replyAndClose(let reply)):
                        // Over the size limit: audited like a message over DATA, so no refusal goes unlogged. Once per
                        // transaction: this chunk's end ends it. 421 when the 552 was one error too many.
                        output.refusedMessages.append(
                            RefusedMessage(
                                envelope: refusal.envelope, outcome: .exceededSizeLimit, reply: reply,
                                transfer: "BDAT", size: refusal.octets))
                    default:
                        break
                    }
                    apply(action, to: &output)
                }
            }
        }
        compactBuffer()
        return output
    }

    /// Processes one command line if a complete one is buffered. Returns false when more input is needed.
    private mutating func processCommandLine(into output: inout Output) -> Bool {
        let available = buffer.count - readIndex
        guard let lineFeed = buffer[readIndex...].firstIndex(of: 10) else {
            if available >= limits.maxCommandLineLength {
                // Do not wait for the rest of an over-long line: answer and close now, bounding memory.
                apply(
                    machine.commandRejected(
                        .commandLineTooLong(limit: limits.maxCommandLineLength),
                        closing: true), to: &output)
            }
            return false
        }
        let lineLength = lineFeed + 1 - readIndex
        let hasCR = lineFeed > readIndex && buffer[lineFeed - 1] == 13
        let content = buffer[readIndex..<(hasCR ? lineFeed - 1 : lineFeed)]
        readIndex = lineFeed + 1
        if lineLength > limits.maxCommandLineLength {
            apply(
                machine.commandRejected(.commandLineTooLong(limit: limits.maxCommandLineLength), closing: true),
                to: &output)
            return true
        }
        if !hasCR && limits.bareLineFeedPolicy == .reject {
            apply(machine.commandRejected(.bareLineFeedInCommand, closing: true), to: &output)
            return true
        }
        if machine.isAwaitingAuthenticationResponse {
            apply(machine.authenticationResponseReceived(content), to: &output)
            return true
        }
        let parsed = SMTPCommand.parse(content)
        if dataWasRefused {
            dataWasRefused = false
            if case .failure = parsed {
                // QUIRK: a line that is not a command right after a refused DATA is message text from a
                // client that did not wait for the 354. Reading it as commands would let the text start a
                // transaction of its own (smuggling), so the session ends here.
                apply(machine.commandRejected(.synchronizationError, closing: true), to: &output)
                return true
            }
        }
        switch parsed {
        case .failure(let error):
            apply(machine.commandRejected(error.reply, closing: error.losesFraming), to: &output)
        case .success(let command):
            apply(machine.received(command), to: &output)
            if case .data = command, case .commands = mode, !output.close {
                dataWasRefused = true
                if buffer.count > readIndex {
                    // RFC 2920 §3.1: DATA ends a pipelined group, so octets already behind a refused DATA are
                    // message text sent without waiting for the 354: never run them (they could smuggle a transaction).
                    apply(machine.commandRejected(.synchronizationError, closing: true), to: &output)
                }
            }
        }
        if machine.chunkedOctets == nil && !chunkedMessage.isEmpty {
            // The transaction that owned these chunks is gone (RSET, HELO/EHLO, 552, error): drop them.
            chunkedMessage = []
        }
        return true
    }

    private mutating func apply(_ action: SMTPServerStateMachine.Action, to output: inout Output) {
        switch action {
        case .reply(let reply):
            append(reply, to: &output)
        case .beginMessageData(let reply):
            append(reply, to: &output)
            chunkedMessage = []
            mode = .messageData(
                MessageDataDecoder(
                    maxMessageSize: limits.maxMessageSize, maxLineLength: limits.maxTextLineLength,
                    bareLineFeedPolicy: limits.bareLineFeedPolicy))
        case .readChunk(let octets, let keep):
            // `BDAT 0 LAST` completes at once: process() finds all zero octets available.
            mode = .chunk(remaining: octets, keep: keep)
        case .submit(let envelope):
            // Only message-data and chunk endings submit; they are handled in process().
            preconditionFailure("unexpected submit for \(envelope)")
        case .replyAndClose(let reply):
            append(reply, to: &output)
            output.close = true
            mode = .closed
            buffer = []
            readIndex = 0
        case .startTLS(let reply):
            append(reply, to: &output)
            output.startTLS = true
            // Whatever the client pipelined behind STARTTLS was sent in plaintext before the handshake: a command
            // injected there must not run inside the TLS session (CVE-2011-0411), so it is dropped unread.
            output.discardedOctets += buffer.count - readIndex
            mode = .startingTLS
            buffer = []
            readIndex = 0
        case .verifyCredentials(let credentials):
            output.credentials = credentials
            mode = .awaitingCredentials
        }
    }

    private func append(_ reply: SMTPReply, to output: inout Output) {
        output.replies.append(reply)
        output.bytes.append(contentsOf: reply.wireBytes)
    }

    /// Drops consumed octets once they are the larger part of the buffer (amortized O(1) per octet).
    private mutating func compactBuffer() {
        if readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: buffer.capacity <= 256 * 1024)
            readIndex = 0
        } else if readIndex > 64 * 1024 && readIndex > buffer.count / 2 {
            buffer.removeFirst(readIndex)
            readIndex = 0
        }
    }
}

extension SMTPSession.Output {
    mutating func merge(_ other: SMTPSession.Output) {
        bytes.append(contentsOf: other.bytes)
        replies.append(contentsOf: other.replies)
        if let submission = other.submission { self.submission = submission }
        refusedMessages.append(contentsOf: other.refusedMessages)
        close = close || other.close
        startTLS = startTLS || other.startTLS
        discardedOctets += other.discardedOctets
        if let credentials = other.credentials { self.credentials = credentials }
    }
}
