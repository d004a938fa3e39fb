/// Splitting an entity into its header fields and body (RFC 5322 §2.1, §2.2).
enum HeaderBlock {
    /// Problems found in one header block, reported by the caller as diagnostics.
    struct Report: Equatable {
        /// The block exceeded the size cap; fields beyond it were dropped.
        var truncated = false
        /// A line that is neither a field nor a continuation ended the block early
        /// (no empty separator line).
        var missingSeparator = false
        /// An mbox `From ` line preceded the header and was skipped.
        var skippedMboxLine = false
        /// The block started with whitespace (a fold with nothing to continue): the first field was read
        /// without it, or the stray lines before the first field were skipped.
        var repairedLeadingWhitespace = false
    }

    /// The parsed block.
    struct Parsed {
        var fields: [HeaderField]
        /// Index in the input where the body starts (after the empty line).
        var bodyStart: Int
        var report: Report
    }

    /// Reads header fields from `input` until an empty line (LF or CRLF).
    ///
    /// - Unfolding (RFC 5322 §2.2.3): a line starting with SP or HTAB continues the field; the
    ///   line break is removed and the whitespace kept.
    /// - Obsolete syntax (§4.5): whitespace between the field name and the colon is allowed
    ///   (`Subject :x`); 8-bit octets are kept in values.
    /// - A line with no colon (or an invalid name) that is not a continuation ends the block:
    ///   it is the first body line of a message that lacks the empty separator.
    /// - `maxSize` caps the octets of fields kept; the rest of the block is still skipped
    ///   so that the body is found where it is.
    /// - `endsBlock` recognises a multipart delimiter line of an enclosing entity: a part whose
    ///   header is cut short by the next delimiter has no body (and a boundary may contain ":").
    static func parse(
        _ input: ArraySlice<UInt8>, maxSize: Int, allowMboxLine: Bool,
        endsBlock: (ArraySlice<UInt8>) -> Bool = { _ in false }
    ) -> Parsed {
        var fields: [HeaderField] = []
        var report = Report()
        var index = input.startIndex
        let end = input.endIndex
        var currentName: String?
        var currentValue: [UInt8] = []
        var keptSize = 0
        var bodyStart = end
        var isFirstLine = true

        func flush() {
            guard let name = currentName else { return }
            let value = trimmed(currentValue)
            keptSize += name.utf8.count + value.count + 2
            if keptSize > maxSize {
                report.truncated = true
            } else {
                fields.append(HeaderField(name: name, rawValue: value, value: decodedValue(value)))
            }
            currentName = nil
            currentValue.removeAll(keepingCapacity: true)
        }

        // Stops collecting as soon as the cap is passed, so one huge field cannot grow memory.
        func dropIfOverSize() {
            guard let name = currentName, keptSize + name.utf8.count + currentValue.count > maxSize else { return }
            report.truncated = true
            currentName = nil
            currentValue.removeAll()
        }

        while index < end {
            var lineEnd = index
            while lineEnd < end, input[lineEnd] != 0x0A { lineEnd += 1 }
            let next = lineEnd < end ? lineEnd + 1 : end
            var contentEnd = lineEnd
            if contentEnd > index, input[contentEnd - 1] == 0x0D { contentEnd -= 1 }
            defer { isFirstLine = false }
            if contentEnd == index {
                bodyStart = next
                break
            }
            let first = input[index]
            if first == UInt8(ascii: "-") && endsBlock(input[index..<contentEnd]) {
                bodyStart = index
                break
            }
            if first == 0x20 || first == 0x09 {
                if currentName != nil {
                    currentValue.append(contentsOf: input[index..<contentEnd])
                    dropIfOverSize()
                } else if fields.isEmpty && !report.truncated {
                    // A fold with nothing to continue where the first field should be. Some broken generators
                    // indent the first field: read it without the whitespace (Stalwart does the same). Stray
                    // indented lines right before real fields are skipped (Python's email does). Otherwise it
                    // is a part with no header and no empty separator line: keep it as body, not drop it.
                    var fieldStart = index
                    while fieldStart < contentEnd, input[fieldStart] == 0x20 || input[fieldStart] == 0x09 {
                        fieldStart += 1
                    }
                    if isField(input[fieldStart..<contentEnd]) {
                        report.repairedLeadingWhitespace = true
                        index = fieldStart
                        continue
                    }
                    guard let following = firstUnindentedLine(input, from: next), isField(following) else {
                        bodyStart = index
                        break
                    }
                    report.repairedLeadingWhitespace = true
                    index = following.startIndex
                    continue
                }
                index = next
                continue
            }
            if isFirstLine && allowMboxLine && input[index..<contentEnd].starts(with: Array("From ".utf8)) {
                // An mbox separator left in by a local delivery agent: not a header field.
                report.skippedMboxLine = true
                index = next
                continue
            }
            guard let colon = input[index..<contentEnd].firstIndex(of: UInt8(ascii: ":")),
                isFieldName(input[index..<colon])
            else {
                report.missingSeparator = true
                bodyStart = index
                break
            }
            flush()
            // Past the cap only the end of the block is looked for: no name or value is built for a field that
            // is dropped anyway (a million header lines: `AdversarialSizeTests.millionHeaderLines`).
            if !report.truncated, let name = fieldName(input[index..<colon]) {
                currentName = name
                currentValue.append(contentsOf: input[(colon + 1)..<contentEnd])
                dropIfOverSize()
            }
            index = next
        }
        flush()
        return Parsed(fields: fields, bodyStart: min(bodyStart, end), report: report)
    }

