/// The server side of one SMTP session (RFC 5321 §4.1.4 command sequencing), with no I/O.
///
/// The machine is fed events — a parsed command, a rejected command line, the end of message data,
/// the submitter's answer — and returns the `Action` to take. It never sees bytes; `SMTPSession`
/// frames the input and drives it.
public struct SMTPServerStateMachine: Sendable {
    /// Where the session is. Each case carries only what is valid there (design.md principle 2).
    public enum State: Hashable, Sendable {
        /// Greeted; waiting for HELO/EHLO.
        case awaitingHello
        /// Introduced; no transaction open.
        case ready(Greeting)
        /// MAIL accepted; RCPTs being collected.
        case inTransaction(Greeting, Transaction)
        /// 354 sent; message data is being read.
        case receivingData(Greeting, Envelope)
        /// A BDAT chunk's octets are being read; what to do with them is decided already.
        case receivingChunk(PendingChunk)
        /// The complete message was handed to the submitter; waiting for its answer.
        case submitting(Greeting)
        /// An AUTH exchange is under way: the next line is the client's response to a 334 challenge.
        case authenticating(Greeting, AuthExchange)
        /// The client's credentials are being checked; waiting for `authenticationCompleted(_:)`.
        case verifyingCredentials(Greeting)
        /// STARTTLS answered 220: the connection performs the handshake, then calls `tlsEstablished()`.
        case startingTLS
        /// QUIT answered or the session was aborted.
        case closed
    }

    /// What the client said about itself.
    public struct Greeting: Hashable, Sendable {
        public var clientDomain: String
        /// EHLO (true) or HELO (false).
        public var extended: Bool
    }

    /// Where an AUTH exchange is: which response the next line is. Never the password: it leaves the machine
    /// in `Action.verifyCredentials` at once.
    public enum AuthExchange: Hashable, Sendable {
        /// `AUTH PLAIN` without an initial response: the response to the empty challenge.
        case plain
        /// `AUTH LOGIN`: the user name.
        case loginUsername
        /// The password for this user name.
        case loginPassword(username: String)
    }

    /// An open mail transaction.
    public struct Transaction: Hashable, Sendable {
        public var envelope: Envelope
        /// Octets received so far in BDAT chunks; nil until the first BDAT (which excludes DATA, RFC 3030 §3).
        public var chunkedOctets: Int?
    }

    /// A BDAT chunk being read: either part of the message, or to be discarded and then answered.
    public enum PendingChunk: Hashable, Sendable {
        /// The chunk's octets belong to `transaction`'s message.
        case accepted(Greeting, Transaction, octets: Int, last: Bool)
        /// The chunk is discarded; `reply` is sent once its octets are consumed. `greeting` is nil before HELO.
        /// `refused` is the transaction whose message this chunk took over the size limit: the chunk's end
        /// ends it, and its message is refused (nil for a chunk that belongs to no transaction).
        case rejected(Greeting?, octets: Int, reply: SMTPReply, refused: Transaction?)
    }

    /// What the session should do next.
    public enum Action: Hashable, Sendable {
        /// Send this reply and keep reading commands.
        case reply(SMTPReply)
        /// Send the 354 and switch the input to message data.
        case beginMessageData(SMTPReply)
        /// Read exactly `octets` octets of BDAT chunk; keep them (`keep`) or discard them.
        /// The reply comes from `chunkEnded()` once they are consumed.
        case readChunk(octets: Int, keep: Bool)
        /// Hand the complete message to the submitter, then call `submissionCompleted(_:)`.
        case submit(Envelope)
        /// Send this reply, then close the connection.
        case replyAndClose(SMTPReply)
        /// Send this reply (220) in plaintext, then perform the TLS handshake and call `tlsEstablished()`. Input
        /// already received after STARTTLS is discarded (RFC 3207 §4.2: it was sent before the handshake).
        case startTLS(SMTPReply)
        /// Check these credentials, then call `authenticationCompleted(_:)`.
        case verifyCredentials(SASLCredentials)
    }

    /// How message data ended, as the input framer saw it.
    public enum MessageDataOutcome: Hashable, Sendable {
        case complete
        case exceededSizeLimit
        case exceededLineLength
        case bareLineFeed
    }

