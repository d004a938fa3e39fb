import MailParser
import Testing

/// The MIME tree: RFC 2046 §5.1 multiparts, §5.2 messages, and their broken variants.
@Suite struct MultipartTests {
    @Test(arguments: LineEnding.allCases)
    func preambleEpilogueAndPartContentExcludeDelimiterLineBreaks(_ ending: LineEnding) {
        let mail = parse(
            """
            Content-Type: multipart/mixed; boundary="simple boundary"

            This is the preamble.
            --simple boundary

            first
            --simple boundary
            Content-type: text/plain; charset=us-ascii

            second

            --simple boundary--
            This is the epilogue.

            """, ending)
        let root = mail.root
        #expect(root.contentType == "multipart/mixed")
        #expect(root.children.map(\.partIndex) == [1, 2])
        #expect(root.preamble == ending.bytes("This is the preamble."))
        #expect(root.epilogue == ending.bytes("This is the epilogue.\n"))
        #expect(root.children[0].text == "first")
        #expect(root.children[1].text == ending.text("second\n"))
        #expect(mail.diagnostics.isEmpty)
    }

    @Test(arguments: LineEnding.allCases)
    func boundariesWithSpacesQuotesAndTransportPadding(_ ending: LineEnding) {
        let mail = parse(
            """
            Content-Type: multipart/mixed; boundary="it's a \\"b\\" (x)"

            --it's a "b" (x)  \t

            one
            --it's a "b" (x)--   
            """, ending)
        #expect(mail.root.children.count == 1)
        #expect(mail.root.children[0].text == "one")
        #expect(mail.diagnostics.isEmpty)
    }

    @Test(arguments: LineEnding.allCases)
    func boundaryEndingInSpaceMatchesTrimmedDelimiter(_ ending: LineEnding) {
        let mail = parse("Content-Type: multipart/mixed; boundary=\"b  \"\n\n--b\n\none\n--b--\n", ending)
        #expect(mail.root.children.map { $0.text } == ["one"])
    }

    @Test(arguments: LineEnding.allCases)
    func missingCloseDelimiterEndsAtEndOfInput(_ ending: LineEnding) {
        let mail = parse("Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n", ending)
        #expect(mail.root.children.map { $0.text } == ["one", ending.text("two\n")])
        #expect(mail.codes == ["multipart-missing-close-delimiter"])
    }

    @Test(arguments: LineEnding.allCases)
    func enclosingBoundaryClosesAnUnclosedInnerMultipart(_ ending: LineEnding) {
        // RFC 2046 §5.1.2: the outer delimiter ends the inner multipart.
        let mail = parse(
            """
            Content-Type: multipart/mixed; boundary=outer

            --outer
            Content-Type: multipart/alternative; boundary=inner

            --inner

            plain
            --outer
            Content-Type: image/png
            Content-Transfer-Encoding: base64

            iVBORw0K
            --outer--
            """, ending)
        #expect(mail.root.children.map(\.contentType) == ["multipart/alternative", "image/png"])
        #expect(mail.root.children[0].children.map { $0.text } == ["plain"])
        #expect(mail.root.children[1].partIndex == 3)
        #expect(mail.codes == ["multipart-missing-close-delimiter"])
        #expect(mail.diagnostics[0].partIndex == 1)
    }

    @Test(arguments: LineEnding.allCases)
    func innermostBoundaryWinsOnPrefixMatch(_ ending: LineEnding) {
        // RFC 2046 §5.1.1: a delimiter is recognised by prefix; the innermost multipart is asked first.
        let mail = parse(
            """
            Content-Type: multipart/mixed; boundary=ab

            --ab
            Content-Type: multipart/mixed; boundary=a

            --a
            Content-Type: text/plain

            body
            --abc
            Content-Type: text/html

            body2
            --a--
            --ab--
            """, ending)
        #expect(mail.root.children.count == 1)
        #expect(mail.root.children[0].children.map(\.contentType) == ["text/plain", "text/html"])
    }

    @Test(arguments: LineEnding.allCases)
    func missingBoundaryParameterIsOneTextPart(_ ending: LineEnding) {
        let mail = parse("Content-Type: multipart/mixed; charset=utf-8\n\nhello\n", ending)
        #expect(mail.root.contentType == "text/plain")
        #expect(mail.root.text == ending.text("hello\n"))
        #expect(mail.codes == ["multipart-missing-boundary"])
        #expect(mail.textBody.map(\.partIndex) == [0])
    }

