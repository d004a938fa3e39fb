/// Why a message cannot be handed to ACS: the rule that refused it and a text that names the reason.
///
/// An extensible error struct rather than an enum (docs/design.md principle 6): new reasons can be added
/// without breaking callers that switch on ``Reason`` with a `default`. Nothing is sent to ACS. The
/// gateway's reply table turns the reason into the SMTP reply (550 5.7.1, 552 5.3.4, 554 5.6.0…), so this
/// module speaks ACS and mail, not SMTP.
public struct TranslationRejection: Error, Sendable, Hashable {
    /// A stable identifier of the rule that rejected the message, for logs and metrics.
    public struct Reason: Sendable, Hashable, RawRepresentable, CustomStringConvertible {
        public var rawValue: String
        public init(rawValue: String) {
            self.rawValue = rawValue
        }
        public var description: String {
            rawValue
        }

        /// Neither a configured sender address nor a verified-domain From/envelope sender is available.
        public static let senderNotMappable = Reason(rawValue: "senderNotMappable")
        /// The encoded request is larger than the configured ACS request limit.
        public static let requestTooLarge = Reason(rawValue: "requestTooLarge")
        /// An attachment's type is not in ACS's allowed list and the policy is `reject`
        /// (or ACS itself refused it: ``attachmentRejectedByACS(_:)``).
        public static let attachmentTypeRejected = Reason(rawValue: "attachmentTypeRejected")
        /// The envelope has no usable recipient.
        public static let noRecipients = Reason(rawValue: "noRecipients")
        /// The envelope has more recipients than ACS accepts in one request.
        public static let tooManyRecipients = Reason(rawValue: "tooManyRecipients")
    }

    public var reason: Reason
    /// Human-readable text naming the reason; one line, safe to put in an SMTP reply.
    public var text: String

    public init(reason: Reason, text: String) {
        self.reason = reason
        // One line: the text ends up in an SMTP reply, where CR or LF would break the protocol.
        self.text = text.singleLine()
    }

    /// `reason: text`, for logs and the outbox record.
    public var summary: String { "\(reason.rawValue): \(text)" }

    /// The gateway may not send as this sender.
    public static func senderNotMappable(_ detail: String) -> TranslationRejection {
        TranslationRejection(
            reason: .senderNotMappable, text: "Sender cannot be mapped to an ACS sender address: \(detail)")
    }

    /// The encoded request is over ACS's request size limit.
    public static func requestTooLarge(encodedSize: Int, limit: Int) -> TranslationRejection {
        TranslationRejection(
            reason: .requestTooLarge,
            text: "Encoded ACS request size \(encodedSize) bytes is over the limit of \(limit) bytes")
    }

    /// An attachment type ACS does not accept, naming the attachment and its type.
    public static func attachmentTypeRejected(name: String, contentType: String) -> TranslationRejection {
        TranslationRejection(
            reason: .attachmentTypeRejected,
            text: "Attachment \"\(name)\" has type \(contentType), which ACS does not accept")
    }

    /// ACS answered 400 about attachments, naming the attachment so the sender can fix it. `names` are the
    /// attachments whose type ACS does not list
    /// (``EmailMessage/unlistedAttachments``), since ACS's error does not say which one it refused.
    public static func attachmentRejectedByACS(_ names: [String]) -> TranslationRejection {
        let list = names.isEmpty ? "an attachment" : names.map { "\"\($0)\"" }.joined(separator: ", ")
        return TranslationRejection(
            reason: .attachmentTypeRejected, text: "ACS rejected \(list): attachment type not accepted")
    }

    /// The envelope has no address to deliver to.
    /// The SMTP layer normally prevents this (DATA needs a RCPT); the CLI can produce it.
    public static func noRecipients() -> TranslationRejection {
        TranslationRejection(
            reason: .noRecipients, text: "Message has no envelope recipients")
    }

    /// More envelope recipients than ACS takes in one request.
    public static func tooManyRecipients(count: Int, limit: Int) -> TranslationRejection {
        TranslationRejection(
            reason: .tooManyRecipients,
            text: "Message has \(count) recipients; ACS accepts at most \(limit) per request")
    }
}

extension EmailMessage {
    /// The names of attachments whose `contentType` is not in ACS's allowed list (docs/acs-email-api.md §7.1):
    /// the likely cause when ACS answers 400 about attachments.
    public var unlistedAttachments: [String] {
        (attachments ?? []).filter { !AttachmentTypes.isAllowed($0.contentType) }.map(\.name)
    }
}