    /// The extensions advertised in the EHLO reply (RFC 5321 §4.1.1.1). STARTTLS until TLS is active; AUTH only
    /// where it can be used (over TLS, or where plaintext AUTH is allowed), so a client never sends a password
    /// over a channel the server would refuse it on.
    public var extensions: [String] {
        var extensions = [
            "PIPELINING",  // RFC 2920
            "SIZE \(limits.maxMessageSize)",  // RFC 1870
            "8BITMIME",  // RFC 6152
            "SMTPUTF8",  // RFC 6531
            "ENHANCEDSTATUSCODES",  // RFC 2034
            "CHUNKING",  // RFC 3030
            "HELP",
        ]
        if security.startTLSOffered && !security.tlsActive { extensions.append("STARTTLS") }  // RFC 3207
        if security.authUsable {
            extensions.append("AUTH " + SASLMechanism.allCases.map(\.rawValue).joined(separator: " "))  // RFC 4954
        }
        return extensions
    }

    public private(set) var state: State = .awaitingHello
    public private(set) var errorCount = 0
    public let limits: SMTPLimits
    public let hostname: String
    /// What this session may do about TLS and AUTH; `tlsActive` turns true after STARTTLS.
    public private(set) var security: SessionSecurity
    /// The user the client authenticated as, until STARTTLS (RFC 3207 §4.2) or the end of the session.
    public private(set) var authenticatedUser: AuthenticatedUser?
    /// When set, MAIL is answered with this reply (e.g. `452 4.3.1` while the mail store is full), so the
    /// client hears it before sending its message. Set by whoever knows, before input is processed.
    public var admissionRefusal: SMTPReply?

    public init(hostname: String, limits: SMTPLimits = SMTPLimits(), security: SessionSecurity = SessionSecurity()) {
        self.hostname = hostname
        self.limits = limits
        self.security = security
    }

    /// True while the next line is a response in an AUTH exchange, not a command.
    public var isAwaitingAuthenticationResponse: Bool {
        if case .authenticating = state { return true }
        return false
    }

    /// True while no transaction is open: a good moment to close the session on shutdown.
    public var isIdle: Bool {
        switch state {
        case .awaitingHello, .ready, .closed, .authenticating, .verifyingCredentials, .startingTLS: true
        case .inTransaction, .receivingData, .receivingChunk, .submitting: false
        }
    }

    /// The envelope of the transaction in progress, if any.
    public var currentEnvelope: Envelope? {
        switch state {
        case .inTransaction(_, let transaction): transaction.envelope
        case .receivingData(_, let envelope): envelope
        case .receivingChunk(.accepted(_, let transaction, _, _)): transaction.envelope
        case .receivingChunk(.rejected): nil
        case .awaitingHello, .ready, .submitting, .closed, .authenticating, .verifyingCredentials, .startingTLS: nil
        }
    }

    /// Octets of BDAT chunks accepted so far in the open transaction; nil when no chunked transaction is open.
    /// The session keeps exactly this many octets of chunk data (nothing may outlive its transaction,
    /// or a later one could deliver it).
    public var chunkedOctets: Int? {
        switch state {
        case .inTransaction(_, let transaction): transaction.chunkedOctets
        case .receivingChunk(.accepted(_, let transaction, _, _)): transaction.chunkedOctets ?? 0
        case .awaitingHello, .ready, .receivingData, .receivingChunk(.rejected), .submitting, .closed,
            .authenticating, .verifyingCredentials, .startingTLS:
            nil
        }
    }

    /// The message refused for size by the BDAT chunk being read: its envelope, and the octets of all its
    /// chunks, this discarded one included. Read it before `chunkEnded()`, which ends that transaction.
    public var chunkRefusal: (envelope: Envelope, octets: Int)? {
        guard case .receivingChunk(.rejected(_, let octets, _, let transaction?)) = state else { return nil }
        return (transaction.envelope, (transaction.chunkedOctets ?? 0) + octets)
    }

    /// The client's HELO/EHLO domain, once given.
    public var clientDomain: String? {
        switch state {
        case .ready(let greeting), .inTransaction(let greeting, _), .receivingData(let greeting, _),
            .receivingChunk(.accepted(let greeting, _, _, _)), .submitting(let greeting),
            .authenticating(let greeting, _), .verifyingCredentials(let greeting):
            greeting.clientDomain
        case .receivingChunk(.rejected(let greeting, _, _, _)): greeting?.clientDomain
        case .awaitingHello, .closed, .startingTLS: nil
        }
    }

    // MARK: Events

