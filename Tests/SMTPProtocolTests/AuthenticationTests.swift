import Testing

@testable import SMTPProtocol

/// STARTTLS (RFC 3207) and AUTH (RFC 4954) as transcripts on the pure session: what is advertised where, the
/// order of refusals, the PLAIN and LOGIN exchanges with and without an initial response, cancelling, sender
/// rights, and the injection rule (input pipelined after STARTTLS is discarded).
@Suite struct AuthenticationTests {
    static let alice = AuthenticatedUser(
        name: "alice", senders: [SenderPattern("app@legacy.example")!, SenderPattern("*@example.org")!])

    /// Drives a session: answers credentials with `check`, performs "the handshake" when asked.
    struct Driver {
        var session: SMTPSession
        var presented: [SASLCredentials] = []
        var replies: [SMTPReply] = []
        var closed = false
        var startedTLS = false
        var discarded = 0
        var check: (SASLCredentials) -> AuthenticationOutcome = { credentials in
            credentials.username == "alice" && credentials.password == Array("pw".utf8)
                && (credentials.authorizationIdentity.isEmpty || credentials.authorizationIdentity == "alice")
                ? .accepted(AuthenticationTests.alice) : .rejected
        }

        init(_ security: SessionSecurity) {
            session = SMTPSession(hostname: "gateway.test", security: security)
        }

        @discardableResult
        mutating func send(_ wire: String) -> [Int] {
            let before = replies.count
            record(session.receive(Array(wire.utf8)))
            return replies[before...].map(\.code)
        }

        /// The handshake after STARTTLS completed.
        mutating func secure() {
            session.tlsEstablished()
        }

        private mutating func record(_ output: SMTPSession.Output) {
            replies += output.replies
            closed = closed || output.close
            startedTLS = startedTLS || output.startTLS
            discarded += output.discardedOctets
            if let credentials = output.credentials {
                presented.append(credentials)
                record(session.authenticationCompleted(check(credentials)))
            }
        }

        var last: SMTPReply { replies.last! }
    }

    static func base64(_ text: String) -> String { SASLBase64.encode(Array(text.utf8)) }

    static let startTLSListener = SessionSecurity(startTLSOffered: true, auth: .optional, trustedClient: false)

    // MARK: Advertising

    @Test func ehloOffersStartTLS_andAuthOnlyOnceItCanBeUsed() {
        var driver = Driver(Self.startTLSListener)
        driver.send("EHLO c\r\n")
        #expect(driver.last.lines.contains("STARTTLS"))
        #expect(!driver.last.lines.contains { $0.hasPrefix("AUTH") })
        #expect(driver.send("STARTTLS\r\n") == [220])
        #expect(driver.last.enhancedCode?.description == "2.0.0")
        driver.secure()
        driver.send("EHLO c\r\n")
        #expect(!driver.last.lines.contains("STARTTLS"))
        #expect(driver.last.lines.contains("AUTH PLAIN LOGIN"))
    }

    @Test func loopbackOrPlaintextAllowed_advertisesAuthWithoutTLS() {
        var driver = Driver(SessionSecurity(auth: .required, authWithoutTLS: true))
        driver.send("EHLO c\r\n")
        #expect(driver.last.lines.contains("AUTH PLAIN LOGIN"))
        #expect(!driver.last.lines.contains("STARTTLS"))
    }

    @Test func withoutAuthOrTLS_bothAre502_asBefore() {
        var driver = Driver(SessionSecurity())
        #expect(driver.send("EHLO c\r\nSTARTTLS\r\nAUTH PLAIN \(Self.base64("\0alice\0pw"))\r\n") == [250, 502, 502])
    }

    // MARK: STARTTLS rules

