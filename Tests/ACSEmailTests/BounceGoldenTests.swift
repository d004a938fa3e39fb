import Foundation
import Testing

@testable import ACSEmail

/// Whole bounce requests pinned by golden files, like the translation's (``GoldenTests``).
///
/// `Fixtures/bounce/NNN-short-name.report.json` holds `{"report": {…DeliveryFailureReport…}, "senderAddress",
/// "bounceRecipient"}` (`arrivalDate` in seconds since 1970), `NNN-short-name.headers` the original header
/// block (raw octets, possibly a whole message); the request must equal `NNN-short-name.acs.json`, compared as
/// ``GoldenTests`` compares translations. On a mismatch the actual request is written to
/// `NNN-short-name.failed`; with `RECORD_GOLDEN=1` the expected files are rewritten instead.
struct BounceGoldenTests {
    static let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        .appendingPathComponent("Fixtures/bounce")

    static let fixtureNames: [String] = {
        let files = (try? FileManager.default.contentsOfDirectory(atPath: directory.path)) ?? []
        return files.filter { $0.hasSuffix(".report.json") }.map { String($0.dropLast(".report.json".count)) }.sorted()
    }()

    /// The `.report.json` file.
    struct Input: Decodable {
        struct Report: Decodable {
            var reportingMTA: String
            var messageID: String
            var originalSender: String
            var recipients: [String]
            var arrivalDate: Double
            var status: String
            var diagnostic: String
            var action: String?
            var originalSubject: String?
        }

        var report: Report
        var senderAddress: String
        var bounceRecipient: String
    }

    @Test func fixtureSet_isNotEmpty() {
        #expect(Self.fixtureNames.count >= 3)
    }

    @Test(arguments: fixtureNames)
    func bounce_matchesGoldenFile(_ name: String) throws {
        let input = try JSONDecoder().decode(
            Input.self, from: Data(contentsOf: Self.directory.appendingPathComponent("\(name).report.json")))
        let headers = try Array(Data(contentsOf: Self.directory.appendingPathComponent("\(name).headers")))
        let fields = input.report
        let report = DeliveryFailureReport(
            reportingMTA: fields.reportingMTA, messageID: fields.messageID, originalSender: fields.originalSender,
            recipients: fields.recipients, arrivalDate: Date(timeIntervalSince1970: fields.arrivalDate),
            status: fields.status, diagnostic: fields.diagnostic, action: fields.action ?? "failed",
            originalHeaders: headers, originalSubject: fields.originalSubject)
        let message = Bounce.message(
            for: report, senderAddress: input.senderAddress, bounceRecipient: input.bounceRecipient)
        let body = Bounce.requestBody(
            for: report, senderAddress: input.senderAddress, bounceRecipient: input.bounceRecipient)
        let result = Result<TranslatedEmail, TranslationRejection>.success(
            TranslatedEmail(message: message, requestBody: body, notes: []))
        let policy = TranslationPolicy()

        let expectedURL = Self.directory.appendingPathComponent("\(name).acs.json")
        let failedURL = Self.directory.appendingPathComponent("\(name).failed")
        let pretty = GoldenTests.pretty(result, policy: policy)
        if ProcessInfo.processInfo.environment["RECORD_GOLDEN"] == "1" {
            try Data(pretty).write(to: expectedURL)
            return
        }
        let matches = try GoldenTests.matches(result, expected: Data(contentsOf: expectedURL), policy: policy)
        if matches {
            try? FileManager.default.removeItem(at: failedURL)
        } else {
            try Data(pretty).write(to: failedURL, options: .atomic)
        }
        #expect(matches, "\(name): differs from \(name).acs.json, see \(name).failed")
    }
}
