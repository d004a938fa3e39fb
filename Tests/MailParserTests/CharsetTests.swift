import MailParser
import Testing

/// Charset conversion of text parts through iconv, with aliases and fallbacks.
@Suite struct CharsetTests {
    static func text(_ charset: String?, _ octets: [UInt8], _ ending: LineEnding = .lf) -> ParsedMail {
        let type = charset.map { "text/plain; charset=\($0)" } ?? "text/plain"
        return MailParser().parse(ending.bytes("Content-Type: \(type)\nContent-Transfer-Encoding: 8bit\n\n") + octets)
    }

    struct Case: Sendable, CustomTestStringConvertible {
        var charset: String
        var octets: [UInt8]
        var expected: String
        var testDescription: String { charset }
    }

    static let cases: [Case] = [
        Case(charset: "utf-8", octets: [0xC3, 0xA9, 0xE2, 0x82, 0xAC], expected: "é€"),
        Case(charset: "UTF8", octets: [0xC3, 0xA9], expected: "é"),
        Case(charset: "us-ascii", octets: Array("plain".utf8), expected: "plain"),
        Case(charset: "iso-8859-1", octets: [0x63, 0x61, 0x66, 0xE9], expected: "café"),
        Case(charset: "latin1", octets: [0xE9], expected: "é"),
        Case(charset: "iso-8859-2", octets: [0xB1, 0xE6], expected: "ąć"),
        Case(charset: "ISO-8859-5", octets: [0xB4, 0xD0], expected: "Да"),
        Case(charset: "iso-8859-7", octets: [0xE1], expected: "α"),
        Case(charset: "iso-8859-15", octets: [0xA4], expected: "€"),
        Case(charset: "iso-8859-16", octets: [0xAA], expected: "Ș"),
        Case(charset: "windows-1250", octets: [0x8A], expected: "Š"),
        Case(charset: "cp1251", octets: [0xC4, 0xE0], expected: "Да"),
        Case(charset: "windows-1252", octets: [0x80, 0x93, 0x94], expected: "€“”"),
        Case(charset: "cp1252", octets: [0x85], expected: "…"),
        Case(charset: "windows-1253", octets: [0xE1], expected: "α"),
        Case(charset: "windows-1254", octets: [0xFD], expected: "ı"),
        Case(charset: "windows-1255", octets: [0xF9], expected: "ש"),
        Case(charset: "windows-1256", octets: [0xC7], expected: "ا"),
        Case(charset: "windows-1257", octets: [0xE0], expected: "ą"),
        Case(charset: "windows-1258", octets: [0x80], expected: "€"),
        Case(charset: "koi8-r", octets: [0xE4, 0xC1], expected: "Да"),
        Case(charset: "KOI8-U", octets: [0xA4], expected: "є"),
        Case(charset: "shift_jis", octets: [0x93, 0xFA, 0x96, 0x7B], expected: "日本"),
        Case(charset: "x-sjis", octets: [0x93, 0xFA], expected: "日"),
        Case(charset: "euc-jp", octets: [0xC6, 0xFC, 0xCB, 0xDC], expected: "日本"),
        Case(
            charset: "iso-2022-jp", octets: [0x1B, 0x24, 0x42, 0x46, 0x7C, 0x4B, 0x5C, 0x1B, 0x28, 0x42],
            expected: "日本"),
        Case(charset: "gb2312", octets: [0xD6, 0xD0, 0xCE, 0xC4], expected: "中文"),
        Case(charset: "gbk", octets: [0xD6, 0xD0], expected: "中"),
        Case(charset: "gb18030", octets: [0xD6, 0xD0], expected: "中"),
        Case(charset: "big5", octets: [0xA4, 0xA4, 0xA4, 0xE5], expected: "中文"),
        Case(charset: "euc-kr", octets: [0xC7, 0xD1, 0xB1, 0xDB], expected: "한글"),
        Case(charset: "ks_c_5601-1987", octets: [0xC7, 0xD1], expected: "한"),
        Case(charset: "utf-16", octets: [0xFF, 0xFE, 0x41, 0x00, 0xE9, 0x00], expected: "Aé"),
        Case(charset: "utf-16be", octets: [0x00, 0x41], expected: "A"),
        Case(charset: "utf-7", octets: Array("A+ImIDkQ.".utf8), expected: "A≢Α."),
        Case(charset: "\"utf-8\"", octets: [0xC3, 0xA9], expected: "é"),
        Case(charset: "x-mac-roman", octets: [0x8E], expected: "é"),
        Case(charset: "ibm866", octets: [0x84, 0xA0], expected: "Да"),
    ]

