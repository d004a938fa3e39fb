@testable import AdminHTTP

/// The admin listener's request-head parser and router (AdminHTTP.swift is the gateway's own file, linked in).
/// Invariants: a bounded head is either incomplete, a request with a method and a path starting "/", or an
/// error response with a 4xx/5xx status; every response encodes.
func fuzzAdminHTTP(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let buffer = Array(UnsafeBufferPointer(start: data, count: size))
    switch AdminHTTP.parseHead(buffer, maxHeadOctets: 8192) {
    case .incomplete:
        precondition(size <= 8192, "an oversized head left incomplete")
    case .complete(let head):
        precondition(!head.method.isEmpty && head.path.hasPrefix("/"), "malformed request accepted: \(head)")
        if case .respond(let response) = AdminHTTP.route(head) {
            precondition((200..<600).contains(response.status), "status \(response.status)")
        }
    case .invalid(let response):
        precondition((400..<600).contains(response.status), "an invalid head answered \(response.status)")
    }
    return 0
}