    /// Whether `line` (without its line break) starts a header field: a valid name, then a colon.
    private static func isField(_ line: ArraySlice<UInt8>) -> Bool {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return false }
        return isFieldName(line[line.startIndex..<colon])
    }

    /// Whether `octets` form a field name (see ``fieldName(_:)``), without building it.
    private static func isFieldName(_ octets: ArraySlice<UInt8>) -> Bool {
        var nameEnd = octets.endIndex
        while nameEnd > octets.startIndex, octets[nameEnd - 1] == 0x20 || octets[nameEnd - 1] == 0x09 {
            nameEnd -= 1
        }
        guard nameEnd > octets.startIndex else { return false }
        var index = octets.startIndex
        while index < nameEnd {
            guard octets[index] >= 33 && octets[index] <= 126 else { return false }
            index += 1
        }
        return true
    }

    /// The first line at or after `start` that does not start with whitespace (without its line break), or
    /// nil when an empty line or the end comes first.
    private static func firstUnindentedLine(_ input: ArraySlice<UInt8>, from start: Int) -> ArraySlice<UInt8>? {
        var index = start
        while index < input.endIndex {
            var lineEnd = index
            while lineEnd < input.endIndex, input[lineEnd] != 0x0A { lineEnd += 1 }
            var contentEnd = lineEnd
            if contentEnd > index, input[contentEnd - 1] == 0x0D { contentEnd -= 1 }
            guard contentEnd > index else { return nil }
            if input[index] != 0x20 && input[index] != 0x09 { return input[index..<contentEnd] }
            index = lineEnd < input.endIndex ? lineEnd + 1 : input.endIndex
        }
        return nil
    }

    /// The field name if `octets` form one: printable ASCII except ":" (RFC 5322 §3.6.8),
    /// followed by optional whitespace (obsolete §4.5).
    private static func fieldName(_ octets: ArraySlice<UInt8>) -> String? {
        guard isFieldName(octets) else { return nil }
        var nameEnd = octets.endIndex
        while nameEnd > octets.startIndex, octets[nameEnd - 1] == 0x20 || octets[nameEnd - 1] == 0x09 {
            nameEnd -= 1
        }
        return String(decoding: octets[octets.startIndex..<nameEnd], as: UTF8.self)
    }

    static func trimmed(_ octets: [UInt8]) -> [UInt8] {
        var start = 0
        var end = octets.count
        while start < end, isWhitespace(octets[start]) { start += 1 }
        while end > start, isWhitespace(octets[end - 1]) { end -= 1 }
        return Array(octets[start..<end])
    }

    private static func isWhitespace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A
    }

    /// The display value of a field: RFC 2047-decoded when it contains encoded words.
    static func decodedValue(_ raw: [UInt8]) -> String {
        EncodedWords.mayContainEncodedWord(raw) ? EncodedWords.decode(raw) : EncodedWords.headerText(raw)
    }
}
