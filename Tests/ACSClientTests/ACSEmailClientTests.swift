import Foundation
import Synchronization
import Testing

@testable import ACSClient

/// A clock whose time only moves when scheduled work runs.
final class FakeClock: ACSClock, @unchecked Sendable {
    private let lock = NSLock()
    private var current = 1000.0
    private var pending: [(time: Double, order: Int, work: @Sendable () -> Void)] = []
    private var counter = 0
    private(set) var waits: [Double] = []

    var now: Double {
        lock.lock()
        defer { lock.unlock() }
        return current
    }

    func schedule(after delay: Double, _ work: @escaping @Sendable () -> Void) {
        lock.lock()
        counter += 1
        waits.append(delay)
        pending.append((current + delay, counter, work))
        lock.unlock()
    }

    func random() -> Double { 0.5 }

    /// Runs scheduled work in time order until none is left.
    func runUntilIdle() {
        while true {
            lock.lock()
            guard let next = pending.min(by: { ($0.time, $0.order) < ($1.time, $1.order) }) else {
                lock.unlock()
                return
            }
            pending.removeAll { $0.order == next.order }
            current = max(current, next.time)
            lock.unlock()
            next.work()
        }
    }
}

/// Answers requests from a script, synchronously, and records them.
final class ScriptedTransport: HTTPTransport, @unchecked Sendable {
    private let lock = NSLock()
    private var script: [Result<HTTPResponse, HTTPTransportError>]
    private let fallback: Result<HTTPResponse, HTTPTransportError>?
    private(set) var requests: [HTTPRequest] = []

    init(
        _ script: [Result<HTTPResponse, HTTPTransportError>],
        thenForever fallback: Result<HTTPResponse, HTTPTransportError>? = nil
    ) {
        self.script = script
        self.fallback = fallback
    }

    func perform(
        _ request: HTTPRequest, completion: @escaping @Sendable (Result<HTTPResponse, HTTPTransportError>) -> Void
    ) {
        lock.lock()
        requests.append(request)
        let next =
            script.isEmpty
            ? (fallback ?? .failure(HTTPTransportError(.other, "script exhausted"))) : script.removeFirst()
        lock.unlock()
        completion(next)
    }

    var sends: [HTTPRequest] { requests.filter { $0.method == "POST" } }
    var polls: [HTTPRequest] { requests.filter { $0.method == "GET" } }
}

