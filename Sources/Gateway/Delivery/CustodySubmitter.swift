import ACSClient
import ACSEmail
import Dispatch
import Foundation
import Logging
import SMTPProtocol
import SMTPServer
import Spool

/// Delivery with custody (`delivery.mode` `hybrid` or `queue`): no message is lost to ACS throttling or an
/// outage, and definite ACS answers still reach the client.
///
/// - `queue`: every message is written to the spool (fsynced) and answered `250 … queued`; the spool
///   delivers it. A refusal after that point becomes a bounce.
/// - `hybrid`: the message is first sent during the transaction, for at most `delivery.direct_timeout`.
///   A 202 is `250 … queued as <operation-id>`; a permanent refusal is the 5xx of the reply table. A 429,
///   5xx, timeout, network failure, credential problem (401/403, which an operator can fix), or a pacer
///   that knows the quota is spent: the spool takes custody and the client hears
///   `250 2.0.0 OK <id> queued for delivery (ACS busy)`. The spooled message keeps the Operation-Id of the
///   first try, and a try whose outcome is unknown is checked with ACS before it is sent again.
///
/// Either way, a message the translation refuses is refused at once (5xx), and when the spool cannot
/// take a message the client gets 452/451 and keeps it. A 250 is never given for a message not on disk.
final class CustodySubmitter: MessageSubmitter, @unchecked Sendable {
    let mode: DeliveryMode
    private let delivery: SpoolDelivery
    private let client: ACSEmailClient
    private let translator: MessageTranslator
    private let settings: DeliverySettings
    private let followUp: FinalStatusFollowUp
    private let logger: Logger
    /// Parsing, translating and spool writes are CPU and disk work: off the connection queues.
    private let workQueue = DispatchQueue(label: "custody.submit", attributes: .concurrent)

    init(
        mode: DeliveryMode, delivery: SpoolDelivery, client: ACSEmailClient, translator: MessageTranslator,
        settings: DeliverySettings, followUp: FinalStatusFollowUp, logger: Logger
    ) {
        self.mode = mode
        self.delivery = delivery
        self.client = client
        self.translator = translator
        self.settings = settings
        self.followUp = followUp
        self.logger = logger
    }

    func admissionRefusal() -> SMTPReply? {
        delivery.admissionRefusal(settings: settings)
    }

    func submit(_ message: ReceivedMessage, completion: @escaping @Sendable (SubmissionResult) -> Void) {
        workQueue.async { [self] in
            // Only the request is kept (see ACSSubmitter): the decoded attachments are released here.
            guard let body = translator.translation(of: message, logger: logger, orAnswer: completion)?.requestBody
            else {
                return
            }
            guard mode == .hybrid else {
                takeCustody(message, because: nil, outcomeUnknown: false, otherwise: nil, completion: completion)
                return
            }
            let pacer = delivery.pacer
            if case .wait(_, let reason) = pacer.request(now: SpoolDelivery.monotonic(), direct: true) {
                let why = "ACS \(reason == .throttled ? "is throttling" : "quota is used up")"
                takeCustody(message, because: why, outcomeUnknown: false, otherwise: nil, completion: completion)
                return
            }
            var policy = client.configuration.retry
            policy.budget = settings.directTimeout
            policy.attemptTimeout = min(policy.attemptTimeout, settings.directTimeout)
            policy.maxRetryAfter = 0  // a 429 means custody now, not a wait inside the transaction
            client.send(
                body: body, operationID: message.id, retry: policy, replyAfter: .accepted
            ) { [self] result in
                let pacerOutcome: DeliveryPacer.Outcome
                switch result.outcome {
                case .accepted, .failed: pacerOutcome = .accepted
                case .throttled(let retryAfter): pacerOutcome = .throttled(retryAfter: retryAfter)
                default: pacerOutcome = .other
                }
                pacer.finished(pacerOutcome, now: SpoolDelivery.monotonic())
                let direct = ACSSubmitter.result(for: result, operationID: message.id)
                switch result.outcome {
                case .accepted(let operationID, _):
                    followUp.follow(message, operationID: operationID)
                    completion(direct)
                case .failed, .rejected:
                    completion(direct)  // a definite answer: the client hears it
                case .throttled, .unavailable, .authenticationFailed, .notAuthenticated:
                    let why = "\(direct.reason): \(direct.reply.lines.joined(separator: " "))"
                    // The spool's file writes belong on the work queue, not on the HTTP client's.
                    workQueue.async { [self] in
                        takeCustody(
                            message, because: why, outcomeUnknown: result.outcomeUncertain, otherwise: direct,
                            completion: completion)
                    }
                }
            }
        }
    }

    /// Writes the message to the spool and answers 250 once it is durable, or, when that fails, `otherwise`
    /// (the direct reply) or 452/451.
    private func takeCustody(
        _ message: ReceivedMessage, because why: String?, outcomeUnknown: Bool, otherwise: SubmissionResult?,
        completion: @escaping @Sendable (SubmissionResult) -> Void
    ) {
        delivery.take(message, outcomeUnknown: outcomeUnknown, lastError: why, settings: settings) { [self] result in
            switch result {
            case .success:
                let text = why == nil ? "OK \(message.id) queued" : "OK \(message.id) queued for delivery (ACS busy)"
                var fields = [AuditField("spool", "queued")]
                if let why { fields.append(AuditField("custody_because", why)) }
                completion(SubmissionResult(reply: .messageAccepted(text), reason: .spooled, auditFields: fields))
            case .failure(let refused as CustodyRefused):
                logger.warning(
                    "the spool cannot take the message; the client keeps it",
                    metadata: ["smtp.message_id": "\(message.id)", "reply": "\(refused.reply)"])
                completion(otherwise ?? SubmissionResult(refused.reply, reason: .spoolFull))
            case .failure(let error):
                logger.error(
                    "could not write the message to the spool; the client keeps it",
                    metadata: [
                        "smtp.message_id": "\(message.id)", "error": "\(error)", "spool": "\(delivery.spool.directory)",
                    ])
                completion(
                    otherwise ?? SubmissionResult(.localError("could not queue the message"), reason: .storageFailed))
            }
        }
    }
}

