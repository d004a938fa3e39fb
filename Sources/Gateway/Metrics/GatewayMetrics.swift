import CoreMetrics
import Prometheus

/// The metrics backend: Prometheus (swift-prometheus) behind the swift-metrics API the libraries emit to.
///
/// The daemon bootstraps it only when the admin listener is on; otherwise every metric is a no-op. The
/// metrics themselves are defined where they are emitted — ``SMTPServerMetrics`` (connections, messages,
/// transaction latency, submissions in flight) and `ACSClientMetrics` (ACS requests, retries, throttling
/// waits, request latency) — and are listed in README.md ("Metrics").
public enum GatewayMetrics {
    /// Histogram buckets for the latency metrics, from 5 ms (an outbox write) to 5 minutes (an ACS send that
    /// used its whole retry budget, or a final-status poll).
    public static let durationBuckets: [Duration] = [
        .milliseconds(5), .milliseconds(10), .milliseconds(25), .milliseconds(50), .milliseconds(100),
        .milliseconds(250), .milliseconds(500), .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10),
        .seconds(30), .seconds(60), .seconds(120), .seconds(300),
    ]

    /// A swift-metrics factory that records into `registry`, with the gateway's buckets.
    public static func makeFactory(registry: PrometheusCollectorRegistry) -> PrometheusMetricsFactory {
        var factory = PrometheusMetricsFactory(registry: registry)
        factory.defaultDurationHistogramBuckets = durationBuckets
        return factory
    }

    /// Makes Prometheus the process's metrics backend and returns the registry `/metrics` renders. Call once,
    /// before the SMTP server and the ACS client are created (they take their metric handles then).
    public static func bootstrap() -> PrometheusCollectorRegistry {
        let registry = PrometheusCollectorRegistry()
        MetricsSystem.bootstrap(makeFactory(registry: registry))
        return registry
    }
}
