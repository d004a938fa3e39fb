/// One header field as it appeared in a header block, in wire order.
///
/// Duplicates are kept (RFC 5322 §3.6 allows some fields to repeat, and broken
/// mailers repeat the others); callers decide which occurrence wins.
public struct HeaderField: Sendable, Hashable {
    /// The field name exactly as written (case preserved, surrounding whitespace removed).
    public var name: String
    /// The unfolded field body (RFC 5322 §2.2.3) as raw octets, without RFC 2047 decoding.
    /// Leading and trailing whitespace is removed.
    public var rawValue: [UInt8]
    /// The unfolded field body with RFC 2047 encoded words decoded, as UTF-8.
    /// Raw 8-bit octets are read as UTF-8 when valid (RFC 6532), else as windows-1252.
    public var value: String

    /// A field with the given name, raw unfolded body and decoded display value.
    public init(name: String, rawValue: [UInt8], value: String) {
        self.name = name
        self.rawValue = rawValue
        self.value = value
    }
}

/// One mailbox from an address-list header (RFC 5322 §3.4).
///
/// Groups are flattened: `Friends: a@x, b@y;` yields two addresses and the
/// group name is dropped; an empty group (`undisclosed-recipients:;`) yields none.
public struct MailAddress: Sendable, Hashable {
    /// The display name, unquoted and RFC 2047-decoded; `nil` when absent or blank.
    public var displayName: String?
    /// The addr-spec (`local@domain`), without angle brackets, comments or obsolete route.
    public var address: String

    /// A mailbox; `displayName` is `nil` when the header gave none.
    public init(displayName: String? = nil, address: String) {
        self.displayName = displayName
        self.address = address
    }
}

/// A soft problem found while parsing. Parsing never throws; it reports these beside the result.
public struct MailDiagnostic: Sendable, Hashable {
    /// A stable kebab-case identifier, e.g. `base64-missing-padding`. Safe to match on.
    public var code: String
    /// A human-readable explanation for logs. Not stable.
    public var message: String
    /// The part the problem belongs to (top-level numbering, see ``MIMEPart/partIndex``).
    /// For a problem inside an embedded message this is the index of the outermost
    /// `message/rfc822` part that contains it. `nil` for message-wide problems.
    public var partIndex: Int?

    /// A diagnostic with a stable `code`, a human `message` and the part it concerns.
    public init(code: String, message: String, partIndex: Int? = nil) {
        self.code = code
        self.message = message
        self.partIndex = partIndex
    }
}

/// One MIME entity (RFC 2045 §2.4): a header block plus either content or child entities.
///
/// A value type tree. Its depth is bounded by ``MailParser/Limits/maxDepth`` so that the
/// compiler-generated (recursive) copy and destroy operations cannot exhaust the stack.
public struct MIMEPart: Sendable, Hashable {
    /// Depth-first (pre-order) index; the message's root entity is 0.
    ///
    /// This matches Stalwart mail-parser's `parts` numbering: a `message/rfc822` part is one
    /// index in its enclosing message, and the embedded message's entities are numbered
    /// separately, starting again at 0 for its root.
    public var partIndex: Int
    /// The entity's header fields in order (for the root: the message header).
    public var headers: [HeaderField]
    /// Lower-case `type/subtype` without parameters. `text/plain` when absent or invalid
    /// (RFC 2045 §5.2), `message/rfc822` when absent inside `multipart/digest` (RFC 2046 §5.1.5).
    public var contentType: String
    /// Content-Type parameters: lower-cased names, values unquoted and RFC 2231-decoded.
    public var parameters: [String: String]
    /// The Content-Disposition type, lower-cased (`inline`, `attachment`), or `nil` when absent.
    public var dispositionType: String?
    /// Content-Disposition `filename` (RFC 2231/2183), else Content-Type `name`; decoded.
    public var filename: String?
    /// The Content-ID without angle brackets.
    public var contentID: String?
    /// The declared `charset` parameter, lower-cased, or `nil` when undeclared.
    public var charset: String?
    /// The declared Content-Transfer-Encoding, lower-cased (`7bit` when absent).
    public var transferEncoding: String
    /// Transfer-decoded octets (not charset-converted). Empty for multipart entities.
    ///
    /// For a base64 leaf that is neither text nor an embedded message, the parser keeps the encoded octets
    /// (``base64Content``) and this decodes them on each read: the decoded copy of a large attachment is then
    /// never held beside the message it came from. Setting it stores the octets given.
    public var content: [UInt8] {
        get {
            switch storedContent {
            case .decoded(let octets): octets
            case .base64(let encoded): encoded.decoded()
            }
        }
        set { storedContent = .decoded(newValue) }
    }
    /// The content as the message has it, when the parser kept it base64-encoded (see ``content``); `nil`
    /// when the content is stored decoded.
    public var base64Content: Base64Content? {
        if case .base64(let encoded) = storedContent { encoded } else { nil }
    }
    var storedContent: StoredContent
    /// For `text/*` leaves: ``content`` converted to UTF-8; `nil` otherwise.
    public var text: String?
    /// Multipart children in order; for `message/rfc822` the embedded message's root.
    public var children: [MIMEPart]
    /// `true` when the parent entity is `multipart/related` (RFC 2387).
    public var isInRelated: Bool
    /// For multipart entities: the octets before the first delimiter (RFC 2046 §5.1.1).
    public var preamble: [UInt8]
    /// For multipart entities: the octets after the close delimiter.
    public var epilogue: [UInt8]

