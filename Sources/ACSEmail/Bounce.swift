import MailParser

#if canImport(FoundationEssentials)
    import FoundationEssentials
#else
    import Foundation
#endif

/// Why a message the gateway accepted (250) was not delivered, as a bounce reports it: one message, the
/// recipients concerned, and ACS's reason.
public struct DeliveryFailureReport: Sendable, Hashable {
    /// The gateway's host name, for `Reporting-MTA: dns; …`.
    public var reportingMTA: String
    /// The gateway's id of the original message (its UUIDv7, the one in the SMTP reply and the logs).
    public var messageID: String
    /// The envelope MAIL FROM of the original (the bounce goes back to it; never empty, see
    /// ``Bounce/mustNotBounce(envelopeSender:headers:gatewaySender:)``).
    public var originalSender: String
    /// The envelope recipients that did not get the message (`Final-Recipient: rfc822; …`, one group each).
    public var recipients: [String]
    /// When the gateway received the original (`Arrival-Date`).
    public var arrivalDate: Date
    /// The RFC 3463 enhanced status, e.g. `5.1.0`.
    public var status: String
    /// The reason on one line: ACS's code and message, or the SMTP reply the gateway would have given
    /// (`550 5.1.0 EmailDroppedAllRecipientsSuppressed: …`), which makes `Diagnostic-Code: smtp; …` exact.
    public var diagnostic: String
    /// The RFC 3464 `Action`: `failed` (the default) or `delayed`.
    public var action: String
    /// The original's header block as received, up to the blank line. A whole message may be given: only
    /// the part before the first blank line is used, so the body never travels back.
    public var originalHeaders: [UInt8]
    /// The original's decoded `Subject`, quoted in the bounce's subject.
    public var originalSubject: String?

    public init(
        reportingMTA: String, messageID: String, originalSender: String, recipients: [String], arrivalDate: Date,
        status: String, diagnostic: String, action: String = "failed", originalHeaders: [UInt8],
        originalSubject: String? = nil
    ) {
        self.reportingMTA = reportingMTA
        self.messageID = messageID
        self.originalSender = originalSender
        self.recipients = recipients
        self.arrivalDate = arrivalDate
        self.status = status
        self.diagnostic = diagnostic
        self.action = action
        self.originalHeaders = originalHeaders
        self.originalSubject = originalSubject
    }
}

/// Why a message must never be bounced: each is a loop guard (RFC 3464 §6.2, RFC 3834 §2, RFC 5321 §4.5.5).
public enum BounceSuppression: String, Sendable, Hashable, CaseIterable {
    /// The null reverse-path `<>`: the original is itself a notification; a bounce has nowhere to go.
    case nullSender = "null-sender"
    /// `Auto-Submitted:` with a value other than `no` (RFC 3834): an auto-reply or another bounce.
    case autoSubmitted = "auto-submitted"
    /// `Content-Type: multipart/report`: a delivery or disposition report (RFC 6522).
    case report
    /// `X-Failed-Recipients:`, which Exim and others put on their bounces.
    case failedRecipients = "failed-recipients"
    /// An envelope or `From` sender whose local part is `MAILER-DAEMON` or `postmaster`.
    case mailerDaemon = "mailer-daemon"
    /// The gateway's own bounce (``Bounce/bounceForHeader``), even if a relay dropped `Auto-Submitted`.
    case gatewayBounce = "gateway-bounce"
    /// The envelope sender is the gateway's own sender address: the bounce would be sent to itself.
    case gatewaySender = "gateway-sender"
}

