import MailParser
import Testing

/// RFC 2047 encoded words in unstructured headers.
@Suite struct EncodedWordTests {
    static func subject(_ value: String, _ ending: LineEnding = .lf) -> String? {
        parse("Subject: \(value)\n\n", ending).subject
    }

    @Test(arguments: LineEnding.allCases)
    func bAndQEncodings(_ ending: LineEnding) {
        #expect(Self.subject("=?UTF-8?B?w6l0w6k=?=", ending) == "été")
        #expect(Self.subject("=?utf-8?q?caf=C3=A9_cr=c3=a8me?=", ending) == "café crème")
        #expect(Self.subject("=?ISO-8859-1?Q?Andr=E9?= Pirard", ending) == "André Pirard")
        #expect(Self.subject("=?iso-8859-15?b?pA==?=", ending) == "€")
    }

    @Test(arguments: LineEnding.allCases)
    func whitespaceBetweenAdjacentWordsIsDropped(_ ending: LineEnding) {
        // RFC 2047 §8 examples.
        #expect(Self.subject("(=?ISO-8859-1?Q?a?= b)", ending) == "(a b)")
        #expect(Self.subject("(=?ISO-8859-1?Q?a?= =?ISO-8859-1?Q?b?=)", ending) == "(ab)")
        #expect(Self.subject("(=?ISO-8859-1?Q?a?=\n    =?ISO-8859-1?Q?b?=)", ending) == "(ab)")
        #expect(Self.subject("(=?ISO-8859-1?Q?a_b?=)", ending) == "(a b)")
        #expect(Self.subject("a =?utf-8?q?b?= c", ending) == "a b c")
    }

    @Test(arguments: LineEnding.allCases)
    func multiOctetCharacterSplitAcrossWordsIsJoinedBeforeDecoding(_ ending: LineEnding) {
        // "é" = C3 A9, split between two B words ("ww==" = C3, "qQ==" = A9).
        #expect(Self.subject("=?UTF-8?B?ww==?= =?UTF-8?B?qQ==?=", ending) == "é")
        // ISO-2022-JP state carried across words.
        #expect(Self.subject("=?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=", ending) == "日本語")
    }

    @Test(arguments: LineEnding.allCases)
    func malformedWordsStayLiteral(_ ending: LineEnding) {
        #expect(Self.subject("=?utf-8?x?abc?=", ending) == "=?utf-8?x?abc?=")
        #expect(Self.subject("=?utf-8?q?no end", ending) == "=?utf-8?q?no end")
        #expect(Self.subject("=??q?abc?=", ending) == "=??q?abc?=")
        #expect(Self.subject("a=?b", ending) == "a=?b")
        #expect(Self.subject("=?utf-8?q?has space?=", ending) == "=?utf-8?q?has space?=")
    }

    @Test(arguments: LineEnding.allCases)
    func unknownCharsetFallsBackLikeBodyText(_ ending: LineEnding) {
        #expect(Self.subject("=?x-unknown?q?caf=C3=A9?=", ending) == "café")
        #expect(Self.subject("=?x-unknown?q?caf=E9?=", ending) == "café")
    }

    @Test(arguments: LineEnding.allCases)
    func languageSuffixAndLowercaseHex(_ ending: LineEnding) {
        #expect(Self.subject("=?utf-8*en?q?=e2=82=ac?=", ending) == "€")
    }

    @Test(arguments: LineEnding.allCases)
    func wordsGluedToTextAreDecoded(_ ending: LineEnding) {
        #expect(Self.subject("Re:=?utf-8?q?=C3=A9?=!", ending) == "Re:é!")
    }
}
