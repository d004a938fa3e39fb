import Foundation
import Logging
import Synchronization
import Testing

@testable import Gateway

@Suite struct LineLogHandlerTests {
    final class Capture: Sendable {
        let lines = Mutex<[String]>([])
        var all: [String] { lines.withLock { $0 } }
    }

    private func logger(_ format: LineLogHandler.Format, level: Logger.Level = .trace) -> (Logger, Capture) {
        let capture = Capture()
        let handler = LineLogHandler(label: "test", format: format, level: level) { line in
            capture.lines.withLock { $0.append(line) }
        }
        return (Logger(label: "test", factory: { _ in handler }), capture)
    }

    @Test func logfmt_withSyslogPriority_andSortedFields() throws {
        let (log, capture) = logger(.logfmt)
        log.warning("delivery deferred", metadata: ["smtp.session": "abc", "acs.attempts": "3"])
        let line = try #require(capture.all.first)
        #expect(line.hasPrefix("<4>ts="))
        #expect(line.hasSuffix(" level=warning msg=\"delivery deferred\" acs.attempts=3 smtp.session=abc\n"))
    }

    @Test(arguments: [
        (Logger.Level.debug, 7), (.info, 6), (.notice, 5), (.warning, 4), (.error, 3), (.critical, 2),
    ])
    func levelsMapToSyslogPriorities(_ level: Logger.Level, _ priority: Int) {
        #expect(LineLogHandler.syslogPriority(level) == priority)
    }

    @Test func hostileValues_cannotForgeLinesOrFields() throws {
        let (log, capture) = logger(.logfmt)
        log.info("connection", metadata: ["smtp.helo": "evil\nlevel=critical msg=\"forged\" x=\"y\\"])
        let line = try #require(capture.all.first)
        #expect(line.filter { $0 == "\n" }.count == 1)
        #expect(line.contains(#"smtp.helo="evil\nlevel=critical msg=\"forged\" x=\"y\\""#))
    }

    @Test func json_isOneValidObjectPerLine() throws {
        let (log, capture) = logger(.json)
        log.error("boom \u{1}", metadata: ["key": "va\"lue\n"])
        let line = try #require(capture.all.first)
        #expect(line.hasPrefix("<3>{"))
        let object = try JSONSerialization.jsonObject(with: Data(line.dropFirst(3).utf8)) as? [String: String]
        #expect(object?["msg"] == "boom \u{1}")
        #expect(object?["key"] == "va\"lue\n")
        #expect(object?["level"] == "error")
    }

    @Test func belowTheLevel_nothingIsWritten() {
        let (log, capture) = logger(.logfmt, level: .notice)
        log.info("quiet")
        log.notice("loud")
        #expect(capture.all.count == 1)
    }
}
