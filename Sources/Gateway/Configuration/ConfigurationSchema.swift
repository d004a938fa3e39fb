import ACSClient
import ACSEmail
import Logging
import SMTPProtocol
import SMTPServer

/// One configuration key: where it lives in the file (`section.name`), its environment variable
/// (`ACSGW_SECTION_NAME`) and command-line flag, what it accepts, and how it reads and shows its value.
public struct ConfigurationKey: Sendable {
    public let section: String
    public let name: String
    /// The command-line flag without dashes (`max-message-size`).
    public let flag: String
    /// Completes "expected …" in error messages.
    public let expected: String
    /// Lists take several values: a YAML sequence, comma-separated text in the environment, a repeated flag.
    public let isList: Bool
    /// The fields of a list whose items are mappings in the file (`smtp.listeners`: address, tls, auth, name);
    /// in the environment and on the command line an item is `VALUE field=value …`. nil for plain values.
    public var mappingFields: [String]? = nil
    /// Sets the value; returns the first item that does not parse, nil on success.
    let assign: @Sendable (inout GatewaySettings, [String]) -> String?
    /// Restores the built-in default (a YAML null, `key:` with no value).
    let reset: @Sendable (inout GatewaySettings) -> Void
    /// The current value(s) as text; empty when unset.
    let render: @Sendable (GatewaySettings) -> [String]

    /// The value(s) of this key in `settings`, as the file would spell them.
    public func values(in settings: GatewaySettings) -> [String] { render(settings) }

    /// `section.name`, as error messages and `check-config` show it; the section alone for a key that is a
    /// whole section (``isWholeSection``).
    public var path: String { isWholeSection ? section : "\(section).\(name)" }
    public var environmentVariable: String {
        (isWholeSection ? "ACSGW_\(section)" : "ACSGW_\(section)_\(name)").uppercased()
    }
    /// The section's entries are the key's items (`aliases:` with `root: ops@example.com` lines): its own names,
    /// each `NAME=VALUE` in the environment and on the command line.
    public var isWholeSection: Bool { name.isEmpty }
    public var flagName: String { "--\(flag)" }
}

extension ConfigurationKey {
    static func scalar<T>(
        _ section: String, _ name: String, flag: String, _ keyPath: WritableKeyPath<GatewaySettings, T> & Sendable,
        _ parser: ValueParser<T>
    ) -> ConfigurationKey {
        ConfigurationKey(
            section: section, name: name, flag: flag, expected: parser.expected, isList: false,
            assign: { settings, values in
                guard let text = values.first, let value = parser.parse(text) else { return values.first ?? "" }
                settings[keyPath: keyPath] = value
                return nil
            },
            reset: { $0[keyPath: keyPath] = GatewaySettings()[keyPath: keyPath] },
            render: { [parser.render($0[keyPath: keyPath])] })
    }

    static func optional<T>(
        _ section: String, _ name: String, flag: String, _ keyPath: WritableKeyPath<GatewaySettings, T?> & Sendable,
        _ parser: ValueParser<T>
    ) -> ConfigurationKey {
        ConfigurationKey(
            section: section, name: name, flag: flag, expected: parser.expected, isList: false,
            assign: { settings, values in
                guard let text = values.first, let value = parser.parse(text) else { return values.first ?? "" }
                settings[keyPath: keyPath] = value
                return nil
            },
            reset: { $0[keyPath: keyPath] = nil },
            render: { settings in settings[keyPath: keyPath].map { [parser.render($0)] } ?? [] })
    }

    static func list<T>(
        _ section: String, _ name: String, flag: String, _ keyPath: WritableKeyPath<GatewaySettings, [T]> & Sendable,
        _ parser: ValueParser<T>, mappingFields: [String]? = nil
    ) -> ConfigurationKey {
        ConfigurationKey(
            // A section that is one key lists its entries one per line: each is checked on its own.
            section: section, name: name, flag: flag, expected: (name.isEmpty ? "" : "a list of ") + parser.expected,
            isList: true, mappingFields: mappingFields,
            assign: { settings, values in parser.parseAll(values) { settings[keyPath: keyPath] = $0 } },
            reset: { $0[keyPath: keyPath] = GatewaySettings()[keyPath: keyPath] },
            render: { settings in settings[keyPath: keyPath].map(parser.render) })
    }
}

