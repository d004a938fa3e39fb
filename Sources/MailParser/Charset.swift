/// Charset names, aliases and conversion to UTF-8 (RFC 2046 §4.1.2, RFC 2978 registry names).
enum Charset {
    /// What happened while decoding, so the caller can emit a diagnostic.
    enum Outcome: Equatable {
        case exact
        /// The charset was not declared and the octets were not ASCII.
        case undeclared8Bit(usedFallback: String)
        /// The declared charset is unknown to iconv.
        case unknown(declared: String, usedFallback: String)
        /// Conversion met octets invalid in the charset; they became U+FFFD.
        case invalidOctets(count: Int)
    }

    /// Maps common aliases (lower-cased, as seen in the wild) to the name handed to iconv.
    ///
    /// QUIRK: several labels are widened to the superset actually produced by mail clients,
    /// following the WHATWG Encoding Standard: `iso-8859-1`/`us-ascii` 8-bit → windows-1252,
    /// `shift_jis` → CP932, `gb2312`/`gbk` → GB18030, `euc-kr`/`ks_c_5601-1987` → CP949, `big5` → CP950.
    private static let aliases: [String: String] = [
        "utf8": "UTF-8", "utf-8": "UTF-8", "unicode-1-1-utf-8": "UTF-8", "x-unicode20utf8": "UTF-8",
        "us-ascii": "US-ASCII", "ascii": "US-ASCII", "ansi_x3.4-1968": "US-ASCII", "iso646-us": "US-ASCII",
        "us": "US-ASCII", "cp367": "US-ASCII", "iso_646.irv:1991": "US-ASCII",
        "latin1": "WINDOWS-1252", "latin-1": "WINDOWS-1252", "l1": "WINDOWS-1252", "iso-8859-1": "WINDOWS-1252",
        "iso8859-1": "WINDOWS-1252", "iso_8859-1": "WINDOWS-1252", "iso88591": "WINDOWS-1252",
        "iso_8859-1:1987": "WINDOWS-1252", "cp819": "WINDOWS-1252", "ibm819": "WINDOWS-1252",
        "cp1252": "WINDOWS-1252", "x-cp1252": "WINDOWS-1252", "windows-1252": "WINDOWS-1252",
        "latin2": "ISO-8859-2", "l2": "ISO-8859-2", "latin3": "ISO-8859-3", "latin4": "ISO-8859-4",
        "cyrillic": "ISO-8859-5", "arabic": "ISO-8859-6", "greek": "ISO-8859-7", "hebrew": "ISO-8859-8",
        "iso-8859-8-i": "ISO-8859-8", "latin5": "ISO-8859-9", "latin6": "ISO-8859-10", "latin7": "ISO-8859-13",
        "latin8": "ISO-8859-14", "latin9": "ISO-8859-15", "latin-9": "ISO-8859-15", "latin10": "ISO-8859-16",
        "koi8-r": "KOI8-R", "koi8r": "KOI8-R", "koi8-u": "KOI8-U", "koi8u": "KOI8-U", "koi8-ru": "KOI8-RU",
        "shift_jis": "CP932", "shift-jis": "CP932", "sjis": "CP932", "x-sjis": "CP932", "ms_kanji": "CP932",
        "csshiftjis": "CP932", "windows-31j": "CP932", "cp932": "CP932", "ms932": "CP932",
        "euc-jp": "EUC-JP", "eucjp": "EUC-JP", "x-euc-jp": "EUC-JP", "cseucpkdfmtjapanese": "EUC-JP",
        "iso-2022-jp": "ISO-2022-JP-2", "csiso2022jp": "ISO-2022-JP-2", "iso-2022-jp-2": "ISO-2022-JP-2",
        "iso-2022-jp-3": "ISO-2022-JP-3",
        "gb2312": "GB18030", "gbk": "GB18030", "gb18030": "GB18030", "x-gbk": "GB18030", "cp936": "GB18030",
        "euc-cn": "GB18030", "csgb2312": "GB18030", "chinese": "GB18030", "gb_2312-80": "GB18030",
        "big5": "CP950", "big-5": "CP950", "x-x-big5": "CP950", "cn-big5": "CP950", "cp950": "CP950",
        "big5-hkscs": "BIG5-HKSCS",
        "euc-kr": "CP949", "euckr": "CP949", "ks_c_5601-1987": "CP949", "ks_c_5601": "CP949",
        "ksc5601": "CP949", "cp949": "CP949", "windows-949": "CP949", "iso-2022-kr": "ISO-2022-KR",
        "utf-16": "UTF-16", "utf16": "UTF-16", "utf-16le": "UTF-16LE", "utf-16be": "UTF-16BE",
        "utf-32": "UTF-32", "utf-32le": "UTF-32LE", "utf-32be": "UTF-32BE",
        "utf-7": "UTF-7", "utf7": "UTF-7", "unicode-1-1-utf-7": "UTF-7", "x-unicode20utf7": "UTF-7",
        "tis-620": "TIS-620", "windows-874": "CP874", "cp874": "CP874", "viscii": "VISCII",
        "macintosh": "MACINTOSH", "mac": "MACINTOSH", "mac-roman": "MACINTOSH", "x-mac-roman": "MACINTOSH",
        "x-mac-cyrillic": "MAC-CYRILLIC", "ibm866": "CP866", "cp866": "CP866",
    ]

