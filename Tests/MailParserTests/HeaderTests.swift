import MailParser
import Testing

/// RFC 5322 header blocks: unfolding, obsolete syntax, 8-bit octets, duplicates, the size cap.
@Suite struct HeaderTests {
    @Test(arguments: LineEnding.allCases)
    func foldedFieldsAreUnfolded(_ ending: LineEnding) {
        let mail = parse("Subject: a long\n  folded\n\tsubject\nX-A: 1\n\nbody\n", ending)
        #expect(mail.subject == "a long  folded\tsubject")
        #expect(mail.headers.map(\.name) == ["Subject", "X-A"])
        #expect(mail.headers[0].rawValue == Array("a long  folded\tsubject".utf8))
        #expect(mail.root.text == ending.text("body\n"))
    }

    @Test(arguments: LineEnding.allCases)
    func obsoleteWhitespaceBeforeColonIsAField(_ ending: LineEnding) {
        // RFC 5322 §4.5 obs-optional; Python's email ends the header here (smtp-behaviour.md §5.3 #5).
        let mail = parse("Subject :x\nFrom\t: a@example.com\nTo:b@example.com\n\nbody\n", ending)
        #expect(mail.subject == "x")
        #expect(mail.from == [MailAddress(address: "a@example.com")])
        #expect(mail.to == [MailAddress(address: "b@example.com")])
        #expect(mail.diagnostics.isEmpty)
    }

    @Test(arguments: LineEnding.allCases)
    func eightBitHeaderOctetsAreReadAsUTF8OrWindows1252(_ ending: LineEnding) {
        var input = ending.bytes("Subject: caf\u{E9} ol\u{E9}\nX-Latin: ")
        input += [0x63, 0x61, 0x66, 0xE9, 0x80]  // "caf\u{E9}\u{20AC}" in windows-1252
        input += ending.bytes("\n\nbody\n")
        let mail = MailParser().parse(input)
        #expect(mail.subject == "café olé")
        #expect(mail.headerValues("x-latin") == ["café€"])
    }

    @Test(arguments: LineEnding.allCases)
    func duplicateFieldsAreKeptInOrder(_ ending: LineEnding) {
        let mail = parse(
            "Received: one\nX-Dup: 1\nReceived: two\nx-dup: 2\nSubject: first\nSubject: second\n\n", ending)
        #expect(mail.headerValues("RECEIVED") == ["one", "two"])
        #expect(mail.headerValues("X-Dup") == ["1", "2"])
        #expect(mail.subject == "first")
    }

    @Test(arguments: LineEnding.allCases)
    func headerValuesAreDecoded(_ ending: LineEnding) {
        let mail = parse("X-Note: =?UTF-8?Q?gr=C3=BC=C3=9Fe?= aus\n Berlin\n\n", ending)
        #expect(mail.headerValues("x-note") == ["grüße aus Berlin"])
        #expect(mail.headers[0].rawValue == Array("=?UTF-8?Q?gr=C3=BC=C3=9Fe?= aus Berlin".utf8))
    }

    @Test(arguments: LineEnding.allCases)
    func messageIDLosesItsAngleBrackets(_ ending: LineEnding) {
        let mail = parse("Message-ID:  <abc.123@example.com> (comment)\n\n", ending)
        #expect(mail.messageID == "abc.123@example.com")
        #expect(parse("Subject: x\n\n", ending).messageID == nil)
    }

    @Test(arguments: LineEnding.allCases)
    func aLineThatIsNotAFieldStartsTheBody(_ ending: LineEnding) {
        let mail = parse("Subject: x\nthis is text\nmore\n", ending)
        #expect(mail.subject == "x")
        #expect(mail.root.text == ending.text("this is text\nmore\n"))
        #expect(mail.codes.contains("header-missing-separator"))
    }

    @Test(arguments: LineEnding.allCases)
    func mboxFromLineIsSkipped(_ ending: LineEnding) {
        let mail = parse("From sender@example.com Sat Nov 28 10:00:00 2026\nSubject: x\n\nbody\n", ending)
        #expect(mail.subject == "x")
        #expect(mail.codes == ["header-mbox-from-line"])
    }

    @Test(arguments: LineEnding.allCases)
    func messageWithoutBodyOrSeparator(_ ending: LineEnding) {
        let mail = parse("Subject: only a header\n", ending)
        #expect(mail.subject == "only a header")
        #expect(mail.root.content.isEmpty)
        #expect(MailParser().parse([]).root.contentType == "text/plain")
    }

    @Test(arguments: LineEnding.allCases)
    func headerBlockCapDropsLaterFieldsButFindsTheBody(_ ending: LineEnding) {
        let parser = MailParser(limits: .init(maxHeaderBlockSize: 64))
        let long = String(repeating: "x", count: 100)
        let mail = parser.parse(ending.bytes("Subject: short\nX-Long: \(long)\n \(long)\nTo: a@example.com\n\nbody\n"))
        #expect(mail.subject == "short")
        #expect(mail.headerValues("x-long").isEmpty)
        #expect(mail.to.isEmpty)
        #expect(mail.root.text == ending.text("body\n"))
        #expect(mail.codes == ["header-block-too-large"])
    }

    @Test func defaultLimitsAreDocumentedValues() {
        let limits = MailParser.Limits()
        #expect(limits.maxHeaderBlockSize == 102_400)
        #expect(limits.maxDepth == 50)
        #expect(limits.maxParts == 10_000)
        #expect(limits.maxEmbeddedMessageDepth == 10)
    }

    @Test(arguments: LineEnding.allCases)
    func indentedFirstLineOfAHeaderlessPartIsBody(_ ending: LineEnding) {
        let mail = parse("Content-Type: multipart/mixed; boundary=b\n\n--b\n    indented\ntext\n--b--\n", ending)
        #expect(mail.root.children.first?.text == ending.text("    indented\ntext"))
    }

    /// A broken generator indented the first field: the stray fold is repaired (the field is read without its
    /// leading whitespace, as Stalwart does), not taken as the start of the body, which lost every header.
    @Test(arguments: LineEnding.allCases)
    func indentedFirstFieldIsRepaired(_ ending: LineEnding) {
        let mail = parse(" Subject: hello\nFrom: a@example.com\nTo: b@example.com\n\nbody\n", ending)
        #expect(mail.subject == "hello")
        #expect(mail.from == [MailAddress(address: "a@example.com")])
        #expect(mail.to == [MailAddress(address: "b@example.com")])
        #expect(mail.root.text == ending.text("body\n"))
        #expect(mail.codes == ["header-leading-whitespace"])
    }

    /// An indented first line that is no field (a blank or junk line before the header) is skipped, as
    /// Python's email does (`FirstHeaderLineIsContinuationDefect`), when real fields follow it.
    @Test(arguments: LineEnding.allCases)
    func strayIndentedLineBeforeTheFieldsIsSkipped(_ ending: LineEnding) {
        let mail = parse("\t \n  junk text\nSubject: hello\n\nbody\n", ending)
        #expect(mail.subject == "hello")
        #expect(mail.root.text == ending.text("body\n"))
        #expect(mail.codes == ["header-leading-whitespace"])
    }
}
