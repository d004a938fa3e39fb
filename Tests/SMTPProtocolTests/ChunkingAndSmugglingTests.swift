import Testing

@testable import SMTPProtocol

/// BDAT (RFC 3030) framing and the SMTP smuggling variants (smtp-behaviour #1, #6, #15).
@Suite struct ChunkingAndSmugglingTests {
    static let hello = "EHLO client.example\r\n"
    static let envelope = "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\n"

    // MARK: BDAT

    @Test(arguments: SessionDriver.Chunking.allCases)
    func eximPattern_mailRcptRcptBdatLastDataQuit_inOneWrite(_ chunking: SessionDriver.Chunking) {
        // smtp-behaviour #6: Exim sends all of this in one TCP write.
        let message = "Subject: x\r\n\r\n.dot stays\r\n"
        var driver = SessionDriver()
        let result = driver.run(
            Self.hello + "MAIL FROM:<a@example.com> SIZE=\(message.utf8.count)\r\nRCPT TO:<b@x.org>\r\n"
                + "RCPT TO:<c@x.org>\r\nBDAT \(message.utf8.count) LAST\r\n" + message + "QUIT\r\n",
            chunking: chunking)
        #expect(result.codes == [250, 250, 250, 250, 250, 221])
        #expect(result.messages == [message])
        #expect(result.submissions.first?.transfer == "BDAT")
        #expect(result.submissions.first?.envelope.forwardPaths.count == 2)
    }

    @Test(arguments: SessionDriver.Chunking.allCases)
    func manySmallChunks_thenZeroLast(_ chunking: SessionDriver.Chunking) {
        var driver = SessionDriver()
        let chunks = (0..<20).map { "BDAT 3\r\nc\($0 % 10)\n" }.joined()
        let result = driver.run(Self.hello + Self.envelope + chunks + "BDAT 0 LAST\r\n", chunking: chunking)
        #expect(result.codes == [250, 250, 250] + Array(repeating: 250, count: 20) + [250])
        #expect(result.messages == [(0..<20).map { "c\($0 % 10)\n" }.joined()])
        #expect(result.replies[3].lines == ["3 octets received"])
    }

    @Test func bdatZeroLast_alone_submitsAnEmptyMessage() {
        var driver = SessionDriver()
        let result = driver.run(Self.hello + Self.envelope + "BDAT 0 LAST\r\n")
        #expect(result.codes == [250, 250, 250, 250])
        #expect(result.messages == [""])
    }

    @Test func bdatChunkContainingCRLFDotCRLF_isContent() {
        var driver = SessionDriver()
        let content = "a\r\n.\r\nMAIL FROM:<x@y.z>\r\n"
        let result = driver.run(Self.hello + Self.envelope + "BDAT \(content.utf8.count) LAST\r\n" + content)
        #expect(result.messages == [content])
    }

    @Test func oversizeChunk_isReadAndDiscarded_then552_andTheSessionContinues() {
        var limits = SMTPLimits()
        limits.maxMessageSize = 10
        var driver = SessionDriver(limits: limits)
        let result = driver.run(
            Self.hello + Self.envelope + "BDAT 6\r\n123456BDAT 6 LAST\r\nABCDEFNOOP\r\n")
        // 6 accepted; 6 more would exceed 10: read, discarded, 552, transaction reset.
        #expect(result.codes == [250, 250, 250, 250, 552, 250])
        #expect(result.enhancedCodes[4] == "5.3.4")
        #expect(result.submissions.isEmpty)
    }

    // MARK: Refused messages, for the audit line (every refusal is logged once, BDAT like DATA)

    private static func driver(maxMessageSize: Int, maxErrors: Int = SMTPLimits().maxErrors) -> SessionDriver {
        var limits = SMTPLimits()
        limits.maxMessageSize = maxMessageSize
        limits.maxErrors = maxErrors
        return SessionDriver(limits: limits)
    }

