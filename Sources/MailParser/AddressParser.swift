/// Lenient RFC 5322 §3.4 address-list parsing (with the §4.4 obsolete forms).
///
/// It works on raw octets so that RFC 2047 decoding happens *after* the structure is known:
/// an encoded display name may decode to a comma or a quote without splitting the list.
/// Every input produces a list (possibly empty); nothing here can trap: no recursion, no
/// indexing past a bound, linear time.
enum AddressParser {
    private enum Token {
        case word([UInt8])
        case quoted([UInt8])
        case comment([UInt8])
        case angle([UInt8])
        case comma
        case colon
        case semicolon
    }

    /// Parses a whole address-list field body (raw, unfolded).
    static func parse(_ octets: [UInt8]) -> [MailAddress] {
        var addresses: [MailAddress] = []
        var entry: [Token] = []
        var inGroup = false
        for token in tokenize(octets) {
            switch token {
            case .comma:
                resolve(entry, into: &addresses)
                entry.removeAll()
            case .colon:
                if !inGroup && !entry.contains(where: { if case .angle = $0 { return true } else { return false } }) {
                    // RFC 5322 §3.4 group: "display-name:" opens it; the name itself is dropped.
                    inGroup = true
                    entry.removeAll()
                } else {
                    entry.append(.word([UInt8(ascii: ":")]))
                }
            case .semicolon:
                resolve(entry, into: &addresses)
                entry.removeAll()
                inGroup = false
            default:
                entry.append(token)
            }
        }
        resolve(entry, into: &addresses)
        return addresses
    }

    private static func tokenize(_ octets: [UInt8]) -> [Token] {
        var tokens: [Token] = []
        var index = 0
        let count = octets.count
        while index < count {
            let byte = octets[index]
            switch byte {
            case 0x20, 0x09, 0x0D, 0x0A:
                index += 1
            case UInt8(ascii: ","):
                tokens.append(.comma)
                index += 1
            case UInt8(ascii: ";"):
                tokens.append(.semicolon)
                index += 1
            case UInt8(ascii: ":"):
                tokens.append(.colon)
                index += 1
            case UInt8(ascii: "\""):
                var value: [UInt8] = []
                index += 1
                while index < count, octets[index] != UInt8(ascii: "\"") {
                    if octets[index] == UInt8(ascii: "\\"), index + 1 < count { index += 1 }
                    value.append(octets[index])
                    index += 1
                }
                index += 1
                tokens.append(.quoted(value))
            case UInt8(ascii: "("):
                let end = ContentParameters.skipComment(octets, from: index)
                let closed = end > index + 1 && octets[end - 1] == UInt8(ascii: ")")
                let inner = octets[(index + 1)..<(closed ? end - 1 : end)]
                tokens.append(.comment(unescape(inner)))
                index = end
            case UInt8(ascii: "<"):
                var value: [UInt8] = []
                index += 1
                while index < count, octets[index] != UInt8(ascii: ">") {
                    value.append(octets[index])
                    index += 1
                }
                index += 1
                tokens.append(.angle(value))
            case UInt8(ascii: ">"), UInt8(ascii: ")"):
                index += 1  // stray closer: ignore
            default:
                let start = index
                while index < count, !isDelimiter(octets[index]) {
                    // QUIRK: an encoded word is one word even when its Q text carries specials
                    // ("=?utf-8?q?Doe,_J?=") that RFC 2047 §5 (3) forbids in a phrase.
                    if octets[index] == UInt8(ascii: "="), index + 1 < count, octets[index + 1] == UInt8(ascii: "?"),
                        let word = EncodedWords.parseWord(octets, at: index)
                    {
                        index = word.end
                        continue
                    }
                    index += 1
                }
                tokens.append(.word(Array(octets[start..<index])))
            }
        }
        return tokens
    }

