/// The admin listener's HTTP/1.x, with no I/O: a request-head parser for the bytes read so far, the routes,
/// and response bytes. Deliberately tiny — three read-only routes on loopback — so it is strict: one request
/// per connection, no body, `Connection: close` on every response.
enum AdminHTTP {
    /// A parsed request line (the header fields are not needed and not interpreted).
    struct RequestHead: Equatable {
        var method: String
        /// The path, without the query string.
        var path: String
    }

    /// The state of the bytes read so far.
    enum HeadState: Equatable {
        /// No complete head yet, and under the limit: read more.
        case incomplete
        case complete(RequestHead)
        /// Answer this and close.
        case invalid(Response)
    }

    /// What a request asks for.
    enum Route: Equatable {
        case metrics
        case health
        case readiness
        /// Answer now with this response.
        case respond(Response)
    }

    struct Response: Equatable {
        var status: Int
        var contentType = "text/plain; charset=utf-8"
        var extraHeaders: [(String, String)] = []
        var body: [UInt8]

        init(
            status: Int, contentType: String = "text/plain; charset=utf-8", extraHeaders: [(String, String)] = [],
            body: String
        ) {
            self.init(status: status, contentType: contentType, extraHeaders: extraHeaders, body: Array(body.utf8))
        }

        init(status: Int, contentType: String, extraHeaders: [(String, String)] = [], body: [UInt8]) {
            self.status = status
            self.contentType = contentType
            self.extraHeaders = extraHeaders
            self.body = body
        }

        static func == (lhs: Response, rhs: Response) -> Bool {
            lhs.status == rhs.status && lhs.contentType == rhs.contentType && lhs.body == rhs.body
                && lhs.extraHeaders.map { "\($0.0): \($0.1)" } == rhs.extraHeaders.map { "\($0.0): \($0.1)" }
        }

        /// The response on the wire; a HEAD request gets the same head without the body.
        func bytes(includeBody: Bool) -> [UInt8] {
            var head = "HTTP/1.1 \(status) \(AdminHTTP.reasonPhrase(status))\r\n"
            head += "Content-Type: \(contentType)\r\n"
            head += "Content-Length: \(body.count)\r\n"
            head += "Cache-Control: no-store\r\n"
            for (name, value) in extraHeaders { head += "\(name): \(value)\r\n" }
            head += "Connection: close\r\n\r\n"
            return Array(head.utf8) + (includeBody ? body : [])
        }
    }

    /// The Prometheus text exposition format, version 0.0.4.
    static let metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

    static let badRequest = Response(status: 400, body: "bad request\n")
    static let headTooLarge = Response(status: 431, body: "request head too large\n")
    static let timeout = Response(status: 408, body: "request timeout\n")
    static let notFound = Response(status: 404, body: "not found: try /metrics, /healthz or /readyz\n")
    static let methodNotAllowed = Response(
        status: 405, extraHeaders: [("Allow", "GET, HEAD")], body: "method not allowed: GET or HEAD only\n")
    static let busy = Response(status: 503, body: "too many admin connections\n")

    /// Looks for the end of the request head (an empty line, CRLF or bare LF) within `maxHeadOctets`.
    static func parseHead(_ buffer: [UInt8], maxHeadOctets: Int) -> HeadState {
        guard let end = headEnd(buffer, limit: maxHeadOctets) else {
            return buffer.count >= maxHeadOctets ? .invalid(headTooLarge) : .incomplete
        }
        let lineEnd = buffer[..<end].firstIndex(of: 10) ?? end
        var line = buffer[..<lineEnd]
        if line.last == 13 { line = line.dropLast() }
        // RFC 9112 §3: method SP request-target SP HTTP-version, each part non-empty, printable ASCII.
        guard line.allSatisfy({ $0 > 0x20 && $0 < 0x7F || $0 == 0x20 }) else { return .invalid(badRequest) }
        let parts = line.split(separator: 0x20, omittingEmptySubsequences: false)
        guard parts.count == 3, parts.allSatisfy({ !$0.isEmpty }) else { return .invalid(badRequest) }
        let method = String(decoding: parts[0], as: UTF8.self)
        let target = String(decoding: parts[1], as: UTF8.self)
        let version = String(decoding: parts[2], as: UTF8.self)
        guard method.utf8.allSatisfy({ (65...90).contains($0) }), version == "HTTP/1.1" || version == "HTTP/1.0",
            target.hasPrefix("/")
        else { return .invalid(badRequest) }
        let path = target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)
        return .complete(RequestHead(method: method, path: path ?? target))
    }

    /// Where the head ends (the index just past its empty line), if it does within `limit` octets.
    private static func headEnd(_ buffer: [UInt8], limit: Int) -> Int? {
        let count = min(buffer.count, limit)
        var index = 0
        while index < count {
            if buffer[index] == 10 {
                // The line after this LF is empty: LF LF or LF CR LF.
                if index + 1 < count && buffer[index + 1] == 10 { return index + 2 }
                if index + 2 < count && buffer[index + 1] == 13 && buffer[index + 2] == 10 { return index + 3 }
            }
            index += 1
        }
        return nil
    }

    static func route(_ head: RequestHead) -> Route {
        let route: Route
        switch head.path {
        case "/metrics": route = .metrics
        case "/healthz": route = .health
        case "/readyz": route = .readiness
        default: return .respond(notFound)
        }
        guard head.method == "GET" || head.method == "HEAD" else { return .respond(methodNotAllowed) }
        return route
    }

    static func reasonPhrase(_ status: Int) -> String {
        switch status {
        case 200: "OK"
        case 400: "Bad Request"
        case 404: "Not Found"
        case 405: "Method Not Allowed"
        case 408: "Request Timeout"
        case 431: "Request Header Fields Too Large"
        case 503: "Service Unavailable"
        default: "Status"
        }
    }
}
