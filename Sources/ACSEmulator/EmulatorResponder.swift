import Foundation
import Hummingbird
import Logging
import ServiceLifecycle

/// Answers every HTTP request: the two ACS routes (acs-email-api.md §1.3, §8) and the admin routes.
///
/// One responder rather than Hummingbird's router: the router would treat `:` in `/emails:send` as
/// parameter syntax, and the signature covers the request target exactly as received (`head.path`), which
/// this type reads directly.
struct EmulatorResponder: HTTPResponder {
    typealias Context = EmulatorRequestContext

    let configuration: EmulatorConfiguration
    let store: EmulatorStore
    let verifier: RequestVerifier
    let validator: SendValidator
    /// `http` or `https`, for `Operation-Location`.
    let scheme: String
    let logger: Logger

    init(configuration: EmulatorConfiguration, store: EmulatorStore, scheme: String, logger: Logger) {
        self.configuration = configuration
        self.store = store
        self.verifier = RequestVerifier(
            accessKey: configuration.accessKey, bearerToken: configuration.bearerToken,
            clockSkewTolerance: configuration.clockSkewTolerance)
        self.validator = SendValidator(configuration: configuration)
        self.scheme = scheme
        self.logger = logger
    }

    func respond(to request: Request, context: EmulatorRequestContext) async throws -> Response {
        let target = request.head.path ?? "/"
        let path =
            target.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init)
            ?? target
        if path == "/admin" || path.hasPrefix("/admin/") {
            return await AdminRoutes(store: store).respond(method: request.method, path: path, request: request)
        }
        let route = Self.route(of: path)
        var outcome = try await handleACS(
            request, target: target, path: path, route: route, httpVersion: context.connection.httpVersion)
        // Tracing headers on every ACS answer, errors included (§1.4, §8 "Accepted sends").
        outcome.headers.append(("x-ms-request-id", UUID().uuidString.lowercased()))
        if let clientRequestID = Self.header("x-ms-client-request-id", of: request) {
            outcome.headers.append(("x-ms-client-request-id", clientRequestID))
        }
        outcome.headers.append(
            ("api-supported-versions", EmulatorConfiguration.supportedAPIVersions.joined(separator: ", ")))
        await store.count(
            route: route, status: outcome.dropsConnection ? nil : outcome.status, connection: context.connection)
        var metadata: Logger.Metadata = ["http.version": "\(context.connection.httpVersion)"]
        if let operationID = outcome.operationID {
            metadata["acs.operation_id"] = "\(operationID)"
        }
        if outcome.dropsConnection {
            logger.info("\(request.method.rawValue) \(path) → connection dropped", metadata: metadata)
            await context.dropConnection()
            // Nothing can be written any more; Hummingbird's attempt to answer the error fails quietly.
            throw ConnectionDropped()
        }
        logger.info("\(request.method.rawValue) \(path) → \(outcome.status)", metadata: metadata)
        return outcome.response
    }

    /// The first value of a request header, by case-insensitive name (nil for an invalid name).
    static func header(_ name: String, of request: Request) -> String? {
        FieldName(name).flatMap { request.headers[$0] }
    }

    static func route(of path: String) -> EmulatorRoute {
        if path == "/emails:send" { return .send }
        let prefix = "/emails/operations/"
        if path.hasPrefix(prefix), path.count > prefix.count, !path.dropFirst(prefix.count).contains("/") {
            return .poll
        }
        return .other
    }

    // MARK: ACS routes

    private func handleACS(
        _ request: Request, target: String, path: String, route: EmulatorRoute, httpVersion: String
    ) async throws -> Outcome {
        // An outage comes before everything, as a service that is down neither authenticates nor routes.
        if let outage = await store.outage(route: route), let outcome = try await apply(outage) {
            return outcome
        }
        let expectedMethod: HTTPRequest.Method
        switch route {
        case .send: expectedMethod = .post
        case .poll: expectedMethod = .get
        case .other:
            return Outcome(ACSErrorResponse.notFound("The resource '\(path)' was not found."))
        }
        guard request.method == expectedMethod else {
            return Outcome(
                ACSErrorResponse(
                    status: 405, code: "MethodNotAllowed",
                    message: "The method \(request.method.rawValue) is not allowed on \(path)."),
                extraHeaders: [("Allow", expectedMethod.rawValue)])
        }
        let apiVersion: String
        switch Self.apiVersion(in: target) {
        case .failure(let error): return Outcome(error)
        case .success(let version): apiVersion = version
        }
        let body: [UInt8]
        switch await readBody(request) {
        case .failure(let error): return Outcome(error)
        case .success(let bytes): body = bytes
        }
        let header: @Sendable (String) -> String? = { Self.header($0, of: request) }
        if let denied = verifier.check(
            method: request.method.rawValue, target: target, host: request.head.authority, body: body, now: Date(),
            header: header)
        {
            return Outcome(denied)
        }
        let host = request.head.authority ?? "localhost"
        if route == .send {
            return try await send(
                body: body, apiVersion: apiVersion, httpVersion: httpVersion, host: host, header: header)
        }
        let id = String(path.dropFirst("/emails/operations/".count))
        return try await poll(id: id)
    }

    private func send(
        body: [UInt8], apiVersion: String, httpVersion: String, host: String, header: @Sendable (String) -> String?
    ) async throws -> Outcome {
        let operationID: String
        if let given = header("Operation-Id")?.trimmingCharacters(in: .whitespaces), !given.isEmpty {
            guard Self.isValidOperationID(given) else {
                return Outcome(
                    .badRequest("The Operation-Id header must be a GUID-like token: letters, digits, '-', '_' and '.'.")
                )
            }
            operationID = given
        } else {
            operationID = UUID().uuidString.lowercased()
        }
        // Faults see the sender and recipients even of a body that will fail validation.
        let parsed = JSONValue(parsing: body)
        let sender = parsed?["senderAddress"]?.stringValue
        let recipients = ["to", "cc", "bcc"].flatMap { kind in
            parsed?["recipients"]?[kind]?.arrayValue?.compactMap { $0["address"]?.stringValue } ?? []
        }
        var finalStatus: (status: String, code: String?, message: String?)?
        var pendingFaultID: Int?
        if let (fault, pendingID) = await store.takeFault(route: .send, senderAddress: sender, recipients: recipients) {
            if var outcome = try await apply(fault) {
                outcome.operationID = operationID
                return outcome
            }
            pendingFaultID = pendingID
            if let status = fault.finalStatus {
                finalStatus = (status, fault.code, fault.message)
            }
        }
        let validated: ValidatedSend
        switch validator.validate(body: body, apiVersion: apiVersion) {
        case .failure(let error): return Outcome(error, operationID: operationID)
        case .success(let send): validated = send
        }
        let outcome = await store.accept(
            id: operationID, apiVersion: apiVersion, httpVersion: httpVersion, send: validated,
            finalStatus: finalStatus,
            consumingFault: pendingFaultID)
        let result: OperationResult
        switch outcome {
        case .conflict:
            return Outcome(
                ACSErrorResponse(
                    status: 409, code: "Conflict",
                    message:
                        "An operation with Operation-Id '\(operationID)' already exists with a different "
                        + "request body."),
                operationID: operationID)
        case .throttled(let throttle):
            return Outcome(throttle.response, operationID: operationID)
        case .created(let created): result = created
        case .replayed(let existing): result = existing
        }
        var headers: [(String, String)] = [
            ("Operation-Location", "\(scheme)://\(host)/emails/operations/\(operationID)?api-version=\(apiVersion)"),
            ("Content-Type", "application/json"),
        ]
        if !result.isTerminal {
            headers.append(("Retry-After", String(configuration.retryAfterSeconds)))
        }
        return Outcome(status: 202, headers: headers, body: result.body, operationID: operationID)
    }

    private func poll(id: String) async throws -> Outcome {
        let parties = await store.parties(ofOperation: id)
        if let (fault, _) = await store.takeFault(
            route: .poll, senderAddress: parties?.sender, recipients: parties?.recipients ?? [])
        {
            if var outcome = try await apply(fault) {
                outcome.operationID = id
                return outcome
            }
        }
        guard let result = await store.poll(id: id) else {
            return Outcome(.notFound("The operation '\(id)' was not found."), operationID: id)
        }
        var headers: [(String, String)] = [("Content-Type", "application/json")]
        if !result.isTerminal {
            headers.append(("retry-after", String(configuration.retryAfterSeconds)))
        }
        return Outcome(status: 200, headers: headers, body: result.body, operationID: id)
    }

    /// Stalls for `delayMs`, then returns the error to answer with or the dropped connection, or nil to carry
    /// on normally. Throws `CancellationError` when the request's task was cancelled outside a graceful
    /// shutdown.
    private func apply(_ fault: Fault) async throws -> Outcome? {
        if let delay = fault.delayMs, delay > 0 {
            // At shutdown the stall ends sooner and the request is answered as usual. Hummingbird's graceful
            // shutdown waits for open requests without cancelling them, so the sleep must watch for it itself:
            // a bare sleep held SIGTERM for up to the whole delay (10 minutes at most).
            try? await cancelWhenGracefulShutdown { try await Task.sleep(for: .milliseconds(delay)) }
            // Cancelled otherwise: over HTTP/2 Hummingbird cancels a connection's requests when it closes. Nobody
            // is left to answer, so the stalled request is dropped (not accepted, not counted) rather than
            // accepted at that moment, which recorded a message the client had given up on.
            if Task.isCancelled && !Task.isShuttingDownGracefully {
                throw CancellationError()
            }
        }
        if fault.refuse == true {
            return .dropped
        }
        guard let status = fault.answerStatus else { return nil }
        var error = ACSErrorResponse(
            status: status, code: fault.code ?? ACSErrorResponse.defaultCode(forStatus: status),
            message: fault.message ?? ACSErrorResponse.defaultMessage(forStatus: status))
        if let retryAfter = fault.retryAfter {
            error.headers.append(("Retry-After", String(retryAfter)))
        }
        return Outcome(error)
    }

    // MARK: Helpers

    /// The `api-version` query parameter, which must be one the emulator serves (§8 "Routes").
    static func apiVersion(in target: String) -> Result<String, ACSErrorResponse> {
        let query = target.split(separator: "?", maxSplits: 1).dropFirst().first ?? ""
        let value = query.split(separator: "&").lazy.compactMap { item -> Substring? in
            let pair = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return pair.count == 2 && pair[0] == "api-version" ? pair[1] : nil
        }.first
        guard let value, !value.isEmpty else {
            return .failure(
                ACSErrorResponse(
                    status: 400, code: "MissingApiVersionParameter",
                    message: "The api-version query parameter (?api-version=) is required for all requests."))
        }
        guard EmulatorConfiguration.supportedAPIVersions.contains(String(value)) else {
            return .failure(
                ACSErrorResponse(
                    status: 400, code: "UnsupportedApiVersion",
                    message: "The HTTP resource does not support the api-version '\(value)'. Supported versions: "
                        + EmulatorConfiguration.supportedAPIVersions.joined(separator: ", ") + "."))
        }
        return .success(String(value))
    }

    /// A letter or digit, then letters, digits, `-`, `_` and `.`, at most 128: anything else could not appear
    /// unescaped (or, like `..`, unchanged) in the path of `Operation-Location`.
    static func isValidOperationID(_ id: String) -> Bool {
        guard let first = id.unicodeScalars.first, first.isASCII, CharacterSet.alphanumerics.contains(first) else {
            return false
        }
        return id.utf8.count <= 128
            && id.unicodeScalars.allSatisfy {
                $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-_.".unicodeScalars.contains($0))
            }
    }

    /// The whole body, or 413 beyond `maxRequestBytes`. An oversized body is still read (up to a hard cap)
    /// so the client receives the 413 instead of a reset connection.
    private func readBody(_ request: Request) async -> Result<[UInt8], ACSErrorResponse> {
        let limit = configuration.maxRequestBytes
        let tooLarge = ACSErrorResponse(
            status: 413, code: "RequestEntityTooLarge",
            message: "The request body is larger than the limit of \(limit) bytes.")
        let drainCap = max(limit, 1) * 4
        if let declared = request.headers[.contentLength].flatMap(Int.init), declared > drainCap {
            return .failure(tooLarge)
        }
        var bytes: [UInt8] = []
        var total = 0
        do {
            for try await chunk in request.body {
                total += chunk.readableBytes
                if total <= limit {
                    bytes.append(contentsOf: chunk.readableBytesView)
                } else if total > drainCap {
                    break
                }
            }
        } catch {
            return .failure(.badRequest("The request body could not be read."))
        }
        return total > limit ? .failure(tooLarge) : .success(bytes)
    }
}

