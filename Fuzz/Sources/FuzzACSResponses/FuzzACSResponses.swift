import Foundation

@testable import ACSClient

/// ACS's answers and the token endpoints' answers, as the client reads them (ACSEmailClient.swift,
/// HTTPDate.swift, Auth/TokenEndpoint.swift and Auth/TokenCredential.swift are the client's own files).
///
/// Input: two octets for the HTTP status (100...599), one octet choosing which of `retry-after`,
/// `retry-after-ms`, `x-ms-retry-after-ms` and `x-ms-error-code` carry the header value, the header value up to
/// the first LF, then the body.
///
/// Invariants: nothing traps; `retryAfter` is nil or finite within 0...86400; `classify` gives the outcome its
/// status calls for (401/403 authentication, 429 throttled, 5xx unavailable, 413 rejected, 1xx–3xx
/// unavailable) and `errorSummary` starts with the status; an HTTP-date read from the header formats back to
/// a date that parses to itself, and so does a date made of the input's octets; a token answer is a
/// non-empty token that expires after it was received, or an error that never shows the client secret.
func fuzzACSResponses(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size >= 3 else { return 0 }
    let bytes = Array(UnsafeBufferPointer(start: data, count: size))
    let status = 100 + (Int(bytes[0]) << 8 | Int(bytes[1])) % 500
    let choice = bytes[2]
    let rest = bytes[3...]
    let newline = rest.firstIndex(of: 0x0A) ?? rest.endIndex
    let value = String(decoding: rest[..<newline], as: UTF8.self)
    let body = Array(rest[newline...].dropFirst())
    var headers: [(name: String, value: String)] = []
    for (bit, name) in ["retry-after", "retry-after-ms", "x-ms-retry-after-ms", "x-ms-error-code"].enumerated()
    where choice & (1 << bit) != 0 {
        headers.append((name: name, value: value))
    }
    let response = HTTPResponse(status: status, headers: headers, body: body)
    let now = Date(timeIntervalSince1970: 1_767_225_600)  // 2026-01-01

    // Retry-After in every form.
    if let seconds = ACSEmailClient.retryAfter(response, now: now) {
        precondition(
            seconds.isFinite && (0...86_400).contains(seconds), "retryAfter \(seconds) for \(value.debugDescription)")
    }

    // HTTP-dates: the header's, and one made of the input's octets (1970...9999).
    if let date = HTTPDate.parse(value) {
        roundTrip(date)
    }
    if size >= 11 {
        let raw = bytes[3..<11].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        roundTrip(Date(timeIntervalSince1970: TimeInterval(raw % 253_402_300_800)))  // up to 9999-12-31T23:59:59
    }

    // Operation statuses and errors.
    if let operation = ACSEmailClient.operationResult(body), let name = operation.status {
        let status = ACSOperationStatus(
            operationID: operation.id ?? "", status: name, code: operation.error?.code,
            message: operation.error?.message)
        _ = status.outcome
        precondition(status.isTerminal == ACSEmailClient.isTerminal(name))
    }
    let detail = ACSEmailClient.errorDetail(response)
    if choice & 8 != 0 { precondition(detail.code != nil, "x-ms-error-code lost") }
    precondition(ACSEmailClient.errorSummary(response).hasPrefix("HTTP \(status)"), "summary")
    let outcome = ACSEmailClient.classify(response)
    switch (status, outcome) {
    case (401, .authenticationFailed(401, _, _)), (403, .authenticationFailed(403, _, _)): break
    case (429, .throttled(let seconds)):
        if let seconds { precondition(seconds.isFinite && (0...86_400).contains(seconds), "throttled \(seconds)") }
    case (500..., .unavailable(status, _)): break
    case (413, .rejected(413, _, _)): break
    case (100..<400, .unavailable(status, _)): break
    case (400..<500, .rejected(status, _, _)), (400..<500, .unavailable(status, _)):
        precondition(![401, 403, 413, 429].contains(status), "status \(status) classified \(outcome)")
    default: preconditionFailure("status \(status) classified \(outcome)")
    }

    // A token endpoint's answer, with the status given and as a 200.
    let secret = "fuzz-client-secret"
    for tokenStatus in [status, 200] {
        let answer = HTTPResponse(status: tokenStatus, headers: headers, body: body)
        let result = TokenEndpoint.interpret(
            answer, host: "login.microsoftonline.com", credentialName: "client secret credential", receivedAt: now,
            secrets: [secret], transientStatuses: [404, 410], explainStatus: { $0 == 400 ? "a hint" : nil })
        switch result {
        case .success(let token):
            precondition(tokenStatus == 200 && !token.token.isEmpty && token.expiresOn > now, "token \(token)")
            _ = token.description  // what a log line shows of it
            _ = TokenCache.refreshDate(for: token, obtainedAt: now)
            _ = TokenCache.isUsable(token, at: now)
        case .failure(let error):
            precondition(!"\(error)".contains(secret), "the secret shows: \(error)")
        }
    }
    return 0
}

private func roundTrip(_ date: Date) {
    let text = HTTPDate.format(date)
    guard let parsed = HTTPDate.parse(text) else { preconditionFailure("\(text) does not parse") }
    precondition(parsed.timeIntervalSince1970 == floor(date.timeIntervalSince1970), "\(date) → \(text) → \(parsed)")
}
