import Foundation
import MailParser
import Testing

/// The external corpus (`../shared/corpus`): every message parses in bounded time, and the
/// RFC 8621 selection agrees with Stalwart mail-parser's expected output, or the difference is
/// listed, with a reason, in `Fixtures/stalwart-disagreements.txt`. Skipped as a whole, with one notice, where
/// the corpus is absent (a bare clone).
@Suite(.enabled(if: Paths.corpusIsPresent, Paths.corpusMissing)) struct CorpusConformanceTests {
    /// Stalwart's expected RFC 8621 lists (only the fields compared).
    struct Expected: Decodable {
        var textBody: [Int]
        var htmlBody: [Int]
        var attachments: [Int]

        enum CodingKeys: String, CodingKey {
            case textBody = "text_body"
            case htmlBody = "html_body"
            case attachments
        }
    }

    static func messageFiles() throws -> [URL] {
        let root = Paths.corpus
        guard let enumerator = FileManager.default.enumerator(at: root, includingPropertiesForKeys: nil) else {
            return []
        }
        var files: [URL] = []
        for case let url as URL in enumerator {
            let name = url.lastPathComponent
            if url.pathExtension == "eml" || (name.hasPrefix("msg_") && url.pathExtension == "txt") {
                files.append(url)
            }
        }
        return files.sorted { $0.path < $1.path }
    }

    static func relativePath(_ url: URL) -> String {
        String(url.standardizedFileURL.path.dropFirst(Paths.corpus.standardizedFileURL.path.count + 1))
    }

    @Test func corpusIsPresentAndNonEmpty() throws {
        let files = try Self.messageFiles()
        #expect(files.count >= 100, "expected the shared corpus at \(Paths.corpus.path), found \(files.count) messages")
        #expect(files.contains { $0.path.contains("/stalwart/") })
        #expect(files.contains { $0.path.contains("/nodemailer/") })
        #expect(files.contains { $0.path.contains("/cpython/") })
    }

    @Test(arguments: LineEnding.allCases)
    func everyMessageParsesQuickly(_ ending: LineEnding) throws {
        let files = try Self.messageFiles()
        try #require(!files.isEmpty)
        let clock = ContinuousClock()
        for file in files {
            let input = ending.apply(Array(try Data(contentsOf: file)))
            let elapsed = clock.measure {
                let mail = MailParser().parse(input)
                #expect(mail.root.partIndex == 0)
            }
            #expect(elapsed < .seconds(5), "\(Self.relativePath(file)) took \(elapsed)")
        }
    }

    /// The same message with LF and with CRLF line ends must give the same tree shape and selection.
    @Test func lineEndingsDoNotChangeTheStructure() throws {
        let files = try Self.messageFiles()
        try #require(!files.isEmpty)
        func shape(_ mail: ParsedMail) -> [[Int]] {
            var types: [Int] = []
            var stack = [mail.root]
            while let part = stack.popLast() {
                types.append(part.children.count)
                stack.append(contentsOf: part.children.reversed())
            }
            return [
                types, mail.textBody.map(\.partIndex), mail.htmlBody.map(\.partIndex),
                mail.attachments.map(\.partIndex),
            ]
        }
        for file in files {
            let raw = Array(try Data(contentsOf: file))
            let lf = MailParser().parse(LineEnding.lf.apply(raw))
            let crlf = MailParser().parse(LineEnding.crlf.apply(raw))
            #expect(shape(lf) == shape(crlf), "\(Self.relativePath(file))")
            #expect(lf.subject == crlf.subject, "\(Self.relativePath(file))")
        }
    }

    /// One disagreement line: `path | fields | reason`.
    struct Listed: Hashable {
        var path: String
        var fields: String
    }

    static func listedDisagreements() throws -> [Listed: String] {
        let url = Paths.fixtures.appendingPathComponent("stalwart-disagreements.txt")
        let text = try String(contentsOf: url, encoding: .utf8)
        var listed: [Listed: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") && !line.allSatisfy(\.isWhitespace) {
            let columns = line.split(separator: "|", maxSplits: 2).map { $0.trimmingCharacters(in: .whitespaces) }
            guard columns.count == 3, !columns[2].isEmpty else {
                Issue.record("malformed disagreement line (want `path | fields | reason`): \(line)")
                continue
            }
            listed[Listed(path: columns[0], fields: columns[1])] = columns[2]
        }
        return listed
    }

    @Test func stalwartBodySelectionAgreesOrIsListed() throws {
        let files = try Self.messageFiles().filter { $0.path.contains("/stalwart/") }
        try #require(files.count >= 50, "Stalwart messages missing from \(Paths.corpus.path)")
        let listed = try Self.listedDisagreements()
        var found: Set<Listed> = []
        var comparisons = 0
        var agreements = 0
        var messagesFullyAgreeing = 0
        for file in files {
            let raw = Array(try Data(contentsOf: file))
            var messageAgrees = true
            for ending in LineEnding.allCases {
                let jsonURL = file.deletingPathExtension().appendingPathExtension(ending == .lf ? "json" : "crlf.json")
                let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: jsonURL))
                let mail = MailParser().parse(ending.apply(raw))
                var differing: [String] = []
                if mail.textBody.map(\.partIndex) != expected.textBody { differing.append("textBody") }
                if mail.htmlBody.map(\.partIndex) != expected.htmlBody { differing.append("htmlBody") }
                if mail.attachments.map(\.partIndex) != expected.attachments { differing.append("attachments") }
                comparisons += 1
                let key = Listed(path: Self.relativePath(jsonURL), fields: differing.joined(separator: ","))
                if differing.isEmpty {
                    agreements += 1
                    continue
                }
                messageAgrees = false
                found.insert(key)
                if listed[key] == nil {
                    Issue.record(
                        """
                        unlisted disagreement: \(key.path) | \(key.fields)
                          ours:     text \(mail.textBody.map(\.partIndex)) html \(mail.htmlBody.map(\.partIndex)) \
                        attachments \(mail.attachments.map(\.partIndex))
                          stalwart: text \(expected.textBody) html \(expected.htmlBody) \
                        attachments \(expected.attachments)
                        """)
                }
            }
            if messageAgrees { messagesFullyAgreeing += 1 }
        }
        for stale in Set(listed.keys).subtracting(found) where !stale.fields.hasPrefix("text[") {
            Issue.record("listed disagreement no longer disagrees (remove it): \(stale.path) | \(stale.fields)")
        }
        print(
            "stalwart agreement: \(agreements)/\(comparisons) (LF and CRLF inputs),",
            "\(messagesFullyAgreeing)/\(files.count) messages")
        #expect(comparisons == files.count * 2)
    }

    /// The decoded text of every text part Stalwart shows (its `Text`/`Html` bodies), compared
    /// with ``MIMEPart/text`` at the same index: an independent check of transfer and charset
    /// decoding. Differences are listed as `text[N]` lines in the same file.
    @Test func stalwartDecodedTextAgreesOrIsListed() throws {
        let files = try Self.messageFiles().filter { $0.path.contains("/stalwart/") }
        try #require(files.count >= 50, "Stalwart messages missing from \(Paths.corpus.path)")
        let listed = try Self.listedDisagreements()
        var found: Set<Listed> = []
        var comparisons = 0
        var agreements = 0
        for file in files {
            let raw = Array(try Data(contentsOf: file))
            for ending in LineEnding.allCases {
                let jsonURL = file.deletingPathExtension().appendingPathExtension(ending == .lf ? "json" : "crlf.json")
                let json = try JSONSerialization.jsonObject(with: Data(contentsOf: jsonURL)) as? [String: Any]
                let parts = try #require(json?["parts"] as? [[String: Any]])
                let mail = MailParser().parse(ending.apply(raw))
                // The top-level numbering space: do not descend into embedded messages.
                var ours: [Int: MIMEPart] = [:]
                var stack = [mail.root]
                while let part = stack.popLast() {
                    ours[part.partIndex] = part
                    if !part.contentType.hasPrefix("message/") { stack.append(contentsOf: part.children) }
                }
                for (index, part) in parts.enumerated() {
                    let body = part["body"] as? [String: Any]
                    guard let expected = (body?["Text"] as? String) ?? (body?["Html"] as? String) else { continue }
                    comparisons += 1
                    if ours[index]?.text == expected {
                        agreements += 1
                        continue
                    }
                    let key = Listed(path: Self.relativePath(jsonURL), fields: "text[\(index)]")
                    found.insert(key)
                    if listed[key] == nil {
                        Issue.record(
                            """
                            unlisted disagreement: \(key.path) | \(key.fields)
                              ours:     \(String(describing: ours[index]?.text).prefix(120))
                              stalwart: \(expected.debugDescription.prefix(120))
                            """)
                    }
                }
            }
        }
        for stale in Set(listed.keys).subtracting(found) where stale.fields.hasPrefix("text[") {
            Issue.record("listed disagreement no longer disagrees (remove it): \(stale.path) | \(stale.fields)")
        }
        print("stalwart decoded-text agreement: \(agreements)/\(comparisons) text parts (LF and CRLF inputs)")
        #expect(comparisons > 150)
    }
}
