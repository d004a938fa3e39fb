import Foundation
import MailParser
import Testing

/// Hostile sizes, each with a time bound far above what linear work needs (debug build, shared CI machine) and far
/// below what quadratic work would take at these sizes. Each prints what it measured.
@Suite(.serialized) struct AdversarialSizeTests {
    static func measure(_ label: String, _ work: () -> ParsedMail) -> (ParsedMail, Duration) {
        let clock = ContinuousClock()
        var mail: ParsedMail?
        let elapsed = clock.measure { mail = work() }
        print("adversarial size: \(label): \(elapsed)")
        return (mail!, elapsed)
    }

    /// 100,000 nested multiparts (5 MB) with the default limits: the nesting cap (50) keeps the tree small; the
    /// rest is one leaf. (`RobustnessTests` checks the shape with other caps; this bounds the time.)
    @Test func hundredThousandNestedMultiparts() {
        let input = RobustnessTests.nestedMultiparts(100_000)
        let (mail, elapsed) = Self.measure("100,000 nested multiparts, \(input.count) octets") {
            MailParser().parse(input)
        }
        #expect(mail.codes.contains("depth-limit-exceeded"))
        #expect(RobustnessTests.firstChildDepth(mail).depth == 50)
        #expect(elapsed < .seconds(20))
    }

    /// 1,000,000 header lines (8 MB): fields past the 100 KiB cap are dropped, the body is still found.
    @Test func millionHeaderLines() {
        var input: [UInt8] = Array("Subject: many\n".utf8)
        input.reserveCapacity(9_000_000)
        let line = Array("X-Filler: value\n".utf8)
        for _ in 0..<1_000_000 { input += line }
        input += Array("\nbody\n".utf8)
        let (mail, elapsed) = Self.measure("1,000,000 header lines, \(input.count) octets") {
            MailParser().parse(input)
        }
        #expect(mail.subject == "many")
        #expect(mail.codes.contains("header-block-too-large"))
        #expect(mail.headers.count < 10_000)
        #expect(mail.root.text == "body\n")
        #expect(elapsed < .seconds(20))
    }

    /// One 64 KiB header line (the SMTP text-line cap): kept whole, under the header block cap.
    @Test func sixtyFourKiBHeaderLine() {
        let subject = String(repeating: "a", count: 64 * 1024)
        let input = Array("Subject: \(subject)\n\nbody\n".utf8)
        let (mail, elapsed) = Self.measure("one 64 KiB header line") { MailParser().parse(input) }
        #expect(mail.subject == subject)
        #expect(elapsed < .seconds(5))
    }

    /// 10,000 encoded words in one subject (170 KB): over the default header cap, so dropped at once; with a cap
    /// large enough, decoded whole, joined as RFC 2047 §6.2 says (no space between adjacent encoded words).
    @Test func tenThousandEncodedWordsInOneSubject() {
        let words = Array(repeating: "=?utf-8?B?w6k=?=", count: 10_000).joined(separator: " ")
        let input = Array("Subject: \(words)\n\nbody\n".utf8)
        let (capped, cappedTime) = Self.measure("10,000 encoded words, default header cap") {
            MailParser().parse(input)
        }
        #expect(capped.subject == nil)
        #expect(capped.codes.contains("header-block-too-large"))
        let (mail, elapsed) = Self.measure("10,000 encoded words, 1 MiB header cap") {
            MailParser(limits: .init(maxHeaderBlockSize: 1 << 20)).parse(input)
        }
        #expect(mail.subject == String(repeating: "é", count: 10_000))
        #expect(cappedTime < .seconds(5))
        #expect(elapsed < .seconds(10))
    }

    /// 1 MiB of base64 with a stray "!" every 76 octets: skipped (RFC 2045 §6.8), the content decoded exactly.
    @Test func base64WithAStrayCharacterEveryLine() {
        var content: [UInt8] = []
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<(1 << 20) { content.append(UInt8.random(in: 0...255, using: &generator)) }
        let encoded = Array(Data(content).base64EncodedString().utf8)
        var body: [UInt8] = []
        body.reserveCapacity(encoded.count + encoded.count / 38 + 16)
        var index = 0
        while index < encoded.count {
            let end = min(index + 76, encoded.count)
            body += encoded[index..<end]
            body += Array("!\n".utf8)
            index = end
        }
        let input = Array("Content-Type: application/octet-stream\nContent-Transfer-Encoding: base64\n\n".utf8) + body
        let (mail, elapsed) = Self.measure("1 MiB base64, a stray character every 76 octets") {
            MailParser().parse(input)
        }
        #expect(mail.root.content == content)
        // The stray character after the final padding is reported as such.
        #expect(Set(mail.codes) == ["base64-invalid-characters", "base64-data-after-padding"])
        #expect(elapsed < .seconds(10))
    }
}
