import Foundation
import SMTPProtocol
import SMTPServer

/// The `<id>.json` record written beside each outbox message:
///
/// ```json
/// {"id": "…", "receivedAt": "2026-11-28T16:25:57.123Z",
///  "client": {"address": "127.0.0.1", "helo": "client.example"},
///  "envelope": {"mailFrom": "a@example.com", "rcptTo": ["b@example.net"],
///               "parameters": {"SIZE": "899", "SMTPUTF8": true}}}
/// ```
///
/// `mailFrom` is "" for the null sender `<>`. `rcptTo` is in RCPT order. A keyword-only ESMTP parameter
/// (SMTPUTF8) is `true`; others keep their text value. When the message was translated, `acsRequest` is
/// the request body exactly as it would be sent to ACS (the same octets, spliced in verbatim); when the
/// translation refused it, `acsRejection` is the SMTP reply real delivery would give.
struct OutboxRecord {
    var message: ReceivedMessage
    var acsRequest: [UInt8]?
    var acsRejection: String?

    init(message: ReceivedMessage, acsRequest: [UInt8]? = nil, acsRejection: String? = nil) {
        self.message = message
        self.acsRequest = acsRequest
        self.acsRejection = acsRejection
    }

    /// The client's address and HELO name, and the local user for a local submission.
    static func client(_ session: SessionInfo) -> [String: Any] {
        var client: [String: Any] = ["address": session.client.address?.ipString ?? "local", "helo": session.heloName]
        if let peer = session.client.localPeer {
            client["local"] = [
                "uid": peer.uid, "gid": peer.gid, "pid": peer.pid, "user": peer.userName as Any? ?? NSNull(),
            ]
        }
        return client
    }

    var jsonObject: [String: Any] {
        var parameters: [String: Any] = [:]
        for (keyword, value) in message.envelope.mailParameters {
            parameters[keyword] = value ?? true
        }
        var object: [String: Any] = [
            "id": message.id,
            "receivedAt": Self.timestamp(message.receivedAt),
            "client": Self.client(message.session),
            "envelope": [
                "mailFrom": message.envelope.reversePath.address,
                "rcptTo": message.envelope.forwardPaths.map(\.address),
                "parameters": parameters,
            ] as [String: Any],
        ]
        if let acsRejection { object["acsRejection"] = acsRejection }
        return object
    }

    /// The record's octets in pieces to be written one after the other. The request is one piece, the caller's
    /// own array: joining it to the rest would copy a request of megabytes, twice, while it is still held.
    func jsonPieces() throws -> [[UInt8]] {
        let data = try JSONSerialization.data(
            withJSONObject: jsonObject, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        var head = Array(data)
        guard let acsRequest, let close = head.lastIndex(of: UInt8(ascii: "}")) else { return [head + [10]] }
        // Spliced in as is, before the closing brace, so the record holds the exact bytes.
        head.replaceSubrange(close..., with: Array(",\n  \"acsRequest\" : ".utf8))
        return [head, acsRequest, Array("\n}\n".utf8)]
    }

    /// ISO 8601 in UTC with milliseconds.
    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }
}
