import Testing

@testable import SMTPProtocol

/// The DATA byte machine: chunk boundaries cannot matter, only `<CRLF>.<CRLF>` ends the data.
@Suite struct MessageDataDecoderTests {
    struct Fixture: CustomTestStringConvertible, Sendable {
        var name: String
        var wire: String
        /// The decoded message under the `normalize` policy.
        var message: String
        /// Octets left after the end of data.
        var rest: String = ""
        var testDescription: String { name }
    }

    static let fixtures: [Fixture] = [
        Fixture(name: "empty message", wire: ".\r\n", message: ""),
        Fixture(name: "one line", wire: "hello\r\n.\r\n", message: "hello\r\n"),
        Fixture(name: "dot-stuffed line", wire: "..x\r\n.\r\n", message: ".x\r\n"),
        Fixture(name: "stuffed lone dot", wire: "a\r\n..\r\nb\r\n.\r\n", message: "a\r\n.\r\nb\r\n"),
        Fixture(name: "dot inside a line is content", wire: "a.b\r\n.\r\n", message: "a.b\r\n"),
        Fixture(name: "<LF>.<LF> is content, not the end", wire: "a\n.\nb\r\n.\r\n", message: "a\r\n.\r\nb\r\n"),
        Fixture(name: "<CR>.<CR> is content", wire: "a\r.\rb\r\n.\r\n", message: "a\r.\rb\r\n"),
        Fixture(name: "bare CR kept", wire: "a\rb\r\n.\r\n", message: "a\rb\r\n"),
        Fixture(name: "NUL is content", wire: "a\u{0}b\r\n.\r\n", message: "a\u{0}b\r\n"),
        Fixture(
            name: "octets after the end are not consumed", wire: "x\r\n.\r\nQUIT\r\n", message: "x\r\n",
            rest: "QUIT\r\n"),
        Fixture(name: "CR CR LF", wire: "a\r\r\n.\r\n", message: "a\r\r\n"),
        Fixture(name: ". CR CR LF", wire: "a\r\n.\r\r\n.\r\n", message: "a\r\n\r\r\n"),
        Fixture(
            name: "UTF-8 and 8-bit octets", wire: "h\u{E9}llo \u{2603}\r\n.\r\n", message: "h\u{E9}llo \u{2603}\r\n"),
    ]

    private static func decode(_ chunks: [[UInt8]], policy: BareLineFeedPolicy = .normalize)
        -> (message: String, rest: String, ended: Bool, decoder: MessageDataDecoder)
    {
        var decoder = MessageDataDecoder(maxMessageSize: 1 << 20, maxLineLength: 1000, bareLineFeedPolicy: policy)
        var rest: [UInt8] = []
        var ended = false
        for chunk in chunks {
            if ended {
                rest += chunk
                continue
            }
            let (next, done) = chunk.withUnsafeBufferPointer { decoder.decode($0, from: 0) }
            if done {
                ended = true
                rest += chunk[next...]
            }
        }
        return (String(decoding: decoder.message, as: UTF8.self), String(decoding: rest, as: UTF8.self), ended, decoder)
    }

    @Test(arguments: fixtures, SessionDriver.Chunking.allCases)
    func decodesTheSameMessageWhateverTheChunking(_ fixture: Fixture, _ chunking: SessionDriver.Chunking) {
        let result = Self.decode(chunking.split(Array(fixture.wire.utf8)))
        #expect(result.ended)
        #expect(result.message == fixture.message)
        #expect(result.rest == fixture.rest)
    }

    @Test func withoutTerminator_dataNeverEnds() {
        let result = Self.decode([Array("a\n.\nb\r.\r\n.\n".utf8)])
        #expect(!result.ended)
    }

    @Test func rejectPolicy_flagsBareLineFeedButStillFramesOnCRLFDotCRLF() {
        let result = Self.decode([Array("a\nb\r\n.\r\n".utf8)], policy: .reject)
        #expect(result.ended)
        #expect(result.decoder.outcome == .bareLineFeed)
        #expect(result.message == "a\nb\r\n")
    }

    @Test func overSizeLimit_isDiscardedButScannedToItsEnd() {
        var decoder = MessageDataDecoder(maxMessageSize: 10, maxLineLength: 1000, bareLineFeedPolicy: .normalize)
        let wire = Array("0123456789A\r\nmore\r\n.\r\nNEXT".utf8)
        let (next, ended) = wire.withUnsafeBufferPointer { decoder.decode($0, from: 0) }
        #expect(ended)
        #expect(decoder.outcome == .exceededSizeLimit)
        #expect(String(decoding: wire[next...], as: UTF8.self) == "NEXT")
        #expect(decoder.message.count <= 10)
    }

    @Test func exactlyAtSizeLimit_isAccepted() {
        var decoder = MessageDataDecoder(maxMessageSize: 10, maxLineLength: 1000, bareLineFeedPolicy: .normalize)
        let wire = Array("01234567\r\n.\r\n".utf8)  // 8 + CRLF = 10 octets of message
        let (_, ended) = wire.withUnsafeBufferPointer { decoder.decode($0, from: 0) }
        #expect(ended)
        #expect(decoder.outcome == .complete)
        #expect(decoder.message.count == 10)
    }

    @Test func overLongTextLine_isFlagged() {
        var decoder = MessageDataDecoder(maxMessageSize: 1 << 20, maxLineLength: 100, bareLineFeedPolicy: .normalize)
        let wire = Array((String(repeating: "x", count: 99) + "\r\n.\r\n").utf8)  // 101 octets with CRLF
        let (_, ended) = wire.withUnsafeBufferPointer { decoder.decode($0, from: 0) }
        #expect(ended)
        #expect(decoder.outcome == .exceededLineLength)
    }

    @Test func lineOfExactlyTheCap_passes() {
        var decoder = MessageDataDecoder(maxMessageSize: 1 << 20, maxLineLength: 100, bareLineFeedPolicy: .normalize)
        let wire = Array((String(repeating: "x", count: 98) + "\r\n.\r\n").utf8)  // 100 octets with CRLF
        let (_, ended) = wire.withUnsafeBufferPointer { decoder.decode($0, from: 0) }
        #expect(ended)
        #expect(decoder.outcome == .complete)
    }
}
