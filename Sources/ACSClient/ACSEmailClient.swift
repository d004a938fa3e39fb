import Foundation

/// How long the gateway waits before answering the SMTP client (issue 4 "Result follow-through").
public enum ReplyAfter: String, Sendable, Hashable, CaseIterable {
    /// Reply once ACS has accepted the request (202). The final status is polled in the background, only
    /// to be logged. The default: fast, and the status-read quota is only twice the send quota (§5.1).
    case accepted
    /// Poll `GET /emails/operations/{id}` until Succeeded, Failed or Canceled (or a deadline), and reply
    /// with that outcome.
    case final
}

/// Settings of the ACS client.
public struct ACSClientConfiguration: Sendable {
    public var endpoint: ACSEndpoint
    /// Default `2025-09-01`, the latest GA (§1.2).
    public var apiVersion: String = "2025-09-01"
    public var retry = RetryPolicy()
    public var replyAfter: ReplyAfter = .accepted
    /// With `.final`: the longest wait for a terminal status, in seconds, after which the message counts as
    /// accepted with an unknown final status. Default 120 s.
    public var pollDeadline: Double = 120
    /// Poll interval when ACS gives no `Retry-After`, in seconds.
    public var defaultPollInterval: Double = 5
    /// With `.accepted`: background polls made only to log the final status (0 disables). Default 2, which
    /// stays within the status-read quota of twice the send quota (§5.1).
    public var backgroundPolls: Int = 2
    public var userAgent: String = "acs-smtp-gateway/1.0"

    public init(endpoint: ACSEndpoint) {
        self.endpoint = endpoint
    }
}

/// What became of one send, for the reply mapping and the audit log.
public struct ACSSendResult: Sendable, Equatable {
    public var outcome: ACSSendOutcome
    /// HTTP attempts made for the send (polls not counted).
    public var attempts: Int
    /// The `x-ms-request-id` of the last ACS answer, for support cases.
    public var requestID: String?
}

/// The typed outcome of a send (design.md principle 6: outcomes are values).
public enum ACSSendOutcome: Sendable, Equatable {
    /// Accepted by ACS (202), or polled to Succeeded. `status` is the last known status.
    case accepted(operationID: String, status: String)
    /// The operation ended Failed or Canceled (polled).
    case failed(operationID: String, status: String, code: String?, message: String?)
    /// ACS refused the request permanently (400, 404, 409, 413, other 4xx).
    case rejected(status: Int, code: String?, message: String?)
    /// 401 or 403: bad key, clock skew, missing role — the operator must act.
    case authenticationFailed(status: Int, code: String?, message: String?)
    /// Still 429 when the retry budget ran out; `retryAfter` is ACS's last hint.
    case throttled(retryAfter: Double?)
    /// 5xx, timeouts or network failures until the budget ran out.
    case unavailable(status: Int?, detail: String)
    /// No credentials could be put on the request (token endpoint failure, unreadable secret).
    case notAuthenticated(AuthenticationError)
}

/// A terminal (or last known) status of an operation, reported for logging.
public struct ACSOperationStatus: Sendable, Equatable {
    public var operationID: String
    public var status: String
    public var code: String?
    public var message: String?
}

/// Sends ACS Email requests: signs, retries with the same `Operation-Id`, and follows the operation.
public final class ACSEmailClient: Sendable {
    public let configuration: ACSClientConfiguration
    private let authenticator: RequestAuthenticator
    private let transport: HTTPTransport
    private let clock: ACSClock
    private let metrics: ACSClientMetrics

    public init(
        configuration: ACSClientConfiguration, authenticator: RequestAuthenticator, transport: HTTPTransport,
        clock: ACSClock = DispatchClock(), metrics: ACSClientMetrics = ACSClientMetrics()
    ) {
        self.configuration = configuration
        self.authenticator = authenticator
        self.transport = transport
        self.clock = clock
        self.metrics = metrics
    }

