/// Parses an Internet message (RFC 5322 with MIME, RFC 2045–2049, 2047, 2231) into its header,
/// its entity tree and the RFC 8621 §4.1.4 mail view (text body, HTML body, attachments).
///
/// Pure and lenient: no I/O, never throws, never traps. Problems are returned as
/// ``ParsedMail/diagnostics`` beside a best-effort result. Work is bounded by ``Limits``.
public struct MailParser: Sendable {
    /// Resource caps. Each keeps adversarial input (the nodemailer "outofmemory" and
    /// "large call stack" regressions, a million nested multiparts) to bounded time and memory.
    public struct Limits: Sendable {
        /// Octets of header fields kept per header block (the message header and each part's).
        /// Default 102,400 octets, Postfix's `header_size_limit`; real headers stay far below.
        /// Fields past the cap are dropped with a `header-block-too-large` diagnostic; the body
        /// is still found.
        public var maxHeaderBlockSize: Int
        /// Nesting levels (multipart and `message/rfc822`) below the root. Default 50; mail
        /// clients nest fewer than 10. A deeper entity is kept unparsed, as an
        /// `application/octet-stream` leaf (multipart) or an unparsed `message/rfc822`, with a
        /// `depth-limit-exceeded` diagnostic. Values above 1,000 act as 1,000, because the
        /// value tree's compiler-generated copy/destroy code recurses once per level.
        public var maxDepth: Int
        /// Entities in the whole tree, embedded messages included. Default 10,000 (a 10 MB
        /// message cannot carry more useful parts). Later entities are dropped with a
        /// `part-limit-exceeded` diagnostic.
        public var maxParts: Int
        /// Embedded messages parsed inside one another (`message/rfc822`, and transfer-encoded
        /// multiparts, which are decoded and then re-parsed). Default 10; forwarded chains rarely
        /// pass 5. Each level keeps its own decoded copy of the embedded octets (so the part can
        /// be re-attached as `.eml`), so memory grows by up to the message size per level: the
        /// cap keeps a 10 MB message under about 110 MB. A deeper one stays an unparsed leaf
        /// (content kept) with a `depth-limit-exceeded` diagnostic.
        public var maxEmbeddedMessageDepth: Int

        /// Limits with the documented defaults unless overridden.
        public init(
            maxHeaderBlockSize: Int = 102_400, maxDepth: Int = 50, maxParts: Int = 10_000,
            maxEmbeddedMessageDepth: Int = 10
        ) {
            self.maxHeaderBlockSize = maxHeaderBlockSize
            self.maxDepth = maxDepth
            self.maxParts = maxParts
            self.maxEmbeddedMessageDepth = maxEmbeddedMessageDepth
        }

        var effectiveMaxDepth: Int { min(max(maxDepth, 0), 1_000) }
        var effectiveMaxParts: Int { max(maxParts, 1) }
    }

    /// The caps in force.
    public var limits: Limits

    /// A parser enforcing `limits`. Cheap to create; holds no state between messages.
    public init(limits: Limits = .init()) {
        self.limits = limits
    }

    /// Parses `message` (LF or CRLF line ends, or a mix). Never throws, never crashes.
    public func parse(_ message: [UInt8]) -> ParsedMail {
        var entityParser = EntityParser(limits: limits)
        let (root, diagnostics) = entityParser.parse(message)
        let headers = root.headers
        let selection = BodySelection.select(root)

        func fields(_ name: String) -> [HeaderField] {
            headers.filter { $0.name.lowercased() == name }
        }
        func addresses(_ name: String) -> [MailAddress] {
            fields(name).flatMap { AddressParser.parse($0.rawValue) }
        }
        let subject = fields("subject").first.map(\.value)
        let messageID = fields("message-id").first.flatMap { stripAngles($0.value) }
        return ParsedMail(
            headers: headers, root: root, subject: subject, from: addresses("from"),
            sender: addresses("sender").first, to: addresses("to"), cc: addresses("cc"), bcc: addresses("bcc"),
            replyTo: addresses("reply-to"), messageID: messageID, textBody: selection.textBody,
            htmlBody: selection.htmlBody, attachments: selection.attachments, diagnostics: diagnostics)
    }
}
