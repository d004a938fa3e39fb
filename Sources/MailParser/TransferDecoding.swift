/// Content-Transfer-Encoding decoders (RFC 2045 §6), lenient in the ways real mail needs.
enum TransferDecoding {
    /// What a lenient base64 decode had to forgive.
    struct Base64Report: Equatable {
        /// Octets outside the base64 alphabet other than whitespace (skipped).
        var invalidCharacters = 0
        /// The final quantum lacked its `=` padding (decoded anyway).
        var missingPadding = false
        /// A single dangling character at the end that cannot form an octet (dropped).
        var danglingCharacter = false
        /// Data followed the `=` padding and was ignored (RFC 2045 §6.8: padding marks the end).
        var dataAfterPadding = false

        var isClean: Bool { self == Base64Report() }
    }

    /// What a lenient quoted-printable decode had to forgive.
    struct QuotedPrintableReport: Equatable {
        /// `=` not followed by two hex digits or a line break; kept literally (RFC 2045 §6.7 note 1).
        var invalidEscapes = 0
    }

    private static let base64Values: [UInt8] = {
        var table = [UInt8](repeating: 0xFF, count: 256)
        let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
        for (value, character) in alphabet.enumerated() { table[Int(character)] = UInt8(value) }
        // RFC 4648 §5 URL-safe alphabet: some broken encoders emit it; accepting it costs nothing.
        table[Int(UInt8(ascii: "-"))] = 62
        table[Int(UInt8(ascii: "_"))] = 63
        return table
    }()

    /// Decodes base64, ignoring whitespace and line length (RFC 2045 §6.8 says decoders must
    /// ignore characters outside the alphabet), tolerating missing padding. Padding that ends a
    /// quantum ends the data ("may be taken as evidence that the end of the data has been
    /// reached", §6.8); what follows is ignored, as Python's binascii and Stalwart do.
    static func base64(_ input: some Collection<UInt8>) -> (octets: [UInt8], report: Base64Report) {
        var output = OctetCollector()
        output.octets.reserveCapacity(input.count / 4 * 3 + 3)
        let report = base64(input, into: &output)
        return (output.octets, report)
    }

    /// The same decoding, handing each octet to `sink` as it is decoded instead of collecting them: a
    /// ``OctetCounter`` measures the content without holding it, ``Base64Content`` streams it.
    static func base64<Sink: OctetSink>(_ input: some Collection<UInt8>, into sink: inout Sink) -> Base64Report {
        var report = Base64Report()
        var accumulator: UInt32 = 0
        var count = 0
        var ended = false
        for byte in input {
            let value = base64Values[Int(byte)]
            let isSpace = byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A
            if ended {
                if !isSpace && byte != UInt8(ascii: "=") { report.dataAfterPadding = true }
                continue
            }
            if value == 0xFF {
                if byte == UInt8(ascii: "="), count >= 2 {
                    // Padding closes the final quantum: flush what it holds, and stop.
                    flush(&accumulator, &count, into: &sink, report: &report, padded: true)
                    ended = true
                } else if !isSpace {
                    report.invalidCharacters += 1
                }
                continue
            }
            accumulator = accumulator << 6 | UInt32(value)
            count += 1
            if count == 4 {
                sink.put(UInt8(truncatingIfNeeded: accumulator >> 16))
                sink.put(UInt8(truncatingIfNeeded: accumulator >> 8))
                sink.put(UInt8(truncatingIfNeeded: accumulator))
                accumulator = 0
                count = 0
            }
        }
        flush(&accumulator, &count, into: &sink, report: &report, padded: false)
        return report
    }

    private static func flush<Sink: OctetSink>(
        _ accumulator: inout UInt32, _ count: inout Int, into output: inout Sink,
        report: inout Base64Report, padded: Bool
    ) {
        switch count {
        case 2:
            output.put(UInt8(truncatingIfNeeded: accumulator >> 4))
            if !padded { report.missingPadding = true }
        case 3:
            output.put(UInt8(truncatingIfNeeded: accumulator >> 10))
            output.put(UInt8(truncatingIfNeeded: accumulator >> 2))
            if !padded { report.missingPadding = true }
        case 1:
            report.danglingCharacter = true
        default:
            break
        }
        accumulator = 0
        count = 0
    }

    /// Decodes quoted-printable (RFC 2045 §6.7): `=XX` in either case, soft line breaks
    /// (`=` then optional whitespace then CRLF or LF), trailing whitespace on a line removed
    /// (rule 3: it may have been added in transport), malformed `=` escapes kept as written.
    /// Hard line breaks are kept exactly as they were (CRLF or LF).
    static func quotedPrintable(_ input: ArraySlice<UInt8>) -> (octets: [UInt8], report: QuotedPrintableReport) {
        var output: [UInt8] = []
        output.reserveCapacity(input.count)
        var report = QuotedPrintableReport()
        var index = input.startIndex
        let end = input.endIndex
        while index < end {
            let byte = input[index]
            if byte == UInt8(ascii: "=") {
                // Soft line break: "=" [WSP...] (CRLF | LF | end of input).
                var probe = index + 1
                while probe < end, input[probe] == 0x20 || input[probe] == 0x09 { probe += 1 }
                if probe == end {
                    index = end
                    continue
                }
                if input[probe] == 0x0A {
                    index = probe + 1
                    continue
                }
                if input[probe] == 0x0D, probe + 1 < end, input[probe + 1] == 0x0A {
                    index = probe + 2
                    continue
                }
                if index + 2 < end, let high = hexValue(input[index + 1]), let low = hexValue(input[index + 2]) {
                    output.append(high << 4 | low)
                    index += 3
                    continue
                }
                report.invalidEscapes += 1
                output.append(byte)
                index += 1
                continue
            }
            if byte == 0x20 || byte == 0x09 {
                // Rule 3: drop whitespace that ends a line.
                var probe = index
                while probe < end, input[probe] == 0x20 || input[probe] == 0x09 { probe += 1 }
                let endsLine =
                    probe == end || input[probe] == 0x0A
                    || (input[probe] == 0x0D && probe + 1 < end && input[probe + 1] == 0x0A)
                if !endsLine { output.append(contentsOf: input[index..<probe]) }
                index = probe
                continue
            }
            output.append(byte)
            index += 1
        }
        return (output, report)
    }

    static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        default: return nil
        }
    }
}

/// Where a streaming decoder puts the octets it decodes, one at a time.
public protocol OctetSink {
    mutating func put(_ octet: UInt8)
}

/// Collects decoded octets into an array.
struct OctetCollector: OctetSink {
    var octets: [UInt8] = []

    mutating func put(_ octet: UInt8) {
        octets.append(octet)
    }
}

/// Counts decoded octets without keeping them.
struct OctetCounter: OctetSink {
    var count = 0

    mutating func put(_ octet: UInt8) {
        count += 1
    }
}