    /// A command line was parsed.
    public mutating func received(_ command: SMTPCommand) -> Action {
        switch (state, command) {
        case (.closed, _):
            return .replyAndClose(.closing(hostname: hostname))
        case (.receivingData, _), (.receivingChunk, _), (.submitting, _), (.authenticating, _),
            (.verifyingCredentials, _), (.startingTLS, _):
            // The session does not feed commands while data is being read, a submission or a credential check is
            // pending, an AUTH response is due, or the TLS handshake runs.
            preconditionFailure("command received in state \(state)")

        case (_, .quit):
            state = .closed
            return .replyAndClose(.closing(hostname: hostname))

        case (_, .hello(let domain)):
            // RFC 5321 §4.1.4: HELO/EHLO at any time resets the session like RSET.
            state = .ready(Greeting(clientDomain: domain, extended: false))
            return .reply(.helloAccepted(hostname: hostname, clientDomain: domain))
        case (_, .extendedHello(let domain)):
            state = .ready(Greeting(clientDomain: domain, extended: true))
            return .reply(.extendedHelloAccepted(hostname: hostname, clientDomain: domain, extensions: extensions))

        case (_, .startTLS):
            if security.tlsActive { return error(.badSequence("TLS is already active")) }
            guard security.startTLSOffered else { return error(.notImplemented("STARTTLS")) }
            if case .inTransaction = state { return error(.badSequence("STARTTLS during a mail transaction")) }
            state = .startingTLS
            return .startTLS(.readyToStartTLS)
        case (_, .auth(let mechanism, let initialResponse)):
            return startAuthentication(mechanism: mechanism, initialResponse: initialResponse)

        case (_, .reset):
            switch state {
            case .inTransaction(let greeting, _): state = .ready(greeting)
            default: break
            }
            return .reply(.resetOK)
        case (_, .noop):
            return .reply(.noopOK)
        case (_, .verify):
            return .reply(.cannotVerify)
        case (_, .expand):
            return error(.notImplemented("EXPN"))
        case (_, .help):
            return .reply(.help)
        case (_, .notImplemented(let verb)):
            return error(.notImplemented(verb))

        case (.awaitingHello, .mail), (.awaitingHello, .recipient), (.awaitingHello, .data):
            return error(.badSequence("send HELO or EHLO first"))
        case (.awaitingHello, .binaryData(let size, _)):
            return rejectChunk(size: size, greeting: nil, reply: .badSequence("send HELO or EHLO first"))

        case (.ready, .mail) where authenticatedUser == nil && security.authNeededForMail:
            return error(
                security.authUsable || !security.startTLSOffered
                    ? .authenticationRequired : .authenticationRequiredAfterStartTLS)
        case (.ready, .mail(let from, _)) where authenticatedUser.map { !$0.mayUse(from) } ?? false:
            return error(.senderNotAllowedForUser)
        case (.ready, .mail) where admissionRefusal != nil:
            return .reply(admissionRefusal!)
        case (.ready(let greeting), .mail(let from, let parameters)):
            switch validateMailParameters(parameters, extended: greeting.extended) {
            case .some(let reply): return error(reply)
            case .none: break
            }
            if case .mailbox(let mailbox) = from, mailbox.isInternational, !parameters.contains("SMTPUTF8") {
                return error(.internationalAddressWithoutSMTPUTF8)
            }
            if let declared = parameters["SIZE"], let value = declared, let size = Int(value),
                size > limits.maxMessageSize
            {
                // RFC 1870 §6.1: refuse at MAIL time when the declared size is over the limit.
                return error(.messageTooLarge(limit: limits.maxMessageSize))
            }
            let envelope = Envelope(reversePath: from, mailParameters: parameters)
            state = .inTransaction(greeting, Transaction(envelope: envelope, chunkedOctets: nil))
            return .reply(.senderOK)
        case (.inTransaction, .mail):
            return error(.badSequence("nested MAIL command"))

        case (.ready, .recipient), (.ready, .data):
            return error(.badSequence("need MAIL command"))
        case (.ready(let greeting), .binaryData(let size, _)):
            return rejectChunk(size: size, greeting: greeting, reply: .badSequence("need MAIL command"))

        case (.inTransaction(let greeting, var transaction), .recipient(let requested, let parameters)):
            // RFC 5321 §4.5.1: <postmaster>, and postmaster at the gateway's own name, MUST be accepted. It goes
            // to the configured address; without one, the outbox keeps it as written, and only a delivery that
            // cannot reach it (ACS takes no such address) refuses it, for this recipient alone.
            // Local recipients (`root`, `www-data@localhost`) go to their alias; one with no alias is refused
            // where it cannot be kept as written (`SMTPSessionTests.localRecipients_goToTheirAliases`).
            var to = requested
            if isPostmaster(requested) {
                if let postmaster = limits.postmaster ?? limits.localRecipients.alias(ofLocalName: "postmaster") {
                    to = .mailbox(postmaster)
                } else if limits.plainRecipientsOnly {
                    return .reply(.noPostmaster)
                }
            } else if case .mailbox(let mailbox) = requested {
                switch limits.localRecipients.resolve(mailbox) {
                case .notLocal:
                    break
                case .alias(let alias):
                    to = .mailbox(alias)
                case .unknown:
                    // A name without a domain is no address at all; `user@localhost` is kept for the outbox.
                    if mailbox.domain.isEmpty || limits.plainRecipientsOnly {
                        return .reply(.unknownLocalRecipient(mailbox))
                    }
                }
            }
            if let (keyword, _) = parameters.first(where: { _ in true }) {
                // No RCPT parameter is advertised (no DSN), so any is unknown (RFC 5321 §4.1.1.11).
                return error(.unsupportedParameter(keyword))
            }
            if case .mailbox(let mailbox) = to, mailbox.isInternational,
                !transaction.envelope.allowsInternationalAddresses
            {
                return error(.internationalAddressWithoutSMTPUTF8)
            }
            if limits.plainRecipientsOnly, case .mailbox(let mailbox) = to, let reason = mailbox.notPlainReason {
                // Not a protocol error: a recipient this delivery cannot reach, like an unknown user.
                return .reply(.recipientNotDeliverable("\(reason) (<\(mailbox.address)>)"))
            }
            guard transaction.envelope.forwardPaths.count < limits.maxRecipients else {
                // Flow control, not an error: the client retries these in a new transaction.
                return .reply(.tooManyRecipients(limit: limits.maxRecipients))
            }
            transaction.envelope.forwardPaths.append(to)
            state = .inTransaction(greeting, transaction)
            return .reply(.recipientOK)

        case (.inTransaction(let greeting, let transaction), .data):
            if transaction.chunkedOctets != nil {
                return error(.badSequence("DATA after BDAT"))  // RFC 3030 §3
            }
            guard !transaction.envelope.forwardPaths.isEmpty else {
                return error(.badSequence("need RCPT command"))
            }
            state = .receivingData(greeting, transaction.envelope)
            return .beginMessageData(.startMailInput)

        case (.inTransaction(let greeting, let transaction), .binaryData(let size, let last)):
            guard !transaction.envelope.forwardPaths.isEmpty else {
                return rejectChunk(size: size, greeting: greeting, reply: .badSequence("need RCPT command"))
            }
            let total = (transaction.chunkedOctets ?? 0) + size
            if total > limits.maxMessageSize {
                // smtp-behaviour #10, #15: read and discard the oversize chunk, then 552 and reset. The message is
                // refused there and then, even before LAST: it is audited once, at the end of this chunk.
                return rejectChunk(
                    size: size, greeting: greeting, reply: .messageTooLarge(limit: limits.maxMessageSize),
                    refused: transaction)
            }
            state = .receivingChunk(.accepted(greeting, transaction, octets: size, last: last))
            return .readChunk(octets: size, keep: true)
        }
    }