/// Thrown after a `refuse` fault dropped the connection: there is no response to give.
struct ConnectionDropped: Error {}

/// `HTTPField.Name`, named through the type Hummingbird re-exports rather than by importing HTTPTypes.
typealias FieldName = HTTPFields.Element.Name

/// A response under construction: status, headers and body, plus the operation id for the log; or no
/// response at all (``dropped``).
struct Outcome: Sendable {
    var status: Int
    var headers: [(name: String, value: String)]
    var body: [UInt8]
    var operationID: String?
    /// The connection is to be dropped without an answer (a `refuse` fault).
    var dropsConnection = false

    /// No answer: the responder drops the connection.
    static var dropped: Outcome {
        var outcome = Outcome(status: 0, headers: [], body: [])
        outcome.dropsConnection = true
        return outcome
    }

    init(status: Int, headers: [(name: String, value: String)], body: [UInt8], operationID: String? = nil) {
        self.status = status
        self.headers = headers
        self.body = body
        self.operationID = operationID
    }

    /// An ACS error: JSON body, `x-ms-error-code` (§1.5).
    init(_ error: ACSErrorResponse, operationID: String? = nil, extraHeaders: [(name: String, value: String)] = []) {
        self.init(
            status: error.status,
            headers: [("Content-Type", "application/json"), ("x-ms-error-code", error.code)] + error.headers
                + extraHeaders,
            body: error.body, operationID: operationID)
    }

    var response: Response {
        var fields = HTTPFields()
        for (name, value) in headers {
            if let fieldName = FieldName(name) {
                fields.append(HTTPFields.Element(name: fieldName, value: value))
            }
        }
        fields[.contentLength] = String(body.count)
        return Response(
            status: HTTPResponse.Status(code: status), headers: fields,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: body)))
    }
}