extension ValueParser {
    /// Parses every item and hands the list to `assign`; returns the first item that does not parse (then
    /// nothing is assigned), nil on success.
    func parseAll(_ values: [String], assign: ([Value]) -> Void) -> String? {
        var parsed: [Value] = []
        for text in values {
            guard let value = parse(text) else { return text }
            parsed.append(value)
        }
        assign(parsed)
        return nil
    }
}

extension ConfigurationKey {
    /// A list of networks whose unset (nil) value is a default computed elsewhere, and where the single item
    /// `none` means the empty list (an empty value always restores the default).
    static func networksOrNone(
        _ section: String, _ name: String, flag: String,
        _ keyPath: WritableKeyPath<GatewaySettings, [IPNetwork]?> & Sendable
    ) -> ConfigurationKey {
        let parser = ValueParser<IPNetwork>.network
        return ConfigurationKey(
            section: section, name: name, flag: flag, expected: "a list of " + parser.expected + ", or none",
            isList: true,
            assign: { settings, values in
                if values.count == 1, values[0].lowercased() == "none" {
                    settings[keyPath: keyPath] = []
                    return nil
                }
                return parser.parseAll(values) { settings[keyPath: keyPath] = $0 }
            },
            reset: { $0[keyPath: keyPath] = nil },
            render: { settings in
                settings[keyPath: keyPath].map { $0.isEmpty ? ["none"] : $0.map(parser.render) } ?? []
            })
    }
}

/// Every configuration key, in the order `gateway.conf` and `check-config` list them.
///
/// The file is YAML: one mapping per section, `key: value` inside. The same key is `ACSGW_SECTION_KEY` in
/// the environment and a flag on `serve`. `etc/acs-smtp-gateway/gateway.conf` documents each one.
public enum ConfigurationSchema {
    public static let sections = [
        "smtp", "tls", "auth", "limits", "timeouts", "senders", "aliases", "translation", "acs", "delivery",
        "spool", "outbox", "sendmail", "logging", "admin",
    ]