/// The bounce for a message ACS refused after the gateway had accepted it: the loop guard and the ACS
/// request that reports the failure to the original sender. Pure: no I/O, no clock.
///
/// ACS has no `multipart/report` body (acs-email-api.md §2.1), so the RFC 3464 report is spread over the
/// request: the human explanation is `plainText`, the `message/delivery-status` fields are the attachment
/// `delivery-status.txt`, and the original header block is `original-headers.txt` (both `text/plain`; the
/// headers at most ``maxOriginalHeaderBytes`` octets, cut at a line end with a note). The bounce carries
/// `Auto-Submitted: auto-replied` (RFC 3834 §5) and ``bounceForHeader`` so that it is never bounced itself.
///
/// Every value taken from the original or from ACS is put on one line (control characters, CR and LF become
/// spaces) before it goes into the subject, the text or a report field, so none can start a header or a
/// report field of its own. `Original-Envelope-Id` is not written: RFC 3464 §2.2.1 reserves it for an
/// envelope id the client gave (DSN `ENVID`), which the gateway does not take; the gateway's id is the
/// extension field `X-ACSGW-Message-Id` instead (§2.4 allows `X-` fields).
///
/// Pinned by `BounceGoldenTests` (whole requests) and `BounceTests` (each guard, sanitizing, the cap).
public enum Bounce {
    /// The original header block is cut to this many octets: enough for any real header (Postfix's own
    /// `header_size_limit` is 100 KiB of which real mail uses a few), small next to ACS's 10 MB request.
    public static let maxOriginalHeaderBytes = 65_536
    /// The custom header that marks the gateway's bounces, with the original's gateway id as its value.
    public static let bounceForHeader = "X-ACSGW-Bounce-For"
    /// The bounce's subject, before `: <original subject>`.
    public static let subjectPrefix = "Undelivered Mail Returned to Sender"
    /// The longest original subject quoted in the bounce's subject, in characters.
    static let maxQuotedSubjectLength = 200
    /// The longest diagnostic written, in characters (ACS's messages are one sentence).
    static let maxDiagnosticLength = 1000

    // MARK: Loop guard

    /// True when a message must never be bounced; ``suppression(envelopeSender:headers:gatewaySender:)``
    /// says why.
    public static func mustNotBounce(envelopeSender: String, headers: [UInt8], gatewaySender: String?) -> Bool {
        suppression(envelopeSender: envelopeSender, headers: headers, gatewaySender: gatewaySender) != nil
    }

    /// The first loop guard that forbids bouncing a message from `envelopeSender` (MAIL FROM, without or with
    /// angle brackets; `""` is the null sender) with header block `headers`, or nil when a bounce may be
    /// sent. `gatewaySender` is the address the gateway sends as (compared case-insensitively).
    public static func suppression(envelopeSender: String, headers: [UInt8], gatewaySender: String?)
        -> BounceSuppression?
    {
        let sender = AddressKey.stripped(envelopeSender)
        if sender.isEmpty {
            return .nullSender
        }
        if let gatewaySender, !gatewaySender.isEmpty,
            sender.lowercased() == AddressKey.stripped(gatewaySender).lowercased()
        {
            return .gatewaySender
        }
        let mail = MailParser().parse(Array(headerBlock(headers)))
        if mail.headerValues("Auto-Submitted").contains(where: { keyword(of: $0) != "no" }) {
            return .autoSubmitted
        }
        if mail.headerValues("Content-Type").contains(where: { keyword(of: $0) == "multipart/report" }) {
            return .report
        }
        if !mail.headerValues("X-Failed-Recipients").isEmpty {
            return .failedRecipients
        }
        if !mail.headerValues(bounceForHeader).isEmpty {
            return .gatewayBounce
        }
        let senders = [sender] + mail.from.map(\.address)
        if senders.contains(where: { ["mailer-daemon", "postmaster"].contains(localPart(of: $0).lowercased()) }) {
            return .mailerDaemon
        }
        return nil
    }

    // MARK: The bounce

    /// The ACS request for the bounce of `report`, from `senderAddress` to `bounceRecipient` (normally the
    /// original envelope sender).
    public static func message(
        for report: DeliveryFailureReport, senderAddress: String, bounceRecipient: String
    ) -> EmailMessage {
        let quoted = oneLine(report.originalSubject ?? "", limit: maxQuotedSubjectLength)
        let subject = quoted.isEmpty ? subjectPrefix : "\(subjectPrefix): \(quoted)"
        return EmailMessage(
            senderAddress: senderAddress,
            content: EmailContent(subject: subject, plainText: explanation(report)),
            recipients: EmailRecipients(to: [EmailAddress(address: bounceRecipient)]),
            attachments: [
                EmailAttachment(
                    name: "delivery-status.txt", contentType: "text/plain",
                    contentInBase64: Base64.encode(Array(deliveryStatus(report).utf8))),
                EmailAttachment(
                    name: "original-headers.txt", contentType: "text/plain",
                    contentInBase64: Base64.encode(cappedHeaders(report.originalHeaders))),
            ],
            headers: ["Auto-Submitted": "auto-replied", bounceForHeader: oneLine(report.messageID)])
    }

