import ACSEmail
import Foundation
import Testing

@testable import ACSEmulator

/// The payload rules of `POST /emails:send` (acs-email-api.md §2.2, §7, §8 "Send validation"), each over HTTP.
@Suite struct ValidationTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var name: String
        var json: String
        var status: Int
        var code: String
        var apiVersion = "2025-09-01"
        var testDescription: String { name }
    }

    static let pdf = #"{"name":"a.pdf","contentType":"application/pdf","contentInBase64":"JVBERi0xLjQ="}"#

    static func message(
        sender: String = "DoNotReply@contoso.com", to: String = #"[{"address":"jane@example.com"}]"#,
        extraRecipients: String = "", content: String = #"{"subject":"Hi","plainText":"Hello"}"#, extra: String = ""
    ) -> String {
        #"{"senderAddress":"\#(sender)","recipients":{"to":\#(to)\#(extraRecipients)},"content":\#(content)\#(extra)}"#
    }

    static func addresses(_ count: Int) -> String {
        "[" + (0..<count).map { #"{"address":"user\#($0)@example.com"}"# }.joined(separator: ",") + "]"
    }

    static let rejected: [Case] = [
        Case(name: "not JSON", json: "senderAddress=a@b.c", status: 400, code: "BadRequest"),
        Case(name: "JSON but not an object", json: "[1,2]", status: 400, code: "BadRequest"),
        Case(
            name: "no senderAddress",
            json: #"{"recipients":{"to":[{"address":"a@example.com"}]},"content":{"subject":"s","plainText":"p"}}"#,
            status: 400, code: "BadRequest"),
        Case(
            name: "no content.subject", json: message(content: #"{"plainText":"p"}"#), status: 400, code: "BadRequest"),
        Case(
            name: "empty subject", json: message(content: #"{"subject":"","plainText":"p"}"#), status: 400,
            code: "BadRequest"),
        Case(
            name: "no recipients",
            json: #"{"senderAddress":"DoNotReply@contoso.com","content":{"subject":"s","plainText":"p"}}"#, status: 400,
            code: "BadRequest"),
        Case(
            name: "neither plainText nor html", json: message(content: #"{"subject":"s"}"#), status: 400,
            code: "BadRequest"),
        Case(
            name: "empty plainText and html", json: message(content: #"{"subject":"s","plainText":"","html":""}"#),
            status: 400, code: "BadRequest"),
        Case(name: "zero recipients", json: message(to: "[]"), status: 400, code: "BadRequest"),
        Case(
            name: "51 recipients across to, cc and bcc",
            json: message(to: addresses(20), extraRecipients: #","cc":\#(addresses(20)),"bcc":\#(addresses(11))"#),
            status: 400, code: "BadRequest"),
        Case(
            name: "recipient without @", json: message(to: #"[{"address":"jane.example.com"}]"#), status: 400,
            code: "InvalidEmailAddress"),
        Case(
            name: "recipient without a dotted host", json: message(to: #"[{"address":"jane@localhost"}]"#), status: 400,
            code: "InvalidEmailAddress"),
        Case(
            name: "recipient with a space", json: message(to: #"[{"address":"ja ne@example.com"}]"#), status: 400,
            code: "InvalidEmailAddress"),
        Case(
            name: "malformed sender", json: message(sender: "DoNotReply@@contoso.com"), status: 400,
            code: "InvalidEmailAddress"),
        Case(
            name: "malformed cc", json: message(extraRecipients: #","cc":[{"address":"bob@-bad-.com"}]"#), status: 400,
            code: "InvalidEmailAddress"),
        Case(
            name: "malformed replyTo", json: message(extra: #","replyTo":[{"address":"nobody"}]"#), status: 400,
            code: "InvalidEmailAddress"),
        Case(
            name: "attachment with bad base64",
            json: message(
                extra: #","attachments":[{"name":"a.pdf","contentType":"application/pdf","contentInBase64":"%%%"}]"#),
            status: 400, code: "BadRequest"),
        Case(
            name: "empty attachment",
            json: message(
                extra: #","attachments":[{"name":"a.pdf","contentType":"application/pdf","contentInBase64":""}]"#),
            status: 400, code: "BadRequest"),
        Case(
            name: "attachment type not in §7.1",
            json: message(
                extra:
                    #","attachments":[{"name":"a.exe","contentType":"application/octet-stream","contentInBase64":"TVo="}]"#
            ),
            status: 400, code: "BadRequest"),
        Case(
            name: "duplicate contentId",
            json: message(
                extra:
                    #","attachments":[{"name":"a.png","contentType":"image/png","contentInBase64":"iVBO","contentId":"logo"},"#
                    + #"{"name":"b.png","contentType":"image/png","contentInBase64":"iVBO","contentId":"logo"}]"#),
            status: 400, code: "BadRequest"),
        Case(
            name: "attachment without a name field",
            json: message(
                extra: #","attachments":[{"contentType":"application/pdf","contentInBase64":"JVBERi0xLjQ="}]"#),
            status: 400, code: "BadRequest"),
    ]

    @Test(arguments: rejected)
    func invalidSend_isRejectedWithTheACSErrorShape(_ testCase: Case) async throws {
        try await EmulatorHarness.with { emulator in
            let response = try await emulator.send(testCase.json, apiVersion: testCase.apiVersion)
            #expect(response.status == testCase.status, "\(response.text)")
            #expect(response.errorCode == testCase.code)
            #expect(response.header("x-ms-error-code") == testCase.code)
            #expect(response.json?["error"]?["message"]?.stringValue?.isEmpty == false)
            #expect(try await emulator.recordedMessages().isEmpty)
        }
    }

    static let accepted: [Case] = [
        Case(name: "html only", json: message(content: #"{"subject":"s","html":"<p>x</p>"}"#), status: 202, code: ""),
        Case(
            name: "bcc only with \"to\": null, as the Azure CLI sends",
            json: message(to: "null", extraRecipients: #","bcc":[{"address":"b@example.com"}]"#), status: 202, code: ""),
        Case(name: "exactly 50 recipients", json: message(to: addresses(50)), status: 202, code: ""),
        Case(name: "a §7.1 attachment", json: message(extra: #","attachments":[\#(pdf)]"#), status: 202, code: ""),
        Case(
            name: "upper-case content type",
            json: message(
                extra:
                    #","attachments":[{"name":"a.PDF","contentType":"Application/PDF","contentInBase64":"JVBERi0xLjQ="}]"#
            ),
            status: 202, code: ""),
        Case(
            name: "duplicate contentId with the ignore header",
            json: message(
                extra: #","headers":{"x-ms-acsemail-ignore-duplicate-content-id":"true"},"attachments":["#
                    + #"{"name":"a.png","contentType":"image/png","contentInBase64":"iVBO","contentId":"logo"},"#
                    + #"{"name":"b.png","contentType":"image/png","contentInBase64":"iVBO","contentId":"logo"}]"#),
            status: 202, code: ""),
        Case(
            name: "duplicate contentId on 2023-03-31, which has no contentId",
            json: message(
                extra:
                    #","attachments":[{"name":"a.png","contentType":"image/png","contentInBase64":"iVBO","contentId":"x"},"#
                    + #"{"name":"b.png","contentType":"image/png","contentInBase64":"iVBO","contentId":"x"}]"#),
            status: 202, code: "", apiVersion: "2023-03-31"),
        Case(
            name: "an internationalised domain", json: message(to: #"[{"address":"jane@bücher.example"}]"#),
            status: 202, code: ""),
        Case(
            name: "unknown fields are tolerated", json: message(extra: #","futureField":{"a":1}"#), status: 202,
            code: ""),
    ]

    @Test(arguments: accepted)
    func validSend_isAccepted(_ testCase: Case) async throws {
        try await EmulatorHarness.with { emulator in
            let response = try await emulator.send(testCase.json, apiVersion: testCase.apiVersion)
            #expect(response.status == 202, "\(response.text)")
            #expect(try await emulator.recordedMessages().count == 1)
        }
    }

    @Test func suppressHeader_dropsInvalidAttachmentsAndKeepsTheRest() async throws {
        let json = Self.message(
            extra: #","headers":{"X-MS-ACSEmail-Suppress-Invalid-Attachment":"TRUE"},"attachments":["#
                + #"{"name":"a.exe","contentType":"application/x-msdownload","contentInBase64":"TVo="},"#
                + #"{"name":"e.pdf","contentType":"application/pdf","contentInBase64":""},\#(Self.pdf)]"#)
        try await EmulatorHarness.with { emulator in
            let response = try await emulator.send(json)
            #expect(response.status == 202, "\(response.text)")
            let messages = try await emulator.recordedMessages()
            #expect(messages.first?.droppedAttachments == ["a.exe", "e.pdf"])
        }
    }

    @Test func senderAllowList_domainNotLinkedAndInvalidUserName() async throws {
        let configuration = EmulatorConfiguration(
            accessKey: EmulatorHarness.key, senderDomains: ["contoso.com"],
            senderAddresses: ["DoNotReply", "alerts@contoso.com"])
        try await EmulatorHarness.with(configuration) { emulator in
            let unlinked = try await emulator.send(Self.message(sender: "DoNotReply@fabrikam.com"))
            #expect(unlinked.status == 404)
            #expect(unlinked.errorCode == "DomainNotLinked")
            #expect(unlinked.header("x-ms-error-code") == "DomainNotLinked")
            let unknownUser = try await emulator.send(Self.message(sender: "ceo@contoso.com"))
            #expect(unknownUser.status == 400)
            #expect(unknownUser.errorCode == "InvalidSenderUserName")
            #expect(try await emulator.send(Self.message(sender: "donotreply@CONTOSO.com")).status == 202)
            #expect(try await emulator.send(Self.message(sender: "alerts@contoso.com")).status == 202)
            #expect(try await emulator.recordedMessages().count == 2)
        }
    }

    @Test func bodyOverTenMillionBytes_is413() async throws {
        try await EmulatorHarness.with { emulator in
            let padding = String(
                repeating: "a", count: 10_000_001 - Self.message(content: #"{"subject":"s","plainText":""}"#).utf8.count
            )
            let json = Self.message(content: #"{"subject":"s","plainText":"\#(padding)"}"#)
            #expect(json.utf8.count == 10_000_001)
            let response = try await emulator.send(json)
            #expect(response.status == 413)
            #expect(response.errorCode == "RequestEntityTooLarge")
            #expect(response.header("x-ms-error-code") == "RequestEntityTooLarge")
            #expect(try await emulator.recordedMessages().isEmpty)
        }
    }

    @Test func bodyOfExactlyTheLimit_isAccepted() async throws {
        let configuration = EmulatorConfiguration(accessKey: EmulatorHarness.key, maxRequestBytes: 2000)
        try await EmulatorHarness.with(configuration) { emulator async throws in
            let base = Self.message(content: #"{"subject":"s","plainText":""}"#)
            let exact = Self.message(
                content: #"{"subject":"s","plainText":"\#(String(repeating: "b", count: 2000 - base.utf8.count))"}"#)
            #expect(exact.utf8.count == 2000)
            #expect(try await emulator.send(exact).status == 202)
            let over = Self.message(
                content: #"{"subject":"s","plainText":"\#(String(repeating: "b", count: 2001 - base.utf8.count))"}"#)
            #expect(try await emulator.send(over).status == 413)
        }
    }

    @Test func messageID_isValidatedOnlyWhenAskedFor() async throws {
        try await EmulatorHarness.with { emulator in
            let strict = #","headers":{"x-ms-acsemail-validate-message-id":"true","Message-ID":"%@"}"#
            for (messageID, status) in [
                ("<0c9a@contoso.com>", 202), ("0c9a@contoso.com", 400), ("<0c9a>", 400), ("<0c9a.contoso.com>", 400),
            ] {
                let json = Self.message(extra: strict.replacingOccurrences(of: "%@", with: messageID))
                let response = try await emulator.send(json)
                #expect(response.status == status, "\(messageID): \(response.text)")
            }
            let lenient = Self.message(extra: #","headers":{"Message-ID":"<0c9a>"}"#)
            #expect(try await emulator.send(lenient).status == 202)
        }
    }

    @Test func addressRules() {
        for good in ["a@b.co", "first.last+tag@sub.example.com", "x@xn--bcher-kva.example", "ü@bücher.de"] {
            #expect(SendValidator.isValidAddress(good), "\(good)")
        }
        for bad in [
            "", "a", "@b.co", "a@", "a@b", "a@b..co", "a@.b.co", "a b@c.co", "a@b@c.co", ".a@b.co", "a..b@c.co",
            "<a@b.co>", "a@b_c.co",
        ] {
            #expect(!SendValidator.isValidAddress(bad), "\(bad)")
        }
    }

    @Test func theGatewaysBounce_isAValidSend() async throws {
        let report = DeliveryFailureReport(
            reportingMTA: "gw.example.com", messageID: "0190a5f2-0000-7000-8000-000000000001",
            originalSender: "app@example.com", recipients: ["jane@example.net"], arrivalDate: Date(),
            status: "5.1.0", diagnostic: "EmailDropped: dropped",
            originalHeaders: Array("From: app@example.com\r\nSubject: Hi\r\n\r\nbody".utf8), originalSubject: "Hi")
        let body = Bounce.requestBody(
            for: report, senderAddress: "DoNotReply@contoso.com", bounceRecipient: "app@example.com")
        try await EmulatorHarness.with { emulator in
            let response = try await emulator.send(String(decoding: body, as: UTF8.self))
            #expect(response.status == 202, "\(response.text)")
            let recorded = try #require(try await emulator.recordedMessages().first)
            #expect(recorded.request["headers"]?["Auto-Submitted"]?.stringValue == "auto-replied")
            #expect(recorded.request["attachments"]?.arrayValue?.count == 2)
        }
    }
}
