import COpenSSL
import Foundation

/// SHA-256 and HMAC-SHA256 through OpenSSL's libcrypto (the only file that calls it).
enum Digest {
    /// SHA-256 of `bytes` (32 octets).
    static func sha256(_ bytes: some ContiguousBytes) -> [UInt8] {
        var digest = [UInt8](repeating: 0, count: 32)
        let ok = bytes.withUnsafeBytes { input in
            acsgw_sha256(input.bindMemory(to: UInt8.self).baseAddress, input.count, &digest)
        }
        // EVP_Digest only fails on allocation failure or a missing algorithm: both are unrecoverable.
        precondition(ok == 1, "libcrypto SHA-256 failed")
        return digest
    }

    /// HMAC-SHA256 of `message` under `key` (32 octets).
    static func hmacSHA256(key: [UInt8], message: some ContiguousBytes) -> [UInt8] {
        var mac = [UInt8](repeating: 0, count: 32)
        let ok = message.withUnsafeBytes { input in
            acsgw_hmac_sha256(key, Int32(key.count), input.bindMemory(to: UInt8.self).baseAddress, input.count, &mac)
        }
        precondition(ok == 1, "libcrypto HMAC-SHA256 failed")
        return mac
    }

    /// Compares two MACs without leaking where they differ through timing.
    static func constantTimeEqual(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        return acsgw_memcmp_constant_time(a, b, a.count) == 0
    }
}
