import Sendmail
import Testing

@Suite struct SendmailArgumentsTests {
    @Test func phpDefault_isRecipientsFromHeaders_andNoDotEnd() throws {
        let parsed = try SendmailArguments.parse(["-t", "-i"])
        #expect(parsed.recipientsFromHeaders && parsed.ignoreDots && parsed.mode == .submit)
        #expect(parsed.recipients.isEmpty)
    }

    @Test func groupedFlags_andAttachedOrSeparateValues_readAsGetoptReadsThem() throws {
        let grouped = try SendmailArguments.parse(["-tif", "cron@example.com", "-Fcron daemon", "root"])
        #expect(grouped.recipientsFromHeaders && grouped.ignoreDots)
        #expect(grouped.sender == "cron@example.com")
        #expect(grouped.fullName == "cron daemon")
        #expect(grouped.recipients == ["root"])
        let attached = try SendmailArguments.parse(["-rbounce@example.com", "-oi", "--", "-weird@example.com"])
        #expect(attached.sender == "bounce@example.com" && attached.ignoreDots)
        #expect(attached.recipients == ["-weird@example.com"], "after --, a dash starts a recipient")
    }

    @Test func ignoredFlags_areAccepted_andChangeNothing() throws {
        let parsed = try SendmailArguments.parse([
            "-odb", "-oem", "-oQ/tmp", "-B", "8BITMIME", "-N", "never", "-Rhdrs",
            "-U", "-G", "a@example.com",
        ])
        var expected = SendmailArguments()
        expected.recipients = ["a@example.com"]
        #expect(parsed == expected)
    }

    @Test func modes() throws {
        #expect(try SendmailArguments.parse(["-bs"]).mode == .smtp)
        #expect(try SendmailArguments.parse(["-bp"]).mode == .listQueue)
        #expect(try SendmailArguments.parse(["-bm", "x@example.com"]).mode == .submit)
        #expect(try SendmailArguments.parse([], invokedAs: "mailq").mode == .listQueue)
        #expect(try SendmailArguments.parse([], invokedAs: "newaliases").mode == .rebuildAliases)
        #expect(try SendmailArguments.parse(["-v", "x@example.com"]).verbose)
    }

    @Test func unknownFlags_andMissingValues_areUsageErrors() {
        #expect(throws: SendmailArguments.UsageError(description: "unknown option -k")) {
            try SendmailArguments.parse(["-k", "root"])
        }
        #expect(throws: SendmailArguments.UsageError(description: "option -f needs a value")) {
            try SendmailArguments.parse(["root", "-f"])
        }
        #expect(throws: SendmailArguments.UsageError.self) { try SendmailArguments.parse(["-bd"]) }
        #expect(throws: SendmailArguments.UsageError.self) { try SendmailArguments.parse(["-q"]) }
    }

    @Test func exitStatuses_followTheReplysMeaning() {
        #expect(SysExit.forRefusal(code: 451, enhancedCode: "4.3.0") == .temporaryFailure)
        #expect(SysExit.forRefusal(code: 421, enhancedCode: nil) == .temporaryFailure)
        #expect(SysExit.forRefusal(code: 550, enhancedCode: "5.1.1") == .noUser)
        #expect(SysExit.forRefusal(code: 553, enhancedCode: "5.1.3") == .noUser)
        #expect(SysExit.forRefusal(code: 552, enhancedCode: "5.3.4") == .dataError)
        #expect(SysExit.forRefusal(code: 554, enhancedCode: "5.6.0") == .dataError)
        #expect(SysExit.forRefusal(code: 550, enhancedCode: "5.7.1") == .unavailable)
        #expect(SysExit.forRefusal(code: 550, enhancedCode: "5.1.7") == .unavailable)
        #expect(SysExit.forRefusal(code: 554, enhancedCode: nil) == .dataError)
    }
}
