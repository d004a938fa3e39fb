import Foundation
import Testing

@testable import ACSEmail

/// The encoder against the spec's own example (docs/acs-email-api.md §2.4) and the §2.3 serialization rules.
struct EncoderTests {
    /// The §2.4 example request, verbatim from the doc (kept as a file: its lines are wider than 120 columns).
    static func specExample() throws -> [UInt8] {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/spec-2.4-example.json")
        return try Array(Data(contentsOf: url))
    }

    /// The same request built from the model.
    static let specMessage = EmailMessage(
        senderAddress: "abc@domain.com",
        content: EmailContent(
            subject: "An exciting offer especially for you!",
            plainText: "This exciting offer was created especially for you, our most loyal customer.",
            html: "<html><head><title>Exciting offer!</title></head><body><img src=\"cid:my-inline-image\" "
                + "alt=\"Company Logo\"/><h1>...</h1></body></html>"),
        recipients: EmailRecipients(
            to: [EmailAddress(address: "john.doe@domain.com", displayName: "John Doe")],
            cc: [EmailAddress(address: "wendy@someotherdomain.com", displayName: "Wendy")],
            bcc: [EmailAddress(address: "bob@anotherdomain.com", displayName: "Bob")]),
        attachments: [
            EmailAttachment(
                name: "MyAttachment.pdf", contentType: "application/pdf",
                contentInBase64: "TG9yZW0gaXBzdW0gZG9sb3Igc2l0IGFtZXQ="),
            EmailAttachment(
                name: "MyInlineImage.jpg", contentType: "image/jpeg",
                contentInBase64: "TG9yZW0gaXBzdW0gZG9sb3Igc2l0IGFtZXQ=", contentId: "my-inline-image"),
        ],
        headers: ["ClientCustomHeaderName": "ClientCustomHeaderValue", "ClientCorrelationId": "123"],
        replyTo: [EmailAddress(address: "contoso-support@contoso.com", displayName: "Contoso Support")],
        userEngagementTrackingDisabled: true)

    /// The exact compact bytes expected: schema key order (§2.1), headers sorted, no spaces, `/` unescaped.
    static let specExpectedCompact =
        #"{"senderAddress":"abc@domain.com","content":{"subject":"An exciting offer especially for you!","#
        + #""plainText":"This exciting offer was created especially for you, our most loyal customer.","#
        + #""html":"<html><head><title>Exciting offer!</title></head><body><img src=\"cid:my-inline-image\" "#
        + #"alt=\"Company Logo\"/><h1>...</h1></body></html>"},"#
        + #""recipients":{"to":[{"address":"john.doe@domain.com","displayName":"John Doe"}],"#
        + #""cc":[{"address":"wendy@someotherdomain.com","displayName":"Wendy"}],"#
        + #""bcc":[{"address":"bob@anotherdomain.com","displayName":"Bob"}]},"#
        + #""attachments":[{"name":"MyAttachment.pdf","contentType":"application/pdf","#
        + #""contentInBase64":"TG9yZW0gaXBzdW0gZG9sb3Igc2l0IGFtZXQ="},"#
        + #"{"name":"MyInlineImage.jpg","contentType":"image/jpeg","#
        + #""contentInBase64":"TG9yZW0gaXBzdW0gZG9sb3Igc2l0IGFtZXQ=","#
        + #""contentId":"my-inline-image"}],"headers":{"ClientCorrelationId":"123","#
        + #""ClientCustomHeaderName":"ClientCustomHeaderValue"},"replyTo":[{"address":"contoso-support@contoso.com","#
        + #""displayName":"Contoso Support"}],"userEngagementTrackingDisabled":true}"#

    static func jsonObject(_ bytes: [UInt8]) throws -> NSDictionary {
        let object = try JSONSerialization.jsonObject(with: Data(bytes))
        return try #require(object as? NSDictionary)
    }

    @Test func specExample_encodesToTheSameJSONValue() throws {
        let encoded = ACSJSONEncoder().encode(Self.specMessage)
        #expect(try Self.jsonObject(encoded) == Self.jsonObject(Self.specExample()))
    }

    @Test func specExample_encodesToStableCompactBytesInSchemaOrder() {
        let encoded = ACSJSONEncoder().encode(Self.specMessage)
        #expect(String(decoding: encoded, as: UTF8.self) == Self.specExpectedCompact)
        // Dictionaries hash with a per-process seed: encoding again must not reorder the headers.
        for _ in 0..<5 {
            var copy = Self.specMessage
            copy.headers = Dictionary(uniqueKeysWithValues: Self.specMessage.headers?.shuffled() ?? [])
            #expect(ACSJSONEncoder().encode(copy) == encoded)
        }
    }