    /// The TLS handshake that STARTTLS announced completed. Everything learnt before it is forgotten (RFC 3207
    /// §4.2): the client must EHLO again, and an AUTH made in plaintext no longer counts.
    public mutating func tlsEstablished() {
        guard case .startingTLS = state else { preconditionFailure("TLS established in state \(state)") }
        state = .awaitingHello
        security.tlsActive = true
        authenticatedUser = nil
    }

    /// A line of an AUTH exchange (the client's response to a 334 challenge), without its line end.
    public mutating func authenticationResponseReceived(_ line: some Collection<UInt8>) -> Action {
        guard case .authenticating(let greeting, let exchange) = state else {
            preconditionFailure("AUTH response received in state \(state)")
        }
        state = .ready(greeting)
        if line.elementsEqual([UInt8(ascii: "*")]) { return error(.authenticationCancelled) }  // RFC 4954 §4
        guard let decoded = SASLBase64.decode(line) else { return error(.authenticationResponseNotBase64) }
        switch exchange {
        case .plain:
            return plainResponse(decoded, greeting: greeting)
        case .loginUsername:
            guard !decoded.contains(0) else { return error(Self.malformedLoginResponse) }
            state = .authenticating(greeting, .loginPassword(username: String(decoding: decoded, as: UTF8.self)))
            return .reply(.authenticationChallenge(SASLBase64.encode(Array("Password:".utf8))))
        case .loginPassword(let username):
            guard !decoded.contains(0) else { return error(Self.malformedLoginResponse) }
            state = .verifyingCredentials(greeting)
            return .verifyCredentials(SASLCredentials(mechanism: .login, username: username, password: decoded))
        }
    }

