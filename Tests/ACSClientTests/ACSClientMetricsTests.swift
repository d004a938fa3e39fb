import CoreMetrics
import Foundation
import MetricsTestKit
import Synchronization
import Testing

@testable import ACSClient

/// The ACS client's metrics, recorded into swift-metrics' test backend (no global bootstrap) over a scripted
/// transport and a fake clock: requests by status, retries by reason, throttling waits and their seconds,
/// request latency.
@Suite struct ACSClientMetricsTests {
    private func send(_ transport: ScriptedTransport, metrics: TestMetrics) -> ACSSendResult? {
        var configuration = ACSClientConfiguration(endpoint: ACSEndpoint("https://contoso.communication.azure.com")!)
        configuration.backgroundPolls = 0
        let clock = FakeClock()
        let client = ACSEmailClient(
            configuration: configuration, authenticator: HMACAuthenticator(key: ACSEmailClientTests.key),
            transport: transport, clock: clock,
            metrics: ACSClientMetrics(factory: metrics))
        let box = Mutex<ACSSendResult?>(nil)
        client.send(body: Array("{}".utf8), operationID: ACSEmailClientTests.operationID) { result in
            box.withLock { $0 = result }
        }
        clock.runUntilIdle()
        return box.withLock { $0 }
    }

    private func count(_ metrics: TestMetrics, _ label: String, _ dimensions: [(String, String)] = []) -> Int64 {
        metrics.counterTotal(label: label, dimensions: dimensions)
    }

    @Test func throttledTwiceThenAccepted_countsEachRequestRetryAndWait() {
        let metrics = TestMetrics()
        let transport = ScriptedTransport([
            ACSEmailClientTests.status(429, retryAfter: "2", error: "TooManyRequests"),
            ACSEmailClientTests.status(429, retryAfter: "3", error: "TooManyRequests"),
            ACSEmailClientTests.accepted(),
        ])
        let result = send(transport, metrics: metrics)
        #expect(result?.attempts == 3)
        #expect(count(metrics, ACSClientMetrics.requests, [("operation", "send"), ("status", "429")]) == 2)
        #expect(count(metrics, ACSClientMetrics.requests, [("operation", "send"), ("status", "202")]) == 1)
        #expect(count(metrics, ACSClientMetrics.retries, [("operation", "send"), ("reason", "throttled")]) == 2)
        #expect(count(metrics, ACSClientMetrics.throttleWaits) == 2)
        #expect(count(metrics, ACSClientMetrics.throttleWaitSeconds) == 5)  // Retry-After 2 s, then 3 s
        let durations = metrics.timers(label: ACSClientMetrics.requestDuration, dimensions: [("operation", "send")])
        #expect(durations.flatMap(\.values).count == 3)
    }

    @Test func serverErrorsAndLostAnswers_areRetriesOfTheirOwnKind_notThrottling() {
        let metrics = TestMetrics()
        let transport = ScriptedTransport([
            ACSEmailClientTests.status(503),
            .failure(HTTPTransportError(.timeout, "operation timed out")),
            ACSEmailClientTests.status(404, error: "NotFound"),  // asked before resending: never arrived
            ACSEmailClientTests.accepted(),
        ])
        #expect(send(transport, metrics: metrics)?.attempts == 3)
        #expect(count(metrics, ACSClientMetrics.requests, [("operation", "send"), ("status", "503")]) == 1)
        #expect(count(metrics, ACSClientMetrics.requests, [("operation", "send"), ("status", "transport_error")]) == 1)
        #expect(count(metrics, ACSClientMetrics.retries, [("operation", "send"), ("reason", "server_error")]) == 1)
        #expect(count(metrics, ACSClientMetrics.retries, [("operation", "send"), ("reason", "transport_error")]) == 1)
        #expect(count(metrics, ACSClientMetrics.throttleWaits) == 0)
    }

    @Test func aPermanentRefusal_isOneRequestAndNoRetry() {
        let metrics = TestMetrics()
        let transport = ScriptedTransport([ACSEmailClientTests.status(400, error: "InvalidEmailAddress")])
        #expect(send(transport, metrics: metrics)?.attempts == 1)
        #expect(count(metrics, ACSClientMetrics.requests, [("operation", "send"), ("status", "400")]) == 1)
        #expect(metrics.counters(label: ACSClientMetrics.retries).isEmpty)
    }
}
