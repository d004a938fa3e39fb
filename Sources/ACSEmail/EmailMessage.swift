import MailParser

// The ACS Email REST request model, field for field as in the 2025-09-01 OpenAPI spec
// (docs/acs-email-api.md §2.1). Names of the stored properties are the JSON property names, so the
// model, the encoder (ACSJSONEncoder) and the spec can be read side by side.

/// The ACS Email REST API version a request is built for (docs/acs-email-api.md §1.2).
///
/// Only the two GA versions are offered: previews have other body shapes. The version changes one thing
/// in the request body: `attachments[].contentId` exists in 2025-09-01 but not in 2023-03-31.
public enum ACSAPIVersion: String, Sendable, Hashable, CaseIterable, Codable {
    // The underscores keep the dated version readable, as the SDKs spell it (`V2025_09_01` in .NET).
    // swift-format-ignore: AlwaysUseLowerCamelCase
    /// GA, the latest version and the SDK default; supports inline attachments (`contentId`).
    case v2025_09_01 = "2025-09-01"
    // swift-format-ignore: AlwaysUseLowerCamelCase
    /// The first GA version; it has no `contentId`, so inline parts are sent as regular attachments.
    case v2023_03_31 = "2023-03-31"

    /// Whether `attachments[].contentId` may be sent (docs/acs-email-api.md §1.2 table).
    public var supportsContentID: Bool {
        self == .v2025_09_01
    }
}

/// `EmailMessage`: the body of `POST /emails:send` (docs/acs-email-api.md §2.1).
///
/// `senderAddress`, `content` and `recipients` are required by the spec; every other property is optional
/// and `nil` means "absent": the encoder omits it rather than writing `null` (§2.3).
public struct EmailMessage: Sendable, Hashable, Codable {
    /// A MailFrom address on a domain linked to the ACS resource (§2.2 "Sender").
    public var senderAddress: String
    public var content: EmailContent
    public var recipients: EmailRecipients
    public var attachments: [EmailAttachment]?
    /// Custom headers (§6). A JSON object: the encoder writes its keys sorted, for a stable byte output.
    public var headers: [String: String]?
    public var replyTo: [EmailAddress]?
    /// Disables open/click tracking for this message when it is enabled on the resource.
    public var userEngagementTrackingDisabled: Bool?

    public init(
        senderAddress: String,
        content: EmailContent,
        recipients: EmailRecipients,
        attachments: [EmailAttachment]? = nil,
        headers: [String: String]? = nil,
        replyTo: [EmailAddress]? = nil,
        userEngagementTrackingDisabled: Bool? = nil
    ) {
        self.senderAddress = senderAddress
        self.content = content
        self.recipients = recipients
        self.attachments = attachments
        self.headers = headers
        self.replyTo = replyTo
        self.userEngagementTrackingDisabled = userEngagementTrackingDisabled
    }
}

/// `EmailContent`: the subject and the bodies (§2.1). ACS requires a non-empty subject and at least one
/// non-empty body (§2.2 "Content").
public struct EmailContent: Sendable, Hashable, Codable {
    public var subject: String
    public var plainText: String?
    public var html: String?

    public init(subject: String, plainText: String? = nil, html: String? = nil) {
        self.subject = subject
        self.plainText = plainText
        self.html = html
    }
}

/// `EmailRecipients` (§2.1). `to` is required by the schema and is sent as `[]` when empty, which ACS
/// accepts as long as `cc` or `bcc` has an address (§2.2 "Recipients").
public struct EmailRecipients: Sendable, Hashable, Codable {
    public var to: [EmailAddress]
    public var cc: [EmailAddress]?
    public var bcc: [EmailAddress]?

    public init(to: [EmailAddress], cc: [EmailAddress]? = nil, bcc: [EmailAddress]? = nil) {
        self.to = to
        self.cc = cc
        self.bcc = bcc
    }

