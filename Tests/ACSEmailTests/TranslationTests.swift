import Foundation
import MailParser
import SMTPProtocol
import Testing

@testable import ACSEmail

/// Translation rules checked on their own, beside the golden files.
struct TranslationTests {
    static let policy = TranslationPolicy(senderAddress: "DoNotReply@gateway.example", verifiedDomains: ["example.com"])

    static func parse(_ text: String) -> ParsedMail {
        MailParser().parse(Array(text.replacingOccurrences(of: "\n", with: "\r\n").utf8))
    }

    @Test func lineBreaks_becomeCRLF() {
        #expect(LineBreaks.crlf(Array("a\nb\r\nc\rd\r".utf8)) == Array("a\r\nb\r\nc\r\nd\r\n".utf8))
        #expect(Bodies.join(["one", "two\n", "three"]) == "one\r\ntwo\r\nthree")
    }

    @Test func cidReferences_arePercentDecoded_andCaseInsensitive() {
        let html = #"<img src="CID:a%40b.example"><x style='background:url(cid:Second)'> cid: cid:last"#
        #expect(Attachments.contentIDReferences(html) == ["a@b.example", "second", "last"])
    }

    @Test func fileNames_loseDirectoriesAndControlCharacters() {
        #expect(Attachments.sanitizedFileName(#"C:\Users\me\report.pdf"#) == "report.pdf")
        #expect(Attachments.sanitizedFileName("../../etc/passwd") == "passwd")
        #expect(Attachments.sanitizedFileName("a\u{07}b\r\n.txt ") == "ab.txt")
        #expect(Attachments.sanitizedFileName("dir/") == "")
        #expect(Attachments.sanitizedFileName("..") == "")
    }