    /// Sends `body` (the exact JSON request) as operation `operationID` (a UUID; reused by every retry).
    /// `completion` gets the outcome once; `finalStatus`, when given, gets the operation's final status
    /// later if background polling learns it (reply-after `accepted`).
    public func send(
        body: [UInt8], operationID: String, headers extraHeaders: [(name: String, value: String)] = [],
        completion: @escaping @Sendable (ACSSendResult) -> Void,
        finalStatus: (@Sendable (ACSOperationStatus) -> Void)? = nil
    ) {
        let pathAndQuery = "/emails:send?api-version=\(configuration.apiVersion)"
        let request = HTTPRequest(
            method: "POST", url: configuration.endpoint.url + pathAndQuery,
            headers: [
                ("Content-Type", "application/json"), ("Accept", "application/json"),
                ("Operation-Id", operationID), ("x-ms-client-request-id", UUID().uuidString.lowercased()),
                ("User-Agent", configuration.userAgent),
            ] + extraHeaders,
            body: body, timeout: configuration.retry.attemptTimeout,
            connectTimeout: configuration.retry.connectTimeout)
        let deadline = clock.now + configuration.retry.budget
        perform(request, pathAndQuery: pathAndQuery, attempt: 1, deadline: deadline) { [self] response, attempts in
            switch response {
            case .failure(let failure) where failure.sawTransportFailure:
                // An attempt that timed out or lost its connection may have reached ACS and been accepted.
                // Before telling the client to retry (and so to send again under a new Operation-Id), ask
                // ACS once whether this operation exists (review finding F14).
                verify(operationID: operationID, failure: failure.with(attempts: attempts), completion: completion)
            case .failure(let failure):
                completion(failure.with(attempts: attempts))
            case .success(let http):
                guard http.status == 202 else {
                    completion(ACSSendResult(outcome: Self.classify(http), attempts: attempts,
                                             requestID: http.header("x-ms-request-id")))
                    return
                }
                let result = Self.operationResult(http.body)
                let id = result?.id ?? operationID
                let status = result?.status ?? "Running"
                let retryAfter = Self.retryAfter(http) ?? configuration.defaultPollInterval
                let accepted = ACSSendResult(
                    outcome: .accepted(operationID: id, status: status), attempts: attempts,
                    requestID: http.header("x-ms-request-id"))
                if Self.isTerminal(status) {
                    completion(Self.terminalResult(accepted, id: id, status: status, error: result?.error))
                    finalStatus?(ACSOperationStatus(operationID: id, status: status, code: result?.error?.code,
                                                    message: result?.error?.message))
                    return
                }
                switch configuration.replyAfter {
                case .final:
                    poll(id: id, after: retryAfter, deadline: clock.now + configuration.pollDeadline,
                         pollsLeft: Int.max) { status in
                        guard let status else {
                            completion(accepted)  // deadline: accepted by ACS, final status unknown
                            return
                        }
                        completion(Self.terminalResult(accepted, id: id, status: status.status, error: status))
                        finalStatus?(status)
                    }
                case .accepted:
                    completion(accepted)
                    guard let finalStatus, configuration.backgroundPolls > 0 else { return }
                    poll(id: id, after: max(retryAfter, 1), deadline: clock.now + configuration.pollDeadline,
                         pollsLeft: configuration.backgroundPolls) { status in
                        finalStatus(status ?? ACSOperationStatus(operationID: id, status: "Unknown"))
                    }
                }
            }
        }
    }

    // MARK: Attempts

