import MailParser
import Testing

/// Content-Type / Content-Disposition parameters, RFC 2231 extended values, file names.
@Suite struct ParameterTests {
    static func attachment(_ headers: String, _ ending: LineEnding) -> MIMEPart {
        parse("Content-Type: multipart/mixed; boundary=b\n\n--b\n\(headers)\n\ndata\n--b--\n", ending).root.children[0]
    }

    @Test(arguments: LineEnding.allCases)
    func rfc2231ContinuationsCharsetAndPercentEncoding(_ ending: LineEnding) {
        let part = Self.attachment(
            """
            Content-Type: application/pdf
            Content-Disposition: attachment;
             filename*0*=UTF-8'fr'r%C3%A9sum;
             filename*1*=%C3%A9%20final;
             filename*2=".pdf"
            """, ending)
        #expect(part.filename == "résumé final.pdf")
        #expect(part.dispositionType == "attachment")
    }

    @Test(arguments: LineEnding.allCases)
    func rfc2231SingleExtendedValueBeatsThePlainOne(_ ending: LineEnding) {
        let part = Self.attachment(
            "Content-Type: text/plain; name=\"fallback.txt\"; name*=iso-8859-1''caf%E9.txt", ending)
        #expect(part.filename == "café.txt")
        #expect(part.parameters["name"] == "café.txt")
    }

    @Test(arguments: LineEnding.allCases)
    func sectionsOutOfOrderAreSorted(_ ending: LineEnding) {
        let part = Self.attachment("Content-Disposition: attachment; filename*1=\"b.txt\"; filename*0=\"a\"", ending)
        #expect(part.filename == "ab.txt")
    }

    @Test(arguments: LineEnding.allCases)
    func encodedWordInsideQuotedFilenameIsDecoded(_ ending: LineEnding) {
        // QUIRK: forbidden by RFC 2047 §5, sent by Outlook and Gmail.
        let part = Self.attachment(
            "Content-Type: application/pdf; name=\"=?UTF-8?B?w6l0w6kucGRm?=\"\nContent-Disposition: attachment", ending)
        #expect(part.filename == "été.pdf")
    }

    @Test(arguments: LineEnding.allCases)
    func dispositionFilenameWinsOverContentTypeName(_ ending: LineEnding) {
        let part = Self.attachment(
            "Content-Type: image/png; name=a.png\nContent-Disposition: inline; filename=\"b.png\"", ending)
        #expect(part.filename == "b.png")
        #expect(part.dispositionType == "inline")
    }

    @Test(arguments: LineEnding.allCases)
    func quotedValuesEscapesCommentsAndCase(_ ending: LineEnding) {
        let part = Self.attachment(
            "Content-Type: Text/PLAIN (comment) ; CHARSET=\"ISO-8859-1\"; Format=flowed; x=\"a\\\"b\"", ending)
        #expect(part.contentType == "text/plain")
        #expect(part.charset == "iso-8859-1")
        #expect(part.parameters["format"] == "flowed")
        #expect(part.parameters["x"] == "a\"b")
    }

    @Test(arguments: LineEnding.allCases)
    func foldedParametersWithoutSemicolonAreRead(_ ending: LineEnding) {
        let mail = parse("Content-Type: multipart/mixed\n\tboundary=\"bb\"\n\n--bb\n\nx\n--bb--\n", ending)
        #expect(mail.root.parameters["boundary"] == "bb")
        #expect(mail.root.children.count == 1)
    }

    @Test(arguments: LineEnding.allCases)
    func unquotedFilenameWithSpaces(_ ending: LineEnding) {
        let part = Self.attachment("Content-Disposition: attachment; filename=my report.pdf ; size=3", ending)
        #expect(part.filename == "my report.pdf")
        #expect(part.contentType == "text/plain")
    }

    @Test(arguments: LineEnding.allCases)
    func contentIDWithoutBrackets(_ ending: LineEnding) {
        let part = Self.attachment("Content-Type: image/gif\nContent-ID: <img1@example.com>", ending)
        #expect(part.contentID == "img1@example.com")
    }

    @Test(arguments: LineEnding.allCases)
    func invalidContentTypeIsTextPlain(_ ending: LineEnding) {
        let mail = parse("Content-Type: garbage; charset=utf-8\n\nbody\n", ending)
        #expect(mail.root.contentType == "text/plain")
        #expect(mail.root.charset == "utf-8")
        #expect(mail.codes == ["content-type-invalid"])
    }

    /// `text/plain>` is no `type/subtype` of RFC 2045 tokens (">" is a tspecial): RFC 2045 §5.2 reads it as
    /// `text/plain; charset=us-ascii`, so the text stays the body instead of becoming an attachment.
    @Test(arguments: LineEnding.allCases)
    func unparsableContentTypeIsTextPlainInUSASCII(_ ending: LineEnding) {
        for declared in ["text/plain>", "text/<html>", "text/pl@in", "multipart/mixed,", "text/plain[1]"] {
            let mail = parse("Content-Type: \(declared)\n\nbody\n", ending)
            #expect(mail.root.contentType == "text/plain", "\(declared)")
            #expect(mail.root.charset == "us-ascii", "\(declared)")
            #expect(mail.textBody.map(\.partIndex) == [0], "\(declared)")
            #expect(mail.attachments.isEmpty, "\(declared)")
            #expect(mail.codes == ["content-type-invalid"], "\(declared)")
        }
        // Valid tokens keep their type, even unusual ones.
        #expect(
            parse("Content-Type: application/x-foo+bar.v1\n\nx\n", ending).root.contentType
                == "application/x-foo+bar.v1")
    }

    @Test(arguments: LineEnding.allCases)
    func trailingCommentAfterUnquotedValue(_ ending: LineEnding) {
        // RFC 2045 §5.1's own example.
        let mail = parse("Content-type: text/plain; charset=us-ascii (Plain text)\n\nhi\n", ending)
        #expect(mail.root.charset == "us-ascii")
        #expect(mail.diagnostics.isEmpty)
        let part = Self.attachment("Content-Disposition: attachment; filename=report (1).pdf", ending)
        #expect(part.filename == "report (1).pdf")
    }
}