    @Test func envelopeFromHeaders_takesToCcAndBcc() {
        let mail = Self.parse("From: a@example.com\nTo: b@example.org\nCc: c@example.org\nBcc: d@example.org\n\nx\n")
        #expect(
            Envelope(headersOf: mail)
                == Envelope(mailFrom: "a@example.com", recipients: ["b@example.org", "c@example.org", "d@example.org"]))
    }

    @Test func attachments_holdTheMessagesOctets_notTheirBase64() throws {
        // No base64 (nor decoded) copy of a large file is held: the encoder writes the base64 straight into the
        // request, re-encoding a base64 part from the message's own octets.
        let mail = Self.parse(
            "From: a@example.com\nTo: b@example.com\nSubject: s\nContent-Type: multipart/mixed; boundary=b\n\n"
                + "--b\nContent-Type: text/plain\n\nsee\n--b\nContent-Type: application/pdf; name=r.pdf\n"
                + "Content-Transfer-Encoding: base64\n\nJVBE\nRi0x LjQK\n--b\nContent-Type: application/x-x\n\nraw\n--b--\n"
        )
        let translated = try ACSTranslation.translateWithDetails(
            mail, envelope: Envelope(headersOf: mail), policy: Self.policy
        ).get()
        let attachments = try #require(translated.message.attachments)
        try #require(attachments.count == 2)
        guard case .encoded(let encoded) = attachments[0].content, case .octets(let octets) = attachments[1].content
        else {
            Issue.record("attachments hold \(attachments.map(\.content))")
            return
        }
        #expect(encoded.decoded() == Array("%PDF-1.4\n".utf8))
        #expect(octets == Array("raw".utf8))
        #expect(attachments[0].contentInBase64 == "JVBERi0xLjQK")
        let text = String(decoding: translated.requestBody, as: UTF8.self)
        #expect(text.contains(#""contentInBase64":"JVBERi0xLjQK""#))
        #expect(text.contains(#""contentInBase64":"cmF3""#))
    }

    @Test(arguments: ["", "QQ", "QUI", "QUJD", "QUJDRA==", "QU JD\nRE U=", "QUJD=junk", "Q*UJ", "QUJDR"])
    func reencodedBase64_isTheCanonicalBase64OfTheDecodedOctets(_ encoded: String) throws {
        let mail = Self.parse(
            "From: a@example.com\nTo: b@example.com\nSubject: s\nContent-Type: multipart/mixed; boundary=b\n\n"
                + "--b\nContent-Type: text/plain\n\nsee\n--b\nContent-Type: image/png\n"
                + "Content-Transfer-Encoding: base64\n\n\(encoded)\n--b--\n")
        let part = try #require(mail.root.children.last)
        let expected = Data(part.content).base64EncodedString()
        let translated = try ACSTranslation.translateWithDetails(
            mail, envelope: Envelope(headersOf: mail), policy: Self.policy
        ).get()
        let text = String(decoding: translated.requestBody, as: UTF8.self)
        if part.content.isEmpty {
            #expect(translated.message.attachments == nil)
        } else {
            #expect(translated.message.attachments?.first?.contentInBase64 == expected)
            #expect(text.contains(#""contentInBase64":"\#(expected)""#))
        }
    }

    @Test func writtenInPieces_isTheEncodedRequest() throws {
        // A base64 part kept encoded in the message, an attachment of octets and one of base64 text: every way
        // an attachment reaches the encoder, each across many pieces.
        let octets = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 5) }
        let lines = stride(from: 0, to: 3_000, by: 57).map {
            Data(octets[$0..<min($0 + 57, 3_000)]).base64EncodedString()
        }
        let mail = Self.parse(
            "From: a@example.com\nTo: b@example.com\nSubject: s\nContent-Type: multipart/mixed; boundary=b\n\n"
                + "--b\nContent-Type: text/plain\n\nsee \"quoted\"\n--b\nContent-Type: image/png\n"
                + "Content-Transfer-Encoding: base64\n\n\(lines.joined(separator: "\n"))\n--b--\n")
        let whole = try ACSTranslation.translateWithDetails(
            mail, envelope: Envelope(headersOf: mail), policy: Self.policy
        )
        .get()
        let unwritten = try ACSTranslation.translateWithDetails(
            mail, envelope: Envelope(headersOf: mail), policy: Self.policy, writingRequest: false
        ).get()
        #expect(unwritten.requestBody.isEmpty)
        #expect(unwritten.message == whole.message)
        var message = whole.message
        message.attachments! += [
            EmailAttachment(name: "o.bin", contentType: "application/pdf", octets: Array(octets[..<9_999])),
            EmailAttachment(name: "t.bin", contentType: "application/pdf", contentInBase64: "QUJD"),
        ]
        for pretty in [false, true] {
            let encoder = ACSJSONEncoder(prettyPrinted: pretty)
            let expected = encoder.encode(message)
            #expect(encoder.encodedCount(message) == expected.count)
            for chunkSize in [1, 7, 100, 1 << 16] {
                var written: [UInt8] = []
                var largest = 0
                encoder.write(message, chunkSize: chunkSize) { piece in
                    written += piece
                    largest = max(largest, piece.count)
                }
                #expect(written == expected, "pretty \(pretty), pieces of \(chunkSize)")
                #expect(largest <= 2 * max(chunkSize, 4) + 4)
            }
        }
        #expect(
            String(decoding: whole.requestBody, as: UTF8.self).contains(Data(octets[..<3_000]).base64EncodedString()))
    }

    @Test func unwrittenRequest_isCheckedForSizeAllTheSame() {
        let mail = Self.parse("From: a@example.com\nTo: b@example.com\nSubject: s\n\nhello\n")
        var policy = Self.policy
        policy.maxRequestSize = 50
        let written = ACSTranslation.translateWithDetails(mail, envelope: Envelope(headersOf: mail), policy: policy)
        let counted = ACSTranslation.translateWithDetails(
            mail, envelope: Envelope(headersOf: mail), policy: policy, writingRequest: false)
        #expect(throws: TranslationRejection.self) { try written.get() }
        #expect(counted.map(\.message) == written.map(\.message))  // the same rejection, the same size in it
    }

    @Test func requestBody_isTheEncoderOutput_andNotesExplainDecisions() throws {
        let mail = Self.parse(
            """
            From: carol@outside.example
            To: b@example.org
            Content-Type: multipart/mixed; boundary=b

            --b
            Content-Type: application/octet-stream; name=r.pdf
            Content-Transfer-Encoding: base64

            JVBERi0=
            --b--
            """)
        let translated = try ACSTranslation.translateWithDetails(
            mail, envelope: Envelope(headersOf: mail), policy: Self.policy
        ).get()
        #expect(translated.requestBody == ACSJSONEncoder().encode(translated.message))
        #expect(
            Set(translated.notes.map(\.code))
                == ["sender-replaced", "subject-placeholder", "body-placeholder", "attachment-type-inferred"])
        #expect(translated.message.attachments?.first?.contentType == "application/pdf")
        #expect(translated.message.replyTo == [EmailAddress(address: "carol@outside.example")])
    }

    /// text/plain and text/html side by side in multipart/mixed (no multipart/alternative): RFC 8621 puts both
    /// in textBody and htmlBody. Both ACS bodies are filled: `plainText` from textBody (the HTML part as text),
    /// `html` from htmlBody; a reader that shows only text still gets every part.
    @Test func mixedPlainAndHTMLSideBySide_fillBothBodies() throws {
        let mail = Self.parse(
            """
            From: a@example.com
            To: b@example.org
            Subject: side by side
            Content-Type: multipart/mixed; boundary=b

            --b
            Content-Type: text/plain; charset=utf-8

            Plain part & more.
            --b
            Content-Type: text/html; charset=utf-8

            <html><head><style>p {color: red}</style></head><body><p>HTML&nbsp;part &amp; more</p>\
            <p>second<br>line</p></body></html>
            --b--
            """)
        let content = try ACSTranslation.translate(mail, envelope: Envelope(headersOf: mail), policy: Self.policy)
            .get().content
        #expect(content.plainText == "Plain part & more.\r\nHTML\u{A0}part & more\r\nsecond\r\nline")
        let html = try #require(content.html)
        #expect(html.hasPrefix("<pre>Plain part &amp; more.</pre>\r\n<html>"))
        #expect(html.contains("<p>HTML&nbsp;part &amp; more</p>"))
    }

    /// HTML read as text for `plainText`: tags dropped, blocks on their own lines, script and style skipped,
    /// entities decoded; linear in the input.
    @Test func htmlAsPlainText() {
        #expect(HTMLText.plainText("<p>a</p><p>b<br/>c</p>") == "a\nb\nc")
        #expect(HTMLText.plainText("<script>x<y</script>t&lt;&#65;&#x42;&bogus;&amp") == "t<AB&bogus;&amp")
        #expect(HTMLText.plainText("  two   words \n split  ") == "two words split")
        #expect(HTMLText.plainText("<!-- <p>hidden</p> -->shown<li>item") == "shown\nitem")
        #expect(HTMLText.plainText("<unclosed") == "")
    }

    /// A Content-Type that does not parse is `text/plain; charset=us-ascii` (RFC 2045 §5.2): the text is the
    /// body, not an attachment beside "(no message body)".
    @Test func unparsableContentType_isThePlainTextBody() throws {
        let mail = Self.parse(
            "From: a@example.com\nTo: b@example.org\nSubject: s\nContent-Type: text/plain>\n\nhello\n")
        let message = try ACSTranslation.translate(mail, envelope: Envelope(headersOf: mail), policy: Self.policy).get()
        #expect(message.content.plainText == "hello\r\n")
        #expect(message.attachments == nil)
    }

    /// The original From becomes replyTo when the sender is replaced, but ACS refuses the whole request for a
    /// replyTo address it does not take (`user2`, no domain): such an address is dropped with a note.
    @Test func replyToAddressesACSWouldRefuse_areDroppedWithANote() throws {
        let mail = Self.parse("From: User Two <user2>, ok@outside.example\nTo: b@example.org\nSubject: s\n\nx\n")
        let translated = try ACSTranslation.translateWithDetails(
            mail, envelope: Envelope(mailFrom: "user2", recipients: ["b@example.org"]), policy: Self.policy
        ).get()
        #expect(translated.message.senderAddress == "DoNotReply@gateway.example")
        #expect(translated.message.replyTo == [EmailAddress(address: "ok@outside.example")])
        #expect(translated.notes.contains { $0.code == "reply-to-dropped" && $0.message.contains("user2") })

        let alone = Self.parse("From: user2\nTo: b@example.org\nSubject: s\n\nx\n")
        let single = try ACSTranslation.translateWithDetails(
            alone, envelope: Envelope(mailFrom: "", recipients: ["b@example.org"]), policy: Self.policy
        ).get()
        #expect(single.message.replyTo == nil)
        #expect(single.notes.map(\.code).contains("reply-to-dropped"))
        for refused in ["\"a b\"@example.org", "x@[192.0.2.1]", "x@localhost", "@example.org", "x@", "a b@c.org"] {
            #expect(ACSAddress.refusalReason(refused) != nil, "\(refused)")
        }
        #expect(ACSAddress.refusalReason("o'brien+tag@mail.example.org") == nil)
    }

    @Test func localNamesInToAndCc_standForTheirAliases_soTheRecipientKeepsItsPlace() throws {
        var policy = Self.policy
        policy.localRecipients = LocalRecipients(
            aliases: ["root": Mailbox(localPart: "ops", domain: "example.com")], localDomains: ["web1.example.com"])
        let mail = Self.parse(
            "From: root\nTo: Admins <root>\nCc: root@web1.example.com, dev@example.org\nSubject: s\n\nx\n")
        // The envelope holds the alias already (the SMTP session mapped RCPT TO:<root>).
        let translated = try ACSTranslation.translate(
            mail, envelope: Envelope(mailFrom: "root@web1", recipients: ["ops@example.com", "dev@example.org"]),
            policy: policy
        ).get()
        #expect(translated.recipients.to == [EmailAddress(address: "ops@example.com", displayName: "Admins")])
        #expect(translated.recipients.cc == [EmailAddress(address: "dev@example.org")])
        #expect(translated.recipients.bcc == nil)
        #expect(translated.replyTo == nil, "root with no domain is dropped, never mapped")
    }

    @Test func sizeLimit_countsTheExactEncodedBytes() throws {
        let mail = Self.parse("From: a@example.com\nTo: b@example.org\nSubject: s\n\nbody\n")
        let envelope = Envelope(headersOf: mail)
        let size = try ACSTranslation.translateWithDetails(mail, envelope: envelope, policy: Self.policy).get()
            .requestBody.count
        var policy = Self.policy
        policy.maxRequestSize = size
        #expect((try? ACSTranslation.translate(mail, envelope: envelope, policy: policy).get()) != nil)
        policy.maxRequestSize = size - 1
        #expect(
            ACSTranslation.translate(mail, envelope: envelope, policy: policy)
                == .failure(.requestTooLarge(encodedSize: size, limit: size - 1)))
    }
}

