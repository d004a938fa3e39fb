import Testing

@testable import Gateway

/// The global pacer: 429 pauses, configured rates, the in-flight bound and the learned quota.
@Suite struct DeliveryPacerTests {
    private func limits(maxInFlight: Int = 4, perMinute: Int? = nil) -> DeliveryPacer.Limits {
        var limits = DeliveryPacer.Limits()
        limits.maxInFlight = maxInFlight
        limits.perMinute = perMinute
        limits.minuteWindow = 10
        return limits
    }

    @Test func inFlight_isBounded_forSpoolSends_butNotForDirectTries() {
        let pacer = DeliveryPacer(limits: limits(maxInFlight: 2))
        #expect(pacer.request(now: 0) == .go)
        #expect(pacer.request(now: 0) == .go)
        #expect(pacer.request(now: 0) == .wait(until: nil, reason: .busy))
        #expect(pacer.request(now: 0, direct: true) == .go)
        // Direct tries count as in flight, so two must end before a spool send may start.
        pacer.finished(.accepted, now: 1)
        #expect(pacer.request(now: 1) == .wait(until: nil, reason: .busy))
        pacer.finished(.accepted, now: 1)
        #expect(pacer.request(now: 1) == .go)
    }

    @Test func a429_pausesEverySend_untilItsRetryAfter() {
        let pacer = DeliveryPacer(limits: limits())
        #expect(pacer.request(now: 0) == .go)
        pacer.finished(.throttled(retryAfter: 7), now: 1)
        #expect(pacer.request(now: 2) == .wait(until: 8, reason: .throttled))
        #expect(pacer.request(now: 2, direct: true) == .wait(until: 8, reason: .throttled))
        #expect(pacer.pauseCount == 1)
        #expect(pacer.request(now: 8) == .go)
    }

    @Test func afterAPause_theLearnedQuotaStartsFreely_thenOneProbeAtATime() {
        let pacer = DeliveryPacer(limits: limits(maxInFlight: 10))
        // Three accepted, then the fourth is throttled: the window holds three.
        for _ in 0..<4 { #expect(pacer.request(now: 0) == .go) }
        for _ in 0..<3 { pacer.finished(.accepted, now: 0.1) }
        pacer.finished(.throttled(retryAfter: 10), now: 0.2)
        // After the pause: three start at once, then no more while they run.
        for _ in 0..<3 { #expect(pacer.request(now: 11) == .go) }
        #expect(pacer.request(now: 11) == .wait(until: nil, reason: .probing))
        #expect(pacer.request(now: 11, direct: true) == .wait(until: nil, reason: .probing))
        for _ in 0..<3 { pacer.finished(.accepted, now: 11.1) }
        // Alone, one probe goes; a second waits for it.
        #expect(pacer.request(now: 11.2) == .go)
        #expect(pacer.request(now: 11.2) == .wait(until: nil, reason: .probing))
        pacer.finished(.throttled(retryAfter: 9), now: 11.3)
        #expect(pacer.request(now: 12) == .wait(until: 20.3, reason: .throttled))
        #expect(pacer.pauseCount == 2)
    }

    @Test func answersOfSendsAlreadyInFlight_doNotStartANewPause() {
        let pacer = DeliveryPacer(limits: limits())
        for _ in 0..<3 { #expect(pacer.request(now: 0) == .go) }
        pacer.finished(.throttled(retryAfter: 5), now: 1)
        pacer.finished(.throttled(retryAfter: 5), now: 1.1)
        pacer.finished(.throttled(retryAfter: 5), now: 1.2)
        #expect(pacer.pauseCount == 1)
    }

    @Test func aConfiguredRate_keepsStartsInTheWindow() {
        let pacer = DeliveryPacer(limits: limits(maxInFlight: 100, perMinute: 3))
        for time in [0.0, 1, 2] {
            #expect(pacer.request(now: time) == .go)
            pacer.finished(.accepted, now: time)
        }
        // The first start leaves the 10 s window at 10.
        #expect(pacer.request(now: 3) == .wait(until: 10, reason: .rate))
        #expect(pacer.request(now: 10.5) == .go)
        #expect(pacer.request(now: 10.6) == .wait(until: 11, reason: .rate))
    }
}