    /// Performs `request` with retries until success, a permanent answer, or the deadline.
    private func perform(
        _ request: HTTPRequest, pathAndQuery: String, attempt: Int, deadline: Double,
        sawTransportFailure: Bool = false, credentialsRefreshed: Bool = false,
        completion: @escaping @Sendable (Result<HTTPResponse, ACSSendResultFailure>, Int) -> Void
    ) {
        var attemptRequest = request
        // Never let one attempt outlive the budget.
        attemptRequest.timeout = max(0.5, min(request.timeout, deadline - clock.now))
        authenticator.authenticate(
            attemptRequest, host: configuration.endpoint.authority, pathAndQuery: pathAndQuery
        ) { [self] authenticated in
            let signed: HTTPRequest
            switch authenticated {
            case .failure(let error):
                completion(
                    .failure(ACSSendResultFailure(.notAuthenticated(error), sawTransportFailure: sawTransportFailure)),
                    attempt - 1)
                return
            case .success(let value):
                signed = value
            }
            perform(signed) { [self] result in
                let retryAfter: Double?
                let lastOutcome: ACSSendOutcome
                switch result {
                case .success(let response)
                where response.status == 401 && !credentialsRefreshed && authenticator.credentialsRejected():
                    // A cached bearer token was refused and dropped: one more attempt with a fresh token.
                    metrics.retrying(Self.operation(of: request), reason: .credentials, wait: 0)
                    perform(request, pathAndQuery: pathAndQuery, attempt: attempt + 1, deadline: deadline,
                            sawTransportFailure: sawTransportFailure, credentialsRefreshed: true, completion: completion)
                    return
                case .success(let response) where !configuration.retry.retryableStatuses.contains(response.status):
                    completion(.success(response), attempt)
                    return
                case .success(let response):
                    retryAfter = Self.retryAfter(response)
                    lastOutcome =
                        response.status == 429
                        ? .throttled(retryAfter: retryAfter)
                        : .unavailable(status: response.status, detail: Self.errorSummary(response))
                case .failure(let error):
                    retryAfter = nil
                    lastOutcome = .unavailable(status: nil, detail: error.description)
                }
                let transportFailed = sawTransportFailure || (try? result.get()) == nil
                // At least a second between attempts, whatever Retry-After says (0 must not mean a tight loop).
                let wait = max(
                    configuration.retry.minimumDelay,
                    configuration.retry.delay(afterAttempt: attempt, retryAfter: retryAfter, random: clock.random()))
                let tooLong = (retryAfter ?? 0) > configuration.retry.maxRetryAfter
                guard !tooLong, clock.now + wait + 0.5 < deadline else {
                    completion(.failure(ACSSendResultFailure(lastOutcome, sawTransportFailure: transportFailed)), attempt)
                    return
                }
                let reason: ACSClientMetrics.RetryReason =
                    switch result {
                    case .success(let response): response.status == 429 ? .throttled : .serverError
                    case .failure: .transportError
                    }
                metrics.retrying(Self.operation(of: request), reason: reason, wait: wait)
                clock.schedule(after: wait) { [self] in
                    perform(request, pathAndQuery: pathAndQuery, attempt: attempt + 1, deadline: deadline,
                            sawTransportFailure: transportFailed, credentialsRefreshed: credentialsRefreshed,
                            completion: completion)
                }
            }
        }
    }

    /// One status read for an operation whose send may have reached ACS unseen: an existing operation means the
    /// message was accepted (or failed) after all; anything else keeps the original failure.
    private func verify(
        operationID: String, failure: ACSSendResult, completion: @escaping @Sendable (ACSSendResult) -> Void
    ) {
        let pathAndQuery = "/emails/operations/\(operationID)?api-version=\(configuration.apiVersion)"
        let request = HTTPRequest(
            method: "GET", url: configuration.endpoint.url + pathAndQuery,
            headers: [("Accept", "application/json"), ("User-Agent", configuration.userAgent)],
            timeout: min(10, configuration.retry.attemptTimeout), connectTimeout: configuration.retry.connectTimeout)
        authenticator.authenticate(request, host: configuration.endpoint.authority, pathAndQuery: pathAndQuery) {
            [self] authenticated in
            guard case .success(let signed) = authenticated else {
                completion(failure)
                return
            }
            perform(signed) { result in
                guard case .success(let http) = result, http.status == 200,
                    let operation = Self.operationResult(http.body), let status = operation.status
                else {
                    completion(failure)
                    return
                }
                var found = failure
                found.outcome =
                    ["failed", "canceled", "cancelled"].contains(status.lowercased())
                    ? .failed(operationID: operationID, status: status, code: operation.error?.code,
                              message: operation.error?.message)
                    : .accepted(operationID: operationID, status: status)
                completion(found)
            }
        }
    }

    // MARK: Probing

    /// What a credentials check learned (``probe(completion:)``).
    public enum ProbeResult: Sendable, Equatable {
        /// ACS authenticated the request (it answered the made-up operation id with 404, or 200).
        case credentialsAccepted(status: Int)
        /// ACS refused the signature or token.
        case credentialsRefused(status: Int, code: String?, message: String?)
        /// No token could be obtained for the request.
        case notAuthenticated(AuthenticationError)
        /// ACS could not be reached, or answered something else.
        case unreachable(String)
    }