    @Test(arguments: ["MAIL FROM:<evil@attacker.example>\r\n", "RSET\r\n", "EHLO injected\r\nAUTH LOGIN\r\n"])
    func inputPipelinedAfterStartTLS_isDiscarded_andNeverAnswered(_ injected: String) {
        var driver = Driver(Self.startTLSListener)
        driver.send("EHLO c\r\n")
        #expect(driver.send("STARTTLS\r\n" + injected) == [220])
        #expect(driver.startedTLS)
        #expect(driver.discarded == injected.utf8.count)
        // Plaintext arriving before the handshake completes is dropped too.
        #expect(driver.send("RCPT TO:<x@example.net>\r\n").isEmpty)
        driver.secure()
        // The session starts again: no MAIL was accepted, and EHLO is needed first.
        #expect(driver.send("MAIL FROM:<a@example.org>\r\n") == [503])
        #expect(driver.send("EHLO c\r\nRCPT TO:<x@example.net>\r\n") == [250, 503])
    }

    @Test func aSecondStartTLS_is503() {
        var driver = Driver(Self.startTLSListener)
        driver.send("EHLO c\r\nSTARTTLS\r\n")
        driver.secure()
        #expect(driver.send("EHLO c\r\nSTARTTLS\r\n") == [250, 503])
        var implicit = Driver(SessionSecurity(tlsActive: true))
        #expect(implicit.send("EHLO c\r\nSTARTTLS\r\n") == [250, 503])
    }

    @Test func startTLS_resetsAnAuthenticationMadeInPlaintext() {
        var driver = Driver(SessionSecurity(startTLSOffered: true, auth: .required, authWithoutTLS: true))
        #expect(driver.send("EHLO c\r\nAUTH PLAIN \(Self.base64("\0alice\0pw"))\r\n") == [250, 235])
        driver.send("STARTTLS\r\n")
        driver.secure()
        #expect(driver.send("EHLO c\r\nMAIL FROM:<app@legacy.example>\r\n") == [250, 530])
    }

    // MARK: AUTH exchanges

    @Test func plainWithInitialResponse() {
        var driver = Driver(SessionSecurity(tlsActive: true, auth: .required, trustedClient: false))
        #expect(driver.send("EHLO c\r\nAUTH PLAIN \(Self.base64("\0alice\0pw"))\r\n") == [250, 235])
        #expect(driver.last.enhancedCode?.description == "2.7.0")
        #expect(driver.presented.map(\.username) == ["alice"])
        #expect(driver.send("MAIL FROM:<app@legacy.example>\r\n") == [250])
    }

    @Test func plainWithEmptyChallenge_andAuthorizationIdentity() {
        var driver = Driver(SessionSecurity(tlsActive: true, auth: .optional))
        #expect(driver.send("EHLO c\r\nAUTH PLAIN\r\n") == [250, 334])
        #expect(driver.last.lines == [""])
        #expect(driver.send(Self.base64("alice\0alice\0pw") + "\r\n") == [235])
        #expect(driver.presented.first?.authorizationIdentity == "alice")
    }

    @Test func login_withAndWithoutInitialResponse() {
        var driver = Driver(SessionSecurity(tlsActive: true, auth: .optional))
        #expect(driver.send("EHLO c\r\nAUTH LOGIN\r\n") == [250, 334])
        #expect(driver.last.lines == [Self.base64("Username:")])
        #expect(driver.send(Self.base64("alice") + "\r\n") == [334])
        #expect(driver.last.lines == [Self.base64("Password:")])
        #expect(driver.send(Self.base64("pw") + "\r\n") == [235])

        var initial = Driver(SessionSecurity(tlsActive: true, auth: .optional))
        #expect(initial.send("EHLO c\r\nAUTH LOGIN \(Self.base64("alice"))\r\n") == [250, 334])
        #expect(initial.send(Self.base64("pw") + "\r\n") == [235])
        #expect(initial.presented.map(\.mechanism) == [.login])
    }

    @Test func wrongPassword_is535_andTheSessionGoesOn() {
        var driver = Driver(SessionSecurity(tlsActive: true, auth: .optional))
        #expect(driver.send("EHLO c\r\nAUTH PLAIN \(Self.base64("\0alice\0nope"))\r\n") == [250, 535])
        #expect(driver.last.enhancedCode?.description == "5.7.8")
        #expect(driver.send("AUTH PLAIN \(Self.base64("\0alice\0pw"))\r\n") == [235])
        #expect(driver.send("AUTH PLAIN \(Self.base64("\0alice\0pw"))\r\n") == [503])  // already authenticated
    }