    public static let keys: [ConfigurationKey] = [
        // Listeners and access.
        .list("smtp", "listen", flag: "listen", \.listen, .socketAddress),
        .list("smtp", "listeners", flag: "listener", \.listeners, .listener, mappingFields: ValueParser.listenerFields),
        .list("smtp", "allow_network", flag: "allow-network", \.allowNetworks, .network),
        .scalar("smtp", "hostname", flag: "hostname", \.hostname, .domainName),
        .scalar("smtp", "max_connections", flag: "max-connections", \.maxConnections, .integer(1...1_000_000)),
        .scalar(
            "smtp", "max_connections_per_client", flag: "max-connections-per-client",
            \.maxConnectionsPerClient, .integer(1...1_000_000)),
        .networksOrNone(
            "smtp", "connection_limit_exceptions", flag: "connection-limit-exception",
            \.connectionLimitExceptions),
        .optionalList("smtp", "local_domains", flag: "local-domain", \.localDomains, .domainName),

        // TLS: the certificate of the TLS listeners, the protocol settings.
        .optional("tls", "certificate", flag: "tls-certificate", \.tls.certificate, .path),
        .optional("tls", "key", flag: "tls-key", \.tls.key, .path),
        .scalar("tls", "min_version", flag: "tls-min-version", \.tls.minVersion, .choice),
        .scalar("tls", "ciphers", flag: "tls-ciphers", \.tls.ciphers, .text("an OpenSSL cipher list")),
        .scalar("tls", "allow_plaintext_auth", flag: "allow-plaintext-auth", \.tls.allowPlaintextAuth, .boolean),

        // AUTH: the users and the brake on failures.
        .optional("auth", "users_file", flag: "users-file", \.auth.usersFile, .path),
        .scalar("auth", "max_failures", flag: "auth-max-failures", \.auth.failures.maxFailures, .integer(1...1000)),
        .scalar(
            "auth", "failure_window", flag: "auth-failure-window", \.auth.failures.window,
            .duration(1...86_400)),
        .scalar("auth", "failure_delay", flag: "auth-failure-delay", \.auth.failures.delay, .duration(0...600)),

        // SMTP limits.
        .scalar(
            "limits", "max_message_size", flag: "max-message-size", \.limits.maxMessageSize,
            .size(1...(1 << 30))),
        .scalar("limits", "max_recipients", flag: "max-recipients", \.limits.maxRecipients, .integer(1...10_000)),
        .scalar(
            "limits", "max_command_line_length", flag: "max-command-line-length",
            \.limits.maxCommandLineLength, .integer(512...65_536, unit: "octets")),
        .scalar("limits", "max_errors", flag: "max-errors", \.limits.maxErrors, .integer(0...1000)),
        .scalar("limits", "bare_lf", flag: "bare-lf", \.limits.bareLineFeedPolicy, .choice),

        // Timeouts and rates.
        .scalar("timeouts", "command", flag: "command-timeout", \.timeouts.command, .duration(1...86_400)),
        .scalar("timeouts", "data", flag: "data-timeout", \.timeouts.dataBlock, .duration(1...86_400)),
        .scalar("timeouts", "submission", flag: "submission-timeout", \.timeouts.submission, .duration(1...86_400)),
        .scalar(
            "timeouts", "min_data_rate", flag: "min-data-rate", \.timeouts.minDataRate,
            .number(0...1e12, unit: "octets per second")),
        .scalar(
            "timeouts", "shutdown_grace", flag: "shutdown-grace", \.timeouts.shutdownGracePeriod,
            .duration(0.1...86_400)),

        // Sender and recipient policy.
        .optional("senders", "sender_address", flag: "sender-address", \.translation.senderAddress, .mailAddress),
        .list("senders", "verified_domains", flag: "verified-domain", \.translation.verifiedDomains, .domainName),
        .optional("senders", "postmaster_address", flag: "postmaster-address", \.limits.postmaster, .mailbox),

        // Local recipients: `root: ops@example.com`, `"*": admin@example.com`.
        .list("aliases", "", flag: "alias", \.aliases, .alias),

        // Translation policy.
        .scalar(
            "translation", "attachment_types", flag: "attachment-types", \.translation.attachmentTypePolicy,
            .choice),
        .scalar(
            "translation", "subject_placeholder", flag: "subject-placeholder",
            \.translation.subjectPlaceholder, .text()),
        .scalar(
            "translation", "empty_body_placeholder", flag: "empty-body-placeholder",
            \.translation.emptyBodyPlaceholder, .text()),
        .list("translation", "forward_headers", flag: "forward-header", \.translation.headerAllowList, .headerName),
        .list("translation", "drop_headers", flag: "drop-header", \.translation.headerDenyList, .headerName),
        .scalar(
            "translation", "disable_engagement_tracking", flag: "disable-engagement-tracking",
            \.disableEngagementTracking, .boolean),
        .scalar(
            "translation", "max_request_size", flag: "max-request-size", \.translation.maxRequestSize,
            .size(1024...(1 << 30))),

        // ACS.
        .optional("acs", "endpoint", flag: "acs-endpoint", \.acs.endpoint, .endpointURL),
        .scalar("acs", "api_version", flag: "api-version", \.translation.apiVersion, .choice),
        .scalar("acs", "auth", flag: "acs-auth", \.acs.auth, .choice),
        .optional(
            "acs", "connection_string_file", flag: "acs-connection-string-file", \.acs.connectionStringFile,
            .path),
        .optional("acs", "access_key_file", flag: "acs-access-key-file", \.acs.accessKeyFile, .path),
        .optional("acs", "client_secret_file", flag: "azure-client-secret-file", \.acs.clientSecretFile, .path),
        .optional("acs", "tenant_id", flag: "azure-tenant-id", \.acs.tenantID, .text("a tenant id (GUID or domain)")),
        .optional("acs", "client_id", flag: "azure-client-id", \.acs.clientID, .text("an application (client) id")),
        .optional(
            "acs", "federated_token_file", flag: "azure-federated-token-file", \.acs.federatedTokenFile,
            .path),
        .optional("acs", "ca_file", flag: "acs-ca-file", \.acs.caFile, .path),
        .optional("acs", "proxy", flag: "acs-proxy", \.acs.proxy, .proxyURL),
        .scalar("acs", "reply_after", flag: "reply-after", \.acs.replyAfter, .choice),
        .scalar("acs", "retry_budget", flag: "retry-budget", \.acs.retryBudget, .duration(1...86_400)),
        .scalar("acs", "attempt_timeout", flag: "attempt-timeout", \.acs.attemptTimeout, .duration(1...86_400)),
        .scalar("acs", "poll_deadline", flag: "poll-deadline", \.acs.pollDeadline, .duration(1...86_400)),
        .scalar("acs", "dry_run", flag: "dry-run", \.acs.dryRun, .boolean),
        .scalar(
            "acs", "allow_insecure_http_for_testing", flag: "allow-insecure-http-for-testing",
            \.acs.allowInsecureHTTPForTesting, .boolean),
        .scalar(
            "acs", "max_per_minute", flag: "acs-max-per-minute", \.delivery.maxPerMinute,
            .integer(0...1_000_000, unit: "sends")),
        .scalar(
            "acs", "max_per_hour", flag: "acs-max-per-hour", \.delivery.maxPerHour,
            .integer(0...100_000_000, unit: "sends")),

        // Delivery modes, retries and bounces; the spool.
        .scalar("delivery", "mode", flag: "delivery-mode", \.delivery.mode, .choice),
        .scalar("delivery", "direct_timeout", flag: "direct-timeout", \.delivery.directTimeout, .duration(1...600)),
        .scalar("delivery", "max_lifetime", flag: "max-lifetime", \.delivery.maxLifetime, .duration(1...(60 * 86_400))),
        .scalar("delivery", "min_backoff", flag: "min-backoff", \.delivery.minBackoff, .duration(0.1...86_400)),
        .scalar("delivery", "max_backoff", flag: "max-backoff", \.delivery.maxBackoff, .duration(0.1...86_400)),
        .scalar("delivery", "bounce", flag: "bounce", \.delivery.bounce, .bounceRecipient),
        .scalar("delivery", "max_in_flight", flag: "max-in-flight", \.delivery.maxInFlight, .integer(1...1024)),
        .scalar("spool", "directory", flag: "spool-directory", \.delivery.spoolDirectory, .path),
        .scalar(
            "spool", "max_messages", flag: "spool-max-messages", \.delivery.spoolMaxMessages,
            .integer(1...100_000_000)),
        .scalar("spool", "max_size", flag: "spool-max-size", \.delivery.spoolMaxSize, .size(1...(1 << 50))),
        .scalar("spool", "min_free", flag: "spool-min-free", \.delivery.spoolMinFree, .size(0...(1 << 50))),

        // Outbox, the sendmail command's socket, logging, admin listener.
        .optional("outbox", "directory", flag: "outbox", \.outboxDirectory, .path),
        .optional("sendmail", "socket", flag: "sendmail-socket", \.sendmailSocket, .absolutePath),
        .scalar("logging", "level", flag: "log-level", \.logLevel, .choice),
        .scalar("logging", "format", flag: "log-format", \.logFormat, .choice),
        .optional("admin", "listen", flag: "admin-listen", \.adminListen, .loopbackSocketAddress),
    ]

