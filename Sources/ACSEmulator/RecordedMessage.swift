import Foundation

/// One accepted message as `GET /admin/messages` lists it and `--record` writes it (one JSON line each).
public struct RecordedMessage: Sendable, Hashable, Codable {
    /// The operation id: the `Operation-Id` request header, or the UUID the emulator chose.
    public var operationId: String
    /// When the send was accepted, ISO 8601 in UTC.
    public var receivedAt: String
    public var apiVersion: String
    /// The request body as received (unknown fields included).
    public var request: JSONValue
    /// Attachments dropped under `x-ms-acsemail-suppress-invalid-attachment: true`; absent when none were.
    public var droppedAttachments: [String]?
    /// The HTTP version of the send request: "1.1" or "2" (absent in records written before it was kept).
    public var httpVersion: String?

    public init(
        operationId: String, receivedAt: String, apiVersion: String, request: JSONValue,
        droppedAttachments: [String]? = nil, httpVersion: String? = nil
    ) {
        self.operationId = operationId
        self.receivedAt = receivedAt
        self.apiVersion = apiVersion
        self.request = request
        self.droppedAttachments = droppedAttachments
        self.httpVersion = httpVersion
    }

    /// One compact JSON line (without the newline), keys sorted: the fields `Codable` names, absent ones left
    /// out, written by ``JSONValue/serialized()`` rather than `JSONEncoder` (one line per accepted send).
    public func jsonLine() -> [UInt8] {
        var object: [String: JSONValue] = [
            "operationId": .string(operationId), "receivedAt": .string(receivedAt), "apiVersion": .string(apiVersion),
            "request": request,
        ]
        if let droppedAttachments { object["droppedAttachments"] = .array(droppedAttachments.map(JSONValue.string)) }
        if let httpVersion { object["httpVersion"] = .string(httpVersion) }
        return JSONValue.object(object).serialized()
    }
}
