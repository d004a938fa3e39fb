/// Why a message cannot be handed to ACS, as an SMTP-ready reply: a basic code, an enhanced status code
/// (RFC 3463) and a text that names the reason.
///
/// An extensible error struct rather than an enum (docs/design.md principle 6): new reasons can be added
/// without breaking callers that switch on ``Reason`` with a `default`. The SMTP layer answers the end of
/// DATA with ``smtpReply`` (e.g. `550 5.7.1 …`); nothing is sent to ACS.
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
    /// The SMTP reply code, always permanent (5xx): retrying the same message cannot succeed.
    public var code: Int
    /// The RFC 3463 enhanced status code, e.g. `5.7.1`.
    public var enhancedCode: String
    /// Human-readable text naming the reason; one line, safe to put in an SMTP reply.
    public var text: String

    public init(reason: Reason, code: Int, enhancedCode: String, text: String) {
        self.reason = reason
        self.code = code
        self.enhancedCode = enhancedCode
        // One line: the text ends up in an SMTP reply, where CR or LF would break the protocol.
        self.text = text.singleLine()
    }

    /// The reply line without CRLF, e.g. `550 5.7.1 Sender address …`.
    public var smtpReply: String {
        "\(code) \(enhancedCode) \(text)"
    }

    /// `550 5.7.1`: RFC 3463 X.7.1 "delivery not authorized"; the gateway may not send as this sender.
    public static func senderNotMappable(_ detail: String) -> TranslationRejection {
        TranslationRejection(
            reason: .senderNotMappable, code: 550, enhancedCode: "5.7.1",
            text: "Sender cannot be mapped to an ACS sender address: \(detail)")
    }

    /// `552 5.3.4`: RFC 3463 X.3.4 "message too big for system", the code SIZE overflows use (RFC 1870).
    public static func requestTooLarge(encodedSize: Int, limit: Int) -> TranslationRejection {
        TranslationRejection(
            reason: .requestTooLarge, code: 552, enhancedCode: "5.3.4",
            text: "Encoded ACS request size \(encodedSize) bytes is over the limit of \(limit) bytes")
    }

    /// `554 5.6.0`: RFC 3463 X.6.0 "other or undefined media error", naming the attachment and its type.
    public static func attachmentTypeRejected(name: String, contentType: String) -> TranslationRejection {
        TranslationRejection(
            reason: .attachmentTypeRejected, code: 554, enhancedCode: "5.6.0",
            text: "Attachment \"\(name)\" has type \(contentType), which ACS does not accept")
    }

    /// `554 5.6.0` for an ACS 400 about attachments, naming the attachment so the sender can fix it. `names`
    /// are the attachments whose type ACS does not list
    /// (``EmailMessage/unlistedAttachments``), since ACS's error does not say which one it refused.
    public static func attachmentRejectedByACS(_ names: [String]) -> TranslationRejection {
        let list = names.isEmpty ? "an attachment" : names.map { "\"\($0)\"" }.joined(separator: ", ")
        return TranslationRejection(
            reason: .attachmentTypeRejected, code: 554, enhancedCode: "5.6.0",
            text: "ACS rejected \(list): attachment type not accepted")
    }

    /// `554 5.1.0`: RFC 3463 X.1.0 "other address status": the envelope has no address to deliver to.
    /// The SMTP layer normally prevents this (DATA needs a RCPT); the CLI can produce it.
    public static func noRecipients() -> TranslationRejection {
        TranslationRejection(
            reason: .noRecipients, code: 554, enhancedCode: "5.1.0", text: "Message has no envelope recipients")
    }

    /// `550 5.5.3`: RFC 3463 X.5.3 "too many recipients".
    public static func tooManyRecipients(count: Int, limit: Int) -> TranslationRejection {
        TranslationRejection(
            reason: .tooManyRecipients, code: 550, enhancedCode: "5.5.3",
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
