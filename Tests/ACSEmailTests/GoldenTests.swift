import Foundation
import MailParser
import Testing

@testable import ACSEmail

/// Whole-message behaviour pinned by golden files (docs/design.md principle 8).
///
/// `Fixtures/mime-to-acs/NNN-short-name.eml` is parsed and translated; the result must equal
/// `NNN-short-name.acs.json`: the request for a translated message, or `{"rejection": {…}}` for a rejected one.
/// Optional inputs beside it:
/// - `NNN-short-name.envelope.json`: `{"mailFrom": "…", "rcptTo": ["…"]}`. Without it, the envelope comes from
///   the headers (``Envelope/init(headersOf:)``).
/// - `NNN-short-name.policy.json`: fields of ``TranslationPolicy`` overriding ``baselinePolicy`` (`null`
///   clears an optional).
///
/// Every fixture runs twice, with LF and with CRLF line endings, against the same expected file. Fixtures are
/// pretty-printed for review; the comparison decodes the fixture into the model and re-encodes it with the
/// production encoder, then compares those bytes exactly with the encoder's output for the translation (and
/// compares the two JSON values, so a key the model does not know cannot hide in a fixture).
/// On a mismatch the actual output is written to `NNN-short-name.failed` (git-ignored); with `RECORD_GOLDEN=1`
/// the expected files are rewritten instead.
struct GoldenTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/mime-to-acs")

    /// The policy fixtures run with unless their `.policy.json` says otherwise: `example.com` is verified,
    /// and other senders are replaced by a configured address.
    static let baselinePolicy = TranslationPolicy(
        senderAddress: "DoNotReply@gateway.example", verifiedDomains: ["example.com"])

    static let fixtureNames: [String] = {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return files.filter { $0.hasSuffix(".eml") }.map { String($0.dropLast(4)) }.sorted()
    }()

    enum LineEnding: String, CaseIterable, Sendable {
        case lf, crlf
    }

    @Test func fixtureSet_isNotEmpty() {
        #expect(Self.fixtureNames.count >= 30)
    }

    @Test(arguments: fixtureNames, LineEnding.allCases)
    func translation_matchesGoldenFile(_ name: String, _ lineEnding: LineEnding) throws {
        let raw = try Data(contentsOf: Self.directory.appendingPathComponent("\(name).eml"))
        let message = Self.withLineEnding(Array(raw), lineEnding)
        let mail = MailParser().parse(message)
        let envelope = try Self.envelope(named: name) ?? Envelope(headersOf: mail)
        let policy = try Self.policy(named: name)
        let result = ACSTranslation.translateWithDetails(mail, envelope: envelope, policy: policy)

        let expectedURL = Self.directory.appendingPathComponent("\(name).acs.json")
        let failedURL = Self.directory.appendingPathComponent("\(name).failed")
        let pretty = Self.pretty(result, policy: policy)
        if ProcessInfo.processInfo.environment["RECORD_GOLDEN"] == "1" {
            if lineEnding == .lf {
                try Data(pretty).write(to: expectedURL)
            }
            return
        }
        let expected = try Data(contentsOf: expectedURL)
        let matches = try Self.matches(result, expected: expected, policy: policy)
        if matches {
            try? FileManager.default.removeItem(at: failedURL)
        } else {
            try Data(pretty).write(to: failedURL, options: .atomic)
        }
        #expect(matches, "\(name) (\(lineEnding.rawValue)): differs from \(name).acs.json, see \(name).failed")
    }

    /// Whether the translation result equals the fixture: exact bytes of the production encoder, and equal
    /// JSON values.
    static func matches(
        _ result: Result<TranslatedEmail, TranslationRejection>, expected: Data, policy: TranslationPolicy
    ) throws -> Bool {
        let expectedValue = try JSONSerialization.jsonObject(with: expected) as? NSDictionary
        switch result {
        case .success(let translated):
            guard expectedValue?["rejection"] == nil else {
                return false
            }
            let decoded = try JSONDecoder().decode(EmailMessage.self, from: expected)
            let canonical = ACSJSONEncoder(apiVersion: policy.apiVersion).encode(decoded)
            let actualValue = try JSONSerialization.jsonObject(with: Data(translated.requestBody)) as? NSDictionary
            return canonical == translated.requestBody && actualValue == expectedValue
        case .failure(let rejection):
            let actualValue =
                try JSONSerialization.jsonObject(with: Data(rejectionJSON(rejection, pretty: false))) as? NSDictionary
            return actualValue == expectedValue
        }
    }

    /// The fixture form of a result: the pretty-printed request, or the rejection.
    static func pretty(_ result: Result<TranslatedEmail, TranslationRejection>, policy: TranslationPolicy) -> [UInt8] {
        switch result {
        case .success(let translated):
            ACSJSONEncoder(apiVersion: policy.apiVersion, prettyPrinted: true).encode(translated.message)
        case .failure(let rejection):
            rejectionJSON(rejection, pretty: true) + [UInt8(ascii: "\n")]
        }
    }

    static func rejectionJSON(_ rejection: TranslationRejection, pretty: Bool) -> [UInt8] {
        var writer = JSONWriter(pretty: pretty)
        writer.object { w in
            w.member("rejection") { w in
                w.object { w in
                    w.member("reason") { $0.string(rejection.reason.rawValue) }
                    w.member("text") { $0.string(rejection.text) }
                }
            }
        }
        return writer.bytes
    }

    /// The message with every line break turned into `lineEnding`.
    static func withLineEnding(_ bytes: [UInt8], _ lineEnding: LineEnding) -> [UInt8] {
        var lf: [UInt8] = []
        lf.reserveCapacity(bytes.count)
        for (index, byte) in bytes.enumerated() {
            let startsCRLF = byte == 0x0D && index + 1 < bytes.count && bytes[index + 1] == 0x0A
            if !startsCRLF {
                lf.append(byte)
            }
        }
        guard lineEnding == .crlf else {
            return lf
        }
        var crlf: [UInt8] = []
        crlf.reserveCapacity(lf.count + lf.count / 20)
        for byte in lf {
            if byte == 0x0A {
                crlf.append(0x0D)
            }
            crlf.append(byte)
        }
        return crlf
    }

    static func envelope(named name: String) throws -> Envelope? {
        let url = directory.appendingPathComponent("\(name).envelope.json")
        guard FileManager.default.fileExists(atPath: url.path) else {
            return nil
        }
        struct File: Decodable {
            var mailFrom: String
            var rcptTo: [String]
        }
        let file = try JSONDecoder().decode(File.self, from: Data(contentsOf: url))
        return Envelope(mailFrom: file.mailFrom, recipients: file.rcptTo)
    }

    static func policy(named name: String) throws -> TranslationPolicy {
        var policy = baselinePolicy
        let url = directory.appendingPathComponent("\(name).policy.json")
        guard FileManager.default.fileExists(atPath: url.path) else {
            return policy
        }
        let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        for (key, value) in object {
            switch key {
            case "apiVersion": policy.apiVersion = try #require(ACSAPIVersion(rawValue: value as? String ?? ""))
            case "senderAddress": policy.senderAddress = value as? String
            case "verifiedDomains": policy.verifiedDomains = try #require(value as? [String])
            case "subjectPlaceholder": policy.subjectPlaceholder = try #require(value as? String)
            case "emptyBodyPlaceholder": policy.emptyBodyPlaceholder = try #require(value as? String)
            case "attachmentTypePolicy":
                policy.attachmentTypePolicy = try #require(AttachmentTypePolicy(rawValue: value as? String ?? ""))
            case "headerAllowList": policy.headerAllowList = try #require(value as? [String])
            case "headerDenyList": policy.headerDenyList = try #require(value as? [String])
            case "userEngagementTrackingDisabled": policy.userEngagementTrackingDisabled = value as? Bool
            case "maxRequestSize": policy.maxRequestSize = try #require(value as? Int)
            case "maxRecipients": policy.maxRecipients = try #require(value as? Int)
            default: Issue.record("\(name).policy.json: unknown key \(key)")
            }
        }
        return policy
    }
}
