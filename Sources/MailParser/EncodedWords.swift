/// RFC 2047 encoded-word decoding and the reading of raw header octets as text.
enum EncodedWords {
    /// Reads raw header octets as text: UTF-8 when valid (RFC 6532), else windows-1252, so an
    /// 8-bit header from a sloppy client keeps its accents instead of turning into U+FFFD.
    static func headerText(_ octets: some Collection<UInt8>) -> String {
        if let text = String(validatingUTF8Octets: octets) { return text }
        return Charset.windows1252(Array(octets))
    }

    /// One `=?charset?encoding?text?=` found in the input.
    struct Word {
        var charset: String
        var octets: [UInt8]
        /// Index just past the closing `?=`.
        var end: Int
    }

    /// Decodes every encoded word in `octets` (RFC 2047 §6.2):
    /// - B and Q encodings, any charset iconv knows (an unknown one falls back like body text);
    /// - whitespace between two adjacent encoded words is dropped (§6.2), and adjacent words in
    ///   the same charset are joined *before* charset conversion, because encoders split
    ///   multi-octet characters across words;
    /// - a malformed word is left as literal text.
    ///
    /// QUIRK: words glued to surrounding text (`abc=?utf-8?q?x?=`) are decoded too, although
    /// §5 requires whitespace around them; real mailers produce them and users expect decoding.
    static func decode(_ octets: [UInt8]) -> String {
        var result = ""
        var literal: [UInt8] = []
        var pendingSpace: [UInt8] = []
        var run: [(charset: String, octets: [UInt8])] = []
        var afterWord = false
        var index = 0
        let count = octets.count

        func flushRun() {
            for piece in run { result += Charset.decode(piece.octets, label: piece.charset).text }
            run.removeAll()
        }
        func flushLiteral() {
            if !literal.isEmpty { result += headerText(literal) }
            literal.removeAll()
        }

        while index < count {
            let byte = octets[index]
            if byte == UInt8(ascii: "="), index + 1 < count, octets[index + 1] == UInt8(ascii: "?"),
                let word = parseWord(octets, at: index)
            {
                if !afterWord {
                    flushLiteral()
                }
                // Whitespace between two encoded words is not displayed (RFC 2047 §6.2).
                pendingSpace.removeAll()
                if let last = run.last, last.charset == word.charset {
                    run[run.count - 1].octets.append(contentsOf: word.octets)
                } else {
                    run.append((word.charset, word.octets))
                }
                afterWord = true
                index = word.end
                continue
            }
            if afterWord {
                if byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A {
                    pendingSpace.append(byte)
                    index += 1
                    continue
                }
                flushRun()
                literal.append(contentsOf: pendingSpace)
                pendingSpace.removeAll()
                afterWord = false
            }
            literal.append(byte)
            index += 1
        }
        flushRun()
        literal.append(contentsOf: pendingSpace)
        flushLiteral()
        return result
    }

    /// Whether `octets` contain something that looks like the start of an encoded word.
    static func mayContainEncodedWord(_ octets: some Collection<UInt8>) -> Bool {
        var previous: UInt8 = 0
        for byte in octets {
            if previous == UInt8(ascii: "="), byte == UInt8(ascii: "?") { return true }
            previous = byte
        }
        return false
    }

    /// Parses `=?charset[*lang]?B|Q?text?=` at `start`; `nil` when malformed.
    static func parseWord(_ octets: [UInt8], at start: Int) -> Word? {
        let count = octets.count
        var index = start + 2
        let charsetStart = index
        // The charset ends at the next "?": no whitespace allowed, and a sane length bound.
        while index < count, octets[index] != UInt8(ascii: "?") {
            let byte = octets[index]
            if byte <= 0x20 || byte >= 0x7F || index - charsetStart > 64 { return nil }
            index += 1
        }
        guard index < count, index > charsetStart else { return nil }
        var charset = String(decoding: octets[charsetStart..<index], as: UTF8.self)
        // RFC 2231 §5 language suffix: "utf-8*en".
        if let star = charset.firstIndex(of: "*") { charset = String(charset[..<star]) }
        index += 1
        guard index + 1 < count, octets[index + 1] == UInt8(ascii: "?") else { return nil }
        let encoding = octets[index] | 0x20
        guard encoding == UInt8(ascii: "b") || encoding == UInt8(ascii: "q") else { return nil }
        index += 2
        let textStart = index
        while index < count, octets[index] != UInt8(ascii: "?") {
            let byte = octets[index]
            if byte <= 0x20 || byte >= 0x7F { return nil }
            index += 1
        }
        guard index + 1 < count, octets[index + 1] == UInt8(ascii: "=") else { return nil }
        let text = octets[textStart..<index]
        let decoded: [UInt8]
        if encoding == UInt8(ascii: "b") {
            decoded = TransferDecoding.base64(text).octets
        } else {
            decoded = qDecode(text)
        }
        return Word(charset: charset.lowercased(), octets: decoded, end: index + 2)
    }

    /// RFC 2047 §4.2 "Q": `_` is a space, `=XX` an octet; a bad escape is kept as written.
    static func qDecode(_ text: ArraySlice<UInt8>) -> [UInt8] {
        var output: [UInt8] = []
        output.reserveCapacity(text.count)
        var index = text.startIndex
        while index < text.endIndex {
            let byte = text[index]
            if byte == UInt8(ascii: "_") {
                output.append(0x20)
            } else if byte == UInt8(ascii: "="), index + 2 < text.endIndex,
                let high = TransferDecoding.hexValue(text[index + 1]),
                let low = TransferDecoding.hexValue(text[index + 2])
            {
                output.append(high << 4 | low)
                index += 3
                continue
            } else {
                output.append(byte)
            }
            index += 1
        }
        return output
    }
}
