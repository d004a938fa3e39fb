import Testing

@testable import ACSClient

/// How a response header line, as libcurl hands it to the header callback, becomes a name and a value.
struct HeaderFieldTests {
    private func field(_ text: String) -> (name: String, value: String)? {
        CurlEasyTransfer.headerField(Array(text.utf8))
    }

    @Test func nameIsLowercasedAndBothSidesAreTrimmed() {
        let parsed = field("Operation-Location: \t https://x.example/emails/operations/1?api-version=2025-09-01 \r\n")
        #expect(parsed?.name == "operation-location")
        #expect(parsed?.value == "https://x.example/emails/operations/1?api-version=2025-09-01")
    }

    @Test func statusLinesTheBlankLineAndLinesWithoutAColonAreNotFields() {
        #expect(field("HTTP/2 202\r\n") == nil)
        #expect(field("HTTP/1.1 100 Continue\r\n") == nil)
        #expect(field("\r\n") == nil)
        #expect(field("garbage\r\n") == nil)
    }

    @Test func anEmptyValueAndAValueWithColonsAreKept() {
        #expect(field("X-Empty:\r\n").map { [$0.name, $0.value] } == ["x-empty", ""])
        #expect(field("Retry-After: Wed, 21 Oct 2026 07:28:00 GMT\r\n")?.value == "Wed, 21 Oct 2026 07:28:00 GMT")
    }

    @Test func onlyASCIILettersAreLowercasedAndOtherBytesSurviveAsUTF8() {
        #expect(field("X-ÄBC: Grüße\r\n").map { [$0.name, $0.value] } == ["x-Äbc", "Grüße"])
        #expect(field("X-Bad: \u{FF}")?.value == "\u{FF}")
    }
}
