import Logging
import SMTPProtocol
import SMTPServer

/// Checks AUTH credentials against the users file: the hash check on the ``CredentialVerifier`` pool, the
/// per-address brake of the ``AuthFailureTracker``. Built again on every reload (a new users file); the pool and
/// the tracker are the daemon's, so a reload neither forgets failures nor starts threads.
public struct UsersAuthenticator: SMTPAuthenticator {
    public let users: UsersFile
    let verifier: CredentialVerifier
    let tracker: AuthFailureTracker

    public init(users: UsersFile, verifier: CredentialVerifier, tracker: AuthFailureTracker) {
        self.users = users
        self.verifier = verifier
        self.tracker = tracker
    }

    public func authenticate(
        _ credentials: SASLCredentials, client: SocketAddress,
        completion: @escaping @Sendable (AuthenticationResult) -> Void
    ) {
        let entry = users.entry(named: credentials.username)
        let known = entry != nil
        let tracker = tracker
        if tracker.isLimited(client) {
            // Over the limit: no password is checked at all, so guessing gains nothing.
            completion(
                AuthenticationResult(
                    outcome: .tooManyFailures, failures: tracker.failureCount(client),
                    delay: tracker.currentLimits.delay, knownUser: known))
            return
        }
        let accepted = verifier.submit {
            // PLAIN's authorization identity may only name the user itself (RFC 4616 §2; mutt sends it).
            let identityOK =
                credentials.authorizationIdentity.isEmpty
                || credentials.authorizationIdentity == credentials.username
            // An unknown user costs a hash check too, so timing does not tell which names exist.
            let matches = PasswordHash.verify(credentials.password, against: entry?.hash ?? Self.decoyHash)
            guard let entry, matches, identityOK else {
                let failures = tracker.recordFailure(client)
                let limited = failures >= tracker.currentLimits.maxFailures
                completion(
                    AuthenticationResult(
                        outcome: limited ? .tooManyFailures : .rejected, failures: failures,
                        delay: limited ? tracker.currentLimits.delay : 0, knownUser: known))
                return
            }
            tracker.recordSuccess(client)
            completion(
                AuthenticationResult(
                    outcome: .accepted(AuthenticatedUser(name: entry.name, senders: entry.senders)), knownUser: true))
        }
        if !accepted {
            completion(AuthenticationResult(outcome: .temporaryFailure, knownUser: known))
        }
    }

    /// A yescrypt hash of a random password nobody knows, checked for unknown users.
    static let decoyHash = PasswordHash.make(Array("decoy-\(UInt64.random(in: 0...UInt64.max))".utf8)) ?? "$y$"
}