    /// The iconv name for a declared charset label, or `nil` when the label is empty.
    /// Unlisted labels are handed to iconv as written (`iso-8859-5`, `windows-1251`, `cp1250`…).
    static func iconvName(for label: String) -> String? {
        var name = label.trimmingASCIIWhitespace().lowercased()
        // Some mailers quote it twice or add junk (`"utf-8"`, `utf-8;`).
        while let first = name.first, first == "\"" || first == "'" { name.removeFirst() }
        while let last = name.last, last == "\"" || last == "'" || last == ";" { name.removeLast() }
        name = name.trimmingASCIIWhitespace()
        if name.isEmpty { return nil }
        if let known = aliases[name] { return known }
        if name.hasPrefix("cp125"), let digit = name.last, name.count == 6, digit.isNumber {
            return "WINDOWS-125" + String(digit)
        }
        if name.hasPrefix("x-") { return aliases[String(name.dropFirst(2))] ?? name.uppercased() }
        return name.uppercased()
    }

    /// Converts `octets` declared as `label` (or undeclared when `nil`) to a Swift string.
    ///
    /// An unknown or undeclared charset on 8-bit octets falls back to UTF-8 when the octets are
    /// valid UTF-8, else to windows-1252, which maps every octet (so text is never lost).
    static func decode(_ octets: [UInt8], label: String?) -> (text: String, outcome: Outcome) {
        let isASCII = !octets.contains { $0 >= 0x80 }
        guard let label, let name = iconvName(for: label) else {
            if isASCII { return (String(decoding: octets, as: UTF8.self), .exact) }
            let (text, used) = fallback(octets)
            return (text, .undeclared8Bit(usedFallback: used))
        }
        switch name {
        case "UTF-8":
            return utf8OrReplacement(octets)
        case "US-ASCII":
            // QUIRK: 8-bit octets under us-ascii are a mislabel (swaks sends raw UTF-8 this way,
            // smtp-behaviour.md §1); treat them as undeclared rather than replacing them.
            if isASCII { return (String(decoding: octets, as: UTF8.self), .exact) }
            let (text, used) = fallback(octets)
            return (text, .undeclared8Bit(usedFallback: used))
        case "WINDOWS-1252":
            return (windows1252(octets), .exact)
        default:
            break
        }
        guard let converter = IconvConverter(from: name) else {
            if isASCII {
                return (String(decoding: octets, as: UTF8.self), .unknown(declared: label, usedFallback: "us-ascii"))
            }
            let (text, used) = fallback(octets)
            return (text, .unknown(declared: label, usedFallback: used))
        }
        let (utf8, invalid) = converter.convert(octets)
        return (String(decoding: utf8, as: UTF8.self), invalid == 0 ? .exact : .invalidOctets(count: invalid))
    }

    /// Whether iconv (or the built-in tables) can decode `label`.
    static func isSupported(_ label: String) -> Bool {
        guard let name = iconvName(for: label) else { return false }
        if name == "UTF-8" || name == "US-ASCII" || name == "WINDOWS-1252" { return true }
        return IconvConverter(from: name) != nil
    }

    /// UTF-8 when valid, else windows-1252; returns the label used.
    static func fallback(_ octets: [UInt8]) -> (String, String) {
        if let text = String(validatingUTF8Octets: octets) { return (text, "utf-8") }
        return (windows1252(octets), "windows-1252")
    }

    private static func utf8OrReplacement(_ octets: [UInt8]) -> (String, Outcome) {
        if let text = String(validatingUTF8Octets: octets) { return (text, .exact) }
        let text = String(decoding: octets, as: UTF8.self)
        let replaced = text.unicodeScalars.filter { $0 == "\u{FFFD}" }.count
        return (text, .invalidOctets(count: max(1, replaced)))
    }

    /// windows-1252 → String without iconv, per the WHATWG table: 0x80–0x9F map to the
    /// typographic characters, the five unassigned octets to the matching C1 controls,
    /// everything else to the same code point (ISO-8859-1).
    static func windows1252(_ octets: [UInt8]) -> String {
        var scalars = String.UnicodeScalarView()
        scalars.reserveCapacity(octets.count)
        for octet in octets {
            if octet >= 0x80 && octet < 0xA0 {
                let value = c1Table[Int(octet - 0x80)]
                scalars.append(Unicode.Scalar(value) ?? "\u{FFFD}")
            } else {
                scalars.append(Unicode.Scalar(octet))
            }
        }
        return String(scalars)
    }

    private static let c1Table: [UInt32] = [
        0x20AC, 0x0081, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021,
        0x02C6, 0x2030, 0x0160, 0x2039, 0x0152, 0x008D, 0x017D, 0x008F,
        0x0090, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013, 0x2014,
        0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x009D, 0x017E, 0x0178,
    ]
}

extension String {
    /// A string from `octets` if they are valid UTF-8, else `nil` (no replacement characters).
    init?(validatingUTF8Octets octets: some Collection<UInt8>) {
        guard let text = String(validating: octets, as: UTF8.self) else { return nil }
        self = text
    }

    /// The string without leading and trailing spaces, tabs, CR and LF.
    func trimmingASCIIWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" || $0 == "\r\n" }
        guard let start = firstIndex(where: { !isSpace($0) }), let end = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return String(self[start...end])
    }
}
