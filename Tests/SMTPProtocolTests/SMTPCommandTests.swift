import Testing

@testable import SMTPProtocol

@Suite struct SMTPCommandTests {
    private func parse(_ line: String) -> Result<SMTPCommand, SMTPCommandError> {
        SMTPCommand.parse(Array(line.utf8))
    }

    private func mailbox(_ local: String, _ domain: String) -> Mailbox {
        Mailbox(localPart: local, domain: domain)
    }

    struct Valid: CustomTestStringConvertible, Sendable {
        var line: String
        var command: SMTPCommand
        var testDescription: String { line }
    }

    static let valid: [Valid] = [
        Valid(line: "EHLO client.example", command: .extendedHello(domain: "client.example")),
        Valid(line: "ehlo [127.0.0.1]", command: .extendedHello(domain: "[127.0.0.1]")),
        Valid(line: "HELO x", command: .hello(domain: "x")),
        Valid(
            line: "MAIL FROM:<a@example.com>",
            command: .mail(from: .mailbox(Mailbox(localPart: "a", domain: "example.com")), parameters: .init())),
        Valid(
            line: "mail FROM:<a@example.com> size=899 SMTPUTF8 BODY=8BITMIME",
            command: .mail(
                from: .mailbox(Mailbox(localPart: "a", domain: "example.com")),
                parameters: ESMTPParameters([("SIZE", "899"), ("SMTPUTF8", nil), ("BODY", "8BITMIME")]))),
        Valid(line: "MAIL FROM:<>", command: .mail(from: .null, parameters: .init())),
        Valid(
            line: "MAIL FROM: <a@example.com>",
            command: .mail(from: .mailbox(Mailbox(localPart: "a", domain: "example.com")), parameters: .init())),
        Valid(
            line: "MAIL FROM:a@example.com",
            command: .mail(from: .mailbox(Mailbox(localPart: "a", domain: "example.com")), parameters: .init())),
        Valid(
            line: "MAIL FROM:<\"john doe\"@example.com>",
            command: .mail(
                from: .mailbox(Mailbox(localPart: "\"john doe\"", domain: "example.com")), parameters: .init())),
        Valid(
            line: "MAIL FROM:<\"a>b@c\"@example.com>",
            command: .mail(
                from: .mailbox(Mailbox(localPart: "\"a>b@c\"", domain: "example.com")), parameters: .init())),
        Valid(
            line: "RCPT TO:<@relay1.example,@relay2.example:bob@example.net>",
            command: .recipient(to: .mailbox(Mailbox(localPart: "bob", domain: "example.net")), parameters: .init())),
        Valid(line: "RCPT TO:<Postmaster>", command: .recipient(to: .postmaster, parameters: .init())),
        Valid(
            line: "rcpt to:<b@[192.0.2.1]>",
            command: .recipient(to: .mailbox(Mailbox(localPart: "b", domain: "[192.0.2.1]")), parameters: .init())),
        Valid(
            line: "RCPT TO:<ä@exämple.org>",
            command: .recipient(to: .mailbox(Mailbox(localPart: "ä", domain: "exämple.org")), parameters: .init())),
        Valid(line: "DATA", command: .data),
        Valid(line: "BDAT 415 LAST", command: .binaryData(size: 415, last: true)),
        Valid(line: "bdat 0 last", command: .binaryData(size: 0, last: true)),
        Valid(line: "BDAT 10", command: .binaryData(size: 10, last: false)),
        Valid(line: "RSET", command: .reset),
        Valid(line: "NOOP anything goes", command: .noop),
        Valid(line: "QUIT", command: .quit),
        Valid(line: "VRFY bob", command: .verify("bob")),
        Valid(line: "EXPN list", command: .expand("list")),
        Valid(line: "HELP", command: .help(nil)),
        Valid(line: "STARTTLS", command: .startTLS),
        Valid(line: "AUTH PLAIN AGZvbwBiYXI=", command: .auth(mechanism: "PLAIN", initialResponse: "AGZvbwBiYXI=")),
        Valid(line: "auth login", command: .auth(mechanism: "LOGIN", initialResponse: nil)),
    ]

    @Test(arguments: valid)
    func parsesValidCommand(_ valid: Valid) throws {
        #expect(try parse(valid.line).get() == valid.command)
    }

    struct Invalid: CustomTestStringConvertible, Sendable {
        var line: String
        var code: Int
        var enhanced: String
        var losesFraming = false
        var testDescription: String { line }
    }

