/// HTML read as plain text, for the `plainText` body when the RFC 8621 textBody holds an HTML part (RFC 8621
/// §4.1.4: a client that shows text converts such a part).
///
/// Deliberately small: no DOM, one pass over the octets, so the time is linear in the input and nothing
/// recurses. Tags are dropped; block elements (`p`, `div`, `li`, headings, table rows…) and `br` end a line;
/// table cells are separated by a space; runs of whitespace collapse to one space, except inside `pre`;
/// `script`, `style` and `title` contents and comments are skipped; character references are decoded (the
/// common named ones and every numeric one). At most one empty line is kept between paragraphs, and lines
/// lose trailing spaces.
enum HTMLText {
    static func plainText(_ html: String) -> String {
        var converter = Converter(input: Array(html.utf8))
        converter.run()
        return String(decoding: tidy(converter.output), as: UTF8.self)
    }

    private static let blockElements: Set<String> = [
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt", "fieldset", "figcaption",
        "figure", "footer", "form", "h1", "h2", "h3", "h4", "h5", "h6", "header", "hr", "li", "main", "nav", "ol",
        "p", "pre", "section", "table", "tbody", "tfoot", "thead", "tr", "ul",
    ]
    private static let cellElements: Set<String> = ["td", "th"]
    /// Elements whose content is not text to show.
    private static let skippedElements: Set<String> = ["script", "style", "title"]

    private static let namedReferences: [String: String] = [
        "amp": "&", "lt": "<", "gt": ">", "quot": "\"", "apos": "'", "nbsp": "\u{A0}", "copy": "©", "reg": "®",
        "trade": "™", "hellip": "…", "mdash": "—", "ndash": "–", "lsquo": "‘", "rsquo": "’", "ldquo": "“",
        "rdquo": "”", "bull": "•", "euro": "€", "middot": "·", "laquo": "«", "raquo": "»", "shy": "",
    ]

    private struct Converter {
        let input: [UInt8]
        var output: [UInt8] = []
        var index = 0
        var pendingSpace = false
        var preDepth = 0

        init(input: [UInt8]) {
            self.input = input
            output.reserveCapacity(input.count / 2)
        }

        mutating func run() {
            while index < input.count {
                let byte = input[index]
                switch byte {
                case UInt8(ascii: "<"):
                    tag()
                case UInt8(ascii: "&"):
                    reference()
                case 0x20, 0x09, 0x0A, 0x0D, 0x0C:
                    if preDepth > 0 {
                        if byte != 0x0D { output.append(byte == 0x0C ? 0x20 : byte) }
                    } else {
                        pendingSpace = true
                    }
                    index += 1
                default:
                    text([byte])
                    index += 1
                }
            }
        }

        mutating func text(_ bytes: [UInt8]) {
            if pendingSpace, let last = output.last, last != 0x0A, last != 0x20 {
                output.append(0x20)
            }
            pendingSpace = false
            output.append(contentsOf: bytes)
        }

        mutating func lineBreak(always: Bool) {
            pendingSpace = false
            if always || (!output.isEmpty && output.last != 0x0A) {
                output.append(0x0A)
            }
        }

