import SMTPProtocol

/// The DATA/BDAT framer inside the session: the same octets fed at once, in chunks whose sizes the input
/// chooses, and one octet at a time must give the same replies, messages and close, unless one run refused
/// text that arrived in the same read as a refused DATA (554 5.5.0): that check depends on what was already
/// buffered by design (RFC 2920 §3.1, Postfix `smtpd_forbid_unauth_pipelining`). The run it closed must then
/// have done exactly what the other did up to that point, and no more (`Transcript.matches`).
/// The input's first two octets seed the chunk sizes; the rest follows an opened transaction.
func fuzzFraming(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    guard size >= 2 else { return 0 }
    let seed = UInt32(data[0]) << 8 | UInt32(data[1])
    let prelude = Array("EHLO fuzz.example\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n".utf8)
    let wire = prelude + Array(UnsafeBufferPointer(start: data + 2, count: size - 2))

    let whole = Transcript.run(wire, chunks: [wire.count])
    var sizes: [Int] = []
    var state = seed | 1
    var total = 0
    while total < wire.count {
        state = state &* 1_103_515_245 &+ 12_345
        let next = Int(state >> 16) % 97 + 1
        sizes.append(next)
        total += next
    }
    let chunked = Transcript.run(wire, chunks: sizes)
    precondition(whole.matches(chunked), "chunking changed the outcome:\n\(whole)\nvs\n\(chunked)")
    if wire.count <= 4096 {
        let bytewise = Transcript.run(wire, chunks: Array(repeating: 1, count: wire.count))
        precondition(whole.matches(bytewise), "byte-by-byte changed the outcome:\n\(whole)\nvs\n\(bytewise)")
    }
    return 0
}

struct Transcript: Equatable, CustomStringConvertible {
    var replies: [SMTPReply] = []
    var messages: [[UInt8]] = []
    var closed = false

    /// Equal, or one run ended on a synchronization refusal (its last reply: it closes the session) and the
    /// other gave the same replies and messages before it. The other may go on and complete a message: a BDAT
    /// after a refused DATA is a command when it arrives in a read of its own (the harness once required the
    /// same messages, which `SessionRegressionTests.bdatBehindARefusedData_dependsOnTheReadBoundary` shows
    /// is not so).
    func matches(_ other: Transcript) -> Bool {
        if self == other { return true }
        let synchronization = SMTPReply.synchronizationError
        for (cut, full) in [(self, other), (other, self)] where cut.replies.last == synchronization {
            if full.replies.starts(with: cut.replies.dropLast()) && full.messages.starts(with: cut.messages) {
                return true
            }
        }
        return false
    }

    var description: String { "replies \(replies.map(\.code)), messages \(messages.map(\.count)), closed \(closed)" }

    static func run(_ wire: [UInt8], chunks: [Int]) -> Transcript {
        var limits = SMTPLimits()
        limits.maxMessageSize = 4096
        limits.maxTextLineLength = 512
        var session = SMTPSession(hostname: "gw.fuzz", limits: limits)
        var transcript = Transcript()
        func record(_ output: SMTPSession.Output) {
            transcript.replies += output.replies
            if output.close { transcript.closed = true }
            if let submission = output.submission {
                transcript.messages.append(submission.message)
                record(session.submissionCompleted(.messageAccepted("OK")))
            }
        }
        var index = 0
        for size in chunks where index < wire.count && !transcript.closed {
            let end = min(wire.count, index + size)
            record(session.receive(wire[index..<end]))
            index = end
        }
        return transcript
    }
}
