import Foundation

/// How long the gateway waits before answering the SMTP client in `direct` mode.
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
    /// An attempt ended without an answer (timeout, lost connection) and the status read that followed could
    /// not tell whether it reached ACS: whoever sends the message again must ask ACS first
    /// (``ACSEmailClient/lookUp(operationID:completion:)``).
    public var outcomeUncertain: Bool = false

    public init(outcome: ACSSendOutcome, attempts: Int, requestID: String?, outcomeUncertain: Bool = false) {
        self.outcome = outcome
        self.attempts = attempts
        self.requestID = requestID
        self.outcomeUncertain = outcomeUncertain
    }
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

    public init(operationID: String, status: String, code: String? = nil, message: String? = nil) {
        self.operationID = operationID
        self.status = status
        self.code = code
        self.message = message
    }

    /// Succeeded, Failed and Canceled are terminal; anything else (Running, NotStarted, unknown values) is
    /// not (§1.6: compare case-insensitively, treat unknown strings as non-terminal).
    public var isTerminal: Bool { ["succeeded", "failed", "canceled", "cancelled"].contains(status.lowercased()) }

    /// Terminal and delivered.
    public var succeeded: Bool { status.lowercased() == "succeeded" }

    /// The send outcome this status stands for: accepted unless it ended Failed or Canceled.
    public var outcome: ACSSendOutcome {
        isTerminal && !succeeded
            ? .failed(operationID: operationID, status: status, code: code, message: message)
            : .accepted(operationID: operationID, status: status)
    }
}

/// What one status read learned about an operation.
public enum ACSOperationLookup: Sendable, Equatable {
    /// ACS knows the operation: the send happened. `retryAfter` is ACS's hint for the next read.
    case found(ACSOperationStatus, retryAfter: Double?)
    /// ACS does not know it (404): it was never accepted, so sending it is safe.
    case notFound
    /// No usable answer (network, 5xx, 429, credentials): nothing was learned.
    case unknown(String)
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
    /// - Parameters:
    ///   - retry: this send's retry policy, when it differs from the client's (a short first try before the
    ///     spool takes custody; one attempt per spool run, with throttling left to the spool's pacer).
    ///   - replyAfter: overrides ``ACSClientConfiguration/replyAfter`` for this send.
    public func send(
        body: [UInt8], operationID: String, headers extraHeaders: [(name: String, value: String)] = [],
        retry: RetryPolicy? = nil, replyAfter: ReplyAfter? = nil,
        completion: @escaping @Sendable (ACSSendResult) -> Void,
        finalStatus: (@Sendable (ACSOperationStatus) -> Void)? = nil
    ) {
        let policy = retry ?? configuration.retry
        let pathAndQuery = "/emails:send?api-version=\(configuration.apiVersion)"
        let request = HTTPRequest(
            method: "POST", url: configuration.endpoint.url + pathAndQuery,
            headers: [
                ("Content-Type", "application/json"), ("Accept", "application/json"),
                ("Operation-Id", operationID), ("x-ms-client-request-id", RequestID.make()),
                ("User-Agent", configuration.userAgent),
            ] + extraHeaders,
            body: body, timeout: policy.attemptTimeout, connectTimeout: policy.connectTimeout)
        let attempts = AttemptState(policy: policy, deadline: clock.now + policy.budget)
        perform(request, pathAndQuery: pathAndQuery, state: attempts) { [self] response, attempts in
            switch response {
            case .failure(let failure) where failure.sawTransportFailure:
                // An attempt that timed out or lost its connection may have reached ACS and been accepted.
                // Before telling the client to retry (and so to send again under a new Operation-Id), ask
                // ACS once whether this operation exists.
                verify(operationID: operationID, failure: failure.with(attempts: attempts), completion: completion)
            case .failure(let failure):
                completion(failure.with(attempts: attempts))
            case .success(let http):
                guard http.status == 202 else {
                    completion(
                        ACSSendResult(
                            outcome: Self.classify(http), attempts: attempts,
                            requestID: http.header("x-ms-request-id")))
                    return
                }
                let result = Self.operationResult(http.body)
                let status = ACSOperationStatus(
                    operationID: result?.id ?? operationID, status: result?.status ?? "Running",
                    code: result?.error?.code, message: result?.error?.message)
                let accepted = ACSSendResult(
                    outcome: .accepted(operationID: status.operationID, status: status.status), attempts: attempts,
                    requestID: http.header("x-ms-request-id"))
                followUp(
                    accepted, status: status, retryAfter: Self.retryAfter(http),
                    replyAfter: replyAfter ?? configuration.replyAfter, completion: completion,
                    finalStatus: finalStatus)
            }
        }
    }

