/// A parsed `Content-Type` or `Content-Disposition` field: the leading value and its parameters.
struct ParameterizedValue: Equatable {
    /// The value before the first `;`, lower-cased, with whitespace and comments removed.
    var value: String
    /// Lower-cased parameter names to decoded values (RFC 2045 §5.1, RFC 2231).
    var parameters: [String: String]
}

/// Parsing of MIME parameters (RFC 2045 §5.1) including RFC 2231 extended values.
package enum ContentParameters {
    /// Above this many RFC 2231 sections a parameter is cut off: it bounds the work an
    /// adversarial `name*99999=` can cause. Real filenames need a handful.
    static let maxSections = 1_000

    private struct RawParameter {
        var name: String
        var value: [UInt8]
        var quoted: Bool
    }

    /// Parses `type/subtype; a=b; c*=utf-8''%C3%A9` (or a disposition) leniently: comments
    /// are skipped, unquoted values may contain spaces, a missing closing quote ends at the end.
    static func parse(_ octets: [UInt8]) -> ParameterizedValue {
        var index = 0
        let count = octets.count
        var head: [UInt8] = []
        // The leading value: everything up to ";" minus whitespace and (comments) (RFC 2045 §5.1).
        while index < count, octets[index] != UInt8(ascii: ";") {
            let byte = octets[index]
            if byte == UInt8(ascii: "(") {
                index = skipComment(octets, from: index)
                continue
            }
            if isSpace(byte) {
                // Obsolete spacing "text / plain" is joined; but once the value is complete, a
                // space followed by something else starts the parameters even without the ";"
                // (a folded `multipart/mixed\n\tboundary="x"`, seen in Dovecot's test set).
                var probe = index
                while probe < count, isSpace(octets[probe]) { probe += 1 }
                if head.contains(UInt8(ascii: "/")), head.last != UInt8(ascii: "/"), probe < count,
                    octets[probe] != UInt8(ascii: "/"), octets[probe] != UInt8(ascii: ";"),
                    octets[probe] != UInt8(ascii: "(")
                {
                    index = probe
                    break
                }
                index = probe
                continue
            }
            if byte != UInt8(ascii: "\"") { head.append(byte) }
            index += 1
        }
        var raw: [RawParameter] = []
        while index < count {
            // Skip separators and whitespace before a name.
            while index < count, isSpaceOrSemicolon(octets[index]) { index += 1 }
            if index < count, octets[index] == UInt8(ascii: "(") {
                index = skipComment(octets, from: index)
                continue
            }
            let nameStart = index
            while index < count, octets[index] != UInt8(ascii: "="), octets[index] != UInt8(ascii: ";") {
                index += 1
            }
            let name = String(decoding: octets[nameStart..<index], as: UTF8.self).trimmingASCIIWhitespace()
                .lowercased()
            guard index < count, octets[index] == UInt8(ascii: "=") else { continue }  // no value: ignored
            index += 1
            while index < count, octets[index] == 0x20 || octets[index] == 0x09 { index += 1 }
            var value: [UInt8] = []
            var quoted = false
            if index < count, octets[index] == UInt8(ascii: "\"") {
                quoted = true
                index += 1
                while index < count, octets[index] != UInt8(ascii: "\"") {
                    if octets[index] == UInt8(ascii: "\\"), index + 1 < count {
                        index += 1
                    }
                    value.append(octets[index])
                    index += 1
                }
                index += 1  // closing quote (or past the end)
                // Anything between the closing quote and the next ";" is junk.
                while index < count, octets[index] != UInt8(ascii: ";") { index += 1 }
            } else {
                let valueStart = index
                while index < count, octets[index] != UInt8(ascii: ";") { index += 1 }
                var valueEnd = index
                while valueEnd > valueStart, isSpace(octets[valueEnd - 1]) { valueEnd -= 1 }
                // A trailing comment, as in RFC 2045 §5.1's own `charset=us-ascii (Plain text)`.
                // Only a space-separated "(...)" that ends the value counts, so an unquoted
                // `report (1).pdf` keeps its parentheses.
                if valueEnd > valueStart, octets[valueEnd - 1] == UInt8(ascii: ")"),
                    let open = octets[valueStart..<valueEnd].firstIndex(where: { $0 == UInt8(ascii: "(") }),
                    open > valueStart, isSpace(octets[open - 1])
                {
                    valueEnd = open
                    while valueEnd > valueStart, isSpace(octets[valueEnd - 1]) { valueEnd -= 1 }
                }
                value = Array(octets[valueStart..<valueEnd])
            }
            if !name.isEmpty { raw.append(RawParameter(name: name, value: value, quoted: quoted)) }
        }
        return ParameterizedValue(
            value: String(decoding: head, as: UTF8.self).lowercased(), parameters: assemble(raw))
    }

    /// Applies RFC 2231: joins `name*0`, `name*1*`… in section order, percent-decodes the
    /// extended sections, converts from the declared charset. An RFC 2231 value beats a plain
    /// one of the same name; otherwise the first occurrence wins.
    private static func assemble(_ raw: [RawParameter]) -> [String: String] {
        var plain: [String: String] = [:]
        var sections: [String: [Int: (value: [UInt8], extended: Bool)]] = [:]
        for parameter in raw {
            guard let star = parameter.name.firstIndex(of: "*") else {
                if plain[parameter.name] == nil { plain[parameter.name] = plainValue(parameter) }
                continue
            }
            let base = String(parameter.name[..<star])
            var rest = parameter.name[parameter.name.index(after: star)...]
            let extended = rest.hasSuffix("*") || rest.isEmpty
            if rest.hasSuffix("*") { rest = rest.dropLast() }
            let section: Int
            if rest.isEmpty {
                section = 0
            } else if let number = Int(rest), number >= 0, number < maxSections {
                section = number
            } else {
                continue
            }
            if sections[base, default: [:]][section] == nil {
                sections[base, default: [:]][section] = (parameter.value, extended)
            }
        }
        var result = plain
        for (base, parts) in sections {
            var octets: [UInt8] = []
            var charset: String?
            for section in parts.keys.sorted() {
                guard let part = parts[section] else { continue }
                var value = part.value[...]
                if part.extended {
                    if section == parts.keys.min() {
                        // charset'language'value (RFC 2231 §4); both may be empty.
                        if let first = value.firstIndex(of: UInt8(ascii: "'")),
                            let second = value[(first + 1)...].firstIndex(of: UInt8(ascii: "'"))
                        {
                            let label = String(decoding: value[..<first], as: UTF8.self)
                            if !label.isEmpty { charset = label }
                            value = value[(second + 1)...]
                        }
                    }
                    octets.append(contentsOf: percentDecode(value))
                } else {
                    octets.append(contentsOf: value)
                }
            }
            let text: String
            if let charset {
                text = Charset.decode(octets, label: charset).text
            } else {
                text = EncodedWords.headerText(octets)
            }
            result[base] = text
        }
        return result
    }

    private static func plainValue(_ parameter: RawParameter) -> String {
        // QUIRK: RFC 2047 §5 forbids encoded words inside quoted strings, but Outlook, Gmail and
        // others put them in `name="=?UTF-8?B?...?="`; decode them for file names only.
        if parameter.name == "name" || parameter.name == "filename",
            EncodedWords.mayContainEncodedWord(parameter.value)
        {
            return EncodedWords.decode(parameter.value)
        }
        return EncodedWords.headerText(parameter.value)
    }

    /// `%XX` escapes decoded (RFC 2231 §4, RFC 3986 §2.1); a `%` without two hex digits stays as written.
    /// Shared with the ACS translation (`cid:` URLs, RFC 2392), hence `package`.
    package static func percentDecode(_ value: ArraySlice<UInt8>) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(value.count)
        var index = value.startIndex
        while index < value.endIndex {
            if value[index] == UInt8(ascii: "%"), index + 2 < value.endIndex,
                let high = TransferDecoding.hexValue(value[index + 1]),
                let low = TransferDecoding.hexValue(value[index + 2])
            {
                output.append(high << 4 | low)
                index += 3
            } else {
                output.append(value[index])
                index += 1
            }
        }
        return output
    }

    /// Returns the index after a (possibly nested) comment starting at `start`, or the end.
    static func skipComment(_ octets: [UInt8], from start: Int) -> Int {
        var depth = 0
        var index = start
        while index < octets.count {
            switch octets[index] {
            case UInt8(ascii: "\\"): index += 1
            case UInt8(ascii: "("): depth += 1
            case UInt8(ascii: ")"):
                depth -= 1
                if depth == 0 { return index + 1 }
            default: break
            }
            index += 1
        }
        return octets.count
    }

    private static func isSpace(_ byte: UInt8) -> Bool {
        byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A
    }

    private static func isSpaceOrSemicolon(_ byte: UInt8) -> Bool {
        isSpace(byte) || byte == UInt8(ascii: ";")
    }
}
