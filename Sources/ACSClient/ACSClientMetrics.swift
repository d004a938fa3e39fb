import CoreMetrics

/// The ACS client's metrics, through the swift-metrics API (no-ops until the daemon bootstraps a backend).
/// Labels come from fixed vocabularies: the operation, and the HTTP status as three digits (or
/// `transport_error` when no answer came) — never an operation id or a URL.
///
/// | name | type | labels |
/// |---|---|---|
/// | `acsgw_acs_requests_total` | counter | `operation` (`send`, `status`), `status` (`202`, …, `transport_error`) |
/// | `acsgw_acs_request_duration_seconds` | histogram | `operation`; one HTTP attempt, signing excluded |
/// | `acsgw_acs_retries_total` | counter | `operation`, `reason` (see ``RetryReason``) |
/// | `acsgw_acs_throttle_waits_total` | counter | — ; waits after a 429 before the next attempt |
/// | `acsgw_acs_throttle_wait_seconds_total` | counter | — ; seconds spent in those waits |
public final class ACSClientMetrics: Sendable {
    /// Which ACS call a request belongs to.
    public enum Operation: String, Sendable {
        /// `POST /emails:send`.
        case send
        /// `GET /emails/operations/{id}` (polls and the check after a lost answer).
        case status
    }

    /// Why an attempt is repeated.
    public enum RetryReason: String, Sendable {
        case throttled
        case serverError = "server_error"
        case transportError = "transport_error"
        /// A cached bearer token was refused and replaced.
        case credentials
    }

    public static let requests = "acsgw_acs_requests_total"
    public static let requestDuration = "acsgw_acs_request_duration_seconds"
    public static let retries = "acsgw_acs_retries_total"
    public static let throttleWaits = "acsgw_acs_throttle_waits_total"
    public static let throttleWaitSeconds = "acsgw_acs_throttle_wait_seconds_total"

    private let factory: any MetricsFactory
    private let waits: Counter
    private let waitSeconds: FloatingPointCounter

    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        waits = Counter(label: Self.throttleWaits, factory: factory)
        waitSeconds = FloatingPointCounter(label: Self.throttleWaitSeconds, factory: factory)
    }

    /// One HTTP attempt ended: `status` is nil when no answer came (timeout, connection failure).
    func requestCompleted(_ operation: Operation, status: Int?, seconds: Double) {
        let statusLabel = status.map { (100...599).contains($0) ? String($0) : "other" } ?? "transport_error"
        Counter(
            label: Self.requests, dimensions: [("operation", operation.rawValue), ("status", statusLabel)],
            factory: factory
        ).increment()
        Timer(label: Self.requestDuration, dimensions: [("operation", operation.rawValue)], factory: factory)
            .recordNanoseconds(Int64(max(0, min(seconds, 86_400)) * 1e9))
    }

    /// Another attempt follows after `wait` seconds.
    func retrying(_ operation: Operation, reason: RetryReason, wait: Double) {
        Counter(
            label: Self.retries, dimensions: [("operation", operation.rawValue), ("reason", reason.rawValue)],
            factory: factory
        ).increment()
        if reason == .throttled {
            waits.increment()
            waitSeconds.increment(by: max(0, min(wait, 86_400)))
        }
    }
}
