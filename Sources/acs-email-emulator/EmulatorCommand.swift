import ACSClient
import ACSEmulator
import ArgumentParser
import Foundation
import Logging

/// `acs-email-emulator`: a local Azure Communication Services Email endpoint (like Azurite for Storage).
@main
struct EmulatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acs-email-emulator",
        abstract: "A local Azure Communication Services Email endpoint for tests and trials.",
        discussion: """
            Serves POST /emails:send and GET /emails/operations/{id} (api-version 2023-03-31, 2024-07-01-preview,
            2025-01-15-preview or 2025-09-01) over http (HTTP/1.1), or https with --tls-cert and --tls-key (HTTP/2 or
            HTTP/1.1 by ALPN, as ACS does; --no-http2 offers HTTP/1.1 only). Requests must be
            signed with HMAC-SHA256 using the access key (as the Azure SDKs do), or carry the --bearer-token.
            Prints a line containing "listening on" with the bound port (use port 0 to pick a free one) and exits
            0 on SIGTERM or SIGINT.

            Send quotas (off by default) work like ACS's: at most --quota-per-minute accepted sends in any sliding
            minute and --quota-per-hour in any sliding hour (ACS's defaults for a custom domain: 30 and 100). A send
            over a quota gets 429 TooManyRequests with Retry-After = the whole seconds until the oldest send of the
            full window leaves it. A repeated Operation-Id is the same operation: it is neither counted nor refused.
            Status reads are not limited. --quota-minute-seconds and --quota-hour-seconds shorten the windows for
            tests (e.g. a "minute" of 10 s).

            Admin routes (no authentication; bind to loopback):
              GET    /admin/messages   accepted messages as a JSON array of
                                       {"operationId","receivedAt","apiVersion","request","httpVersion",
                                        ["droppedAttachments"]}
              DELETE /admin/messages   forget them
              GET    /admin/requests   {"send":{"total":N,"statuses":{"202":N},"dropped":N,
                                       "httpVersions":{"2":N},"connections":N},"poll":{...},"other":{...}}
                                       ("dropped": connections reset by a refusing outage;
                                       "replays": sends of an Operation-Id already known)
              DELETE /admin/requests   reset the counts
              GET    /admin/faults     faults not used up yet ("count" = what is left)
              POST   /admin/faults     append one fault object or a JSON array of them
              DELETE /admin/faults     remove all faults
              GET    /admin/quota      {"perMinute":N|null,"perHour":N|null,"minuteSeconds":S,"hourSeconds":S,
                                       "used":{"minute":N,"hour":N}}
              POST   /admin/quota      change any of perMinute, perHour, minuteSeconds, hourSeconds
                                       (null turns a limit off), e.g. {"perMinute":2,"minuteSeconds":10}
              POST   /admin/reset      forget operations, messages, faults, counts and quota history

            Fault JSON (checked in order, first match wins; "count" requests, then used up; no count = forever):
              {"route":"send"|"poll"|"any",         default "send"
               "sender":"*@contoso.com",             optional pattern (* and ?), case-insensitive
               "recipient":"bounce-*@example.com",   optional pattern; matches if any recipient matches
               "count":2,
               ...one or more of:}
              {"status":429,"retryAfter":7}                         429 TooManyRequests with Retry-After
              {"status":500}  (or 502, 503, 504)                    5xx with an ACS error body
              {"status":400,"code":"InvalidSenderUserName","message":"Invalid email sender username."}
              {"status":401}                                        401 Denied
              {"delayMs":30000}                                     stall, then answer normally
              {"delayMs":200,"status":503}                          stall, then answer 503
              {"finalStatus":"Failed","code":"EmailDroppedAllRecipientsSuppressed","message":"..."}
                                                                    accept (202), polling ends Failed
            Outages (timed from when they are posted; before authentication; no patterns or count):
              {"outageMs":5000}                                     every send answered 503 for 5 s
              {"route":"any","outageMs":5000,"retryAfter":2}        every ACS request 503 + Retry-After: 2
              {"outageMs":5000,"refuse":true}                       every send's connection dropped (reset),
                                                                    no HTTP answer, for 5 s
            Example: curl -X POST http://127.0.0.1:8080/admin/faults -d '[{"status":503,"count":2}]'
            """)

    @Option(help: "Address to listen on, HOST:PORT ([::1]:PORT for IPv6). Default: 127.0.0.1:8443 (TLS), :8080.")
    var listen: String?

    @Option(help: "Connection string (endpoint=…;accesskey=…) whose access key verifies HMAC signatures.")
    var connectionString: String?

    @Option(help: "The base64 access key that verifies HMAC signatures (instead of --connection-string).")
    var accessKey: String?

    @Option(help: "A bearer token to accept as 'Authorization: Bearer <token>'.")
    var bearerToken: String?

    @Option(help: "PEM certificate chain for https.")
    var tlsCert: String?

    @Option(help: "PEM private key for https.")
    var tlsKey: String?

    @Flag(
        inversion: .prefixedNo,
        help: "With TLS, offer HTTP/2 as well as HTTP/1.1 by ALPN, as ACS does (plain http is HTTP/1.1 only).")
    var http2 = true

    @Option(help: "Append one JSON line per accepted message to this file.")
    var record: String?

    @Option(help: "The poll that reports the final status (1: the first poll says Succeeded; 0: the 202 already does).")
    var pollsUntilDone: Int = 1

    @Option(help: "Operations also stay Running for this many milliseconds after they are accepted.")
    var completionDelayMs: Int = 0

    @Option(help: "Retry-After seconds sent while an operation is running.")
    var retryAfter: Int = 1

    @Option(help: "A sender domain linked to the emulated resource (repeatable). None: any domain.")
    var senderDomain: [String] = []

    @Option(help: "An allowed sender address or local part, e.g. DoNotReply (repeatable). None: any.")
    var senderAddress: [String] = []

    @Flag(help: "Answer a repeated Operation-Id with a different body like an identical one instead of 409 Conflict.")
    var acceptChangedReplays = false

    @Option(help: "Accepted sends allowed in any sliding minute; more get 429 with Retry-After. Default: no limit.")
    var quotaPerMinute: Int?

    @Option(help: "Accepted sends allowed in any sliding hour; more get 429 with Retry-After. Default: no limit.")
    var quotaPerHour: Int?

    @Option(help: "The length in seconds of the quota's \"minute\", shorter for tests (e.g. 10).")
    var quotaMinuteSeconds: Double = 60

    @Option(help: "The length in seconds of the quota's \"hour\", shorter for tests (e.g. 60).")
    var quotaHourSeconds: Double = 3600

    @Option(help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func validate() throws {
        if connectionString != nil && accessKey != nil {
            throw ValidationError("give --connection-string or --access-key, not both")
        }
        if connectionString == nil && accessKey == nil && bearerToken == nil {
            throw ValidationError(
                "give --connection-string, --access-key or --bearer-token: requests must be authenticated")
        }
        if (tlsCert == nil) != (tlsKey == nil) {
            throw ValidationError("--tls-cert and --tls-key go together")
        }
        if pollsUntilDone < 0 || completionDelayMs < 0 || retryAfter < 0 {
            throw ValidationError("--polls-until-done, --completion-delay-ms and --retry-after must not be negative")
        }
        if let problem = sendQuota.problem {
            throw ValidationError("--quota-*: \(problem)")
        }
        if Logger.Level(rawValue: logLevel) == nil {
            throw ValidationError("unknown --log-level '\(logLevel)'")
        }
        _ = try listenAddress()
    }

    func run() async throws {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "acs-email-emulator")

        var key: AccessKey?
        if let connectionString {
            do {
                key = try ConnectionString(parsing: connectionString).accessKey
            } catch {
                throw ValidationError("--connection-string: \(error)")
            }
        } else if let accessKey {
            guard let parsed = AccessKey(base64: accessKey) else {
                throw ValidationError("--access-key is not valid base64")
            }
            key = parsed
        }
        let configuration = EmulatorConfiguration(
            accessKey: key, bearerToken: bearerToken, senderDomains: senderDomain, senderAddresses: senderAddress,
            pollsUntilDone: pollsUntilDone, completionDelay: .milliseconds(completionDelayMs),
            retryAfterSeconds: retryAfter, conflictOnDifferentBody: !acceptChangedReplays, recordFile: record,
            http2: http2, sendQuota: sendQuota)
        let tls = tlsCert.flatMap { cert in tlsKey.map { ACSEmulator.TLSFiles(certificateChain: cert, privateKey: $0) }
        }
        let (host, port) = try listenAddress()
        let scheme = tls == nil ? "http" : "https"
        if !["127.0.0.1", "::1", "localhost"].contains(host.lowercased()) {
            logger.warning(
                """
                listening on \(host), beyond loopback: the /admin routes have no authentication, so anyone who \
                can reach this address can read recorded messages and inject faults
                """)
        }
        let emulator: ACSEmulator
        do {
            emulator = try ACSEmulator(configuration: configuration, logger: logger)
        } catch {
            logger.critical("\(error)")
            throw ExitCode.failure
        }
        do {
            try await emulator.run(host: host, port: port, tls: tls) { boundPort in
                let authority = host.contains(":") ? "[\(host)]:\(boundPort)" : "\(host):\(boundPort)"
                logger.notice("acs-email-emulator listening on \(scheme)://\(authority)")
                // Also on stdout, unbuffered, for scripts that wait for the port.
                FileHandle.standardOutput.write(Data("acs-email-emulator listening on \(scheme)://\(authority)\n".utf8))
            }
        } catch {
            logger.critical("the emulator stopped: \(error)")
            throw ExitCode.failure
        }
        logger.notice("acs-email-emulator stopped")
    }

    private var sendQuota: SendQuota {
        SendQuota(
            perMinute: quotaPerMinute, perHour: quotaPerHour, minuteSeconds: quotaMinuteSeconds,
            hourSeconds: quotaHourSeconds)
    }

    /// `HOST:PORT`, `[IPv6]:PORT`, or the default for the scheme.
    private func listenAddress() throws -> (String, Int) {
        guard let listen else { return ("127.0.0.1", tlsCert == nil ? 8080 : 8443) }
        guard let colon = listen.lastIndex(of: ":"), let port = Int(listen[listen.index(after: colon)...]),
            (0...65_535).contains(port)
        else { throw ValidationError("--listen must be HOST:PORT, got '\(listen)'") }
        var host = String(listen[..<colon])
        if host.hasPrefix("[") && host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        }
        guard !host.isEmpty else { throw ValidationError("--listen must be HOST:PORT, got '\(listen)'") }
        return (host, port)
    }
}
