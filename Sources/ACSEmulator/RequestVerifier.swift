import ACSClient
import Foundation

/// Checks a request's credentials the way ACS does (acs-email-api.md §3.4): an HMAC-SHA256 signature over
/// the method, the raw request target, the date, the `Host` header and the hash of the raw body, or a
/// configured bearer token. Pure: the clock is a parameter.
struct RequestVerifier: Sendable {
    private let signer: RequestSigner?
    private let bearerToken: String?
    private let clockSkewTolerance: TimeInterval

    /// The only `SignedHeaders` value the SDKs send (§3.1 step 8).
    static let signedHeaders = "x-ms-date;host;x-ms-content-sha256"

    init(accessKey: AccessKey?, bearerToken: String?, clockSkewTolerance: TimeInterval) {
        self.signer = accessKey.map(RequestSigner.init(key:))
        self.bearerToken = bearerToken
        self.clockSkewTolerance = clockSkewTolerance
    }

    /// Nil when the request is authentic, otherwise the 401 to answer.
    ///
    /// - Parameters:
    ///   - target: the request target exactly as received (path and query, undecoded).
    ///   - host: the `Host` header as received.
    ///   - header: looks a request header up by case-insensitive name.
    func check(
        method: String, target: String, host: String?, body: [UInt8], now: Date,
        header: (String) -> String?
    ) -> ACSErrorResponse? {
        guard let authorization = header("Authorization") else { return .denied() }
        if let token = Self.bearerToken(from: authorization) {
            guard let expected = bearerToken,
                Self.constantTimeEqual(Array(token.utf8), Array(expected.utf8))
            else { return .denied() }
            return nil
        }
        guard let signer, let signature = Self.hmacSignature(from: authorization) else { return .denied() }
        // Step 2: the hash must describe the bytes that arrived, whatever the signature says.
        guard let claimedHash = header("x-ms-content-sha256") else { return .denied() }
        let contentHash = RequestSigner.contentHash(body)
        guard claimedHash == contentHash else {
            return .denied("'x-ms-content-sha256' differs from generated content hash")
        }
        // Step 3: `x-ms-date`, or `Date` as the REST docs allow.
        guard let dateText = header("x-ms-date") ?? header("Date"), let date = Self.parseHTTPDate(dateText) else {
            return .denied()
        }
        guard abs(date.timeIntervalSince(now)) <= clockSkewTolerance else {
            return .denied(
                "The request time '\(dateText)' is outside the allowed window of "
                    + "±\(Int(clockSkewTolerance / 60)) minutes."
            )
        }
        guard let host else { return .denied() }
        // Step 4: the date is signed as sent, not re-formatted.
        let stringToSign = RequestSigner.stringToSign(
            method: method, pathAndQuery: target, date: dateText, host: host, contentHash: claimedHash)
        return signer.verify(signature: signature, stringToSign: stringToSign) ? nil : .denied()
    }

    /// The token of `Bearer <token>` (scheme case-insensitive, RFC 6750 §2.1), or nil.
    static func bearerToken(from authorization: String) -> String? {
        let parts = authorization.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : token
    }

    /// The signature of `HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=<b64>`, or nil
    /// when the header has another shape or signs other headers (§3.4 step 1).
    static func hmacSignature(from authorization: String) -> String? {
        let prefix = "HMAC-SHA256 SignedHeaders="
        guard authorization.hasPrefix(prefix) else { return nil }
        let rest = authorization.dropFirst(prefix.count)
        guard let ampersand = rest.firstIndex(of: "&") else { return nil }
        guard rest[..<ampersand] == signedHeaders else { return nil }
        let signaturePart = rest[rest.index(after: ampersand)...]
        let label = "Signature="
        guard signaturePart.hasPrefix(label) else { return nil }
        let signature = String(signaturePart.dropFirst(label.count))
        return signature.isEmpty ? nil : signature
    }

    /// Parses the request's date: the client's own ``HTTPDate``, so signer and verifier agree by construction.
    static func parseHTTPDate(_ text: String) -> Date? { HTTPDate.parse(text) }

    /// Compares without an early exit, so the time taken does not reveal how much of a token matched.
    static func constantTimeEqual(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
        var difference = UInt8(lhs.count == rhs.count ? 0 : 1)
        for index in 0..<max(lhs.count, rhs.count) {
            let a = index < lhs.count ? lhs[index] : 0
            let b = index < rhs.count ? rhs[index] : 0
            difference |= a ^ b
        }
        return difference == 0
    }
}