    /// After a 202: reply now or after the final status, and learn the final status for the log.
    private func followUp(
        _ accepted: ACSSendResult, status: ACSOperationStatus, retryAfter: Double?, replyAfter: ReplyAfter,
        completion: @escaping @Sendable (ACSSendResult) -> Void,
        finalStatus: (@Sendable (ACSOperationStatus) -> Void)?
    ) {
        let id = status.operationID
        let wait = retryAfter ?? configuration.defaultPollInterval
        if status.isTerminal {
            completion(Self.result(accepted, with: status))
            finalStatus?(status)
            return
        }
        switch replyAfter {
        case .final:
            poll(id: id, after: wait, deadline: clock.now + configuration.pollDeadline, pollsLeft: Int.max) { status in
                guard let status else {
                    completion(accepted)  // deadline: accepted by ACS, final status unknown
                    return
                }
                completion(Self.result(accepted, with: status))
                finalStatus?(status)
            }
        case .accepted:
            completion(accepted)
            guard let finalStatus, configuration.backgroundPolls > 0 else { return }
            poll(
                id: id, after: max(wait, 1), deadline: clock.now + configuration.pollDeadline,
                pollsLeft: configuration.backgroundPolls
            ) { status in
                finalStatus(status ?? ACSOperationStatus(operationID: id, status: "Unknown"))
            }
        }
    }

    // MARK: Attempts

    /// Where a send is in its retries: one value instead of a recursion with a parameter per fact.
    private struct AttemptState: Sendable {
        let policy: RetryPolicy
        /// Monotonic seconds after which no attempt starts.
        let deadline: Double
        /// The attempt about to be made, from 1.
        var attempt = 1
        /// Some attempt ended without an HTTP answer: it may have reached ACS.
        var sawTransportFailure = false
        /// A refused bearer token was already replaced once.
        var credentialsRefreshed = false

        init(policy: RetryPolicy, deadline: Double) {
            self.policy = policy
            self.deadline = deadline
        }

        func next() -> AttemptState {
            var next = self
            next.attempt += 1
            return next
        }
    }

    /// Performs `request` with retries until success, a permanent answer, or the deadline.
    private func perform(
        _ request: HTTPRequest, pathAndQuery: String, state: AttemptState,
        completion: @escaping @Sendable (Result<HTTPResponse, ACSSendResultFailure>, Int) -> Void
    ) {
        var attemptRequest = request
        // Never let one attempt outlive the budget.
        attemptRequest.timeout = max(0.5, min(request.timeout, state.deadline - clock.now))
        authenticator.authenticate(
            attemptRequest, host: configuration.endpoint.authority, pathAndQuery: pathAndQuery
        ) { [self] authenticated in
            let signed: HTTPRequest
            switch authenticated {
            case .failure(let error):
                completion(
                    .failure(
                        ACSSendResultFailure(.notAuthenticated(error), sawTransportFailure: state.sawTransportFailure)),
                    state.attempt - 1)
                return
            case .success(let value):
                signed = value
            }
            perform(signed) { [self] result in
                attemptEnded(result, request: request, pathAndQuery: pathAndQuery, state: state, completion: completion)
            }
        }
    }

