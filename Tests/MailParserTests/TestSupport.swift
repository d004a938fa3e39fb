import Foundation
import MailParser
import Testing

/// The two line-ending conventions every message-shaped input is run with.
enum LineEnding: String, CaseIterable, CustomTestStringConvertible, Sendable {
    case lf
    case crlf

    var testDescription: String { rawValue.uppercased() }

    /// `text` (written with "\n") as octets with this line ending.
    func bytes(_ text: String) -> [UInt8] {
        apply(Array(text.utf8))
    }

    /// Rewrites any mix of CRLF/LF in `octets` to this convention.
    func apply(_ octets: [UInt8]) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(octets.count + octets.count / 20)
        for byte in octets where byte != 0x0D {
            if byte == 0x0A && self == .crlf { output.append(0x0D) }
            output.append(byte)
        }
        return output
    }

    /// What a text body written with "\n" looks like after parsing with this convention.
    func text(_ text: String) -> String {
        self == .crlf ? text.replacingOccurrences(of: "\n", with: "\r\n") : text
    }
}

/// Parses `text` with the default limits after applying `ending`.
func parse(_ text: String, _ ending: LineEnding) -> ParsedMail {
    MailParser().parse(ending.bytes(text))
}

/// Locations outside the package, found from this file's path: `<package>/Tests/MailParserTests/…`.
enum Paths {
    static let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    static let packageRoot = testsDirectory.deletingLastPathComponent().deletingLastPathComponent()
    /// `../shared/corpus` relative to the package root (CI puts a copy of shared/ beside the clone), or the
    /// directory `ACSGW_TEST_CORPUS` names (pointing it at a missing path shows what a bare clone does).
    static let corpus =
        ProcessInfo.processInfo.environment["ACSGW_TEST_CORPUS"].map { URL(fileURLWithPath: $0) }
        ?? packageRoot.deletingLastPathComponent().appendingPathComponent("shared/corpus")
    /// Whether the corpus is there: a bare clone of the repository has no `../shared`.
    static let corpusIsPresent = FileManager.default.fileExists(atPath: corpus.path)
    /// Why the corpus suite is skipped, shown once by the test runner.
    static let corpusMissing = Comment(
        rawValue: "no shared corpus at \(corpus.path) (a bare clone has none; CI places shared/ beside the "
            + "repository, or set ACSGW_TEST_CORPUS): skipped the corpus parse-time, line-ending and Stalwart "
            + "conformance tests")
    static let fixtures = testsDirectory.appendingPathComponent("Fixtures")
}

extension ParsedMail {
    var codes: [String] { diagnostics.map(\.code) }
}
