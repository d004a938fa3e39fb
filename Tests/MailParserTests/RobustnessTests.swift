import MailParser
import Testing

/// Adversarial shapes: bounded depth, bounded part count, no traps on arbitrary octets.
@Suite struct RobustnessTests {
    /// `levels` nested multiparts, each opening the next, never closed.
    static func nestedMultiparts(_ levels: Int) -> [UInt8] {
        var text = ""
        for level in 0..<levels {
            text += "Content-Type: multipart/mixed; boundary=\"b\(level)\"\n\n--b\(level)\n"
        }
        text += "\ninnermost\n"
        return Array(text.utf8)
    }

    /// How many first children lead down from the root, and the part at the bottom.
    static func firstChildDepth(_ mail: ParsedMail) -> (depth: Int, bottom: MIMEPart) {
        var depth = 0
        var part = mail.root
        while let child = part.children.first {
            depth += 1
            part = child
        }
        return (depth, part)
    }

    @Test func deepMultipartNestingStopsAtMaxDepth() {
        let parser = MailParser(limits: .init(maxDepth: 20))
        let mail = parser.parse(Self.nestedMultiparts(100_000))
        let (depth, part) = Self.firstChildDepth(mail)
        #expect(depth == 20)
        #expect(part.contentType == "application/octet-stream")
        #expect(mail.codes.contains("depth-limit-exceeded"))
    }

    @Test func depthCeilingHoldsForHugeConfiguredDepth() {
        // maxDepth above 1,000 acts as 1,000: building, copying, comparing and destroying a
        // 1,000-level value tree must not exhaust a test thread's stack.
        let mail = MailParser(limits: .init(maxDepth: .max)).parse(Self.nestedMultiparts(1_200))
        #expect(Self.firstChildDepth(mail).depth == 1_000)
        let copy = mail.root
        #expect(copy == mail.root)
    }

    @Test func deepMessageNestingStopsAtMaxDepth() {
        var text = ""
        for _ in 0..<10_000 { text += "Content-Type: message/rfc822\n\n" }
        text += "Subject: bottom\n\nx\n"
        let mail = MailParser(limits: .init(maxDepth: 30, maxEmbeddedMessageDepth: 1_000)).parse(Array(text.utf8))
        var depth = 0
        var part = mail.root
        while let child = part.children.first {
            depth += 1
            part = child
        }
        #expect(depth == 30)
        #expect(mail.codes.contains("depth-limit-exceeded"))
        #expect(mail.attachments.map(\.partIndex) == [0])
    }

    @Test func embeddedMessageCopiesAreCapped() {
        // Each embedded level keeps a copy of what it encloses: the cap bounds the amplification.
        var text = ""
        for _ in 0..<50 { text += "Content-Type: message/rfc822\n\n" }
        text += "\n" + String(repeating: "x", count: 100_000) + "\n"
        let mail = MailParser().parse(Array(text.utf8))
        var levels = 0
        var retained = 0
        var part = mail.root
        while true {
            retained += part.content.count
            guard let child = part.children.first else { break }
            levels += 1
            part = child
        }
        #expect(levels == 10)
        #expect(retained < 12 * 101_000)
        #expect(mail.codes == ["depth-limit-exceeded"])
    }

    @Test func nestedTransferEncodedMultipartsCountAsCopies() {
        // base64 of "--x\r\n\r\none\r\n--x--\r\n"
        let inner =
            "Content-Type: multipart/mixed; boundary=x\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + "LS14DQoNCm9uZQ0KLS14LS0NCg==\r\n"
        let mail = MailParser(limits: .init(maxEmbeddedMessageDepth: 0)).parse(Array(inner.utf8))
        #expect(mail.root.contentType == "application/octet-stream")
        #expect(String(decoding: mail.root.content, as: UTF8.self) == "--x\r\n\r\none\r\n--x--\r\n")
        #expect(mail.codes == ["multipart-transfer-encoded", "depth-limit-exceeded"])
    }

    @Test func partCountIsCapped() {
        var text = "Content-Type: multipart/mixed; boundary=b\n\n"
        for _ in 0..<50_000 { text += "--b\n\nx\n" }
        let mail = MailParser(limits: .init(maxParts: 1_000)).parse(Array(text.utf8))
        #expect(mail.root.children.count == 999)
        #expect(mail.codes.contains("part-limit-exceeded"))
        #expect(mail.textBody.count == 999)
    }

    @Test func hugeHeaderFieldAndLongLinesStayLinear() {
        let field = "X-Big: " + String(repeating: "a", count: 2_000_000) + "\n"
        let mail = MailParser().parse(Array((field + "Subject: s\n\nbody\n").utf8))
        #expect(mail.codes == ["header-block-too-large"])
        #expect(mail.subject == nil)
        #expect(mail.root.text == "body\n")
    }

    @Test func manyEncodedWordStartsStayLinear() {
        let subject = String(repeating: "=?", count: 200_000) + String(repeating: "=?utf-8?q?", count: 20_000)
        let mail = MailParser(limits: .init(maxHeaderBlockSize: 1_000_000)).parse(Array("Subject: \(subject)\n\n".utf8))
        #expect(mail.subject?.count == subject.count)
    }

    /// A deterministic generator, so a failure reproduces.
    struct SplitMix64: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
    }

    @Test(arguments: LineEnding.allCases)
    func mutatedMessagesNeverTrap(_ ending: LineEnding) {
        let seed = ending.bytes(
            """
            From: "A, B" <a@b.c>
            To: =?utf-8?b?w6k=?= <d@e.f>, group:;
            Subject: =?iso-2022-jp?B?GyRCRnxLXDhsGyhC?=
            Content-Type: multipart/mixed; boundary="x"

            --x
            Content-Type: multipart/alternative; boundary=y

            --y
            Content-Type: text/plain; charset=shift_jis
            Content-Transfer-Encoding: quoted-printable

            =93=FA=96=7B
            --y
            Content-Type: text/html; charset*=utf-8''x
            Content-Transfer-Encoding: base64

            PHA+aGk8L3A+
            --y--
            --x
            Content-Type: message/rfc822
            Content-Transfer-Encoding: base64

            U3ViamVjdDogaGkNCg0KYm9keQ==
            --x
            Content-Disposition: attachment; filename*0*=utf-8''a%20b; filename*1=.txt

            data
            --x--
            """)
        var generator = SplitMix64(state: ending == .lf ? 1 : 2)
        let alphabet = Array("-=?\"<>():;,\n\r\t x@%*'\\".utf8) + [0x00, 0x80, 0xFF, 0x1B]
        for _ in 0..<300 {
            var input = seed
            for _ in 0..<Int.random(in: 1...12, using: &generator) {
                let position = Int.random(in: 0..<input.count, using: &generator)
                switch Int.random(in: 0..<4, using: &generator) {
                case 0: input[position] = alphabet.randomElement(using: &generator) ?? 0
                case 1: input.insert(alphabet.randomElement(using: &generator) ?? 0, at: position)
                case 2: input.remove(at: position)
                default: input = Array(input[..<position])
                }
                if input.isEmpty { input = seed }
            }
            let mail = MailParser().parse(input)
            #expect(mail.root.partIndex == 0)
            #expect(mail.diagnostics.allSatisfy { !$0.code.isEmpty })
        }
    }
}
