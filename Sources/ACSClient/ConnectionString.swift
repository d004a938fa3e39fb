import Foundation

/// An ACS access key: the HMAC key decoded from base64. Its description never shows the key.
public struct AccessKey: Sendable, Equatable, CustomStringConvertible {
    let bytes: [UInt8]

    /// Decodes the base64 key as the portal shows it (88 characters for 64 octets).
    public init?(base64 text: String) {
        guard let data = Data(base64Encoded: text.trimmingCharacters(in: .whitespacesAndNewlines)), !data.isEmpty
        else { return nil }
        bytes = Array(data)
    }

    public var description: String { "***" }
}

/// The parts of an ACS connection string, `endpoint=https://NAME.communication.azure.com/;accesskey=KEY`.
///
/// Parsed like the SDKs (acs-email-api.md §3.2): split on `;`, each element on its **first** `=` (keeping the
/// base64 padding), key names case-insensitive, the trailing `/` of the endpoint removed. Unlike the Python
/// SDK, an `http://` scheme is honoured, for a local emulator.
public struct ConnectionString: Sendable, Equatable, CustomStringConvertible {
    public var endpoint: ACSEndpoint
    public var accessKey: AccessKey

    public struct ParseError: Error, Equatable, CustomStringConvertible {
        public var description: String
    }

    public init(endpoint: ACSEndpoint, accessKey: AccessKey) {
        self.endpoint = endpoint
        self.accessKey = accessKey
    }

    public init(parsing text: String) throws {
        var values: [String: String] = [:]
        for element in text.split(separator: ";", omittingEmptySubsequences: true) {
            let trimmed = element.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            guard let equals = trimmed.firstIndex(of: "=") else {
                throw ParseError(description: "connection string element without '=': expected key=value pairs")
            }
            let key = trimmed[..<equals].lowercased()
            values[key] = String(trimmed[trimmed.index(after: equals)...])
        }
        guard let endpointText = values["endpoint"], !endpointText.isEmpty else {
            throw ParseError(description: "connection string has no endpoint=")
        }
        guard let keyText = values["accesskey"], !keyText.isEmpty else {
            throw ParseError(description: "connection string has no accesskey=")
        }
        guard let endpoint = ACSEndpoint(endpointText) else {
            // The value is not shown: in a connection string put together by hand the key can stand where the
            // endpoint belongs (values swapped), and this message goes to the log.
            throw ParseError(
                description: "endpoint= is not an http(s) URL with a host and no path "
                    + "(https://NAME.communication.azure.com; its value is not shown, it may be the key)")
        }
        guard let key = AccessKey(base64: keyText) else {
            throw ParseError(description: "accesskey is not valid base64")
        }
        self.init(endpoint: endpoint, accessKey: key)
    }

    /// Shows the endpoint and hides the key.
    public var description: String { "endpoint=\(endpoint.url);accesskey=***" }
}

/// The base URL of an ACS resource, and the `Host` value requests are signed with.
public struct ACSEndpoint: Sendable, Equatable, CustomStringConvertible {
    /// `https://NAME.communication.azure.com` without a trailing slash.
    public var url: String
    public var scheme: String
    /// `host` or `host:port` when the port is not the scheme's default — exactly the `Host` header
    /// libcurl sends for this URL (acs-email-api.md §3.1 step 5).
    public var authority: String

    public init?(_ text: String) {
        var trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        while trimmed.hasSuffix("/") { trimmed.removeLast() }
        guard let components = URLComponents(string: trimmed), let scheme = components.scheme?.lowercased(),
            scheme == "https" || scheme == "http", let host = components.host, !host.isEmpty,
            components.path.isEmpty, components.query == nil, components.user == nil
        else { return nil }
        self.scheme = scheme
        let defaultPort = scheme == "https" ? 443 : 80
        let hostText = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        if let port = components.port, port != defaultPort {
            authority = "\(hostText.lowercased()):\(port)"
        } else {
            authority = hostText.lowercased()
        }
        url = "\(scheme)://\(authority)"
    }

    public var description: String { url }
}