    /// Keys that name secrets: refused in the file and the `ACSGW_` environment, with directions.
    static let secretKeys: [String: String] = [
        "connection_string": "connection_string_file",
        "access_key": "access_key_file",
        "accesskey": "access_key_file",
        "key": "access_key_file",
        "client_secret": "client_secret_file",
        "secret": "client_secret_file",
        "password": "client_secret_file",
        "token": "federated_token_file",
    ]

    public static func key(section: String, name: String) -> ConfigurationKey? {
        keys.first { $0.section == section && $0.name == name }
    }

    public static func key(flag: String) -> ConfigurationKey? { keys.first { $0.flag == flag } }

    public static func key(environmentVariable: String) -> ConfigurationKey? {
        keys.first { $0.environmentVariable == environmentVariable }
    }
}

// MARK: - Value parsers for the gateway's own types

extension ValueParser where Value == SocketAddress {
    static let socketAddress = ValueParser(
        expected: "an address IP:PORT or [IPv6]:PORT, e.g. 127.0.0.1:2525", parse: { SocketAddress(hostAndPort: $0) },
        render: \.description)

    /// The admin listener serves metrics without authentication: loopback only.
    static let loopbackSocketAddress = ValueParser(
        expected: "a loopback address IP:PORT, e.g. 127.0.0.1:9464 (the admin listener has no authentication)",
        parse: { text in
            guard let address = SocketAddress(hostAndPort: text),
                IPNetwork.loopback.contains(where: { $0.contains(address) })
            else { return nil }
            return address
        },
        render: \.description)
}

