import Foundation

/// Signs ACS requests with HMAC-SHA256 exactly as the Azure SDKs do (acs-email-api.md §3.1), verified
/// against the SDK-produced vectors in `Tests/ACSClientTests/Fixtures/acs-hmac-vectors.json`.
///
/// The signature covers the method, the path and query exactly as sent (the colon of `/emails:send`
/// unencoded), the date, the `Host` and the SHA-256 of the exact body octets.
public struct RequestSigner: Sendable {
    private let key: AccessKey

    public init(key: AccessKey) {
        self.key = key
    }

    /// The headers to add, in order: `x-ms-date`, `x-ms-content-sha256`, `Authorization`.
    public func headers(
        method: String, pathAndQuery: String, host: String, body: [UInt8], date: Date
    ) -> [(name: String, value: String)] {
        let dateText = Self.httpDate(date)
        let contentHash = Self.contentHash(body)
        let signature = self.signature(
            stringToSign: Self.stringToSign(
                method: method, pathAndQuery: pathAndQuery, date: dateText, host: host, contentHash: contentHash))
        return [
            ("x-ms-date", dateText),
            ("x-ms-content-sha256", contentHash),
            ("Authorization", "HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature=\(signature)"),
        ]
    }

    /// Base64 of the HMAC-SHA256 of the string to sign.
    public func signature(stringToSign: String) -> String {
        Data(Digest.hmacSHA256(key: key.bytes, message: Array(stringToSign.utf8))).base64EncodedString()
    }

    /// True when `signature` (base64) is the right one for `stringToSign`, compared in constant time.
    public func verify(signature: String, stringToSign: String) -> Bool {
        guard let given = Data(base64Encoded: signature) else { return false }
        return Digest.constantTimeEqual(
            Array(given), Digest.hmacSHA256(key: key.bytes, message: Array(stringToSign.utf8)))
    }

    /// `METHOD\npathAndQuery\ndate;host;contentHash`, no trailing newline.
    public static func stringToSign(
        method: String, pathAndQuery: String, date: String, host: String, contentHash: String
    ) -> String {
        "\(method.uppercased())\n\(pathAndQuery)\n\(date);\(host);\(contentHash)"
    }

    /// Base64 of the SHA-256 of the body (the empty body's hash for GET).
    public static func contentHash(_ body: [UInt8]) -> String {
        Data(Digest.sha256(body)).base64EncodedString()
    }

    /// The `x-ms-date` value: an IMF-fixdate in GMT (``HTTPDate``).
    public static func httpDate(_ date: Date) -> String { HTTPDate.format(date) }
}
