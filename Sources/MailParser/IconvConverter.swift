#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The only owner of an `iconv_t` handle: opened in `init?`, closed in `deinit`.
///
/// Not shared between threads: a conversion opens its own converter, uses it, and drops it.
/// glibc caches the loaded gconv modules, so `iconv_open` is cheap after the first use.
final class IconvConverter {
    private let handle: iconv_t

    /// Opens a converter from `charset` (an iconv name) to UTF-8, or `nil` when iconv does not know it.
    init?(from charset: String) {
        let opened = iconv_open("UTF-8", charset)
        // iconv_open signals failure with (iconv_t)-1, not NULL.
        guard let opened, Int(bitPattern: opened) != -1 else { return nil }
        handle = opened
    }

    deinit {
        iconv_close(handle)
    }

    /// Converts `input` to UTF-8 octets. An invalid or truncated sequence becomes U+FFFD and
    /// conversion resumes one octet later, so every input yields output.
    /// - Returns: the UTF-8 octets and the number of octets that could not be converted.
    func convert(_ input: [UInt8]) -> (utf8: [UInt8], invalidCount: Int) {
        var output: [UInt8] = []
        output.reserveCapacity(input.count + input.count / 2 + 16)
        var invalid = 0
        var chunk = [UInt8](repeating: 0, count: 16_384)
        let replacement: [UInt8] = [0xEF, 0xBF, 0xBD]
        // Reset the shift state (needed for stateful encodings such as ISO-2022-JP).
        iconv(handle, nil, nil, nil, nil)
        input.withUnsafeBufferPointer { inputBuffer in
            guard let base = inputBuffer.baseAddress else { return }
            var inPointer = UnsafeMutablePointer<CChar>(
                mutating: UnsafeRawPointer(base).assumingMemoryBound(to: CChar.self))
            var inLeft = inputBuffer.count
            while inLeft > 0 {
                let (result, produced, errorCode) = chunk.withUnsafeMutableBufferPointer { out in
                    var outPointer: UnsafeMutablePointer<CChar>? = UnsafeMutableRawPointer(out.baseAddress)?
                        .assumingMemoryBound(to: CChar.self)
                    var outLeft = out.count
                    var inOptional: UnsafeMutablePointer<CChar>? = inPointer
                    let result = iconv(handle, &inOptional, &inLeft, &outPointer, &outLeft)
                    let error = result == -1 ? errno : 0
                    if let inOptional { inPointer = inOptional }
                    return (result, out.count - outLeft, error)
                }
                output.append(contentsOf: chunk[0..<produced])
                if result != -1 { continue }
                switch errorCode {
                case E2BIG:
                    continue  // the output chunk was full; go round again
                case EILSEQ, EINVAL:
                    // EILSEQ: invalid sequence; EINVAL: incomplete sequence at the end of input.
                    output.append(contentsOf: replacement)
                    invalid += 1
                    inPointer += 1
                    inLeft -= 1
                    iconv(handle, nil, nil, nil, nil)
                default:
                    output.append(contentsOf: replacement)
                    invalid += inLeft
                    inLeft = 0
                }
            }
        }
        // Flush any pending shift sequence output.
        chunk.withUnsafeMutableBufferPointer { out in
            var outPointer: UnsafeMutablePointer<CChar>? = UnsafeMutableRawPointer(out.baseAddress)?
                .assumingMemoryBound(to: CChar.self)
            var outLeft = out.count
            iconv(handle, nil, nil, &outPointer, &outLeft)
            output.append(contentsOf: out[0..<(out.count - outLeft)])
        }
        return (output, invalid)
    }
}
