import Foundation
import Testing

@testable import ACSEmail

/// The bounce's loop guards, its sanitizing, the header cap and the date format (``Bounce``).
struct BounceTests {
    private static let plainHeaders = Array(
        "From: App <app@example.com>\r\nTo: jane@example.net\r\nSubject: Hi\r\n\r\nbody\r\n".utf8)

    private static func suppression(
        _ headers: String, sender: String = "app@example.com", gatewaySender: String? = "DoNotReply@gateway.example"
    ) -> BounceSuppression? {
        Bounce.suppression(envelopeSender: sender, headers: Array(headers.utf8), gatewaySender: gatewaySender)
    }

    private static func report(
        headers: [UInt8] = plainHeaders, subject: String? = "Hi", diagnostic: String = "EmailDropped: dropped",
        recipients: [String] = ["jane@example.net"]
    ) -> DeliveryFailureReport {
        DeliveryFailureReport(
            reportingMTA: "gw.example.com", messageID: "0190a5f2-0000-7000-8000-000000000001",
            originalSender: "app@example.com", recipients: recipients, arrivalDate: Date(timeIntervalSince1970: 0),
            status: "5.1.0", diagnostic: diagnostic, originalHeaders: headers, originalSubject: subject)
    }

    /// The decoded text of the attachment called `name`.
    private static func attachment(_ name: String, of message: EmailMessage) throws -> [UInt8] {
        let attachment = try #require(message.attachments?.first { $0.name == name })
        #expect(attachment.contentType == "text/plain")
        return try #require(Data(base64Encoded: attachment.contentInBase64).map(Array.init))
    }

    // MARK: Loop guards