    @Test(arguments: SessionDriver.Chunking.allCases)
    func aBdatMessageOverTheLimitAtLast_isOneRefusedMessage(_ chunking: SessionDriver.Chunking) throws {
        var driver = Self.driver(maxMessageSize: 10)
        let result = driver.run(
            Self.hello + Self.envelope + "BDAT 6\r\n123456BDAT 6 LAST\r\nABCDEF", chunking: chunking)
        #expect(result.codes == [250, 250, 250, 250, 552])
        let refused = try #require(result.refused.first)
        #expect(result.refused.count == 1)
        #expect(refused.transfer == "BDAT")
        #expect(refused.outcome == .exceededSizeLimit)
        #expect(refused.reply == .messageTooLarge(limit: 10))
        #expect(refused.size == 12)  // every octet of the transaction's chunks, the discarded one included
        #expect(refused.envelope.reversePath.address == "a@example.com")
        #expect(refused.envelope.forwardPaths.count == 1)
    }

    @Test func aSingleOversizeBdatLast_isOneRefusedMessage() {
        var driver = Self.driver(maxMessageSize: 10)
        let result = driver.run(Self.hello + Self.envelope + "BDAT 11 LAST\r\n12345678901NOOP\r\n")
        #expect(result.codes == [250, 250, 250, 552, 250])
        #expect(result.refused.map(\.transfer) == ["BDAT"])
        #expect(result.refused.map(\.size) == [11])
    }

    @Test func theChunkThatGoesOverTheLimit_endsTheTransaction_andLaterChunksAddNoRefusal() {
        // The refusal is reported with the 552 for the chunk that went over the limit: that ends the
        // transaction. The client's further chunks (pipelined, or sent after the 552) belong to no transaction:
        // 503, and no second refused message.
        var driver = Self.driver(maxMessageSize: 10)
        let result = driver.run(
            Self.hello + Self.envelope + "BDAT 6\r\n123456BDAT 6\r\nABCDEFBDAT 3\r\nxyzBDAT 2 LAST\r\nzz")
        #expect(result.codes == [250, 250, 250, 250, 552, 503, 503])
        #expect(result.refused.count == 1)
        #expect(result.refused.first?.size == 12)
        #expect(result.submissions.isEmpty)
    }

    @Test func aBdatSizeRefusalThatIsOneErrorTooMany_isStillARefusedMessage_withThe421() {
        var driver = Self.driver(maxMessageSize: 10, maxErrors: 0)
        let result = driver.run(Self.hello + Self.envelope + "BDAT 11 LAST\r\n12345678901")
        #expect(result.codes == [250, 250, 250, 421])
        #expect(result.closed)
        #expect(result.refused.map(\.reply.code) == [421])
        #expect(result.refused.map(\.outcome) == [.exceededSizeLimit])
    }

    @Test func bdatRejectedForSequence_isNoRefusedMessage() {
        var driver = SessionDriver()
        let result = driver.run(
            Self.hello + "BDAT 3\r\nabc" + "MAIL FROM:<a@example.com>\r\nBDAT 3 LAST\r\nabc")
        #expect(result.codes == [250, 503, 250, 503])
        #expect(result.refused.isEmpty)
    }

    @Test func aDataMessageOverTheLimit_isARefusedMessageWithTransferData() {
        var driver = Self.driver(maxMessageSize: 10)
        let result = driver.run(Self.hello + Self.envelope + "DATA\r\n..12345678901\r\n.\r\n")
        #expect(result.codes == [250, 250, 250, 354, 552])
        #expect(result.refused.map(\.transfer) == ["DATA"])
        #expect(result.refused.map(\.size) == [14])  // dot-unstuffed, with the CRLF
    }

    @Test func bdatWithoutTransaction_consumesItsOctets_then503() {
        var driver = SessionDriver()
        let result = driver.run(Self.hello + "BDAT 9\r\nRSET\r\nXXXNOOP\r\n")
        // The nine octets "RSET\r\nXXX" are chunk data, not commands.
        #expect(result.codes == [250, 503, 250])
    }

    @Test func bdatBeforeRcpt_is503() {
        var driver = SessionDriver()
        let result = driver.run(Self.hello + "MAIL FROM:<a@b.c>\r\nBDAT 2 LAST\r\nxyNOOP\r\n")
        #expect(result.codes == [250, 250, 503, 250])
    }

