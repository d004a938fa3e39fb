import Foundation

/// A named secret and the places it may come from: a systemd credential name and an environment variable.
public struct SecretName: Sendable, Equatable, CustomStringConvertible {
    /// The file name under `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=NAME:/path`).
    public var credentialName: String
    /// The environment variable.
    public var environmentVariable: String

    public init(credentialName: String, environmentVariable: String) {
        self.credentialName = credentialName
        self.environmentVariable = environmentVariable
    }

    public static let connectionString = SecretName(
        credentialName: "acs-connection-string", environmentVariable: "ACS_CONNECTION_STRING")
    public static let accessKey = SecretName(credentialName: "acs-access-key", environmentVariable: "ACS_ACCESS_KEY")
    public static let tenantID = SecretName(credentialName: "azure-tenant-id", environmentVariable: "AZURE_TENANT_ID")
    public static let clientID = SecretName(credentialName: "azure-client-id", environmentVariable: "AZURE_CLIENT_ID")
    public static let clientSecret = SecretName(
        credentialName: "azure-client-secret", environmentVariable: "AZURE_CLIENT_SECRET")

    public var description: String { environmentVariable }
}

/// Where a secret was found, for the log (never the secret itself).
public enum SecretOrigin: Sendable, Equatable, CustomStringConvertible {
    /// `$CREDENTIALS_DIRECTORY/<name>`.
    case systemdCredential(path: String)
    /// A file named by configuration (`--acs-connection-string-file`…).
    case file(path: String)
    case environment(variable: String)

    var isSystemdCredential: Bool {
        if case .systemdCredential = self { return true }
        return false
    }

    public var description: String {
        switch self {
        case .systemdCredential(let path): "systemd credential \(path)"
        case .file(let path): "file \(SecretRedaction.display(path))"
        case .environment(let variable): "environment variable \(variable)"
        }
    }
}

/// A secret, where it came from, and warnings for the caller to log (a file readable by others).
public struct LoadedSecret: Sendable, Equatable, CustomStringConvertible {
    public var secret: Secret
    public var origin: SecretOrigin
    public var warnings: [String]

    public var description: String { "*** from \(origin)" }
}

/// Reads secrets, in this order, from `$CREDENTIALS_DIRECTORY/<name>` (systemd `LoadCredential=`), an
/// explicit file, or an environment variable — never from the command line, where `ps` would show them
/// (`SecretSourceTests`).
///
/// A trailing newline (as `echo` and editors leave) is removed. A configured file readable by group or others
/// yields a warning, not an error: the gateway still starts, and the operator sees what to fix.
public struct SecretSource: Sendable {
    /// The environment secrets and credential settings are read from (injectable for tests).
    public var environment: [String: String]
    /// `$CREDENTIALS_DIRECTORY`, set by systemd for units with `LoadCredential=`.
    public var credentialsDirectory: String?

    /// Secret files are short; refusing large ones keeps a wrong path (a log, a device) from being slurped.
    static let maxFileSize = 64 * 1024

    public init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.environment = environment
        self.credentialsDirectory = environment["CREDENTIALS_DIRECTORY"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// A non-secret setting from the environment, trimmed; nil when unset or empty.
    public func setting(_ variable: String) -> String? {
        guard let value = environment[variable]?.trimmingCharacters(in: .whitespacesAndNewlines), !value.isEmpty
        else { return nil }
        return value
    }

    /// Loads `name` from the first place that has it; nil when none does. Throws when a place that has it
    /// cannot be read or holds an empty value, and when an explicit `file` is missing.
    public func load(_ name: SecretName, file: String? = nil) throws -> LoadedSecret? {
        if let directory = credentialsDirectory {
            let path = (directory as NSString).appendingPathComponent(name.credentialName)
            if FileManager.default.fileExists(atPath: path) {
                return try Self.read(path: path, origin: .systemdCredential(path: path), describing: name)
            }
        }
        if let file, !file.isEmpty {
            return try Self.read(path: file, origin: .file(path: file), describing: name)
        }
        if let value = environment[name.environmentVariable] {
            let trimmed = Self.trimTrailingNewlines(value)
            guard !trimmed.isEmpty else {
                throw CredentialConfigurationError("\(name.environmentVariable) is set but empty")
            }
            return LoadedSecret(
                secret: Secret(trimmed), origin: .environment(variable: name.environmentVariable), warnings: [])
        }
        return nil
    }

    /// Reads one secret file.
    static func read(path: String, origin: SecretOrigin, describing name: SecretName) throws -> LoadedSecret {
        var status = stat()
        guard stat(path, &status) == 0 else {
            throw CredentialConfigurationError(
                "\(name) from \(origin): cannot read it (\(String(cString: strerror(errno))))")
        }
        guard (status.st_mode & S_IFMT) == S_IFREG else {
            throw CredentialConfigurationError("\(name) from \(origin): not a regular file")
        }
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CredentialConfigurationError("\(name) from \(origin): cannot open it (permission denied?)")
        }
        defer { try? handle.close() }
        guard let data = try? handle.read(upToCount: maxFileSize + 1) else {
            throw CredentialConfigurationError("\(name) from \(origin): cannot read it")
        }
        guard data.count <= maxFileSize else {
            throw CredentialConfigurationError(
                "\(name) from \(origin): larger than \(maxFileSize) octets, not a secret")
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw CredentialConfigurationError("\(name) from \(origin): not UTF-8 text")
        }
        let value = trimTrailingNewlines(text)
        guard !value.isEmpty else { throw CredentialConfigurationError("\(name) from \(origin): empty") }
        var warnings: [String] = []
        // systemd restricts `$CREDENTIALS_DIRECTORY` to the unit's user itself (a private, read-only mount),
        // whatever the mode bits of the files in it say: only files the operator manages are checked.
        if status.st_mode & 0o044 != 0, !origin.isSystemdCredential {
            let mode = String(status.st_mode & 0o777, radix: 8)
            warnings.append("\(name) from \(origin) is readable by group or others (mode \(mode)); chmod 600 it")
        }
        return LoadedSecret(secret: Secret(value), origin: origin, warnings: warnings)
    }

    static func trimTrailingNewlines(_ text: String) -> String {
        var result = Substring(text)
        while let last = result.last, last == "\n" || last == "\r" || last == "\r\n" { result.removeLast() }
        return String(result)
    }
}
