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
        return Digest.constantTimeEqual(Array(given), Digest.hmacSHA256(key: key.bytes, message: Array(stringToSign.utf8)))
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

    /// RFC 1123 date in GMT with English names and a zero-padded day: `Mon, 01 Jan 2024 00:00:00 GMT`.
    /// Formatted by hand: no locale or formatter state can change it.
    public static func httpDate(_ date: Date) -> String {
        let seconds = Int(floor(date.timeIntervalSince1970))
        let days = seconds >= 0 ? seconds / 86_400 : (seconds - 86_399) / 86_400
        let secondOfDay = seconds - days * 86_400
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        let weekday = ((days % 7) + 11) % 7  // 1970-01-01 was a Thursday (index 4)
        let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(weekdays[weekday]), \(two(day)) \(months[month - 1]) \(year) "
            + "\(two(secondOfDay / 3600)):\(two(secondOfDay % 3600 / 60)):\(two(secondOfDay % 60)) GMT"
    }

    /// Days since 1970-01-01 to (year, month, day), Howard Hinnant's `civil_from_days`.
    static func civilDate(daysSinceEpoch days: Int) -> (Int, Int, Int) {
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthPrime = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthPrime + 2) / 5 + 1
        let month = monthPrime < 10 ? monthPrime + 3 : monthPrime - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