    /// Decides what follows one attempt: done, another attempt after a wait, or out of budget.
    private func attemptEnded(
        _ result: Result<HTTPResponse, HTTPTransportError>, request: HTTPRequest, pathAndQuery: String,
        state: AttemptState, completion: @escaping @Sendable (Result<HTTPResponse, ACSSendResultFailure>, Int) -> Void
    ) {
        let policy = state.policy
        let retryAfter: Double?
        let lastOutcome: ACSSendOutcome
        let reason: ACSClientMetrics.RetryReason
        switch result {
        case .success(let response)
        where response.status == 401 && !state.credentialsRefreshed && authenticator.credentialsRejected():
            // A cached bearer token was refused and dropped: one more attempt with a fresh token.
            metrics.retrying(Self.operation(of: request), reason: .credentials, wait: 0)
            var next = state.next()
            next.credentialsRefreshed = true
            perform(request, pathAndQuery: pathAndQuery, state: next, completion: completion)
            return
        case .success(let response) where !policy.retryableStatuses.contains(response.status):
            completion(.success(response), state.attempt)
            return
        case .success(let response):
            retryAfter = Self.retryAfter(response)
            lastOutcome =
                response.status == 429
                ? .throttled(retryAfter: retryAfter)
                : .unavailable(status: response.status, detail: Self.errorSummary(response))
            reason = response.status == 429 ? .throttled : .serverError
        case .failure(let error):
            retryAfter = nil
            lastOutcome = .unavailable(status: nil, detail: error.description)
            reason = .transportError
        }
        var next = state.next()
        next.sawTransportFailure = state.sawTransportFailure || (try? result.get()) == nil
        // At least a second between attempts, whatever Retry-After says (0 must not mean a tight loop).
        let wait = max(
            policy.minimumDelay,
            policy.delay(afterAttempt: state.attempt, retryAfter: retryAfter, random: clock.random()))
        let tooLong = (retryAfter ?? 0) > policy.maxRetryAfter
        guard !tooLong, clock.now + wait + 0.5 < state.deadline else {
            completion(
                .failure(ACSSendResultFailure(lastOutcome, sawTransportFailure: next.sawTransportFailure)),
                state.attempt)
            return
        }
        metrics.retrying(Self.operation(of: request), reason: reason, wait: wait)
        let noAnswer = (try? result.get()) == nil
        clock.schedule(after: wait) { [self, next] in
            guard noAnswer, request.method == "POST",
                let operationID = request.headers.first(where: { $0.name == "Operation-Id" })?.value
            else {
                perform(request, pathAndQuery: pathAndQuery, state: next, completion: completion)
                return
            }
            // The attempt got no answer, so it may have reached ACS. Sending again would rely on ACS treating a
            // repeated Operation-Id as the same operation, which is not documented: ask first, and send again
            // only when ACS does not know the operation (`OperationLookupTests`).
            lookUp(operationID: operationID) { [self] lookup in
                switch lookup {
                case .found(let status, _):
                    completion(.success(Self.acceptedAnswer(status)), state.attempt)
                case .notFound:
                    perform(request, pathAndQuery: pathAndQuery, state: next, completion: completion)
                case .unknown:
                    completion(.failure(ACSSendResultFailure(lastOutcome, sawTransportFailure: true)), state.attempt)
                }
            }
        }
    }

    /// The 202 ACS would have answered for an operation a status read found: the send happened.
    private static func acceptedAnswer(_ status: ACSOperationStatus) -> HTTPResponse {
        struct Body: Encodable {
            struct Detail: Encodable {
                var code: String?
                var message: String?
            }
            var id: String
            var status: String
            var error: Detail?
        }
        let error =
            status.code == nil && status.message == nil ? nil : Body.Detail(code: status.code, message: status.message)
        let body =
            (try? JSONEncoder().encode(Body(id: status.operationID, status: status.status, error: error))) ?? Data()
        return HTTPResponse(status: 202, body: Array(body))
    }