/// The shared corpus (`../shared/corpus`, or `ACSGW_TEST_CORPUS`): every message converts or is rejected with a
/// reason, and no message crashes or hangs the translation. Skipped, with one notice, where the corpus is absent
/// (a bare clone of the repository).
@Suite(.enabled(if: SharedCorpus.isPresent, SharedCorpus.missing))
struct TranslationCorpusTests {
    static let corpus = SharedCorpus.directory

    static func messages() -> [URL] {
        guard let enumerator = FileManager.default.enumerator(at: corpus, includingPropertiesForKeys: nil) else {
            return []
        }
        return enumerator.compactMap { $0 as? URL }
            .filter { ["eml", "txt"].contains($0.pathExtension) && !$0.lastPathComponent.hasPrefix("LICENSE") }
            .filter { $0.pathExtension == "eml" || $0.lastPathComponent.hasPrefix("msg_") }
            .sorted { $0.path < $1.path }
    }

    @Test func everyCorpusMessage_translatesOrIsRejectedWithAReason() throws {
        let files = Self.messages()
        try #require(!files.isEmpty, "corpus not found at \(Self.corpus.path)")
        let policy = TranslationPolicy(senderAddress: "DoNotReply@gateway.example")
        var translated = 0
        for file in files {
            let mail = MailParser().parse(try Array(Data(contentsOf: file)))
            var envelope = Envelope(headersOf: mail)
            if envelope.recipients.isEmpty {
                envelope.recipients = ["fallback@example.org"]
            }
            switch ACSTranslation.translateWithDetails(mail, envelope: envelope, policy: policy) {
            case .success(let result):
                translated += 1
                #expect(!result.message.content.subject.isEmpty, "\(file.lastPathComponent)")
                #expect(
                    result.message.content.plainText?.isEmpty == false || result.message.content.html?.isEmpty == false,
                    "\(file.lastPathComponent)")
                #expect(result.message.attachments?.allSatisfy { !$0.contentInBase64.isEmpty } ?? true)
            case .failure(let rejection):
                #expect(!rejection.text.isEmpty, "\(file.lastPathComponent)")
            }
        }
        #expect(translated > 0)
    }
}

/// Where the shared corpus is: `../shared/corpus` beside the repository, or the directory `ACSGW_TEST_CORPUS`
/// names (pointing it at a missing path shows what a bare clone does).
enum SharedCorpus {
    static let directory =
        ProcessInfo.processInfo.environment["ACSGW_TEST_CORPUS"].map { URL(fileURLWithPath: $0) }
        ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent()  // Tests/ACSEmailTests
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("shared/corpus")
    static let isPresent = FileManager.default.fileExists(atPath: directory.path)
    static let missing = Comment(
        rawValue: "no shared corpus at \(directory.path) (a bare clone has none; CI places shared/ beside the "
            + "repository, or set ACSGW_TEST_CORPUS): skipped translating every corpus message")
}
