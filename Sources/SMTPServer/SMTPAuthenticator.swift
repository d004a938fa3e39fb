import SMTPProtocol

/// The seam between the SMTP server and whatever checks AUTH credentials (the gateway's users file).
///
/// The server calls `authenticate` once per completed AUTH exchange and reads nothing more from that client
/// until `completion` is called, exactly once, on any thread. Implementations must not block the calling
/// queue: password hashing is slow on purpose, so it runs elsewhere.
public protocol SMTPAuthenticator: Sendable {
    func authenticate(
        _ credentials: SASLCredentials, client: SocketAddress,
        completion: @escaping @Sendable (AuthenticationResult) -> Void)
}

/// What checking credentials gave, and what the connection's log lines need.
public struct AuthenticationResult: Sendable, Hashable {
    public var outcome: AuthenticationOutcome
    /// Failed attempts counted for the client's address, this one included (0 on success).
    public var failures: Int
    /// Seconds to wait before the reply: the brake on a client over the failure limit.
    public var delay: Double
    /// The user name names a user of the users file. Only then is it logged: a client that typed its password
    /// into the user name field must not find it in the log.
    public var knownUser: Bool

    public init(outcome: AuthenticationOutcome, failures: Int = 0, delay: Double = 0, knownUser: Bool = false) {
        self.outcome = outcome
        self.failures = failures
        self.delay = delay
        self.knownUser = knownUser
    }
}
