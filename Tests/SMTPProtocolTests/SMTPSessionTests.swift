import Testing

@testable import SMTPProtocol

/// Whole sessions as wire transcripts, fed whole, byte by byte and in irregular chunks.
@Suite struct SMTPSessionTests {
    static let hello = "EHLO client.example\r\n"
    static let envelope = "MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.net>\r\n"

    // MARK: Basic transactions

    @Test(arguments: SessionDriver.Chunking.allCases)
    func completeTransaction_submitsEnvelopeAndMessage(_ chunking: SessionDriver.Chunking) {
        var driver = SessionDriver()
        let result = driver.run(
            Self.hello + Self.envelope + "DATA\r\nSubject: hi\r\n\r\n..dot\r\n.\r\nQUIT\r\n", chunking: chunking)
        #expect(result.codes == [250, 250, 250, 354, 250, 221])
        #expect(result.closed)
        #expect(result.messages == ["Subject: hi\r\n\r\n.dot\r\n"])
        let envelope = result.submissions.first?.envelope
        #expect(envelope?.reversePath == .mailbox(Mailbox(localPart: "a", domain: "example.com")))
        #expect(envelope?.forwardPaths == [.mailbox(Mailbox(localPart: "b", domain: "example.net"))])
    }

    @Test func greeting_is220() {
        let session = SMTPSession(hostname: "gw.test")
        #expect(session.greeting.replies.map(\.code) == [220])
    }

