import ACSClient
import ACSEmail
import Foundation
import Logging
import MailParser
import SMTPServer
import Spool

/// Sends bounces (RFC 3464 content, built by ``Bounce``) through ACS itself, from the gateway's sender
/// address, for messages whose client already heard 250 and that ACS then refused or failed.
///
/// Loop guards: no bounce to the null sender `<>`, none for a message that is itself a bounce or an
/// auto-reply, none to the gateway's own sender address, none when `delivery.bounce` is `none`, and none
/// when no sender address is configured (a bounce from an unverified domain would only be refused).
final class Bouncer: Sendable {
    let recipientPolicy: BounceRecipient
    let senderAddress: String?
    let hostname: String
    let apiVersion: ACSAPIVersion

    init(recipientPolicy: BounceRecipient, senderAddress: String?, hostname: String, apiVersion: ACSAPIVersion) {
        self.recipientPolicy = recipientPolicy
        self.senderAddress = senderAddress
        self.hostname = hostname
        self.apiVersion = apiVersion
    }

    /// A bounce ready to send, or why there is none.
    enum Plan {
        case send(recipient: String, body: [UInt8])
        case none(reason: String)
    }

    /// The bounce for a failed message, or the loop guard or policy that forbids one.
    func plan(
        messageID: String, envelopeSender: String, recipients: [String], receivedAt: Date, message: [UInt8],
        failure: SpoolFailure
    ) -> Plan {
        guard let senderAddress else { return .none(reason: "no senders.sender_address to send a bounce from") }
        let recipient: String
        switch recipientPolicy {
        case .none:
            return .none(reason: "delivery.bounce is none")
        case .admin(let address):
            recipient = address
        case .sender:
            recipient = envelopeSender
        }
        // Bounce reads only the header block of what it is given, and caps what it quotes.
        if let suppressed = Bounce.suppression(
            envelopeSender: envelopeSender, headers: message, gatewaySender: senderAddress)
        {
            return .none(reason: "loop guard: " + suppressed.rawValue.replacingOccurrences(of: "-", with: " "))
        }
        let report = DeliveryFailureReport(
            reportingMTA: hostname, messageID: messageID, originalSender: envelopeSender, recipients: recipients,
            arrivalDate: receivedAt, status: failure.status, diagnostic: failure.diagnostic,
            originalHeaders: message, originalSubject: MailParser().parse(message).subject)
        let email = Bounce.message(for: report, senderAddress: senderAddress, bounceRecipient: recipient)
        return .send(recipient: recipient, body: ACSJSONEncoder(apiVersion: apiVersion).encode(email))
    }

    /// A fresh operation id for a bounce: a UUIDv7, kept in the spool record before the first attempt so a
    /// retried bounce is the same operation too.
    static func operationID() -> String { Identifiers.messageID() }
}