    /// One status read for an operation whose send may have reached ACS unseen: an existing operation means the
    /// message was accepted (or failed) after all; anything else keeps the original failure.
    private func verify(
        operationID: String, failure: ACSSendResult, completion: @escaping @Sendable (ACSSendResult) -> Void
    ) {
        lookUp(operationID: operationID) { lookup in
            var result = failure
            switch lookup {
            case .found(let status, _):
                result.outcome = status.outcome
            case .notFound:
                break  // never reached ACS: the failure stands, and a resend is safe
            case .unknown:
                result.outcomeUncertain = true
            }
            completion(result)
        }
    }

    /// Reads an operation's status once (`GET /emails/operations/{id}`): found, not found (never accepted,
    /// so a send is safe), or unknown. The spool asks this before it sends a message whose earlier attempt
    /// may have reached ACS unseen, and to follow an accepted message to its final status.
    public func lookUp(operationID: String, completion: @escaping @Sendable (ACSOperationLookup) -> Void) {
        let (request, pathAndQuery) = statusRequest(operationID: operationID)
        authenticator.authenticate(request, host: configuration.endpoint.authority, pathAndQuery: pathAndQuery) {
            [self] authenticated in
            let signed: HTTPRequest
            switch authenticated {
            case .failure(let error):
                completion(.unknown("no credentials: \(error.message)"))
                return
            case .success(let value):
                signed = value
            }
            perform(signed) { result in
                switch result {
                case .failure(let error):
                    completion(.unknown(error.description))
                case .success(let http) where http.status == 404:
                    completion(.notFound)
                case .success(let http) where http.status == 200:
                    guard let operation = Self.operationResult(http.body), let status = operation.status else {
                        completion(.unknown("an operation status without a status"))
                        return
                    }
                    completion(
                        .found(
                            ACSOperationStatus(
                                operationID: operation.id ?? operationID, status: status, code: operation.error?.code,
                                message: operation.error?.message),
                            retryAfter: Self.retryAfter(http)))
                case .success(let http):
                    completion(.unknown(Self.errorSummary(http)))
                }
            }
        }
    }

