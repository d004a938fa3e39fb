import Foundation
import SMTPProtocol
import SMTPServer
import Testing

@testable import Gateway

/// The users file, crypt(3) hashes, the failure brake (on a clock the test moves) and the authenticator.
@Suite struct AuthTests {
    /// A yescrypt hash of "pw", made once: hashing is slow on purpose.
    static let hashOfPW = PasswordHash.make(Array("pw".utf8))!

    // MARK: Users file

    @Test func parsesUsersSendersAndComments_andWritesThemBack() throws {
        let text = """
            # printers on the second floor
            printer:\(Self.hashOfPW):scan@example.org

            erp:\(Self.hashOfPW):*@example.org, billing@example.com
            relay:\(Self.hashOfPW):*
            """
        let file = try UsersFile(parsing: text, path: "users")
        #expect(file.entries.map(\.name) == ["printer", "erp", "relay"])
        #expect(file.entry(named: "erp")?.senders == [.domain("example.org"), .address("billing@example.com")])
        #expect(file.entry(named: "relay")?.senders == [.any])
        #expect(file.warnings.isEmpty)
        let again = try UsersFile(parsing: file.text, path: "users")
        #expect(again == file)
        #expect(file.text.hasPrefix("# printers on the second floor\nprinter:"))
    }

    @Test func everyProblemIsReported_withItsLine_andNeverTheHashField() {
        let text = """
            alice:MyPlainPassword1:a@example.org
            bob:\(Self.hashOfPW):not-an-address
            carol
            al ice:\(Self.hashOfPW):*
            dave:\(Self.hashOfPW):*
            dave:\(Self.hashOfPW):*
            """
        #expect {
            _ = try UsersFile(parsing: text, path: "/etc/users")
        } throws: { error in
            guard let error = error as? UsersFileError else { return false }
            let joined = error.problems.joined(separator: "\n")
            return error.problems.count == 5 && !joined.contains("MyPlainPassword1")
                && error.problems[0].hasPrefix("/etc/users:1: user alice: the second field is not a crypt(3) hash")
                && error.problems[1].hasPrefix("/etc/users:2: user bob: sender \"not-an-address\"")
                && error.problems[2].hasPrefix("/etc/users:3: expected name:hash:senders")
                && error.problems[3].hasPrefix("/etc/users:4: the user name contains")
                && error.problems[4] == "/etc/users:6: user dave is listed twice"
        }
    }

    @Test func aUserWithoutSenders_isAWarning() throws {
        let file = try UsersFile(parsing: "nobody:\(Self.hashOfPW):\n", path: "users")
        #expect(file.entry(named: "nobody")?.senders == [])
        #expect(file.warnings == ["users:1: user nobody has no allowed senders: it can authenticate, not send"])
    }

    @Test func setAddsOrUpdates_keepingSendersUnlessGiven() throws {
        var file = try UsersFile(parsing: "a:\(Self.hashOfPW):*@example.org\n", path: "users")
        file.set(name: "a", hash: "$6$x$y", senders: nil)
        #expect(file.entry(named: "a")?.senders == [.domain("example.org")])
        #expect(file.entry(named: "a")?.hash == "$6$x$y")
        file.set(name: "b", hash: Self.hashOfPW, senders: [.any])
        #expect(file.text == "a:$6$x$y:*@example.org\nb:\(Self.hashOfPW):*\n")
    }

    // MARK: Hashes

    @Test(arguments: PasswordHash.Method.allCases)
    func hashesVerify_withEveryMethod(_ method: PasswordHash.Method) throws {
        let hash = try #require(PasswordHash.make(Array("correct horse".utf8), method: method))
        #expect(hash.hasPrefix(method.rawValue))
        #expect(UsersFile.hashProblem(hash) == nil)
        #expect(PasswordHash.verify(Array("correct horse".utf8), against: hash))
        #expect(!PasswordHash.verify(Array("correct horsf".utf8), against: hash))
        #expect(!PasswordHash.verify([], against: hash))
    }

    @Test func aPasswordIsNeverTakenForAHash() {
        #expect(UsersFile.hashProblem("hunter2") == .invalid)
        #expect(UsersFile.hashProblem("$y$") == .invalid)
        #expect(!PasswordHash.verify(Array("hunter2".utf8), against: "hunter2"))
    }

    // MARK: Failure counting

    final class Clock: @unchecked Sendable {
        private let lock = NSLock()
        private var seconds = 0.0
        var clock: MonotonicClock { MonotonicClock { self.lock.withLock { self.seconds } } }
        func advance(by interval: Double) { lock.withLock { seconds += interval } }
    }

    static let client = SocketAddress(ip: "192.0.2.7", port: 40000)!
    static let mapped = SocketAddress(ip: "::ffff:192.0.2.7", port: 40001)!
    static let other = SocketAddress(ip: "192.0.2.8", port: 40000)!

    @Test func theBrakeEngagesAfterMaxFailuresWithinTheWindow_perAddress() {
        let time = Clock()
        var limits = AuthFailureTracker.Limits()
        limits.maxFailures = 3
        limits.window = 60
        let tracker = AuthFailureTracker(limits: limits, clock: time.clock)
        #expect(tracker.recordFailure(Self.client) == 1)
        time.advance(by: 10)
        #expect(tracker.recordFailure(Self.mapped) == 2)  // the same IPv4 client on a dual-stack socket
        #expect(!tracker.isLimited(Self.client))
        #expect(tracker.recordFailure(Self.client) == 3)
        #expect(tracker.isLimited(Self.client))
        #expect(!tracker.isLimited(Self.other))
        // The first failure leaves the window 60 s after it happened: below the limit again.
        time.advance(by: 49)
        #expect(tracker.isLimited(Self.client))
        time.advance(by: 1)
        #expect(!tracker.isLimited(Self.client))
        #expect(tracker.failureCount(Self.client) == 2)
    }

    @Test func aSuccessClearsTheCount() {
        let tracker = AuthFailureTracker(clock: Clock().clock)
        tracker.recordFailure(Self.client)
        tracker.recordFailure(Self.client)
        tracker.recordSuccess(Self.client)
        #expect(tracker.failureCount(Self.client) == 0)
    }

    // MARK: The authenticator

    static func authenticate(
        _ authenticator: UsersAuthenticator, user: String, password: String, from client: SocketAddress = client
    ) async -> AuthenticationResult {
        await withCheckedContinuation { continuation in
            authenticator.authenticate(
                SASLCredentials(mechanism: .plain, username: user, password: Array(password.utf8)), client: client
            ) { continuation.resume(returning: $0) }
        }
    }

    @Test func theAuthenticator_acceptsRejectsAndBrakes() async throws {
        let users = try UsersFile(parsing: "alice:\(Self.hashOfPW):*@example.org\n", path: "users")
        var limits = AuthFailureTracker.Limits()
        limits.maxFailures = 2
        limits.delay = 3
        let tracker = AuthFailureTracker(limits: limits, clock: Clock().clock)
        let verifier = CredentialVerifier(threads: 1)
        defer { verifier.stop() }
        let authenticator = UsersAuthenticator(users: users, verifier: verifier, tracker: tracker)

        let accepted = await Self.authenticate(authenticator, user: "alice", password: "pw")
        #expect(accepted.outcome == .accepted(AuthenticatedUser(name: "alice", senders: [.domain("example.org")])))
        let wrong = await Self.authenticate(authenticator, user: "alice", password: "pW")
        #expect(wrong.outcome == .rejected)
        #expect(wrong.knownUser && wrong.failures == 1 && wrong.delay == 0)
        let unknown = await Self.authenticate(authenticator, user: "mallory", password: "pw")
        #expect(unknown.outcome == .tooManyFailures)
        #expect(!unknown.knownUser && unknown.failures == 2 && unknown.delay == 3)
        // Limited now: even the right password is not checked.
        let limited = await Self.authenticate(authenticator, user: "alice", password: "pw")
        #expect(limited.outcome == .tooManyFailures)
        // Another address is not affected.
        let elsewhere = await Self.authenticate(authenticator, user: "alice", password: "pw", from: Self.other)
        #expect(elsewhere.outcome != .tooManyFailures && elsewhere.outcome != .rejected)
    }

    /// A flag a pool thread sets and the test polls (the test cannot block on a semaphore in async code).
    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var raised = false
        var isRaised: Bool { lock.withLock { raised } }
        func raise() { lock.withLock { raised = true } }
    }

    @Test func aFullPool_answersTemporaryFailure_atOnce() async throws {
        let verifier = CredentialVerifier(threads: 1, maxQueued: 1)
        defer { verifier.stop() }
        let gate = DispatchSemaphore(value: 0)
        defer { gate.signal() }
        let running = Flag()
        #expect(
            verifier.submit {
                running.raise()
                gate.wait()
            })
        for _ in 0..<500 where !running.isRaised { try await Task.sleep(for: .milliseconds(10)) }
        try #require(running.isRaised, "the pool thread never took the first job")
        #expect(verifier.submit {})  // the one waiting place
        #expect(!verifier.submit {})  // full
        let users = try UsersFile(parsing: "alice:\(Self.hashOfPW):*\n", path: "users")
        let authenticator = UsersAuthenticator(
            users: users, verifier: verifier, tracker: AuthFailureTracker(clock: Clock().clock))
        let result = await Self.authenticate(authenticator, user: "alice", password: "pw")
        #expect(result.outcome == .temporaryFailure)
    }
}