    /// The credentials handed over with `.verifyCredentials` were checked.
    public mutating func authenticationCompleted(_ outcome: AuthenticationOutcome) -> Action {
        guard case .verifyingCredentials(let greeting) = state else {
            preconditionFailure("authentication completed in state \(state)")
        }
        state = .ready(greeting)
        switch outcome {
        case .accepted(let user):
            authenticatedUser = user
            return .reply(.authenticationSucceeded)
        case .rejected:
            return error(.authenticationFailed)
        case .temporaryFailure:
            return .reply(.temporaryAuthenticationFailure)
        case .tooManyFailures:
            state = .closed
            return .replyAndClose(.tooManyAuthenticationFailures)
        }
    }

    /// A command line could not be parsed (or was too long); `reply` says why.
    public mutating func commandRejected(_ reply: SMTPReply, closing: Bool = false) -> Action {
        if closing {
            state = .closed
            return .replyAndClose(reply)
        }
        return error(reply)
    }

    /// The message data ended with `<CRLF>.<CRLF>`.
    public mutating func messageDataEnded(_ outcome: MessageDataOutcome) -> Action {
        guard case .receivingData(let greeting, let envelope) = state else {
            preconditionFailure("message data ended in state \(state)")
        }
        switch outcome {
        case .complete:
            state = .submitting(greeting)
            return .submit(envelope)
        case .exceededSizeLimit:
            state = .ready(greeting)
            return .reply(.messageTooLarge(limit: limits.maxMessageSize))
        case .exceededLineLength:
            state = .ready(greeting)
            return .reply(.textLineTooLong(limit: limits.maxTextLineLength))
        case .bareLineFeed:
            state = .ready(greeting)
            return .reply(.bareLineFeedInData)
        }
    }

    /// All octets of the current BDAT chunk were consumed.
    public mutating func chunkEnded() -> Action {
        switch state {
        case .receivingChunk(.rejected(let greeting, _, let reply, _)):
            // A rejected chunk aborts the transaction (RFC 3030 §2: the transaction is considered failed).
            state = greeting.map { .ready($0) } ?? .awaitingHello
            return error(reply)
        case .receivingChunk(.accepted(let greeting, var transaction, let octets, let last)):
            transaction.chunkedOctets = (transaction.chunkedOctets ?? 0) + octets
            if last {
                state = .submitting(greeting)
                return .submit(transaction.envelope)
            }
            state = .inTransaction(greeting, transaction)
            return .reply(.chunkReceived(octets: octets))
        default:
            preconditionFailure("chunk ended in state \(state)")
        }
    }

    /// The submitter answered for the message handed over with `.submit`.
    public mutating func submissionCompleted(_ reply: SMTPReply) -> Action {
        guard case .submitting(let greeting) = state else {
            preconditionFailure("submission completed in state \(state)")
        }
        state = .ready(greeting)
        return .reply(reply)
    }

    /// The session is being closed by the server (timeout, shutdown, too many errors).
    public mutating func abort(_ reply: SMTPReply) -> Action {
        state = .closed
        return .replyAndClose(reply)
    }

    // MARK: Helpers