    /// The exact JSON body of `POST /emails:send` for the bounce, as ``ACSJSONEncoder`` writes it for
    /// `apiVersion` (the bounce has no inline attachment, so both versions give the same bytes).
    public static func requestBody(
        for report: DeliveryFailureReport, senderAddress: String, bounceRecipient: String,
        apiVersion: ACSAPIVersion = .v2025_09_01
    ) -> [UInt8] {
        ACSJSONEncoder(apiVersion: apiVersion).encode(
            message(for: report, senderAddress: senderAddress, bounceRecipient: bounceRecipient))
    }

    /// The human part: which recipients, why, when the message arrived and its gateway id. CRLF line ends,
    /// the canonical form of text (RFC 2046 §4.1.1), as the translation sends bodies.
    static func explanation(_ report: DeliveryFailureReport) -> String {
        var lines = [
            "This is the mail gateway at \(oneLine(report.reportingMTA)).",
            "",
            report.action.lowercased() == "delayed"
                ? "Your message has not been delivered yet to these recipients:"
                : "Your message could not be delivered to these recipients:",
            "",
        ]
        lines += report.recipients.map { "    \(oneLine($0))" }
        lines += [
            "",
            "Reason: \(oneLine(report.diagnostic, limit: maxDiagnosticLength))",
            "Status: \(oneLine(report.status))",
            "",
        ]
        if let subject = report.originalSubject.map({ oneLine($0, limit: maxQuotedSubjectLength) }), !subject.isEmpty {
            lines.append("Subject: \(subject)")
        }
        lines += [
            "Sent by: \(oneLine(report.originalSender))",
            "Received by the gateway: \(rfc5322Date(report.arrivalDate))",
            "Gateway id: \(oneLine(report.messageID))",
            "",
            "The delivery report (delivery-status.txt) and the headers of your message (original-headers.txt)",
            "are attached.",
        ]
        return lines.map { $0 + "\r\n" }.joined()
    }

    /// The RFC 3464 §2.2–2.3 fields: the per-message group, then one group per recipient, each group after
    /// a blank line.
    static func deliveryStatus(_ report: DeliveryFailureReport) -> String {
        var lines = [
            "Reporting-MTA: dns; \(oneLine(report.reportingMTA))",
            "X-ACSGW-Message-Id: \(oneLine(report.messageID))",
            "Arrival-Date: \(rfc5322Date(report.arrivalDate))",
        ]
        for recipient in report.recipients {
            lines += [
                "",
                "Final-Recipient: rfc822; \(oneLine(recipient))",
                "Action: \(oneLine(report.action))",
                "Status: \(oneLine(report.status))",
                "Diagnostic-Code: smtp; \(oneLine(report.diagnostic, limit: maxDiagnosticLength))",
            ]
        }
        return lines.map { $0 + "\r\n" }.joined()
    }

    /// The header block, cut after the last whole line that fits in ``maxOriginalHeaderBytes``, with a note
    /// after a blank line when something was left out (so the note cannot be read as a header field).
    static func cappedHeaders(_ original: [UInt8]) -> [UInt8] {
        let block = headerBlock(original)
        guard block.count > maxOriginalHeaderBytes else {
            return Array(block)
        }
        let limit = block.startIndex + maxOriginalHeaderBytes
        var end = limit
        if let lastLineEnd = block[..<limit].lastIndex(of: 0x0A) {
            end = lastLineEnd + 1
        } else {
            // One line longer than the cap: cut at a character boundary.
            while end > block.startIndex, block[end] & 0xC0 == 0x80 {
                end -= 1
            }
        }
        let kept = end - block.startIndex
        let note = "\r\n[truncated: the header block has \(block.count) octets, the first \(kept) are shown]\r\n"
        return Array(block[..<end]) + Array(note.utf8)
    }

