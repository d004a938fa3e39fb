import ACSClient
import ArgumentParser
import Dispatch
import Foundation
import Gateway
import Logging
import SMTPServer
import Spool

/// `check-config`: loads the configuration exactly as `serve` would, prints the effective result, and
/// resolves the credentials (offline by default; `--online` also asks ACS whether they work).
struct CheckConfig: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Check the configuration and print the effective settings (secrets shown as ***).",
        discussion: """
            Reads the configuration file, the ACSGW_* environment and the flags exactly as `serve` does, prints \
            every key with its value and where it came from, then checks the listeners, the TLS certificate and \
            key (that they load and match; the expiry date is shown) and the AUTH users file (its users and \
            senders, never the hashes), then the credentials: that each secret can be read and parsed (its value \
            is never printed). With --online it also sends ACS one request that \
            sends no mail, to check the endpoint and credentials. Exits 0 when everything holds, 78 on a \
            configuration error, 1 when the credentials or the online check fail.
            """)

    @Flag(help: "Also check the endpoint and credentials against ACS (one request that sends no mail).")
    var online = false

    @Flag(help: "Print only problems, nothing when all is well.")
    var quiet = false

    @OptionGroup var options: GatewayConfigurationOptions

    func run() throws {
        let environment = ProcessInfo.processInfo.environment
        let loaded = try options.load(environment: environment)
        let settings = loaded.settings
        if !quiet {
            print("# acs-smtp-gateway effective configuration")
            print("# file: \(loaded.file ?? "none (built-in defaults, environment and flags only)")")
            print(ConfigurationRendering.yaml(loaded), terminator: "")
        }
        checkListeners(settings)

        guard settings.acs.isConfigured(environment: environment) else {
            if !quiet { print("# delivery: outbox \(settings.outboxDirectory ?? "./outbox") (no ACS configured)") }
            // Under systemd the unit hands the connection string over with LoadCredential=, which a shell
            // does not have: say how to check it instead of leaving "outbox" unexplained.
            let unitCredential = "/etc/acs-smtp-gateway/connection-string"
            if environment["CREDENTIALS_DIRECTORY"] == nil, FileManager.default.fileExists(atPath: unitCredential) {
                print(
                    "# note: \(unitCredential) exists; the systemd unit passes it as a credential, which this shell "
                        + "does not have. Check it with: check-config --acs-connection-string-file \(unitCredential)")
            }
            if online {
                printError("check-config --online: no ACS is configured, so there is nothing to check")
                throw ExitCode(1)
            }
            return
        }
        let transport: CurlMultiTransport
        let credentials: ACSCredentials
        do {
            transport = try CurlMultiTransport(options: .init(caFile: settings.acs.caFile, proxy: settings.acs.proxy))
            credentials = try ACSCredentials.resolve(
                settings.acs.credentialOptions, secrets: SecretSource(environment: environment), transport: transport)
        } catch {
            printError("credentials: \(error)")
            throw ExitCode(1)
        }
        if !quiet {
            print(
                "# delivery: \(settings.acs.dryRun ? "outbox (dry run); ACS would be " : "")ACS \(credentials.endpoint)"
            )
            print("# credentials: \(credentials.method); secret ***")
            print("# mode: \(Self.modeLine(settings.delivery))")
            for warning in credentials.warnings { print("# warning: \(warning)") }
        }
        guard online else {
            if !quiet { print("# not contacted ACS (use --online to check the credentials against it)") }
            return
        }

        let client = ACSEmailClient(
            configuration: settings.acs.clientConfiguration(
                endpoint: credentials.endpoint, apiVersion: settings.translation.apiVersion.rawValue),
            authenticator: credentials.authenticator, transport: transport)
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox()
        client.probe { result in
            box.result = result
            done.signal()
        }
        done.wait()
        switch box.result {
        case .credentialsAccepted(let status):
            print(
                "online: ACS \(credentials.endpoint) accepted the credentials (HTTP \(status) for a made-up operation id)"
            )
            print(
                "online: senders not checked: ACS has no request that verifies a MailFrom address without sending "
                    + "mail; `acs-smtp-gateway send-test --to ADDRESS` sends one real message through the gateway")
        case .credentialsRefused(let status, let code, let message):
            printError(
                "online: ACS refused the credentials: HTTP \(status) \(code ?? "") \(message ?? ""); likely cause: "
                    + ACSReplyMapping.likelyCause(status: status, code: code, message: message))
            throw ExitCode(1)
        case .notAuthenticated(let error):
            printError("online: could not get a token for ACS: \(error.message)")
            throw ExitCode(1)
        case .unreachable(let detail):
            printError("online: could not check ACS \(credentials.endpoint): \(detail)")
            throw ExitCode(1)
        case nil:
            printError("online: no answer")
            throw ExitCode(1)
        }
    }

    /// The listeners, the certificate and the users file, loaded as `serve` loads them; a problem is a
    /// configuration error (exit 78).
    private func checkListeners(_ settings: GatewaySettings) {
        var failed = false
        if !quiet {
            for listener in settings.serverConfiguration.listeners {
                print(
                    "# listener: \(listener.address) tls: \(listener.tls.rawValue), auth: \(listener.auth.rawValue), "
                        + "socket name: \(listener.name)")
            }
        }
        if let certificate = settings.tls.certificate, let key = settings.tls.key {
            do {
                let context = try TLSContext(
                    certificateFile: certificate, keyFile: key, minimumVersion: settings.tls.minVersion,
                    ciphers: settings.tls.ciphers)
                let summary = context.certificate
                let days = Int(summary.notAfter.timeIntervalSinceNow / 86_400)
                if !quiet {
                    print(
                        "# tls: certificate \(certificate): \(summary.subject), chain of \(summary.chainLength), valid "
                            + "until \(TLSContext.iso8601(summary.notAfter)) (\(days) days); key \(key) matches")
                }
                for warning in context.warnings { print("# warning: \(warning)") }
            } catch {
                printError("\(error)")
                failed = true
            }
        }
        if let path = settings.auth.usersFile {
            do {
                let users = try UsersFile.load(path: path)
                if !quiet {
                    let count = users.entries.count
                    print("# auth: users file \(path): \(count) user\(count == 1 ? "" : "s")")
                    for entry in users.entries {
                        let senders =
                            entry.senders.isEmpty ? "none" : entry.senders.map(\.description).joined(separator: ", ")
                        print("#   \(entry.name): may send as \(senders)")
                    }
                }
                for warning in users.warnings { print("# warning: \(warning)") }
            } catch {
                for problem in error.problems { printError(problem) }
                failed = true
            }
        }
        if failed { Foundation.exit(78) }
    }

    private func printError(_ text: String) {
        FileHandle.standardError.write(Data(("acs-smtp-gateway: " + text + "\n").utf8))
    }
}

private final class ResultBox: @unchecked Sendable {
    var result: ACSEmailClient.ProbeResult?
}

extension CheckConfig {
    /// What the delivery mode means for this configuration, and the spool it uses.
    static func modeLine(_ delivery: DeliverySettings) -> String {
        let spool = delivery.spoolDirectory
        let state: String
        if Spool.hasMessages(in: spool) {
            state = "\(Spool.messageCount(in: spool)) message(s) waiting"
        } else if FileManager.default.fileExists(atPath: spool) {
            state = "empty"
        } else {
            state = "not created yet"
        }
        switch delivery.mode {
        case .direct:
            return "direct: every ACS outcome goes to the client; no spool"
                + (state.hasSuffix("waiting") ? " (the spool \(spool) still has \(state); it is delivered)" : "")
        case .hybrid:
            return "hybrid: ACS first (up to \(Int(delivery.directTimeout)) s), custody in the spool \(spool) "
                + "when ACS is busy (\(state))"
        case .queue:
            return "queue: every message spooled in \(spool) first (\(state))"
        }
    }
}
