import SMTPProtocol

/// SMTP AUTH (PLAIN and LOGIN) through the whole session: the base64 decoder of SASL responses, PLAIN's
/// `authzid NUL authcid NUL passwd` split, LOGIN's two steps, and what the session does with each outcome of the
/// credential check.
///
/// Input: octet 0 chooses the listener (AUTH optional or required or off, TLS, trusted client, whether the
/// session starts with EHLO), octet 1 the outcomes the credential check gives in turn, the rest is the client's
/// transcript. In a line, an octet 0x01 means "base64 of the rest of this line": the fuzzer then reaches the
/// decoded messages (NULs, empty parts, bad UTF-8) without having to find valid base64 by mutation.
///
/// Invariants:
/// - base64: decoding what was encoded gives it back; whatever decodes was canonical in length and alphabet;
/// - credentials reach the check only where AUTH is usable, and never carry a NUL in the user name, the
///   authorization identity or the password (RFC 4616 §2 allows none in PLAIN's parts; LOGIN's answers are held
///   to the same), nor PLAIN an empty user name;
/// - a response line that is neither `*` nor base64 is answered 501 5.5.2, `*` is answered 501 5.0.0 (or 421
///   when that error was one too many);
/// - the check's outcome is answered 235, 535, 454 or 421-and-close, and only 235 authenticates;
/// - every complete line read as a command or a response gets exactly one reply;
/// - STARTTLS forgets the authenticated user.
func fuzzAuthExchange(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size >= 2 else { return 0 }
    let input = UnsafeBufferPointer(start: data, count: size)
    let flags = input[0]
    var outcomes = input[1]
    let requirement: AuthRequirement = [.optional, .required, .optional, .none][Int(flags & 3)]
    let security = SessionSecurity(
        startTLSOffered: flags & 4 != 0, tlsActive: flags & 8 != 0, auth: requirement,
        authWithoutTLS: flags & 16 != 0, trustedClient: flags & 32 != 0)
    var limits = SMTPLimits()
    limits.maxErrors = 20
    limits.maxCommandLineLength = 512
    var session = SMTPSession(hostname: "gw.fuzz", limits: limits, security: security)
    let user = AuthenticatedUser(name: "alice", senders: [.any])
    var closed = false

    func nextOutcome() -> AuthenticationOutcome {
        let outcome: AuthenticationOutcome = [.accepted(user), .rejected, .temporaryFailure, .tooManyFailures][
            Int(outcomes & 3)]
        outcomes = outcomes >> 2 | outcomes << 6
        return outcome
    }

    /// Counts the replies of `output`, answering the credentials (and messages) it hands over.
    func settle(_ output: SMTPSession.Output) -> Int {
        var output = output
        var replies = output.replies.count
        if output.close { closed = true }
        while output.submission != nil, !closed {
            output = session.submissionCompleted(.messageAccepted("OK"))
            replies += output.replies.count
            if output.close { closed = true }
        }
        while let credentials = output.credentials, !closed {
            check(credentials)
            precondition(session.phase == .awaitingCredentials, "credentials handed over while reading on")
            let outcome = nextOutcome()
            let answer = session.authenticationCompleted(outcome)
            let first = answer.replies.first
            switch outcome {
            case .accepted:
                precondition(
                    first == .authenticationSucceeded, "accepted credentials answered \(String(describing: first))")
                precondition(session.machine.authenticatedUser == user, "accepted credentials did not authenticate")
            case .rejected:
                precondition(
                    first == .authenticationFailed || (first == .tooManyErrors && answer.close),
                    "rejected credentials answered \(String(describing: first))")
            case .temporaryFailure:
                precondition(
                    first == .temporaryAuthenticationFailure,
                    "a temporary failure answered \(String(describing: first))")
            case .tooManyFailures:
                precondition(first == .tooManyAuthenticationFailures && answer.close, "too many failures did not close")
            }
            if case .accepted = outcome {
            } else {
                precondition(session.machine.authenticatedUser == nil, "refused credentials authenticated")
            }
            replies += answer.replies.count
            if answer.close { closed = true }
            output = answer
        }
        return replies
    }

    func check(_ credentials: SASLCredentials) {
        precondition(session.machine.security.authUsable, "credentials taken where AUTH is not usable")
        precondition(!credentials.username.isEmpty || credentials.mechanism == .login, "PLAIN without a user name")
        precondition(!credentials.username.utf8.contains(0), "a NUL in the user name")
        precondition(!credentials.authorizationIdentity.utf8.contains(0), "a NUL in the authorization identity")
        precondition(!credentials.password.contains(0), "a NUL in the password")
        if credentials.mechanism == .login {
            precondition(credentials.authorizationIdentity.isEmpty, "LOGIN has no authorization identity")
        }
    }

    var lines = expand(UnsafeBufferPointer(rebasing: input[2...]))
    if flags & 64 == 0 { lines.insert(Array("EHLO client.fuzz\r\n".utf8), at: 0) }
    for line in lines where !closed {
        let content = line.last == 0x0A ? Array(line.dropLast(line.dropLast().last == 0x0D ? 2 : 1)) : line
        checkBase64(content)
        let complete = line.last == 0x0A
        let wasResponse = session.machine.isAwaitingAuthenticationResponse
        let phase = session.phase
        let output = session.receive(line)
        let first = output.replies.first
        if wasResponse, complete, line.count <= limits.maxCommandLineLength {
            let tooMany = first == .tooManyErrors && output.close
            if content == [UInt8(ascii: "*")] {
                precondition(first == .authenticationCancelled || tooMany, "* answered \(String(describing: first))")
            } else if SASLBase64.decode(content) == nil {
                precondition(
                    first == .authenticationResponseNotBase64 || tooMany,
                    "a response that is not base64 answered \(String(describing: first))")
            }
        }
        let replies = settle(output)
        if phase == .command, complete, session.phase == .command || closed {
            precondition(replies == 1 || (replies > 1 && closed), "\(replies) replies to one line")
        }
        if output.startTLS, !closed {
            session.tlsEstablished()
            precondition(session.machine.authenticatedUser == nil, "an authentication survived STARTTLS")
        }
    }
    return 0
}