extension ValueParser where Value == SMTPListener {
    /// The fields of a listener, in the order they are written.
    static let listenerFields = ["address", "tls", "auth", "name"]

    /// `ADDRESS [tls=none|starttls|implicit] [auth=none|optional|required] [name=NAME]`; the file writes the same
    /// as a mapping (`{address: 0.0.0.0:587, tls: starttls, auth: required}`).
    static let listener = ValueParser(
        expected: "a listener: an address IP:PORT with tls (none, starttls or implicit) and auth (none, optional "
            + "or required), e.g. {address: 0.0.0.0:587, tls: starttls, auth: required}",
        parse: { text in
            var fields: [String: String] = [:]
            for (index, token) in text.split(whereSeparator: { $0 == " " || $0 == "\t" }).enumerated() {
                let parts = token.split(separator: "=", maxSplits: 1).map(String.init)
                // A bare first token is the address; every other token is field=value.
                let (field, value) =
                    parts.count == 2 ? (parts[0], parts[1]) : index == 0 ? ("address", parts[0]) : ("", "")
                guard listenerFields.contains(field), fields[field] == nil, !value.isEmpty else { return nil }
                fields[field] = value
            }
            guard let address = fields["address"].flatMap({ SocketAddress(hostAndPort: $0) }),
                let tls = SMTPListener.TLSMode(rawValue: fields["tls"] ?? "none"),
                let auth = AuthRequirement(rawValue: fields["auth"] ?? "none")
            else { return nil }
            let nameCharacter = { (c: Character) in c.isASCII && (c.isLetter || c.isNumber || "-_.".contains(c)) }
            if let name = fields["name"], !name.allSatisfy(nameCharacter) { return nil }
            return SMTPListener(address: address, tls: tls, auth: auth, name: fields["name"])
        },
        render: { "\($0.address) tls=\($0.tls.rawValue) auth=\($0.auth.rawValue) name=\($0.name)" })
}

extension ValueParser where Value == BounceRecipient {
    /// `sender`, `none`, or `admin ADDRESS`.
    static let bounceRecipient = ValueParser(
        expected: "sender, none, or admin followed by an address (admin postmaster@example.com)",
        parse: { text in
            let words = text.split(separator: " ", omittingEmptySubsequences: true)
            switch (words.first?.lowercased(), words.count) {
            case ("sender", 1): return .sender
            case ("none", 1): return BounceRecipient.none
            case ("admin", 2): return ValueParser<String>.mailAddress.parse(String(words[1])).map { .admin($0) }
            default: return nil
            }
        },
        render: \.description)
}

extension ValueParser where Value == IPNetwork {
    static let network = ValueParser(
        expected: "a network in CIDR notation, e.g. 192.0.2.0/24 or 2001:db8::/32", parse: { IPNetwork($0) },
        render: \.description)
}

extension ValueParser where Value == String {
    /// A host or domain name: letters, digits, hyphens and dots (an A-label for IDNs).
    static let domainName = ValueParser(
        expected: "a domain name, e.g. mail.example.com",
        parse: { text in
            let labels = text.split(separator: ".", omittingEmptySubsequences: false)
            let valid =
                !text.isEmpty && text.utf8.count <= 253
                && labels.allSatisfy { label in
                    !label.isEmpty && label.utf8.count <= 63 && label.first != "-" && label.last != "-"
                        && label.unicodeScalars.allSatisfy {
                            $0.isASCII
                                && ($0.properties.isAlphabetic
                                    || ("0"..."9").contains($0) || $0 == "-")
                        }
                }
            return valid ? text.lowercased() : nil
        },
        render: { $0 })