    @Test func starCancels_with501_andBadBase64_is501_5_5_2() {
        var driver = Driver(SessionSecurity(tlsActive: true, auth: .optional))
        driver.send("EHLO c\r\nAUTH LOGIN\r\n")
        #expect(driver.send("*\r\n") == [501])
        #expect(driver.last.enhancedCode?.description == "5.0.0")
        driver.send("AUTH LOGIN\r\n")
        #expect(driver.send("not base64!\r\n") == [501])
        #expect(driver.last.enhancedCode?.description == "5.5.2")
        #expect(driver.send("AUTH PLAIN ***\r\n") == [501])
        #expect(driver.presented.isEmpty)
        #expect(driver.send("NOOP\r\n") == [250])  // back to commands
    }

    /// RFC 4616 §2 allows no NUL inside the authorization identity, the user name or the password, and LOGIN's
    /// answers are text too: an answer with one more NUL is malformed (501 5.5.2), never credentials to check.
    @Test(arguments: [
        "AUTH PLAIN \(AuthenticationTests.base64("\0alice\0p\0w"))\r\n",
        "AUTH PLAIN \(AuthenticationTests.base64("\0alice\0pw\0"))\r\n",
        "AUTH PLAIN \(AuthenticationTests.base64("alice\0alice\0pw\0alice"))\r\n",
        "AUTH PLAIN\r\n\(AuthenticationTests.base64("\0alice\0\0pw"))\r\n",
        "AUTH LOGIN \(AuthenticationTests.base64("al\0ice"))\r\n",
        "AUTH LOGIN\r\n\(AuthenticationTests.base64("alice\0"))\r\n",
        "AUTH LOGIN\r\n\(AuthenticationTests.base64("alice"))\r\n\(AuthenticationTests.base64("p\0w"))\r\n",
    ])
    func aNULInsideAnAnswer_is501_andNoCredentialsAreChecked(_ exchange: String) {
        var driver = Driver(SessionSecurity(tlsActive: true, auth: .optional))
        driver.send("EHLO c\r\n")
        #expect(driver.send(exchange).last == 501)
        #expect(driver.last.enhancedCode?.description == "5.5.2")
        #expect(driver.presented.isEmpty)
        #expect(driver.send("AUTH PLAIN \(Self.base64("\0alice\0pw"))\r\n") == [235])  // the session goes on
    }

    @Test func refusalsInRFC4954Order() {
        var plaintext = Driver(SessionSecurity(startTLSOffered: true, auth: .optional))
        #expect(plaintext.send("AUTH PLAIN\r\n") == [503])  // before EHLO
        plaintext.send("EHLO c\r\n")
        #expect(plaintext.send("AUTH PLAIN \(Self.base64("\0alice\0pw"))\r\n") == [538])
        #expect(plaintext.last.enhancedCode?.description == "5.7.11")
        #expect(plaintext.presented.isEmpty, "no credentials are checked over plaintext")

        var secure = Driver(SessionSecurity(tlsActive: true, auth: .optional))
        secure.send("EHLO c\r\n")
        #expect(secure.send("AUTH CRAM-MD5\r\n") == [504])
        #expect(secure.last.enhancedCode?.description == "5.5.4")
        secure.send("MAIL FROM:<a@example.org>\r\n")
        #expect(secure.send("AUTH PLAIN\r\n") == [503])  // during a transaction
    }

    @Test func temporaryFailure_is454_andTooManyFailures_is421AndCloses() {
        var busy = Driver(SessionSecurity(tlsActive: true, auth: .optional))
        busy.check = { _ in .temporaryFailure }
        #expect(busy.send("EHLO c\r\nAUTH PLAIN \(Self.base64("\0alice\0pw"))\r\n") == [250, 454])
        var limited = Driver(SessionSecurity(tlsActive: true, auth: .optional))
        limited.check = { _ in .tooManyFailures }
        #expect(limited.send("EHLO c\r\nAUTH PLAIN \(Self.base64("\0alice\0pw"))\r\n") == [250, 421])
        #expect(limited.last.enhancedCode?.description == "4.7.0")
        #expect(limited.closed)
    }

