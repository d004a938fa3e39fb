import ACSEmail
import Logging
import MailParser
import SMTPProtocol
import SMTPServer

/// Parses a received message and translates it into the ACS request, for the outbox (a dry run) and
/// for ACS delivery alike, so both see exactly the same request.
public struct MessageTranslator: Sendable {
    public var parser: MailParser
    public var policy: TranslationPolicy

    public init(parser: MailParser = MailParser(), policy: TranslationPolicy) {
        self.parser = parser
        self.policy = policy
    }

    /// The translation of `message`, or the reply that refuses it.
    public func translate(_ message: ReceivedMessage, logger: Logger) -> Result<TranslatedEmail, TranslationRejection> {
        let mail = parser.parse(message.data)
        for diagnostic in mail.diagnostics {
            logger.debug(
                "MIME diagnostic",
                metadata: [
                    "smtp.message_id": "\(message.id)", "mime.diagnostic": "\(diagnostic.code)",
                    "mime.part": "\(diagnostic.partIndex.map(String.init) ?? "-")",
                ])
        }
        let envelope = ACSEmail.Envelope(
            mailFrom: message.envelope.reversePath.address,
            recipients: message.envelope.forwardPaths.map(\.address))
        let result = ACSTranslation.translateWithDetails(mail, envelope: envelope, policy: policy)
        if case .success(let translated) = result {
            for note in translated.notes {
                logger.info(
                    "translation note",
                    metadata: [
                        "smtp.message_id": "\(message.id)", "acs.note": "\(note.code)", "detail": "\(note.message)",
                    ])
            }
        }
        return result
    }
}
