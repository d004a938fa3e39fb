/// A minimal scan of a message's header block for the few fields the audit line names (`Message-ID`, and
/// `Subject` at debug level). Not a parser: MailParser owns RFC 5322; this only has to be cheap, bounded and
/// never wrong about where the header ends, so it runs for every message on the connection's queue.
///
/// Rules (RFC 5322 §2.2, §2.2.3): the header ends at the first empty line; a line starting with a space or a
/// tab continues the previous field (folding), and unfolding removes the line break only; field names
/// compare case-insensitively; the first occurrence wins. Lines may end in CRLF or a bare LF.
enum HeaderScan {
    /// At most this many octets are scanned: a header block larger than that is not worth walking for a log
    /// field, and the scan must stay cheap however the message is built.
    static let maxScannedOctets = 256 * 1024
    /// Longest value kept, in characters (RFC 5322 §2.1.1 bounds a line at 998 octets).
    static let maxValueLength = 998

    /// The unfolded, trimmed values of the named fields (lowercased names as keys); absent fields are missing.
    static func fields(_ names: Set<String>, in message: [UInt8]) -> [String: String] {
        var found: [String: String] = [:]
        var current: (name: String, value: [UInt8])?
        func finish() {
            guard let field = current else { return }
            current = nil
            guard found[field.name] == nil else { return }
            found[field.name] = clean(field.value)
        }
        let end = min(message.count, maxScannedOctets)
        var lineStart = 0
        while lineStart < end {
            var lineEnd = lineStart
            while lineEnd < end && message[lineEnd] != 10 { lineEnd += 1 }
            var contentEnd = lineEnd
            if contentEnd > lineStart && message[contentEnd - 1] == 13 { contentEnd -= 1 }
            if contentEnd == lineStart { break }  // the empty line: end of the header block
            let first = message[lineStart]
            if first == 32 || first == 9 {
                // A continuation line: it belongs to the field before it.
                if current != nil { current!.value += message[lineStart..<contentEnd] }
            } else {
                finish()
                if let colon = message[lineStart..<contentEnd].firstIndex(of: UInt8(ascii: ":")) {
                    let name = String(decoding: message[lineStart..<colon], as: UTF8.self)
                        .trimmingASCIIWhitespace().lowercased()
                    if names.contains(name) { current = (name, Array(message[(colon + 1)..<contentEnd])) }
                }
            }
            if lineEnd >= end { break }
            lineStart = lineEnd + 1
        }
        finish()
        return found
    }

    private static func clean(_ value: [UInt8]) -> String {
        let text = String(decoding: value, as: UTF8.self).trimmingASCIIWhitespace()
        return text.count > maxValueLength ? String(text.prefix(maxValueLength)) : text
    }
}

extension String {
    fileprivate func trimmingASCIIWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[first...last])
    }
}
