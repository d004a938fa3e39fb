import Foundation

/// What the token credentials share: URL and form encoding, sending a token request over the injected
/// transport, parsing the answer and classifying failures. Every message built here goes through
/// ``redact(_:)`` so that neither the secret sent nor a token received can reach a log.
struct TokenEndpoint: Sendable {
    /// A name for messages, e.g. "client secret credential".
    var credentialName: String
    var transport: HTTPTransport
    var now: @Sendable () -> Date

    // Token endpoints answer in well under a second; these bound a token fetch well inside one ACS attempt.
    static let timeout: TimeInterval = 10
    static let connectTimeout: TimeInterval = 5

    /// RFC 3986 unreserved characters: everything else is percent-encoded, as MSAL's form encoder does
    /// (so the scope goes out as `https%3A%2F%2Fcommunication.azure.com%2F%2F.default`, §4.2).
    static func percentEncode(_ text: String) -> String {
        var allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
        allowed.insert(charactersIn: "-._~")
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? ""
    }

    static func formEncode(_ fields: [(String, String)]) -> String {
        fields.map { "\(percentEncode($0.0))=\(percentEncode($0.1))" }.joined(separator: "&")
    }

    /// The host of a URL, for messages (never its query).
    static func host(of url: String) -> String {
        URLComponents(string: url)?.host ?? "the token endpoint"
    }

    /// True for loopback hosts: App Service and Container Apps serve their identity endpoint on
    /// `http://localhost:…` by design (§4.3).
    static func isLoopback(_ host: String) -> Bool {
        let lower = host.lowercased()
        return lower == "localhost" || lower.hasPrefix("127.") || lower == "::1" || lower == "[::1]"
    }

    /// Replaces every occurrence of the given secrets with `***`. Values shorter than 4 characters are left
    /// alone: replacing them would mangle the message and such a value is no real secret anyway.
    static func redact(_ message: String, secrets: [String]) -> String {
        var result = message
        for secret in secrets where secret.count >= 4 {
            result = result.replacingOccurrences(of: secret, with: "***")
        }
        return result
    }

    /// Sends `request` and turns the answer into a token or a classified error.
    ///
    /// - `secrets`: values that must never appear in a message (the client secret, the assertion, the
    ///   identity header); the token received is added to them.
    /// - `transientStatuses`: statuses besides 429 and 5xx worth retrying (IMDS: 404 and 410, §4.3).
    /// - `explainStatus`: a hint for a status, e.g. what an IMDS 400 means.
    func requestToken(
        _ request: HTTPRequest, secrets: [String], transientStatuses: Set<Int> = [],
        explainStatus: @escaping @Sendable (Int) -> String? = { _ in nil },
        completion: @escaping @Sendable (Result<AccessToken, AuthenticationError>) -> Void
    ) {
        let host = Self.host(of: request.url)
        let name = credentialName
        let now = self.now
        transport.perform(request) { result in
            switch result {
            case .failure(let error):
                let message = "\(name): token request to \(host) failed (\(error.kind.rawValue)): \(error.message)"
                completion(.failure(AuthenticationError(Self.redact(message, secrets: secrets), isTransient: true)))
            case .success(let response):
                completion(
                    Self.interpret(
                        response, host: host, credentialName: name, receivedAt: now(), secrets: secrets,
                        transientStatuses: transientStatuses, explainStatus: explainStatus))
            }
        }
    }

    static func interpret(
        _ response: HTTPResponse, host: String, credentialName: String, receivedAt: Date, secrets: [String],
        transientStatuses: Set<Int>, explainStatus: (Int) -> String?
    ) -> Result<AccessToken, AuthenticationError> {
        let json = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any]
        guard response.status == 200 else {
            let transient =
                response.status == 429 || response.status >= 500 || transientStatuses.contains(response.status)
            var message = "\(credentialName): \(host) answered HTTP \(response.status)"
            // OAuth2 error shape (§4.2): error + error_description; managed identity endpoints use the same
            // names or an {"error": {"code", "message"}} object.
            if let code = json?["error"] as? String {
                message += " \(code)"
            } else if let error = json?["error"] as? [String: Any], let code = error["code"] as? String {
                message += " \(code)"
            }
            let detail =
                (json?["error_description"] as? String)
                ?? ((json?["error"] as? [String: Any])?["message"] as? String)
            if let detail, let firstLine = detail.split(whereSeparator: \.isNewline).first {
                // Entra descriptions run long (trace ids, timestamps); the first line names the cause.
                // Redacted before it is cut, so that the cut cannot leave part of a secret behind.
                message += ": \(redact(String(firstLine), secrets: secrets).prefix(300))"
            }
            if let hint = explainStatus(response.status) { message += " (\(hint))" }
            if response.status == 429, let retryAfter = response.header("retry-after") {
                message += ", retry after \(redact(retryAfter, secrets: secrets).prefix(40)) s"
            }
            return .failure(AuthenticationError(redact(message, secrets: secrets), isTransient: transient))
        }
        guard let json, let token = json["access_token"] as? String, !token.isEmpty else {
            return .failure(
                AuthenticationError(
                    "\(credentialName): \(host) answered 200 without an access_token (is this a token endpoint?)",
                    isTransient: false))
        }
        if let type = json["token_type"] as? String, type.lowercased() != "bearer" {
            // The endpoint's own words, quoted: redacted before they are cut to 40 characters, so a secret
            // echoed there shows neither whole nor in part, and the token sent beside it does not show either.
            let quoted = redact(type, secrets: secrets + [token]).prefix(40)
            return .failure(
                AuthenticationError(
                    "\(credentialName): \(host) issued a '\(quoted)' token, not a Bearer token", isTransient: false))
        }
        // Managed identity endpoints send numbers as strings ("expires_in": "86399", "expires_on": "<epoch>").
        let expiresOn: Date
        if let epoch = number(json["expires_on"]) {
            expiresOn = Date(timeIntervalSince1970: epoch)
        } else if let seconds = number(json["expires_in"]) {
            expiresOn = receivedAt.addingTimeInterval(seconds)
        } else {
            return .failure(
                AuthenticationError(
                    "\(credentialName): \(host) answered without a numeric expires_in or expires_on",
                    isTransient: false))
        }
        guard expiresOn > receivedAt else {
            return .failure(
                AuthenticationError(
                    "\(credentialName): \(host) issued a token that has already expired (clock skew?)",
                    isTransient: true))
        }
        let refreshOn = number(json["refresh_in"]).map { receivedAt.addingTimeInterval($0) }
        return .success(AccessToken(token: token, expiresOn: expiresOn, refreshOn: refreshOn))
    }

    /// A JSON number, or a string holding one.
    static func number(_ value: Any?) -> Double? {
        switch value {
        case let text as String: return Double(text.trimmingCharacters(in: .whitespaces))
        case let number as NSNumber: return number.doubleValue
        default: return nil
        }
    }
}
