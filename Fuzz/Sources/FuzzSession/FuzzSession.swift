import SMTPProtocol

/// The whole session state machine driven by a fuzzed transcript, one line at a time. Invariants:
/// - a complete command line fed while the session reads commands gets exactly one reply (RFC 5321 §4.2);
/// - a message is handed over only inside a transaction with a sender and at least one recipient, never over
///   the size limit, and is answered exactly once;
/// - after the session closed nothing more comes out.
func fuzzSession(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    var limits = SMTPLimits()
    limits.maxMessageSize = 4096
    limits.maxRecipients = 5
    limits.maxErrors = 20
    limits.plainRecipientsOnly = size > 0 && data[0] & 1 == 1
    var session = SMTPSession(hostname: "gw.fuzz", limits: limits)
    let input = UnsafeBufferPointer(start: data, count: size)
    var closed = false

    func check(_ output: SMTPSession.Output, expectingOneReply: Bool) {
        var output = output
        var replies = output.replies.count
        while let submission = output.submission {
            precondition(!submission.envelope.forwardPaths.isEmpty, "a message without a recipient")
            precondition(submission.envelope.forwardPaths.count <= limits.maxRecipients, "too many recipients")
            precondition(submission.message.count <= limits.maxMessageSize, "a message over the size limit")
            let answer = session.submissionCompleted(.messageAccepted("OK"))
            precondition(answer.replies.first?.code == 250, "the submitter's answer was not relayed first")
            replies += answer.replies.count
            if answer.close { output.close = true }
            output.submission = answer.submission
        }
        if expectingOneReply {
            precondition(replies >= 1, "a command line got no reply")
        }
        if output.close { closed = true }
    }

    var start = 0
    while start < input.count, !closed {
        var end = start
        while end < input.count, input[end] != 0x0A { end += 1 }
        let line = input[start..<min(end + 1, input.count)]
        let complete = end < input.count
        let phase = session.phase
        let output = session.receive(line)
        if closed {
            precondition(output.replies.isEmpty && output.submission == nil, "output after close")
        }
        // In command mode one complete line is one command: exactly one reply, unless the line was a DATA/BDAT
        // start whose 354 or chunk reply is that one reply, or it ended a pipelined group waiting for data.
        if phase == .command, complete, output.submission == nil {
            precondition(output.replies.count <= 1 || output.close, "several replies to one command: \(output.replies)")
        }
        check(output, expectingOneReply: phase == .command && complete && session.phase != .chunkData)
        start = end + 1
    }
    if !closed {
        let output = session.abort(.closing(hostname: "gw.fuzz"))
        precondition(output.submission == nil, "a message handed over by an abort")
    }
    return 0
}
