@testable import SMTPProtocol

/// Drives an `SMTPSession` with wire bytes the way a connection does, answering every submission
/// immediately, and records what came out.
struct SessionDriver {
    enum Chunking: CaseIterable, CustomStringConvertible {
        case whole
        case byteByByte
        case irregular

        var description: String {
            switch self {
            case .whole: "whole"
            case .byteByByte: "byte-by-byte"
            case .irregular: "irregular chunks"
            }
        }

        func split(_ bytes: [UInt8]) -> [[UInt8]] {
            switch self {
            case .whole: return [bytes]
            case .byteByByte: return bytes.map { [$0] }
            case .irregular:
                var chunks: [[UInt8]] = []
                var index = 0
                var size = 1
                while index < bytes.count {
                    let end = min(bytes.count, index + size)
                    chunks.append(Array(bytes[index..<end]))
                    index = end
                    size = size % 7 + 2  // 1, 3, 5, 7, 2, 4, 6, 8, …
                }
                return chunks
            }
        }
    }

    struct Result {
        var replies: [SMTPReply] = []
        var submissions: [SMTPSession.Submission] = []
        /// Messages refused at the end of their data (for the audit line), in order.
        var refused: [SMTPSession.RefusedMessage] = []
        var closed = false
        /// Number of times the session produced output containing several replies at once.
        var writes: [[SMTPReply]] = []

        var codes: [Int] { replies.map(\.code) }
        var enhancedCodes: [String] { replies.map { $0.enhancedCode?.description ?? "" } }
        var texts: [String] { replies.map { $0.lines.joined(separator: " ") } }
        var messages: [String] { submissions.map { String(decoding: $0.message, as: UTF8.self) } }
    }

    var session: SMTPSession
    var submissionReply: (SMTPSession.Submission) -> SMTPReply

    init(
        limits: SMTPLimits = SMTPLimits(),
        submissionReply: @escaping (SMTPSession.Submission) -> SMTPReply = { _ in .messageAccepted("OK queued") }
    ) {
        self.session = SMTPSession(hostname: "gateway.test", limits: limits)
        self.submissionReply = submissionReply
    }

    /// Feeds `wire` in the given chunking (after the greeting, which is not recorded).
    mutating func run(_ wire: [UInt8], chunking: Chunking = .whole) -> Result {
        var result = Result()
        for chunk in chunking.split(wire) {
            record(session.receive(chunk), into: &result)
            if result.closed { break }
        }
        return result
    }

    mutating func run(_ wire: String, chunking: Chunking = .whole) -> Result {
        run(Array(wire.utf8), chunking: chunking)
    }

    private mutating func record(_ output: SMTPSession.Output, into result: inout Result) {
        result.replies += output.replies
        result.refused += output.refusedMessages
        if !output.replies.isEmpty { result.writes.append(output.replies) }
        if output.close { result.closed = true }
        if let submission = output.submission {
            result.submissions.append(submission)
            record(session.submissionCompleted(submissionReply(submission)), into: &result)
        }
    }
}