    @Test func dataAfterBdat_is503() {
        var driver = SessionDriver()
        let first = driver.run(Self.hello + Self.envelope + "BDAT 2\r\nxyDATA\r\n")
        #expect(first.codes == [250, 250, 250, 250, 503])
        let second = driver.run("BDAT 0 LAST\r\n")
        #expect(second.codes == [250])
        #expect(second.messages == ["xy"])
    }

    @Test func malformedBdatSize_closesTheConnection() {
        var driver = SessionDriver()
        let result = driver.run(Self.hello + Self.envelope + "BDAT twelve\r\nNOOP\r\n")
        #expect(result.codes == [250, 250, 250, 501])
        #expect(result.closed)
    }

    // MARK: Smuggling

    struct SmugglingVariant: CustomTestStringConvertible, Sendable {
        var name: String
        var fakeEnd: String
        var testDescription: String { name }
    }

    /// End-of-data look-alikes used by the smuggling scanners (SEC Consult's research, smtpsmug).
    static let variants: [SmugglingVariant] = [
        SmugglingVariant(name: "<LF>.<LF>", fakeEnd: "\n.\n"),
        SmugglingVariant(name: "<LF>.<CR><LF>", fakeEnd: "\n.\r\n"),
        SmugglingVariant(name: "<CR>.<CR><LF>", fakeEnd: "\r.\r\n"),
        SmugglingVariant(name: "<CR><LF>.<LF>", fakeEnd: "\r\n.\n"),
        SmugglingVariant(name: "<CR><LF>.<CR>", fakeEnd: "\r\n.\r"),
        SmugglingVariant(name: "<LF>.<CR>", fakeEnd: "\n.\r"),
        SmugglingVariant(name: "<CR>.<LF>", fakeEnd: "\r.\n"),
        SmugglingVariant(name: "<CR>.<CR>", fakeEnd: "\r.\r"),
        SmugglingVariant(name: "<CR><LF><NUL>.<CR><LF>", fakeEnd: "\r\n\u{0}.\r\n"),
        SmugglingVariant(name: "<CR><LF>.<NUL><CR><LF>", fakeEnd: "\r\n.\u{0}\r\n"),
        SmugglingVariant(name: "<CR><CR><LF>.<CR><CR><LF>", fakeEnd: "\r\r\n.\r\r\n"),
        SmugglingVariant(name: "<CR><LF>.<CR><CR><LF>", fakeEnd: "\r\n.\r\r\n"),
        SmugglingVariant(name: "<LF><LF>.<LF><LF>", fakeEnd: "\n\n.\n\n"),
        SmugglingVariant(name: "<CR><LF>. <CR><LF>", fakeEnd: "\r\n. \r\n"),
    ]

    @Test(arguments: variants, SessionDriver.Chunking.allCases)
    func fakeEndOfData_isContent_andExactlyOneMessageIsSubmitted(
        _ variant: SmugglingVariant, _ chunking: SessionDriver.Chunking
    ) {
        let smuggled = "MAIL FROM:<evil@attacker.example>\r\nRCPT TO:<victim@example.net>\r\nDATA\r\nSmuggled\r\n"
        let wire =
            Self.hello + Self.envelope + "DATA\r\nSubject: real\r\n\r\nbody" + variant.fakeEnd + smuggled
            + ".\r\nQUIT\r\n"
        var driver = SessionDriver()
        let result = driver.run(wire, chunking: chunking)
        #expect(result.submissions.count == 1)
        #expect(result.submissions.first?.envelope.reversePath.address == "a@example.com")
        #expect(result.messages.first?.contains("MAIL FROM:<evil@attacker.example>") == true)
        #expect(result.codes == [250, 250, 250, 354, 250, 221])
    }
}

/// Regressions first seen end to end, with real clients: chunks of an aborted BDAT transaction reaching the next
/// message, and octets pipelined behind a refused DATA read as commands.
@Suite struct SessionRegressionTests {
    static let hello = "EHLO client.example\r\n"

