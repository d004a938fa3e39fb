import Foundation

/// An Entra ID access token. Its description never shows the token itself.
public struct AccessToken: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    /// The bearer token, sent as `Authorization: Bearer <token>`.
    public var token: String
    /// When the token stops being accepted.
    public var expiresOn: Date
    /// When the issuer asks for a refresh (`refresh_in`), if it said so (acs-email-api.md §4.1).
    public var refreshOn: Date?

    public init(token: String, expiresOn: Date, refreshOn: Date? = nil) {
        self.token = token
        self.expiresOn = expiresOn
        self.refreshOn = refreshOn
    }

    public var description: String { "AccessToken(***, expiresOn: \(expiresOn))" }
    public var debugDescription: String { description }
    // `dump()` and string interpolation of containers go through the mirror: keep the token out of it.
    public var customMirror: Mirror { Mirror(self, children: ["expiresOn": expiresOn], displayStyle: .struct) }
}

/// The scope and resource ACS tokens are requested for (acs-email-api.md §4.1, §4.3).
public enum ACSTokenScope {
    /// The scope every official SDK uses, with its **double** slash: it asks for the audience
    /// `https://communication.azure.com/` (with the trailing slash).
    public static let communication = "https://communication.azure.com//.default"

    /// The managed-identity `resource` for a scope: the scope without `/.default` (azure-identity's
    /// `_scopes_to_resource`), so `https://communication.azure.com/` for ``communication``.
    public static func resource(forScope scope: String) -> String {
        scope.hasSuffix("/.default") ? String(scope.dropLast("/.default".count)) : scope
    }
}

/// Obtains Entra ID access tokens. Implementations cache their token and refresh it before it expires,
/// so callers may ask for a token on every request.
public protocol TokenCredential: Sendable {
    /// Calls `completion` exactly once, on any queue, with a token valid for `scope` or an error whose
    /// message never contains a secret. Never blocks the caller's thread on the network.
    func getToken(scope: String, completion: @escaping @Sendable (Result<AccessToken, AuthenticationError>) -> Void)

    /// Forgets the cached token for `scope` because ACS refused it (401): the next `getToken` fetches a new
    /// one. Returns whether there was anything to forget.
    func invalidate(scope: String) -> Bool
}

extension TokenCredential {
    public func invalidate(scope: String) -> Bool { false }
}

/// The token cache shared by every credential: one token per scope, refreshed ahead of expiry, one fetch
/// at a time.
///
/// Refresh policy (acs-email-api.md §4.1): azure-core refreshes 300 s before `expires_on`, or at `refresh_on`
/// when the issuer gave one; MSAL refreshes tokens valid for 2 h or more at half their life. A token due for
/// refresh but still valid is handed out at once while one refresh runs in the background, so mail is not
/// delayed by the token endpoint; if that refresh fails, the old token keeps being used (and the refresh is
/// retried no sooner than ``refreshRetryDelay`` later, like azure-identity's 30 s back-off). Callers that
/// arrive while a fetch is in flight wait for that fetch instead of starting their own.
final class TokenCache: @unchecked Sendable {
    typealias Completion = @Sendable (Result<AccessToken, AuthenticationError>) -> Void
    typealias Fetch = @Sendable (_ scope: String, _ completion: @escaping Completion) -> Void

    /// azure-core's `DEFAULT_REFRESH_WINDOW_SECONDS`.
    static let refreshWindow: TimeInterval = 300
    /// MSAL: tokens valid this long or longer are refreshed at half-life.
    static let halfLifeThreshold: TimeInterval = 7200
    /// A token closer than this to expiry is not handed out: a request (20 s per attempt) must not outlive it.
    static let minimumRemainingValidity: TimeInterval = 30
    /// How long to wait after a failed background refresh before trying again.
    static let refreshRetryDelay: TimeInterval = 30

    private struct Entry {
        var token: AccessToken?
        var obtainedAt = Date.distantPast
        var fetching = false
        var waiters: [Completion] = []
        var nextBackgroundAttempt = Date.distantPast
    }

    private let lock = NSLock()
    private var entries: [String: Entry] = [:]
    private let now: @Sendable () -> Date
    private let fetch: Fetch

    init(now: @escaping @Sendable () -> Date, fetch: @escaping Fetch) {
        self.now = now
        self.fetch = fetch
    }

    /// When a token obtained at `obtainedAt` should be replaced.
    static func refreshDate(for token: AccessToken, obtainedAt: Date) -> Date {
        let lifetime = token.expiresOn.timeIntervalSince(obtainedAt)
        let policy: Date
        if lifetime >= halfLifeThreshold {
            policy = obtainedAt.addingTimeInterval(lifetime / 2)
        } else {
            // Short-lived tokens (under the 300 s window) would otherwise be "due" the moment they arrive.
            policy = max(
                token.expiresOn.addingTimeInterval(-refreshWindow), obtainedAt.addingTimeInterval(lifetime / 2))
        }
        return min(token.refreshOn ?? .distantFuture, policy)
    }

    static func isUsable(_ token: AccessToken, at date: Date) -> Bool {
        date.addingTimeInterval(minimumRemainingValidity) < token.expiresOn
    }

    func getToken(scope: String, completion: @escaping Completion) {
        let date = now()
        lock.lock()
        var entry = entries[scope] ?? Entry()
        if let token = entry.token, Self.isUsable(token, at: date) {
            let refreshDue = date >= Self.refreshDate(for: token, obtainedAt: entry.obtainedAt)
            let startRefresh = refreshDue && !entry.fetching && date >= entry.nextBackgroundAttempt
            if startRefresh { entry.fetching = true }
            entries[scope] = entry
            lock.unlock()
            completion(.success(token))
            if startRefresh { startFetch(scope) }
            return
        }
        entry.waiters.append(completion)
        let startFetching = !entry.fetching
        entry.fetching = true
        entries[scope] = entry
        lock.unlock()
        if startFetching { startFetch(scope) }
    }

    /// Drops the cached token (ACS refused it), unless a fetch is already replacing it.
    func invalidate(scope: String) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        guard var entry = entries[scope], entry.token != nil, !entry.fetching else { return false }
        entry.token = nil
        entry.nextBackgroundAttempt = .distantPast
        entries[scope] = entry
        return true
    }

    private func startFetch(_ scope: String) {
        fetch(scope) { [self] result in
            let date = now()
            lock.lock()
            var entry = entries[scope] ?? Entry()
            entry.fetching = false
            let waiters = entry.waiters
            entry.waiters = []
            let delivered: Result<AccessToken, AuthenticationError>
            switch result {
            case .success(let token):
                entry.token = token
                entry.obtainedAt = date
                delivered = .success(token)
            case .failure(let error):
                if let old = entry.token, Self.isUsable(old, at: date) {
                    entry.nextBackgroundAttempt = date.addingTimeInterval(Self.refreshRetryDelay)
                    delivered = .success(old)
                } else {
                    delivered = .failure(error)
                }
            }
            entries[scope] = entry
            lock.unlock()
            for waiter in waiters { waiter(delivered) }
        }
    }
}
