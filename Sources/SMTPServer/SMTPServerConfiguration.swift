import SMTPProtocol

/// One listening address and what it offers (`smtp.listeners`; `smtp.listen` gives plain ones).
public struct SMTPListener: Sendable, Hashable, CustomStringConvertible {
    /// How TLS is used on the listener.
    public enum TLSMode: String, CaseIterable, Sendable {
        /// Plaintext only (STARTTLS answered 502).
        case none
        /// Plaintext first, STARTTLS offered (RFC 3207; ports 25, 587, 2525).
        case starttls
        /// TLS from the first octet (RFC 8314; port 465).
        case implicit
    }

    public var address: SocketAddress
    public var tls: TLSMode
    public var auth: AuthRequirement
    /// The name of the systemd socket (`FileDescriptorName=`) this listener takes under socket activation.
    public var name: String

    public init(address: SocketAddress, tls: TLSMode = .none, auth: AuthRequirement = .none, name: String? = nil) {
        self.address = address
        self.tls = tls
        self.auth = auth
        self.name = name ?? Self.defaultName(tls: tls)
    }

    /// The IANA service name of the listener's kind: `smtp`, `submission` (587, STARTTLS) or `submissions`
    /// (465, implicit TLS), which is also the usual `FileDescriptorName=`.
    public static func defaultName(tls: TLSMode) -> String {
        switch tls {
        case .none: "smtp"
        case .starttls: "submission"
        case .implicit: "submissions"
        }
    }

    public var description: String { "\(address) tls=\(tls.rawValue) auth=\(auth.rawValue)" }
}

/// Everything the listener needs to know. Every limit has a default, a unit and a reason.
public struct SMTPServerConfiguration: Sendable {
    /// Where to listen, and what each listener offers. Default: `127.0.0.1:2525` without TLS or AUTH: local
    /// applications only, no privileged port.
    public var listeners: [SMTPListener] = [SocketAddress(ip: "127.0.0.1", port: 2525)].compactMap { $0 }.map {
        SMTPListener(address: $0)
    }

    /// The listeners' addresses; setting them makes plain listeners (no TLS, no AUTH).
    public var listenAddresses: [SocketAddress] {
        get { listeners.map(\.address) }
        set { listeners = newValue.map { SMTPListener(address: $0) } }
    }

    /// The certificate, key and protocol settings of the TLS listeners; nil without TLS. A reload replaces it
    /// for new connections.
    public var tls: TLSContext?

    /// AUTH over plaintext on a non-loopback address (`tls.allow_plaintext_auth`): for legacy LANs whose devices
    /// cannot do TLS. Loopback clients may always use AUTH without TLS.
    public var allowPlaintextAuth = false

    /// Checks AUTH credentials; nil when no listener offers AUTH.
    public var authenticator: (any SMTPAuthenticator)?

    /// The name in the greeting and EHLO reply.
    public var hostname: String = "localhost"

    /// Protocol limits (message size, line lengths, recipients, errors, bare-LF policy).
    public var limits = SMTPLimits()

    /// Timeouts and the minimum data rate.
    public var timeouts = SMTPTimeouts()

    /// Networks whose clients may connect; everyone else gets 554 5.7.1 at connect.
    /// Default: loopback only, so the gateway is never an open relay by default.
    public var allowedNetworks: [IPNetwork] = IPNetwork.loopback

    /// Simultaneous connections in total; more get 421 4.7.0 at connect. Each idle connection costs
    /// a socket, a queue and a few KiB, so 1000 is far from the machine's limits but bounds abuse.
    public var maxConnections: Int = 1000

    /// Simultaneous connections from one client IP address (Postfix `smtpd_client_connection_count_limit = 50`).
    public var maxConnectionsPerClient: Int = 50

    /// Clients the per-client limit does not apply to; ``maxConnections`` still does. Default: loopback, like
    /// ``allowedNetworks``: every local application shares 127.0.0.1, and a connection pool of 60 from one of
    /// them is not abuse (Postfix `smtpd_client_connection_limit_exceptions = $mynetworks`).
    public var connectionLimitExceptions: [IPNetwork] = IPNetwork.loopback

    /// The UNIX socket local processes submit on (the sendmail command), connectable by every local user; each
    /// session's peer is identified by the kernel (`SO_PEERCRED`). nil: none, unless systemd passes one.
    public var localSocketPath: String?

    /// Pending connections the kernel may queue before `accept` (`listen(2)` backlog).
    public var listenBacklog: Int32 = 1024

    public init() {}
}

/// RFC 5321 §4.5.3.2 timeouts as seen from the server, plus slowloris protection. Units: seconds.
public struct SMTPTimeouts: Hashable, Sendable {
    /// How long the server waits for a complete command line (greeting to first command, and between
    /// commands). RFC 5321 §4.5.3.2.7: at least 5 minutes. Trickling bytes does not extend it.
    public var command: Double = 300

    /// Longest silence while message data is arriving (RFC 5321 §4.5.3.2.5: 3 minutes per data block).
    public var dataBlock: Double = 180

    /// Longest time the submitter (outbox write, ACS delivery) may take before the client is answered with
    /// 451 (RFC 5321 §4.5.3.2.6: the client waits 10 minutes for the reply to the end of data).
    public var submission: Double = 600

    /// Minimum average rate of message data, in octets per second, once `minDataRateGracePeriod` has passed
    /// (Postfix `smtpd_min_data_rate = 500`): defeats clients that keep a connection alive by trickling.
    public var minDataRate: Double = 500

    /// Time at the start of message data during which the rate is not checked (slow starts, small messages).
    public var minDataRateGracePeriod: Double = 30

    /// How long a graceful shutdown waits for open transactions before closing them with 421.
    public var shutdownGracePeriod: Double = 30

    public init() {}
}
