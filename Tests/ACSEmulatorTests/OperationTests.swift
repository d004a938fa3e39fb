import Foundation
import Testing

@testable import ACSEmulator

/// Routes, the 202 answer, `Operation-Id` idempotency and polling (acs-email-api.md §1.3–§1.6, §8).
@Suite struct OperationTests {
    @Test func accepted_202HasOperationLocationRetryAfterAndRunningBody() async throws {
        try await EmulatorHarness.with { emulator in
            let response = try await emulator.send(
                apiVersion: "2023-03-31", headers: [("x-ms-client-request-id", "trace-1")])
            #expect(response.status == 202)
            let id = try #require(response.json?["id"]?.stringValue)
            #expect(UUID(uuidString: id) != nil)
            #expect(response.json == .object(["id": .string(id), "status": .string("Running"), "error": .null]))
            #expect(response.text == #"{"id":"\#(id)","status":"Running","error":null}"#)
            #expect(
                response.header("Operation-Location")
                    == "http://\(emulator.host)/emails/operations/\(id)?api-version=2023-03-31")
            #expect(response.header("Retry-After") == "1")
            #expect(response.header("Content-Type") == "application/json")
            #expect(response.header("x-ms-client-request-id") == "trace-1")
            #expect(response.header("x-ms-request-id")?.isEmpty == false)
        }
    }

    @Test func operationIdHeader_becomesTheId() async throws {
        try await EmulatorHarness.with { emulator in
            let response = try await emulator.send(operationID: "8540c0de-899f-5cce-acb5-3ec493af3800")
            #expect(response.json?["id"]?.stringValue == "8540c0de-899f-5cce-acb5-3ec493af3800")
            #expect(try await emulator.recordedMessages().first?.operationId == "8540c0de-899f-5cce-acb5-3ec493af3800")
        }
    }

    @Test func repeatedOperationIdWithTheSameBody_isTheSameOperationAndOneRecord() async throws {
        try await EmulatorHarness.with { emulator in
            let id = UUID().uuidString.lowercased()
            let first = try await emulator.send(operationID: id)
            // The same message re-serialised with other spacing and key order is still the same request.
            let reordered =
                #"{"content": {"plainText": "Hello", "subject": "Hi"}, "recipients": {"to": [{"displayName": "Jane", "address": "jane@example.com"}]}, "senderAddress": "DoNotReply@contoso.com"}"#
            let second = try await emulator.send(reordered, operationID: id)
            #expect(first.status == 202)
            #expect(second.status == 202)
            #expect(second.json?["id"]?.stringValue == id)
            #expect(second.header("Operation-Location") == first.header("Operation-Location"))
            #expect(try await emulator.recordedMessages().count == 1)
            // Once the operation has finished, a replay reports the final status.
            #expect(try await emulator.poll(id).json?["status"]?.stringValue == "Succeeded")
            let third = try await emulator.send(operationID: id)
            #expect(third.status == 202)
            #expect(third.json?["status"]?.stringValue == "Succeeded")
            #expect(third.header("Retry-After") == nil)
            #expect(try await emulator.recordedMessages().count == 1)
            // Counted, so a test of exactly-once delivery can tell a resend from a single send.
            let counts = try #require(JSONValue(parsing: try await emulator.admin("GET", "/admin/requests").body))
            #expect(counts["send"]?["replays"]?.intValue == 2)
        }
    }

    @Test func repeatedOperationIdWithAnotherBody_is409Conflict() async throws {
        try await EmulatorHarness.with { emulator in
            let id = UUID().uuidString
            #expect(try await emulator.send(operationID: id).status == 202)
            let other = EmulatorHarness.validMessage.replacingOccurrences(of: "Hello", with: "Goodbye")
            let response = try await emulator.send(other, operationID: id)
            #expect(response.status == 409)
            #expect(response.errorCode == "Conflict")
            #expect(response.header("x-ms-error-code") == "Conflict")
            #expect(try await emulator.recordedMessages().count == 1)
        }
        var lenient = EmulatorConfiguration(accessKey: EmulatorHarness.key)
        lenient.conflictOnDifferentBody = false
        try await EmulatorHarness.with(lenient) { emulator async throws in
            let id = UUID().uuidString
            #expect(try await emulator.send(operationID: id).status == 202)
            let other = EmulatorHarness.validMessage.replacingOccurrences(of: "Hello", with: "Goodbye")
            #expect(try await emulator.send(other, operationID: id).status == 202)
            #expect(try await emulator.recordedMessages().count == 1)
        }
    }

    @Test func concurrentSendsWithOneOperationId_recordOneMessage() async throws {
        try await EmulatorHarness.with { emulator in
            let id = UUID().uuidString
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<8 {
                    group.addTask { try await emulator.send(operationID: id).status }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(statuses == Array(repeating: 202, count: 8))
            #expect(try await emulator.recordedMessages().count == 1)
        }
    }

    @Test func polling_progressesToSucceededAfterTheConfiguredPolls() async throws {
        let configuration = EmulatorConfiguration(
            accessKey: EmulatorHarness.key, pollsUntilDone: 3, retryAfterSeconds: 5)
        try await EmulatorHarness.with(configuration) { emulator in
            let id = try #require(try await emulator.send().json?["id"]?.stringValue)
            for _ in 0..<2 {
                let running = try await emulator.poll(id)
                #expect(running.status == 200)
                #expect(running.json?["status"]?.stringValue == "Running")
                #expect(running.header("retry-after") == "5")
            }
            let done = try await emulator.poll(id)
            #expect(done.json == .object(["id": .string(id), "status": .string("Succeeded"), "error": .null]))
            #expect(done.header("retry-after") == nil)
            #expect(try await emulator.requestCount("poll", status: 200) == 3)
        }
    }

    @Test func polling_defaultFinishesOnTheFirstPoll() async throws {
        try await EmulatorHarness.with { emulator in
            let id = try #require(try await emulator.send().json?["id"]?.stringValue)
            #expect(try await emulator.poll(id).json?["status"]?.stringValue == "Succeeded")
        }
    }

    @Test func polling_waitsForTheCompletionDelay() async throws {
        let delay = Duration.milliseconds(1500)
        let configuration = EmulatorConfiguration(accessKey: EmulatorHarness.key, completionDelay: delay)
        try await EmulatorHarness.with(configuration) { emulator in
            let started = ContinuousClock.now
            let id = try #require(try await emulator.send().json?["id"]?.stringValue)
            let answered = ContinuousClock.now  // the operation was accepted before this
            let first = try await emulator.poll(id).json?["status"]?.stringValue
            // Judged only when the poll really came before the delay: a loaded machine may be slower.
            if ContinuousClock.now - started < delay {
                #expect(first == "Running")
            }
            try await Task.sleep(until: answered + delay + .milliseconds(50))
            #expect(try await emulator.poll(id).json?["status"]?.stringValue == "Succeeded")
        }
    }

    @Test func pollsUntilDoneZero_makesThe202Terminal() async throws {
        let configuration = EmulatorConfiguration(accessKey: EmulatorHarness.key, pollsUntilDone: 0)
        try await EmulatorHarness.with(configuration) { emulator in
            let response = try await emulator.send()
            #expect(response.json?["status"]?.stringValue == "Succeeded")
            #expect(response.header("Retry-After") == nil)
        }
    }

    @Test func unknownOperation_is404() async throws {
        try await EmulatorHarness.with { emulator in
            let response = try await emulator.poll("00000000-0000-0000-0000-000000000000")
            #expect(response.status == 404)
            #expect(response.header("x-ms-error-code") == "NotFound")
        }
    }

    @Test func apiVersion_missingOrUnknownIs400_knownOnesAreServed() async throws {
        try await EmulatorHarness.with { emulator in
            let body = Array(EmulatorHarness.validMessage.utf8)
            let missing = try await emulator.request("POST", "/emails:send", body: body)
            #expect(missing.status == 400)
            #expect(missing.errorCode == "MissingApiVersionParameter")
            let unknown = try await emulator.send(apiVersion: "2021-10-01-preview")
            #expect(unknown.status == 400)
            #expect(unknown.errorCode == "UnsupportedApiVersion")
            for version in EmulatorConfiguration.supportedAPIVersions {
                let response = try await emulator.send(apiVersion: version)
                #expect(response.status == 202, "\(version)")
                let id = try #require(response.json?["id"]?.stringValue)
                #expect(try await emulator.poll(id, apiVersion: version).status == 200)
            }
        }
    }

    @Test func otherPathsAre404_wrongMethodIs405() async throws {
        try await EmulatorHarness.with { emulator in
            for path in [
                "/", "/emails", "/emails:sendx?api-version=2025-09-01", "/emails/operations/?api-version=2025-09-01",
                "/emails/operations/a/b?api-version=2025-09-01", "/sms?api-version=2025-09-01",
            ] {
                #expect(try await emulator.request("GET", path).status == 404, "\(path)")
            }
            let get = try await emulator.request("GET", "/emails:send?api-version=2025-09-01")
            #expect(get.status == 405)
            #expect(try await emulator.requestCount("other") == 6)
            #expect(try await emulator.requestCount("send", status: 405) == 1)
        }
    }

    @Test func invalidOperationIdHeader_is400() async throws {
        try await EmulatorHarness.with { emulator async throws in
            for id in ["../../etc", "..", "a b", "a/b", String(repeating: "a", count: 129)] {
                #expect(try await emulator.send(operationID: id).status == 400, "\(id)")
            }
            #expect(try await emulator.send(operationID: "Msg_1.retry-2").status == 202)
        }
    }

    @Test func requestCounts_byRouteAndStatus_andReset() async throws {
        try await EmulatorHarness.with { emulator in
            _ = try await emulator.send()
            _ = try await emulator.send("{")
            _ = try await emulator.poll("nope")
            #expect(try await emulator.requestCount("send") == 2)
            #expect(try await emulator.requestCount("send", status: 202) == 1)
            #expect(try await emulator.requestCount("send", status: 400) == 1)
            #expect(try await emulator.requestCount("poll", status: 404) == 1)
            #expect(try await emulator.admin("DELETE", "/admin/requests").status == 204)
            #expect(try await emulator.requestCount("send") == 0)
            #expect(try await emulator.admin("DELETE", "/admin/messages").status == 204)
            #expect(try await emulator.recordedMessages().isEmpty)
        }
    }

    @Test func recordFile_getsOneJSONLinePerAcceptedMessage() async throws {
        let path = NSTemporaryDirectory() + "emulator-record-\(UUID().uuidString).jsonl"
        defer { try? FileManager.default.removeItem(atPath: path) }
        let configuration = EmulatorConfiguration(accessKey: EmulatorHarness.key, recordFile: path)
        try await EmulatorHarness.with(configuration) { emulator in
            _ = try await emulator.send(operationID: "op-1")
            _ = try await emulator.send(operationID: "op-1")
            _ = try await emulator.send("{}")
            _ = try await emulator.send(operationID: "op-2")
        }
        let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
        #expect(lines.count == 2)
        let records = try lines.map { try JSONDecoder().decode(RecordedMessage.self, from: Data($0.utf8)) }
        #expect(records.map(\.operationId) == ["op-1", "op-2"])
        #expect(records.first?.request["content"]?["subject"]?.stringValue == "Hi")
        #expect(records.first.map { ISO8601DateFormatter.withFractions.date(from: $0.receivedAt) != nil } == true)
    }

    @Test func https_withATestCA() async throws {
        let certificates = try TestCertificates.make()
        defer { try? FileManager.default.removeItem(atPath: certificates.directory) }
        try await EmulatorHarness.with(tls: certificates) { emulator in
            let response = try await emulator.send()
            #expect(response.status == 202)
            let id = try #require(response.json?["id"]?.stringValue)
            #expect(
                response.header("Operation-Location")
                    == "https://\(emulator.host)/emails/operations/\(id)?api-version=2025-09-01")
            #expect(try await emulator.poll(id).json?["status"]?.stringValue == "Succeeded")
            #expect(try await emulator.recordedMessages().count == 1)
        }
    }
}

extension ISO8601DateFormatter {
    static var withFractions: ISO8601DateFormatter {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }
}