@Suite struct ACSEmailClientTests {
    static let key = AccessKey(
        base64: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==")!
    static let operationID = "0192f0c4-0000-7000-8000-000000000001"

    static func accepted(_ status: String = "Running", retryAfter: String? = "3") -> Result<
        HTTPResponse, HTTPTransportError
    > {
        var headers: [(name: String, value: String)] = [("x-ms-request-id", "req-1")]
        if let retryAfter { headers.append(("Retry-After", retryAfter)) }
        return .success(
            HTTPResponse(
                status: 202, headers: headers,
                body: Array("{\"id\":\"\(operationID)\",\"status\":\"\(status)\",\"error\":null}".utf8)))
    }

    static func status(_ code: Int, retryAfter: String? = nil, error: String? = nil) -> Result<
        HTTPResponse, HTTPTransportError
    > {
        var headers: [(name: String, value: String)] = []
        if let retryAfter { headers.append(("Retry-After", retryAfter)) }
        if let error { headers.append(("x-ms-error-code", error)) }
        let body = error.map { "{\"error\":{\"code\":\"\($0)\",\"message\":\"explained\"}}" } ?? ""
        return .success(HTTPResponse(status: code, headers: headers, body: Array(body.utf8)))
    }

    static func poll(_ status: String, retryAfter: String? = nil, code: String? = nil) -> Result<
        HTTPResponse, HTTPTransportError
    > {
        let error = code.map { "{\"code\":\"\($0)\",\"message\":\"why\"}" } ?? "null"
        return .success(
            HTTPResponse(
                status: 200, headers: retryAfter.map { [("retry-after", $0)] } ?? [],
                body: Array("{\"id\":\"\(operationID)\",\"status\":\"\(status)\",\"error\":\(error)}".utf8)))
    }

    private func send(
        _ transport: ScriptedTransport, replyAfter: ReplyAfter = .accepted, clock: FakeClock = FakeClock(),
        configure: (inout ACSClientConfiguration) -> Void = { _ in }
    ) -> (ACSSendResult?, ACSOperationStatus?) {
        var configuration = ACSClientConfiguration(endpoint: ACSEndpoint("https://contoso.communication.azure.com")!)
        configuration.replyAfter = replyAfter
        configure(&configuration)
        let client = ACSEmailClient(
            configuration: configuration, authenticator: HMACAuthenticator(key: Self.key), transport: transport,
            clock: clock)
        let box = Mutex<(ACSSendResult?, ACSOperationStatus?)>((nil, nil))
        client.send(body: Array("{}".utf8), operationID: Self.operationID) { result in
            box.withLock { $0.0 = result }
        } finalStatus: { status in
            box.withLock { $0.1 = status }
        }
        clock.runUntilIdle()
        return box.withLock { $0 }
    }

    @Test func accepted_firstTry_signedWithOperationID() throws {
        let transport = ScriptedTransport([Self.accepted()])
        let (result, _) = send(transport) { $0.backgroundPolls = 0 }
        #expect(result?.outcome == .accepted(operationID: Self.operationID, status: "Running"))
        #expect(result?.attempts == 1)
        let request = try #require(transport.sends.first)
        #expect(request.url == "https://contoso.communication.azure.com/emails:send?api-version=2025-09-01")
        let names = request.headers.map { $0.name.lowercased() }
        for name in ["operation-id", "x-ms-client-request-id", "x-ms-date", "x-ms-content-sha256", "authorization"] {
            #expect(names.contains(name), "missing \(name)")
        }
        #expect(request.headers.first { $0.name == "Operation-Id" }?.value == Self.operationID)
    }

    @Test func throttledWithRetryAfter_thenAccepted_reusesTheOperationID() {
        let clock = FakeClock()
        let transport = ScriptedTransport([
            Self.status(429, retryAfter: "7", error: "TooManyRequests"), Self.accepted(),
        ])
        let (result, _) = send(transport, clock: clock) { $0.backgroundPolls = 0 }
        #expect(result?.outcome == .accepted(operationID: Self.operationID, status: "Running"))
        #expect(result?.attempts == 2)
        #expect(clock.waits == [7])
        let ids = transport.sends.map { $0.headers.first { $0.name == "Operation-Id" }?.value }
        #expect(ids == [Self.operationID, Self.operationID])
        let traces = Set(transport.sends.map { $0.headers.first { $0.name == "x-ms-client-request-id" }?.value })
        #expect(traces.count == 1)
    }

    @Test func throttledBeyondTheBudget_givesUpWithTheLastHint() {
        let clock = FakeClock()
        let transport = ScriptedTransport([], thenForever: Self.status(429, retryAfter: "25"))
        let (result, _) = send(transport, clock: clock)
        #expect(result?.outcome == .throttled(retryAfter: 25))
        #expect(result?.attempts == 3)  // at 0, 25 and 50 s; a fourth at 75 s is past the 60 s budget
        #expect(clock.now - 1000 <= 60)
    }

    @Test func retryAfterLongerThanAllowed_endsAtOnce() {
        let transport = ScriptedTransport([], thenForever: Self.status(429, retryAfter: "3600"))
        let (result, _) = send(transport)
        #expect(result?.outcome == .throttled(retryAfter: 3600))
        #expect(result?.attempts == 1)
    }

    @Test func serviceUnavailableTwice_thenAccepted_withExponentialBackoff() {
        let clock = FakeClock()
        let transport = ScriptedTransport([Self.status(503), Self.status(503), Self.accepted()])
        let (result, _) = send(transport, clock: clock) { $0.backgroundPolls = 0 }
        #expect(result?.attempts == 3)
        #expect(clock.waits == [0.75, 1.5])  // 1 s and 2 s backoff, jitter 0.5 over the upper half
        if case .accepted = result?.outcome {
        } else {
            Issue.record("expected accepted, got \(String(describing: result))")
        }
    }

    @Test func serverErrorForever_isUnavailable_withinTheBudget() {
        let clock = FakeClock()
        let transport = ScriptedTransport([], thenForever: Self.status(500))
        let (result, _) = send(transport, clock: clock)
        guard case .unavailable(let status, _) = result?.outcome else {
            Issue.record("expected unavailable, got \(String(describing: result))")
            return
        }
        #expect(status == 500)
        #expect(clock.now - 1000 <= 60)
        #expect((result?.attempts ?? 0) >= 4)
    }

    @Test func timeoutThenAccepted_asksBeforeRetryingTheSameOperation() {
        // No answer: ACS is asked first; it does not know the operation (404), so the send is repeated.
        let transport = ScriptedTransport([
            .failure(HTTPTransportError(.timeout, "stalled")), Self.status(404, error: "NotFound"), Self.accepted(),
        ])
        let (result, _) = send(transport) { $0.backgroundPolls = 0 }
        #expect(result?.attempts == 2)
        #expect(transport.requests.map(\.method) == ["POST", "GET", "POST"])
        #expect(Set(transport.sends.map { $0.headers.first { $0.name == "Operation-Id" }?.value }).count == 1)
    }

    @Test func timeoutThatReachedACS_isNotSentAgain() {
        // The first send arrived although its answer was lost: the status read finds it, and nothing is resent.
        let transport = ScriptedTransport([.failure(HTTPTransportError(.timeout, "stalled")), Self.poll("Running")])
        let (result, _) = send(transport) { $0.backgroundPolls = 0 }
        #expect(result?.outcome == .accepted(operationID: Self.operationID, status: "Running"))
        #expect(transport.sends.count == 1)
    }

    @Test func eachAttemptsTimeout_neverOutlivesTheBudget() {
        let clock = FakeClock()
        let transport = ScriptedTransport([], thenForever: .failure(HTTPTransportError(.timeout, "stalled")))
        _ = send(transport, clock: clock) {
            $0.retry.budget = 30
            $0.retry.attemptTimeout = 20
        }
        #expect(transport.sends.allSatisfy { $0.timeout <= 30 })
        #expect(transport.sends.first?.timeout == 20)
    }

    @Test func timedOutSends_thatACSAcceptedAfterAll_areFoundBeforeGivingUp() {
        // Without this check the client gets 451 and resends under a new Operation-Id.
        let timeout: Result<HTTPResponse, HTTPTransportError> = .failure(HTTPTransportError(.timeout, "stalled"))
        // A budget of one attempt: the send times out, then the check finds the operation.
        let transport = ScriptedTransport([timeout], thenForever: Self.poll("Running"))
        let (result, _) = send(transport) {
            $0.retry.budget = 1
            $0.backgroundPolls = 0
        }
        #expect(result?.outcome == .accepted(operationID: Self.operationID, status: "Running"))
        #expect(transport.polls.count == 1)
    }

    @Test func timedOutSends_unknownToACS_stayUnavailable() {
        let timeout: Result<HTTPResponse, HTTPTransportError> = .failure(HTTPTransportError(.timeout, "stalled"))
        let transport = ScriptedTransport([timeout], thenForever: Self.status(404, error: "NotFound"))
        let (result, _) = send(transport) { $0.retry.budget = 1 }
        guard case .unavailable(nil, _) = result?.outcome else {
            Issue.record("expected unavailable, got \(String(describing: result))")
            return
        }
        #expect(transport.polls.count == 1)
    }

    @Test func serverErrorsWithoutTransportFailures_needNoCheck() {
        let transport = ScriptedTransport([], thenForever: Self.status(503))
        _ = send(transport) { $0.retry.budget = 10 }
        #expect(transport.polls.isEmpty)
    }

    /// An authenticator whose first rejection drops a (pretend) cached token.
    final class RefreshingAuthenticator: RequestAuthenticator, @unchecked Sendable {
        private let lock = NSLock()
        private(set) var rejections = 0
        func authenticate(
            _ request: HTTPRequest, host: String, pathAndQuery: String,
            completion: @escaping @Sendable (Result<HTTPRequest, AuthenticationError>) -> Void
        ) {
            completion(.success(request))
        }
        func credentialsRejected() -> Bool {
            lock.lock()
            defer { lock.unlock() }
            rejections += 1
            return true
        }
    }

    @Test func a401ForARefreshableCredential_isRetriedOnceWithAFreshToken() {
        let transport = ScriptedTransport([Self.status(401, error: "Unauthorized"), Self.accepted()])
        let authenticator = RefreshingAuthenticator()
        let client = ACSEmailClient(
            configuration: {
                var configuration = ACSClientConfiguration(
                    endpoint: ACSEndpoint("https://contoso.communication.azure.com")!)
                configuration.backgroundPolls = 0
                return configuration
            }(), authenticator: authenticator, transport: transport, clock: FakeClock())
        let box = Mutex<ACSSendResult?>(nil)
        client.send(body: [], operationID: Self.operationID) { result in box.withLock { $0 = result } }
        #expect(box.withLock { $0 }?.outcome == .accepted(operationID: Self.operationID, status: "Running"))
        #expect(authenticator.rejections == 1)
        // A second 401 is not retried again.
        let stubborn = ScriptedTransport([], thenForever: Self.status(401, error: "Unauthorized"))
        let again = ACSEmailClient(
            configuration: ACSClientConfiguration(endpoint: ACSEndpoint("https://contoso.communication.azure.com")!),
            authenticator: authenticator, transport: stubborn, clock: FakeClock())
        again.send(body: [], operationID: Self.operationID) { result in box.withLock { $0 = result } }
        #expect(stubborn.sends.count == 2)
    }

    @Test func badRequest_isRejectedWithoutRetry() {
        let transport = ScriptedTransport([Self.status(400, error: "InvalidSenderUserName")])
        let (result, _) = send(transport)
        #expect(result?.outcome == .rejected(status: 400, code: "InvalidSenderUserName", message: "explained"))
        #expect(result?.attempts == 1)
    }

    @Test func unauthorized_isAnAuthenticationFailure() {
        let transport = ScriptedTransport([Self.status(401, error: "Denied")])
        let (result, _) = send(transport)
        #expect(result?.outcome == .authenticationFailed(status: 401, code: "Denied", message: "explained"))
    }

    @Test func replyAfterFinal_pollsHonouringRetryAfter_untilFailed() {
        let clock = FakeClock()
        let transport = ScriptedTransport([
            Self.accepted(retryAfter: "3"), Self.poll("Running", retryAfter: "2"),
            Self.poll("Failed", code: "EmailDroppedAllRecipientsSuppressed"),
        ])
        let (result, final) = send(transport, replyAfter: .final, clock: clock)
        #expect(
            result?.outcome
                == .failed(
                    operationID: Self.operationID, status: "Failed",
                    code: "EmailDroppedAllRecipientsSuppressed", message: "why"))
        #expect(clock.waits == [3, 2])
        #expect(
            transport.polls.first?.url
                == "https://contoso.communication.azure.com/emails/operations/\(Self.operationID)?api-version=2025-09-01"
        )
        #expect(final?.status == "Failed")
    }

    @Test func replyAfterFinal_succeeded() {
        let transport = ScriptedTransport([Self.accepted(), Self.poll("Succeeded")])
        let (result, _) = send(transport, replyAfter: .final)
        #expect(result?.outcome == .accepted(operationID: Self.operationID, status: "Succeeded"))
    }

    @Test func replyAfterFinal_deadline_countsAsAcceptedWithUnknownFinalStatus() {
        let transport = ScriptedTransport([Self.accepted()], thenForever: Self.poll("Running", retryAfter: "10"))
        let (result, _) = send(transport, replyAfter: .final) { $0.pollDeadline = 35 }
        #expect(result?.outcome == .accepted(operationID: Self.operationID, status: "Running"))
        #expect(transport.polls.count == 4)  // at 3, 13, 23 and 33 s; the next (43 s) is past the deadline
    }

    @Test func replyAfterAccepted_repliesAtOnce_andLearnsTheFinalStatusInTheBackground() {
        let transport = ScriptedTransport([Self.accepted(), Self.poll("Running"), Self.poll("Succeeded")])
        let (result, final) = send(transport) { $0.backgroundPolls = 2 }
        #expect(result?.outcome == .accepted(operationID: Self.operationID, status: "Running"))
        #expect(final?.status == "Succeeded")
        #expect(transport.polls.count == 2)
    }

    @Test(arguments: [200, 204, 301, 308, 404, 405, 400])
    func answersThatAreNotFromACS_areRetryable_notBounced(_ status: Int) {
        // A redirect, a proxy page or a wrong endpoint must not bounce mail for good.
        let outcome = ACSEmailClient.classify(HTTPResponse(status: status, body: Array("<html>".utf8)))
        guard case .unavailable(let reported, let detail) = outcome else {
            Issue.record("HTTP \(status) became \(outcome)")
            return
        }
        #expect(reported == status)
        #expect(detail.contains("endpoint"))
    }

    @Test func acsRefusals_withACode_arePermanent() {
        let notLinked = HTTPResponse(status: 404, headers: [("x-ms-error-code", "DomainNotLinked")])
        #expect(ACSEmailClient.classify(notLinked) == .rejected(status: 404, code: "DomainNotLinked", message: nil))
        #expect(ACSEmailClient.classify(HTTPResponse(status: 413)) == .rejected(status: 413, code: nil, message: nil))
    }

    @Test func retryAfterZero_stillWaits() {
        // Retry-After: 0 must not become a tight retry loop.
        let clock = FakeClock()
        let transport = ScriptedTransport([
            Self.status(429, retryAfter: "0"), Self.status(429, retryAfter: "0"), Self.accepted(),
        ])
        _ = send(transport, clock: clock) { $0.backgroundPolls = 0 }
        #expect(clock.waits == [0.5, 0.5])
    }

    @Test func retryAfterParsing() {
        func response(_ headers: [(name: String, value: String)]) -> HTTPResponse {
            HTTPResponse(status: 429, headers: headers)
        }
        #expect(ACSEmailClient.retryAfter(response([("Retry-After", "12")])) == 12)
        #expect(ACSEmailClient.retryAfter(response([("retry-after-ms", "1500"), ("Retry-After", "9")])) == 1.5)
        let now = Date(timeIntervalSince1970: 1_704_067_200)
        #expect(ACSEmailClient.retryAfter(response([("Retry-After", "Mon, 01 Jan 2024 00:00:30 GMT")]), now: now) == 30)
        #expect(ACSEmailClient.retryAfter(response([("Retry-After", "soon")])) == nil)
        // Hostile values never become infinities or giant numbers.
        #expect(ACSEmailClient.retryAfter(response([("Retry-After", "inf")])) == nil)
        #expect(ACSEmailClient.retryAfter(response([("Retry-After", "nan")])) == nil)
        #expect(ACSEmailClient.retryAfter(response([("Retry-After", "99999999999999999999")])) == 86_400)
        #expect(ACSEmailClient.retryAfter(response([("retry-after-ms", "1e30")])) == 86_400)
        #expect(ACSEmailClient.retryAfter(response([("Retry-After", "-5")])) == nil)
    }

    @Test func backoffSchedule_doublesWithJitter_andIsCapped() {
        let policy = RetryPolicy()
        #expect(policy.delay(afterAttempt: 1, retryAfter: nil, random: 0) == 0.5)
        #expect(policy.delay(afterAttempt: 1, retryAfter: nil, random: 0.999) < 1)
        #expect(policy.delay(afterAttempt: 3, retryAfter: nil, random: 0) == 2)
        #expect(policy.delay(afterAttempt: 10, retryAfter: nil, random: 0.999) <= 16)
        #expect(policy.delay(afterAttempt: 2, retryAfter: 7, random: 0.3) == 7)
    }
}