    @Test func specExample_decodesIntoTheModel_andReencodesToTheSameBytes() throws {
        let decoded = try JSONDecoder().decode(EmailMessage.self, from: Data(Self.specExample()))
        #expect(decoded == Self.specMessage)
        #expect(String(decoding: ACSJSONEncoder().encode(decoded), as: UTF8.self) == Self.specExpectedCompact)
    }

    @Test func prettyOutput_isTheSameValue() throws {
        let pretty = ACSJSONEncoder(prettyPrinted: true).encode(Self.specMessage)
        #expect(try Self.jsonObject(pretty) == Self.jsonObject(ACSJSONEncoder().encode(Self.specMessage)))
        #expect(String(decoding: pretty, as: UTF8.self).hasPrefix("{\n  \"senderAddress\": \"abc@domain.com\",\n"))
    }

    @Test func version2023_neverWritesContentId() throws {
        let encoded = ACSJSONEncoder(apiVersion: .v2023_03_31).encode(Self.specMessage)
        let text = String(decoding: encoded, as: UTF8.self)
        #expect(!text.contains("contentId"))
        #expect(text.contains(#""name":"MyInlineImage.jpg""#))
    }

    @Test func absentOptionals_areOmitted_andToIsAnEmptyArray() {
        let message = EmailMessage(
            senderAddress: "a@b.example", content: EmailContent(subject: "s", plainText: "p"),
            recipients: EmailRecipients(to: [], bcc: [EmailAddress(address: "c@d.example")]))
        #expect(
            String(decoding: ACSJSONEncoder().encode(message), as: UTF8.self)
                == #"{"senderAddress":"a@b.example","content":{"subject":"s","plainText":"p"},"#
                + #""recipients":{"to":[],"bcc":[{"address":"c@d.example"}]}}"#)
    }

    @Test func strings_escapeOnlyWhatJSONRequires_andKeepUTF8() throws {
        let subject = "Café \"quoted\" back\\slash a/b\n\r\t\u{08}\u{0C}\u{01}\u{1F} ☃ 😀"
        let message = EmailMessage(
            senderAddress: "a@b.example", content: EmailContent(subject: subject),
            recipients: EmailRecipients(to: []))
        let encoded = ACSJSONEncoder().encode(message)
        let text = String(decoding: encoded, as: UTF8.self)
        #expect(text.contains(#""subject":"Café \"quoted\" back\\slash a/b\n\r\t\b\f\u0001\u001f ☃ 😀""#))
        let decoded = try JSONDecoder().decode(EmailMessage.self, from: Data(encoded))
        #expect(decoded.content.subject == subject)
    }

    @Test(arguments: [
        ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ])
    func base64_matchesRFC4648Vectors(_ input: String, _ expected: String) {
        #expect(Base64.encode(Array(input.utf8)) == expected)
    }

    @Test func base64_agreesWithFoundation_onAllByteValues_withoutLineBreaks() {
        let bytes = (0..<3000).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 / 256) }
        for length in [0, 1, 2, 3, 57, 58, 76, 77, 3000] {
            let slice = Array(bytes.prefix(length))
            #expect(Base64.encode(slice) == Data(slice).base64EncodedString())
        }
        #expect(!Base64.encode(bytes).contains("\n"))
    }

    @Test(arguments: [0, 1, 2, 3, 4, 57, 58, 3000])
    func attachmentOctets_encodeToTheSameBytesAsTheirBase64Text(_ length: Int) {
        let octets = (0..<length).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) }
        var fromOctets = Self.specMessage
        var fromText = Self.specMessage
        fromOctets.attachments = [EmailAttachment(name: "a.bin", contentType: "application/pdf", octets: octets)]
        fromText.attachments = [
            EmailAttachment(
                name: "a.bin", contentType: "application/pdf", contentInBase64: Data(octets).base64EncodedString())
        ]
        for pretty in [false, true] {
            let encoder = ACSJSONEncoder(prettyPrinted: pretty)
            #expect(encoder.encode(fromOctets) == encoder.encode(fromText))
        }
        #expect(fromOctets == fromText)
        #expect(fromOctets.hashValue == fromText.hashValue)
        #expect(fromOctets.attachments?.first?.contentInBase64 == Data(octets).base64EncodedString())
    }

    @Test func largeAttachment_isWrittenIntoOneExactlySizedArray() {
        // Growing the array while writing would hold the old and the doubled storage together: the capacity
        // shows whether the request was written into one allocation of its final size. malloc serves a block
        // this large with whole pages, and the array reports the rounded-up size as its capacity.
        var message = Self.specMessage
        message.attachments = [
            EmailAttachment(
                name: "big.pdf", contentType: "application/pdf",
                octets: [UInt8](repeating: 0xA5, count: 3_000_001))
        ]
        for pretty in [false, true] {
            let encoded = ACSJSONEncoder(prettyPrinted: pretty).encode(message)
            #expect(encoded.count > 4_000_000)
            #expect(encoded.capacity - encoded.count < 4096)
        }
    }
}
