import ACSClient
import Foundation
import SMTPProtocol
import SMTPServer
import Testing

@testable import Gateway

/// The configuration layers (README "Configuration"): precedence, every error path, the shipped file.
@Suite struct ConfigurationTests {
    static let repository = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()
    static let shippedFile = repository.appendingPathComponent("etc/acs-smtp-gateway/gateway.conf").path

    /// Writes `text` to a fresh file and returns its path.
    func file(_ text: String, name: String = "gateway.conf") throws -> String {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let path = directory.appendingPathComponent(name).path
        try Data(text.utf8).write(to: URL(fileURLWithPath: path))
        return path
    }

    /// The problems loading fails with (the test fails when loading succeeds).
    func problems(
        yaml: String? = nil, environment: [String: String] = [:], flags: [(flag: String, values: [String])] = []
    ) throws -> (path: String?, problems: [String]) {
        let path = try yaml.map { try file($0) }
        do {
            _ = try ConfigurationLoader.load(file: path, environment: environment, flags: flags)
            Issue.record("loading succeeded, expected an error")
            return (path, [])
        } catch {
            return (path, error.problems)
        }
    }

    // MARK: Layers and precedence

    @Test func nothingConfiguredGivesTheBuiltInDefaults() throws {
        let loaded = try ConfigurationLoader.load(file: nil, environment: [:])
        #expect(loaded.origins.isEmpty)
        #expect(
            ConfigurationRendering.yaml(loaded)
                == ConfigurationRendering.yaml(
                    LoadedConfiguration(settings: GatewaySettings(), origins: [:], file: nil)))
        #expect(loaded.settings.limits.maxMessageSize == 7 * 1024 * 1024)
        #expect(loaded.settings.listen.map(\.description) == ["127.0.0.1:2525"])
    }

    @Test func fileThenEnvironmentThenFlagsEachWin() throws {
        let path = try file("limits:\n  max_message_size: 1MiB\n  max_errors: 3\ntimeouts:\n  command: 90s\n")
        let fileOnly = try ConfigurationLoader.load(file: path, environment: [:])
        #expect(fileOnly.settings.limits.maxMessageSize == 1 << 20)
        #expect(fileOnly.origins["limits.max_message_size"] == .file(path: path, line: 2))
        #expect(fileOnly.settings.timeouts.command == 90)

        let environment = ["ACSGW_LIMITS_MAX_MESSAGE_SIZE": "2M", "ACSGW_TIMEOUTS_COMMAND": "2m", "PATH": "/bin"]
        let withEnvironment = try ConfigurationLoader.load(file: path, environment: environment)
        #expect(withEnvironment.settings.limits.maxMessageSize == 2 << 20)
        #expect(
            withEnvironment.origins["limits.max_message_size"]
                == .environment(variable: "ACSGW_LIMITS_MAX_MESSAGE_SIZE"))
        #expect(withEnvironment.settings.timeouts.command == 120)
        #expect(
            withEnvironment.settings.limits.maxErrors == 3, "keys the environment does not name keep the file's value")

        let withFlags = try ConfigurationLoader.load(
            file: path, environment: environment, flags: [("max-message-size", ["3145728"])])
        #expect(withFlags.settings.limits.maxMessageSize == 3 << 20)
        #expect(withFlags.origins["limits.max_message_size"] == .flag("--max-message-size"))
        #expect(withFlags.settings.timeouts.command == 120)
    }

    @Test func listsAreReplacedWholeByEachLayer() throws {
        let path = try file("smtp:\n  allow_network:\n    - 192.0.2.0/24\n    - 198.51.100.0/24\n")
        let fromFile = try ConfigurationLoader.load(file: path, environment: [:])
        #expect(fromFile.settings.allowNetworks.map(\.description) == ["192.0.2.0/24", "198.51.100.0/24"])
        let fromEnvironment = try ConfigurationLoader.load(
            file: path, environment: ["ACSGW_SMTP_ALLOW_NETWORK": "10.0.0.0/8, 2001:db8::/32"])
        #expect(fromEnvironment.settings.allowNetworks.map(\.description) == ["10.0.0.0/8", "2001:db8::/32"])
        let fromFlags = try ConfigurationLoader.load(
            file: path, environment: [:], flags: [("allow-network", ["203.0.113.0/24"])])
        #expect(fromFlags.settings.allowNetworks.map(\.description) == ["203.0.113.0/24"])
        // Loopback is always admitted on top of the list.
        #expect(fromFlags.settings.serverConfiguration.allowedNetworks.count == IPNetwork.loopback.count + 1)
    }

    /// Every local application shares 127.0.0.1: by default the per-client connection limit spares loopback and
    /// the admitted networks (Postfix `smtpd_client_connection_limit_exceptions = $mynetworks`); `none` applies
    /// it to every client.
    @Test func connectionLimitExceptions_defaultToTheAdmittedNetworks() throws {
        #expect(GatewaySettings().serverConfiguration.connectionLimitExceptions == IPNetwork.loopback)
        let admitted = try ConfigurationLoader.load(
            file: try file("smtp:\n  allow_network: [192.0.2.0/24]\n"), environment: [:])
        #expect(
            admitted.settings.serverConfiguration.connectionLimitExceptions
                == IPNetwork.loopback + [IPNetwork("192.0.2.0/24")!])
        let listed = try ConfigurationLoader.load(
            file: try file("smtp:\n  allow_network: [192.0.2.0/24]\n  connection_limit_exceptions: [127.0.0.1/32]\n"),
            environment: [:])
        #expect(listed.settings.serverConfiguration.connectionLimitExceptions == [IPNetwork("127.0.0.1/32")!])
        let none = try ConfigurationLoader.load(
            file: nil, environment: [:], flags: [("connection-limit-exception", ["none"])])
        #expect(none.settings.serverConfiguration.connectionLimitExceptions == [])
        #expect(ConfigurationRendering.yaml(none).contains("connection_limit_exceptions: [none]"))
        let reset = try ConfigurationLoader.load(
            file: nil, environment: ["ACSGW_SMTP_CONNECTION_LIMIT_EXCEPTIONS": ""])
        #expect(reset.settings.serverConfiguration.connectionLimitExceptions == IPNetwork.loopback)
        let (_, mixed) = try problems(flags: [("connection-limit-exception", ["none", "10.0.0.0/8"])])
        #expect(mixed.count == 1)
    }

    @Test func emptyValuesRestoreTheDefault() throws {
        let path = try file("senders:\n  sender_address: a@example.com\nlimits:\n  max_errors: 3\n")
        let loaded = try ConfigurationLoader.load(
            file: path, environment: ["ACSGW_SENDERS_SENDER_ADDRESS": "", "ACSGW_LIMITS_MAX_ERRORS": " "])
        #expect(loaded.settings.translation.senderAddress == nil)
        #expect(loaded.settings.limits.maxErrors == 10)
        let nulls = try ConfigurationLoader.load(file: try file("limits:\n  max_errors: ~\nacs:\n"), environment: [:])
        #expect(nulls.settings.limits.maxErrors == 10)
    }

    @Test func unitsAndSpellings() throws {
        let path = try file(
            """
            timeouts:
              command: 1.5s
              data: 1h
              submission: "90"
              shutdown_grace: 500ms
            limits:
              max_message_size: 10 MiB
            translation:
              disable_engagement_tracking: yes
              max_request_size: 2048K
            acs:
              api_version: 2023-03-31
              auth: managed-identity
              retry_budget: 2m
              dry_run: on
              proxy: http://user:hunter2@proxy.example.com:3128
            smtp:
              listen: ["[::1]:2525", 127.0.0.1:2526]
            senders:
              sender_address: DoNotReply@mail.example.com
            """)
        let settings = try ConfigurationLoader.load(file: path, environment: [:]).settings
        #expect(settings.timeouts.command == 1.5)
        #expect(settings.timeouts.dataBlock == 3600)
        #expect(settings.timeouts.submission == 90)
        #expect(settings.timeouts.shutdownGracePeriod == 0.5)
        #expect(settings.limits.maxMessageSize == 10 << 20)
        #expect(settings.disableEngagementTracking && settings.translationPolicy.userEngagementTrackingDisabled == true)
        #expect(settings.translation.maxRequestSize == 2048 * 1024)
        #expect(settings.translation.apiVersion.rawValue == "2023-03-31")
        #expect(settings.acs.auth == .managedIdentity)
        #expect(settings.acs.retryBudget == 120)
        #expect(settings.acs.dryRun)
        #expect(settings.listen.map(\.description) == ["[::1]:2525", "127.0.0.1:2526"])
    }

    // MARK: Every error path

    @Test func aBadValueNamesFileLineKeyAndWhatWasExpected() throws {
        let (path, found) = try problems(yaml: "# comment\nlimits:\n  max_message_size: ten megabytes\n")
        #expect(
            found == [
                "\(path!):3: limits.max_message_size: expected a size in octets from 1 to 1073741824, "
                    + "e.g. 10485760, 10240KiB, 10MiB or 1GiB, got \"ten megabytes\""
            ])
    }

    @Test func everyProblemIsReportedNotJustTheFirst() throws {
        let (path, found) = try problems(
            yaml: "smtp:\n  hostname: \"bad name!\"\n  max_connections: 0\nlimits:\n  bare_lf: maybe\n")
        let path_ = try #require(path)
        #expect(found.count == 3)
        #expect(found[0].hasPrefix("\(path_):2: smtp.hostname: expected a domain name"))
        #expect(found[1].hasPrefix("\(path_):3: smtp.max_connections: expected a whole number from 1 to 1000000"))
        #expect(found[2] == "\(path_):5: limits.bare_lf: expected normalize or reject, got \"maybe\"")
    }

    @Test func unknownKeysAreErrorsWithSuggestions() throws {
        let (path, found) = try problems(yaml: "limits:\n  max_mesage_size: 1MiB\n  colour: blue\n")
        #expect(found.count == 2)
        #expect(
            found[0] == "\(path!):2: limits.max_mesage_size: unknown key; did you mean max_message_size? "
                + "(limits: takes max_message_size, max_recipients, max_command_line_length, max_errors, bare_lf)")
        #expect(found[1].hasPrefix("\(path!):3: limits.colour: unknown key (limits: takes"))
    }

    @Test func aKeyInTheWrongSectionSaysWhereItBelongs() throws {
        let (path, found) = try problems(yaml: "smtp:\n  max_message_size: 1MiB\n")
        #expect(
            found == [
                "\(path!):2: smtp.max_message_size: unknown key in smtp:; it belongs in limits: (limits.max_message_size)"
            ])
    }

    @Test func unknownSectionsAndKeysAtTheTopLevel() throws {
        let (path, found) = try problems(yaml: "smpt:\n  listen: [127.0.0.1:25]\nmax_recipients: 10\n")
        #expect(found.count == 2)
        #expect(
            found[0].hasPrefix(
                "\(path!):1: smpt: unknown section; did you mean smtp? (sections: smtp, tls, auth, limits,"))
        #expect(
            found[1] == "\(path!):3: max_recipients: not a section; did you mean limits.max_recipients "
                + "(max_recipients: inside limits:)?")
    }

    @Test func secretsAreRefusedInTheFileWithoutEchoingThem() throws {
        let (path, found) = try problems(
            yaml: "acs:\n  connection_string: endpoint=https://x.communication.azure.com/;accesskey=c2VjcmV0\n")
        #expect(found.count == 1)
        #expect(
            found[0].hasPrefix("\(path!):2: acs.connection_string: secrets are never read from the configuration file"))
        #expect(found[0].contains("acs.connection_string_file"))
        #expect(!found[0].contains("c2VjcmV0"))
        // A secret pasted into an ordinary key is not echoed either.
        let (_, pasted) = try problems(yaml: "acs:\n  endpoint: endpoint=https://x/;accesskey=c2VjcmV0\n")
        #expect(pasted.count == 1 && pasted[0].contains(SecretRedaction.placeholder))
        #expect(!pasted[0].contains("c2VjcmV0"))
    }

    @Test func structuralMistakes() throws {
        let (path, notMapping) = try problems(yaml: "- smtp\n- limits\n")
        #expect(
            notMapping == [
                "\(path!):1: expected sections (smtp:, tls:, auth:, limits:, timeouts:, senders:, aliases:, translation:, acs:, delivery:, spool:, outbox:, sendmail:, logging:, admin:) at the top level"
            ])

        let (path2, sectionValue) = try problems(yaml: "limits: 10\n")
        #expect(sectionValue == ["\(path2!):1: limits: expected the section's keys, indented below it (key: value)"])

        let (path3, listForScalar) = try problems(yaml: "smtp:\n  hostname: [a, b]\n")
        #expect(
            listForScalar == ["\(path3!):2: smtp.hostname: expected a domain name, e.g. mail.example.com, not a list"])

        let (path4, mappingValue) = try problems(yaml: "smtp:\n  hostname:\n    name: x\n")
        #expect(
            mappingValue == [
                "\(path4!):2: smtp.hostname: expected a domain name, e.g. mail.example.com, not a mapping (check the indentation)"
            ])

        let (path5, nestedItem) = try problems(yaml: "smtp:\n  listen:\n    - {a: b}\n")
        #expect(
            nestedItem.count == 1 && nestedItem[0].hasPrefix("\(path5!):3: smtp.listen: expected a list of an address"))

        let (path6, emptyListen) = try problems(yaml: "smtp:\n  listen: []\n")
        #expect(emptyListen.contains("\(path6!):2: smtp.listen: expected at least one address (or socket activation)"))
    }

    @Test func yamlSyntaxErrorsAndDuplicatesHaveTheirLine() throws {
        let (path, syntax) = try problems(yaml: "smtp:\n  hostname: a\n    listen: [\n")
        #expect(syntax.count == 1 && syntax[0].hasPrefix("\(path!):3:") && syntax[0].contains("not valid YAML"))
        let (path2, duplicate) = try problems(yaml: "limits:\n  max_errors: 1\n  max_errors: 2\n")
        #expect(
            duplicate.count == 1 && duplicate[0].hasPrefix("\(path2!):")
                && duplicate[0].contains("max_errors given twice"))
    }

    @Test func unreadableFiles() throws {
        let missing = "/nonexistent/gateway.conf"
        #expect(throws: ConfigurationError.self) { try ConfigurationLoader.load(file: missing, environment: [:]) }
        do {
            _ = try ConfigurationLoader.load(file: missing, environment: [:])
        } catch {
            #expect(error.problems == ["\(missing): cannot read the configuration file: no such file"])
        }
        let binary = try file("")
        try Data([0x6C, 0x69, 0x6D, 0xFF, 0xFE]).write(to: URL(fileURLWithPath: binary))
        do {
            _ = try ConfigurationLoader.load(file: binary, environment: [:])
            Issue.record("a non-UTF-8 file loaded")
        } catch {
            #expect(error.problems == ["\(binary): not UTF-8 text"])
        }
        let huge = try file(String(repeating: "# padding\n", count: 120_000))
        do {
            _ = try ConfigurationLoader.load(file: huge, environment: [:])
            Issue.record("a 1.2 MB file loaded")
        } catch {
            #expect(error.problems.first?.contains("a configuration file is at most 1048576") == true)
        }
        // Comments only: a valid, empty configuration.
        let empty = try ConfigurationLoader.load(file: try file("# nothing yet\n"), environment: [:])
        #expect(empty.origins.isEmpty)
    }

    /// A bad value is echoed escaped like every other text the gateway writes: a control character in it
    /// cannot rewrite the terminal or start a new log line.
    @Test func aBadValueIsEchoedWithControlCharactersEscaped() throws {
        let (_, problems) = try problems(environment: ["ACSGW_LIMITS_MAX_ERRORS": "3\u{1B}[2J\nfake: line"])
        #expect(problems.count == 1)
        #expect(problems.first?.hasSuffix(#"got "3\u001b[2J\nfake: line""#) == true)
        #expect(problems.first?.contains { $0 == "\u{1B}" || $0 == "\n" } == false)
    }

    @Test func environmentMistakes() throws {
        let (_, typo) = try problems(environment: ["ACSGW_LIMITS_MAX_MESAGE_SIZE": "1M"])
        #expect(
            typo == [
                "environment ACSGW_LIMITS_MAX_MESAGE_SIZE: not a configuration variable "
                    + "(did you mean ACSGW_LIMITS_MAX_MESSAGE_SIZE?)"
            ])
        let (_, secret) = try problems(environment: ["ACSGW_ACS_CONNECTION_STRING": "endpoint=x;accesskey=y"])
        #expect(
            secret.count == 1
                && secret[0].hasPrefix("environment ACSGW_ACS_CONNECTION_STRING: secrets are not configuration"))
        #expect(!secret[0].contains("accesskey=y"))
        let (_, badValue) = try problems(environment: ["ACSGW_ACS_REPLY_AFTER": "later"])
        #expect(
            badValue == [
                "environment ACSGW_ACS_REPLY_AFTER: acs.reply_after: expected accepted or final, got \"later\""
            ])
        // ACSGW_CONFIG names the file; it is not a key.
        #expect(throws: Never.self) { try ConfigurationLoader.load(file: nil, environment: ["ACSGW_CONFIG": "none"]) }
    }

    @Test func flagMistakes() throws {
        let (_, found) = try problems(flags: [("retry-budget", ["soon"]), ("listen", ["mail.example.com:25"])])
        #expect(
            found == [
                "--retry-budget: acs.retry_budget: expected a duration from 1s to 1d, e.g. 30, 30s, 500ms, 5m, 1h or 5d, got \"soon\"",
                "--listen: smtp.listen: expected a list of an address IP:PORT or [IPv6]:PORT, e.g. 127.0.0.1:2525, got \"mail.example.com:25\"",
            ])
        let (_, unknown) = try problems(flags: [("no-such-flag", ["x"])])
        #expect(unknown == ["--no-such-flag: not a configuration flag"])
    }

    @Test func rulesAcrossKeysNameEveryKeyAndItsOrigin() throws {
        let path = try file("acs:\n  attempt_timeout: 2m\n")
        do {
            _ = try ConfigurationLoader.load(file: path, environment: ["ACSGW_ACS_RETRY_BUDGET": "90s"])
            Issue.record("an attempt timeout above the budget loaded")
        } catch {
            #expect(
                error.problems == [
                    "acs.attempt_timeout (\(path):2) must not exceed acs.retry_budget (environment ACSGW_ACS_RETRY_BUDGET): "
                        + "one attempt would outlast every retry"
                ])
        }
        let acs = ["ACS_CONNECTION_STRING": "endpoint=https://x.communication.azure.com/;accesskey=c2VjcmV0"]
        let (_, recipients) = try problems(
            environment: acs, flags: [("max-recipients", ["60"]), ("sender-address", ["a@example.com"])])
        #expect(
            recipients == [
                "limits.max_recipients (--max-recipients) is 60, but ACS takes at most 50 recipients per message"
            ])
        let (_, noSender) = try problems(environment: acs)
        #expect(
            noSender == [
                "ACS delivery needs senders.sender_address (a MailFrom address of the ACS resource) or senders.verified_domains"
            ])
        // A dry run sends nothing, so neither rule applies.
        #expect(throws: Never.self) {
            try ConfigurationLoader.load(
                file: nil, environment: acs, flags: [("dry-run", ["true"]), ("max-recipients", ["60"])])
        }
    }

    @Test func theAdminListenerIsLoopbackOnly() throws {
        let (_, found) = try problems(flags: [("admin-listen", ["0.0.0.0:9464"])])
        #expect(found.count == 1 && found[0].contains("a loopback address IP:PORT"))
        let loaded = try ConfigurationLoader.load(file: nil, environment: ["ACSGW_ADMIN_LISTEN": "[::1]:9925"])
        #expect(loaded.settings.adminListen?.description == "[::1]:9925")
    }

    // MARK: Listeners, TLS and AUTH

    @Test func listenersAreMappingsInTheFile_andTextInFlagsAndTheEnvironment() throws {
        let path = try file(
            """
            smtp:
              listeners:
                - address: 0.0.0.0:587
                  tls: starttls
                  auth: required
                - {address: "[::1]:465", tls: implicit, auth: optional, name: smtps}
            tls:
              certificate: /etc/acs-smtp-gateway/tls/cert.pem
              key: /etc/acs-smtp-gateway/tls/key.pem
              min_version: "1.0"
            auth:
              users_file: /etc/acs-smtp-gateway/users
              failure_window: 5m
            """)
        let loaded = try ConfigurationLoader.load(file: path, environment: [:])
        let settings = loaded.settings
        #expect(
            settings.listeners.map(\.description) == [
                "0.0.0.0:587 tls=starttls auth=required", "[::1]:465 tls=implicit auth=optional",
            ])
        #expect(settings.listeners.map(\.name) == ["submission", "smtps"])
        #expect(settings.listen.isEmpty, "listeners given and smtp.listen not: its loopback default goes")
        #expect(settings.serverConfiguration.listeners.count == 2)
        #expect(settings.tls.minVersion == .tls1_0)
        #expect(settings.auth.failures.window == 300)
        #expect(loaded.origins["smtp.listeners"] == .file(path: path, line: 2))

        let flagged = try ConfigurationLoader.load(
            file: nil, environment: ["ACSGW_SMTP_LISTENERS": "127.0.0.1:2587 tls=starttls auth=optional"],
            flags: [
                ("listen", ["127.0.0.1:2525"]), ("tls-certificate", ["c.pem"]), ("tls-key", ["k.pem"]),
                ("users-file", ["users"]),
            ])
        #expect(
            flagged.settings.serverConfiguration.listeners.map(\.description) == [
                "127.0.0.1:2525 tls=none auth=none", "127.0.0.1:2587 tls=starttls auth=optional",
            ])

        // check-config's output loads back to the same listeners.
        let rendered = ConfigurationRendering.yaml(loaded)
        #expect(
            rendered.contains(
                #"listeners: [{address: 0.0.0.0:587, tls: starttls, auth: required, name: submission}, "#
                    + #"{address: "[::1]:465", tls: implicit, auth: optional, name: smtps}]"#))
        let reloaded = try ConfigurationLoader.load(file: try file(rendered), environment: [:], crossKeyChecks: false)
        #expect(reloaded.settings.listeners == settings.listeners)
        #expect(reloaded.settings.listen.isEmpty)
    }

    @Test func listenerMistakes_nameTheFieldAndWhatIsMissing() throws {
        let (path, unknownField) = try problems(
            yaml: "smtp:\n  listeners:\n    - {address: 0.0.0.0:587, tsl: starttls}\n")
        #expect(
            unknownField == [
                "\(path!):3: smtp.listeners: unknown field tsl; did you mean tls? (takes address, tls, auth, name)"
            ])
        let (_, badMode) = try problems(flags: [("listener", ["0.0.0.0:587 tls=sometimes"])])
        #expect(badMode.count == 1 && badMode[0].hasPrefix("--listener: smtp.listeners: expected a list of a listener"))
        let (_, noCertificate) = try problems(flags: [("listener", ["0.0.0.0:465 tls=implicit"])])
        #expect(
            noCertificate == [
                "smtp.listeners (--listener): 0.0.0.0:465 uses tls: implicit, which needs tls.certificate and tls.key"
            ])
        let (_, noUsers) = try problems(flags: [("listener", ["0.0.0.0:587 auth=required"])])
        #expect(
            noUsers == [
                "smtp.listeners (--listener): 0.0.0.0:587 uses auth: required, which needs auth.users_file"
            ])
        let (_, halfPair) = try problems(flags: [("tls-certificate", ["c.pem"])])
        #expect(halfPair == ["tls.certificate (--tls-certificate) and tls.key go together: give both"])
        let (_, twice) = try problems(flags: [("listen", ["127.0.0.1:25"]), ("listener", ["127.0.0.1:25"])])
        #expect(twice == ["127.0.0.1:25 is listed twice in smtp.listen (--listen) and smtp.listeners (--listener)"])
        let (_, version) = try problems(flags: [("tls-min-version", ["1"])])
        #expect(version == ["--tls-min-version: tls.min_version: expected 1.0, 1.1, 1.2 or 1.3, got \"1\""])
    }

    // MARK: Rendering and the shipped file

    @Test func renderedConfigurationLoadsBackToTheSameSettings() throws {
        let path = try file(
            """
            smtp:
              listen: ["[::1]:25", 127.0.0.1:25]
              allow_network: [192.0.2.0/24]
            senders:
              sender_address: DoNotReply@mail.example.com
              verified_domains: [mail.example.com, example.org]
            translation:
              subject_placeholder: "#: tricky \\"quoted\\" [subject]"
              forward_headers: [X-*, Importance]
            acs:
              proxy: http://user:pw@proxy:3128
            """)
        let loaded = try ConfigurationLoader.load(file: path, environment: [:])
        let rendered = ConfigurationRendering.yaml(loaded)
        #expect(
            rendered.contains("proxy: \"http://user:***@proxy:3128\"")
                || rendered.contains("proxy: http://user:***@proxy:3128"))
        #expect(!rendered.contains(":pw@"))
        // Proxy passwords are redacted, so compare the rest.
        let reloaded = try ConfigurationLoader.load(file: try file(rendered), environment: [:], crossKeyChecks: false)
        let again = ConfigurationRendering.yaml(reloaded)
        func withoutOrigins(_ text: String) -> [String] {
            text.split(separator: "\n").map { line in
                String(line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
                    .trimmingCharacters(in: .whitespaces)
            }
        }
        #expect(withoutOrigins(again) == withoutOrigins(rendered))
        #expect(reloaded.settings.translation.subjectPlaceholder == "#: tricky \"quoted\" [subject]")
    }

    // MARK: Aliases: a section that is one key

    @Test func aliases_readFromTheFileTheEnvironmentAndFlags_andRenderBack() throws {
        let path = try file(
            """
            aliases:
              root: ops@example.com
              WWW-Data: webmaster@example.com
              "*": admin@example.com
            smtp:
              local_domains: [web1.example.com]
            sendmail:
              socket: /run/acs-smtp-gateway/submit.sock
            """)
        let loaded = try ConfigurationLoader.load(file: path, environment: [:])
        let local = loaded.settings.localRecipients
        #expect(local.resolve(localName: "root") == .alias(Mailbox(localPart: "ops", domain: "example.com")))
        #expect(local.resolve(localName: "www-data") == .alias(Mailbox(localPart: "webmaster", domain: "example.com")))
        #expect(local.resolve(localName: "anyone") == .alias(Mailbox(localPart: "admin", domain: "example.com")))
        #expect(local.localDomains == ["web1.example.com"])
        #expect(loaded.settings.serverConfiguration.localSocketPath == "/run/acs-smtp-gateway/submit.sock")
        #expect(loaded.settings.serverConfiguration.limits.localRecipients == local)
        #expect(loaded.settings.translationPolicy.localRecipients == local)
        #expect(loaded.origins["aliases"] == .file(path: path, line: 1))

        let rendered = ConfigurationRendering.yaml(loaded)
        #expect(rendered.contains("\n  root: ops@example.com "))
        #expect(rendered.contains("\n  \"*\": admin@example.com "))
        let reloaded = try ConfigurationLoader.load(file: try file(rendered), environment: [:])
        #expect(reloaded.settings.aliases == loaded.settings.aliases)

        let environment = try ConfigurationLoader.load(
            file: nil, environment: ["ACSGW_ALIASES": "root=a@example.com, *=b@example.com"],
            flags: [("alias", ["root=c@example.com"])])
        #expect(
            environment.settings.aliases == [
                LocalAlias(name: "root", address: Mailbox(localPart: "c", domain: "example.com"))
            ],
            "a flag replaces the environment's list, as for every list key")
        #expect(!GatewaySettings().localRecipients.localDomains.isEmpty, "the host's names by default")
    }

    @Test func aliases_eachBadEntryIsReportedAtItsLine() throws {
        let (path, problems) = try problems(
            yaml: """
                aliases:
                  root: ops
                  "two words": x@example.com
                  www-data: web@localhost
                  fine: ok@example.com
                """)
        #expect(problems.count == 3)
        #expect(problems[0].hasPrefix("\(path!):2: aliases: expected NAME: ADDRESS"))
        #expect(problems[1].hasPrefix("\(path!):3: aliases: expected NAME: ADDRESS"))
        #expect(problems[2].contains("got \"www-data: web@localhost\""))
        let loop = try self.problems(flags: [
            ("alias", ["root=a@web1.example.com"]), ("local-domain", ["web1.example.com"]),
        ])
        #expect(
            loop.problems == [
                "aliases (--alias): root goes to a@web1.example.com, which is itself local (one of smtp.local_domains "
                    + "(--local-domain), or localhost): give an address elsewhere"
            ])
        let relative = try self.problems(flags: [("sendmail-socket", ["run/submit.sock"])])
        #expect(relative.problems.first?.contains("expected an absolute file system path") == true)
    }

    @Test func theShippedFileLoadsAndDocumentsEveryKeyWithItsTrueDefault() throws {
        let text = try String(contentsOfFile: Self.shippedFile, encoding: .utf8)
        let shipped = try ConfigurationLoader.load(file: Self.shippedFile, environment: [:])
        #expect(shipped.origins.isEmpty, "the shipped file sets nothing: every key is a commented default")

        // Uncomment the first commented line of every key, in its section: the result must load to exactly
        // the built-in defaults, so the documented defaults are the real ones.
        var section = ""
        var seen: Set<String> = []
        var lines: [String] = []
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if let first = line.first, first.isLetter, line.hasSuffix(":") { section = String(line.dropLast()) }
            if line.hasPrefix("  #"), ConfigurationSchema.key(section: section, name: "") != nil {
                // A section that is one key (aliases:): its example entries document it.
                if !seen.contains(section) {
                    seen.insert(section)
                    lines.append("  " + line.dropFirst(3))
                    continue
                }
            }
            if line.hasPrefix("  #"), let colon = line.firstIndex(of: ":") {
                let name = String(line[line.index(line.startIndex, offsetBy: 3)..<colon])
                if ConfigurationSchema.key(section: section, name: name) != nil, !seen.contains("\(section).\(name)") {
                    seen.insert("\(section).\(name)")
                    lines.append("  " + line.dropFirst(3))
                    continue
                }
            }
            lines.append(line)
        }
        let missing = ConfigurationSchema.keys.map(\.path).filter { !seen.contains($0) }
        #expect(missing.isEmpty, "keys not documented in gateway.conf: \(missing)")

        let uncommented = try ConfigurationLoader.load(
            file: try file(lines.joined(separator: "\n")), environment: [:], crossKeyChecks: false)
        for key in ConfigurationSchema.keys where uncommented.origins[key.path] != nil {
            let isExample = [
                "senders.sender_address", "senders.postmaster_address", "acs.endpoint",
                "acs.connection_string_file", "acs.access_key_file", "acs.client_secret_file",
                "acs.tenant_id", "acs.client_id", "acs.federated_token_file", "acs.ca_file", "acs.proxy",
                "admin.listen", "tls.certificate", "tls.key", "auth.users_file", "aliases",
                "sendmail.socket", "smtp.local_domains",
            ].contains(key.path)
            if isExample { continue }  // optional keys show an example value; their default is "unset"
            #expect(
                key.values(in: uncommented.settings) == key.values(in: GatewaySettings()),
                "\(key.path): gateway.conf documents \(key.values(in: uncommented.settings)), the built-in default is \(key.values(in: GatewaySettings()))"
            )
        }
    }

    @Test func everyKeyHasAUniqueFlagAndEnvironmentVariable() {
        let keys = ConfigurationSchema.keys
        #expect(Set(keys.map(\.flag)).count == keys.count)
        #expect(Set(keys.map(\.environmentVariable)).count == keys.count)
        #expect(keys.allSatisfy { ConfigurationSchema.sections.contains($0.section) })
    }

    @Test(arguments: [
        ("30", 30.0), ("30s", 30), ("500ms", 0.5), ("5m", 300), ("1h", 3600), ("1.5s", 1.5),
    ])
    func durations(text: String, seconds: Double) {
        #expect(ValueParser<Double>.duration(0...86_400).parse(text) == seconds)
    }

    @Test(arguments: ["", "s", "-1", "1e3", "5 min", "inf", "nan", "25h"])
    func invalidDurations(text: String) {
        #expect(ValueParser<Double>.duration(0...86_400).parse(text) == nil)
    }

    @Test(arguments: [("1024", 1024), ("1K", 1024), ("1KiB", 1024), ("7MiB", 7 << 20), ("10 M", 10 << 20)])
    func sizes(text: String, octets: Int) {
        #expect(ValueParser<Int>.size(1...(1 << 30)).parse(text) == octets)
    }

    @Test(arguments: ["", "MiB", "-1M", "2GiB", "1.5M", "99999999999999999999M", "10MB"])
    func invalidSizes(text: String) {
        #expect(ValueParser<Int>.size(1...(1 << 30)).parse(text) == nil)
    }

    // MARK: Secrets in place of paths, half-done set-ups, YAML anchors, flags, odd files

    @Test func aSecretPastedInPlaceOfAPathIsRefusedAndNotEchoed() throws {
        let key = "yVWg44XFq0Zr3bT8mN2pLk7sD1fH9jQ4wE6rT0yU2iO5pA8sD3fG7hJ1kL4zX6cV9bN2mQ5wE8rT1yU4iO7pA0sD=="
        let (path, found) = try problems(
            yaml: "acs:\n  connection_string_file: \"endpoint=https://x.communication.azure.com/;accesskey=\(key)\"\n")
        #expect(
            found == [
                "\(path!):2: acs.connection_string_file: expected a file system path, got \(SecretRedaction.placeholder); "
                    + "a secret goes in a file named by a *_file key, a systemd credential or the environment"
            ])
        let (_, bare) = try problems(environment: ["ACSGW_ACS_ACCESS_KEY_FILE": key])
        #expect(bare.count == 1 && !bare[0].contains("yVWg44XF"))
        let (_, endpoint) = try problems(flags: [
            ("acs-endpoint", ["https://user:EndpointPass@x.communication.azure.com/"])
        ])
        #expect(endpoint.count == 1 && endpoint[0].contains("https://user:***@x.communication.azure.com/"))
        #expect(!endpoint[0].contains("EndpointPass"))
    }

    @Test(arguments: [
        ("yVWg44XFq0Zr3bT8mN2pLk7sD1fH9jQ4wE6rT0yU2iO5pA8sD3fG7hJ1kL4zX6cV9bN2mQ5wE8rT1yU4iO7pA0sD==", true),
        ("abc8Q~xyzABCDEFGHIJKLmnopqrstu0123456789", true),
        ("endpoint=https://x/;accesskey=a2V5", true),
        ("/etc/acs-smtp-gateway/connection-string", false),
        ("/var/run/secrets/azure/tokens/azure-identity-token", false),
        ("DoNotReply@mail.example.com", false),
        ("https://contoso.communication.azure.com", false),
        ("00000000-0000-0000-0000-000000000000", false),
        ("connection-string", false),
        ("/tmp/test_entra_client_secret_from_0/outbox", false),  // a name mentioning a secret is not one
    ])
    func secretsAreRecognised(value: String, secret: Bool) {
        #expect(SecretRedaction.looksSecret(value) == secret)
    }

    @Test func halfDoneACSSetupsCountAsConfigured() {
        var acs = ACSSettings()
        #expect(!acs.isConfigured(environment: [:]))
        #expect(!acs.isConfigured(environment: ["AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c"]))
        #expect(acs.isConfigured(environment: ["AZURE_CLIENT_SECRET": "s"]))
        #expect(acs.isConfigured(environment: ["ACS_ACCESS_KEY": "k"]))
        acs.tenantID = "t"
        #expect(acs.isConfigured(environment: [:]))
        acs = ACSSettings()
        acs.clientSecretFile = "/etc/acs-smtp-gateway/azure-client-secret"
        #expect(acs.isConfigured(environment: [:]))
    }

    @Test func anchorsAndAliasesAreRefusedBeforeParsing() throws {
        // A 462-octet alias "bomb" took 20 s to compose; now it is refused at once.
        var bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        for level in 1...8 {
            bomb +=
                "a\(level): &a\(level) [" + Array(repeating: "*a\(level - 1)", count: 10).joined(separator: ", ")
                + "]\n"
        }
        bomb += "? *a8\n: 1\n"
        let started = Date()
        let (path, found) = try problems(yaml: bomb)
        #expect(Date().timeIntervalSince(started) < 1)
        #expect(
            found == [
                "\(path!):1: YAML anchors and aliases (&name, *name) are not supported in the configuration "
                    + "file; write the value out (quote it if it starts with * or &)"
            ])
        let (path2, alias) = try problems(yaml: "senders:\n  verified_domains: [a.example, *h]\n")
        #expect(alias.first?.hasPrefix("\(path2!):2: YAML anchors and aliases") == true)
        // Not anchors: a star inside a value, quoted, or in a comment.
        let fine = try file(
            "translation:\n  forward_headers: [X-*, \"*\", 'X-&']  # *comment &too\n"
                + "  subject_placeholder: \"a \\\" *b\"\n# &c\n")
        let loaded = try ConfigurationLoader.load(file: fine, environment: [:])
        #expect(loaded.settings.translation.headerAllowList == ["X-*", "*", "X-&"])
        #expect(loaded.settings.translation.subjectPlaceholder == "a \" *b")
    }

    @Test(arguments: ["a@b.example> SIZE=1", "a@b.example>\r\nRSET", "<a@b.example>", "a b@c.example", "no-at-sign"])
    func addressesAreOnlyAddresses(text: String) throws {
        let (_, found) = try problems(flags: [("sender-address", [text])])
        #expect(found.count == 1 && found[0].hasPrefix("--sender-address: senders.sender_address: expected an address"))
        let (_, postmaster) = try problems(flags: [("postmaster-address", [text])])
        #expect(postmaster.count == 1)
    }

    @Test func flagsTurnBooleansOffToo() throws {
        let path = try file("acs:\n  dry_run: true\ntranslation:\n  disable_engagement_tracking: yes\n")
        let loaded = try ConfigurationLoader.load(
            file: path, environment: [:], flags: [("dry-run", ["false"]), ("disable-engagement-tracking", ["false"])])
        #expect(!loaded.settings.acs.dryRun && !loaded.settings.disableEngagementTracking)
    }

    @Test func multipleDocumentsAndSpecialFilesGetAClearError() throws {
        let (path, found) = try problems(yaml: "smtp:\n  hostname: a\n---\nlimits:\n  max_errors: 1\n")
        #expect(found.count == 1 && found[0].hasPrefix("\(path!):3:") && found[0].contains("single document"))
        let fifo = FileManager.default.temporaryDirectory.appendingPathComponent("fifo-\(UUID().uuidString)").path
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        do {
            _ = try ConfigurationLoader.load(file: fifo, environment: [:])
            Issue.record("a FIFO loaded")
        } catch {
            #expect(error.problems == ["\(fifo): not a regular file (a configuration file is read whole, once)"])
        }
    }
}