    @Test func credentialsNeverShowThePassword() {
        let credentials = SASLCredentials(mechanism: .plain, username: "alice", password: Array("s3cret".utf8))
        #expect(!"\(credentials)".contains("s3cret"))
        #expect(!String(reflecting: credentials).contains("s3cret"))
    }

    // MARK: MAIL rules

    @Test func requiredAuth_refusesUnauthenticatedMail_with530_evenFromTrustedNetworks() {
        var driver = Driver(SessionSecurity(tlsActive: true, auth: .required, trustedClient: true))
        #expect(driver.send("EHLO c\r\nMAIL FROM:<app@legacy.example>\r\n") == [250, 530])
        #expect(driver.last.enhancedCode?.description == "5.7.0")
    }

    @Test func optionalAuth_letsTrustedClientsRelay_andAsksTheOthers() {
        var trusted = Driver(SessionSecurity(tlsActive: true, auth: .optional, trustedClient: true))
        #expect(trusted.send("EHLO c\r\nMAIL FROM:<anyone@example.com>\r\n") == [250, 250])
        var stranger = Driver(SessionSecurity(startTLSOffered: true, auth: .optional, trustedClient: false))
        #expect(stranger.send("EHLO c\r\nMAIL FROM:<anyone@example.com>\r\n") == [250, 530])
        #expect(stranger.last.lines.last?.contains("STARTTLS") == true)
    }

    @Test func senderRights_are553_5_7_1_outsideTheUsersPatterns() {
        var driver = Driver(SessionSecurity(tlsActive: true, auth: .required, trustedClient: false))
        driver.send("EHLO c\r\nAUTH PLAIN \(Self.base64("\0alice\0pw"))\r\n")
        #expect(driver.send("MAIL FROM:<boss@example.com>\r\n") == [553])
        #expect(driver.last.enhancedCode?.description == "5.7.1")
        #expect(driver.send("MAIL FROM:<>\r\n") == [553])
        #expect(driver.send("MAIL FROM:<APP@Legacy.Example>\r\n") == [250])
        #expect(driver.send("RSET\r\nMAIL FROM:<anyone@EXAMPLE.org>\r\n") == [250, 250])
    }

    @Test(arguments: [
        ("*", "x@y.example", true), ("*", "", true), ("*@example.org", "a@example.org", true),
        ("*@example.org", "a@sub.example.org", false), ("a@example.org", "A@example.ORG", true),
        ("a@example.org", "b@example.org", false), ("a@example.org", "", false),
    ])
    func senderPatterns(pattern: String, sender: String, allowed: Bool) throws {
        let path: ReversePath =
            sender.isEmpty
            ? .null
            : .mailbox(
                Mailbox(
                    localPart: String(sender.split(separator: "@")[0]),
                    domain: String(sender.split(separator: "@")[1])))
        #expect(try #require(SenderPattern(pattern)).allows(path) == allowed)
    }

    @Test(arguments: ["", "@example.org", "a@", "a b@example.org", "a@exa mple.org", "a@b@c@", "*@", "a,b@c.d"])
    func invalidSenderPatterns(_ text: String) {
        #expect(SenderPattern(text) == nil)
    }

    // MARK: Base64

    @Test(arguments: ["", "f", "fo", "foo", "foob", "fooba", "foobar", "\0alice\0pw"])
    func base64RoundTrips(_ text: String) {
        let encoded = SASLBase64.encode(Array(text.utf8))
        #expect(SASLBase64.decode(Array(encoded.utf8)) == Array(text.utf8))
    }

    @Test(arguments: ["Zm9v\r", "Zm9", "Zm9v====", "Z=9v", "Zm 9v", "Zm9v\n", "*"])
    func strictBase64_refusesTheRest(_ text: String) {
        #expect(SASLBase64.decode(Array(text.utf8)) == nil)
    }
}