    @Test(arguments: cases)
    func declaredCharsetsConvertToUTF8(_ testCase: Case) {
        let mail = Self.text(testCase.charset, testCase.octets)
        #expect(mail.root.text == testCase.expected)
        #expect(mail.diagnostics.isEmpty, "\(mail.diagnostics)")
        #expect(mail.root.content == testCase.octets)
    }

    @Test(arguments: LineEnding.allCases)
    func iso2022JPAcrossLines(_ ending: LineEnding) {
        let line: [UInt8] = [0x1B, 0x24, 0x42, 0x46, 0x7C, 0x1B, 0x28, 0x42]  // 日
        let mail = Self.text("ISO-2022-JP", line + ending.bytes("\n") + line, ending)
        #expect(mail.root.text == "日" + ending.text("\n") + "日")
    }

    @Test(arguments: LineEnding.allCases)
    func undeclaredEightBitFallsBackToUTF8ThenWindows1252(_ ending: LineEnding) {
        let utf8 = Self.text(nil, [0x68, 0xC3, 0xA9], ending)
        #expect(utf8.root.text == "hé")
        #expect(utf8.codes == ["charset-undeclared-8bit"])
        let cp1252 = Self.text(nil, [0x68, 0xE9, 0x80], ending)
        #expect(cp1252.root.text == "hé€")
        #expect(cp1252.codes == ["charset-undeclared-8bit"])
        // swaks sends raw UTF-8 labelled us-ascii (smtp-behaviour.md §1).
        #expect(Self.text("us-ascii", [0xC3, 0xA9], ending).root.text == "é")
        #expect(Self.text(nil, Array("ascii only".utf8), ending).diagnostics.isEmpty)
    }

    @Test(arguments: LineEnding.allCases)
    func unknownCharsetFallsBack(_ ending: LineEnding) {
        let mail = Self.text("x-no-such-charset", [0xE9, 0x74, 0xE9], ending)
        #expect(mail.root.text == "été")
        #expect(mail.codes == ["charset-unknown"])
        #expect(mail.root.charset == "x-no-such-charset")
    }

    @Test func invalidOctetsBecomeReplacementCharacters() {
        let utf8 = Self.text("utf-8", [0x61, 0xFF, 0x62])
        #expect(utf8.root.text == "a\u{FFFD}b")
        #expect(utf8.codes == ["charset-invalid-octets"])
        let sjis = Self.text("shift_jis", [0x61, 0x81, 0x20, 0x62])
        #expect(sjis.root.text?.hasPrefix("a\u{FFFD}") == true)
        #expect(sjis.root.text?.hasSuffix("b") == true)
        #expect(sjis.codes == ["charset-invalid-octets"])
        let truncated = Self.text("utf-16le", [0x41, 0x00, 0x42])
        #expect(truncated.root.text == "A\u{FFFD}")
    }

    @Test func largeTextConvertsInChunks() {
        let octets = [UInt8](repeating: 0xE9, count: 100_000)
        let mail = Self.text("iso-8859-2", octets)
        #expect(mail.root.text?.count == 100_000)
        #expect(mail.root.text?.allSatisfy { $0 == "é" } == true)
    }
}