    @Test(arguments: ["RSET\r\n", "EHLO again\r\n", "HELO again\r\n"])
    func bdatChunksOfAnAbortedTransaction_neverLeakIntoTheNextMessage(_ abort: String) {
        var limits = SMTPLimits()
        limits.maxMessageSize = 1000
        var driver = SessionDriver(limits: limits)
        let envelope = "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n"
        var wire = Self.hello
        for letter in ["A", "B", "C"] {
            wire += envelope + "BDAT 900\r\n" + String(repeating: letter, count: 900) + abort
        }
        wire += envelope + "BDAT 900 LAST\r\n" + String(repeating: "Z", count: 900)
        let result = driver.run(wire)
        #expect(result.messages == [String(repeating: "Z", count: 900)])
        #expect(result.codes.last == 250)
    }

    @Test func bdatChunksBeforeA552_areDropped() {
        var limits = SMTPLimits()
        limits.maxMessageSize = 10
        var driver = SessionDriver(limits: limits)
        let result = driver.run(
            Self.hello + "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 6\r\nAAAAAABDAT 6\r\nBBBBBB"
                + "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 2 LAST\r\nZZ")
        #expect(result.messages == ["ZZ"])
    }

    @Test func contentPipelinedBehindARefusedData_isNeverExecutedAsCommands() {
        var driver = SessionDriver()
        let wire =
            Self.hello + "MAIL FROM:<device@example.com>\r\nRCPT TO:<not an address>\r\nDATA\r\n"
            + "Subject: looks harmless\r\n\r\nMAIL FROM:<evil@example.com>\r\nRCPT TO:<victim@example.com>\r\nDATA\r\n"
            + "Subject: INJECTED\r\n\r\ninjected\r\n.\r\nQUIT\r\n"
        for chunking in SessionDriver.Chunking.allCases {
            var driver = SessionDriver()
            let result = driver.run(wire, chunking: chunking)
            #expect(result.submissions.isEmpty, "\(chunking)")
            #expect(result.closed, "\(chunking)")
        }
        let result = driver.run(wire)
        #expect(result.codes == [250, 250, 501, 503, 554])
        #expect(result.enhancedCodes.last == "5.5.0")
    }

    @Test func octetsAlreadyBehindARefusedData_closeTheSession_evenWhenTheyLookLikeCommands() {
        var driver = SessionDriver()
        let result = driver.run(
            Self.hello + "MAIL FROM:<device@example.com>\r\nRCPT TO:<not an address>\r\nDATA\r\n"
                + "RCPT TO:<victim@example.com>\r\nDATA\r\nSubject: INJECTED\r\n\r\nx\r\n.\r\nQUIT\r\n")
        #expect(result.codes == [250, 250, 501, 503, 554])
        #expect(result.submissions.isEmpty)
        #expect(result.closed)
    }

    /// A DATA refused inside a BDAT transaction (503) with a BDAT behind it: in the same read, the BDAT is text
    /// sent without waiting for the 354 and closes the session; in a read of its own it is a command and
    /// completes the transaction with the chunk sent before. FuzzFraming's comparison of chunkings allows this.
    @Test func bdatBehindARefusedData_dependsOnTheReadBoundary() {
        let wire = Self.hello + "MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nBDAT 2\r\nDSDATA\r\nBDAT 1 LAST\r\nD"
        var whole = SessionDriver()
        let pipelined = whole.run(wire)
        #expect(pipelined.codes == [250, 250, 250, 250, 503, 554])
        #expect(pipelined.submissions.isEmpty)
        #expect(pipelined.closed)
        var bytewise = SessionDriver()
        let waiting = bytewise.run(wire, chunking: .byteByByte)
        #expect(Array(waiting.codes.prefix(5)) == [250, 250, 250, 250, 503])
        #expect(waiting.messages == ["DSD"])
        #expect(!waiting.closed)
    }

    @Test func refusedDataWithNothingBehindIt_keepsTheSessionUsable() {
        var driver = SessionDriver()
        let first = driver.run(Self.hello + "MAIL FROM:<a@b.c>\r\nDATA\r\n")
        #expect(first.codes == [250, 250, 503])
        #expect(!first.closed)
        let second = driver.run("RCPT TO:<d@e.f>\r\nDATA\r\nx\r\n.\r\n")
        #expect(second.codes == [250, 354, 250])
    }
}