        /// At `<`: a comment, a tag, or a literal `<` (`a < b`).
        mutating func tag() {
            let start = index
            if input[start...].starts(with: Array("<!--".utf8)) {
                index = find(Array("-->".utf8), from: start + 4).map { $0 + 3 } ?? input.count
                return
            }
            let next = start + 1 < input.count ? input[start + 1] : 0
            guard isLetter(next) || next == UInt8(ascii: "/") || next == UInt8(ascii: "!") || next == UInt8(ascii: "?")
            else {
                text([UInt8(ascii: "<")])
                index += 1
                return
            }
            // The tag ends at the first ">" outside a quoted attribute value (a quote right after "="); an
            // unterminated tag drops the rest.
            var cursor = start + 1
            var quote: UInt8?
            var afterEquals = false
            while cursor < input.count {
                let byte = input[cursor]
                if let open = quote {
                    if byte == open { quote = nil }
                } else if afterEquals && (byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "'")) {
                    quote = byte
                } else if byte == UInt8(ascii: ">") {
                    break
                }
                if byte == UInt8(ascii: "=") {
                    afterEquals = true
                } else if byte != 0x20 && byte != 0x09 && byte != 0x0A && byte != 0x0D {
                    afterEquals = false
                }
                cursor += 1
            }
            index = min(cursor + 1, input.count)
            guard cursor < input.count else { return }
            let isClosing = next == UInt8(ascii: "/")
            var nameEnd = start + (isClosing ? 2 : 1)
            let nameStart = nameEnd
            while nameEnd < cursor, isLetter(input[nameEnd]) || (input[nameEnd] >= 0x30 && input[nameEnd] <= 0x39) {
                nameEnd += 1
            }
            let name = String(decoding: input[nameStart..<nameEnd], as: UTF8.self).lowercased()
            if !isClosing, HTMLText.skippedElements.contains(name) {
                let closing = Array("</\(name)".utf8)
                index =
                    findIgnoringCase(closing, from: index).flatMap { found in
                        input[found...].firstIndex(of: UInt8(ascii: ">")).map { $0 + 1 }
                    } ?? input.count
                return
            }
            if name == "pre" { preDepth = max(0, preDepth + (isClosing ? -1 : 1)) }
            if name == "br" {
                lineBreak(always: true)
            } else if HTMLText.blockElements.contains(name) {
                lineBreak(always: false)
            } else if HTMLText.cellElements.contains(name), !isClosing {
                pendingSpace = true
            }
        }

        /// At `&`: a character reference (`&amp;`, `&#233;`, `&#xE9;`), or a literal `&`.
        mutating func reference() {
            var end = index + 1
            while end < input.count, end - index <= 32,
                isLetter(input[end]) || (input[end] >= 0x30 && input[end] <= 0x39) || input[end] == UInt8(ascii: "#")
            {
                end += 1
            }
            guard end < input.count, input[end] == UInt8(ascii: ";"), end > index + 1 else {
                text([UInt8(ascii: "&")])
                index += 1
                return
            }
            let name = String(decoding: input[(index + 1)..<end], as: UTF8.self)
            var decoded: String?
            if name.hasPrefix("#") {
                let digits = name.dropFirst()
                let value: UInt32? =
                    digits.first == "x" || digits.first == "X" ? UInt32(digits.dropFirst(), radix: 16) : UInt32(digits)
                if let value {
                    decoded = String(Unicode.Scalar(value).map(Character.init) ?? "\u{FFFD}")
                }
            } else {
                decoded = HTMLText.namedReferences[name]
            }
            guard let decoded else {
                text([UInt8(ascii: "&")])
                index += 1
                return
            }
            text(Array(decoded.utf8))
            index = end + 1
        }

        func find(_ needle: [UInt8], from start: Int) -> Int? {
            guard needle.count <= input.count else { return nil }
            var position = start
            while position + needle.count <= input.count {
                if input[position] == needle[0], input[position..<(position + needle.count)].elementsEqual(needle) {
                    return position
                }
                position += 1
            }
            return nil
        }

        func findIgnoringCase(_ needle: [UInt8], from start: Int) -> Int? {
            guard needle.count <= input.count else { return nil }
            var position = start
            while position + needle.count <= input.count {
                if input[position] == needle[0],
                    zip(input[position..<(position + needle.count)], needle).allSatisfy({ lower($0) == $1 })
                {
                    return position
                }
                position += 1
            }
            return nil
        }

        func isLetter(_ byte: UInt8) -> Bool {
            (byte | 0x20) >= UInt8(ascii: "a") && (byte | 0x20) <= UInt8(ascii: "z")
        }

        func lower(_ byte: UInt8) -> UInt8 {
            byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "Z") ? byte | 0x20 : byte
        }
    }

    /// Lines without trailing spaces, at most one empty line in a row, none at the start or the end.
    private static func tidy(_ text: [UInt8]) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(text.count)
        var newlines = 0
        for byte in text {
            if byte == 0x0A {
                while result.last == 0x20 || result.last == 0x09 { result.removeLast() }
                newlines += 1
                continue
            }
            if newlines > 0 {
                if !result.isEmpty { result.append(contentsOf: repeatElement(0x0A, count: min(newlines, 2))) }
                newlines = 0
            }
            result.append(byte)
        }
        while result.last == 0x20 || result.last == 0x09 { result.removeLast() }
        return result
    }
}
