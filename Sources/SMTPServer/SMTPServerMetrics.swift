import CoreMetrics
import SMTPProtocol

/// The SMTP server's metrics, through the swift-metrics API (the daemon decides the backend; without one
/// every call is a no-op). Names follow Prometheus conventions: `acsgw_` prefix, unit suffixes, `_total` on
/// counters. Labels take values from fixed vocabularies only — never an address, an id or client text — so
/// the number of series stays bounded.
///
/// | name | type | labels |
/// |---|---|---|
/// | `acsgw_smtp_connections_opened_total` | counter | — |
/// | `acsgw_smtp_connections_refused_total` | counter | `reason` (see ``RefusalReason``) |
/// | `acsgw_smtp_connections_open` | gauge | — |
/// | `acsgw_smtp_messages_total` | counter | `outcome`, `reply_class` (`2xx`…), `reason` (``SubmissionReason``) |
/// | `acsgw_smtp_transaction_duration_seconds` | histogram | `outcome`; end of DATA/BDAT LAST → reply |
/// | `acsgw_smtp_submissions_in_flight` | gauge | — |
/// | `acsgw_smtp_auth_attempts_total` | counter | `mechanism` (`PLAIN`, `LOGIN`), `outcome` (`accepted`…) |
/// | `acsgw_smtp_user_messages_total` | counter | `user` (a name from the users file), `outcome` |
///
/// Thread-safe: the handles are created once (or, for labelled series, looked up in the backend's registry).
public final class SMTPServerMetrics: Sendable {
    /// Why a connection was refused at connect, as a label value.
    public enum RefusalReason: String, Sendable, CaseIterable {
        case accessDenied = "access_denied"
        case connectionLimit = "connection_limit"
        case clientLimit = "client_limit"
        case shuttingDown = "shutting_down"

        /// The wording of the "connection refused" log line.
        var text: String {
            switch self {
            case .accessDenied: "address not in allowed networks"
            case .connectionLimit: "connection limit reached"
            case .clientLimit: "per-client connection limit reached"
            case .shuttingDown: "shutting down"
            }
        }
    }

    public static let connectionsOpened = "acsgw_smtp_connections_opened_total"
    public static let connectionsRefused = "acsgw_smtp_connections_refused_total"
    public static let connectionsOpen = "acsgw_smtp_connections_open"
    public static let messages = "acsgw_smtp_messages_total"
    public static let transactionDuration = "acsgw_smtp_transaction_duration_seconds"
    public static let submissionsInFlight = "acsgw_smtp_submissions_in_flight"
    public static let authenticationAttempts = "acsgw_smtp_auth_attempts_total"
    public static let userMessages = "acsgw_smtp_user_messages_total"

    private let factory: any MetricsFactory
    private let opened: Counter
    private let open: Meter
    private let inFlight: Meter

    public init(factory: any MetricsFactory = MetricsSystem.factory) {
        self.factory = factory
        opened = Counter(label: Self.connectionsOpened, factory: factory)
        open = Meter(label: Self.connectionsOpen, factory: factory)
        inFlight = Meter(label: Self.submissionsInFlight, factory: factory)
    }

    func connectionOpened() {
        opened.increment()
        open.increment()
    }

    func connectionClosed() { open.decrement() }

    func connectionRefused(_ reason: RefusalReason) {
        Counter(label: Self.connectionsRefused, dimensions: [("reason", reason.rawValue)], factory: factory).increment()
    }

    func submissionStarted() { inFlight.increment() }

    func submissionEnded() { inFlight.decrement() }

    /// A message got its final reply; `seconds` is the time from the end of its data to that reply.
    func messageAnswered(_ reply: SMTPReply, reason: SubmissionReason, seconds: Double) {
        let outcome = Self.outcome(of: reply)
        Counter(
            label: Self.messages,
            dimensions: [("outcome", outcome), ("reply_class", "\(reply.code / 100)xx"), ("reason", reason.rawValue)],
            factory: factory
        ).increment()
        Timer(label: Self.transactionDuration, dimensions: [("outcome", outcome)], factory: factory)
            .recordNanoseconds(Int64(max(0, min(seconds, 86_400)) * 1e9))
    }

    /// An AUTH exchange was answered: `accepted`, `rejected` (wrong credentials), `limited` (the address failed too
    /// often) or `unavailable` (the check could not be made).
    func authenticationAttempted(mechanism: SASLMechanism, outcome: AuthenticationOutcome) {
        let label =
            switch outcome {
            case .accepted: "accepted"
            case .rejected: "rejected"
            case .tooManyFailures: "limited"
            case .temporaryFailure: "unavailable"
            }
        Counter(
            label: Self.authenticationAttempts, dimensions: [("mechanism", mechanism.rawValue), ("outcome", label)],
            factory: factory
        ).increment()
    }

    /// A message of an authenticated user got its final reply. User names come from the users file only, so the
    /// label stays bounded.
    func messageAnswered(_ reply: SMTPReply, user: String) {
        Counter(
            label: Self.userMessages, dimensions: [("user", user), ("outcome", Self.outcome(of: reply))],
            factory: factory
        ).increment()
    }

    /// `accepted` (2xx), `deferred` (4xx: the client keeps the message and retries) or `rejected` (5xx).
    static func outcome(of reply: SMTPReply) -> String {
        reply.isPositive ? "accepted" : (reply.isTransientFailure ? "deferred" : "rejected")
    }
}
