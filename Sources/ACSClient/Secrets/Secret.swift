import Foundation

/// A secret value (a client secret, a connection string, an identity header). Printing, interpolating or
/// dumping it shows `***`; only ``value`` reveals it, so every use of the secret is visible in the code.
public struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The secret itself. Never log it.
    public let value: String

    public init(_ value: String) {
        self.value = value
    }

    public var description: String { "***" }
    public var debugDescription: String { "***" }
    public var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

/// A configuration problem the operator must fix: a missing or unreadable secret, an incomplete set of
/// variables, an insecure URL. The message names the variable, file or credential concerned and never
/// contains a secret.
public struct CredentialConfigurationError: Error, Sendable, Equatable, CustomStringConvertible {
    public var message: String

    public init(_ message: String) {
        self.message = message
    }

    public var description: String { message }
}
