import Sendmail
import Testing

@Suite struct LocalMessageTests {
    let author = LocalMessage.Author(user: "root", host: "web1.example.com", fullName: nil)

    func text(_ message: LocalMessage) -> String { String(decoding: message.octets, as: UTF8.self) }

    @Test func bareLineFeeds_becomeCRLF_andAMissingDateMessageIDAndFromAreAdded() {
        var message = LocalMessage(input: Array("To: root\nSubject: cron\n\nline 1\nline 2\n".utf8), ignoreDots: true)
        message.complete(author: author, date: "Mon, 07 Dec 2026 10:00:00 +0000", messageID: "id@web1.example.com")
        #expect(
            text(message) == "From: root@web1.example.com\r\nTo: root\r\nSubject: cron\r\n"
                + "Date: Mon, 07 Dec 2026 10:00:00 +0000\r\nMessage-ID: <id@web1.example.com>\r\n\r\nline 1\r\nline 2\r\n"
        )
    }

    @Test func presentFields_areKept_whateverTheirCase() {
        var message = LocalMessage(
            input: Array("from: a@example.com\r\nDATE: x\r\nmessage-id: <m@x>\r\n\r\nbody\r\n".utf8), ignoreDots: true)
        message.complete(author: author, date: "d", messageID: "n")
        #expect(text(message) == "from: a@example.com\r\nDATE: x\r\nmessage-id: <m@x>\r\n\r\nbody\r\n")
    }

    @Test func withoutAHeader_theWholeInputIsTheBody() {
        var message = LocalMessage(
            input: Array("hello: not a field, this line has spaces in: it? no\n".utf8), ignoreDots: true)
        #expect(message.fields.count == 1, "a line of the field form is a field, as sendmail reads it")
        message = LocalMessage(input: Array("just text\nmore\n".utf8), ignoreDots: true)
        #expect(message.fields.isEmpty)
        #expect(String(decoding: message.body, as: UTF8.self) == "just text\r\nmore\r\n")
    }

    @Test func aLoneDot_endsTheMessage_onlyWithoutIgnoreDots() {
        let input = Array("Subject: s\n\nbefore\n.\nafter\n".utf8)
        #expect(String(decoding: LocalMessage(input: input, ignoreDots: false).body, as: UTF8.self) == "before\r\n")
        #expect(
            String(decoding: LocalMessage(input: input, ignoreDots: true).body, as: UTF8.self)
                == "before\r\n.\r\nafter\r\n")
    }

    @Test func recipientsFromHeaders_includeBcc_andBccIsRemoved() {
        var message = LocalMessage(
            input: Array(
                "To: Ops <ops@example.com>, root\nCc: dev@example.com\nBcc: audit@example.com,\n hidden@example.com\nSubject: s\n\nb\n"
                    .utf8),
            ignoreDots: true)
        #expect(
            message.headerRecipients == [
                "ops@example.com", "root", "dev@example.com", "audit@example.com", "hidden@example.com",
            ])
        message.removeBcc()
        #expect(!message.has("bcc"))
        #expect(!text(message).contains("audit@"))
    }

    @Test func anAddedFrom_carriesTheFullName_quotedOrEncodedAsNeeded() {
        for (name, expected) in [
            ("Cron Daemon", "From: Cron Daemon <root@web1.example.com>"),
            ("Smith, John", "From: \"Smith, John\" <root@web1.example.com>"),
            ("Jörg", "From: =?UTF-8?B?SsO2cmc=?= <root@web1.example.com>"),
        ] {
            var message = LocalMessage(input: Array("Subject: s\n\nb\n".utf8), ignoreDots: true)
            message.complete(
                author: LocalMessage.Author(user: "root", host: "web1.example.com", fullName: name), date: "d",
                messageID: "m")
            #expect(message.fields.first.map { String(decoding: $0, as: UTF8.self) } == expected)
        }
    }

    @Test func anMboxFromLine_isDropped() {
        let message = LocalMessage(
            input: Array("From root Mon Dec  7 10:00:00 2026\nSubject: s\n\nb\n".utf8), ignoreDots: true)
        #expect(message.fields.map { String(decoding: $0, as: UTF8.self) } == ["Subject: s"])
    }
}