    @Test func ordinaryMessage_mayBeBounced() {
        #expect(Self.suppression("From: app@example.com\r\nAuto-Submitted: no\r\nSubject: x\r\n") == nil)
        #expect(
            !Bounce.mustNotBounce(envelopeSender: "<app@example.com>", headers: Self.plainHeaders, gatewaySender: nil))
    }

    @Test(arguments: ["", "<>", " <> "])
    func nullSender(_ sender: String) {
        #expect(Self.suppression("Subject: x\r\n", sender: sender) == .nullSender)
        #expect(Bounce.mustNotBounce(envelopeSender: sender, headers: [], gatewaySender: nil))
    }

    @Test(arguments: [
        "Auto-Submitted: auto-replied", "auto-submitted: Auto-Generated (vacation)",
        "Auto-Submitted: auto-notified; x=1",
        "Auto-Submitted:",
    ])
    func autoSubmitted(_ field: String) {
        #expect(Self.suppression("From: app@example.com\r\n\(field)\r\n") == .autoSubmitted)
    }

    @Test func autoSubmittedNo_withCommentsAndCase_isNotAnAutoReply() {
        #expect(Self.suppression("Auto-Submitted: No (a person wrote this)\r\n") == nil)
    }

    @Test func multipartReport_evenFolded() {
        let headers =
            "From: app@example.com\nContent-Type: Multipart/Report;\n\treport-type=delivery-status;\n\tboundary=x\n"
        #expect(Self.suppression(headers) == .report)
        #expect(Self.suppression("Content-Type: multipart/mixed; boundary=report\r\n") == nil)
    }

    @Test func xFailedRecipients() {
        #expect(Self.suppression("X-Failed-Recipients: jane@example.net\r\n") == .failedRecipients)
    }

    @Test func theGatewaysOwnBounce_evenWithoutAutoSubmitted() {
        #expect(Self.suppression("X-ACSGW-Bounce-For: 0190a5f2\r\n") == .gatewayBounce)
    }

    @Test(arguments: ["MAILER-DAEMON@mx.example.com", "<Postmaster@example.com>", "mailer-daemon"])
    func mailerDaemonEnvelopeSender(_ sender: String) {
        #expect(Self.suppression("Subject: x\r\n", sender: sender) == .mailerDaemon)
    }

    @Test func mailerDaemonFrom() {
        let headers = "From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\nSubject: failure\r\n"
        #expect(Self.suppression(headers) == .mailerDaemon)
    }

    @Test func theGatewaysSenderAddress_caseInsensitive() {
        #expect(Self.suppression("Subject: x\r\n", sender: "<donotreply@Gateway.Example>") == .gatewaySender)
        #expect(Self.suppression("Subject: x\r\n", sender: "donotreply@gateway.example", gatewaySender: nil) == nil)
        #expect(Self.suppression("Subject: x\r\n", sender: "other@gateway.example") == nil)
    }

    @Test func fieldsInTheBody_areNotHeaders() {
        let message =
            "From: app@example.com\r\nSubject: x\r\n\r\nAuto-Submitted: auto-replied\r\nX-Failed-Recipients: a\r\n"
        #expect(Self.suppression(message) == nil)
    }

    // MARK: The bounce

    @Test func message_hasTheSubjectHeadersRecipientAndTwoAttachments() throws {
        let message = Bounce.message(
            for: Self.report(), senderAddress: "DoNotReply@gateway.example", bounceRecipient: "app@example.com")
        #expect(message.senderAddress == "DoNotReply@gateway.example")
        #expect(message.recipients == EmailRecipients(to: [EmailAddress(address: "app@example.com")]))
        #expect(message.content.subject == "Undelivered Mail Returned to Sender: Hi")
        #expect(message.content.html == nil)
        #expect(
            message.headers == [
                "Auto-Submitted": "auto-replied", "X-ACSGW-Bounce-For": "0190a5f2-0000-7000-8000-000000000001",
            ])
        #expect(message.attachments?.map(\.name) == ["delivery-status.txt", "original-headers.txt"])
        let status = String(decoding: try Self.attachment("delivery-status.txt", of: message), as: UTF8.self)
        #expect(
            status == """
                Reporting-MTA: dns; gw.example.com\r
                X-ACSGW-Message-Id: 0190a5f2-0000-7000-8000-000000000001\r
                Arrival-Date: Thu, 01 Jan 1970 00:00:00 +0000\r
                \r
                Final-Recipient: rfc822; jane@example.net\r
                Action: failed\r
                Status: 5.1.0\r
                Diagnostic-Code: smtp; EmailDropped: dropped\r

                """)
        // The header block only, as received.
        #expect(
            try Self.attachment("original-headers.txt", of: message)
                == Array("From: App <app@example.com>\r\nTo: jane@example.net\r\nSubject: Hi\r\n".utf8))
        // The bounce is itself protected by the loop guard.
        #expect(
            Bounce.mustNotBounce(
                envelopeSender: "DoNotReply@gateway.example",
                headers: Array("Auto-Submitted: auto-replied\r\nX-ACSGW-Bounce-For: x\r\n".utf8), gatewaySender: nil))
    }

    @Test func aBlankSubject_givesThePrefixAlone() {
        for subject in [nil, "", " \r\n "] {
            let message = Bounce.message(
                for: Self.report(subject: subject), senderAddress: "a@b.c", bounceRecipient: "d@e.f")
            #expect(message.content.subject == "Undelivered Mail Returned to Sender")
        }
    }

    @Test func valuesFromTheOriginal_cannotStartALineOfTheirOwn() throws {
        var report = Self.report(
            subject: "Hi\r\nBcc: victim@example.org",
            diagnostic: "Bad\r\n\r\nFinal-Recipient: rfc822; x@y\u{2028}z\u{0}",
            recipients: ["jane@example.net\nAction: delivered"])
        report.messageID = "id\rBcc: victim@example.org"
        report.status = "5.1.0\nX: y"
        let message = Bounce.message(for: report, senderAddress: "a@b.c", bounceRecipient: "d@e.f")
        #expect(message.content.subject == "Undelivered Mail Returned to Sender: Hi Bcc: victim@example.org")
        #expect(message.headers?["X-ACSGW-Bounce-For"] == "id Bcc: victim@example.org")
        let status = String(decoding: try Self.attachment("delivery-status.txt", of: message), as: UTF8.self)
        let lines = status.components(separatedBy: "\r\n")
        #expect(lines.filter { $0.hasPrefix("Final-Recipient:") }.count == 1)
        #expect(!lines.contains { $0.hasPrefix("Action: delivered") || $0.hasPrefix("X: ") })
        #expect(lines.contains("Diagnostic-Code: smtp; Bad Final-Recipient: rfc822; x@y z"))
        for text in [status, message.content.plainText ?? ""] {
            #expect(!text.unicodeScalars.contains { $0 == "\u{0}" || $0 == "\u{2028}" })
            #expect(!text.replacingOccurrences(of: "\r\n", with: "").contains { $0 == "\r" || $0 == "\n" })
        }
        #expect(message.content.plainText?.contains("\r\nSubject: Hi Bcc: victim@example.org\r\n") == true)
    }

    @Test func longValues_areCut() {
        let message = Bounce.message(
            for: Self.report(
                subject: String(repeating: "s", count: 500), diagnostic: String(repeating: "d", count: 5000)),
            senderAddress: "a@b.c", bounceRecipient: "d@e.f")
        #expect(message.content.subject.count == "Undelivered Mail Returned to Sender: ".count + 200)
        #expect(message.content.subject.hasSuffix("s…"))
        #expect(message.content.plainText?.contains(String(repeating: "d", count: 999) + "…") == true)
        #expect(message.content.plainText?.contains(String(repeating: "d", count: 1000)) == false)
    }

    @Test func originalHeaders_overTheCap_areCutAtALineEndWithANote() throws {
        // 700 lines of 100 octets: 70,000 octets; 655 whole lines fit in 65,536.
        let line = "X-Filler: " + String(repeating: "x", count: 88) + "\r\n"
        let headers = Array(String(repeating: line, count: 700).utf8) + Array("\r\nbody\r\n".utf8)
        let message = Bounce.message(
            for: Self.report(headers: headers), senderAddress: "a@b.c", bounceRecipient: "d@e.f")
        let attached = try Self.attachment("original-headers.txt", of: message)
        let note = Array("\r\n[truncated: the header block has 70000 octets, the first 65500 are shown]\r\n".utf8)
        #expect(attached == Array(String(repeating: line, count: 655).utf8) + note)
    }

    @Test func oneHeaderLineOverTheCap_isCutAtACharacterBoundary() throws {
        let headers = Array(("Subject: " + String(repeating: "é", count: 40_000) + "\r\n").utf8)
        let message = Bounce.message(
            for: Self.report(headers: headers), senderAddress: "a@b.c", bounceRecipient: "d@e.f")
        let attached = try Self.attachment("original-headers.txt", of: message)
        let text = try #require(String(validating: attached, as: UTF8.self))
        let kept = try #require(text.components(separatedBy: "\r\n[truncated").first)
        #expect(kept.utf8.count <= Bounce.maxOriginalHeaderBytes)
        #expect(kept.utf8.count >= Bounce.maxOriginalHeaderBytes - 1)
        #expect(kept.hasPrefix("Subject: é"))
    }

    @Test func headerBlock_endsAtTheFirstEmptyLine() {
        #expect(Array(Bounce.headerBlock(Array("A: 1\nB: 2\n\nC: 3\n".utf8))) == Array("A: 1\nB: 2\n".utf8))
        #expect(Array(Bounce.headerBlock(Array("A: 1\r\n\r\nC: 3".utf8))) == Array("A: 1\r\n".utf8))
        #expect(Bounce.headerBlock(Array("\r\nbody".utf8)).isEmpty)
        #expect(Array(Bounce.headerBlock(Array("A: 1\r\n B".utf8))) == Array("A: 1\r\n B".utf8))
    }

    @Test func requestBody_isTheEncodedMessage() {
        let report = Self.report()
        let message = Bounce.message(for: report, senderAddress: "a@b.c", bounceRecipient: "d@e.f")
        for version in ACSAPIVersion.allCases {
            #expect(
                Bounce.requestBody(for: report, senderAddress: "a@b.c", bounceRecipient: "d@e.f", apiVersion: version)
                    == ACSJSONEncoder(apiVersion: version).encode(message))
        }
    }

    // MARK: Dates

    @Test func rfc5322Date_knownInstants() {
        #expect(Bounce.rfc5322Date(Date(timeIntervalSince1970: 0)) == "Thu, 01 Jan 1970 00:00:00 +0000")
        #expect(Bounce.rfc5322Date(Date(timeIntervalSince1970: 0.999)) == "Thu, 01 Jan 1970 00:00:00 +0000")
        #expect(Bounce.rfc5322Date(Date(timeIntervalSince1970: -1)) == "Wed, 31 Dec 1969 23:59:59 +0000")
        #expect(Bounce.rfc5322Date(Date(timeIntervalSince1970: 1_709_208_000)) == "Thu, 29 Feb 2024 12:00:00 +0000")
        #expect(Bounce.rfc5322Date(Date(timeIntervalSince1970: 1_700_000_000)) == "Tue, 14 Nov 2023 22:13:20 +0000")
    }

    @Test func rfc5322Date_agreesWithFoundationsFormatter() {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss Z"
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            // 1900 to 2200, whole seconds.
            let date = Date(
                timeIntervalSince1970: Double(Int64.random(in: -2_208_988_800...7_258_118_400, using: &generator)))
            #expect(Bounce.rfc5322Date(date) == formatter.string(from: date), "\(date.timeIntervalSince1970)")
        }
    }
}
