import MailParser

/// Standard base64 (RFC 4648 §4) with padding and without line breaks, the form `contentInBase64` takes
/// (docs/acs-email-api.md §2.1). Written here rather than with Foundation's `Data` so attachment octets are
/// encoded in one pass straight into their destination: the request buffer (``ACSJSONEncoder``), or a
/// string's own storage, without an intermediate copy
/// (`test_convert_of_a_7_mb_attachment_grows_the_peak_under_1_5x_the_message`).
enum Base64 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// The length of the base64 of `count` octets.
    static func encodedCount(_ count: Int) -> Int {
        (count + 2) / 3 * 4
    }

    static func encode(_ input: [UInt8]) -> String {
        let length = encodedCount(input.count)
        guard length > 0 else { return "" }
        return String(unsafeUninitializedCapacity: length) { output in
            input.withUnsafeBufferPointer { encode($0, into: output) }
        }
    }

    /// Writes the base64 of `input` at the start of `output`, which must hold ``encodedCount(_:)`` octets;
    /// returns how many it wrote.
    @discardableResult
    static func encode(_ input: UnsafeBufferPointer<UInt8>, into output: UnsafeMutableBufferPointer<UInt8>) -> Int {
        precondition(output.count >= encodedCount(input.count), "base64 output buffer too small")
        var index = 0
        var written = 0
        alphabet.withUnsafeBufferPointer { alphabet in
            func put(_ byte: UInt8) {
                output[written] = byte
                written += 1
            }
            while index + 3 <= input.count {
                let chunk = UInt32(input[index]) << 16 | UInt32(input[index + 1]) << 8 | UInt32(input[index + 2])
                put(alphabet[Int(chunk >> 18 & 0x3F)])
                put(alphabet[Int(chunk >> 12 & 0x3F)])
                put(alphabet[Int(chunk >> 6 & 0x3F)])
                put(alphabet[Int(chunk & 0x3F)])
                index += 3
            }
            let rest = input.count - index
            if rest > 0 {
                let chunk = UInt32(input[index]) << 16 | (rest == 2 ? UInt32(input[index + 1]) << 8 : 0)
                put(alphabet[Int(chunk >> 18 & 0x3F)])
                put(alphabet[Int(chunk >> 12 & 0x3F)])
                put(rest == 2 ? alphabet[Int(chunk >> 6 & 0x3F)] : UInt8(ascii: "="))
                put(UInt8(ascii: "="))
            }
        }
        return written
    }
}

/// Base64-encodes octets as a decoder hands them over (``Base64Content/decode(into:)``), appending to `output`:
/// an attachment kept encoded in the message is re-encoded into the request without a decoded copy.
struct Base64StreamEncoder: OctetSink {
    var output: [UInt8]
    private var group: UInt32 = 0
    private var pending = 0

    init(output: [UInt8]) {
        self.output = output
    }

    mutating func put(_ octet: UInt8) {
        group = group << 8 | UInt32(octet)
        pending += 1
        guard pending == 3 else { return }
        append(group, characters: 4)
        group = 0
        pending = 0
    }

    /// Writes the last, padded quantum.
    mutating func finish() {
        switch pending {
        case 1:
            append(group << 16, characters: 2)
            output.append(contentsOf: [UInt8(ascii: "="), UInt8(ascii: "=")])
        case 2:
            append(group << 8, characters: 3)
            output.append(UInt8(ascii: "="))
        default:
            break
        }
        group = 0
        pending = 0
    }

    private mutating func append(_ chunk: UInt32, characters: Int) {
        for index in 0..<characters {
            output.append(Base64.alphabet[Int(chunk >> (18 - 6 * index) & 0x3F)])
        }
    }
}
