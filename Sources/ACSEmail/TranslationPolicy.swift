import struct SMTPProtocol.LocalRecipients

/// What an attachment whose type ACS does not list (docs/acs-email-api.md §7.1) becomes, after the type
/// inferred from its file extension has been tried.
public enum AttachmentTypePolicy: String, Sendable, Hashable, CaseIterable, Codable {
    /// Send the declared type and let ACS have the last word; its 400 becomes `554 5.6.0` naming the
    /// attachment (``TranslationRejection/attachmentRejectedByACS(_:)``). The default: the §7.1 list is the
    /// documented one, but whether ACS refuses every other type is an inference (§7.1), so the gateway does
    /// not refuse mail that ACS might accept.
    case send
    /// Refuse the message with `554 5.6.0` naming the attachment, before calling ACS.
    case reject
    /// Send with `x-ms-acsemail-suppress-invalid-attachment: true`, so ACS drops the parts it refuses and
    /// delivers the rest (§6). Only when dropping parts silently is acceptable to the operator.
    case suppress
}

/// Every knob of the translation, each with its default and the reason for it.
///
/// The defaults are safe rather than permissive: with neither ``senderAddress`` nor ``verifiedDomains``
/// set, every message is rejected with `550 5.7.1`, because ACS would refuse any sender anyway.
public struct TranslationPolicy: Sendable, Hashable {
    /// The API version the request is built for. Default `2025-09-01`: the latest GA and the only one with
    /// inline attachments (§1.2). With `2023-03-31`, `contentId` is never sent and inline parts travel as
    /// regular attachments: the image reaches the recipient as a file rather than being lost or bouncing
    /// the message; the HTML's `cid:` reference then shows as a missing image.
    public var apiVersion: ACSAPIVersion = .v2025_09_01

    /// A MailFrom address on the ACS-linked domain, used when the message's own sender is not on a verified
    /// domain. Default nil: the operator must say which address may be used (§2.2 "Sender").
    public var senderAddress: String?

    /// Domains verified on and linked to the ACS resource; a `From`, `Sender` or envelope sender on one of
    /// them is sent as is (``SenderPolicy``). Default empty: ACS verification is per resource. `*` matches every
    /// domain (dry runs without ACS only).
    public var verifiedDomains: [String] = []

    /// The subject used when the message has none or a blank one. Default `(no subject)`: ACS requires a
    /// non-empty subject (§2.2 "Content"), and this is the text mail clients show for a missing subject.
    public var subjectPlaceholder: String = "(no subject)"

    /// The `plainText` used when the message has no non-blank text or HTML body (e.g. only attachments).
    /// Default `(no message body)`: ACS requires a body (§2.2 "Content"); a short neutral text is least
    /// surprising to the recipient.
    public var emptyBodyPlaceholder: String = "(no message body)"

    /// What happens to attachments whose type ACS does not list. Default ``AttachmentTypePolicy/send``
    /// (see there for why).
    public var attachmentTypePolicy: AttachmentTypePolicy = .send

    /// Header names (or `Prefix-*` patterns) forwarded in addition to ``HeaderPolicy/builtInAllowed``.
    /// Default empty. The built-in deny-list still applies: it protects fields the body represents.
    public var headerAllowList: [String] = []

    /// Header names (or `Prefix-*` patterns) never forwarded, in addition to ``HeaderPolicy/builtInDenied``;
    /// wins over every allow-list. Default empty. Use it for internal `X-*` headers that must not leave.
    public var headerDenyList: [String] = []

    /// `userEngagementTrackingDisabled` for every message. Default nil (omitted): the resource's tracking
    /// setting applies, as it does for mail sent any other way (§2.1).
    public var userEngagementTrackingDisabled: Bool?

    /// The largest encoded request in bytes; larger messages get `552 5.3.4` stating both sizes.
    /// Default 10,000,000: ACS limits the whole request to 10 MB including base64 attachments, and 10⁷ is the
    /// smaller reading of "MB" (§2.2 "Size", §7.2, §9.4). Raise it when ACS support granted 30 MB.
    public var maxRequestSize: Int = 10_000_000

    /// The most recipients (to + cc + bcc) in one request. Default 50, ACS's documented limit (§2.2); the SMTP
    /// layer answers 452 before this is reached, so this is a safety net giving `550 5.5.3`.
    public var maxRecipients: Int = 50

    /// Local names in `To` and `Cc` (`root`, `www-data@localhost`) stand for their aliases, so an aliased
    /// envelope recipient keeps its `To`/`Cc` place and display name. nil: header addresses are taken as written.
    public var localRecipients: LocalRecipients?

    public init(
        apiVersion: ACSAPIVersion = .v2025_09_01,
        senderAddress: String? = nil,
        verifiedDomains: [String] = [],
        subjectPlaceholder: String = "(no subject)",
        emptyBodyPlaceholder: String = "(no message body)",
        attachmentTypePolicy: AttachmentTypePolicy = .send,
        headerAllowList: [String] = [],
        headerDenyList: [String] = [],
        userEngagementTrackingDisabled: Bool? = nil,
        maxRequestSize: Int = 10_000_000,
        maxRecipients: Int = 50
    ) {
        self.apiVersion = apiVersion
        self.senderAddress = senderAddress
        self.verifiedDomains = verifiedDomains
        self.subjectPlaceholder = subjectPlaceholder
        self.emptyBodyPlaceholder = emptyBodyPlaceholder
        self.attachmentTypePolicy = attachmentTypePolicy
        self.headerAllowList = headerAllowList
        self.headerDenyList = headerDenyList
        self.userEngagementTrackingDisabled = userEngagementTrackingDisabled
        self.maxRequestSize = maxRequestSize
        self.maxRecipients = maxRecipients
    }
}
