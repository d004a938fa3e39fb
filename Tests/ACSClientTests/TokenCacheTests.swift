import Foundation
import Testing

@testable import ACSClient

/// Caching, refresh ahead of expiry and single-flight fetching (acs-email-api.md §4.1), on a fake clock.
struct TokenCacheTests {
    private func credential(_ transport: FakeTransport, _ clock: TestClock) throws -> ClientSecretCredential {
        try ClientSecretCredential(
            tenantID: "tenant", clientID: "client", clientSecret: Secret("secret"), transport: transport,
            now: clock.function)
    }

    @Test func aRefusedTokenIsDropped_andTheNextCallFetchesANewOne() throws {
        // A token ACS answers 401 to must not stay cached until its refresh time.
        let clock = TestClock()
        let transport = FakeTransport([
            FakeTransport.token("revoked", expiresIn: 3600), FakeTransport.token("fresh", expiresIn: 3600),
        ])
        let credential = try credential(transport, clock)
        #expect(try immediateToken(credential)?.get().token == "revoked")
        let authenticator = BearerTokenAuthenticator(credential: credential)
        #expect(authenticator.credentialsRejected())
        #expect(try immediateToken(credential)?.get().token == "fresh")
        #expect(transport.requests.count == 2)
        #expect(!HMACAuthenticator(key: AccessKey(base64: "YWJjZA==")!).credentialsRejected())
    }

    @Test func aValidTokenIsReused() throws {
        let clock = TestClock()
        let transport = FakeTransport([FakeTransport.token("one", expiresIn: 3600)])
        let credential = try credential(transport, clock)
        for _ in 0..<5 {
            #expect(try immediateToken(credential)?.get().token == "one")
            clock.advance(600)  // up to 2400 s in: before the 300 s window
        }
        #expect(transport.requests.count == 1)
    }

    @Test func refreshStarts300SecondsBeforeExpiry_andTheOldTokenServesMeanwhile() throws {
        let clock = TestClock()
        let transport = FakeTransport([FakeTransport.token("one", expiresIn: 3600)])
        let credential = try credential(transport, clock)
        #expect(try immediateToken(credential)?.get().token == "one")

        clock.advance(3299)  // 301 s left: not yet due
        #expect(try immediateToken(credential)?.get().token == "one")
        #expect(transport.requests.count == 1)

        clock.advance(2)  // 299 s left: due, still valid → old token now, one background refresh
        transport.isHolding = true
        #expect(try immediateToken(credential)?.get().token == "one")
        #expect(try immediateToken(credential)?.get().token == "one")
        #expect(transport.requests.count == 2)
        transport.releaseAll(with: FakeTransport.token("two", expiresIn: 3600))
        transport.isHolding = false
        #expect(try immediateToken(credential)?.get().token == "two")
        #expect(transport.requests.count == 2)
    }

    @Test func aFailedRefreshKeepsTheOldToken_untilItExpires() throws {
        let clock = TestClock()
        let transport = FakeTransport([
            FakeTransport.token("one", expiresIn: 3600),
            FakeTransport.json(503, ""),
        ])
        let credential = try credential(transport, clock)
        _ = immediateToken(credential)
        clock.advance(3400)
        #expect(try immediateToken(credential)?.get().token == "one")  // triggers the failing refresh
        #expect(transport.requests.count == 2)
        // Within the 30 s retry delay no new refresh is attempted.
        clock.advance(10)
        #expect(try immediateToken(credential)?.get().token == "one")
        #expect(transport.requests.count == 2)
        // After it, one more attempt (which also fails: nothing scripted → held, then answered 500).
        clock.advance(25)
        transport.isHolding = true
        #expect(try immediateToken(credential)?.get().token == "one")
        #expect(transport.requests.count == 3)
        transport.releaseAll(with: FakeTransport.json(500, ""))
        transport.isHolding = false
        // Past expiry (minus the 30 s margin) the old token is no longer handed out: the caller waits for a
        // fetch, and its failure is reported.
        clock.advance(150)
        transport.enqueue(FakeTransport.json(503, ""))
        let error = try #require(immediateToken(credential)?.error)
        #expect(error.isTransient)
    }

    @Test func anExpiredTokenIsNotUsed() throws {
        let clock = TestClock()
        let transport = FakeTransport([
            FakeTransport.token("one", expiresIn: 3600), FakeTransport.token("two", expiresIn: 3600),
        ])
        let credential = try credential(transport, clock)
        _ = immediateToken(credential)
        clock.advance(4000)
        #expect(try immediateToken(credential)?.get().token == "two")
    }

    @Test func concurrentCallersShareOneFetch() async throws {
        let clock = TestClock()
        let transport = FakeTransport()
        transport.isHolding = true
        let credential = try credential(transport, clock)
        let results = Results<Result<AccessToken, AuthenticationError>>()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<50 {
                group.addTask { credential.getToken(scope: ACSTokenScope.communication) { results.append($0) } }
            }
        }
        #expect(transport.requests.count == 1)
        #expect(results.all.isEmpty)
        transport.releaseAll(with: FakeTransport.token("shared"))
        #expect(results.all.count == 50)
        #expect(results.all.allSatisfy { (try? $0.get().token) == "shared" })
        #expect(transport.requests.count == 1)
    }

    @Test func aFailedFirstFetchReachesEveryWaiter_andTheNextCallTriesAgain() throws {
        let clock = TestClock()
        let transport = FakeTransport()
        transport.isHolding = true
        let credential = try credential(transport, clock)
        let results = Results<Result<AccessToken, AuthenticationError>>()
        for _ in 0..<3 { credential.getToken(scope: ACSTokenScope.communication) { results.append($0) } }
        transport.releaseAll(with: .failure(HTTPTransportError(.connectionFailed, "refused")))
        #expect(results.all.count == 3)
        #expect(results.all.allSatisfy { $0.error?.isTransient == true })
        transport.isHolding = false
        transport.enqueue(FakeTransport.token("later"))
        #expect(try immediateToken(credential)?.get().token == "later")
        #expect(transport.requests.count == 2)
    }

    @Test func refreshPolicy() {
        let start = Date(timeIntervalSince1970: 1_000_000)
        func due(_ lifetime: TimeInterval, refreshIn: TimeInterval? = nil) -> TimeInterval {
            let token = AccessToken(
                token: "t", expiresOn: start.addingTimeInterval(lifetime),
                refreshOn: refreshIn.map { start.addingTimeInterval($0) })
            return TokenCache.refreshDate(for: token, obtainedAt: start).timeIntervalSince(start)
        }
        #expect(due(3599) == 3299)  // azure-core: 300 s before expires_on
        #expect(due(86_399) == 43_199.5)  // MSAL: half-life for tokens valid ≥ 2 h (IMDS gives 24 h)
        #expect(due(7200, refreshIn: 1000) == 1000)  // the issuer's refresh_in wins when earlier
        #expect(due(3599, refreshIn: 3500) == 3299)  // … but never later than the 300 s window
        #expect(due(120) == 60)  // short-lived: half-life, not "due on arrival"
    }

    @Test func eachScopeHasItsOwnToken() throws {
        let clock = TestClock()
        let transport = FakeTransport([FakeTransport.token("acs"), FakeTransport.token("other")])
        let credential = try credential(transport, clock)
        #expect(try immediateToken(credential)?.get().token == "acs")
        #expect(try immediateToken(credential, scope: "https://example.test/.default")?.get().token == "other")
        #expect(try immediateToken(credential)?.get().token == "acs")
        #expect(transport.requests.count == 2)
    }
}
