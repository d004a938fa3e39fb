import MailParser
import Testing

/// RFC 5322 §3.4 address lists, including obsolete and hostile forms.
@Suite struct AddressTests {
    static func to(_ value: String, _ ending: LineEnding = .lf) -> [MailAddress] {
        parse("To: \(value)\n\n", ending).to
    }

    @Test(arguments: LineEnding.allCases)
    func displayNamesWithCommasAndQuotes(_ ending: LineEnding) {
        #expect(
            Self.to("\"Doe, John\" <john@example.com>, \"Jane \\\"JJ\\\" Roe\" <jane@example.com>", ending) == [
                MailAddress(displayName: "Doe, John", address: "john@example.com"),
                MailAddress(displayName: "Jane \"JJ\" Roe", address: "jane@example.com"),
            ])
    }

    @Test(arguments: LineEnding.allCases)
    func foldedListAcrossLines(_ ending: LineEnding) {
        let mail = parse(
            "To: Alice <a@example.com>,\n Bob <b@example.com>\nCc: c@example.com\nBcc: d@example.com\n\n", ending)
        #expect(mail.to.map(\.address) == ["a@example.com", "b@example.com"])
        #expect(mail.cc == [MailAddress(address: "c@example.com")])
        #expect(mail.bcc == [MailAddress(address: "d@example.com")])
    }

    @Test(arguments: LineEnding.allCases)
    func bareAddressesAndComments(_ ending: LineEnding) {
        #expect(
            Self.to("a@example.com (Alice A), b@example.com, (just a comment) <c@example.com>", ending) == [
                MailAddress(displayName: "Alice A", address: "a@example.com"),
                MailAddress(address: "b@example.com"),
                MailAddress(displayName: "just a comment", address: "c@example.com"),
            ])
        #expect(
            Self.to("Pete(A nice \\) chap) <pete(his account)@silly.test(his host)>", ending) == [
                MailAddress(displayName: "Pete", address: "pete@silly.test")
            ])
    }

    @Test(arguments: LineEnding.allCases)
    func groupsAreFlattened(_ ending: LineEnding) {
        #expect(Self.to("undisclosed-recipients:;", ending).isEmpty)
        #expect(
            Self.to("A Group:Ed Jones <c@a.test>,joe@where.test,John <jdoe@one.test>;, after@x.test", ending) == [
                MailAddress(displayName: "Ed Jones", address: "c@a.test"),
                MailAddress(address: "joe@where.test"),
                MailAddress(displayName: "John", address: "jdoe@one.test"),
                MailAddress(address: "after@x.test"),
            ])
    }

    @Test(arguments: LineEnding.allCases)
    func encodedDisplayNames(_ ending: LineEnding) {
        #expect(
            Self.to("=?UTF-8?B?TcO8bGxlciwgSGFucw==?= <h@example.com>", ending) == [
                MailAddress(displayName: "Müller, Hans", address: "h@example.com")
            ])
        // QUIRK: encoded words inside quotes are decoded too.
        #expect(
            Self.to("\"=?ISO-8859-1?Q?Andr=E9?= Pirard\" <p@example.com>", ending) == [
                MailAddress(displayName: "André Pirard", address: "p@example.com")
            ])
    }

    @Test(arguments: LineEnding.allCases)
    func obsoleteRouteAndSpacing(_ ending: LineEnding) {
        #expect(
            Self.to("Joe <@relay1.test,@relay2.test:joe@example.com>", ending) == [
                MailAddress(displayName: "Joe", address: "joe@example.com")
            ])
        #expect(Self.to("john . doe @ example . com", ending) == [MailAddress(address: "john.doe@example.com")])
        #expect(Self.to("\"john doe\"@example.com", ending) == [MailAddress(address: "\"john doe\"@example.com")])
    }

    @Test(arguments: LineEnding.allCases)
    func missingAngleBracketsAndEmptyEntries(_ ending: LineEnding) {
        #expect(
            Self.to("John Smith john@example.com", ending) == [
                MailAddress(displayName: "John Smith", address: "john@example.com")
            ])
        #expect(Self.to(", ,a@example.com,,", ending) == [MailAddress(address: "a@example.com")])
        #expect(Self.to("<>", ending).isEmpty)
        #expect(Self.to("Just A Name", ending).isEmpty)
    }

    @Test(arguments: LineEnding.allCases)
    func senderAndReplyTo(_ ending: LineEnding) {
        let mail = parse("Sender: S <s@example.com>, t@example.com\nReply-To: r@example.com\n\n", ending)
        #expect(mail.sender == MailAddress(displayName: "S", address: "s@example.com"))
        #expect(mail.replyTo == [MailAddress(address: "r@example.com")])
    }

    /// Hostile inputs must never trap and must stay linear.
    @Test(arguments: [
        "\"unterminated <a@b.c>", "(unterminated comment a@b.c", "<unterminated@b.c", ">>>,,,<<<;;;:::",
        String(repeating: "(", count: 10_000) + "a@b.c", String(repeating: "\"", count: 10_001),
        String(repeating: "a@b.c, ", count: 5_000), ":;:;:;<@:>", "\\", "@", "<@>", "=?utf-8?b?IiwiPD4=?= <x@y.z>",
        String(repeating: "<", count: 5_000),
    ])
    func hostileListsNeverCrash(_ value: String) {
        let list = Self.to(value)
        #expect(list.count <= 5_000)
        #expect(list.allSatisfy { !$0.address.isEmpty })
    }

    @Test(arguments: LineEnding.allCases)
    func encodedWordWithRawSpecialsStaysOneWord(_ ending: LineEnding) {
        #expect(
            Self.to("=?utf-8?q?Doe,_J=C3=B6rg?= <j@example.com>, =?utf-8?q?a:b?= <k@example.com>", ending) == [
                MailAddress(displayName: "Doe, Jörg", address: "j@example.com"),
                MailAddress(displayName: "a:b", address: "k@example.com"),
            ])
    }

    @Test(arguments: LineEnding.allCases)
    func encodedNameThatDecodesToSpecialsDoesNotSplitTheList(_ ending: LineEnding) {
        // "=?utf-8?b?IiwiPD4=?=" decodes to `","<>`.
        #expect(
            Self.to("=?utf-8?b?IiwiPD4=?= <x@y.z>", ending) == [MailAddress(displayName: "\",\"<>", address: "x@y.z")])
    }

    /// Found by FuzzHeaderFields: a bare CR inside a header line (or an LF in a raw value) stayed inside a quoted
    /// local part, so an "address" with a line break came out. No address may contain a control character
    /// (RFC 5322 §3.2.4 qtext, §3.2.3 atext): such an entry is not a mailbox and is left out.
    @Test func addressesWithControlCharactersAreLeftOut() {
        let mail = MailParser().parse(
            Array("To: \"a\rb\"@example.com, <c\rd@example.com>, ok@example.com\r\n\r\n".utf8))
        #expect(mail.to.map(\.address) == ["cd@example.com", "ok@example.com"])  // angle text loses its whitespace
    }
}
