import ACSClient
import ACSEmail
import Logging
import SMTPServer

/// The delivery side's words for the audit line and the metrics: why a message got its reply (bounded
/// `reason` labels) and what ACS said about it (`acs.*` fields). The SMTP server only carries them.
extension SubmissionReason {
    /// Written to the outbox.
    public static let stored = SubmissionReason("stored")
    /// The outbox or the spool could not be written (451).
    public static let storageFailed = SubmissionReason("storage_failed")
    /// The spool is over its limits or the disk is full (452).
    public static let spoolFull = SubmissionReason("spool_full")
    /// Taken into the spool: delivered later (queue mode, or ACS busy in hybrid mode).
    public static let spooled = SubmissionReason("spooled")
    /// The translation to ACS refused the message (sender policy, limits).
    public static let translationRefused = SubmissionReason("translation_refused")
    /// ACS accepted the message (202, or polled to Succeeded).
    public static let acsAccepted = SubmissionReason("acs_accepted")
    /// ACS's operation ended Failed or Canceled.
    public static let acsFailed = SubmissionReason("acs_failed")
    /// ACS refused the request (4xx with an ACS error).
    public static let acsRejected = SubmissionReason("acs_rejected")
    /// ACS refused the gateway's credentials (401/403).
    public static let acsAuthentication = SubmissionReason("acs_authentication")
    /// No credentials could be obtained (token endpoint, unreadable secret).
    public static let acsNoCredentials = SubmissionReason("acs_no_credentials")
    /// Still throttled (429) when the retry budget ran out.
    public static let acsThrottled = SubmissionReason("acs_throttled")
    /// 5xx, timeouts or network failures until the retry budget ran out.
    public static let acsUnavailable = SubmissionReason("acs_unavailable")
}

enum DeliveryAudit {
    /// The reason and `acs.*` fields for one send's outcome. `operationID` is named whenever ACS was asked.
    static func describe(_ result: ACSSendResult, operationID: String) -> (SubmissionReason, [AuditField]) {
        var fields: [AuditField] = []
        func add(_ key: StaticString, _ value: String?) {
            if let value { fields.append(AuditField(key, value)) }
        }
        let reason: SubmissionReason
        switch result.outcome {
        case .accepted(let id, let status):
            reason = .acsAccepted
            add("acs.operation_id", id)
            add("acs.status", status)
        case .failed(let id, let status, let code, _):
            reason = .acsFailed
            add("acs.operation_id", id)
            add("acs.status", status)
            add("acs.error_code", code)
        case .rejected(_, let code, _):
            reason = .acsRejected
            add("acs.operation_id", result.attempts > 0 ? operationID : nil)
            add("acs.error_code", code)
        case .authenticationFailed(_, let code, _):
            reason = .acsAuthentication
            add("acs.operation_id", result.attempts > 0 ? operationID : nil)
            add("acs.error_code", code)
        case .throttled:
            reason = .acsThrottled
            add("acs.operation_id", result.attempts > 0 ? operationID : nil)
        case .unavailable:
            reason = .acsUnavailable
            add("acs.operation_id", result.attempts > 0 ? operationID : nil)
        case .notAuthenticated:
            reason = .acsNoCredentials
        }
        add("acs.request_id", result.requestID)
        add("acs.attempts", "\(result.attempts)")
        return (reason, fields)
    }

    /// The field naming the translation rule that refused a message (also when the outbox keeps it anyway).
    static func rejection(_ rejection: TranslationRejection?) -> [AuditField] {
        rejection.map { [AuditField("acs.rejection", $0.reason.rawValue)] } ?? []
    }
}

extension MessageTranslator {
    /// The translation, or nil after answering `completion` with the refusal: nothing goes to ACS, the reply
    /// is the table's 5xx, and the connection's audit line names the rule (`acs.rejection`).
    func translation(
        of message: ReceivedMessage, logger: Logger, orAnswer completion: (SubmissionResult) -> Void
    ) -> TranslatedEmail? {
        switch translate(message, logger: logger) {
        case .success(let translated):
            return translated
        case .failure(let rejection):
            completion(
                SubmissionResult(
                    reply: ACSReplyMapping.reply(for: rejection), reason: .translationRefused,
                    auditFields: DeliveryAudit.rejection(rejection)))
            return nil
        }
    }
}
