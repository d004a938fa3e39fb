/// Decodes the message data that follows DATA: removes dot-stuffing and finds the end of data.
///
/// **Only `<CRLF>.<CRLF>` ends the data** (RFC 5321 §4.1.1.4). A `.` line introduced by a bare LF or
/// a bare CR, or followed by one, or with a NUL next to it, is content — that is what defeats SMTP
/// smuggling (smtp-behaviour #1). The decoder is a byte state machine in the style of go-smtp's
/// `data.go`, so chunk boundaries cannot matter: feeding a message whole or one byte at a time gives the
/// same result.
///
/// Over-limit content is not kept but still scanned to its real end, so the client gets a reply
/// (552 or 500) instead of a dropped connection (smtp-behaviour #10).
public struct MessageDataDecoder: Sendable {
    private enum State: Sendable {
        /// At the start of a line: the previous octets were CRLF (or this is the first octet).
        case lineStart
        /// A `.` at the start of a line.
        case dot
        /// `.` then CR at the start of a line: one LF away from the end.
        case dotCR
        /// Inside a line.
        case text
        /// A CR inside a line (or an empty line's CR): LF makes it a line end, anything else a bare CR.
        case carriageReturn
    }

    private var state: State = .lineStart
    private let maxMessageSize: Int
    /// Longest line content allowed: the configured length includes the CRLF, like the command-line limit.
    private let maxLineContent: Int
    private let bareLineFeedPolicy: BareLineFeedPolicy
    private var lineLength = 0

    /// The decoded message so far (dot-unstuffed; CRLF line ends).
    public private(set) var message: [UInt8] = []
    /// Total decoded octets, including any discarded past the size limit.
    public private(set) var decodedOctets = 0
    public private(set) var exceededSizeLimit = false
    public private(set) var exceededLineLength = false
    public private(set) var sawBareLineFeed = false

    public init(maxMessageSize: Int, maxLineLength: Int, bareLineFeedPolicy: BareLineFeedPolicy) {
        self.maxMessageSize = maxMessageSize
        self.maxLineContent = maxLineLength - 2
        self.bareLineFeedPolicy = bareLineFeedPolicy
    }

    /// How the data ended, once `decode` reported the end.
    public var outcome: SMTPServerStateMachine.MessageDataOutcome {
        if exceededSizeLimit { return .exceededSizeLimit }
        if exceededLineLength { return .exceededLineLength }
        if sawBareLineFeed && bareLineFeedPolicy == .reject { return .bareLineFeed }
        return .complete
    }

    /// Consumes octets from `input` starting at `start`. Returns the index just past what was consumed
    /// and whether the end of data was reached (the terminator is consumed; octets after it are not).
    public mutating func decode(_ input: UnsafeBufferPointer<UInt8>, from start: Int) -> (next: Int, ended: Bool) {
        var index = start
        let end = input.count
        while index < end {
            let byte = input[index]
            index += 1
            switch state {
            case .lineStart:
                switch byte {
                case UInt8(ascii: "."): state = .dot
                case 13: state = .carriageReturn
                case 10: bareLineFeed()
                default:
                    emit(byte)
                    state = .text
                    index = copyRun(input, from: index)
                }
            case .dot:
                // Dot-unstuffing: the leading dot is dropped (RFC 5321 §4.5.2); the octet after it is content.
                switch byte {
                case 13: state = .dotCR
                case 10: bareLineFeed()
                default:
                    emit(byte)
                    state = .text
                    index = copyRun(input, from: index)
                }
            case .dotCR:
                if byte == 10 {
                    state = .lineStart
                    return (index, true)
                }
                // `.` CR not followed by LF: the dot was stuffing, the CR is a bare CR in content.
                emit(13)
                state = .text
                index -= 1  // re-examine this octet as text
            case .text:
                switch byte {
                case 13: state = .carriageReturn
                case 10: bareLineFeed()
                default:
                    emit(byte)
                    index = copyRun(input, from: index)
                }
            case .carriageReturn:
                switch byte {
                case 10:
                    emitLineEnd()
                    state = .lineStart
                case 13:
                    emit(13)  // the previous CR was bare; this one may still start a CRLF
                default:
                    emit(13)
                    emit(byte)
                    state = .text
                    index = copyRun(input, from: index)
                }
            }
        }
        return (index, false)
    }

    /// Copies a run of ordinary octets (no CR or LF) in one go; returns the index of the next CR/LF or end.
    private mutating func copyRun(_ input: UnsafeBufferPointer<UInt8>, from start: Int) -> Int {
        var index = start
        while index < input.count, input[index] != 13, input[index] != 10 { index += 1 }
        let count = index - start
        guard count > 0 else { return index }
        lineLength += count
        decodedOctets += count
        if lineLength > maxLineContent { exceededLineLength = true }
        if decodedOctets > maxMessageSize { exceededSizeLimit = true }
        if !exceededSizeLimit && !exceededLineLength {
            message.append(contentsOf: UnsafeBufferPointer(rebasing: input[start..<index]))
        }
        return index
    }

    private mutating func emit(_ byte: UInt8) {
        lineLength += 1
        decodedOctets += 1
        if lineLength > maxLineContent { exceededLineLength = true }
        if decodedOctets > maxMessageSize { exceededSizeLimit = true }
        if !exceededSizeLimit && !exceededLineLength { message.append(byte) }
    }

    private mutating func emitLineEnd() {
        decodedOctets += 2
        if decodedOctets > maxMessageSize { exceededSizeLimit = true }
        if !exceededSizeLimit && !exceededLineLength { message.append(contentsOf: [13, 10]) }
        lineLength = 0
    }

    /// A LF without CR: never a line end for framing purposes (the next octet is not at a line start,
    /// so no dot-unstuffing and no end of data after it). Stored as CRLF under `normalize`.
    private mutating func bareLineFeed() {
        sawBareLineFeed = true
        // Under `reject` the message fails anyway; the LF is kept as received.
        let stored: [UInt8] = bareLineFeedPolicy == .normalize ? [13, 10] : [10]
        decodedOctets += stored.count
        if decodedOctets > maxMessageSize { exceededSizeLimit = true }
        if !exceededSizeLimit && !exceededLineLength { message.append(contentsOf: stored) }
        lineLength = 0
        state = .text
    }
}
