import ACSEmail
import ArgumentParser

/// The translation policy flags shared by `serve` and `convert`, so both produce the same request.
struct TranslationOptions: ParsableArguments {
    @Option(help: "MailFrom address on the ACS-linked domain, used when a message's sender is not on a verified domain.")
    var senderAddress: String?

    @Option(name: .customLong("verified-domain"),
            help: "A domain verified on the ACS resource; its senders are kept as they are (repeatable).")
    var verifiedDomains: [String] = []

    @Option(help: "ACS API version: 2025-09-01 (inline attachments) or 2023-03-31.")
    var apiVersion: String = ACSAPIVersion.v2025_09_01.rawValue

    @Option(help: "Attachments of a type ACS does not list: send (ACS decides), reject (554) or suppress.")
    var attachmentTypes: String = AttachmentTypePolicy.send.rawValue

    @Option(help: "Subject used when a message has none.")
    var subjectPlaceholder: String = TranslationPolicy().subjectPlaceholder

    @Option(help: "Body used when a message has no text or HTML body.")
    var emptyBodyPlaceholder: String = TranslationPolicy().emptyBodyPlaceholder

    @Option(name: .customLong("forward-header"), help: "Also forward this header to ACS (repeatable).")
    var forwardHeaders: [String] = []

    @Option(name: .customLong("drop-header"), help: "Never forward this header to ACS (repeatable).")
    var dropHeaders: [String] = []

    @Flag(help: "Ask ACS not to track opens and clicks (userEngagementTrackingDisabled).")
    var disableEngagementTracking = false

    @Option(help: "Largest ACS request in octets of JSON (ACS accepts 10 MB).")
    var maxRequestSize: Int = TranslationPolicy().maxRequestSize

    /// Whether the operator said which senders ACS may use.
    var hasSenderPolicy: Bool { senderAddress != nil || !verifiedDomains.isEmpty }

    func policy() throws -> TranslationPolicy {
        var policy = TranslationPolicy()
        guard let version = ACSAPIVersion(rawValue: apiVersion) else {
            throw ValidationError("--api-version must be 2025-09-01 or 2023-03-31")
        }
        guard let attachmentPolicy = AttachmentTypePolicy(rawValue: attachmentTypes) else {
            throw ValidationError("--attachment-types must be send, reject or suppress")
        }
        if let senderAddress, !senderAddress.contains("@") {
            throw ValidationError("--sender-address \(senderAddress) is not an address (local@domain)")
        }
        guard maxRequestSize > 0 else { throw ValidationError("--max-request-size must be positive") }
        policy.apiVersion = version
        policy.senderAddress = senderAddress
        policy.verifiedDomains = verifiedDomains
        policy.attachmentTypePolicy = attachmentPolicy
        policy.subjectPlaceholder = subjectPlaceholder
        policy.emptyBodyPlaceholder = emptyBodyPlaceholder
        policy.headerAllowList = forwardHeaders
        policy.headerDenyList = dropHeaders
        policy.userEngagementTrackingDisabled = disableEngagementTracking ? true : nil
        policy.maxRequestSize = maxRequestSize
        return policy
    }
}
