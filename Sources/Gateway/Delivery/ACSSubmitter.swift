import ACSClient
import ACSEmail
import Logging
import SMTPProtocol
import SMTPServer

/// Delivers each message through ACS: translate, send (retries inside the client), answer the SMTP client
/// with the reply that tells the truth about what ACS did (``ACSReplyMapping``), with the operation's facts
/// for the connection's audit line.
///
/// The `Operation-Id` is the message id: unique per accepted SMTP transaction and reused on every retry of
/// it, so a retry after a lost answer cannot send twice. With an outbox copy, each message ACS accepted is
/// also written there (with its request), as a record of what was sent.
public final class ACSSubmitter: MessageSubmitter, @unchecked Sendable {
    private let client: ACSEmailClient
    private let translator: MessageTranslator
    private let outboxCopy: OutboxSubmitter?
    private let followUp: FinalStatusFollowUp?
    private let logger: Logger

    init(
        client: ACSEmailClient, translator: MessageTranslator, outboxCopy: OutboxSubmitter?,
        followUp: FinalStatusFollowUp? = nil, logger: Logger
    ) {
        self.client = client
        self.translator = translator
        self.outboxCopy = outboxCopy
        self.followUp = followUp
        self.logger = logger
    }

    /// Parses and translates on the caller's queue: a connection's own serial queue, which already runs on
    /// Dispatch's pool and has nothing else to do until this message is answered. One hop fewer per message
    /// than a queue of its own (a thread wake-up each, the largest kernel cost in the direct-mode profile).
    public func submit(_ message: ReceivedMessage, completion: @escaping @Sendable (SubmissionResult) -> Void) {
        // Only the request is kept: the translation's model and the parsed message end with this statement,
        // so the decoded attachments are not held beside the request while it is sent.
        guard let body = translator.translation(of: message, logger: logger, orAnswer: completion)?.requestBody
        else {
            return
        }
        let budget = client.configuration.retry.budget  // for the log only
        // The final status comes after the reply, polls later: only what a bounce needs waits for it.
        let followed = followUp.map { _ in FollowedMessage(message) }
        let messageID = message.id
        client.send(body: body, operationID: message.id) { [self] result in
            let outcome = Self.result(for: result, operationID: message.id)
            logProblem(result, reply: outcome.reply, message: message, budget: budget)
            guard outcome.reply.isPositive, let outboxCopy else {
                completion(outcome)
                return
            }
            outboxCopy.storeCopy(message, acsRequest: body) { [logger] stored in
                if !stored {
                    logger.error(
                        "message sent through ACS, but its outbox copy could not be written",
                        metadata: ["smtp.message_id": "\(message.id)"])
                }
                completion(outcome)  // the message was sent: the copy's failure does not change that
            }
        } finalStatus: { [logger, followUp, followed, messageID, client] status in
            // Learnt after the reply (reply-after accepted): a line of its own, after the audit line. A
            // Failed or Canceled for a message that already got 250 becomes a bounce; with reply-after
            // final the client heard the final status itself (a 5xx), so there is nothing to bounce.
            if let followUp, let followed, client.configuration.replyAfter == .accepted {
                if status.isTerminal {
                    followUp.finished(followed, status: status)
                } else {
                    followUp.follow(followed, operationID: status.operationID)
                }
                return
            }
            let level: Logger.Level = status.status.lowercased() == "succeeded" ? .info : .warning
            logger.log(
                level: level, "ACS final status",
                metadata: [
                    "smtp.message_id": "\(messageID)", "acs.operation_id": "\(status.operationID)",
                    "acs.status": "\(status.status)", "acs.error_code": "\(status.code ?? "-")",
                ])
        }
    }

    /// The reply (``ACSReplyMapping``) and the audit facts for one send's outcome.
    static func result(for result: ACSSendResult, operationID: String) -> SubmissionResult {
        let (reason, fields) = DeliveryAudit.describe(result, operationID: operationID)
        return SubmissionResult(reply: ACSReplyMapping.reply(for: result.outcome), reason: reason, auditFields: fields)
    }

    /// The audit line (written by the connection) says what happened; this adds, for the operator, what the
    /// reply cannot: why credentials failed, and what ACS last said before a deferral.
    private func logProblem(_ result: ACSSendResult, reply: SMTPReply, message: ReceivedMessage, budget: Double) {
        var metadata: Logger.Metadata = [
            "smtp.message_id": "\(message.id)", "acs.attempts": "\(result.attempts)",
            "acs.request_id": "\(result.requestID ?? "-")",
        ]
        switch result.outcome {
        case .accepted, .failed, .rejected:
            return
        case .authenticationFailed(let status, let code, let detail):
            metadata["acs.http_status"] = "\(status)"
            metadata["likely_cause"] = "\(ACSReplyMapping.likelyCause(status: status, code: code, message: detail))"
            logger.error("ACS refused the gateway's credentials", metadata: metadata)
        case .notAuthenticated(let error):
            metadata["error"] = "\(error.message)"
            logger.error("could not authenticate to ACS", metadata: metadata)
        case .throttled(let retryAfter):
            metadata["acs.retry_budget_s"] = "\(budget)"
            metadata["acs.retry_after_s"] = "\(retryAfter.map { "\($0)" } ?? "-")"
            logger.warning(
                "ACS still throttling when the retry budget ran out; the client will retry", metadata: metadata)
        case .unavailable(let status, let detail):
            metadata["acs.retry_budget_s"] = "\(budget)"
            metadata["acs.http_status"] = "\(status.map { "\($0)" } ?? "-")"
            metadata["error"] = "\(detail)"
            logger.warning("ACS unavailable when the retry budget ran out; the client will retry", metadata: metadata)
        }
    }
}
