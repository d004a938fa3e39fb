import ACSEmail
import Foundation
import Logging
import SMTPProtocol
import SMTPServer
import Testing

@testable import ACSClient
@testable import Gateway

/// What the final-status follow-up keeps of a message ACS accepted while it polls (up to `acs.poll_deadline`
/// after the 250): enough for a bounce, not the message.
@Suite struct FinalStatusFollowUpTests {
    /// A transport that never answers: the polls these tests schedule must not reach anything.
    private struct SilentTransport: HTTPTransport {
        func perform(
            _ request: HTTPRequest, completion: @escaping @Sendable (Result<HTTPResponse, HTTPTransportError>) -> Void
        ) {}
    }

    private static let headers = "From: a@example.com\r\nTo: b@example.org\r\nSubject: big\r\n"

    private func message(body: Int) -> ReceivedMessage {
        let envelope = Envelope(
            reversePath: .mailbox(Mailbox(localPart: "a", domain: "example.com")), mailParameters: ESMTPParameters([]),
            forwardPaths: [.mailbox(Mailbox(localPart: "b", domain: "example.org"))])
        return ReceivedMessage(
            id: Identifiers.messageID(), receivedAt: Date(timeIntervalSince1970: 1_800_000_000),
            envelope: envelope,
            data: Array((Self.headers + "\r\n").utf8) + Array(repeating: UInt8(ascii: "x"), count: body),
            session: SessionInfo(
                sessionID: "s1", clientAddress: SocketAddress(ip: "127.0.0.1", port: 4000)!, heloName: "client.example",
                transfer: "DATA"))
    }

    private func followUp() -> FinalStatusFollowUp {
        let configuration = ACSClientConfiguration(endpoint: ACSEndpoint("https://contoso.communication.azure.com")!)
        let key = AccessKey(
            base64: "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8gISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+Pw==")!
        let client = ACSEmailClient(
            configuration: configuration, authenticator: HMACAuthenticator(key: key), transport: SilentTransport())
        let bouncer = Bouncer(
            recipientPolicy: .sender, senderAddress: "DoNotReply@example.com", hostname: "gateway.example",
            apiVersion: .v2025_09_01)
        return FinalStatusFollowUp(client: client, bouncer: bouncer, pollDeadline: 120, logger: Logger(label: "test"))
    }

    @Test func followUp_keepsTheHeaderBlock_notTheMessage() {
        var data: [UInt8] = []
        do {
            let received = message(body: 1 << 20)
            data = received.data
            followUp().follow(received, operationID: received.id)  // its first poll is 5 s away
        }
        // Writing to the octets copies them when anything else still holds their storage.
        let before = data.withUnsafeBufferPointer { UInt(bitPattern: $0.baseAddress) }
        let after = data.withUnsafeMutableBufferPointer { buffer in
            buffer[0] = UInt8(ascii: "f")
            return UInt(bitPattern: buffer.baseAddress)
        }
        #expect(before == after, "the follow-up holds the message's octets")
    }

    @Test func followedMessage_hasWhatABounceReads() {
        let received = message(body: 100)
        let followed = FollowedMessage(received)
        #expect(followed.headers == Array(Self.headers.utf8))
        #expect(followed.id == received.id)
        #expect(followed.envelopeSender == "a@example.com")
        #expect(followed.recipients == ["b@example.org"])
        #expect(followed.receivedAt == received.receivedAt)
    }
}
