import ACSClient
import ACSEmail
import SMTPProtocol

/// The SMTP reply for each ACS outcome and each translation refusal — one table, each row tested
/// (`ACSReplyMappingTests`). The SMTP server knows only the reply; ACS's vocabulary stops here.
///
/// | ACS outcome | SMTP reply |
/// |---|---|
/// | 202 accepted (or poll Succeeded) | `250 2.0.0 OK queued as <operation-id>` |
/// | poll Failed with a recipient/suppression code | `550 5.1.0` with ACS's code and message |
/// | poll Failed otherwise, or Canceled | `554 5.0.0` with ACS's code and message |
/// | 400 `InvalidEmailAddress` | `550 5.1.3` |
/// | 400 `InvalidSenderUserName`, 404 `DomainNotLinked` (or 403 with it) | `553 5.1.7` |
/// | 400 about an attachment | `554 5.6.0` |
/// | 413, or `RequestEntityTooLarge` | `552 5.3.4` |
/// | other 4xx | `554 5.0.0` with ACS's code and message |
/// | 401/403 | `451 4.7.0` (the operator must act; the client retries) |
/// | 429 after the retry budget | `451 4.7.1 throttled by ACS, retry in N s` |
/// | 5xx, timeout, network failure after retries | `451 4.4.1` (no answer) / `451 4.4.0` (ACS error) |
/// | no credentials could be obtained | `451 4.7.0` |
///
/// | translation: sender not mappable | `550 5.7.1` (X.7.1 delivery not authorized) |
/// | translation: request too large | `552 5.3.4` (X.3.4 message too big, as SIZE overflows, RFC 1870) |
/// | translation: attachment type | `554 5.6.0` (X.6.0 media error) |
/// | translation: no recipients | `554 5.1.0` (X.1.0 other address status) |
/// | translation: too many recipients | `550 5.5.3` (X.5.3 too many recipients) |
///
/// Texts carry ACS's error code and message (which never contain our secrets) on one line.
public enum ACSReplyMapping {
    /// The reply for a message the translation refused: permanent, since the same message would be refused
    /// again. An unknown reason (a rule added later) is `554 5.0.0`.
    public static func reply(for rejection: TranslationRejection) -> SMTPReply {
        let (code, enhanced): (Int, EnhancedStatusCode) =
            switch rejection.reason {
            case .senderNotMappable: (550, EnhancedStatusCode(5, 7, 1))
            case .requestTooLarge: (552, EnhancedStatusCode(5, 3, 4))
            case .attachmentTypeRejected: (554, EnhancedStatusCode(5, 6, 0))
            case .noRecipients: (554, EnhancedStatusCode(5, 1, 0))
            case .tooManyRecipients: (550, EnhancedStatusCode(5, 5, 3))
            default: (554, EnhancedStatusCode(5, 0, 0))
            }
        return SMTPReply(code, enhanced, rejection.text)
    }

    public static func reply(for outcome: ACSSendOutcome) -> SMTPReply {
        switch outcome {
        case .accepted(let operationID, _):
            return SMTPReply(250, EnhancedStatusCode(2, 0, 0), "OK queued as \(operationID)")
        case .failed(_, let status, let code, let message):
            let text = "ACS \(status.lowercased()) the message: \(describe(code, message))"
            if status.lowercased() == "failed", let code, isRecipientProblem(code) {
                return SMTPReply(550, EnhancedStatusCode(5, 1, 0), text)
            }
            return SMTPReply(554, EnhancedStatusCode(5, 0, 0), text)
        case .rejected(let status, let code, let message):
            let text = "ACS refused the message (HTTP \(status)): \(describe(code, message))"
            let lowered = (code ?? "").lowercased()
            if status == 413 || lowered == "requestentitytoolarge" {
                return SMTPReply(552, EnhancedStatusCode(5, 3, 4), text)
            }
            if lowered == "invalidemailaddress" {
                return SMTPReply(550, EnhancedStatusCode(5, 1, 3), text)
            }
            if lowered == "invalidsenderusername" || lowered == "domainnotlinked" {
                return SMTPReply(553, EnhancedStatusCode(5, 1, 7), text)
            }
            if lowered.contains("attachment") || (message ?? "").lowercased().contains("attachment") {
                return SMTPReply(554, EnhancedStatusCode(5, 6, 0), text)
            }
            return SMTPReply(554, EnhancedStatusCode(5, 0, 0), text)
        case .authenticationFailed(let status, let code, let message):
            if (code ?? "").lowercased() == "domainnotlinked" {
                return SMTPReply(553, EnhancedStatusCode(5, 1, 7), "ACS refused the sender: \(describe(code, message))")
            }
            return SMTPReply(
                451, EnhancedStatusCode(4, 7, 0),
                "ACS refused the gateway's credentials (HTTP \(status)); the operator has been alerted, try again later"
            )
        case .throttled(let retryAfter):
            // Saturating: a hint is only a hint, and no value may trap the daemon.
            let hint =
                retryAfter.flatMap { $0.isFinite ? ", retry in \(Int(min(max($0, 0), 86_400).rounded(.up))) s" : nil }
                ?? ""
            return SMTPReply(451, EnhancedStatusCode(4, 7, 1), "Throttled by ACS\(hint)")
        case .unavailable(let status, let detail):
            if status == nil {
                return SMTPReply(451, EnhancedStatusCode(4, 4, 1), "ACS did not answer (\(detail)), try again later")
            }
            return SMTPReply(451, EnhancedStatusCode(4, 4, 0), "ACS is unavailable (\(detail)), try again later")
        case .notAuthenticated:
            return SMTPReply(
                451, EnhancedStatusCode(4, 7, 0), "The gateway could not authenticate to ACS, try again later")
        }
    }

    /// The likely cause of an authentication failure, for the operator's error log line.
    public static func likelyCause(status: Int, code: String?, message: String?) -> String {
        let text = "\(code ?? "") \(message ?? "")".lowercased()
        if text.contains("content-sha256") || text.contains("content hash") {
            return "the request body was altered in transit (a proxy?)"
        }
        if text.contains("time") || text.contains("date") || text.contains("drift") {
            return "the clock is off: check NTP (x-ms-date must be within about 15 minutes)"
        }
        if status == 403 {
            return "the identity lacks a role on the ACS resource (e.g. Contributor) or the sender domain is not linked"
        }
        return "wrong or rotated access key / connection string, or a token for the wrong tenant or audience"
    }

    private static func isRecipientProblem(_ code: String) -> Bool {
        let lowered = code.lowercased()
        return lowered.contains("recipient") || lowered.contains("suppressed") || lowered.contains("address")
    }

    private static func describe(_ code: String?, _ message: String?) -> String {
        [code, message].compactMap { $0?.isEmpty == false ? $0 : nil }.joined(separator: ": ")
            .nonEmpty ?? "no detail given"
    }
}

extension String {
    fileprivate var nonEmpty: String? { isEmpty ? nil : self }
}
