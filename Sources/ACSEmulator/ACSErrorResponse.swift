import Foundation

/// An error answer in the ACS shape: `{"error":{"code","message"}}` with `x-ms-error-code` equal to the code
/// (acs-email-api.md §1.5, §1.7).
struct ACSErrorResponse: Error, Sendable, Equatable {
    var status: Int
    var code: String
    var message: String
    /// Extra response headers, e.g. `Retry-After` on 429.
    var headers: [(name: String, value: String)] = []

    init(status: Int, code: String, message: String, headers: [(name: String, value: String)] = []) {
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers
    }

    static func == (lhs: ACSErrorResponse, rhs: ACSErrorResponse) -> Bool {
        lhs.status == rhs.status && lhs.code == rhs.code && lhs.message == rhs.message
            && lhs.headers.elementsEqual(rhs.headers) { $0.name == $1.name && $0.value == $1.value }
    }

    /// The JSON body, `{"error":{"code":…,"message":…}}` (keys sorted, which is also the service's order).
    var body: [UInt8] {
        JSONValue.object(["error": .object(["code": .string(code), "message": .string(message)])]).serialized()
    }

    // MARK: The errors the emulator gives, in one place

    /// The resource provider's answer to a missing, malformed or wrong credential (§1.8 row "401 Denied").
    static func denied(_ message: String = "Denied by the resource provider.") -> ACSErrorResponse {
        ACSErrorResponse(status: 401, code: "Denied", message: message)
    }

    static func badRequest(_ message: String) -> ACSErrorResponse {
        ACSErrorResponse(status: 400, code: "BadRequest", message: message)
    }

    static func invalidEmailAddress(_ address: String, field: String) -> ACSErrorResponse {
        ACSErrorResponse(
            status: 400, code: "InvalidEmailAddress",
            message: "The email address '\(address)' in \(field) is not a valid email address.")
    }

    static func notFound(_ message: String) -> ACSErrorResponse {
        ACSErrorResponse(status: 404, code: "NotFound", message: message)
    }

    /// The default code for an HTTP status, for faults that give only a status.
    static func defaultCode(forStatus status: Int) -> String {
        switch status {
        case 400: "BadRequest"
        case 401: "Denied"
        case 403: "Forbidden"
        case 404: "NotFound"
        case 409: "Conflict"
        case 413: "RequestEntityTooLarge"
        case 429: "TooManyRequests"
        case 500: "InternalServerError"
        case 502: "BadGateway"
        case 503: "ServiceUnavailable"
        case 504: "GatewayTimeout"
        default: "Error\(status)"
        }
    }

    static func defaultMessage(forStatus status: Int) -> String {
        switch status {
        case 401: "Denied by the resource provider."
        case 429: "Rate limit exceeded. Try again later."
        case 500: "An internal server error occurred (injected fault)."
        case 502, 503, 504: "The service is temporarily unavailable (injected fault)."
        default: "Injected fault with status \(status)."
        }
    }
}
