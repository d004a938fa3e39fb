import ACSEmail
import Foundation
import MailParser

/// MailParser followed by the translation to the ACS request, as the gateway runs them on every message.
/// Invariants: the request is valid JSON within the size limit, with a non-empty subject and a body; or the
/// message is refused cleanly: a reason and one line of text for the reply.
func fuzzMailToACS(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let mail = MailParser().parse(Array(UnsafeBufferPointer(start: data, count: size)))
    var envelope = Envelope(headersOf: mail)
    if envelope.recipients.isEmpty { envelope.recipients = ["fallback@example.org"] }
    var policy = TranslationPolicy(senderAddress: "DoNotReply@gateway.example", verifiedDomains: ["example.com"])
    policy.maxRequestSize = 1 << 20
    switch ACSTranslation.translateWithDetails(mail, envelope: envelope, policy: policy) {
    case .success(let translated):
        precondition(translated.requestBody.count <= policy.maxRequestSize, "request over the size limit")
        precondition(
            (try? JSONSerialization.jsonObject(with: Data(translated.requestBody))) is [String: Any],
            "the request body is not a JSON object")
        let content = translated.message.content
        precondition(!content.subject.isEmpty, "empty subject")
        precondition(content.plainText?.isEmpty == false || content.html?.isEmpty == false, "no body")
    case .failure(let rejection):
        // The reply code is the gateway's (ACSReplyMapping); the rejection names its rule and one line of text.
        precondition(
            !rejection.reason.rawValue.isEmpty && !rejection.text.isEmpty
                && !rejection.text.unicodeScalars.contains(where: { $0 == "\r" || $0 == "\n" }),
            "unclean refusal: \(rejection)")
    }
    return 0
}
