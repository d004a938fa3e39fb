import ACSClient
import ArgumentParser
import Foundation

/// Where accepted mail goes: ACS when credentials are configured, the outbox otherwise.
/// Secrets are never flags: they come from files, systemd credentials or the environment.
struct DeliveryOptions: ParsableArguments {
    @Option(help: "ACS resource endpoint, https://NAME.communication.azure.com (or ACS_ENDPOINT).")
    var acsEndpoint: String?

    @Option(help: "File holding the ACS connection string (endpoint=…;accesskey=…).")
    var acsConnectionStringFile: String?

    @Option(help: "File holding the base64 ACS access key (with --acs-endpoint).")
    var acsAccessKeyFile: String?

    @Option(help: "File holding the Entra ID client secret (with AZURE_TENANT_ID and AZURE_CLIENT_ID).")
    var azureClientSecretFile: String?

    @Option(help: "PEM file of CA certificates to trust for ACS and token endpoints (a private CA).")
    var acsCaFile: String?

    @Option(help: "HTTP(S) proxy for ACS; by default https_proxy/no_proxy from the environment are honoured.")
    var acsProxy: String?

    @Option(help: "Reply to the SMTP client once ACS accepted the message (accepted) or after its final status (final).")
    var replyAfter: String = ReplyAfter.accepted.rawValue

    @Option(help: "Seconds all attempts of one message may take before the client gets a 451.")
    var retryBudget: Double = RetryPolicy().budget

    @Option(help: "Seconds one ACS request may take before it is abandoned and retried.")
    var attemptTimeout: Double = RetryPolicy().attemptTimeout

    @Option(help: "With --reply-after final: seconds to wait for the final status.")
    var pollDeadline: Double = 120

    @Flag(help: "Write to the outbox even when ACS credentials are configured.")
    var dryRun = false

    @Flag(help: "Allow a bearer token over plain http (a local emulator only).")
    var allowInsecureHttpForTesting = false

    /// Whether the operator configured ACS at all (then any error in it is fatal, never a silent outbox).
    func acsConfigured(environment: [String: String] = ProcessInfo.processInfo.environment) -> Bool {
        if acsEndpoint != nil || acsConnectionStringFile != nil || acsAccessKeyFile != nil { return true }
        if environment["ACS_CONNECTION_STRING"] != nil || environment["ACS_ENDPOINT"] != nil { return true }
        if let directory = environment["CREDENTIALS_DIRECTORY"] {
            return FileManager.default.fileExists(atPath: "\(directory)/acs-connection-string")
        }
        return false
    }

    func validate() throws {
        guard ReplyAfter(rawValue: replyAfter) != nil else {
            throw ValidationError("--reply-after must be accepted or final")
        }
        guard retryBudget > 0, attemptTimeout > 0, pollDeadline > 0,
            [retryBudget, attemptTimeout, pollDeadline].allSatisfy({ $0.isFinite && $0 <= 86_400 })
        else {
            throw ValidationError("--retry-budget, --attempt-timeout and --poll-deadline must be positive seconds, at most a day")
        }
        guard attemptTimeout <= retryBudget else {
            throw ValidationError("--attempt-timeout (\(attemptTimeout) s) must not exceed --retry-budget (\(retryBudget) s)")
        }
    }

    /// The poll deadline when replies wait for the final status, else 0.
    var pollDeadlineIfFinal: Double { ReplyAfter(rawValue: replyAfter) == .final ? pollDeadline : 0 }

    var credentialOptions: ACSCredentialOptions {
        ACSCredentialOptions(
            endpoint: acsEndpoint, connectionStringFile: acsConnectionStringFile, accessKeyFile: acsAccessKeyFile,
            clientSecretFile: azureClientSecretFile, allowInsecureHTTPForTesting: allowInsecureHttpForTesting)
    }

    func clientConfiguration(endpoint: ACSEndpoint, apiVersion: String) -> ACSClientConfiguration {
        var configuration = ACSClientConfiguration(endpoint: endpoint)
        configuration.apiVersion = apiVersion
        configuration.replyAfter = ReplyAfter(rawValue: replyAfter) ?? .accepted
        configuration.retry.budget = retryBudget
        configuration.retry.attemptTimeout = attemptTimeout
        configuration.pollDeadline = pollDeadline
        return configuration
    }
}
