import ACSClient
import ACSEmail
import Dispatch
import Logging
import SMTPProtocol
import SMTPServer

/// Delivers each message through ACS: translate, send (retries inside the client), answer the SMTP client
/// with the reply that tells the truth about what ACS did (``ACSReplyMapping``), and write one audit line.
///
/// The `Operation-Id` is the message id: unique per accepted SMTP transaction and reused on every retry of
/// it, so a retry after a lost answer cannot send twice. With an outbox copy, each message ACS accepted is
/// also written there (with its request), as a record of what was sent.
public final class ACSSubmitter: MessageSubmitter, @unchecked Sendable {
    private let client: ACSEmailClient
    private let translator: MessageTranslator
    private let outboxCopy: OutboxSubmitter?
    private let logger: Logger
    /// Parsing and translating is CPU work: off the connection queues, on Dispatch's bounded pool.
    private let workQueue = DispatchQueue(label: "acs.submit", attributes: .concurrent)

    public init(client: ACSEmailClient, translator: MessageTranslator, outboxCopy: OutboxSubmitter?, logger: Logger) {
        self.client = client
        self.translator = translator
        self.outboxCopy = outboxCopy
        self.logger = logger
    }

    public func submit(_ message: ReceivedMessage, completion: @escaping @Sendable (SMTPReply) -> Void) {
        workQueue.async { [self] in
            let translated: TranslatedEmail
            switch translator.translate(message, logger: logger) {
            case .failure(let rejection):
                logger.notice(
                    "message refused before sending to ACS",
                    metadata: ["smtp.message_id": "\(message.id)", "acs.rejection": "\(rejection.reason)"])
                completion(SMTPReply(rejection))
                return
            case .success(let value):
                translated = value
            }
            let budget = client.configuration.retry.budget  // for the log only
            client.send(body: translated.requestBody, operationID: message.id) { [self] result in
                let reply = ACSReplyMapping.reply(for: result.outcome)
                logOutcome(result, reply: reply, message: message, budget: budget)
                guard reply.isPositive, let outboxCopy else {
                    completion(reply)
                    return
                }
                outboxCopy.storeCopy(message, acsRequest: translated.requestBody) { [logger] stored in
                    if !stored {
                        logger.error("message sent through ACS, but its outbox copy could not be written",
                                     metadata: ["smtp.message_id": "\(message.id)"])
                    }
                    completion(reply)  // the message was sent: the copy's failure does not change that
                }
            } finalStatus: { [logger] status in
                let level: Logger.Level = status.status.lowercased() == "succeeded" ? .info : .warning
                logger.log(
                    level: level, "ACS final status",
                    metadata: [
                        "smtp.message_id": "\(message.id)", "acs.operation_id": "\(status.operationID)",
                        "acs.status": "\(status.status)", "acs.error_code": "\(status.code ?? "-")",
                    ])
            }
        }
    }

    private func logOutcome(_ result: ACSSendResult, reply: SMTPReply, message: ReceivedMessage, budget: Double) {
        var metadata: Logger.Metadata = [
            "smtp.message_id": "\(message.id)", "acs.operation_id": "\(message.id)",
            "acs.attempts": "\(result.attempts)", "acs.request_id": "\(result.requestID ?? "-")",
            "smtp.reply": "\(reply)",
        ]
        switch result.outcome {
        case .accepted(_, let status):
            metadata["acs.status"] = "\(status)"
            logger.info("ACS accepted the message", metadata: metadata)
        case .authenticationFailed(let status, let code, let detail):
            metadata["acs.http_status"] = "\(status)"
            metadata["likely_cause"] = "\(ACSReplyMapping.likelyCause(status: status, code: code, message: detail))"
            logger.error("ACS refused the gateway's credentials", metadata: metadata)
        case .notAuthenticated(let error):
            metadata["error"] = "\(error.message)"
            logger.error("could not authenticate to ACS", metadata: metadata)
        case .throttled, .unavailable:
            metadata["acs.retry_budget_s"] = "\(budget)"
            logger.warning("ACS delivery deferred; the client will retry", metadata: metadata)
        case .failed, .rejected:
            logger.notice("ACS refused the message", metadata: metadata)
        }
    }
}
