import Logging
import SMTPProtocol

/// What the audit line of a message needs from the moment its data ended: kept by the connection while the
/// submitter works, so that the line can be written however the message ends (answered, timed out, cut off by
/// the shutdown).
struct AuditedMessage: Sendable {
    var id: String
    var envelope: Envelope
    var size: Int
    /// "DATA" or "BDAT".
    var transfer: String
    /// Monotonic seconds at the end of DATA / BDAT LAST.
    var startedAt: Double
    var messageIDHeader: String?
    /// Only scanned when the logger's level is debug or trace: subjects are content.
    var subject: String?
}

/// Facts of the session a message arrived on, beyond the session id and client the logger already carries.
struct AuditedSession: Sendable, Hashable {
    /// The TLS version and cipher, nil when the session is in plaintext.
    var tls: TLSSessionInfo?
    /// The user the client authenticated as (a name from the users file), nil when it did not.
    var authenticatedUser: String?
    /// The local user who submitted through the local socket, as the kernel identified it; nil over the network.
    var localPeer: LocalPeer?
}

/// The one audit line per message (`msg=message`): level info for 2xx, notice otherwise. Never the body,
/// never AUTH data; the subject only at debug level. The keys are the README's "The audit line" table.
struct AuditLine {
    var message: AuditedMessage
    var session: AuditedSession
    /// The reply the client got (or would have got) and the submitter's facts.
    var result: SubmissionResult
    /// Seconds from the end of the data to the reply.
    var duration: Double
    /// False when the client had gone before the outcome was known.
    var replySent = true

    var level: Logger.Level { result.reply.isPositive ? .info : .notice }

    var metadata: Logger.Metadata {
        var metadata: Logger.Metadata = [
            "smtp.message_id": "\(message.id)",
            "smtp.mail_from": "\(message.envelope.reversePath)",
            "smtp.rcpt_count": "\(message.envelope.forwardPaths.count)",
            "smtp.size": "\(message.size)",
            "smtp.transfer": "\(message.transfer)",
            "smtp.reply": "\(result.reply)",
            "smtp.tls": "\(session.tls?.version ?? "none")",
            "duration_ms": "\(Int((duration * 1000).rounded()))",
        ]
        if let cipher = session.tls?.cipher { metadata["smtp.tls_cipher"] = "\(cipher)" }
        if let user = session.authenticatedUser { metadata["smtp.auth_user"] = "\(user)" }
        if let peer = session.localPeer {
            metadata["smtp.local_user"] = "\(peer.user)"
            metadata["smtp.local_uid"] = "\(peer.uid)"
        }
        if let header = message.messageIDHeader { metadata["mail.message_id"] = "\(header)" }
        if let subject = message.subject { metadata["mail.subject"] = "\(subject)" }
        if !replySent { metadata["smtp.reply_sent"] = "false" }
        metadata.merge(Self.submitterFields(result)) { _, submitter in submitter }
        return metadata
    }

    /// What only the submitter knows: the bounded reason and its audit fields.
    static func submitterFields(_ result: SubmissionResult) -> Logger.Metadata {
        var metadata: Logger.Metadata = ["reason": "\(result.reason)"]
        for field in result.auditFields { metadata[field.key] = "\(field.value)" }
        return metadata
    }

    func write(to logger: Logger) {
        logger.log(level: level, "message", metadata: metadata)
    }
}