    /// `true` for an entity that was split into children by a boundary.
    public var isMultipart: Bool { contentType.hasPrefix("multipart/") }

    /// An entity; the defaults describe an empty `text/plain` leaf (RFC 2045 §5.2).
    public init(
        partIndex: Int = 0, headers: [HeaderField] = [], contentType: String = "text/plain",
        parameters: [String: String] = [:], dispositionType: String? = nil, filename: String? = nil,
        contentID: String? = nil, charset: String? = nil, transferEncoding: String = "7bit",
        content: [UInt8] = [], text: String? = nil, children: [MIMEPart] = [], isInRelated: Bool = false,
        preamble: [UInt8] = [], epilogue: [UInt8] = []
    ) {
        self.partIndex = partIndex
        self.headers = headers
        self.contentType = contentType
        self.parameters = parameters
        self.dispositionType = dispositionType
        self.filename = filename
        self.contentID = contentID
        self.charset = charset
        self.transferEncoding = transferEncoding
        self.storedContent = .decoded(content)
        self.text = text
        self.children = children
        self.isInRelated = isInRelated
        self.preamble = preamble
        self.epilogue = epilogue
    }

    /// The values of the header fields called `name` (case-insensitive), unfolded and decoded.
    public func headerValues(_ name: String) -> [String] {
        let wanted = name.lowercased()
        return headers.filter { $0.name.lowercased() == wanted }.map(\.value)
    }
}

/// How a part's content is held: decoded, or base64-encoded as the message has it. Two parts with the same
/// decoded octets are equal however they hold them.
enum StoredContent: Sendable, Hashable {
    case decoded([UInt8])
    case base64(Base64Content)

    static func == (lhs: StoredContent, rhs: StoredContent) -> Bool {
        switch (lhs, rhs) {
        case (.decoded(let left), .decoded(let right)): left == right
        case (.base64(let left), .base64(let right)) where left == right: true
        default: lhs.octets == rhs.octets
        }
    }

    func hash(into hasher: inout Hasher) {
        hasher.combine(octets)
    }

    private var octets: [UInt8] {
        switch self {
        case .decoded(let octets): octets
        case .base64(let encoded): encoded.decoded()
        }
    }
}

/// The base64 content of a part, kept as the octets of the message it is in (sharing its storage, not
/// copied), with the length it decodes to. Decoded the way the parser decodes base64 (RFC 2045 §6.8,
/// leniently: ``MIMEPart/content`` of the same part), either whole or octet by octet into a sink.
public struct Base64Content: Sendable, Hashable {
    /// The encoded octets, line breaks and all, exactly as in the message.
    public let encoded: ArraySlice<UInt8>
    /// How many octets ``decoded()`` gives.
    public let decodedCount: Int

    /// The decoded octets.
    public func decoded() -> [UInt8] {
        TransferDecoding.base64(encoded).octets
    }

    /// Hands the decoded octets to `sink` in order, holding none of them.
    public func decode(into sink: inout some OctetSink) {
        _ = TransferDecoding.base64(encoded, into: &sink)
    }
}

/// The result of ``MailParser/parse(_:)``: the header, the entity tree and the RFC 8621 mail view.
public struct ParsedMail: Sendable {
    /// Top-level header fields in order, duplicates kept.
    public var headers: [HeaderField]
    /// The entity tree; `root.partIndex == 0`.
    public var root: MIMEPart
    /// The first `Subject`, unfolded and RFC 2047-decoded; `nil` when absent.
    public var subject: String?
    /// All `From` mailboxes (every `From` field, in order).
    public var from: [MailAddress]
    /// The first mailbox of the first `Sender` field.
    public var sender: MailAddress?
    /// All `To` mailboxes (every `To` field, in order; groups flattened).
    public var to: [MailAddress]
    /// All `Cc` mailboxes.
    public var cc: [MailAddress]
    /// All `Bcc` mailboxes.
    public var bcc: [MailAddress]
    /// All `Reply-To` mailboxes.
    public var replyTo: [MailAddress]
    /// The first `Message-ID`, without angle brackets.
    public var messageID: String?
    /// RFC 8621 §4.1.4 `textBody`, in order.
    public var textBody: [MIMEPart]
    /// RFC 8621 §4.1.4 `htmlBody`, in order.
    public var htmlBody: [MIMEPart]
    /// RFC 8621 §4.1.4 `attachments` (includes inline images and attached messages).
    public var attachments: [MIMEPart]
    /// Soft problems, in the order found.
    public var diagnostics: [MailDiagnostic]

    /// The values of the top-level header fields called `name` (case-insensitive),
    /// unfolded and RFC 2047-decoded, in order.
    public func headerValues(_ name: String) -> [String] {
        let wanted = name.lowercased()
        return headers.filter { $0.name.lowercased() == wanted }.map(\.value)
    }
}

extension MailAddress {
    /// The mailboxes of an address-list field body (`To`, `Cc`, `Bcc`; raw, unfolded), leniently, as the
    /// message parser reads them: groups flattened, display names RFC 2047-decoded.
    public static func list(fromFieldBody octets: [UInt8]) -> [MailAddress] {
        AddressParser.parse(octets)
    }
}
