import Foundation
import MailParser
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
                #expect(rejection.code >= 500 && !rejection.text.isEmpty, "\(file.lastPathComponent)")
            }
        }
        #expect(translated > 0)
    }
}

/// Where the shared corpus is: `../shared/corpus` beside the repository, or the directory `ACSGW_TEST_CORPUS`
/// names (pointing it at a missing path shows what a bare clone does).
enum SharedCorpus {
    static let directory = ProcessInfo.processInfo.environment["ACSGW_TEST_CORPUS"].map { URL(fileURLWithPath: $0) }
        ?? URL(fileURLWithPath: #filePath).deletingLastPathComponent()  // Tests/ACSEmailTests
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("shared/corpus")
    static let isPresent = FileManager.default.fileExists(atPath: directory.path)
    static let missing = Comment(
        rawValue: "no shared corpus at \(directory.path) (a bare clone has none; CI places shared/ beside the "
            + "repository, or set ACSGW_TEST_CORPUS): skipped translating every corpus message")
}