    /// local@domain, as ACS accepts for MailFrom.
    static let mailAddress = ValueParser(
        expected: "an address local@domain, e.g. DoNotReply@mail.example.com",
        parse: { ValueParser<Mailbox>.mailbox.parse($0)?.address }, render: { $0 })

    /// An RFC 5322 field name.
    static let headerName = ValueParser(
        expected: "a header field name, e.g. X-Priority",
        parse: { text in
            text.utf8.allSatisfy { (33...126).contains($0) && $0 != UInt8(ascii: ":") } && !text.isEmpty ? text : nil
        },
        render: { $0 })

    /// The ACS resource endpoint: an http(s) URL with a host and no path.
    static let endpointURL = ValueParser(
        expected: "the resource endpoint, https://NAME.communication.azure.com",
        parse: { ACSEndpoint($0) == nil ? nil : $0 }, render: { SecretRedaction.maskingURLPassword($0) })

    /// A proxy URL; a password in it is shown as `***`.
    static let proxyURL = ValueParser(
        expected: "a proxy URL, e.g. http://proxy.example.com:3128",
        parse: { text in
            let lowered = text.lowercased()
            let schemes = ["http://", "https://", "socks4://", "socks4a://", "socks5://", "socks5h://"]
            return schemes.contains(where: lowered.hasPrefix) && text.count > 8 ? text : nil
        },
        render: { SecretRedaction.maskingURLPassword($0) })
}

extension ConfigurationKey {
    /// A list whose unset (nil) value is a default computed elsewhere (the host's names).
    static func optionalList<T>(
        _ section: String, _ name: String, flag: String, _ keyPath: WritableKeyPath<GatewaySettings, [T]?> & Sendable,
        _ parser: ValueParser<T>
    ) -> ConfigurationKey {
        ConfigurationKey(
            section: section, name: name, flag: flag, expected: "a list of " + parser.expected, isList: true,
            assign: { settings, values in parser.parseAll(values) { settings[keyPath: keyPath] = $0 } },
            reset: { $0[keyPath: keyPath] = nil },
            render: { settings in settings[keyPath: keyPath]?.map(parser.render) ?? [] })
    }
}

extension ValueParser where Value == String {
    /// An absolute path (a socket both the daemon and the sendmail command find, whatever their directory).
    static let absolutePath = ValueParser(
        expected: "an absolute file system path",
        parse: { ValueParser.path.parse($0).flatMap { $0.hasPrefix("/") ? $0 : nil } }, render: { $0 })
}

extension ValueParser where Value == LocalAlias {
    /// `NAME=ADDRESS` (the file's `NAME: ADDRESS`): a local user's name, or `*`, and a full address that is not
    /// itself local (an alias to `root@localhost` could only loop).
    static let alias = ValueParser(
        expected: "NAME: ADDRESS, a local name (or \"*\") and a full address, e.g. root: ops@example.com",
        parse: { text in
            guard let equals = text.firstIndex(of: "=") else { return nil }
            let name = text[..<equals].trimmingCharacters(in: .whitespaces)
            let addressText = text[text.index(after: equals)...].trimmingCharacters(in: .whitespaces)
            guard name == LocalRecipients.catchAllName || SMTPCommand.isLocalName(Substring(name)),
                let address = ValueParser<Mailbox>.mailbox.parse(addressText),
                address.domain.lowercased() != "localhost", address.domain.contains(".")
            else { return nil }
            return LocalAlias(name: name.lowercased(), address: address)
        },
        render: { "\($0.name)=\($0.address.address)" })
}

extension ValueParser where Value == Mailbox {
    /// An address by RFC 5321's Mailbox grammar (the SMTP parser's), exactly that and nothing after it.
    static let mailbox = ValueParser(
        expected: "an address local@domain, e.g. postmaster@example.com",
        parse: { text in
            guard
                case .success(.recipient(.mailbox(let mailbox), let parameters)) =
                    SMTPCommand.parse(Array("RCPT TO:<\(text)>".utf8)),
                parameters.isEmpty, mailbox.address == text
            else { return nil }
            return mailbox
        },
        render: \.address)
}
