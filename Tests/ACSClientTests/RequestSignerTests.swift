import Foundation
import Testing

@testable import ACSClient

/// The HMAC scheme against the vectors Microsoft's own Python SDK produced (acs-email-api.md §3.3).
@Suite struct RequestSignerTests {
    struct Vector: Sendable, CustomTestStringConvertible {
        var name: String
        var connectionString: String?
        var accessKey: String
        var method: String
        var url: String
        var hostSigned: String
        var pathAndQuery: String
        var date: String
        var body: [UInt8]
        var contentHash: String
        var stringToSign: String
        var signature: String
        var authorization: String
        var testDescription: String { name }
    }

    static let vectors: [Vector] = {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Fixtures/acs-hmac-vectors.json")
        guard let data = try? Data(contentsOf: url),
            let root = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let list = root["vectors"] as? [[String: Any]]
        else { return [] }
        return list.compactMap { entry in
            guard let name = entry["name"] as? String, let inputs = entry["inputs"] as? [String: Any],
                let expected = entry["expected"] as? [String: Any]
            else { return nil }
            let body = (inputs["body_base64"] as? String).flatMap { Data(base64Encoded: $0) } ?? Data()
            return Vector(
                name: name, connectionString: inputs["connection_string"] as? String,
                accessKey: inputs["access_key_base64"] as? String ?? "", method: inputs["method"] as? String ?? "",
                url: inputs["url"] as? String ?? "", hostSigned: inputs["host_signed"] as? String ?? "",
                pathAndQuery: inputs["path_and_query_signed"] as? String ?? "",
                date: inputs["x_ms_date"] as? String ?? "", body: Array(body),
                contentHash: expected["x-ms-content-sha256"] as? String ?? "",
                stringToSign: expected["string_to_sign"] as? String ?? "",
                signature: expected["signature"] as? String ?? "",
                authorization: expected["Authorization"] as? String ?? "")
        }
    }()

    @Test func allSixVectorsAreLoaded() {
        #expect(Self.vectors.count == 6)
    }

    @Test(arguments: vectors)
    func signsExactlyLikeTheSDK(_ vector: Vector) throws {
        let key = try #require(AccessKey(base64: vector.accessKey))
        let signer = RequestSigner(key: key)
        #expect(RequestSigner.contentHash(vector.body) == vector.contentHash)
        let stringToSign = RequestSigner.stringToSign(
            method: vector.method, pathAndQuery: vector.pathAndQuery, date: vector.date, host: vector.hostSigned,
            contentHash: vector.contentHash)
        #expect(stringToSign == vector.stringToSign)
        #expect(signer.signature(stringToSign: stringToSign) == vector.signature)
        #expect(signer.verify(signature: vector.signature, stringToSign: stringToSign))
        #expect(!signer.verify(signature: vector.signature, stringToSign: stringToSign + " "))

        let date = try #require(Self.parseHTTPDate(vector.date))
        let headers = signer.headers(
            method: vector.method, pathAndQuery: vector.pathAndQuery, host: vector.hostSigned, body: vector.body,
            date: date)
        #expect(headers.map(\.name) == ["x-ms-date", "x-ms-content-sha256", "Authorization"])
        #expect(headers.map(\.value) == [vector.date, vector.contentHash, vector.authorization])
    }

    @Test(arguments: vectors.filter { $0.connectionString != nil })
    func connectionStringGivesTheSignedHost(_ vector: Vector) throws {
        let parsed = try ConnectionString(parsing: vector.connectionString ?? "")
        #expect(parsed.accessKey == AccessKey(base64: vector.accessKey))
        // v4's connection string says http://127.0.0.1:8443 while the SDK signs host:port.
        #expect(parsed.endpoint.authority == vector.hostSigned)
    }

    @Test(arguments: [
        (0.0, "Thu, 01 Jan 1970 00:00:00 GMT"),
        (1_704_067_200, "Mon, 01 Jan 2024 00:00:00 GMT"),
        (1_709_193_600, "Thu, 29 Feb 2024 08:00:00 GMT"),
        (1_720_170_187, "Fri, 05 Jul 2024 09:03:07 GMT"),
        (4_102_444_799, "Thu, 31 Dec 2099 23:59:59 GMT"),
        (-1, "Wed, 31 Dec 1969 23:59:59 GMT"),
    ])
    func formatsHTTPDates(_ seconds: Double, _ expected: String) {
        #expect(RequestSigner.httpDate(Date(timeIntervalSince1970: seconds)) == expected)
    }

    private static func parseHTTPDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'GMT'"
        return formatter.date(from: text)
    }
}

@Suite struct ConnectionStringTests {
    static let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw=="

    @Test(arguments: [
        "endpoint=https://contoso.communication.azure.com/;accesskey=\(key)",
        "Endpoint=https://contoso.communication.azure.com;AccessKey=\(key)",
        "accesskey=\(key);endpoint=https://CONTOSO.communication.azure.com/",
        " endpoint=https://contoso.communication.azure.com/ ; accessKey=\(key) ;",
        "endpoint=https://contoso.communication.azure.com:443/;accesskey=\(key)",
    ])
    func parsesTheUsualSpellings(_ text: String) throws {
        let parsed = try ConnectionString(parsing: text)
        #expect(parsed.endpoint.url == "https://contoso.communication.azure.com")
        #expect(parsed.endpoint.authority == "contoso.communication.azure.com")
        #expect(parsed.accessKey == AccessKey(base64: Self.key))
    }

    @Test func keepsBase64PaddingAfterTheFirstEquals() throws {
        let parsed = try ConnectionString(parsing: "endpoint=http://127.0.0.1:8080;accesskey=YWJjZA==")
        #expect(parsed.accessKey.bytes == Array("abcd".utf8))
        #expect(parsed.endpoint.url == "http://127.0.0.1:8080")
        #expect(parsed.endpoint.authority == "127.0.0.1:8080")
    }

    @Test(arguments: [
        ("accesskey=\(key)", "no endpoint"),
        ("endpoint=https://x.example", "no accesskey"),
        ("endpoint=ftp://x.example;accesskey=\(key)", "not an http(s) URL"),
        ("endpoint=https://x.example/path;accesskey=\(key)", "not an http(s) URL"),
        // Values swapped: the key stands where the endpoint belongs, and must not be echoed.
        ("accesskey=https://x.example;endpoint=\(key)", "not an http(s) URL"),
        ("endpoint=https://x.example;accesskey=!!!", "not valid base64"),
        ("endpoint=https://x.example;accesskey", "without '='"),
        ("", "no endpoint"),
    ])
    func rejectsMalformedStrings_withAReason(_ text: String, _ reason: String) {
        do {
            _ = try ConnectionString(parsing: text)
            Issue.record("accepted \(text)")
        } catch let error as ConnectionString.ParseError {
            #expect(error.description.contains(reason))
            #expect(!error.description.contains(Self.key))
        } catch {
            Issue.record("unexpected \(error)")
        }
    }

    @Test func descriptionsNeverShowTheKey() throws {
        let parsed = try ConnectionString(parsing: "endpoint=https://x.example;accesskey=\(Self.key)")
        #expect(!"\(parsed)".contains(Self.key))
        #expect("\(parsed.accessKey)" == "***")
        #expect("\(parsed)".contains("accesskey=***"))
    }
}
