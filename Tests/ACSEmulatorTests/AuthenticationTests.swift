import ACSClient
import Foundation
import Testing

@testable import ACSEmulator

/// HMAC verification exactly as the service does it (acs-email-api.md §3.4), and bearer tokens.
@Suite struct AuthenticationTests {
    @Test func validSignedSend_isAcceptedAndRecorded() async throws {
        try await EmulatorHarness.with { emulator in
            let response = try await emulator.send()
            #expect(response.status == 202, "\(response.text)")
            let messages = try await emulator.recordedMessages()
            #expect(messages.count == 1)
            #expect(messages.first?.request["senderAddress"]?.stringValue == "DoNotReply@contoso.com")
            #expect(messages.first?.apiVersion == "2025-09-01")
        }
    }

    @Test func signedPoll_isAccepted() async throws {
        try await EmulatorHarness.with { emulator in
            let id = try #require(try await emulator.send().json?["id"]?.stringValue)
            #expect(try await emulator.poll(id).status == 200)
        }
    }

    static let deniedBody = #"{"error":{"code":"Denied","message":"Denied by the resource provider."}}"#

    @Test func wrongKey_isDeniedWithTheServiceBody() async throws {
        try await EmulatorHarness.with { emulator in
            let otherKey = try #require(AccessKey(base64: Data(repeating: 7, count: 64).base64EncodedString()))
            let response = try await emulator.request(
                "POST", "/emails:send?api-version=2025-09-01", body: Array(EmulatorHarness.validMessage.utf8),
                key: otherKey)
            #expect(response.status == 401)
            #expect(response.text == Self.deniedBody)
            #expect(response.header("x-ms-error-code") == "Denied")
            #expect(try await emulator.recordedMessages().isEmpty)
        }
    }

    @Test func missingAuthorization_isDenied() async throws {
        try await EmulatorHarness.with { emulator in
            let response = try await emulator.request(
                "POST", "/emails:send?api-version=2025-09-01", body: Array(EmulatorHarness.validMessage.utf8), key: nil)
            #expect(response.status == 401)
            #expect(response.errorCode == "Denied")
        }
    }

    @Test(arguments: [-16 * 60.0, 16 * 60.0])
    func staleOrFutureDate_isDenied(offset: Double) async throws {
        try await EmulatorHarness.with { emulator in
            let response = try await emulator.request(
                "POST", "/emails:send?api-version=2025-09-01", body: Array(EmulatorHarness.validMessage.utf8),
                date: Date().addingTimeInterval(offset))
            #expect(response.status == 401)
            #expect(response.errorCode == "Denied")
        }
    }

    @Test func dateWithinTheWindow_isAccepted() async throws {
        try await EmulatorHarness.with { emulator in
            let response = try await emulator.request(
                "POST", "/emails:send?api-version=2025-09-01", body: Array(EmulatorHarness.validMessage.utf8),
                date: Date().addingTimeInterval(-14 * 60))
            #expect(response.status == 202)
        }
    }