    /// `GET /emails/operations/{id}`: the request every status read uses, built in one place.
    private func statusRequest(operationID: String) -> (HTTPRequest, pathAndQuery: String) {
        let pathAndQuery = "/emails/operations/\(operationID)?api-version=\(configuration.apiVersion)"
        let request = HTTPRequest(
            method: "GET", url: configuration.endpoint.url + pathAndQuery,
            headers: [("Accept", "application/json"), ("User-Agent", configuration.userAgent)],
            timeout: min(10, configuration.retry.attemptTimeout), connectTimeout: configuration.retry.connectTimeout)
        return (request, pathAndQuery)
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
        let (request, pathAndQuery) = statusRequest(operationID: UUID().uuidString.lowercased())
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
                        let detail = Self.errorDetail(http)
                        completion(.credentialsRefused(status: http.status, code: detail.code, message: detail.message))
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

    /// Reads the status until it is terminal, the deadline, or `pollsLeft` reads; nil when it stays unknown.
    private func poll(
        id: String, after wait: Double, deadline: Double, pollsLeft: Int,
        completion: @escaping @Sendable (ACSOperationStatus?) -> Void
    ) {
        guard pollsLeft > 0, clock.now + wait < deadline else {
            completion(nil)
            return
        }
        clock.schedule(after: wait) { [self] in
            let (request, pathAndQuery) = statusRequest(operationID: id)
            var state = AttemptState(policy: configuration.retry, deadline: deadline)
            state.attempt = 1
            perform(request, pathAndQuery: pathAndQuery, state: state) { [self] response, _ in
                guard case .success(let http) = response, http.status == 200,
                    let result = Self.operationResult(http.body)
                else {
                    completion(nil)  // the send was accepted; only the final status stays unknown
                    return
                }
                let status = ACSOperationStatus(
                    operationID: result.id ?? id, status: result.status ?? "Unknown", code: result.error?.code,
                    message: result.error?.message)
                if status.isTerminal {
                    completion(status)
                } else {
                    poll(
                        id: id, after: max(1, Self.retryAfter(http) ?? configuration.defaultPollInterval),
                        deadline: deadline, pollsLeft: pollsLeft - 1, completion: completion)
                }
            }
        }
    }

    // MARK: Interpreting answers

    struct OperationResult: Decodable {
        var id: String?
        var status: String?
        var error: ErrorDetail?
    }

    /// ACS's `error` object: in error responses and in a failed operation's status.
    struct ErrorDetail: Decodable {
        var code: String?
        var message: String?
    }

    private struct ErrorResponse: Decodable {
        var error: ErrorDetail?
    }

    static func operationResult(_ body: [UInt8]) -> OperationResult? {
        try? JSONDecoder().decode(OperationResult.self, from: Data(body))
    }

    /// The error of a non-2xx answer, decoded once: the body's `error`, with the code falling back to the
    /// `x-ms-error-code` header (§1.8).
    static func errorDetail(_ response: HTTPResponse) -> ErrorDetail {
        let detail = (try? JSONDecoder().decode(ErrorResponse.self, from: Data(response.body)))?.error
        return ErrorDetail(code: detail?.code ?? response.header("x-ms-error-code"), message: detail?.message)
    }

    /// Succeeded, Failed and Canceled are terminal (``ACSOperationStatus/isTerminal``).
    static func isTerminal(_ status: String) -> Bool {
        ACSOperationStatus(operationID: "", status: status).isTerminal
    }

    /// `accepted` with the operation's terminal (or last known) status applied.
    private static func result(_ accepted: ACSSendResult, with status: ACSOperationStatus) -> ACSSendResult {
        var result = accepted
        result.outcome = status.outcome
        return result
    }

    /// A non-retryable, non-202 answer: classified by HTTP status first, code second (§1.8 [REC]).
    static func classify(_ response: HTTPResponse) -> ACSSendOutcome {
        let detail = errorDetail(response)
        switch response.status {
        case 401, 403:
            return .authenticationFailed(status: response.status, code: detail.code, message: detail.message)
        case 429:
            return .throttled(retryAfter: retryAfter(response))
        case 500...:
            return .unavailable(status: response.status, detail: errorSummary(response))
        case 413:
            return .rejected(status: 413, code: detail.code, message: detail.message)
        case 400..<500 where detail.code != nil:
            // An ACS refusal: it names its reason (body `error.code` or `x-ms-error-code`).
            return .rejected(status: response.status, code: detail.code, message: detail.message)
        default:
            // 1xx, another 2xx, 3xx, or a 4xx without an ACS error: not an answer from ACS (a wrong endpoint,
            // a redirect, a proxy's error page). Bouncing the mail for good over that would lose it, so the
            // client is told to retry while the operator fixes the endpoint.
            return .unavailable(
                status: response.status,
                detail: "HTTP \(response.status) without an ACS error: is the ACS endpoint right?")
        }
    }

    static func errorSummary(_ response: HTTPResponse) -> String {
        let detail = errorDetail(response)
        return ["HTTP \(response.status)", detail.code, detail.message].compactMap { $0 }.joined(separator: ": ")
    }

    /// `Retry-After` in seconds: `retry-after-ms`/`x-ms-retry-after-ms`, then `Retry-After` as seconds or an
    /// HTTP-date (§5.2).
    static func retryAfter(_ response: HTTPResponse, now: Date = Date()) -> Double? {
        // Whatever the server sends, the result is a finite number of seconds within a day: "inf", "nan" or
        // "1e300" must not reach arithmetic or integer conversions downstream.
        func sane(_ seconds: Double) -> Double? { seconds.isFinite && seconds >= 0 ? min(seconds, 86_400) : nil }
        for name in ["retry-after-ms", "x-ms-retry-after-ms"] {
            if let value = response.header(name).flatMap(Double.init), let seconds = sane(value / 1000) {
                return seconds
            }
        }
        guard let value = response.header("retry-after")?.trimmingCharacters(in: .whitespaces) else { return nil }
        if let number = Double(value) { return sane(number) }
        guard let date = HTTPDate.parse(value) else { return nil }
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
