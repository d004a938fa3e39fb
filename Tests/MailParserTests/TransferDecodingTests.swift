import MailParser
import Testing

/// Content-Transfer-Encoding: quoted-printable, base64, identity encodings.
@Suite struct TransferDecodingTests {
    static func body(_ encoding: String, _ content: String, _ ending: LineEnding, type: String = "application/x-test")
        -> ParsedMail
    {
        parse("Content-Type: \(type)\nContent-Transfer-Encoding: \(encoding)\n\n\(content)", ending)
    }

    @Test(arguments: LineEnding.allCases)
    func quotedPrintableSoftBreaksHexAndBadEscapes(_ ending: LineEnding) {
        let mail = Self.body("quoted-printable", "caf=C3=a9 soft=\nbreak=  \nnext =ZZ end=4\ntrailing   \nlast", ending)
        #expect(mail.root.content == ending.bytes("café softbreaknext =ZZ end=4\ntrailing\nlast"))
        #expect(mail.codes == ["quoted-printable-invalid-escape"])
    }

    @Test(arguments: LineEnding.allCases)
    func quotedPrintableKeepsWhitespaceBeforeSoftBreak(_ ending: LineEnding) {
        let mail = Self.body("Quoted-Printable", "a =\nb=20\nc", ending)
        #expect(mail.root.content == ending.bytes("a b \nc"))
        #expect(mail.diagnostics.isEmpty)
    }

    /// A base64 leaf that is neither text nor a message keeps its encoded octets (a slice of the message, so
    /// no decoded copy of a large attachment is held), with the same diagnostics and decoded octets as a decode.
    @Test(arguments: LineEnding.allCases)
    func base64Attachment_isKeptEncoded_andDecodesToTheSameOctets(_ ending: LineEnding) throws {
        let encoded = "SGVs bG8s\n\tIHdv\ncm*xk IQ\n"
        let mail = Self.body("base64", encoded, ending)
        let kept = try #require(mail.root.base64Content)
        #expect(String(decoding: mail.root.content, as: UTF8.self) == "Hello, world!")
        #expect(kept.decodedCount == 13)
        #expect(kept.decoded() == mail.root.content)
        #expect(Array(kept.encoded) == ending.bytes(encoded))
        #expect(mail.codes == ["base64-invalid-characters", "base64-missing-padding"])
        #expect(Self.body("base64", encoded, ending, type: "text/plain").root.base64Content == nil)
        // Equal to a part holding the same octets decoded.
        var decoded = mail.root
        decoded.content = decoded.content
        #expect(decoded.base64Content == nil)
        #expect(decoded == mail.root)
    }

    @Test(arguments: LineEnding.allCases)
    func base64IgnoresLineLengthAndWhitespace(_ ending: LineEnding) {
        let mail = Self.body("BASE64", "SGVs bG8s\n\tIHdv\ncmxk IQ==\n", ending)
        #expect(String(decoding: mail.root.content, as: UTF8.self) == "Hello, world!")
        #expect(mail.diagnostics.isEmpty)
    }

    @Test(arguments: LineEnding.allCases)
    func base64MissingPaddingDecodesWithDiagnostic(_ ending: LineEnding) {
        let mail = Self.body("base64", "SGVsbG8\n", ending)
        #expect(String(decoding: mail.root.content, as: UTF8.self) == "Hello")
        #expect(mail.codes == ["base64-missing-padding"])
    }

    @Test(arguments: LineEnding.allCases)
    func base64InvalidCharactersAreSkipped(_ ending: LineEnding) {
        let mail = Self.body("base64", "SGV*sbG8=\n", ending)
        #expect(String(decoding: mail.root.content, as: UTF8.self) == "Hello")
        #expect(mail.codes == ["base64-invalid-characters"])
    }

    @Test(arguments: LineEnding.allCases)
    func base64ConcatenatedBlocksAndTruncation(_ ending: LineEnding) {
        // RFC 2045 §6.8: padding marks the end of the data.
        let joined = Self.body("base64", "SGk=SGk=\n", ending)
        #expect(String(decoding: joined.root.content, as: UTF8.self) == "Hi")
        #expect(joined.codes == ["base64-data-after-padding"])
        let trailer = Self.body("base64", "ecO2dMOkIHZhYW4uCg== ignored\n", ending)
        #expect(String(decoding: trailer.root.content, as: UTF8.self) == "yötä vaan.\n")
        let truncated = Self.body("base64", "SGVsbG8gV\n", ending)
        #expect(String(decoding: truncated.root.content, as: UTF8.self) == "Hello ")
        #expect(truncated.codes == ["base64-truncated"])
    }

    @Test(arguments: LineEnding.allCases)
    func identityEncodingsKeepOctets(_ ending: LineEnding) {
        for encoding in ["7bit", "8bit", "binary", "8BIT"] {
            let mail = Self.body(encoding, "r\u{E9}sum\u{E9}\n", ending)
            #expect(mail.root.content == ending.bytes("r\u{E9}sum\u{E9}\n"))
            #expect(mail.diagnostics.isEmpty)
        }
    }

    @Test(arguments: LineEnding.allCases)
    func unknownEncodingKeepsOctetsWithDiagnostic(_ ending: LineEnding) {
        let mail = Self.body("x-uuencode", "begin 644 f\n", ending)
        #expect(mail.root.content == ending.bytes("begin 644 f\n"))
        #expect(mail.codes == ["transfer-encoding-unknown"])
    }

    @Test(arguments: LineEnding.allCases)
    func textContentIsNotCharsetConvertedButTextIs(_ ending: LineEnding) {
        let mail = Self.body("quoted-printable", "caf=E9", ending, type: "text/plain; charset=iso-8859-1")
        #expect(mail.root.content == [0x63, 0x61, 0x66, 0xE9])
        #expect(mail.root.text == "café")
    }
}