    @Test func tamperedBody_isDeniedForTheContentHash() async throws {
        try await EmulatorHarness.with { emulator in
            let signed = Array(EmulatorHarness.validMessage.utf8)
            let sent = Array(EmulatorHarness.validMessage.replacingOccurrences(of: "Hello", with: "Hellp").utf8)
            let response = try await emulator.request(
                "POST", "/emails:send?api-version=2025-09-01", body: sent, signedBody: signed)
            #expect(response.status == 401)
            #expect(
                response.json?["error"]?["message"]?.stringValue
                    == "'x-ms-content-sha256' differs from generated content hash")
            #expect(try await emulator.recordedMessages().isEmpty)
        }
    }

    @Test func signatureOverAnotherHostOrPath_isDenied() async throws {
        try await EmulatorHarness.with { emulator in
            let body = Array(EmulatorHarness.validMessage.utf8)
            let otherHost = try await emulator.request(
                "POST", "/emails:send?api-version=2025-09-01", body: body, signedHost: "contoso.communication.azure.com"
            )
            #expect(otherHost.status == 401)
            // The colon must be signed as sent, not percent-encoded (§1.3).
            let encodedPath = try await emulator.request(
                "POST", "/emails:send?api-version=2025-09-01", body: body,
                signedPath: "/emails%3Asend?api-version=2025-09-01")
            #expect(encodedPath.status == 401)
        }
    }

    @Test func dateHeaderInsteadOfXMSDate_isAccepted() async throws {
        try await EmulatorHarness.with { emulator in
            let body = Array(EmulatorHarness.validMessage.utf8)
            let signed = RequestSigner(key: EmulatorHarness.key).headers(
                method: "POST", pathAndQuery: "/emails:send?api-version=2025-09-01", host: emulator.host, body: body,
                date: Date())
            let headers = signed.map { $0.name == "x-ms-date" ? (name: "Date", value: $0.value) : $0 }
            let response = try await emulator.request(
                "POST", "/emails:send?api-version=2025-09-01", body: body, headers: headers, key: nil)
            #expect(response.status == 202, "\(response.text)")
        }
    }

    @Test func bearerToken_isAcceptedOnlyWhenConfiguredAndEqual() async throws {
        let configuration = EmulatorConfiguration(accessKey: EmulatorHarness.key, bearerToken: "test-token-123")
        try await EmulatorHarness.with(configuration) { emulator in
            let body = Array(EmulatorHarness.validMessage.utf8)
            let good = try await emulator.request(
                "POST", "/emails:send?api-version=2025-09-01", body: body,
                headers: [("Authorization", "Bearer test-token-123")], key: nil)
            #expect(good.status == 202)
            let bad = try await emulator.request(
                "POST", "/emails:send?api-version=2025-09-01", body: body,
                headers: [("Authorization", "Bearer test-token-124")], key: nil)
            #expect(bad.status == 401)
        }
        try await EmulatorHarness.with { emulator in
            let response = try await emulator.request(
                "POST", "/emails:send?api-version=2025-09-01", body: Array(EmulatorHarness.validMessage.utf8),
                headers: [("Authorization", "Bearer anything")], key: nil)
            #expect(response.status == 401)
        }
    }

    // MARK: The verifier without a socket

    @Test func verifierAcceptsTheSDKVector() throws {
        // Vector V1 of acs-hmac-vectors.json, checked at its own date.
        let key = try #require(
            AccessKey(
                base64: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw=="))
        let body = Array(
            #"{"senderAddress": "DoNotReply@contoso.com", "recipients": {"to": [{"address": "jane@example.com", "displayName": "Jane"}]}, "content": {"subject": "Hi", "plainText": "Hello"}}"#
                .utf8)
        let headers = [
            "x-ms-date": "Mon, 01 Jan 2024 00:00:00 GMT",
            "x-ms-content-sha256": "Bbi+LkZ8L4ZoJJLfWv9UjRhbhC3y2IKpRvtoAcNFHeU=",
            "authorization":
                "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=hqy5p+0WE5Yl2HOpBMqj+fbBED3CBFQzt7NwqEqQLAw=",
        ]
        let verifier = RequestVerifier(accessKey: key, bearerToken: nil, clockSkewTolerance: 900)
        let now = Date(timeIntervalSince1970: 1_704_067_200 + 60)
        #expect(
            verifier.check(
                method: "POST", target: "/emails:send?api-version=2025-09-01", host: "contoso.communication.azure.com",
                body: body, now: now, header: { headers[$0.lowercased()] }) == nil)
        // Other signed headers than the SDKs' are refused (§3.4 step 1).
        let reordered = headers.merging(
            [
                "authorization":
                    "HMAC-SHA256 SignedHeaders=host;x-ms-date;x-ms-content-sha256&Signature=hqy5p+0WE5Yl2HOpBMqj+fbBED3CBFQzt7NwqEqQLAw="
            ]
        ) { $1 }
        #expect(
            verifier.check(
                method: "POST", target: "/emails:send?api-version=2025-09-01", host: "contoso.communication.azure.com",
                body: body, now: now, header: { reordered[$0.lowercased()] }) != nil)
    }

    @Test func httpDateParsingRoundTripsTheSignerFormat() {
        for seconds in [0.0, 1_704_067_200, 1_720_170_187, 951_782_400, 4_102_444_799] {
            let date = Date(timeIntervalSince1970: seconds)
            #expect(RequestVerifier.parseHTTPDate(RequestSigner.httpDate(date)) == date)
        }
        #expect(RequestVerifier.parseHTTPDate("2024-01-01T00:00:00Z") == nil)
        // An absurd year crashed the emulator before the signature was checked.
        #expect(RequestVerifier.parseHTTPDate("Mon, 01 Jan 99999999999999 00:00:00 GMT") == nil)
        #expect(RequestVerifier.parseHTTPDate("Mon, 001 Jan 2024 00:00:00 GMT") == nil)
        #expect(RequestVerifier.parseHTTPDate("Mon, 01 Foo 2024 00:00:00 GMT") == nil)
    }
}
