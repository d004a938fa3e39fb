import MailParser
import Testing

/// RFC 8621 §4.1.4 body selection on the shapes real clients send.
@Suite struct BodySelectionTests {
    static func indices(_ mail: ParsedMail) -> [[Int]] {
        [mail.textBody.map(\.partIndex), mail.htmlBody.map(\.partIndex), mail.attachments.map(\.partIndex)]
    }

    @Test(arguments: LineEnding.allCases)
    func singleTextPart(_ ending: LineEnding) {
        #expect(Self.indices(parse("Subject: x\n\nhello\n", ending)) == [[0], [0], []])
        #expect(Self.indices(parse("Content-Type: text/html\n\n<p>x</p>\n", ending)) == [[0], [0], []])
    }

    @Test(arguments: LineEnding.allCases)
    func nonTextRootIsOneAttachment(_ ending: LineEnding) {
        // smtp-behaviour.md §5.2: an image/png root is an attachment and no body... unless inline media.
        let pdf = parse("Content-Type: application/pdf\nContent-Transfer-Encoding: base64\n\nJVBERg==\n", ending)
        #expect(Self.indices(pdf) == [[], [], [0]])
        let image = parse("Content-Type: image/png\nContent-Disposition: attachment\n\nx\n", ending)
        #expect(Self.indices(image) == [[], [], [0]])
    }

    @Test(arguments: LineEnding.allCases)
    func alternativeWithRelatedImageAndAttachments(_ ending: LineEnding) {
        // The common Gmail/Outlook shape: mixed(alternative(text, related(html, image)), pdf).
        let mail = parse(
            """
            Content-Type: multipart/mixed; boundary=m

            --m
            Content-Type: multipart/alternative; boundary=a

            --a
            Content-Type: text/plain

            plain
            --a
            Content-Type: multipart/related; boundary=r

            --r
            Content-Type: text/html

            <img src="cid:logo">
            --r
            Content-Type: image/png
            Content-ID: <logo>
            Content-Disposition: inline; filename=logo.png

            PNG
            --r--
            --a--
            --m
            Content-Type: application/pdf; name=report.pdf
            Content-Disposition: attachment; filename=report.pdf

            PDF
            --m--
            """, ending)
        #expect(Self.indices(mail) == [[2], [4], [5, 6]])
        #expect(mail.attachments[0].contentID == "logo")
        #expect(mail.attachments[0].isInRelated)
        #expect(mail.attachments[1].filename == "report.pdf")
    }

    @Test(arguments: LineEnding.allCases)
    func alternativeWithOnlyOneFlavourFillsBoth(_ ending: LineEnding) {
        let mail = parse(
            "Content-Type: multipart/alternative; boundary=a\n\n--a\nContent-Type: text/html\n\n<p>x</p>\n--a--\n",
            ending)
        #expect(Self.indices(mail) == [[1], [1], []])
    }

    @Test(arguments: LineEnding.allCases)
    func severalInlineTextPartsInMixedAreAllBody(_ ending: LineEnding) {
        // thirdparty/003 shape: JMAP concatenates them.
        let mail = parse(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\n\none\n--b\n\ntwo\n--b\n\nthree\n--b--\n", ending)
        #expect(Self.indices(mail) == [[1, 2, 3], [1, 2, 3], []])
    }

    @Test(arguments: LineEnding.allCases)
    func textPartWithContentIDStaysBody(_ ending: LineEnding) {
        // s-nail puts Content-ID and Content-Disposition: inline on the body (smtp-behaviour.md §1).
        let mail = parse(
            """
            Content-Type: multipart/mixed; boundary=b

            --b
            Content-Type: text/plain; charset=utf-8
            Content-Disposition: inline
            Content-ID: <20261128.abc@host>

            body
            --b
            Content-Type: application/octet-stream
            Content-Disposition: attachment; filename="file.bin"

            x
            --b--
            """, ending)
        #expect(Self.indices(mail) == [[1], [1], [2]])
    }

    @Test(arguments: LineEnding.allCases)
    func namedTextPartAfterTheFirstIsAnAttachment(_ ending: LineEnding) {
        let mail = parse(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nbody\n--b\n"
                + "Content-Type: text/plain; name=notes.txt\n\nn\n--b--\n", ending)
        #expect(Self.indices(mail) == [[1], [1], [2]])
    }

    @Test(arguments: LineEnding.allCases)
    func inlineImageInMixedIsInBothBodiesAndNotAnAttachment(_ ending: LineEnding) {
        // RFC 8621: attachments hold inline media only when "not in both textBody and htmlBody".
        let mail = parse(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\n\ntext\n--b\nContent-Type: image/jpeg\n\nJPG\n--b--\n",
            ending)
        #expect(Self.indices(mail) == [[1, 2], [1, 2], []])
    }

    @Test(arguments: LineEnding.allCases)
    func imageInsideAlternativeGoesToAttachments(_ ending: LineEnding) {
        let mail = parse(
            """
            Content-Type: multipart/alternative; boundary=a

            --a
            Content-Type: text/plain

            t
            --a
            Content-Type: multipart/mixed; boundary=m

            --m
            Content-Type: text/html

            <p>h</p>
            --m
            Content-Type: image/gif

            GIF
            --m--
            --a--
            """, ending)
        #expect(Self.indices(mail) == [[1], [3, 4], [4]])
    }

    @Test(arguments: LineEnding.allCases)
    func attachedMessageIsAnAttachmentLeaf(_ ending: LineEnding) {
        let mail = parse(
            "Content-Type: multipart/mixed; boundary=b\n\n--b\n\nfwd\n--b\n"
                + "Content-Type: message/rfc822\n\nSubject: s\n\nx\n--b--\n", ending)
        #expect(Self.indices(mail) == [[1], [1], [2]])
        #expect(mail.attachments[0].children.count == 1)
    }
}
