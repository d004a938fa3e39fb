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
/// (SMTPUTF8) is `true`; others keep their text value.
struct OutboxRecord {
    var message: ReceivedMessage

    init(message: ReceivedMessage) {
        self.message = message
    }

    var jsonObject: [String: Any] {
        var parameters: [String: Any] = [:]
        for (keyword, value) in message.envelope.mailParameters {
            parameters[keyword] = value ?? true
        }
        return [
            "id": message.id,
            "receivedAt": Self.timestamp(message.receivedAt),
            "client": [
                "address": message.session.clientAddress.ipString,
                "helo": message.session.heloName,
            ],
            "envelope": [
                "mailFrom": message.envelope.reversePath.address,
                "rcptTo": message.envelope.forwardPaths.map(\.address),
                "parameters": parameters,
            ] as [String: Any],
        ]
    }

    func jsonData() throws -> [UInt8] {
        let data = try JSONSerialization.data(
            withJSONObject: jsonObject, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        return Array(data) + [10]
    }

    /// ISO 8601 in UTC with milliseconds.
    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }
}