    /// Checks endpoint and credentials with a request that sends no mail: reading the status of an operation
    /// id that cannot exist. ACS authenticates the request first, so 404 means the credentials work and
    /// 401/403 means they do not. It cannot check a sender address: only a send does that.
    public func probe(completion: @escaping @Sendable (ProbeResult) -> Void) {
        let pathAndQuery = "/emails/operations/\(UUID().uuidString.lowercased())?api-version=\(configuration.apiVersion)"
        let request = HTTPRequest(
            method: "GET", url: configuration.endpoint.url + pathAndQuery,
            headers: [("Accept", "application/json"), ("User-Agent", configuration.userAgent)],
            timeout: configuration.retry.attemptTimeout, connectTimeout: configuration.retry.connectTimeout)
        authenticator.authenticate(request, host: configuration.endpoint.authority, pathAndQuery: pathAndQuery) {
            [transport] authenticated in
            switch authenticated {
            case .failure(let error):
                completion(.notAuthenticated(error))
            case .success(let signed):
                transport.perform(signed) { result in
                    switch result {
                    case .failure(let error):
                        completion(.unreachable("\(error)"))
                    case .success(let http) where http.status == 404 || http.status == 200:
                        completion(.credentialsAccepted(status: http.status))
                    case .success(let http) where http.status == 401 || http.status == 403:
                        let detail = (try? JSONDecoder().decode(ErrorResponse.self, from: Data(http.body)))?.error
                        completion(.credentialsRefused(
                            status: http.status, code: detail?.code ?? http.header("x-ms-error-code"),
                            message: detail?.message))
                    case .success(let http):
                        completion(.unreachable("ACS answered HTTP \(http.status) to a status read"))
                    }
                }
            }
        }
    }

    /// One HTTP attempt through the transport, counted and timed in the metrics.
    private func perform(
        _ request: HTTPRequest, completion: @escaping @Sendable (Result<HTTPResponse, HTTPTransportError>) -> Void
    ) {
        let started = clock.now
        transport.perform(request) { [self] result in
            metrics.requestCompleted(
                Self.operation(of: request), status: try? result.get().status, seconds: clock.now - started)
            completion(result)
        }
    }

    private static func operation(of request: HTTPRequest) -> ACSClientMetrics.Operation {
        request.method == "POST" ? .send : .status
    }

    // MARK: Polling

    private func poll(
        id: String, after wait: Double, deadline: Double, pollsLeft: Int,
        completion: @escaping @Sendable (ACSOperationStatus?) -> Void
    ) {
        guard pollsLeft > 0, clock.now + wait < deadline else {
            completion(nil)
            return
        }
        clock.schedule(after: wait) { [self] in
            let pathAndQuery = "/emails/operations/\(id)?api-version=\(configuration.apiVersion)"
            let request = HTTPRequest(
                method: "GET", url: configuration.endpoint.url + pathAndQuery,
                headers: [("Accept", "application/json"), ("User-Agent", configuration.userAgent)],
                timeout: configuration.retry.attemptTimeout, connectTimeout: configuration.retry.connectTimeout)
            perform(request, pathAndQuery: pathAndQuery, attempt: 1, deadline: deadline) { [self] response, _ in
                guard case .success(let http) = response, http.status == 200,
                    let result = Self.operationResult(http.body)
                else {
                    completion(nil)  // the send was accepted; only the final status stays unknown
                    return
                }
                let status = ACSOperationStatus(
                    operationID: result.id ?? id, status: result.status ?? "Unknown", code: result.error?.code,
                    message: result.error?.message)
                if Self.isTerminal(status.status) {
                    completion(status)
                } else {
                    poll(id: id, after: max(1, Self.retryAfter(http) ?? configuration.defaultPollInterval),
                         deadline: deadline, pollsLeft: pollsLeft - 1, completion: completion)
                }
            }
        }
    }

    // MARK: Interpreting answers

    struct OperationResult: Decodable {
        struct ErrorDetail: Decodable {
            var code: String?
            var message: String?
        }
        var id: String?
        var status: String?
        var error: ErrorDetail?
    }

    struct ErrorResponse: Decodable {
        var error: OperationResult.ErrorDetail?
    }

    static func operationResult(_ body: [UInt8]) -> OperationResult? {
        try? JSONDecoder().decode(OperationResult.self, from: Data(body))
    }

