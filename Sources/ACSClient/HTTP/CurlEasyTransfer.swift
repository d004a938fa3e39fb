import CCurl
import Foundation

/// One transfer: owns a libcurl easy handle, its header list and error buffer, and collects the
/// response. Created, used and destroyed on the multi transport's queue only.
final class CurlEasyTransfer {
    let handle: UnsafeMutableRawPointer
    let completion: @Sendable (Result<HTTPResponse, HTTPTransportError>) -> Void
    private var headerList: UnsafeMutablePointer<curl_slist>?
    private let errorBuffer: UnsafeMutablePointer<CChar>
    private var responseBody: [UInt8] = []
    private var responseHeaders: [(name: String, value: String)] = []
    private let maxResponseSize: Int
    /// The request body, which libcurl reads through the read callback as it sends, straight from this array
    /// (shared with the client, which keeps it for retries). CURLOPT_COPYPOSTFIELDS would copy a request of
    /// megabytes once more for each attempt.
    private let requestBody: [UInt8]
    /// How much of ``requestBody`` libcurl has read.
    private var bodyOffset = 0

    struct SetupError: Error {
        var message: String
    }

    /// Configures a handle for `request`. Throws when libcurl refuses an option (a programming or
    /// build error, reported as a transport error rather than a crash).
    init(
        request: HTTPRequest, options: CurlMultiTransport.Options, maxResponseSize: Int,
        completion: @escaping @Sendable (Result<HTTPResponse, HTTPTransportError>) -> Void
    ) throws {
        guard let handle = curl_easy_init() else { throw SetupError(message: "curl_easy_init failed") }
        self.handle = handle
        self.completion = completion
        self.maxResponseSize = maxResponseSize
        self.requestBody = request.body
        errorBuffer = .allocate(capacity: Int(CURL_ERROR_SIZE))
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE))
        do {
            try configure(request, options)
        } catch {
            cleanUp()
            throw error
        }
    }

    private func check(_ code: CURLcode, _ what: String) throws {
        guard code == CURLE_OK else {
            throw SetupError(message: "\(what): \(String(cString: curl_easy_strerror(code)))")
        }
    }

    private func configure(_ request: HTTPRequest, _ options: CurlMultiTransport.Options) throws {
        try check(acsgw_curl_easy_setopt_pointer(handle, CURLOPT_ERRORBUFFER, errorBuffer), "error buffer")
        try check(acsgw_curl_easy_setopt_string(handle, CURLOPT_URL, request.url), "URL")
        // Only http(s): a URL from configuration or a token response must never reach file:// or others.
        try check(acsgw_curl_easy_setopt_string(handle, CURLOPT_PROTOCOLS_STR, "http,https"), "protocols")
        try check(acsgw_curl_easy_setopt_long(handle, CURLOPT_NOSIGNAL, 1), "no signals")
        try check(acsgw_curl_easy_setopt_long(handle, CURLOPT_TIMEOUT_MS, Int(request.timeout * 1000)), "timeout")
        try check(
            acsgw_curl_easy_setopt_long(handle, CURLOPT_CONNECTTIMEOUT_MS, Int(request.connectTimeout * 1000)),
            "connect timeout")
        // HTTP/2 over TLS when the server offers it through ALPN, HTTP/1.1 otherwise.
        try check(
            acsgw_curl_easy_setopt_long(handle, CURLOPT_HTTP_VERSION, CURL_HTTP_VERSION_2TLS),
            "HTTP version")
        // While a connection to the host is still being set up, wait to learn whether it multiplexes instead
        // of opening another: without this a burst of sends (the first after start, or after an idle spell)
        // opened one TLS connection per request even to an HTTP/2 server (50 for 50, seen in HTTP2Tests).
        try check(acsgw_curl_easy_setopt_long(handle, CURLOPT_PIPEWAIT, 1), "wait for multiplexing")
        try check(acsgw_curl_easy_setopt_long(handle, CURLOPT_SSL_VERIFYPEER, 1), "verify peer")
        try check(acsgw_curl_easy_setopt_long(handle, CURLOPT_SSL_VERIFYHOST, 2), "verify host")
        if let caFile = options.caFile {
            try check(acsgw_curl_easy_setopt_string(handle, CURLOPT_CAINFO, caFile), "CA file")
        }
        if !request.useProxy {
            try check(acsgw_curl_easy_setopt_string(handle, CURLOPT_NOPROXY, "*"), "no proxy")
        } else if let proxy = options.proxy {
            // Otherwise libcurl honours https_proxy / no_proxy from the environment by itself.
            try check(acsgw_curl_easy_setopt_string(handle, CURLOPT_PROXY, proxy), "proxy")
        }
        let me = Unmanaged.passUnretained(self).toOpaque()
        switch request.method.uppercased() {
        case "GET":
            try check(acsgw_curl_easy_setopt_long(handle, CURLOPT_HTTPGET, 1), "GET")
        case "POST":
            try check(acsgw_curl_easy_setopt_long(handle, CURLOPT_POST, 1), "POST")
            // The size first; then libcurl reads exactly that many octets, the signed bytes, through the read
            // callback, and rewinds through the seek callback when it must send them again.
            try check(
                acsgw_curl_easy_setopt_off_t(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(request.body.count)),
                "body size")
            try check(acsgw_curl_easy_setopt_pointer(handle, CURLOPT_READDATA, me), "read data")
            try check(
                acsgw_curl_easy_setopt_data_callback(handle, CURLOPT_READFUNCTION) { buffer, size, count, userdata in
                    guard let userdata, let buffer else { return Int(CURL_READFUNC_ABORT) }
                    let transfer = Unmanaged<CurlEasyTransfer>.fromOpaque(userdata).takeUnretainedValue()
                    return transfer.readBody(into: UnsafeMutableRawBufferPointer(start: buffer, count: size * count))
                }, "read function")
            try check(acsgw_curl_easy_setopt_pointer(handle, CURLOPT_SEEKDATA, me), "seek data")
            try check(
                acsgw_curl_easy_setopt_seek_callback(handle) { userdata, offset, origin in
                    guard let userdata else { return CURL_SEEKFUNC_FAIL }
                    let transfer = Unmanaged<CurlEasyTransfer>.fromOpaque(userdata).takeUnretainedValue()
                    return transfer.rewindBody(to: offset, origin: origin) ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_CANTSEEK
                }, "seek function")
        default:
            try check(acsgw_curl_easy_setopt_string(handle, CURLOPT_CUSTOMREQUEST, request.method), "method")
        }
        // "Expect:" removes libcurl's Expect: 100-continue, which costs a round trip for no benefit here.
        for line in request.headers.map({ "\($0.name): \($0.value)" }) + ["Expect:"] {
            guard let appended = curl_slist_append(headerList, line) else {
                throw SetupError(message: "curl_slist_append failed")
            }
            headerList = appended
        }
        try check(acsgw_curl_easy_setopt_pointer(handle, CURLOPT_HTTPHEADER, headerList), "headers")

        try check(acsgw_curl_easy_setopt_pointer(handle, CURLOPT_WRITEDATA, me), "write data")
        try check(
            acsgw_curl_easy_setopt_data_callback(handle, CURLOPT_WRITEFUNCTION) { buffer, size, count, userdata in
                guard let userdata, let buffer else { return 0 }
                let transfer = Unmanaged<CurlEasyTransfer>.fromOpaque(userdata).takeUnretainedValue()
                return transfer.receivedBody(UnsafeRawBufferPointer(start: buffer, count: size * count))
            }, "write function")
        try check(acsgw_curl_easy_setopt_pointer(handle, CURLOPT_HEADERDATA, me), "header data")
        try check(
            acsgw_curl_easy_setopt_data_callback(handle, CURLOPT_HEADERFUNCTION) { buffer, size, count, userdata in
                guard let userdata, let buffer else { return 0 }
                let transfer = Unmanaged<CurlEasyTransfer>.fromOpaque(userdata).takeUnretainedValue()
                transfer.receivedHeaderLine(UnsafeRawBufferPointer(start: buffer, count: size * count))
                return size * count
            }, "header function")
    }

    /// Copies the next octets of the request body into libcurl's buffer; 0 once all were read.
    private func readBody(into buffer: UnsafeMutableRawBufferPointer) -> Int {
        let count = min(buffer.count, requestBody.count - bodyOffset)
        guard count > 0 else { return 0 }
        requestBody.withUnsafeBytes { body in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: body[bodyOffset..<(bodyOffset + count)]))
        }
        bodyOffset += count
        return count
    }

    /// libcurl asks to read the body again from `offset` (it only ever seeks from the start).
    private func rewindBody(to offset: curl_off_t, origin: Int32) -> Bool {
        guard origin == SEEK_SET, offset >= 0, offset <= requestBody.count else { return false }
        bodyOffset = Int(offset)
        return true
    }

    /// Returning less than was given makes libcurl abort the transfer (CURLE_WRITE_ERROR): a response
    /// larger than we would ever accept from ACS is cut off instead of buffered without bound.
    private func receivedBody(_ bytes: UnsafeRawBufferPointer) -> Int {
        guard responseBody.count + bytes.count <= maxResponseSize else { return 0 }
        responseBody.append(contentsOf: bytes)
        return bytes.count
    }

    /// Parses one header line as libcurl hands it over (status lines included, CRLF attached). Byte-level on
    /// purpose: every response brings a dozen of these, and Foundation's `trimmingCharacters` bridged each one
    /// through NSString, which was the largest single cost of a send in the profile of a direct-mode run.
    private func receivedHeaderLine(_ bytes: UnsafeRawBufferPointer) {
        guard let line = Self.headerField(bytes) else {
            if bytes.starts(with: "HTTP/".utf8) {
                responseHeaders = []  // a new response starts (after 100 Continue, or a proxy's CONNECT reply)
            }
            return
        }
        responseHeaders.append(line)
    }

    /// `name: value` with the name lowercased and both sides trimmed of spaces, tabs and line ends (RFC 9110
    /// §5.5 optional whitespace); nil for a status line, the blank line that ends the headers, or a line
    /// without a colon.
    static func headerField(_ bytes: some Collection<UInt8>) -> (name: String, value: String)? {
        let line = Array(bytes)
        guard !line.starts(with: "HTTP/".utf8), let colon = line.firstIndex(of: UInt8(ascii: ":")) else { return nil }
        func isSpace(_ byte: UInt8) -> Bool { byte == 0x20 || byte == 0x09 || byte == 0x0D || byte == 0x0A }
        func trimmed(_ range: Range<Int>) -> ArraySlice<UInt8> {
            var slice = line[range]
            while let first = slice.first, isSpace(first) { slice.removeFirst() }
            while let last = slice.last, isSpace(last) { slice.removeLast() }
            return slice
        }
        let name = trimmed(0..<colon).map { (0x41...0x5A).contains($0) ? $0 | 0x20 : $0 }
        return (
            name: String(decoding: name, as: UTF8.self),
            value: String(decoding: trimmed((colon + 1)..<line.count), as: UTF8.self)
        )
    }

    /// The transfer ended with `code`: builds the result.
    func result(for code: CURLcode) -> Result<HTTPResponse, HTTPTransportError> {
        guard code == CURLE_OK else {
            let detail = errorBuffer[0] != 0 ? String(cString: errorBuffer) : String(cString: curl_easy_strerror(code))
            return .failure(HTTPTransportError(Self.kind(of: code), detail))
        }
        var status = 0
        _ = acsgw_curl_easy_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        var version = 0
        _ = acsgw_curl_easy_getinfo_long(handle, CURLINFO_HTTP_VERSION, &version)
        let versionText = version == CURL_HTTP_VERSION_2_0 ? "2" : "1.1"
        return .success(
            HTTPResponse(status: status, headers: responseHeaders, body: responseBody, httpVersion: versionText))
    }

    private static func kind(of code: CURLcode) -> HTTPTransportError.Kind {
        switch code {
        case CURLE_OPERATION_TIMEDOUT: .timeout
        case CURLE_COULDNT_CONNECT, CURLE_COULDNT_RESOLVE_HOST, CURLE_COULDNT_RESOLVE_PROXY: .connectionFailed
        case CURLE_SSL_CONNECT_ERROR, CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CERTPROBLEM, CURLE_SSL_CACERT_BADFILE,
            CURLE_SSL_CIPHER:
            .tls
        case CURLE_SEND_ERROR, CURLE_RECV_ERROR, CURLE_GOT_NOTHING, CURLE_PARTIAL_FILE, CURLE_HTTP2,
            CURLE_HTTP2_STREAM:
            .connectionLost
        default: .other
        }
    }

    /// Frees the easy handle (after it was removed from the multi handle) and its buffers.
    func cleanUp() {
        curl_easy_cleanup(handle)
        curl_slist_free_all(headerList)
        headerList = nil
        errorBuffer.deallocate()
    }
}
