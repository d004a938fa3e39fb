/// Standard base64 (RFC 4648 §4) with padding and without line breaks, the form `contentInBase64` takes
/// (docs/acs-email-api.md §2.1). Written here rather than with Foundation's `Data` so attachment octets are
/// encoded in one pass straight into their destination: the request buffer (``ACSJSONEncoder``), or a
/// string's own storage, without an intermediate copy
/// (`test_convert_of_a_7_mb_attachment_peaks_under_4x_its_size`).
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

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
