import Foundation
import Testing

@testable import ACSClient

/// An `HTTPTransport` that records every request and answers from a script. With no scripted answer left,
/// or while `isHolding`, requests wait until `releaseAll` (to observe several callers sharing one fetch).
final class FakeTransport: HTTPTransport, @unchecked Sendable {
    typealias Outcome = Result<HTTPResponse, HTTPTransportError>
    typealias Completion = @Sendable (Outcome) -> Void

    private let lock = NSLock()
    private var recorded: [HTTPRequest] = []
    private var script: [Outcome] = []
    private var waiting: [Completion] = []
    private var holding = false

    init(_ script: [Outcome] = []) {
        self.script = script
    }

    var requests: [HTTPRequest] { lock.withLock { recorded } }
    var pendingCount: Int { lock.withLock { waiting.count } }

    func enqueue(_ outcome: Outcome) { lock.withLock { script.append(outcome) } }

    var isHolding: Bool {
        get { lock.withLock { holding } }
        set { lock.withLock { holding = newValue } }
    }

    func perform(_ request: HTTPRequest, completion: @escaping Completion) {
        let outcome: Outcome? = lock.withLock {
            recorded.append(request)
            if holding || script.isEmpty {
                waiting.append(completion)
                return nil
            }
            return script.removeFirst()
        }
        if let outcome { completion(outcome) }
    }

    /// Answers every waiting request with `outcome`.
    func releaseAll(with outcome: Outcome) {
        let completions = lock.withLock {
            let all = waiting
            waiting = []
            return all
        }
        for completion in completions { completion(outcome) }
    }

    /// A 200 token answer as Entra ID gives it (§4.2).
    static func token(_ token: String, expiresIn: Int = 3599, extra: String = "") -> Outcome {
        json(
            200,
            #"{"token_type":"Bearer","expires_in":\#(expiresIn),"ext_expires_in":\#(expiresIn),"#
                + #""access_token":"\#(token)"\#(extra)}"#)
    }

    static func json(_ status: Int, _ body: String, headers: [(name: String, value: String)] = []) -> Outcome {
        .success(
            HTTPResponse(
                status: status, headers: [("Content-Type", "application/json")] + headers,
                body: Array(body.utf8)))
    }
}

/// A settable clock shared by a credential and its test.
final class TestClock: @unchecked Sendable {
    private let lock = NSLock()
    private var current: Date

    init(_ start: Date = Date(timeIntervalSince1970: 1_800_000_000)) {
        current = start
    }

    var now: Date { lock.withLock { current } }
    var function: @Sendable () -> Date { { self.now } }

    func advance(_ seconds: TimeInterval) { lock.withLock { current = current.addingTimeInterval(seconds) } }
}

/// Collects completion results from any thread.
final class Results<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [Value] = []

    func append(_ value: Value) { lock.withLock { values.append(value) } }
    var all: [Value] { lock.withLock { values } }
}

/// The result of a `getToken` whose transport answers synchronously (a scripted `FakeTransport`).
func immediateToken(
    _ credential: TokenCredential, scope: String = ACSTokenScope.communication
) -> Result<AccessToken, AuthenticationError>? {
    let results = Results<Result<AccessToken, AuthenticationError>>()
    credential.getToken(scope: scope) { results.append($0) }
    return results.all.first
}

/// `getToken` awaited (for real transports).
func awaitToken(
    _ credential: TokenCredential, scope: String = ACSTokenScope.communication
) async -> Result<AccessToken, AuthenticationError> {
    await withCheckedContinuation { continuation in
        credential.getToken(scope: scope) { continuation.resume(returning: $0) }
    }
}

extension HTTPRequest {
    func header(_ name: String) -> String? {
        headers.first { $0.name.lowercased() == name.lowercased() }?.value
    }

    var bodyText: String { String(decoding: body, as: UTF8.self) }
}

extension Result where Failure == AuthenticationError {
    var error: AuthenticationError? {
        if case .failure(let error) = self { return error }
        return nil
    }
}

/// A fresh temporary directory, removed by the caller.
func makeTemporaryDirectory() throws -> URL {
    let url = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("acs-auth-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
}
