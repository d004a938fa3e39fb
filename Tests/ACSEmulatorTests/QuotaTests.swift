import Foundation
import Testing

@testable import ACSEmulator

/// Send quotas (acs-email-api.md §5.1): the sliding window itself on synthetic instants, then over HTTP.
@Suite struct QuotaTests {
    private static let base = ContinuousClock.now

    private static func at(_ seconds: Double) -> ContinuousClock.Instant {
        base + SendQuotaWindow.duration(seconds)
    }

    // MARK: The window

    @Test func window_admitsUpToTheLimit_thenWaitsForTheOldestToLeave() {
        var window = SendQuotaWindow()
        let quota = SendQuota(perMinute: 3, minuteSeconds: 10)
        for second in [0.0, 1, 2] {
            #expect(window.admit(at: Self.at(second), quota: quota) == nil)
        }
        #expect(window.admit(at: Self.at(3), quota: quota) == QuotaThrottle(limit: 3, windowSeconds: 10, retryAfter: 7))
        // Rounded up, at least 1.
        #expect(window.admit(at: Self.at(6.2), quota: quota)?.retryAfter == 4)
        #expect(window.admit(at: Self.at(9.5), quota: quota)?.retryAfter == 1)
        // A send exactly one window old has left it; the refused ones were never counted.
        #expect(window.admit(at: Self.at(10), quota: quota) == nil)
        #expect(window.used(at: Self.at(10), quota: quota).minute == 3)
        // Now 1, 2 and 10 are in the window: the next place frees when the send at 1 leaves, at 11.
        #expect(window.admit(at: Self.at(10.2), quota: quota)?.retryAfter == 1)
        #expect(window.admit(at: Self.at(11), quota: quota) == nil)
    }

