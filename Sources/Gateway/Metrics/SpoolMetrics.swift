import CoreMetrics
import Spool

/// The spool's metrics (no-ops until the daemon bootstraps a backend). Labels come from fixed vocabularies.
///
/// | name | type | labels |
/// |---|---|---|
/// | `acsgw_spool_messages` | gauge | `state` (`queued`, `sending`, `accepted`, `bouncing`, `held`) |
/// | `acsgw_spool_oldest_age_seconds` | gauge | — ; age of the oldest spooled message |
/// | `acsgw_delivery_attempts_total` | counter | `outcome` (`accepted`, `deferred`, `throttled`, `refused`, `rejected`, `failed`, `expired`, `delivered`) |
/// | `acsgw_delivery_fates_total` | counter | `fate` (`delivered`, `bounced`, `failed`, `deleted`) |
/// | `acsgw_delivery_pacing_pauses_total` | counter | — ; pauses of all sending after a 429 |
final class SpoolMetrics: Sendable {
    static let messages = "acsgw_spool_messages"
    static let oldestAge = "acsgw_spool_oldest_age_seconds"
    static let attempts = "acsgw_delivery_attempts_total"
    static let fates = "acsgw_delivery_fates_total"
    static let pauses = "acsgw_delivery_pacing_pauses_total"

    private let factory: any MetricsFactory
    private let pauseCounter: Counter
    private let oldest: Gauge

    init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        pauseCounter = Counter(label: Self.pauses, factory: factory)
        oldest = Gauge(label: Self.oldestAge, factory: factory)
    }

    func update(states: [SpoolState: Int], oldest age: Double) {
        for state in [SpoolState.queued, .sending, .accepted, .bouncing, .held] {
            Gauge(label: Self.messages, dimensions: [("state", state.rawValue)], factory: factory)
                .record(states[state] ?? 0)
        }
        oldest.record(age)
    }

    func attempt(_ outcome: String) {
        Counter(label: Self.attempts, dimensions: [("outcome", outcome)], factory: factory).increment()
    }

    func fate(_ fate: String) {
        Counter(label: Self.fates, dimensions: [("fate", fate)], factory: factory).increment()
    }

    func pacingPause() { pauseCounter.increment() }
}