    /// Succeeded, Failed and Canceled are terminal; anything else (Running, NotStarted, unknown values)
    /// is not (§1.6: compare case-insensitively, treat unknown strings as non-terminal).
    static func isTerminal(_ status: String) -> Bool {
        ["succeeded", "failed", "canceled", "cancelled"].contains(status.lowercased())
    }

    private static func terminalResult(
        _ accepted: ACSSendResult, id: String, status: String, error: OperationResult.ErrorDetail?
    ) -> ACSSendResult {
        var result = accepted
        if status.lowercased() != "succeeded" {
            result.outcome = .failed(operationID: id, status: status, code: error?.code, message: error?.message)
        } else {
            result.outcome = .accepted(operationID: id, status: status)
        }
        return result
    }

    private static func terminalResult(
        _ accepted: ACSSendResult, id: String, status: String, error: ACSOperationStatus
    ) -> ACSSendResult {
        terminalResult(
            accepted, id: id, status: status,
            error: OperationResult.ErrorDetail(code: error.code, message: error.message))
    }

    /// A non-retryable, non-202 answer: classified by HTTP status first, code second (§1.8 [REC]).
    static func classify(_ response: HTTPResponse) -> ACSSendOutcome {
        let detail = (try? JSONDecoder().decode(ErrorResponse.self, from: Data(response.body)))?.error
        let code = detail?.code ?? response.header("x-ms-error-code")
        switch response.status {
        case 401, 403:
            return .authenticationFailed(status: response.status, code: code, message: detail?.message)
        case 429:
            return .throttled(retryAfter: retryAfter(response))
        case 500...:
            return .unavailable(status: response.status, detail: errorSummary(response))
        case 413:
            return .rejected(status: 413, code: code, message: detail?.message)
        case 400..<500 where code != nil:
            // An ACS refusal: it names its reason (body `error.code` or `x-ms-error-code`).
            return .rejected(status: response.status, code: code, message: detail?.message)
        default:
            // 1xx, another 2xx, 3xx, or a 4xx without an ACS error: not an answer from ACS (a wrong endpoint,
            // a redirect, a proxy's error page). Bouncing the mail for good over that would lose it, so the
            // client is told to retry while the operator fixes the endpoint (review finding F6).
            return .unavailable(
                status: response.status,
                detail: "HTTP \(response.status) without an ACS error: is the ACS endpoint right?")
        }
    }

    static func errorSummary(_ response: HTTPResponse) -> String {
        let detail = (try? JSONDecoder().decode(ErrorResponse.self, from: Data(response.body)))?.error
        let code = detail?.code ?? response.header("x-ms-error-code")
        return ["HTTP \(response.status)", code, detail?.message].compactMap { $0 }.joined(separator: ": ")
    }

    /// `Retry-After` in seconds: `retry-after-ms`/`x-ms-retry-after-ms`, then `Retry-After` as seconds or an
    /// HTTP-date (§5.2).
    static func retryAfter(_ response: HTTPResponse, now: Date = Date()) -> Double? {
        // Whatever the server sends, the result is a finite number of seconds within a day: "inf", "nan" or
        // "1e300" must not reach arithmetic or integer conversions downstream (review finding F1).
        func sane(_ seconds: Double) -> Double? { seconds.isFinite && seconds >= 0 ? min(seconds, 86_400) : nil }
        for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
            if let value = response.header(name).flatMap(Double.init), let seconds = sane(value / 1000) {
                return seconds
            }
        }
        guard let value = response.header("retry-after")?.trimmingCharacters(in: .whitespaces) else { return nil }
        if let number = Double(value) { return sane(number) }
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "GMT")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss zzz"
        guard let date = formatter.date(from: value) else { return nil }
        return sane(max(0, date.timeIntervalSince(now)))
    }
}

/// A send that ended without a usable HTTP answer.
struct ACSSendResultFailure: Error {
    var outcome: ACSSendOutcome
    /// Whether any attempt ended without an HTTP answer (timeout, lost connection): it may have reached ACS.
    var sawTransportFailure: Bool
    init(_ outcome: ACSSendOutcome, sawTransportFailure: Bool = false) {
        self.outcome = outcome
        self.sawTransportFailure = sawTransportFailure
    }
    func with(attempts: Int) -> ACSSendResult { ACSSendResult(outcome: outcome, attempts: attempts, requestID: nil) }
}
