import Foundation
import Testing

@testable import ACSEmulator

/// Fault injection through `POST /admin/faults` (acs-email-api.md §8 "Fault injection").
@Suite struct FaultTests {
    private func post(_ faults: String, to emulator: EmulatorHarness) async throws {
        let response = try await emulator.admin("POST", "/admin/faults", json: faults)
        #expect(response.status == 200, "\(response.text)")
    }

    @Test func status429WithRetryAfter_thenSuccess() async throws {
        try await EmulatorHarness.with { emulator in
            try await post(#"[{"status":429,"retryAfter":7,"count":1}]"#, to: emulator)
            let throttled = try await emulator.send(operationID: "op")
            #expect(throttled.status == 429)
            #expect(throttled.header("Retry-After") == "7")
            #expect(throttled.errorCode == "TooManyRequests")
            #expect(throttled.header("x-ms-error-code") == "TooManyRequests")
            #expect(try await emulator.recordedMessages().isEmpty)
            #expect(try await emulator.send(operationID: "op").status == 202)
            #expect(try await emulator.recordedMessages().count == 1)
            #expect(try await emulator.requestCount("send") == 2)
        }
    }

    @Test(arguments: [500, 502, 503, 504])
    func serverErrors_forCountRequestsThenUsedUp(status: Int) async throws {
        try await EmulatorHarness.with { emulator in
            try await post(#"{"status":\#(status),"count":2}"#, to: emulator)
            for _ in 0..<2 {
                let response = try await emulator.send(operationID: "op")
                #expect(response.status == status)
                #expect(response.errorCode == ACSErrorResponse.defaultCode(forStatus: status))
            }
            #expect(try await emulator.send(operationID: "op").status == 202)
            #expect(try await emulator.requestCount("send", status: status) == 2)
            #expect(try await emulator.recordedMessages().count == 1)
        }
    }

    @Test func faultWithoutCount_appliesForeverUntilDeleted() async throws {
        try await EmulatorHarness.with { emulator in
            try await post(#"[{"status":500}]"#, to: emulator)
            for _ in 0..<3 {
                #expect(try await emulator.send().status == 500)
            }
            #expect(try await emulator.admin("DELETE", "/admin/faults").status == 204)
            #expect(try await emulator.send().status == 202)
        }
    }

    @Test func status400WithACode() async throws {
        try await EmulatorHarness.with { emulator in
            try await post(
                #"[{"status":400,"code":"InvalidSenderUserName","message":"Invalid email sender username.","count":1}]"#,
                to: emulator)
            let response = try await emulator.send()
            #expect(response.status == 400)
            #expect(
                response.text
                    == #"{"error":{"code":"InvalidSenderUserName","message":"Invalid email sender username."}}"#)
            #expect(response.header("x-ms-error-code") == "InvalidSenderUserName")
        }
    }

    @Test func status401() async throws {
        try await EmulatorHarness.with { emulator in
            try await post(#"[{"status":401,"count":1}]"#, to: emulator)
            let response = try await emulator.send()
            #expect(response.status == 401)
            #expect(response.text == #"{"error":{"code":"Denied","message":"Denied by the resource provider."}}"#)
        }
    }

    @Test func delay_stallsThenAnswersNormally() async throws {
        try await EmulatorHarness.with { emulator in
            try await post(#"[{"delayMs":400,"count":1}]"#, to: emulator)
            let started = ContinuousClock.now
            let response = try await emulator.send()
            #expect(ContinuousClock.now - started >= .milliseconds(400))
            #expect(response.status == 202)
            #expect(try await emulator.recordedMessages().count == 1)
        }
    }

    @Test func delay_stallsThenAnswersWithTheStatus() async throws {
        try await EmulatorHarness.with { emulator in
            try await post(#"[{"delayMs":200,"status":503,"count":1}]"#, to: emulator)
            let started = ContinuousClock.now
            #expect(try await emulator.send().status == 503)
            #expect(ContinuousClock.now - started >= .milliseconds(200))
        }
    }

    @Test func delay_stalledRequestsRunInParallel() async throws {
        try await EmulatorHarness.with { emulator in
            try await post(#"[{"delayMs":500}]"#, to: emulator)
            let started = ContinuousClock.now
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<20 {
                    group.addTask { try await emulator.send().status }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses == Array(repeating: 202, count: 20))
            // One after the other they would take 10 s; together about 0.6 s. Half the serial time is the bound:
            // a machine busy enough to stretch the parallel run past 4 s has been seen.
            #expect(ContinuousClock.now - started < .milliseconds(5000))
        }
    }

    @Test func stalledSendThatTheClientAbandoned_isStillOneOperationWhenRetried() async throws {
        // The gateway's timeout scenario: the first attempt times out client-side but the emulator still
        // accepts it; the retry with the same Operation-Id must not record a second message.
        try await EmulatorHarness.with { emulator in
            try await post(#"[{"delayMs":1500,"count":1}]"#, to: emulator)
            let abandoned = try? await emulator.request(
                "POST", "/emails:send?api-version=2025-09-01", body: Array(EmulatorHarness.validMessage.utf8),
                headers: [("Operation-Id", "op-stall")], timeout: 0.5)
            #expect(abandoned == nil)
            let retry = try await emulator.send(operationID: "op-stall")
            #expect(retry.status == 202)
            // Wait for the stalled request to be answered too (about 1.5 s after it arrived).
            let deadline = ContinuousClock.now + .seconds(10)
            while try await emulator.requestCount("send", status: 202) < 2 && ContinuousClock.now < deadline {
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(try await emulator.requestCount("send", status: 202) == 2)
            #expect(try await emulator.recordedMessages().count == 1)
        }
    }

    @Test func finalStatusFailed_isAcceptedThenPollingEndsFailed() async throws {
        try await EmulatorHarness.with { emulator in
            try await post(
                #"[{"finalStatus":"Failed","code":"EmailDroppedAllRecipientsSuppressed","message":"Message dropped because all recipients were suppressed","count":1}]"#,
                to: emulator)
            let accepted = try await emulator.send()
            #expect(accepted.status == 202)
            let id = try #require(accepted.json?["id"]?.stringValue)
            let poll = try await emulator.poll(id)
            #expect(poll.status == 200)
            #expect(
                poll.json
                    == .object([
                        "id": .string(id), "status": .string("Failed"),
                        "error": .object([
                            "code": .string("EmailDroppedAllRecipientsSuppressed"),
                            "message": .string("Message dropped because all recipients were suppressed"),
                        ]),
                    ]))
            #expect(poll.header("retry-after") == nil)
            // Used up: the next send succeeds.
            let next = try #require(try await emulator.send().json?["id"]?.stringValue)
            #expect(try await emulator.poll(next).json?["status"]?.stringValue == "Succeeded")
        }
    }

    @Test func finalStatusFault_isNotUsedUpByARejectedSend() async throws {
        try await EmulatorHarness.with { emulator in
            try await post(#"[{"finalStatus":"Failed","count":1}]"#, to: emulator)
            #expect(try await emulator.send("{}").status == 400)
            let id = try #require(try await emulator.send().json?["id"]?.stringValue)
            let poll = try await emulator.poll(id)
            #expect(poll.json?["status"]?.stringValue == "Failed")
            #expect(poll.json?["error"]?["code"]?.stringValue == "EmailDropped")
        }
    }

    @Test func senderAndRecipientPatterns_selectWhichRequestsFail() async throws {
        try await EmulatorHarness.with { emulator in
            try await post(
                #"[{"recipient":"bounce-*@example.com","status":400,"code":"InvalidEmailAddress"},{"sender":"*@fabrikam.com","status":503}]"#,
                to: emulator)
            let bounce = EmulatorHarness.validMessage.replacingOccurrences(
                of: "jane@example.com", with: "Bounce-1@example.com")
            #expect(try await emulator.send(bounce).errorCode == "InvalidEmailAddress")
            let fabrikam = EmulatorHarness.validMessage.replacingOccurrences(of: "contoso.com", with: "fabrikam.com")
            #expect(try await emulator.send(fabrikam).status == 503)
            #expect(try await emulator.send().status == 202)
        }
    }

    @Test func countedFault_underConcurrency_appliesExactlyCountTimes() async throws {
        try await EmulatorHarness.with { emulator in
            try await post(#"[{"status":503,"count":3},{"finalStatus":"Failed","count":2}]"#, to: emulator)
            let responses = try await withThrowingTaskGroup(of: HTTPResponseSummary.self) { group in
                for _ in 0..<12 {
                    group.addTask {
                        let response = try await emulator.send()
                        return HTTPResponseSummary(status: response.status, id: response.json?["id"]?.stringValue)
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(responses.filter { $0.status == 503 }.count == 3)
            #expect(responses.filter { $0.status == 202 }.count == 9)
            var failed = 0
            for id in responses.compactMap(\.id)
            where try await emulator.poll(id).json?["status"]?.stringValue == "Failed" {
                failed += 1
            }
            #expect(failed == 2)
            #expect(try await emulator.admin("GET", "/admin/faults").text == "[]")
        }
    }

    struct HTTPResponseSummary: Sendable {
        var status: Int
        var id: String?
    }

    @Test func faultsAreCheckedInOrder_firstMatchWins() async throws {
        try await EmulatorHarness.with { emulator in
            try await post(#"[{"status":502,"count":1},{"status":504,"count":1}]"#, to: emulator)
            #expect(try await emulator.send().status == 502)
            #expect(try await emulator.send().status == 504)
            #expect(try await emulator.send().status == 202)
        }
    }

    @Test func pollRouteFault() async throws {
        try await EmulatorHarness.with { emulator in
            let id = try #require(try await emulator.send().json?["id"]?.stringValue)
            try await post(#"[{"route":"poll","status":429,"retryAfter":2,"count":1}]"#, to: emulator)
            let throttled = try await emulator.poll(id)
            #expect(throttled.status == 429)
            #expect(throttled.header("Retry-After") == "2")
            #expect(try await emulator.poll(id).json?["status"]?.stringValue == "Succeeded")
        }
    }

    @Test func faultList_showsWhatIsLeft_andRejectsBadFaults() async throws {
        try await EmulatorHarness.with { emulator in
            try await post(#"[{"status":503,"count":3}]"#, to: emulator)
            _ = try await emulator.send()
            let left = try await emulator.admin("GET", "/admin/faults")
            #expect(left.json?.arrayValue?.first?["count"]?.intValue == 2)
            for bad in [
                #"[{}]"#, #"[{"status":200}]"#, #"[{"status":500,"count":0}]"#, #"[{"finalStatus":"Done"}]"#, "nope",
            ] {
                #expect(try await emulator.admin("POST", "/admin/faults", json: bad).status == 400, "\(bad)")
            }
            #expect(try await emulator.admin("POST", "/admin/reset").status == 204)
            #expect(try await emulator.admin("GET", "/admin/faults").text == "[]")
            #expect(try await emulator.admin("GET", "/admin/nothing").status == 404)
        }
    }

    @Test func globMatching() {
        #expect(Fault.glob("*@contoso.com", matches: "A@Contoso.com"))
        #expect(Fault.glob("a?c*", matches: "abcdef"))
        #expect(!Fault.glob("a?c", matches: "abcd"))
        #expect(Fault.glob("*", matches: ""))
        #expect(!Fault.glob("*@x.com", matches: "a@y.com"))
    }
}