    /// The octets before the first empty line (LF or CRLF line ends), including the last header line's end.
    /// Everything a bounce reads of the original: keeping these is keeping all a later bounce needs.
    public static func headerBlock(_ message: [UInt8]) -> ArraySlice<UInt8> {
        var index = message.startIndex
        var lineStart = index
        while index < message.endIndex {
            if message[index] == 0x0A {
                let line = message[lineStart..<index]
                if line.isEmpty || (line.count == 1 && line.first == 0x0D) {
                    return message[..<lineStart]
                }
                lineStart = index + 1
            }
            index += 1
        }
        return message[...]
    }

    // MARK: Helpers

    /// `text` on one line: every control character (CR, LF, TAB, NUL, DEL, C1) and Unicode line or paragraph
    /// separator becomes a space, runs of spaces become one, and the ends are trimmed; then at most `limit`
    /// characters, the last one `…` when cut.
    static func oneLine(_ text: String, limit: Int = .max) -> String {
        var result = ""
        var pendingSpace = false
        for scalar in text.unicodeScalars {
            let category = scalar.properties.generalCategory
            if scalar == " " || category == .control || category == .lineSeparator
                || category == .paragraphSeparator
            {
                pendingSpace = !result.isEmpty
                continue
            }
            if pendingSpace {
                result.unicodeScalars.append(" ")
                pendingSpace = false
            }
            result.unicodeScalars.append(scalar)
        }
        guard result.count > limit else {
            return result
        }
        return String(result.prefix(max(limit - 1, 0))) + "…"
    }

    /// The first token of a structured header value, lower-cased: `auto-replied` in
    /// `Auto-Replied (vacation); x=1`.
    static func keyword(of value: String) -> String {
        String(value.prefix { $0 != ";" && $0 != "(" }).trimmingWhitespace().lowercased()
    }

    static func localPart(of address: String) -> String {
        let stripped = AddressKey.stripped(address)
        return stripped.lastIndex(of: "@").map { String(stripped[..<$0]) } ?? stripped
    }

    /// `date` as an RFC 5322 §3.3 date-time in UTC, e.g. `Tue, 03 Nov 2026 10:00:00 +0000` (whole seconds;
    /// English names whatever the locale).
    public static func rfc5322Date(_ date: Date) -> String {
        let total = Int64(date.timeIntervalSince1970.rounded(.down))
        let days = total >= 0 ? total / 86_400 : (total - 86_399) / 86_400
        let secondOfDay = total - days * 86_400
        let (year, month, day) = civilDate(daysSinceEpoch: days)
        // 1970-01-01 was a Thursday.
        let weekday = ((days % 7) + 7 + 4) % 7
        let weekdays = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ value: Int64) -> String { value < 10 ? "0\(value)" : "\(value)" }
        return "\(weekdays[Int(weekday)]), \(two(day)) \(months[Int(month) - 1]) \(year) "
            + "\(two(secondOfDay / 3600)):\(two(secondOfDay / 60 % 60)):\(two(secondOfDay % 60)) +0000"
    }

    /// The proleptic Gregorian (year, month, day) of a day count from 1970-01-01 (H. Hinnant's
    /// `civil_from_days`). ACSClient's `RequestSigner.httpDate` does the same arithmetic; the two modules do not
    /// import each other (this one stays free of networking and C libraries), so each keeps its copy.
    static func civilDate(daysSinceEpoch days: Int64) -> (year: Int64, month: Int64, day: Int64) {
        let shifted = days + 719_468
        let era = (shifted >= 0 ? shifted : shifted - 146_096) / 146_097
        let dayOfEra = shifted - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = dayOfYear - (153 * monthIndex + 2) / 5 + 1
        let month = monthIndex < 10 ? monthIndex + 3 : monthIndex - 9
        return (yearOfEra + era * 400 + (month <= 2 ? 1 : 0), month, day)
    }
}
