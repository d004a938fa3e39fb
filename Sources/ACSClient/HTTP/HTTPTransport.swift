/// One HTTP request as the ACS client needs it: the exact body octets that were signed.
public struct HTTPRequest: Sendable {
    public var method: String
    public var url: String
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// Whole-request timeout in seconds (connect, TLS, send, wait, receive).
    public var timeout: Double
    /// Connection establishment timeout in seconds (TCP + TLS).
    public var connectTimeout: Double
    /// False for requests that must never go through a proxy (the IMDS token endpoint).
    public var useProxy: Bool

    public init(
        method: String, url: String, headers: [(name: String, value: String)] = [], body: [UInt8] = [],
        timeout: Double = 20, connectTimeout: Double = 10, useProxy: Bool = true
    ) {
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body
        self.timeout = timeout
        self.connectTimeout = connectTimeout
        self.useProxy = useProxy
    }
}

extension HTTPRequest: CustomStringConvertible {
    /// Method and URL only: the headers carry signatures or bearer tokens and are never printed.
    public var description: String { "\(method) \(url) (\(body.count) octets)" }
}

/// A complete HTTP response.
public struct HTTPResponse: Sendable, Equatable {
    public var status: Int
    /// Header fields of the final response, names lower-cased, in order.
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]
    /// "1.1" or "2".
    public var httpVersion: String

    public init(
        status: Int, headers: [(name: String, value: String)] = [], body: [UInt8] = [], httpVersion: String = "1.1"
    ) {
        self.status = status
        self.headers = headers.map { (name: $0.name.lowercased(), value: $0.value) }
        self.body = body
        self.httpVersion = httpVersion
    }

    /// The first value of a header, by case-insensitive name.
    public func header(_ name: String) -> String? {
        let lower = name.lowercased()
        return headers.first(where: { $0.name == lower })?.value
    }

    public static func == (lhs: HTTPResponse, rhs: HTTPResponse) -> Bool {
        lhs.status == rhs.status && lhs.body == rhs.body && lhs.httpVersion == rhs.httpVersion
            && lhs.headers.elementsEqual(rhs.headers) { $0.name == $1.name && $0.value == $1.value }
    }
}

/// Why a request got no HTTP response. Every kind is worth a retry with the same Operation-Id: ACS
/// treats a repeated Operation-Id as the same operation, so a request that did reach it is not sent twice.
public struct HTTPTransportError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        /// The request did not complete within its timeout.
        case timeout
        /// No connection: refused, unreachable, name not resolved, proxy failure.
        case connectionFailed
        /// TLS handshake or certificate verification failed (often a CA configuration problem).
        case tls
        /// The connection broke while sending or receiving.
        case connectionLost
        /// Anything else libcurl reports.
        case other
    }

    public var kind: Kind
    /// libcurl's explanation (from CURLOPT_ERRORBUFFER), for the log.
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "\(kind.rawValue): \(message)" }
}

/// Performs HTTP requests asynchronously. `completion` is called exactly once, on an unspecified queue,
/// and must not block.
public protocol HTTPTransport: Sendable {
    func perform(
        _ request: HTTPRequest, completion: @escaping @Sendable (Result<HTTPResponse, HTTPTransportError>) -> Void)
}