    /// The number of addresses ACS counts against its 50-recipient limit (to + cc + bcc, §2.2).
    public var count: Int {
        to.count + (cc?.count ?? 0) + (bcc?.count ?? 0)
    }
}

/// `EmailAddress` (§2.1): an address and an optional display name.
public struct EmailAddress: Sendable, Hashable, Codable {
    public var address: String
    public var displayName: String?

    public init(address: String, displayName: String? = nil) {
        self.address = address
        self.displayName = displayName
    }
}

/// `EmailAttachment` (§2.1, §7). `contentInBase64` is standard base64 with padding and no line breaks.
///
/// A translated attachment keeps its octets, not their base64: ``ACSJSONEncoder`` encodes them straight into
/// the request, so a large attachment is never held as a base64 string beside the request that contains it.
/// The octets are those of the parsed message, shared, not copied (for a base64 part, its encoded octets,
/// re-encoded as they are decoded). `contentInBase64` still reads (and sets)
/// the base64 text, and equality, hashing and `Codable` see only that text.
public struct EmailAttachment: Sendable, Hashable, Codable {
    /// The file name shown to the recipient, e.g. `report.pdf`.
    public var name: String
    /// A MIME type without parameters, lower-case, e.g. `application/pdf` (§7.1 recommendation).
    public var contentType: String
    /// The content as base64; computed on each read for an attachment that holds octets.
    public var contentInBase64: String {
        get {
            switch content {
            case .base64(let text): text
            case .octets(let octets): Base64.encode(octets)
            case .encoded(let encoded): Base64.encode(encoded.decoded())
            }
        }
        set { content = .base64(newValue) }
    }
    /// The Content-ID without angle brackets; makes this an inline attachment referenced as `cid:VALUE`.
    /// Only 2025-09-01 has it: the encoder never writes it for 2023-03-31 (§1.2).
    public var contentId: String?

    /// The content in the form it was given.
    enum Content: Sendable {
        /// Base64 text, as decoded from a request or given by a caller.
        case base64(String)
        /// The octets themselves, base64-encoded only when written.
        case octets([UInt8])
        /// Base64 as the parsed message has it, re-encoded (canonically) only when written.
        case encoded(Base64Content)
    }

    var content: Content

    public init(name: String, contentType: String, contentInBase64: String, contentId: String? = nil) {
        self.name = name
        self.contentType = contentType
        self.content = .base64(contentInBase64)
        self.contentId = contentId
    }

    /// An attachment of `octets`, which are base64-encoded only when the request is written.
    public init(name: String, contentType: String, octets: [UInt8], contentId: String? = nil) {
        self.name = name
        self.contentType = contentType
        self.content = .octets(octets)
        self.contentId = contentId
    }

    init(name: String, contentType: String, content: Content, contentId: String?) {
        self.name = name
        self.contentType = contentType
        self.content = content
        self.contentId = contentId
    }

    private enum CodingKeys: String, CodingKey {
        case name, contentType, contentInBase64, contentId
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.init(
            name: try container.decode(String.self, forKey: .name),
            contentType: try container.decode(String.self, forKey: .contentType),
            contentInBase64: try container.decode(String.self, forKey: .contentInBase64),
            contentId: try container.decodeIfPresent(String.self, forKey: .contentId))
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encode(contentType, forKey: .contentType)
        try container.encode(contentInBase64, forKey: .contentInBase64)
        try container.encodeIfPresent(contentId, forKey: .contentId)
    }

    public static func == (lhs: EmailAttachment, rhs: EmailAttachment) -> Bool {
        guard lhs.name == rhs.name, lhs.contentType == rhs.contentType, lhs.contentId == rhs.contentId else {
            return false
        }
        if case .octets(let left) = lhs.content, case .octets(let right) = rhs.content {
            return left == right
        }
        return lhs.contentInBase64 == rhs.contentInBase64
    }

    public func hash(into hasher: inout Hasher) {
        hasher.combine(name)
        hasher.combine(contentType)
        hasher.combine(contentInBase64)
        hasher.combine(contentId)
    }
}
