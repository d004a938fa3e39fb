/// The `x-ms-client-request-id` of each request: a random (version 4) UUID in lowercase.
///
/// Drawn from `SystemRandomNumberGenerator` (getrandom(2)) instead of Foundation's `UUID()`, which opened and
/// read /dev/urandom once per id on Linux: a file opened for every message sent.
enum RequestID {
    static func make() -> String {
        var generator = SystemRandomNumberGenerator()
        let random = (generator.next() as UInt64, generator.next() as UInt64)
        var bytes = (0..<16).map { UInt8(truncatingIfNeeded: ($0 < 8 ? random.0 : random.1) >> (8 * UInt64($0 % 8))) }
        bytes[6] = 0x40 | (bytes[6] & 0x0F)  // version 4
        bytes[8] = 0x80 | (bytes[8] & 0x3F)  // RFC 9562 variant
        let digits = Array("0123456789abcdef".utf8)
        var text: [UInt8] = []
        text.reserveCapacity(36)
        for (index, byte) in bytes.enumerated() {
            if index == 4 || index == 6 || index == 8 || index == 10 { text.append(UInt8(ascii: "-")) }
            text.append(digits[Int(byte >> 4)])
            text.append(digits[Int(byte & 0x0F)])
        }
        return String(decoding: text, as: UTF8.self)
    }
}
