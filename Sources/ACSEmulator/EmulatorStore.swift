import Foundation
import Glibc
import Logging

/// The status and error of an operation as ACS reports them (`EmailSendResult`, acs-email-api.md §1.6).
struct OperationResult: Sendable, Equatable {
    var id: String
    var status: String
    var errorCode: String?
    var errorMessage: String?

    var isTerminal: Bool { Fault.finalStatuses.contains(status) }

    /// `{"id","status","error"}` with `error` null unless the operation failed (§1.5: real responses carry
    /// `"error":null`).
    var body: [UInt8] {
        var error = JSONValue.null
        if let errorCode {
            error = .object(["code": .string(errorCode), "message": .string(errorMessage ?? "")])
        }
        // Written in the spec's order (id, status, error) rather than sorted: clients should not care, but
        // a reader comparing with captured traffic does.
        let parts = [("id", JSONValue.string(id)), ("status", .string(status)), ("error", error)]
            .map { #""\#($0.0)":"# + String(decoding: $0.1.serialized(), as: UTF8.self) }
        return Array(("{" + parts.joined(separator: ",") + "}").utf8)
    }
}

/// What became of a send that passed validation.
enum AcceptOutcome: Sendable, Equatable {
    /// A new operation; the message was recorded.
    case created(OperationResult)
    /// The `Operation-Id` was seen before with the same body: the same operation, nothing recorded.
    case replayed(OperationResult)
    /// The `Operation-Id` was seen before with another body.
    case conflict
    /// A new operation over a send quota: nothing recorded.
    case throttled(QuotaThrottle)
}

/// The emulator's mutable state, behind one actor: operations, recorded messages, faults and request
/// counts. Check-and-insert of an `Operation-Id` is one actor step, so two concurrent requests with the
/// same id cannot both record a message.
actor EmulatorStore {
    private struct Operation {
        var request: JSONValue
        var senderAddress: String
        var recipients: [String]
        var acceptedAt: ContinuousClock.Instant
        var polls: Int
        var finalStatus: String
        var errorCode: String?
        var errorMessage: String?
    }

    private struct FaultEntry {
        var id: Int
        var fault: Fault
        var remaining: Int?
        /// When an outage ends.
        var until: ContinuousClock.Instant?
    }

    private let configuration: EmulatorConfiguration
    private let logger: Logger
    private var operations: [String: Operation] = [:]
    private var messages: [RecordedMessage] = []
    private var faults: [FaultEntry] = []
    private var nextFaultID = 0
    private var counts: [EmulatorRoute: [Int: Int]] = [:]
    /// Per route: requests by HTTP version ("1.1", "2"), and the client connections that carried them.
    private var versionCounts: [EmulatorRoute: [String: Int]] = [:]
    private var connections: [EmulatorRoute: Set<String>] = [:]
    /// Per route: requests answered by dropping the connection (no status).
    private var dropped: [EmulatorRoute: Int] = [:]
    /// Sends of an Operation-Id the emulator already had (answered as the same operation).
    private var replays = 0
    private var quota: SendQuota
    private var quotaWindow = SendQuotaWindow()
    private let recorder: FileHandle?

    init(configuration: EmulatorConfiguration, logger: Logger) throws {
        self.configuration = configuration
        self.logger = logger
        self.quota = configuration.sendQuota
        if let path = configuration.recordFile {
            if !FileManager.default.fileExists(atPath: path) {
                guard FileManager.default.createFile(atPath: path, contents: nil) else {
                    throw EmulatorError("cannot create the record file \(path)")
                }
            }
            guard let handle = FileHandle(forWritingAtPath: path) else {
                throw EmulatorError("cannot open the record file \(path) for writing")
            }
            do {
                try handle.seekToEnd()
            } catch {
                throw EmulatorError("cannot append to the record file \(path): \(error)")
            }
            recorder = handle
        } else {
            recorder = nil
        }
    }

    // MARK: Operations

    /// Creates the operation `id` for `send`, or finds the one a previous request with the same id made. A
    /// new operation over the send quota is refused (``AcceptOutcome/throttled(_:)``); a known one never is.
    func accept(
        id: String, apiVersion: String, httpVersion: String, send: ValidatedSend,
        finalStatus: (status: String, code: String?, message: String?)?,
        consumingFault faultID: Int?
    ) -> AcceptOutcome {
        if let existing = operations[id] {
            if existing.request == send.requestJSON || !configuration.conflictOnDifferentBody {
                // A client that sends one operation twice relies on this answer; counted, so tests of
                // exactly-once delivery can tell "sent once" from "sent twice and deduplicated here".
                replays += 1
                return .replayed(result(id: id, existing))
            }
            return .conflict
        }
        if let throttle = quotaWindow.admit(at: .now, quota: quota) {
            return .throttled(throttle)
        }
        var finalStatus = finalStatus
        if let faultID {
            // Another request may have taken the fault's last application since it was matched.
            if faults.contains(where: { $0.id == faultID }) {
                consume(faultID: faultID)
            } else {
                finalStatus = nil
            }
        }
        let message = send.message
        let recipients = (message.recipients.to + (message.recipients.cc ?? []) + (message.recipients.bcc ?? []))
            .map(\.address)
        var operation = Operation(
            request: send.requestJSON, senderAddress: message.senderAddress, recipients: recipients,
            acceptedAt: .now, polls: 0, finalStatus: finalStatus?.status ?? "Succeeded")
        if let finalStatus, finalStatus.status != "Succeeded" {
            operation.errorCode = finalStatus.code ?? "EmailDropped"
            operation.errorMessage = finalStatus.message ?? "Email was dropped after several attempts to deliver."
        }
        operations[id] = operation
        let record = RecordedMessage(
            operationId: id, receivedAt: Self.iso8601(Date()), apiVersion: apiVersion, request: send.requestJSON,
            droppedAttachments: send.droppedAttachments.isEmpty ? nil : send.droppedAttachments,
            httpVersion: httpVersion)
        messages.append(record)
        if let recorder {
            do {
                // The throwing API: `write(_:)` would trap on a full disk.
                try recorder.write(contentsOf: Data(record.jsonLine() + [0x0A]))
            } catch {
                logger.error("cannot append to the record file: \(error)", metadata: ["acs.operation_id": "\(id)"])
            }
        }
        return .created(result(id: id, operation))
    }

    /// Counts a poll of `id` and returns its status, or nil for an unknown id.
    func poll(id: String) -> OperationResult? {
        guard var operation = operations[id] else { return nil }
        operation.polls += 1
        operations[id] = operation
        return result(id: id, operation)
    }

    /// The sender and recipients of operation `id`, for matching poll faults.
    func parties(ofOperation id: String) -> (sender: String, recipients: [String])? {
        operations[id].map { ($0.senderAddress, $0.recipients) }
    }

    /// Running until the configured poll has been reached and the delay has passed; then the final status.
    private func result(id: String, _ operation: Operation) -> OperationResult {
        let elapsed = ContinuousClock.now - operation.acceptedAt
        guard operation.polls >= configuration.pollsUntilDone && elapsed >= configuration.completionDelay else {
            return OperationResult(id: id, status: "Running")
        }
        return OperationResult(
            id: id, status: operation.finalStatus, errorCode: operation.errorCode, errorMessage: operation.errorMessage)
    }

    // MARK: Recorded messages

    func recordedMessages() -> [RecordedMessage] { messages }

    func clearMessages() { messages.removeAll() }

    // MARK: Faults

    func addFaults(_ new: [Fault]) {
        let now = ContinuousClock.now
        for fault in new {
            faults.append(
                FaultEntry(
                    id: nextFaultID, fault: fault, remaining: fault.count,
                    until: fault.outageMs.map { now + .milliseconds($0) }))
            nextFaultID += 1
        }
    }

    func clearFaults() { faults.removeAll() }

    /// The faults not yet used up, `count` showing what is left (and `outageMs` what is left of an outage,
    /// rounded up).
    func activeFaults() -> [Fault] {
        let now = ContinuousClock.now
        removeEndedOutages(at: now)
        return faults.map { entry in
            var fault = entry.fault
            fault.count = entry.remaining
            if let until = entry.until {
                fault.outageMs = max(1, Int((SendQuotaWindow.seconds(until - now) * 1000).rounded(.up)))
            }
            return fault
        }
    }

    /// The first outage in progress on `route`, if any. Ended outages are removed here.
    func outage(route: EmulatorRoute) -> Fault? {
        removeEndedOutages(at: .now)
        return faults.first { $0.until != nil && $0.fault.matches(route: route, senderAddress: nil, recipients: []) }?
            .fault
    }

    private func removeEndedOutages(at now: ContinuousClock.Instant) {
        faults.removeAll { entry in entry.until.map { $0 <= now } ?? false }
    }

    /// The first fault that matches. One that answers or stalls (`status`, `delayMs`) is used up here, in
    /// the same actor step, so concurrent requests cannot both take its last application. One that only
    /// sets a `finalStatus` is not: its id is returned for ``accept(id:apiVersion:send:finalStatus:consumingFault:)``,
    /// which uses it up only if the send is accepted.
    func takeFault(
        route: EmulatorRoute, senderAddress: String?, recipients: [String]
    ) -> (fault: Fault, pendingID: Int?)? {
        guard
            let entry = faults.first(where: {
                !$0.fault.isOutage
                    && $0.fault.matches(route: route, senderAddress: senderAddress, recipients: recipients)
            })
        else { return nil }
        if entry.fault.status != nil || entry.fault.delayMs != nil {
            consume(faultID: entry.id)
            return (entry.fault, nil)
        }
        return (entry.fault, entry.id)
    }

    /// Uses one application of fault `faultID` up; a fault whose count reaches zero is removed.
    private func consume(faultID: Int) {
        guard let index = faults.firstIndex(where: { $0.id == faultID }) else { return }
        guard let remaining = faults[index].remaining else { return }
        if remaining <= 1 {
            faults.remove(at: index)
        } else {
            faults[index].remaining = remaining - 1
        }
    }

    // MARK: Request counts

    /// Counts a request answered with `status`, or dropped without an answer (nil).
    func count(route: EmulatorRoute, status: Int?, connection: RequestConnection) {
        if let status {
            counts[route, default: [:]][status, default: 0] += 1
        } else {
            dropped[route, default: 0] += 1
        }
        versionCounts[route, default: [:]][connection.httpVersion, default: 0] += 1
        connections[route, default: []].insert(connection.client)
    }

    /// `{"send":{"total":N,"statuses":{"202":N,…},"dropped":N,"replays":N,"httpVersions":{"2":N,…},"connections":N},
    /// "poll":{…},…}` where `dropped` counts requests answered by dropping the connection (also in `total`)
    /// and `connections` is the number of distinct client connections (peer address and port) seen.
    func requestCounts() -> JSONValue {
        var object: [String: JSONValue] = [:]
        for route in EmulatorRoute.allCases {
            let byStatus = counts[route] ?? [:]
            object[route.rawValue] = .object([
                "total": .integer(Int64(byStatus.values.reduce(dropped[route] ?? 0, +))),
                "dropped": .integer(Int64(dropped[route] ?? 0)),
                "replays": .integer(Int64(route == .send ? replays : 0)),
                "statuses": .object(
                    Dictionary(uniqueKeysWithValues: byStatus.map { (String($0.key), .integer(Int64($0.value))) })),
                "httpVersions": .object((versionCounts[route] ?? [:]).mapValues { .integer(Int64($0)) }),
                "connections": .integer(Int64(connections[route]?.count ?? 0)),
            ])
        }
        return .object(object)
    }

    func clearRequestCounts() {
        replays = 0
        counts.removeAll()
        dropped.removeAll()
        versionCounts.removeAll()
        connections.removeAll()
    }

    // MARK: Send quota

    /// `{"perMinute","perHour","minuteSeconds","hourSeconds","used":{"minute":N,"hour":N}}`.
    func quotaState() -> JSONValue {
        let used = quotaWindow.used(at: .now, quota: quota)
        var object = quota.json
        object["used"] = .object(["minute": .integer(Int64(used.minute)), "hour": .integer(Int64(used.hour))])
        return .object(object)
    }

    /// Applies a `POST /admin/quota` object. The sends already counted stay counted.
    func updateQuota(with json: JSONValue) -> Result<JSONValue, QuotaUpdateError> {
        quota.updated(with: json).map { updated in
            quota = updated
            return quotaState()
        }
    }

    /// Forgets operations, messages, faults, counts and the sends counted against the quota, whose limits
    /// stay as they are (`POST /admin/reset`).
    func reset() {
        operations.removeAll()
        messages.removeAll()
        faults.removeAll()
        clearRequestCounts()
        quotaWindow.reset()
    }

    /// `2026-12-07T14:39:57.123Z`: what ISO8601DateFormatter writes with fractional seconds, without it. A new
    /// formatter per send cost a seventh of the emulator's CPU under the benchmarks (ICU set-up each time).
    static func iso8601(_ date: Date) -> String {
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(milliseconds >= 0 ? milliseconds / 1000 : (milliseconds - 999) / 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func padded(_ value: Int32, _ width: Int) -> String {
            let digits = String(value)
            return String(repeating: "0", count: max(0, width - digits.count)) + digits
        }
        let fraction = Int32(milliseconds - Int64(seconds) * 1000)
        return "\(padded(parts.tm_year + 1900, 4))-\(padded(parts.tm_mon + 1, 2))-\(padded(parts.tm_mday, 2))T"
            + "\(padded(parts.tm_hour, 2)):\(padded(parts.tm_min, 2)):\(padded(parts.tm_sec, 2)).\(padded(fraction, 3))Z"
    }
}

/// A startup failure of the emulator (unreadable certificate, unwritable record file…).
public struct EmulatorError: Error, Sendable, CustomStringConvertible {
    public var description: String

    public init(_ description: String) {
        self.description = description
    }
}