    @Test(arguments: LineEnding.allCases)
    func boundaryNeverFoundIsOneTextPart(_ ending: LineEnding) {
        let mail = parse("Content-Type: multipart/mixed; boundary=zz\n\nhello\n", ending)
        #expect(mail.root.contentType == "text/plain")
        #expect(mail.root.text == ending.text("hello\n"))
        #expect(mail.codes == ["multipart-boundary-not-found"])
    }

    @Test(arguments: LineEnding.allCases)
    func headerOnlyAndEmptyParts(_ ending: LineEnding) {
        let mail = parse(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\n--b\nContent-Type: text/html\n--b--\n", ending)
        #expect(mail.root.children.map(\.contentType) == ["text/plain", "text/html"])
        #expect(mail.root.children.allSatisfy { $0.content.isEmpty })
    }

    @Test(arguments: LineEnding.allCases)
    func nestedMessageIsParsedAndNumberedSeparately(_ ending: LineEnding) {
        let mail = parse(
            """
            Content-Type: multipart/mixed; boundary=b

            --b

            see attached
            --b
            Content-Type: message/rfc822

            Subject: inner
            Content-Type: multipart/alternative; boundary=c

            --c

            inner text
            --c--
            --b
            Content-Type: application/pdf

            %PDF
            --b--
            """, ending)
        let message = mail.root.children[1]
        #expect(message.contentType == "message/rfc822")
        #expect(message.partIndex == 2)
        #expect(message.content.starts(with: ending.bytes("Subject: inner\n")))
        #expect(message.children.count == 1)
        let inner = message.children[0]
        #expect(inner.partIndex == 0)
        #expect(inner.headerValues("subject") == ["inner"])
        #expect(inner.children.map(\.partIndex) == [1])
        #expect(inner.children[0].text == "inner text")
        #expect(mail.root.children[2].partIndex == 3)
        #expect(mail.attachments.map(\.partIndex) == [2, 3])
    }

    @Test(arguments: LineEnding.allCases)
    func base64EncodedMessageIsDecodedFirst(_ ending: LineEnding) {
        // "Subject: hi\r\n\r\nbody" in base64: forbidden by RFC 2046 §5.2.1, seen in the wild.
        let mail = parse(
            """
            Content-Type: multipart/mixed; boundary=b

            --b
            Content-Type: message/rfc822
            Content-Transfer-Encoding: base64

            U3ViamVjdDogaGkNCg0KYm9keQ==
            --b--
            """, ending)
        let message = mail.root.children[0]
        #expect(message.children.first?.headerValues("subject") == ["hi"])
        #expect(message.children.first?.text == "body")
        #expect(mail.codes == ["message-transfer-encoded"])
    }

    @Test(arguments: LineEnding.allCases)
    func base64EncodedMultipartIsDecodedThenSplit(_ ending: LineEnding) {
        // base64 of "--x\r\n\r\none\r\n--x--\r\n"
        let mail = parse(
            "Content-Type: multipart/mixed; boundary=x\nContent-Transfer-Encoding: base64\n\n"
                + "LS14DQoNCm9uZQ0KLS14LS0NCg==\n", ending)
        #expect(mail.root.children.map { $0.text } == ["one"])
        #expect(mail.codes == ["multipart-transfer-encoded"])
    }

    @Test(arguments: LineEnding.allCases)
    func digestDefaultsToMessageRFC822(_ ending: LineEnding) {
        let mail = parse(
            """
            Content-Type: multipart/digest; boundary=d

            --d

            Subject: one

            first
            --d
            Content-Type: text/plain

            not a message
            --d--
            """, ending)
        #expect(mail.root.children.map(\.contentType) == ["message/rfc822", "text/plain"])
        #expect(mail.root.children[0].children.first?.headerValues("subject") == ["one"])
    }

    @Test(arguments: LineEnding.allCases)
    func relatedChildrenAreMarked(_ ending: LineEnding) {
        let mail = parse(
            "Content-Type: multipart/related; boundary=r\n\n--r\nContent-Type: text/html\n\n<img src=cid:i>\n--r\n"
                + "Content-Type: image/gif\nContent-ID: <i>\n\nGIF\n--r--\n", ending)
        #expect(mail.root.isInRelated == false)
        #expect(mail.root.children.allSatisfy { $0.isInRelated })
    }

    @Test func mixedLineEndingsInOneMessage() {
        let input = Array("Content-Type: multipart/mixed; boundary=b\r\n\n--b\r\n\r\none\n--b\n\ntwo\r\n--b--\n".utf8)
        let mail = MailParser().parse(input)
        #expect(mail.root.children.map { $0.text } == ["one", "two"])
        #expect(mail.diagnostics.isEmpty)
    }
}
