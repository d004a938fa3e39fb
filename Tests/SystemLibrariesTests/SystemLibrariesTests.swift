import CCurl
import COpenSSL
import Testing

/// The C shims are compiled and linked only when something uses them; these tests prove the
/// Debian packages (libcurl4-openssl-dev, libssl-dev) are present and the wrappers call through.
@Suite struct SystemLibrariesTests {
    @Test func sha256_ofEmptyInput_isTheWellKnownDigest() {
        var digest = [UInt8](repeating: 0, count: 32)
        let ok = [UInt8]().withUnsafeBufferPointer { input in
            acsgw_sha256(input.baseAddress, 0, &digest)
        }
        #expect(ok == 1)
        #expect(hex(digest) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
    }

    @Test func hmacSHA256_matchesRFC4231TestCase2() {
        let key = Array("Jefe".utf8)
        let data = Array("what do ya want for nothing?".utf8)
        var mac = [UInt8](repeating: 0, count: 32)
        let ok = acsgw_hmac_sha256(key, Int32(key.count), data, data.count, &mac)
        #expect(ok == 1)
        #expect(hex(mac) == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }

    @Test func constantTimeCompare_distinguishesBuffers() {
        let a: [UInt8] = [1, 2, 3]
        let b: [UInt8] = [1, 2, 4]
        #expect(acsgw_memcmp_constant_time(a, a, 3) == 0)
        #expect(acsgw_memcmp_constant_time(a, b, 3) != 0)
    }

    @Test func libcurl_isTheOpenSSLBuildWithHTTPSAndHTTP2Support() throws {
        let info = try #require(acsgw_curl_version_info())
        let features = info.pointee.features
        #expect(features & CURL_VERSION_SSL != 0)
        let ssl = String(cString: info.pointee.ssl_version)
        #expect(ssl.hasPrefix("OpenSSL"))
    }

    @Test func easyHandle_acceptsTypedOptions() throws {
        let handle = try #require(curl_easy_init())
        defer { curl_easy_cleanup(handle) }
        #expect(acsgw_curl_easy_setopt_long(handle, CURLOPT_TIMEOUT_MS, 1000) == CURLE_OK)
        #expect(acsgw_curl_easy_setopt_string(handle, CURLOPT_URL, "https://127.0.0.1/") == CURLE_OK)
    }

    private func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef")
        return String(bytes.flatMap { [digits[Int($0 >> 4)], digits[Int($0 & 0x0f)]] })
    }
}
