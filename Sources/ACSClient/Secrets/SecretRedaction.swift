/// Keeps secrets out of messages: every configuration value, path or endpoint that an error or a log line
/// repeats goes through ``display(_:)`` first, because operators paste secrets into the wrong place (a
/// connection string as a file name, a key as an endpoint, a password inside a proxy URL).
public enum SecretRedaction {
    /// What replaces a value that looks like a secret.
    public static let placeholder = "(a value that looks like a secret, not shown)"

    /// Whether `value` looks like a secret itself rather than a name, a path or a URL: a connection string
    /// (`…;accesskey=…`), a client secret assignment, or a long base64 blob such as an ACS access key.
    public static func looksSecret(_ value: String) -> Bool {
        let lowered = value.lowercased()
        if ["accesskey=", "sharedaccesskey=", "client_secret=", "password="].contains(where: lowered.contains) {
            return true
        }
        // An access key is 88 base64 characters; Entra client secrets are ~40 characters of [A-Za-z0-9~._-].
        // Paths and host names have separators ('/', '.', '-') in places base64 does not, or no digits.
        let scalars = value.unicodeScalars
        guard scalars.count >= 32, let first = scalars.first, first != "/", first != "." else { return false }
        let base64 = scalars.allSatisfy {
            $0.isASCII
                && ($0.properties.isAlphabetic || ("0"..."9").contains($0)
                    || "+/=".unicodeScalars.contains($0))
        }
        let secretLike = scalars.allSatisfy {
            $0.isASCII
                && ($0.properties.isAlphabetic || ("0"..."9").contains($0)
                    || "~._-".unicodeScalars.contains($0))
        }
        let mixed =
            scalars.contains { ("0"..."9").contains($0) } && scalars.contains { ("A"..."Z").contains($0) }
            && scalars.contains { ("a"..."z").contains($0) }
        return mixed && (base64 || (secretLike && !value.contains("/")))
    }

    /// `scheme://user:password@host…` with the password replaced by `***`.
    public static func maskingURLPassword(_ url: String) -> String {
        guard let schemeEnd = url.range(of: "://") else { return url }
        let rest = url[schemeEnd.upperBound...]
        let authorityEnd = rest.firstIndex(where: { "/?#".contains($0) }) ?? rest.endIndex
        guard let at = rest[..<authorityEnd].lastIndex(of: "@") else { return url }
        let userInfo = rest[..<at]
        guard let colon = userInfo.firstIndex(of: ":") else { return url }
        return String(url[..<colon]) + ":***" + String(url[at...])
    }

    /// The value as a message may show it: the placeholder for a secret, a URL without its password.
    public static func display(_ value: String) -> String {
        looksSecret(value) ? placeholder : maskingURLPassword(value)
    }
}
