import Testing

@testable import ACSEmail

/// The pieces of the translation that do not need a parsed message: attachment types, headers, recipients,
/// sender, rejections.
struct AttachmentTypeTests {
    @Test func table_coversEverySection7_1Row() {
        #expect(AttachmentTypes.typeByExtension.count == 62)
        #expect(AttachmentTypes.isAllowed("application/pdf"))
        #expect(AttachmentTypes.isAllowed("text/xml"))
        #expect(AttachmentTypes.isAllowed("application/vnd.ms-excel.sheet.macroenabled.12"))
        #expect(AttachmentTypes.isAllowed("IMAGE/PNG"))
        #expect(!AttachmentTypes.isAllowed("application/octet-stream"))
        #expect(!AttachmentTypes.isAllowed("message/rfc822"))
        #expect(!AttachmentTypes.isAllowed("text/html"))
    }

    @Test func inference_usesTheLastExtension_caseInsensitively() {
        #expect(AttachmentTypes.inferredType(forFileName: "report.PDF") == "application/pdf")
        #expect(AttachmentTypes.inferredType(forFileName: "archive.tar.gz") == "application/gzip")
        #expect(AttachmentTypes.inferredType(forFileName: "photo.jpeg") == "image/jpeg")
        #expect(AttachmentTypes.inferredType(forFileName: "setup.exe") == nil)
        #expect(AttachmentTypes.inferredType(forFileName: "README") == nil)
        #expect(AttachmentTypes.inferredType(forFileName: ".pdf") == nil)
    }

    @Test func generatedExtensions_areDeterministic() {
        #expect(AttachmentTypes.fileExtension(forType: "image/jpeg") == "jpg")
        #expect(AttachmentTypes.fileExtension(forType: "image/tiff") == "tif")
        #expect(AttachmentTypes.fileExtension(forType: "message/rfc822") == "eml")
        #expect(AttachmentTypes.fileExtension(forType: "application/pdf") == "pdf")
        #expect(AttachmentTypes.fileExtension(forType: "application/x-unknown") == "bin")
        #expect(AttachmentTypes.fileExtension(forType: "text/x-unknown") == "txt")
    }
}

struct HeaderPolicyTests {
    @Test func allowList_forwards_denyList_wins_andValuesAreCleaned() {
        let fields: [(name: String, value: String)] = [
            ("Message-ID", "abc@example.com"), ("In-Reply-To", "<x@example.com>"), ("From", "a@example.com"),
            ("Subject", "s"), ("Content-Type", "text/plain"), ("X-Mailer", "  mutt\r\n 2.2 "),
            ("x-ms-acsemail-suppress-invalid-attachment", "true"), ("X-MS-Exchange-Organization-SCL", "1"),
            ("X-Original-To", "hidden@example.com"), ("Received", "from x"), ("ARC-Seal", "i=1"),
            ("Keywords", "k"), ("X-Empty", "   "), ("X-Mailer", "second"), ("Bad Name", "v"),
            ("Importance", "high"), ("List-Unsubscribe", "<mailto:u@example.com>"),
        ]
        #expect(
            HeaderPolicy.forwardedHeaders(fields) == [
                "Message-ID": "<abc@example.com>", "In-Reply-To": "<x@example.com>", "X-Mailer": "mutt 2.2",
                "Importance": "high", "List-Unsubscribe": "<mailto:u@example.com>",
            ])
    }

    @Test func configuredLists_addAndRemove_butNeverOverrideTheBuiltInDenyList() {
        let fields: [(name: String, value: String)] = [
            ("Keywords", "k"), ("X-Internal-Id", "7"), ("X-Trace", "t"), ("Subject", "s"), ("DKIM-Signature", "d"),
        ]
        #expect(
            HeaderPolicy.forwardedHeaders(
                fields, allow: ["keywords", "Subject", "DKIM-*"], deny: ["X-Internal-*"])
                == ["Keywords": "k", "X-Trace": "t"])
    }

    @Test func nothingForwarded_isNil() {
        #expect(HeaderPolicy.forwardedHeaders([("Date", "Mon, 1 Jan 2024 00:00:00 +0000")]) == nil)
    }
}

