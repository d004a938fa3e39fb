import ACSClient
import Foundation
import Testing

@testable import ACSEmulator

/// Outages (`outageMs`): every request on the route answered 503, or its connection dropped (`refuse`), for a
/// while.
@Suite struct OutageTests {
    private func post(_ faults: String, to emulator: EmulatorHarness) async throws {
        let response = try await emulator.admin("POST", "/admin/faults", json: faults)
        #expect(response.status == 200, "\(response.text)")
    }

    /// Long enough that the requests a test makes during an outage arrive within it even on a loaded machine.
    private static let outageMs = 6000

    /// Waits until no outage is listed any more (it ended), at most 20 s.
    private func waitForTheOutageToEnd(_ emulator: EmulatorHarness) async throws {
        let deadline = ContinuousClock.now + .seconds(20)
        while try await outageIsListed(emulator), ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
        }
    }

    private func outageIsListed(_ emulator: EmulatorHarness) async throws -> Bool {
        let faults = try await emulator.admin("GET", "/admin/faults").json?.arrayValue ?? []
        return faults.contains { $0["outageMs"] != nil }
    }

    @Test func outage_answers503ToEverySendForItsDuration_thenNormally() async throws {
        try await EmulatorHarness.with { emulator in
            let posted = ContinuousClock.now
            try await post(#"{"outageMs":\#(Self.outageMs),"retryAfter":2}"#, to: emulator)
            for operationID in ["op-1", "op-1", "op-2"] {
                let response = try await emulator.send(operationID: operationID)
                #expect(response.status == 503)
                #expect(response.errorCode == "ServiceUnavailable")
                #expect(response.header("Retry-After") == "2")
            }
            // Before authentication: an unsigned request gets the 503 too, not a 401.
            let unsigned = try await emulator.request(
                "POST", "/emails:send?api-version=2025-09-01", body: Array(EmulatorHarness.validMessage.utf8), key: nil)
            #expect(unsigned.status == 503)
            // Only its route: polls are answered (404 for an unknown operation).
            #expect(try await emulator.poll("unknown").status == 404)
            let faults = try await emulator.admin("GET", "/admin/faults")
            let left = try #require(faults.json?.arrayValue?.first?["outageMs"]?.intValue, "\(faults.text)")
            #expect((1...Self.outageMs).contains(left))
            try await waitForTheOutageToEnd(emulator)
            #expect(ContinuousClock.now - posted >= .milliseconds(Self.outageMs))
            #expect(try await emulator.send(operationID: "op-1").status == 202)
            #expect(try await emulator.recordedMessages().count == 1)
            #expect(try await emulator.requestCount("send", status: 503) == 4)
        }
    }

    @Test func outageOnRouteAny_coversPollsAndUnknownPaths() async throws {
        try await EmulatorHarness.with { emulator in
            let id = try #require(try await emulator.send().json?["id"]?.stringValue)
            try await post(
                #"{"route":"any","outageMs":\#(Self.outageMs),"status":500,"code":"InternalServerError"}"#, to: emulator
            )
            #expect(try await emulator.poll(id).status == 500)
            #expect(try await emulator.send().status == 500)
            #expect(try await emulator.request("GET", "/nothing?api-version=2025-09-01").status == 500)
            // The admin routes stay up.
            #expect(try await emulator.admin("GET", "/admin/requests").status == 200)
            try await waitForTheOutageToEnd(emulator)
            #expect(try await emulator.poll(id).json?["status"]?.stringValue == "Succeeded")
        }
    }

    @Test func refusingOutage_dropsTheConnection_thenAnswersNormally() async throws {
        try await EmulatorHarness.with { emulator in
            try await post(#"{"outageMs":\#(Self.outageMs),"refuse":true}"#, to: emulator)
            let error = await #expect(throws: HTTPTransportError.self) { try await emulator.send(operationID: "op") }
            #expect(error?.kind != .timeout)
            #expect(try await emulator.recordedMessages().isEmpty)
            let counts = try #require(try await emulator.admin("GET", "/admin/requests").json)
            #expect((counts["send"]?["dropped"]?.intValue ?? 0) >= 1)
            #expect(counts["send"]?["statuses"] == .object([:]))
            try await waitForTheOutageToEnd(emulator)
            #expect(try await emulator.send(operationID: "op").status == 202)
        }
    }

    @Test func refusingOutage_overHTTP2_dropsTheConnection() async throws {
        let certificates = try TestCertificates.make()
        defer { try? FileManager.default.removeItem(atPath: certificates.directory) }
        try await EmulatorHarness.with(tls: certificates) { emulator in
            #expect(try await emulator.send().httpVersion == "2")
            try await post(#"{"outageMs":\#(Self.outageMs),"refuse":true}"#, to: emulator)
            await #expect(throws: HTTPTransportError.self) { try await emulator.send() }
            try await waitForTheOutageToEnd(emulator)
            let after = try await emulator.send()
            #expect(after.status == 202)
            #expect(after.httpVersion == "2")
        }
    }

    @Test func badOutages_areRefused() async throws {
        try await EmulatorHarness.with { emulator in
            for bad in [
                #"{"outageMs":0}"#, #"{"outageMs":3600001}"#, #"{"outageMs":100,"count":1}"#,
                #"{"outageMs":100,"sender":"*@contoso.com"}"#, #"{"outageMs":100,"delayMs":10}"#,
                #"{"outageMs":100,"finalStatus":"Failed"}"#, #"{"outageMs":100,"refuse":true,"status":503}"#,
                #"{"refuse":false}"#, #"{"refuse":true,"count":1}"#, #"{"refuse":true}"#,
            ] {
                let response = try await emulator.admin("POST", "/admin/faults", json: bad)
                #expect(response.status == 400, "\(bad)")
            }
            #expect(try await emulator.admin("GET", "/admin/faults").text == "[]")
        }
    }

    @Test func outageIsCheckedBeforeCountedFaults_andLeavesThemUnused() async throws {
        try await EmulatorHarness.with { emulator in
            try await post(#"[{"status":429,"count":1},{"outageMs":\#(Self.outageMs)}]"#, to: emulator)
            #expect(try await emulator.send().status == 503)
            try await waitForTheOutageToEnd(emulator)
            // The outage has ended; the counted fault is still there.
            #expect(try await emulator.send().status == 429)
            #expect(try await emulator.send().status == 202)
        }
    }
}