/// What a bounce of a message ACS accepted needs, kept while its final status is followed: the envelope and
/// the header block (``Bounce`` reads nothing else of the original), not the message.
///
/// A status is polled for up to `acs.poll_deadline` (2 minutes by default) after the 250, so a follow-up that
/// held the whole message made memory grow with the rate of accepted messages (20 connections sending 1 KB
/// messages peaked about 10 MB higher than without polls; about 5 MB now, the polls' own requests), and kept
/// a 7 MB message for minutes after it was sent
/// (`FinalStatusFollowUpTests.followUp_keepsTheHeaderBlock_notTheMessage`).
struct FollowedMessage: Sendable {
    let id: String
    let receivedAt: Date
    let envelopeSender: String
    let recipients: [String]
    /// A copy of the message's header block: the message's own octets are released with it.
    let headers: [UInt8]

    init(_ message: ReceivedMessage) {
        id = message.id
        receivedAt = message.receivedAt
        envelopeSender = message.envelope.reversePath.address
        recipients = message.envelope.forwardPaths.map(\.address)
        headers = Array(Bounce.headerBlock(message.data))
    }
}

/// Follows the final status of messages ACS accepted during the SMTP transaction (direct and hybrid modes),
/// in memory: a `Failed` or `Canceled` for a message that already got 250 becomes a bounce.
final class FinalStatusFollowUp: Sendable {
    private let client: ACSEmailClient
    private let bouncer: Bouncer
    private let pollDeadline: Double
    private let logger: Logger

    init(client: ACSEmailClient, bouncer: Bouncer, pollDeadline: Double, logger: Logger) {
        self.client = client
        self.bouncer = bouncer
        self.pollDeadline = pollDeadline
        self.logger = logger
    }

    /// Polls `operationID` until a final status or the deadline (first after 5 s, then doubling), keeping only
    /// what a bounce of `message` needs.
    func follow(_ message: ReceivedMessage, operationID: String) {
        follow(FollowedMessage(message), operationID: operationID)
    }

    func follow(_ message: FollowedMessage, operationID: String, after wait: Double = 5, started: Double? = nil) {
        let start = started ?? SpoolDelivery.monotonic()
        guard SpoolDelivery.monotonic() + wait - start < pollDeadline else {
            logger.info(
                "ACS final status unknown at the poll deadline",
                metadata: ["smtp.message_id": "\(message.id)", "acs.operation_id": "\(operationID)"])
            return
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + wait) { [self] in
            client.lookUp(operationID: operationID) { [self] lookup in
                switch lookup {
                case .found(let status, _) where status.isTerminal:
                    finished(message, status: status)
                case .found(_, let retryAfter):
                    follow(
                        message, operationID: operationID, after: max(retryAfter ?? 0, min(wait * 2, 60)),
                        started: start)
                case .notFound, .unknown:
                    follow(message, operationID: operationID, after: min(wait * 2, 60), started: start)
                }
            }
        }
    }

    func finished(_ message: FollowedMessage, status: ACSOperationStatus) {
        let metadata: Logger.Metadata = [
            "smtp.message_id": "\(message.id)", "acs.operation_id": "\(status.operationID)",
            "acs.status": "\(status.status)", "acs.error_code": "\(status.code ?? "-")",
        ]
        guard !status.succeeded else {
            logger.info("ACS final status", metadata: metadata)
            return
        }
        logger.warning("ACS final status: the message was not delivered; bouncing", metadata: metadata)
        let reply = ACSReplyMapping.reply(
            for: .failed(
                operationID: status.operationID, status: status.status, code: status.code, message: status.message))
        let failure = SpoolFailure(
            status: reply.enhancedCode?.description ?? "5.0.0",
            diagnostic: "ACS \(status.status.lowercased()) the message: "
                + SpoolDelivery.describe(status.code, status.message),
            kind: "failed")
        let plan = bouncer.plan(
            messageID: message.id, envelopeSender: message.envelopeSender, recipients: message.recipients,
            receivedAt: message.receivedAt, message: message.headers, failure: failure)
        switch plan {
        case .none(let reason):
            logger.notice("no bounce sent", metadata: metadata.merging(["reason": "\(reason)"]) { $1 })
        case .send(let recipient, let body):
            let operationID = Bouncer.operationID()
            client.send(body: body, operationID: operationID, replyAfter: .accepted) { [logger] result in
                var fields = metadata
                fields["bounce.to"] = "\(recipient)"
                fields["bounce.operation_id"] = "\(operationID)"
                if case .accepted = result.outcome {
                    logger.notice("message fate", metadata: fields.merging(["fate": "bounced"]) { $1 })
                } else {
                    fields["error"] = "\(ACSReplyMapping.reply(for: result.outcome))"
                    logger.error("a bounce could not be sent", metadata: fields)
                }
            }
        }
    }
}