struct RecipientMappingTests {
    @Test func envelopeDecides_headersOnlyLendDisplayNames() {
        let recipients = RecipientMapping.map(
            envelopeRecipients: ["ann@Example.com", "<bob@example.org>", "hidden@example.net", "ann@EXAMPLE.com."],
            toHeader: [
                EmailAddress(address: "ann@example.com", displayName: "Doe, Ann"),
                EmailAddress(address: "notsent@example.com", displayName: "Not Sent"),
            ],
            ccHeader: [EmailAddress(address: "bob@EXAMPLE.org", displayName: "Bob")])
        #expect(
            recipients
                == EmailRecipients(
                    to: [EmailAddress(address: "ann@Example.com", displayName: "Doe, Ann")],
                    cc: [EmailAddress(address: "bob@example.org", displayName: "Bob")],
                    bcc: [EmailAddress(address: "hidden@example.net")]))
    }

    @Test func localPart_isCaseSensitive() {
        let recipients = RecipientMapping.map(
            envelopeRecipients: ["Ann@example.com"], toHeader: [EmailAddress(address: "ann@example.com")],
            ccHeader: [])
        #expect(recipients == EmailRecipients(to: [], bcc: [EmailAddress(address: "Ann@example.com")]))
    }

    @Test func inToAndCc_goesToTo_blankDisplayNameIsOmitted() {
        let recipients = RecipientMapping.map(
            envelopeRecipients: ["a@example.com"], toHeader: [EmailAddress(address: "a@example.com", displayName: " ")],
            ccHeader: [EmailAddress(address: "a@example.com", displayName: "A")])
        #expect(recipients == EmailRecipients(to: [EmailAddress(address: "a@example.com")]))
    }

    @Test func noToHeader_givesAnEmptyTo() {
        let recipients = RecipientMapping.map(envelopeRecipients: ["a@example.com"], toHeader: [], ccHeader: [])
        #expect(recipients.to == [])
        #expect(recipients.count == 1)
    }
}

struct SenderPolicyTests {
    static let from = [EmailAddress(address: "Alice@Verified.example", displayName: "Alice")]

    @Test func fromOnAVerifiedDomain_isKept_withoutReplyTo() throws {
        let resolution = try SenderPolicy.resolve(
            from: Self.from, sender: nil, replyTo: [], envelopeMailFrom: "bounce@other.example",
            configuredSender: "DoNotReply@acs.example", verifiedDomains: ["verified.EXAMPLE"]
        ).get()
        #expect(resolution.senderAddress == "Alice@Verified.example")
        #expect(resolution.replyTo == nil)
        #expect(!resolution.replaced)
    }

    @Test func envelopeSenderOnAVerifiedDomain_replacesFrom_whichBecomesReplyTo() throws {
        let resolution = try SenderPolicy.resolve(
            from: [EmailAddress(address: "alice@elsewhere.example", displayName: "Alice")], sender: nil, replyTo: [],
            envelopeMailFrom: "bounce@verified.example", configuredSender: nil, verifiedDomains: ["verified.example"]
        ).get()
        #expect(resolution.senderAddress == "bounce@verified.example")
        #expect(resolution.replyTo == [EmailAddress(address: "alice@elsewhere.example", displayName: "Alice")])
    }

    @Test func configuredSender_replaces_butAnExistingReplyToWins() throws {
        let replyTo = [EmailAddress(address: "support@elsewhere.example")]
        let resolution = try SenderPolicy.resolve(
            from: [EmailAddress(address: "alice@elsewhere.example")], sender: nil, replyTo: replyTo,
            envelopeMailFrom: "", configuredSender: "DoNotReply@acs.example", verifiedDomains: []
        ).get()
        #expect(resolution.senderAddress == "DoNotReply@acs.example")
        #expect(resolution.replyTo == replyTo)
        #expect(resolution.replaced)
    }

    @Test func wildcardDomain_forDryRuns_keepsAnyFrom() throws {
        let resolution = try SenderPolicy.resolve(
            from: [EmailAddress(address: "app@anything.example")], sender: nil, replyTo: [],
            envelopeMailFrom: "", configuredSender: nil, verifiedDomains: ["*"]
        ).get()
        #expect(resolution.senderAddress == "app@anything.example")
        #expect(!resolution.replaced)
    }

    @Test func subdomains_areNotVerified_andUnmappableIsRejectedWith550() {
        let result = SenderPolicy.resolve(
            from: [EmailAddress(address: "a@mail.verified.example")], sender: nil, replyTo: [],
            envelopeMailFrom: "", configuredSender: nil, verifiedDomains: ["verified.example"])
        guard case .failure(let rejection) = result else {
            Issue.record("expected a rejection")
            return
        }
        #expect(rejection.reason == .senderNotMappable)
        #expect(rejection.text.contains("a@mail.verified.example"))
    }
}

struct RejectionTests {
    @Test func rejections_nameTheirReason_onOneLine() {
        #expect(
            TranslationRejection.requestTooLarge(encodedSize: 10_000_001, limit: 10_000_000).text
                == "Encoded ACS request size 10000001 bytes is over the limit of 10000000 bytes")
        #expect(
            TranslationRejection.attachmentTypeRejected(name: "a\r\nb.exe", contentType: "application/x-msdownload")
                .text == "Attachment \"a b.exe\" has type application/x-msdownload, which ACS does not accept")
        let byACS = TranslationRejection.attachmentRejectedByACS(["x.eml"])
        #expect(byACS.reason == .attachmentTypeRejected && byACS.text.hasPrefix("ACS rejected \"x.eml\""))
    }
}