/// The transcript split after each LF, with each 0x01 octet replaced by the base64 of what follows it on its line
/// (up to the CR LF or LF).
private func expand(_ transcript: UnsafeBufferPointer<UInt8>) -> [[UInt8]] {
    var lines: [[UInt8]] = []
    var start = transcript.startIndex
    while start < transcript.endIndex {
        var end = start
        while end < transcript.endIndex, transcript[end] != 0x0A { end += 1 }
        var line = Array(transcript[start..<min(end + 1, transcript.endIndex)])
        if let marker = line.firstIndex(of: 0x01) {
            var ending = line.endIndex
            if line.last == 0x0A { ending -= line.dropLast().last == 0x0D ? 2 : 1 }
            let encoded = SASLBase64.encode(Array(line[(marker + 1)..<max(marker + 1, ending)]))
            line.replaceSubrange(marker..<max(marker + 1, ending), with: Array(encoded.utf8))
        }
        lines.append(line)
        start = end + 1
    }
    return lines
}

private let base64Alphabet = Set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

/// The decoder on its own: round trips, and nothing but canonical base64 decodes.
private func checkBase64(_ text: [UInt8]) {
    let encoded = SASLBase64.encode(text)
    precondition(SASLBase64.decode(Array(encoded.utf8)) == text, "base64 does not round-trip")
    guard let decoded = SASLBase64.decode(text) else { return }
    precondition(text.count % 4 == 0, "base64 of a length that is not a multiple of 4 decoded")
    let padding = text.reversed().prefix(while: { $0 == UInt8(ascii: "=") }).count
    precondition(padding <= 2, "more than two padding octets decoded")
    precondition(decoded.count == text.count / 4 * 3 - padding, "decoded length does not match the text")
    precondition(text.dropLast(padding).allSatisfy(base64Alphabet.contains), "an octet outside the alphabet decoded")
    precondition(SASLBase64.encode(decoded).utf8.count == text.count, "re-encoding changes the length")
}
