import Foundation
import Logging

/// A swift-log handler that writes one line per event to standard error, in logfmt or JSON, prefixed
/// with the syslog priority (`<N>`) so journald files each line at the right level and
/// `journalctl -p warning` works (systemd.exec(5) `SyslogLevelPrefix=`).
///
/// Every value is escaped: a client-controlled string (an EHLO name, an address) can never start a new
/// line or forge a field (log injection).
public struct LineLogHandler: LogHandler {
    public enum Format: String, Sendable, CaseIterable {
        case logfmt
        case json
    }

    /// The level: set on this handler, else the shared control's (changed by a configuration reload).
    public var logLevel: Logger.Level {
        get { ownLevel ?? levelControl?.level ?? .info }
        set { ownLevel = newValue }
    }
    private var ownLevel: Logger.Level?
    private let levelControl: LogLevelControl?
    public var metadata: Logger.Metadata = [:]
    public var metadataProvider: Logger.MetadataProvider?
    private let label: String
    private let format: Format
    private let write: @Sendable (String) -> Void

    public init(
        label: String, format: Format, level: Logger.Level,
        write: @escaping @Sendable (String) -> Void = LineLogHandler.standardError
    ) {
        self.label = label
        self.format = format
        self.ownLevel = level
        self.levelControl = nil
        self.write = write
    }

    /// A handler whose level follows `levelControl`, so a reload can change it for every logger at once.
    public init(
        label: String, format: Format, levelControl: LogLevelControl,
        write: @escaping @Sendable (String) -> Void = LineLogHandler.standardError
    ) {
        self.label = label
        self.format = format
        self.ownLevel = nil
        self.levelControl = levelControl
        self.write = write
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let provided = metadataProvider?.get() { merged.merge(provided) { _, new in new } }
        if let extra = event.metadata { merged.merge(extra) { _, new in new } }
        let fields = merged.sorted { $0.key < $1.key }.map { ($0.key, "\($0.value)") }
        let timestamp = Self.timestamp()
        let line: String
        switch format {
        case .logfmt:
            var parts = ["ts=\(timestamp)", "level=\(event.level)", "msg=\(Self.logfmtValue("\(event.message)"))"]
            parts += fields.map { "\(Self.logfmtKey($0.0))=\(Self.logfmtValue($0.1))" }
            line = parts.joined(separator: " ")
        case .json:
            var parts = [
                "\"ts\":\(Self.jsonString(timestamp))", "\"level\":\"\(event.level)\"",
                "\"msg\":\(Self.jsonString("\(event.message)"))",
            ]
            parts += fields.map { "\(Self.jsonString($0.0)):\(Self.jsonString($0.1))" }
            line = "{" + parts.joined(separator: ",") + "}"
        }
        write("<\(Self.syslogPriority(event.level))>\(line)\n")
    }

    /// syslog(3) priorities: trace/debug 7, info 6, notice 5, warning 4, error 3, critical 2.
    public static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }

    /// A logfmt value: bare when it is a plain token, else quoted with `\"`, `\\`, `\n`, `\r`, `\t` and
    /// other control characters escaped.
    static func logfmtValue(_ value: String) -> String {
        let plain =
            !value.isEmpty
            && value.unicodeScalars.allSatisfy { scalar in
                scalar.value > 0x20 && scalar.value != 0x7F && scalar != "\"" && scalar != "=" && scalar != "\\"
            }
        if plain { return value }
        return EscapedText.doubleQuoted(value)
    }

    /// Keys are ours, but are sanitized all the same.
    static func logfmtKey(_ key: String) -> String {
        String(key.unicodeScalars.map { $0.value > 0x20 && $0 != "=" && $0 != "\"" ? Character($0) : "_" })
    }

    static func jsonString(_ value: String) -> String { EscapedText.doubleQuoted(value) }

    static func timestamp() -> String {
        var time = timespec()
        clock_gettime(CLOCK_REALTIME, &time)
        var seconds = time_t(time.tv_sec)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        let millis = Int(time.tv_nsec / 1_000_000)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", Int(parts.tm_year) + 1900, Int(parts.tm_mon) + 1,
            Int(parts.tm_mday), Int(parts.tm_hour), Int(parts.tm_min), Int(parts.tm_sec), millis)
    }

    /// Writes a line to standard error in one `write(2)`, so concurrent lines never interleave.
    public static let standardError: @Sendable (String) -> Void = { line in
        var bytes = Array(line.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress! + offset, $0.count - offset) }
            if written <= 0 {
                if written < 0 && errno == EINTR { continue }
                return  // stderr gone: nothing sensible left to do with a log line
            }
            offset += written
        }
    }
}

/// The log level shared by every handler of the process, changed by a configuration reload (SIGHUP).
public final class LogLevelControl: @unchecked Sendable {
    private let lock = NSLock()
    private var current: Logger.Level

    public init(_ level: Logger.Level) { current = level }

    public var level: Logger.Level {
        get { lock.withLock { current } }
        set { lock.withLock { current = newValue } }
    }
}