    @Test func ehloAdvertisesTheExtensions() {
        var limits = SMTPLimits()
        limits.maxMessageSize = 12345
        var driver = SessionDriver(limits: limits)
        let result = driver.run(Self.hello)
        let lines = result.replies.first?.lines ?? []
        #expect(
            Array(lines.dropFirst()) == [
                "PIPELINING", "SIZE 12345", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES",
                "CHUNKING", "HELP",
            ])
    }

    @Test func lowerCaseVerbsAndParameters_smtplibStyle() {
        var driver = SessionDriver()
        let result = driver.run(
            "ehlo client.example\r\nmail FROM:<a@example.com> size=10 SMTPUTF8 BODY=8BITMIME\r\nrcpt TO:<b@x.org>\r\n"
                + "data\r\nx\r\n.\r\n")
        #expect(result.codes == [250, 250, 250, 354, 250])
        #expect(result.submissions.first?.envelope.mailParameters["SIZE"] == .some("10"))
    }

    @Test func nullSender_isAccepted() {
        var driver = SessionDriver()
        let result = driver.run(Self.hello + "MAIL FROM:<>\r\nRCPT TO:<b@x.org>\r\nDATA\r\nx\r\n.\r\n")
        #expect(result.codes == [250, 250, 250, 354, 250])
        #expect(result.submissions.first?.envelope.reversePath == .null)
    }

    @Test func submitterReply_isWhatTheClientGets() {
        var driver = SessionDriver(submissionReply: { _ in SMTPReply(451, EnhancedStatusCode(4, 4, 1), "later") })
        let result = driver.run(Self.hello + Self.envelope + "DATA\r\nx\r\n.\r\nNOOP\r\n")
        #expect(result.codes == [250, 250, 250, 354, 451, 250])
    }

    @Test func severalMessagesInOneSession() {
        var driver = SessionDriver()
        let one = Self.envelope + "DATA\r\none\r\n.\r\n"
        let two = Self.envelope + "DATA\r\ntwo\r\n.\r\n"
        let result = driver.run(Self.hello + one + two + "QUIT\r\n", chunking: .irregular)
        #expect(result.messages == ["one\r\n", "two\r\n"])
        #expect(result.codes == [250, 250, 250, 354, 250, 250, 250, 354, 250, 221])
    }

    // MARK: Sequencing (RFC 5321 §4.1.4)

    @Test func mailBeforeHello_is503() {
        var driver = SessionDriver()
        let result = driver.run("MAIL FROM:<a@b.c>\r\n")
        #expect(result.codes == [503])
        #expect(result.enhancedCodes == ["5.5.1"])
    }

    @Test func dataBeforeRcpt_is503() {
        var driver = SessionDriver()
        let result = driver.run(Self.hello + "MAIL FROM:<a@b.c>\r\nDATA\r\n")
        #expect(result.codes == [250, 250, 503])
        #expect(result.enhancedCodes.last == "5.5.1")
    }

    @Test func rcptBeforeMail_andNestedMail_are503() {
        var driver = SessionDriver()
        let result = driver.run(Self.hello + "RCPT TO:<b@x.org>\r\nMAIL FROM:<a@b.c>\r\nMAIL FROM:<a@b.c>\r\n")
        #expect(result.codes == [250, 503, 250, 503])
    }

    @Test func rsetAndNewEhlo_abortTheTransaction() {
        var driver = SessionDriver()
        // DATA ends a pipelined group (RFC 2920 §3.1): each group is sent once the previous one is answered.
        #expect(driver.run(Self.hello + Self.envelope + "RSET\r\nDATA\r\n").codes == [250, 250, 250, 250, 503])
        #expect(driver.run(Self.envelope + "EHLO again\r\nDATA\r\n").codes == [250, 250, 250, 503])
    }

    @Test func vrfyExpnHelpNoop() {
        var driver = SessionDriver()
        let result = driver.run("VRFY bob\r\nEXPN list\r\nHELP\r\nNOOP\r\n")
        #expect(result.codes == [252, 502, 214, 250])
    }

    @Test func startTLSAndAuth_notOffered_get502() {
        var driver = SessionDriver()
        let result = driver.run(Self.hello + "STARTTLS\r\nAUTH PLAIN x\r\n")
        #expect(result.codes == [250, 502, 502])
    }

    @Test func parametersAfterHelo_areRefused() {
        var driver = SessionDriver()
        let result = driver.run("HELO c\r\nMAIL FROM:<a@b.c> SIZE=10\r\n")
        #expect(result.codes == [250, 555])
    }

    @Test func unknownMailParameter_is555_andRcptParametersToo() {
        var driver = SessionDriver()
        let result = driver.run(
            Self.hello + "MAIL FROM:<a@b.c> RET=FULL\r\nMAIL FROM:<a@b.c> BODY=BINARYMIME\r\n"
                + "MAIL FROM:<a@b.c>\r\nRCPT TO:<b@x.org> NOTIFY=NEVER\r\n")
        #expect(result.codes == [250, 555, 555, 250, 555])
        #expect(result.enhancedCodes[1] == "5.5.4")
    }

    @Test func badBodyOrSizeValue_is501() {
        var driver = SessionDriver()
        let result = driver.run(Self.hello + "MAIL FROM:<a@b.c> BODY=9BIT\r\nMAIL FROM:<a@b.c> SIZE=lots\r\n")
        #expect(result.codes == [250, 501, 501])
    }

    @Test func internationalAddress_requiresSMTPUTF8() {
        var driver = SessionDriver()
        let result = driver.run(
            Self.hello + "MAIL FROM:<ä@example.org>\r\nMAIL FROM:<a@b.c>\r\nRCPT TO:<ö@example.org>\r\nRSET\r\n"
                + "MAIL FROM:<ä@example.org> SMTPUTF8\r\nRCPT TO:<ö@example.org>\r\n")
        #expect(result.codes == [250, 553, 250, 553, 250, 250, 250])
    }

    // MARK: Postmaster (RFC 5321 §4.5.1: RCPT TO:<postmaster> MUST be accepted)

    /// The outbox has no trouble keeping a message for `postmaster`: it is accepted as written, with or
    /// without the gateway's own domain, and travels in the envelope.
    @Test func postmaster_withoutAnAddress_isAcceptedForTheOutbox() {
        var driver = SessionDriver()
        let result = driver.run(
            Self.hello + "MAIL FROM:<a@b.c>\r\nRCPT TO:<postmaster>\r\nRCPT TO:<PostMaster@Gateway.Test>\r\n"
                + "DATA\r\nx\r\n.\r\n")
        #expect(result.codes == [250, 250, 250, 250, 354, 250])
        #expect(
            result.submissions.first?.envelope.forwardPaths
                == [.postmaster, .mailbox(Mailbox(localPart: "PostMaster", domain: "Gateway.Test"))])
    }

    /// With ACS and no postmaster address there is nowhere to send it: refused for that recipient only (ACS
    /// would refuse the whole message), and not counted as a protocol error.
    @Test func postmaster_withoutAnAddress_isRefusedForACS_andNotAnError() {
        var limits = SMTPLimits()
        limits.maxErrors = 0
        limits.plainRecipientsOnly = true
        var driver = SessionDriver(limits: limits)
        let result = driver.run(
            Self.hello + "MAIL FROM:<a@b.c>\r\nRCPT TO:<postmaster>\r\nRCPT TO:<postmaster@gateway.test>\r\n"
                + "RCPT TO:<d@e.f>\r\n")
        #expect(result.codes == [250, 250, 550, 550, 250])
        #expect(result.enhancedCodes[2] == "5.1.1")
        #expect(result.enhancedCodes[3] == "5.1.1")
        #expect(!result.closed)
    }

    /// `postmaster@<the gateway's name>` is the same mailbox as `<postmaster>` (RFC 5321 §4.5.1).
    @Test func postmasterAtTheGatewaysDomain_goesToTheConfiguredAddress() {
        var limits = SMTPLimits()
        limits.postmaster = Mailbox(localPart: "hostmaster", domain: "example.org")
        limits.plainRecipientsOnly = true
        var driver = SessionDriver(limits: limits)
        let result = driver.run(
            Self.hello + "MAIL FROM:<a@b.c>\r\nRCPT TO:<POSTMASTER@gateway.test>\r\nDATA\r\nx\r\n.\r\n")
        #expect(result.codes == [250, 250, 250, 354, 250])
        #expect(
            result.submissions.first?.envelope.forwardPaths
                == [.mailbox(Mailbox(localPart: "hostmaster", domain: "example.org"))])
    }

    @Test func postmaster_goesToTheConfiguredAddress() {
        var limits = SMTPLimits()
        limits.postmaster = Mailbox(localPart: "hostmaster", domain: "example.org")
        var driver = SessionDriver(limits: limits)
        let result = driver.run(Self.hello + "MAIL FROM:<a@b.c>\r\nRCPT TO:<PostMaster>\r\nDATA\r\nx\r\n.\r\n")
        #expect(
            result.submissions.first?.envelope.forwardPaths == [
                .mailbox(Mailbox(localPart: "hostmaster", domain: "example.org"))
            ])
    }

    // MARK: Local recipients

    static let aliases = LocalRecipients(
        aliases: ["root": Mailbox(localPart: "ops", domain: "example.com")], localDomains: ["web1.example.com"])

    @Test func localRecipients_goToTheirAliases() {
        var limits = SMTPLimits()
        limits.plainRecipientsOnly = true
        limits.localRecipients = Self.aliases
        var driver = SessionDriver(limits: limits)
        let result = driver.run(
            Self.hello + "MAIL FROM:<a@b.c>\r\nRCPT TO:<root>\r\nRCPT TO:<ROOT@localhost>\r\n"
                + "RCPT TO:<root@web1.example.com>\r\nRCPT TO:<root@elsewhere.example>\r\nDATA\r\nx\r\n.\r\n")
        #expect(result.codes == [250, 250, 250, 250, 250, 250, 354, 250])
        let ops = ForwardPath.mailbox(Mailbox(localPart: "ops", domain: "example.com"))
        #expect(
            result.submissions.first?.envelope.forwardPaths
                == [ops, ops, ops, .mailbox(Mailbox(localPart: "root", domain: "elsewhere.example"))])
    }

    @Test func aLocalRecipientWithoutAnAlias_isRefusedWithDirections_andIsNotAnError() {
        var limits = SMTPLimits()
        limits.plainRecipientsOnly = true
        limits.maxErrors = 0
        limits.localRecipients = Self.aliases
        var driver = SessionDriver(limits: limits)
        let result = driver.run(
            Self.hello + "MAIL FROM:<a@b.c>\r\nRCPT TO:<www-data>\r\nRCPT TO:<bob@localhost>\r\nRCPT TO:<root>\r\n")
        #expect(result.codes == [250, 250, 550, 550, 250])
        #expect(result.enhancedCodes[2] == "5.1.1")
        #expect(
            result.texts[2].contains("<www-data>") && result.texts[2].contains("\"www-data: address\" under aliases:"))
        #expect(!result.closed)
    }

    @Test func theCatchAll_takesEveryOtherLocalName_andPostmaster() {
        var limits = SMTPLimits()
        limits.plainRecipientsOnly = true
        limits.localRecipients = LocalRecipients(catchAll: Mailbox(localPart: "admin", domain: "example.com"))
        var driver = SessionDriver(limits: limits)
        let result = driver.run(
            Self.hello + "MAIL FROM:<a@b.c>\r\nRCPT TO:<nobody>\r\nRCPT TO:<postmaster>\r\nDATA\r\nx\r\n.\r\n")
        #expect(result.codes == [250, 250, 250, 250, 354, 250])
        let admin = ForwardPath.mailbox(Mailbox(localPart: "admin", domain: "example.com"))
        #expect(result.submissions.first?.envelope.forwardPaths == [admin, admin])
    }

    @Test func withoutACS_anUnaliasedLocalhostRecipientIsKept_butABareNameIsNot() {
        var driver = SessionDriver()
        let result = driver.run(Self.hello + "MAIL FROM:<a@b.c>\r\nRCPT TO:<bob@localhost>\r\nRCPT TO:<bob>\r\n")
        #expect(result.codes == [250, 250, 250, 550])
    }

    @Test func aBareNameIsNoSender() {
        var driver = SessionDriver()
        let result = driver.run(Self.hello + "MAIL FROM:<root>\r\n")
        #expect(result.codes == [250, 501])
    }

    // MARK: Recipients ACS cannot take

    @Test func notPlainRecipients_areRefusedOneByOne_andTheOthersDelivered() {
        var limits = SMTPLimits()
        limits.plainRecipientsOnly = true
        limits.maxErrors = 0
        var driver = SessionDriver(limits: limits)
        let local65 = String(repeating: "a", count: 65)
        let result = driver.run(
            Self.hello + "MAIL FROM:<a@b.c>\r\nRCPT TO:<\"john doe\"@example.org>\r\nRCPT TO:<a@[192.0.2.1]>\r\n"
                + "RCPT TO:<root@intranet>\r\nRCPT TO:<\(local65)@example.org>\r\nRCPT TO:<ok@example.org>\r\n"
                + "DATA\r\nx\r\n.\r\n")
        #expect(result.codes == [250, 250, 553, 553, 553, 553, 250, 354, 250])
        #expect(result.enhancedCodes[2...5].allSatisfy { $0 == "5.1.3" })
        #expect(result.texts[2].contains("a quoted local part"))
        #expect(result.texts[3].contains("an address literal"))
        #expect(result.texts[4].contains("a domain without a dot"))
        #expect(result.texts[5].contains("a local part longer than 64 octets"))
        #expect(!result.closed, "refusing a recipient is not a protocol error")
        #expect(
            result.submissions.first?.envelope.forwardPaths == [
                .mailbox(Mailbox(localPart: "ok", domain: "example.org"))
            ])
    }

    @Test func notPlainRecipients_areAcceptedWhenNotRestricted() {
        var driver = SessionDriver()
        let result = driver.run(
            Self.hello + "MAIL FROM:<a@b.c>\r\nRCPT TO:<\"john doe\"@example.org>\r\nRCPT TO:<a@[192.0.2.1]>\r\n")
        #expect(result.codes == [250, 250, 250, 250])
    }

    // MARK: Limits

    @Test func sizeParameterOverLimit_is552AtMail() {
        var limits = SMTPLimits()
        limits.maxMessageSize = 100
        var driver = SessionDriver(limits: limits)
        let result = driver.run(Self.hello + "MAIL FROM:<a@b.c> SIZE=101\r\nMAIL FROM:<a@b.c> SIZE=100\r\n")
        #expect(result.codes == [250, 552, 250])
        #expect(result.enhancedCodes[1] == "5.3.4")
    }

    @Test(arguments: SessionDriver.Chunking.allCases)
    func messageOneOctetOverLimit_is552_andTheSessionGoesOn(_ chunking: SessionDriver.Chunking) {
        var limits = SMTPLimits()
        limits.maxMessageSize = 20
        var driver = SessionDriver(limits: limits)
        let body = String(repeating: "x", count: 19) + "\r\n"  // 21 octets
        let result = driver.run(
            Self.hello + Self.envelope + "DATA\r\n" + body + ".\r\n" + Self.envelope + "DATA\r\nok\r\n.\r\n",
            chunking: chunking)
        #expect(result.codes == [250, 250, 250, 354, 552, 250, 250, 354, 250])
        #expect(result.messages == ["ok\r\n"])
    }

    @Test func recipientLimit_extraRcptsGet452_andTheRestIsKept() {
        var limits = SMTPLimits()
        limits.maxRecipients = 3
        var driver = SessionDriver(limits: limits)
        let rcpts = (1...4).map { "RCPT TO:<r\($0)@x.org>\r\n" }.joined()
        let result = driver.run(Self.hello + "MAIL FROM:<a@b.c>\r\n" + rcpts + "DATA\r\nx\r\n.\r\n")
        #expect(result.codes == [250, 250, 250, 250, 250, 452, 354, 250])
        #expect(result.enhancedCodes[5] == "4.5.3")
        #expect(result.submissions.first?.envelope.forwardPaths.count == 3)
    }

    @Test func defaultRecipientLimit_is50() {
        var driver = SessionDriver()
        let rcpts = (1...51).map { "RCPT TO:<r\($0)@x.org>\r\n" }.joined()
        let result = driver.run(Self.hello + "MAIL FROM:<a@b.c>\r\n" + rcpts)
        #expect(result.codes.last == 452)
        #expect(result.codes.filter { $0 == 250 }.count == 52)
    }

    @Test func commandLineOf600Octets_isAccepted() {
        var driver = SessionDriver()
        let result = driver.run("NOOP " + String(repeating: "x", count: 593) + "\r\n")
        #expect(result.codes == [250])
    }

    @Test(arguments: [SessionDriver.Chunking.whole, .irregular])
    func commandLineOver100KB_is500AndClosesWithoutBufferingIt(_ chunking: SessionDriver.Chunking) {
        var driver = SessionDriver()
        let result = driver.run("NOOP " + String(repeating: "x", count: 100_000) + "\r\nNOOP\r\n", chunking: chunking)
        #expect(result.codes == [500])
        #expect(result.enhancedCodes == ["5.5.2"])
        #expect(result.closed)
        #expect(driver.session.bufferedOctets == 0)
    }

    @Test func commandLineExactlyAtTheLimit_passes_oneMoreFails() {
        var limits = SMTPLimits()
        limits.maxCommandLineLength = 512
        var ok = SessionDriver(limits: limits)
        #expect(ok.run("NOOP " + String(repeating: "x", count: 505) + "\r\n").codes == [250])  // 512 with CRLF
        var tooLong = SessionDriver(limits: limits)
        #expect(tooLong.run("NOOP " + String(repeating: "x", count: 506) + "\r\n").codes == [500])
    }

    @Test func elevenBadCommands_tenGet500_thenThe421Closes() {
        var driver = SessionDriver()
        let result = driver.run(String(repeating: "FROB\r\n", count: 11) + "NOOP\r\n")
        #expect(result.codes == Array(repeating: 500, count: 10) + [421])
        #expect(result.enhancedCodes.last == "4.7.0")
        #expect(result.closed)
    }

    @Test func recipientLimitReplies_doNotCountAsErrors() {
        var limits = SMTPLimits()
        limits.maxRecipients = 1
        limits.maxErrors = 2
        var driver = SessionDriver(limits: limits)
        let result = driver.run(
            Self.hello + "MAIL FROM:<a@b.c>\r\n" + String(repeating: "RCPT TO:<r@x.org>\r\n", count: 5))
        #expect(result.codes == [250, 250, 250, 452, 452, 452, 452])
        #expect(!result.closed)
    }

    // MARK: Bare LF policy

    @Test func bareLineFeedCommands_normalizeAcceptsThem() {
        var driver = SessionDriver()
        let result = driver.run("EHLO c\nMAIL FROM:<a@b.c>\nRCPT TO:<b@x.org>\nDATA\nx\r\n.\r\n")
        #expect(result.codes == [250, 250, 250, 354, 250])
    }

    @Test func bareLineFeedCommand_rejectPolicyClosesWith500() {
        var limits = SMTPLimits()
        limits.bareLineFeedPolicy = .reject
        var driver = SessionDriver(limits: limits)
        let result = driver.run("EHLO c\nNOOP\r\n")
        #expect(result.codes == [500])
        #expect(result.closed)
    }

    @Test func bareLineFeedInData_rejectPolicyAnswers550AfterTheRealEnd() {
        var limits = SMTPLimits()
        limits.bareLineFeedPolicy = .reject
        var driver = SessionDriver(limits: limits)
        let result = driver.run(Self.hello + Self.envelope + "DATA\r\na\n.\nb\r\n.\r\nNOOP\r\n")
        #expect(result.codes == [250, 250, 250, 354, 550, 250])
        #expect(result.submissions.isEmpty)
    }

    // MARK: Pipelining (RFC 2920)

    @Test func pipelinedGroup_isAnsweredInOrderInOneWrite() {
        var driver = SessionDriver()
        let result = driver.run(Self.hello + "MAIL FROM:<a@b.c>\r\nRCPT TO:<b@x.org>\r\nRCPT TO:<c@x.org>\r\nDATA\r\n")
        #expect(result.codes == [250, 250, 250, 250, 354])
        #expect(result.writes.count == 1)
    }

    @Test(arguments: SessionDriver.Chunking.allCases)
    func wholeSessionInOneWrite_evenContentBefore354_isServed(_ chunking: SessionDriver.Chunking) {
        var driver = SessionDriver()
        let result = driver.run(
            Self.hello + Self.envelope + "DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n", chunking: chunking)
        #expect(result.codes == [250, 250, 250, 354, 250, 221])
        #expect(result.messages == ["Subject: x\r\n\r\nbody\r\n"])
    }

    @Test func lateSubmissionAnswer_afterAnAbort_isIgnored() {
        // Shutdown aborts a session whose message is still with the submitter.
        var session = SMTPSession(hostname: "gw.test")
        let output = session.receive(Array((Self.hello + Self.envelope + "DATA\r\nx\r\n.\r\n").utf8))
        #expect(output.submission != nil)
        #expect(session.abort(.shuttingDown).replies.map(\.code) == [421])
        let late = session.submissionCompleted(.messageAccepted("OK id"))
        #expect(late.replies.isEmpty)
        #expect(!late.close)
    }

    @Test func inputAfterTheMessage_waitsForTheSubmission() {
        var session = SMTPSession(hostname: "gw.test")
        let output = session.receive(Array((Self.hello + Self.envelope + "DATA\r\nx\r\n.\r\nNOOP\r\nQUIT\r\n").utf8))
        #expect(output.replies.map(\.code) == [250, 250, 250, 354])
        #expect(output.submission != nil)
        #expect(session.phase == .awaitingSubmission)
        #expect(session.receive(Array("NOOP\r\n".utf8)).replies.isEmpty)
        let after = session.submissionCompleted(.messageAccepted("OK id"))
        #expect(after.replies.map(\.code) == [250, 250, 221])
        // The NOOP sent during the submission is never answered after QUIT: the session is closed.
        #expect(after.close)
    }
}