    private static func isDelimiter(_ byte: UInt8) -> Bool {
        switch byte {
        case 0x20, 0x09, 0x0D, 0x0A, UInt8(ascii: ","), UInt8(ascii: ";"), UInt8(ascii: ":"),
            UInt8(ascii: "\""), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: "<"), UInt8(ascii: ">"):
            return true
        default:
            return false
        }
    }

    private static func unescape(_ octets: ArraySlice<UInt8>) -> [UInt8] {
        var output: [UInt8] = []
        var escaped = false
        for byte in octets {
            if !escaped && byte == UInt8(ascii: "\\") {
                escaped = true
                continue
            }
            escaped = false
            output.append(byte)
        }
        return output
    }

    /// Turns one comma-separated entry into at most one mailbox. An address with a control character (a bare CR
    /// left in a quoted local part) is no mailbox (RFC 5322 §3.2.3, §3.2.4) and is left out, so no consumer can be
    /// handed a line break (`AddressTests.addressesWithControlCharactersAreLeftOut`).
    private static func resolve(_ entry: [Token], into addresses: inout [MailAddress]) {
        var resolved: [MailAddress] = []
        resolveOne(entry, into: &resolved)
        addresses += resolved.filter { !$0.address.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F } }
    }

    private static func resolveOne(_ entry: [Token], into addresses: inout [MailAddress]) {
        var phrase: [[UInt8]] = []
        var comments: [[UInt8]] = []
        var angle: [UInt8]?
        var afterAngle = false
        for token in entry {
            switch token {
            case .word(let value), .quoted(let value):
                if !afterAngle { phrase.append(value) }
            case .comment(let value):
                comments.append(value)
            case .angle(let value):
                if angle == nil {
                    angle = value
                    afterAngle = true
                }
            default:
                break
            }
        }
        if let angle {
            let address = angleAddress(angle)
            guard !address.isEmpty else { return }  // "<>" is the null reverse-path, not a mailbox
            addresses.append(MailAddress(displayName: displayName(phrase, comments: comments), address: address))
            return
        }
        // No angle brackets: an addr-spec, possibly with obsolete spacing ("a . b @ c")
        // or a missing-bracket "Name addr@host".
        let words = entry.compactMap { token -> (text: [UInt8], quoted: Bool)? in
            switch token {
            case .word(let value): return (value, false)
            case .quoted(let value): return (value, true)
            default: return nil
            }
        }
        guard !words.isEmpty else { return }
        if words.count > 1,
            let full = words.lastIndex(where: { !$0.quoted && isCompleteAddrSpec($0.text) })
        {
            let nameWords = words.enumerated().filter { $0.offset != full }.map(\.element.text)
            let name = displayName(nameWords, comments: comments)
            addresses.append(MailAddress(displayName: name, address: EncodedWords.headerText(words[full].text)))
            return
        }
        var spec: [UInt8] = []
        for word in words {
            if word.quoted {
                spec.append(UInt8(ascii: "\""))
                for byte in word.text {
                    if byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\") { spec.append(UInt8(ascii: "\\")) }
                    spec.append(byte)
                }
                spec.append(UInt8(ascii: "\""))
            } else {
                spec.append(contentsOf: word.text)
            }
        }
        // A multi-word phrase without "@" is a display name with no address: nothing to send to.
        if words.count > 1 && !spec.contains(UInt8(ascii: "@")) { return }
        addresses.append(
            MailAddress(displayName: displayName([], comments: comments), address: EncodedWords.headerText(spec)))
    }

    private static func isCompleteAddrSpec(_ text: [UInt8]) -> Bool {
        guard let at = text.lastIndex(of: UInt8(ascii: "@")) else { return false }
        return at > 0 && at < text.count - 1
    }

    /// The addr-spec inside `<…>`: whitespace and comments removed, obsolete route
    /// (`@a,@b:user@host`, RFC 5322 §4.4) dropped.
    private static func angleAddress(_ value: [UInt8]) -> String {
        var cleaned: [UInt8] = []
        var index = 0
        var inQuote = false
        while index < value.count {
            let byte = value[index]
            if byte == UInt8(ascii: "\"") { inQuote.toggle() }
            if !inQuote {
                if byte == UInt8(ascii: "(") {
                    index = ContentParameters.skipComment(value, from: index)
                    continue
                }
                if byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A {
                    index += 1
                    continue
                }
            }
            cleaned.append(byte)
            index += 1
        }
        if cleaned.first == UInt8(ascii: "@"), let colon = cleaned.lastIndex(of: UInt8(ascii: ":")) {
            cleaned = Array(cleaned[(colon + 1)...])
        }
        return EncodedWords.headerText(cleaned)
    }

    /// Joins phrase words with single spaces and decodes encoded words; falls back to the
    /// comment (`addr (Name)`, the RFC 822 convention) when there is no phrase.
    private static func displayName(_ phrase: [[UInt8]], comments: [[UInt8]]) -> String? {
        let source = phrase.isEmpty ? comments : phrase
        guard !source.isEmpty else { return nil }
        var joined: [UInt8] = []
        for (offset, word) in source.enumerated() {
            if offset > 0 { joined.append(0x20) }
            joined.append(contentsOf: word)
        }
        // QUIRK: encoded words inside quoted display names are decoded too (RFC 2047 §5 forbids
        // them there, but many mailers emit `"=?UTF-8?B?...?=" <a@b>`).
        let name = EncodedWords.decode(joined).trimmingASCIIWhitespace()
        return name.isEmpty ? nil : name
    }
}
