import Foundation

/// How accepted messages reach ACS (`delivery.mode`).
public enum DeliveryMode: String, Sendable, Hashable, CaseIterable {
    /// Send during the SMTP transaction; the client hears every ACS outcome, 451 included. No state on disk.
    case direct
    /// Try ACS during the transaction for at most `delivery.direct_timeout`; when ACS is throttling or
    /// unavailable, take custody in the spool and answer 250. Definite ACS answers still reach the client.
    case hybrid
    /// Spool every message first and answer 250 once it is on disk; deliver in the background.
    case queue
}

/// Where bounces go (`delivery.bounce`): the envelope sender, one administrator's address, or nowhere.
public enum BounceRecipient: Sendable, Hashable, CustomStringConvertible {
    case sender
    case admin(String)
    case none

    public var description: String {
        switch self {
        case .sender: "sender"
        case .admin(let address): "admin \(address)"
        case .none: "none"
        }
    }
}

/// The `delivery` and `spool` sections, and ACS's configured rates.
public struct DeliverySettings: Sendable, Hashable {
    public var mode: DeliveryMode = .hybrid
    /// Seconds the first try inside the SMTP transaction may take in hybrid mode. Default 10 s: a healthy
    /// ACS answers in well under a second, and a client should not wait long for custody.
    public var directTimeout: Double = 10
    /// Seconds a spooled message is retried before it bounces. Default 5 days, Postfix's
    /// `maximal_queue_lifetime`: long enough for an outage over a weekend.
    public var maxLifetime: Double = 5 * 86_400
    /// The first retry delay, doubled per failed attempt up to `maxBackoff` (with jitter). Defaults 1 min
    /// and 1 h: Postfix's 5 min/4000 s is tuned for remote MXs; a single ACS endpoint recovers faster.
    public var minBackoff: Double = 60
    public var maxBackoff: Double = 3600
    public var bounce: BounceRecipient = .sender
    /// Spool sends in flight at once (``DeliveryPacer/Limits/maxInFlight``).
    public var maxInFlight = 16
    /// Configured ACS rates, 0 for off (``DeliveryPacer``).
    public var maxPerMinute = 0
    public var maxPerHour = 0
    /// The spool's directory. Under systemd, `StateDirectory=acs-smtp-gateway` creates it for the dynamic user.
    public var spoolDirectory = "/var/lib/acs-smtp-gateway/spool"
    /// Messages the spool holds at most; over it new mail gets 452 4.3.1. Default 100,000.
    public var spoolMaxMessages = 100_000
    /// Octets the spool holds at most. Default 4 GiB.
    public var spoolMaxSize = 4 << 30
    /// Free octets the spool's file system must keep; below it new mail gets 452. Default 64 MiB.
    public var spoolMinFree = 64 << 20

    public init() {}

    var pacerLimits: DeliveryPacer.Limits {
        var limits = DeliveryPacer.Limits()
        limits.maxInFlight = maxInFlight
        limits.perMinute = maxPerMinute > 0 ? maxPerMinute : nil
        limits.perHour = maxPerHour > 0 ? maxPerHour : nil
        return limits
    }

    /// The delay before attempt `attempts + 1` after `attempts` failed ones: exponential with jitter in the
    /// upper half, so retries of a burst spread out instead of returning together.
    func backoff(afterAttempts attempts: Int, random: Double) -> Double {
        let exponential = min(maxBackoff, minBackoff * pow(2, Double(max(0, min(attempts - 1, 30)))))
        return exponential / 2 + exponential / 2 * random
    }
}