    static let invalid: [Invalid] = [
        Invalid(line: "FROB", code: 500, enhanced: "5.5.2"),
        Invalid(line: "", code: 500, enhanced: "5.5.2"),
        Invalid(line: "EHLO", code: 501, enhanced: "5.5.2"),
        Invalid(line: "MAIL TO:<a@b.c>", code: 501, enhanced: "5.5.2"),
        Invalid(line: "MAIL FROM:<a@b.c", code: 501, enhanced: "5.1.7"),
        Invalid(line: "MAIL FROM:<nodomain>", code: 501, enhanced: "5.1.7"),
        Invalid(line: "MAIL FROM:<postmaster>", code: 501, enhanced: "5.1.7"),
        Invalid(line: "MAIL FROM:<a b@c.d>", code: 501, enhanced: "5.1.7"),
        Invalid(line: "MAIL FROM:<a@bad_domain..x>", code: 501, enhanced: "5.1.7"),
        Invalid(line: "MAIL FROM:<a@b.c>x", code: 501, enhanced: "5.1.7"),
        Invalid(line: "MAIL FROM:<a@b.c> SIZE", code: 250, enhanced: ""),  // syntax OK; value checked by the machine
        Invalid(line: "MAIL FROM:<a@b.c> SIZE=1 SIZE=2", code: 501, enhanced: "5.5.4"),
        Invalid(line: "MAIL FROM:<a@b.c> =x", code: 501, enhanced: "5.5.4"),
        Invalid(line: "RCPT TO:<>", code: 501, enhanced: "5.1.3"),
        Invalid(line: "RCPT TO:<\"unterminated@example.com>", code: 501, enhanced: "5.1.3"),
        Invalid(line: "RCPT TO:<" + String(repeating: "a", count: 300) + "@example.com>", code: 501, enhanced: "5.1.3"),
        Invalid(line: "DATA now", code: 501, enhanced: "5.5.2"),
        Invalid(line: "QUIT now", code: 501, enhanced: "5.5.2"),
        Invalid(line: "BDAT", code: 501, enhanced: "5.5.4", losesFraming: true),
        Invalid(line: "BDAT -1", code: 501, enhanced: "5.5.4", losesFraming: true),
        Invalid(line: "BDAT 12x", code: 501, enhanced: "5.5.4", losesFraming: true),
        Invalid(line: "BDAT 99999999999", code: 501, enhanced: "5.5.4", losesFraming: true),
        Invalid(line: "BDAT 10 FIRST", code: 501, enhanced: "5.5.4", losesFraming: true),
        Invalid(line: "NOOP \u{1}", code: 501, enhanced: "5.5.2"),
    ]

    @Test(arguments: invalid)
    func rejectsInvalidCommand(_ invalid: Invalid) {
        switch parse(invalid.line) {
        case .success(let command):
            #expect(invalid.code == 250, "parsed as \(command)")
        case .failure(let error):
            #expect(error.reply.code == invalid.code)
            #expect(error.reply.enhancedCode?.description == invalid.enhanced)
            #expect(error.losesFraming == invalid.losesFraming)
        }
    }

    @Test func rejectsInvalidUTF8() {
        let line: [UInt8] = Array("MAIL FROM:<".utf8) + [0xFF, 0xFE] + Array("@x.y>".utf8)
        guard case .failure(let error) = SMTPCommand.parse(line) else {
            Issue.record("invalid UTF-8 was accepted")
            return
        }
        #expect(error.reply.code == 501)
    }

    @Test func parameterLookupIsCaseInsensitive() throws {
        guard case .mail(_, let parameters) = try parse("MAIL FROM:<a@b.c> body=8bitmime").get() else {
            Issue.record("not a MAIL command")
            return
        }
        #expect(parameters["BODY"] == .some("8bitmime"))
        #expect(parameters["body"] == .some("8bitmime"))
        #expect(parameters["SIZE"] == nil)
    }

    @Test func replyWireFormat_multiLineAndEnhancedCodes() {
        let reply = SMTPReply(250, nil, ["host greets you", "PIPELINING", "SIZE 10"])
        #expect(
            String(decoding: reply.wireBytes, as: UTF8.self)
                == "250-host greets you\r\n250-PIPELINING\r\n250 SIZE 10\r\n")
        #expect(String(decoding: SMTPReply.ok.wireBytes, as: UTF8.self) == "250 2.0.0 OK\r\n")
        #expect(String(decoding: SMTPReply.startMailInput.wireBytes, as: UTF8.self).hasPrefix("354 Start"))
    }

    @Test func replyText_isBoundedAndASCII() {
        // Echoed attachment names or ACS messages must not make an over-long reply line.
        let reply = SMTPReply(554, EnhancedStatusCode(5, 6, 0), "attachment " + String(repeating: "é", count: 10_000))
        let line = String(decoding: reply.wireBytes, as: UTF8.self)
        #expect(line.utf8.count <= 512)
        #expect(line.hasSuffix("...\r\n"))
        #expect(line.unicodeScalars.allSatisfy { $0.isASCII })
    }

    @Test func replyText_cannotInjectLines() {
        let reply = SMTPReply.localError("bad\r\n250 fake")
        #expect(!String(decoding: reply.wireBytes, as: UTF8.self).dropLast(2).contains("\r\n"))
    }
}