    @Test func window_bothQuotas_theLongerWaitWins() {
        var window = SendQuotaWindow()
        let quota = SendQuota(perMinute: 2, perHour: 3, minuteSeconds: 10, hourSeconds: 100)
        #expect(window.admit(at: Self.at(0), quota: quota) == nil)
        #expect(window.admit(at: Self.at(1), quota: quota) == nil)
        #expect(window.admit(at: Self.at(2), quota: quota) == QuotaThrottle(limit: 2, windowSeconds: 10, retryAfter: 8))
        #expect(window.admit(at: Self.at(11), quota: quota) == nil)
        // The minute has room (only 11), the hour is full (0, 1, 11) until the send at 0 leaves, at 100.
        #expect(
            window.admit(at: Self.at(12), quota: quota) == QuotaThrottle(limit: 3, windowSeconds: 100, retryAfter: 88))
        #expect(window.used(at: Self.at(12), quota: quota) == (minute: 1, hour: 3))
    }

    @Test func window_limitLoweredBelowTheCount_waitsUntilEnoughSendsLeave() {
        var window = SendQuotaWindow()
        for second in 0..<5 {
            #expect(window.admit(at: Self.at(Double(second)), quota: SendQuota(perMinute: 5, minuteSeconds: 10)) == nil)
        }
        // Five in the window, two allowed: four must leave, the fourth (sent at 3) at 13.
        #expect(window.admit(at: Self.at(5), quota: SendQuota(perMinute: 2, minuteSeconds: 10))?.retryAfter == 8)
    }

    @Test func window_quotaOff_countsNothing() {
        var window = SendQuotaWindow()
        for second in 0..<100 {
            #expect(window.admit(at: Self.at(Double(second) / 100), quota: SendQuota()) == nil)
        }
        #expect(window.used(at: Self.at(1), quota: SendQuota(perMinute: 1)) == (minute: 0, hour: 0))
    }

    @Test func window_manySendsOverManyWindows_keepsCountingRight() {
        var window = SendQuotaWindow()
        let quota = SendQuota(perMinute: 100, minuteSeconds: 1)
        var admitted = 0
        // An attempt every millisecond for 30 s: the first 100 of each second are admitted (the old times are
        // dropped on the way, which this also exercises).
        for step in 0..<30_000 where window.admit(at: Self.at(Double(step) / 1000), quota: quota) == nil {
            admitted += 1
        }
        #expect(admitted == 3000)
        #expect(window.used(at: Self.at(29.999), quota: quota).minute == 100)
    }

    @Test func quotaProblems() {
        #expect(SendQuota().problem == nil)
        #expect(SendQuota(perMinute: 30, perHour: 100).problem == nil)
        #expect(SendQuota(perMinute: 0).problem != nil)
        #expect(SendQuota(perHour: -1).problem != nil)
        #expect(SendQuota(minuteSeconds: 0).problem != nil)
        #expect(SendQuota(hourSeconds: .nan).problem != nil)
        #expect(SendQuota(hourSeconds: 1e9).problem != nil)
        #expect(throws: EmulatorError.self) {
            try ACSEmulator(configuration: EmulatorConfiguration(sendQuota: SendQuota(perMinute: 0)))
        }
    }

    @Test func quotaUpdate_setsClearsAndRefuses() throws {
        let quota = SendQuota(perMinute: 30, perHour: 100)
        let json = try #require(JSONValue(parsing: Array(#"{"perMinute":2,"perHour":null,"minuteSeconds":1.5}"#.utf8)))
        #expect(try quota.updated(with: json).get() == SendQuota(perMinute: 2, minuteSeconds: 1.5))
        for bad in [#"{"perMinute":1.5}"#, #"{"perMinute":0}"#, #"{"perDay":3}"#, #"{"hourSeconds":"x"}"#, "[]"] {
            let value = try #require(JSONValue(parsing: Array(bad.utf8)))
            #expect((try? quota.updated(with: value).get()) == nil, "\(bad)")
        }
    }

    // MARK: Over HTTP

    private static func configuration(_ quota: SendQuota) -> EmulatorConfiguration {
        EmulatorConfiguration(accessKey: EmulatorHarness.key, sendQuota: quota)
    }

    @Test func sendOverTheQuota_is429WithRetryAfter_andCounted() async throws {
        try await EmulatorHarness.with(Self.configuration(SendQuota(perMinute: 2, minuteSeconds: 30))) { emulator in
            let started = ContinuousClock.now
            #expect(try await emulator.send().status == 202)
            #expect(try await emulator.send().status == 202)
            let throttled = try await emulator.send()
            #expect(throttled.status == 429)
            #expect(throttled.errorCode == "TooManyRequests")
            #expect(throttled.header("x-ms-error-code") == "TooManyRequests")
            // 30 s after the first send, less the time the sends took (rounded up), however loaded the machine is.
            let took = Int((ContinuousClock.now - started).components.seconds)
            #expect((29 - took...30).contains(Int(throttled.header("Retry-After") ?? "") ?? 0))
            #expect(throttled.header("x-ms-request-id") != nil)
            #expect(try await emulator.recordedMessages().count == 2)
            #expect(try await emulator.requestCount("send", status: 429) == 1)
            #expect(try await emulator.requestCount("send", status: 202) == 2)
        }
    }

    @Test func repeatedOperationID_isNeitherCountedNorRefused() async throws {
        try await EmulatorHarness.with(Self.configuration(SendQuota(perMinute: 1, minuteSeconds: 30))) { emulator in
            #expect(try await emulator.send(operationID: "op-a").status == 202)
            let replay = try await emulator.send(operationID: "op-a")
            #expect(replay.status == 202)
            #expect(replay.json?["id"]?.stringValue == "op-a")
            #expect(try await emulator.send(operationID: "op-b").status == 429)
            // The refused op-b is not an operation either: it gets its 429 again, not a 202.
            #expect(try await emulator.send(operationID: "op-b").status == 429)
            #expect(try await emulator.recordedMessages().count == 1)
            let state = try await emulator.admin("GET", "/admin/quota")
            #expect(state.json?["used"]?["minute"]?.intValue == 1)
        }
    }

    @Test func windowSlides_aSendIsAcceptedAgainOnceTheOldestLeft() async throws {
        try await EmulatorHarness.with { emulator in
            let set = try await emulator.admin("POST", "/admin/quota", json: #"{"perMinute":1,"minuteSeconds":2.5}"#)
            #expect(set.status == 200, "\(set.text)")
            #expect(set.json?["perMinute"]?.intValue == 1)
            #expect(try await emulator.send().status == 202)
            // The send was counted before its answer arrived, so it leaves the window by then + 2.5 s.
            let answered = ContinuousClock.now
            let throttled = try await emulator.send()
            #expect(throttled.status == 429)
            // 2.5 s after the first send, rounded up: 3 unless the machine took over half a second.
            #expect((1...3).contains(Int(throttled.header("Retry-After") ?? "") ?? 0))
            try await Task.sleep(until: answered + .milliseconds(2600))
            #expect(try await emulator.send().status == 202)
            #expect(try await emulator.send().status == 429)
        }
    }

    @Test func pollsAreNotLimited() async throws {
        try await EmulatorHarness.with(Self.configuration(SendQuota(perMinute: 1, perHour: 1))) { emulator in
            let id = try #require(try await emulator.send().json?["id"]?.stringValue)
            for _ in 0..<5 {
                #expect(try await emulator.poll(id).status == 200)
            }
        }
    }

    @Test func throttledSend_doesNotUseUpAFinalStatusFault() async throws {
        // A window of 6 s: the fault and the throttled send must fit in it even on a loaded machine.
        try await EmulatorHarness.with(Self.configuration(SendQuota(perMinute: 1, minuteSeconds: 6))) { emulator in
            #expect(try await emulator.send().status == 202)
            let answered = ContinuousClock.now
            let posted = try await emulator.admin("POST", "/admin/faults", json: #"{"finalStatus":"Failed","count":1}"#)
            #expect(posted.status == 200)
            #expect(try await emulator.send().status == 429)
            try await Task.sleep(until: answered + .milliseconds(6100))
            let id = try #require(try await emulator.send().json?["id"]?.stringValue)
            #expect(try await emulator.poll(id).json?["status"]?.stringValue == "Failed")
        }
    }

    @Test func adminQuota_showsTurnsOffRefusesAndResets() async throws {
        try await EmulatorHarness.with { emulator in
            let initial = try await emulator.admin("GET", "/admin/quota")
            #expect(
                initial.json
                    == .object([
                        "perMinute": .null, "perHour": .null, "minuteSeconds": .integer(60),
                        "hourSeconds": .integer(3600), "used": .object(["minute": .integer(0), "hour": .integer(0)]),
                    ]))
            #expect(try await emulator.admin("POST", "/admin/quota", json: #"{"perHour":1}"#).status == 200)
            #expect(try await emulator.send().status == 202)
            #expect(try await emulator.send().status == 429)
            for bad in [#"{"perHour":0}"#, #"{"minuteSeconds":-1}"#, #"{"perWeek":1}"#, "nope"] {
                let refused = try await emulator.admin("POST", "/admin/quota", json: bad)
                #expect(refused.status == 400, "\(bad)")
                #expect(refused.errorCode == "BadRequest")
            }
            // Reset forgets the counted sends but keeps the limit.
            #expect(try await emulator.admin("POST", "/admin/reset").status == 204)
            #expect(try await emulator.admin("GET", "/admin/quota").json?["perHour"]?.intValue == 1)
            #expect(try await emulator.send().status == 202)
            #expect(try await emulator.send().status == 429)
            let off = try await emulator.admin("POST", "/admin/quota", json: #"{"perHour":null}"#)
            #expect(off.json?["perHour"] == .null)
            #expect(try await emulator.send().status == 202)
        }
    }
}
