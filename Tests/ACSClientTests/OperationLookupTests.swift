import Foundation
import Synchronization
import Testing

@testable import ACSClient

/// The status read the spool relies on for exactly-once, and the per-send retry policy it uses.
@Suite struct OperationLookupTests {
    private func client(_ transport: ScriptedTransport, clock: FakeClock = FakeClock()) -> ACSEmailClient {
        var configuration = ACSClientConfiguration(endpoint: ACSEndpoint("https://contoso.communication.azure.com")!)
        configuration.backgroundPolls = 0
        return ACSEmailClient(
            configuration: configuration, authenticator: HMACAuthenticator(key: ACSEmailClientTests.key),
            transport: transport, clock: clock)
    }

    private func lookUp(_ transport: ScriptedTransport) -> ACSOperationLookup? {
        let box = Mutex<ACSOperationLookup?>(nil)
        client(transport).lookUp(operationID: ACSEmailClientTests.operationID) { result in box.withLock { $0 = result }
        }
        return box.withLock { $0 }
    }

    @Test func aKnownOperation_isFound_withItsStatusAndRetryAfter() throws {
        let transport = ScriptedTransport([ACSEmailClientTests.poll("Running", retryAfter: "4")])
        let found = lookUp(transport)
        #expect(
            found
                == .found(
                    ACSOperationStatus(operationID: ACSEmailClientTests.operationID, status: "Running"), retryAfter: 4))
        let request = try #require(transport.requests.first)
        #expect(request.method == "GET")
        #expect(request.url.contains("/emails/operations/\(ACSEmailClientTests.operationID)?api-version="))
    }

    @Test func anUnknownOperation_isNotFound_soSendingIsSafe() {
        #expect(lookUp(ScriptedTransport([ACSEmailClientTests.status(404, error: "NotFound")])) == .notFound)
    }

    @Test func noUsableAnswer_learnsNothing() {
        guard case .unknown = lookUp(ScriptedTransport([.failure(HTTPTransportError(.timeout, "timeout"))])) else {
            Issue.record("a timeout must not read as found or not found")
            return
        }
        guard case .unknown = lookUp(ScriptedTransport([ACSEmailClientTests.status(429, retryAfter: "3")])) else {
            Issue.record("a throttled status read must not read as not found")
            return
        }
    }

    @Test func aFailedStatus_standsForAFailedSend() {
        let status = ACSOperationStatus(operationID: "x", status: "Failed", code: "EmailDropped", message: "m")
        #expect(status.isTerminal && !status.succeeded)
        #expect(status.outcome == .failed(operationID: "x", status: "Failed", code: "EmailDropped", message: "m"))
        #expect(
            ACSOperationStatus(operationID: "x", status: "running").outcome
                == .accepted(operationID: "x", status: "running"))
    }

    @Test func aTimeoutTheStatusReadCannotExplain_marksTheOutcomeUncertain() {
        // The send times out (it may have arrived); the status read that follows fails too.
        let transport = ScriptedTransport([], thenForever: .failure(HTTPTransportError(.timeout, "timeout")))
        let box = Mutex<ACSSendResult?>(nil)
        var policy = RetryPolicy()
        policy.budget = 1
        policy.attemptTimeout = 1
        let clock = FakeClock()
        client(transport, clock: clock).send(
            body: Array("{}".utf8), operationID: ACSEmailClientTests.operationID, retry: policy
        ) { result in box.withLock { $0 = result } }
        clock.runUntilIdle()
        let result = box.withLock { $0 }
        #expect(result?.outcomeUncertain == true)
        #expect(transport.sends.count == 1)  // the per-send budget allowed one attempt only
    }

    @Test func aTimeoutThatNeverArrived_isCertain_andAFoundOneIsAccepted() {
        let notFound = ScriptedTransport([
            .failure(HTTPTransportError(.timeout, "timeout")), ACSEmailClientTests.status(404, error: "NotFound"),
        ])
        let found = ScriptedTransport([
            .failure(HTTPTransportError(.timeout, "timeout")), ACSEmailClientTests.poll("Succeeded"),
        ])
        var policy = RetryPolicy()
        policy.budget = 1
        for (transport, expectUncertain, expectAccepted) in [(notFound, false, false), (found, false, true)] {
            let box = Mutex<ACSSendResult?>(nil)
            let clock = FakeClock()
            client(transport, clock: clock).send(
                body: [], operationID: ACSEmailClientTests.operationID, retry: policy
            ) { result in box.withLock { $0 = result } }
            clock.runUntilIdle()
            let result = box.withLock { $0 }
            #expect(result?.outcomeUncertain == expectUncertain)
            if case .accepted = result?.outcome { #expect(expectAccepted) } else { #expect(!expectAccepted) }
        }
    }
}
