import SMTPProtocol
import Testing

@Suite struct LocalRecipientsTests {
    let local = LocalRecipients(
        aliases: ["Root": Mailbox(localPart: "ops", domain: "example.com")],
        catchAll: nil, localDomains: ["Web1.Example.com"])

    @Test func localMeansNoDomain_localhost_orOneOfTheHostsNames_inAnyCase() {
        #expect(local.isLocal(domain: ""))
        #expect(local.isLocal(domain: "LOCALHOST"))
        #expect(local.isLocal(domain: "web1.example.COM"))
        #expect(!local.isLocal(domain: "example.com"))
    }

    @Test func namesResolveCaseInsensitively_andUnknownNamesAreUnknownWithoutACatchAll() {
        #expect(
            local.resolve(Mailbox(localPart: "ROOT", domain: "localhost"))
                == .alias(Mailbox(localPart: "ops", domain: "example.com")))
        #expect(local.resolve(Mailbox(localPart: "bob", domain: "")) == .unknown)
        #expect(local.resolve(Mailbox(localPart: "root", domain: "example.org")) == .notLocal)
        var withCatchAll = local
        withCatchAll.catchAll = Mailbox(localPart: "admin", domain: "example.com")
        #expect(
            withCatchAll.resolve(Mailbox(localPart: "bob", domain: ""))
                == .alias(Mailbox(localPart: "admin", domain: "example.com")))
    }

    @Test func headerAddresses_mapOnlyWhenLocalAndAliased() {
        #expect(local.aliasAddress(for: "root") == "ops@example.com")
        #expect(local.aliasAddress(for: "root@web1.example.com") == "ops@example.com")
        #expect(local.aliasAddress(for: "root@example.org") == nil)
        #expect(local.aliasAddress(for: "bob@localhost") == nil)
        #expect(local.aliasAddress(for: "@localhost") == nil)
    }

    @Test func aBareLocalName_parsesOnlyAsARecipient() {
        guard case .success(.recipient(.mailbox(let mailbox), _)) = SMTPCommand.parse(Array("RCPT TO:<www-data>".utf8))
        else {
            Issue.record("RCPT TO:<www-data> did not parse")
            return
        }
        #expect(mailbox == Mailbox(localPart: "www-data", domain: ""))
        for text in ["RCPT TO:<-x>", "RCPT TO:<a b>", "RCPT TO:<jörg>", "MAIL FROM:<root>"] {
            guard case .failure = SMTPCommand.parse(Array(text.utf8)) else {
                Issue.record("\(text) parsed: \(SMTPCommand.parse(Array(text.utf8)))")
                continue
            }
        }
    }
}