    /// `AUTH mechanism [initial-response]`, with RFC 4954 §4's order of refusals.
    private mutating func startAuthentication(mechanism: String, initialResponse: String?) -> Action {
        guard security.auth != .none else { return error(.notImplemented("AUTH")) }
        let greeting: Greeting
        switch state {
        case .ready(let current): greeting = current
        case .awaitingHello: return error(.badSequence("send EHLO first"))
        default: return error(.badSequence("AUTH is not allowed during a mail transaction"))
        }
        guard authenticatedUser == nil else { return error(.badSequence("already authenticated")) }
        guard security.authUsable else { return error(.encryptionRequiredForAuthentication) }
        guard let mechanism = SASLMechanism(rawValue: mechanism) else {
            return error(.unrecognizedAuthenticationMechanism)
        }
        // An initial response of "=" is an empty one (RFC 4954 §4).
        let initial = initialResponse.map { $0 == "=" ? [] : Array($0.utf8) }
        switch (mechanism, initial) {
        case (.plain, nil):
            state = .authenticating(greeting, .plain)
            return .reply(.authenticationChallenge(""))
        case (.plain, let response?):
            guard let decoded = SASLBase64.decode(response) else { return error(.authenticationResponseNotBase64) }
            return plainResponse(decoded, greeting: greeting)
        case (.login, nil):
            state = .authenticating(greeting, .loginUsername)
            return .reply(.authenticationChallenge(SASLBase64.encode(Array("Username:".utf8))))
        case (.login, let response?):
            guard let decoded = SASLBase64.decode(response) else { return error(.authenticationResponseNotBase64) }
            guard !decoded.contains(0) else { return error(Self.malformedLoginResponse) }
            state = .authenticating(greeting, .loginPassword(username: String(decoding: decoded, as: UTF8.self)))
            return .reply(.authenticationChallenge(SASLBase64.encode(Array("Password:".utf8))))
        }
    }

    /// PLAIN's message: `[authzid] NUL authcid NUL passwd` (RFC 4616 §2), exactly two NULs: none of the three
    /// parts may contain one, so a third NUL is a malformed message, not part of the password.
    private mutating func plainResponse(_ message: [UInt8], greeting: Greeting) -> Action {
        let parts = message.split(separator: 0, omittingEmptySubsequences: false)
        guard parts.count == 3, !parts[1].isEmpty else {
            state = .ready(greeting)
            return error(.syntaxError("malformed PLAIN response"))
        }
        state = .verifyingCredentials(greeting)
        return .verifyCredentials(
            SASLCredentials(
                mechanism: .plain, authorizationIdentity: String(decoding: parts[0], as: UTF8.self),
                username: String(decoding: parts[1], as: UTF8.self), password: Array(parts[2])))
    }

    /// LOGIN's answers are a user name and a password, text like PLAIN's, where a NUL has no place either: such an
    /// answer is refused like a malformed PLAIN message, not handed to the password check.
    private static let malformedLoginResponse = SMTPReply.syntaxError("malformed LOGIN response")

    /// `<postmaster>`, or `postmaster@` the gateway's own name (any case; RFC 5321 §4.5.1).
    private func isPostmaster(_ path: ForwardPath) -> Bool {
        switch path {
        case .postmaster:
            return true
        case .mailbox(let mailbox):
            return mailbox.localPart.lowercased() == "postmaster"
                && mailbox.domain.lowercased() == hostname.lowercased()
        }
    }

    /// A protocol error: counted, and once the budget is spent the session is closed with 421.
    private mutating func error(_ reply: SMTPReply) -> Action {
        errorCount += 1
        if errorCount > limits.maxErrors {
            state = .closed
            return .replyAndClose(.tooManyErrors)
        }
        return .reply(reply)
    }

    private mutating func rejectChunk(
        size: Int, greeting: Greeting?, reply: SMTPReply, refused: Transaction? = nil
    ) -> Action {
        // The chunk's octets are on the wire whatever we think of the command: they must be consumed,
        // or they would be read as commands (RFC 3030 §2; an SMTP smuggling vector).
        state = .receivingChunk(.rejected(greeting, octets: size, reply: reply, refused: refused))
        return .readChunk(octets: size, keep: false)
    }

    /// Checks MAIL parameters against what we advertised. Returns the rejection, if any.
    private func validateMailParameters(_ parameters: ESMTPParameters, extended: Bool) -> SMTPReply? {
        if !extended, let first = parameters.entries.first {
            // Parameters are an ESMTP feature; after HELO none was advertised.
            return .unsupportedParameter(first.keyword)
        }
        for (keyword, value) in parameters {
            switch keyword {
            case "SIZE":
                guard let value, !value.isEmpty, value.count <= 20, value.allSatisfy({ $0.isASCII && $0.isNumber })
                else { return .parameterSyntaxError("SIZE needs a number of octets") }
            case "BODY":
                switch value?.uppercased() {
                case "7BIT", "8BITMIME": break
                case "BINARYMIME": return .unsupportedParameter("BODY=BINARYMIME")  // smtp-behaviour #12
                default: return .parameterSyntaxError("unknown BODY value")
                }
            case "SMTPUTF8":
                guard value == nil else { return .parameterSyntaxError("SMTPUTF8 takes no value") }
            default:
                return .unsupportedParameter(value.map { "\(keyword)=\($0)" } ?? keyword)
            }
        }
        return nil
    }
}
