import MailParser

/// The translation of a parsed message into an ACS Email request:
/// `ParsedMail + Envelope + TranslationPolicy → Result<EmailMessage, TranslationRejection>`.
///
/// ## Rules
///
/// Each rule cites where it comes from; docs/… paths are relative to the shared docs folder.
///
/// 1. **Sender** (``SenderPolicy``): the first `From` mailbox, then `Sender`, then the envelope MAIL FROM, the
///    first on a domain of ``TranslationPolicy/verifiedDomains``; else ``TranslationPolicy/senderAddress``;
///    else `550 5.7.1`. When the sender is replaced, the `From` mailboxes become `replyTo` unless the message
///    has a `Reply-To`. (acs-email-api.md §2.2 "Sender".)
/// 2. **Recipients** (``RecipientMapping``): from the envelope only; an envelope recipient in `To` → `to`,
///    in `Cc` → `cc`, with the header's display name; every other one → `bcc`. Header-only addresses are not
///    sent to. Domains compare case-insensitively. `to` is `[]` when empty; `cc`/`bcc` are omitted when
///    empty. No recipient → `554 5.1.0`; more than ``TranslationPolicy/maxRecipients`` → `550 5.5.3`.
/// 3. **Reply-To** → `replyTo` (with display names).
/// 4. **Subject**: the RFC 2047-decoded `Subject`; missing or blank → ``TranslationPolicy/subjectPlaceholder``
///    (ACS requires a non-empty subject, §2.2).
/// 5. **Bodies**, from the RFC 8621 §4.1.4 lists the parser computed:
///    - `plainText`: the text parts of `textBody`, in order, joined (a line break is inserted between two parts
///      when the first does not end with one), when `textBody` holds at least one `text/plain` part. A
///      `text/html` part there (one with no plain alternative, e.g. beside the plain part in a
///      `multipart/mixed`) is read as text (``HTMLText``), as RFC 8621 §4.1.4 expects of a client showing
///      text, so that `plainText` is never a silently incomplete copy. A message whose text is HTML only gets
///      no `plainText`: none was written.
///      `html`: the parts of `htmlBody` joined when it holds
///      at least one `text/html` part; a `text/plain` part among them is HTML-escaped inside `<pre>`, so the
///      joined HTML shows every inline text part in order (RFC 8621 §4.1.4: the lists are meant to be shown
///      one after the other).
///    - Line breaks in both are normalized to CRLF, the canonical form of text (RFC 2046 §4.1.1); a message
///      stored with LF line endings and the same message received over SMTP then give the same request.
///    - When neither is non-blank (only attachments, or an empty message) `plainText` becomes
///      ``TranslationPolicy/emptyBodyPlaceholder``: ACS requires a body (§2.2).
///    - A text part that carries a `Content-ID` is still a body when RFC 8621 puts it in a body list (s-nail
///      marks its body that way: smtp-behaviour.md, s-nail row); a `Content-ID` alone never makes an attachment.
/// 6. **Attachments**: every leaf part of the message that is not used as a body (tree order; a
///    `message/rfc822` part is one leaf, its inner parts are not looked at), in particular the RFC 8621
///    `attachments` and the inline media that RFC 8621 keeps in the body lists.
///    - `name`: the part's `filename` (RFC 2231/2183 `filename`, else Content-Type `name`, decoded by the
///      parser) without any directory part and control characters; otherwise `attachment-N.<ext>` where N is
///      the attachment's 1-based position and `<ext>` comes from its type (§7.1 table; `bin` when unknown).
///    - `message/rfc822` parts are attachments whose name ends in `.eml` (appended when missing).
///    - `contentType`: the declared type, lower-case, without parameters. When §7.1 does not list it but lists
///      the type implied by the name's extension, the implied type is used (`application/octet-stream` on
///      `report.pdf` → `application/pdf`). A type still unlisted follows
///      ``TranslationPolicy/attachmentTypePolicy``: `send` it (ACS decides; default), `reject` the message
///      with `554 5.6.0` naming the attachment, or `suppress` (sent with the header
///      `x-ms-acsemail-suppress-invalid-attachment: true`, which is only added when an unlisted type is present).
///    - `contentInBase64`: the transfer-decoded octets, base64 without line breaks; text is not
///      charset-converted. For parts sent as 7bit, 8bit or quoted-printable, line breaks are part of the
///      transfer encoding, so they are normalized to CRLF (RFC 2045 §6.7 rule 4; RFC 2046 §4.1.1); base64 and
///      binary content is sent byte for byte, as are UTF-16/32 texts.
///    - `contentId` (without angle brackets) when the part has a Content-ID and either the HTML body
///      references it as `cid:` (RFC 2392, percent-decoded, compared case-insensitively) or the part is a
///      child of `multipart/related`. A Content-ID already given to an earlier attachment is not repeated
///      (ACS answers 400 for duplicates, §7.2): the later part becomes a regular attachment.
///    - With API version 2023-03-31, which has no `contentId`, inline parts are sent as regular attachments
///      (the recipient still gets the file; the `cid:` image shows as missing) rather than rejected.
///    - Parts with no content are dropped: ACS rejects empty attachments (§2.2 "Attachments").
/// 7. **Headers** (``HeaderPolicy``): the allow-listed top-level headers, unfolded and RFC 2047-decoded,
///    never empty; model and trace headers never; configurable extra allow- and deny-lists.
/// 8. **userEngagementTrackingDisabled** is ``TranslationPolicy/userEngagementTrackingDisabled`` (omitted
///    when nil).
/// 9. **Size**: the encoded request (the exact bytes ``ACSJSONEncoder`` produces for the policy's API version)
///    over ``TranslationPolicy/maxRequestSize`` → `552 5.3.4` stating the encoded size and the limit (§2.2).
///
/// Checks run in this order, and the first failing one gives the rejection: sender, recipients, attachment
/// types, size.
public enum ACSTranslation {
    /// Translates `mail` received with `envelope` into the ACS request, or the reason it cannot be sent.
    public static func translate(
        _ mail: ParsedMail, envelope: Envelope, policy: TranslationPolicy
    ) -> Result<EmailMessage, TranslationRejection> {
        translateWithDetails(mail, envelope: envelope, policy: policy).map(\.message)
    }

    /// Like ``translate(_:envelope:policy:)``, also returning the encoded request body (which the size check
    /// computed anyway) and notes about decisions worth logging.
    public static func translateWithDetails(
        _ mail: ParsedMail, envelope: Envelope, policy: TranslationPolicy
    ) -> Result<TranslatedEmail, TranslationRejection> {
        var notes: [TranslationNote] = []

        // Rule 1: sender and replyTo.
        let resolution: SenderPolicy.Resolution
        switch SenderPolicy.resolve(
            from: mail.from.map(EmailAddress.init), sender: mail.sender.map(EmailAddress.init),
            replyTo: mail.replyTo.map(EmailAddress.init), envelopeMailFrom: envelope.mailFrom,
            configuredSender: policy.senderAddress, verifiedDomains: policy.verifiedDomains)
        {
        case .success(let value): resolution = value
        case .failure(let rejection): return .failure(rejection)
        }
        if resolution.replaced {
            notes.append(TranslationNote(code: "sender-replaced", message: "sent as \(resolution.senderAddress)"))
        }
        for dropped in resolution.droppedReplyTo {
            notes.append(
                TranslationNote(
                    code: "reply-to-dropped", message: "\(dropped.address): \(dropped.reason), which ACS refuses"))
        }

        // Rule 2: recipients. A local name in To or Cc means its alias, as it did in the envelope.
        let aliased = { (address: EmailAddress) -> EmailAddress in
            guard let mapped = policy.localRecipients?.aliasAddress(for: address.address) else { return address }
            return EmailAddress(address: mapped, displayName: address.displayName)
        }
        let recipients = RecipientMapping.map(
            envelopeRecipients: envelope.recipients, toHeader: mail.to.map(EmailAddress.init).map(aliased),
            ccHeader: mail.cc.map(EmailAddress.init).map(aliased))
        guard recipients.count > 0 else {
            return .failure(.noRecipients())
        }
        guard recipients.count <= policy.maxRecipients else {
            return .failure(.tooManyRecipients(count: recipients.count, limit: policy.maxRecipients))
        }

        // Rule 4: subject.
        var subject = mail.subject ?? ""
        if subject.allSatisfy(\.isWhitespace) {
            subject = policy.subjectPlaceholder
            notes.append(TranslationNote(code: "subject-placeholder", message: "missing or blank subject"))
        }

        // Rule 5: bodies.
        var bodies = Bodies(mail)
        if bodies.plainText == nil, bodies.html == nil {
            bodies.plainText = policy.emptyBodyPlaceholder
            notes.append(TranslationNote(code: "body-placeholder", message: "no text or HTML body"))
        }

        // Rule 6: attachments.
        let attachments: [EmailAttachment]
        let hasUnlistedType: Bool
        switch Attachments.build(mail, bodyPartIndices: bodies.usedPartIndices, html: bodies.html, policy: policy)
        {
        case .success(let built):
            attachments = built.attachments
            hasUnlistedType = built.hasUnlistedType
            notes += built.notes
        case .failure(let rejection):
            return .failure(rejection)
        }

        // Rule 7: headers; the gateway alone sets the reserved control header (HeaderPolicy denies x-ms-*).
        var headers = HeaderPolicy.forwardedHeaders(
            mail.headers.map { (name: $0.name, value: $0.value) }, allow: policy.headerAllowList,
            deny: policy.headerDenyList)
        if hasUnlistedType, policy.attachmentTypePolicy == .suppress {
            headers = (headers ?? [:]).merging(["x-ms-acsemail-suppress-invalid-attachment": "true"]) { $1 }
        }

        let message = EmailMessage(
            senderAddress: resolution.senderAddress,
            content: EmailContent(subject: subject, plainText: bodies.plainText, html: bodies.html),
            recipients: recipients,
            attachments: attachments.isEmpty ? nil : attachments,
            headers: headers,
            replyTo: resolution.replyTo,
            userEngagementTrackingDisabled: policy.userEngagementTrackingDisabled)

        // Rule 9: the size ACS sees is the size of these exact bytes.
        let body = ACSJSONEncoder(apiVersion: policy.apiVersion).encode(message)
        guard body.count <= policy.maxRequestSize else {
            return .failure(.requestTooLarge(encodedSize: body.count, limit: policy.maxRequestSize))
        }
        return .success(TranslatedEmail(message: message, requestBody: body, notes: notes))
    }
}

/// A successful translation with what the caller needs beyond the model.
public struct TranslatedEmail: Sendable, Hashable {
    /// The request model.
    public var message: EmailMessage
    /// The exact JSON body to send (compact, for the policy's API version); its size passed the limit.
    public var requestBody: [UInt8]
    /// Decisions worth logging (a replaced sender, a placeholder, an inferred type…); never a failure.
    public var notes: [TranslationNote]
}

/// A decision the translation made that is worth a log line or a `convert` diagnostic.
public struct TranslationNote: Sendable, Hashable {
    /// A stable kebab-case identifier, e.g. `attachment-type-inferred`.
    public var code: String
    /// Human-readable detail for logs; not stable.
    public var message: String

    public init(code: String, message: String) {
        self.code = code
        self.message = message
    }
}

extension Envelope {
    /// An envelope taken from the headers, for tools that have a message but no SMTP transaction (the
    /// `convert` command without `--rcpt`): MAIL FROM is the first `From` (else `Sender`) address, and the
    /// recipients are the `To`, `Cc` and `Bcc` addresses.
    public init(headersOf mail: ParsedMail) {
        self.init(
            mailFrom: mail.from.first?.address ?? mail.sender?.address ?? "",
            recipients: (mail.to + mail.cc + mail.bcc).map(\.address))
    }
}

extension EmailAddress {
    /// The ACS form of a parsed mailbox; a blank display name is left out.
    init(_ mailbox: MailAddress) {
        self.init(address: mailbox.address, displayName: RecipientMapping.nonBlank(mailbox.displayName))
    }
}

/// Rule 5: the bodies chosen from the RFC 8621 lists.
struct Bodies {
    var plainText: String?
    var html: String?
    /// The parts whose text went into `plainText` or `html`; every other leaf is an attachment.
    var usedPartIndices: Set<Int> = []

    init(_ mail: ParsedMail) {
        // A text/html part in textBody has no plain alternative (RFC 8621 §4.1.4): it is read as text, so that
        // plainText holds every part, as html does.
        if mail.textBody.contains(where: { $0.contentType == "text/plain" }) {
            let textParts = mail.textBody.filter { $0.contentType == "text/plain" || $0.contentType == "text/html" }
            plainText = Self.join(
                textParts.map { $0.contentType == "text/html" ? HTMLText.plainText(Self.text($0)) : Self.text($0) })
            usedPartIndices.formUnion(textParts.map(\.partIndex))
        }
        if mail.htmlBody.contains(where: { $0.contentType == "text/html" }) {
            let htmlParts = mail.htmlBody.filter { $0.contentType == "text/html" || $0.contentType == "text/plain" }
            html = Self.join(
                htmlParts.map {
                    $0.contentType == "text/html" ? Self.text($0) : "<pre>\(Self.escaped(Self.text($0)))</pre>"
                })
            usedPartIndices.formUnion(htmlParts.map(\.partIndex))
        }
        if let text = plainText, text.allSatisfy(\.isWhitespace) {
            plainText = nil
        }
        if let text = html, text.allSatisfy(\.isWhitespace) {
            html = nil
        }
    }

    /// The part's text: the parser's UTF-8 conversion, else its octets read as UTF-8 (invalid sequences
    /// replaced), so a part always contributes what the parser could make of it.
    static func text(_ part: MIMEPart) -> String {
        part.text ?? String(decoding: part.content, as: UTF8.self)
    }

    /// The texts in order with CRLF line breaks, separated by a line break where one is missing.
    static func join(_ texts: [String]) -> String {
        var result = ""
        for text in texts {
            if let last = result.unicodeScalars.last, last != "\n" {
                result += "\r\n"
            }
            result += LineBreaks.crlf(text)
        }
        return result
    }

    /// Text made safe inside HTML: the five characters HTML gives a meaning to are escaped.
    static func escaped(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&#39;"
            default: result.append(character)
            }
        }
        return result
    }
}

/// Rule 6: attachments.
enum Attachments {
    struct Built {
        var attachments: [EmailAttachment] = []
        var hasUnlistedType = false
        var notes: [TranslationNote] = []
    }

    static func build(
        _ mail: ParsedMail, bodyPartIndices: Set<Int>, html: String?, policy: TranslationPolicy
    ) -> Result<Built, TranslationRejection> {
        var built = Built()
        let referencedCIDs = html.map(contentIDReferences) ?? []
        var usedCIDs: Set<String> = []
        for part in leaves(of: mail.root) where !bodyPartIndices.contains(part.partIndex) {
            let content = canonicalContent(part)
            guard !content.isEmpty else {
                built.notes.append(
                    TranslationNote(code: "empty-attachment-dropped", message: "part \(part.partIndex) is empty"))
                continue
            }
            let isMessage = part.contentType == "message/rfc822" || part.contentType == "message/global"
            var name =
                part.filename.map(sanitizedFileName) ?? ""
            if name.isEmpty {
                let ext = AttachmentTypes.fileExtension(forType: part.contentType)
                name = "attachment-\(built.attachments.count + 1).\(ext)"
            } else if isMessage, !name.lowercased().hasSuffix(".eml") {
                name += ".eml"
            }

            var contentType = part.contentType
            if !AttachmentTypes.isAllowed(contentType), let inferred = AttachmentTypes.inferredType(forFileName: name) {
                built.notes.append(
                    TranslationNote(
                        code: "attachment-type-inferred", message: "\(name): \(contentType) sent as \(inferred)"))
                contentType = inferred
            }
            if !AttachmentTypes.isAllowed(contentType) {
                switch policy.attachmentTypePolicy {
                case .reject:
                    return .failure(.attachmentTypeRejected(name: name, contentType: contentType))
                case .send, .suppress:
                    built.hasUnlistedType = true
                    built.notes.append(
                        TranslationNote(
                            code: "attachment-type-unlisted", message: "\(name): \(contentType) is not in ACS's list"))
                }
            }

            var contentID: String?
            if let cid = part.contentID?.trimmingWhitespace(), !cid.isEmpty,
                part.isInRelated || referencedCIDs.contains(cid.lowercased())
            {
                if !policy.apiVersion.supportsContentID {
                    built.notes.append(
                        TranslationNote(
                            code: "inline-sent-as-attachment",
                            message: "\(name): API \(policy.apiVersion.rawValue) has no contentId"))
                } else if !usedCIDs.insert(cid.lowercased()).inserted {
                    built.notes.append(
                        TranslationNote(code: "duplicate-content-id", message: "\(name): Content-ID \(cid) repeated"))
                } else {
                    contentID = cid
                }
            }
            built.attachments.append(
                EmailAttachment(
                    name: name, contentType: contentType, contentInBase64: Base64.encode(content),
                    contentId: contentID))
        }
        return .success(built)
    }

    /// The leaf parts in tree order. A `message/rfc822` part is a leaf: it is attached whole, and its inner
    /// parts are numbered separately by the parser, so they must not be mixed with the outer ones. An empty
    /// multipart has no leaf. Iterative, so a deep tree costs heap, not stack.
    static func leaves(of root: MIMEPart) -> [MIMEPart] {
        var result: [MIMEPart] = []
        var stack = [root]
        while let part = stack.popLast() {
            if part.isMultipart {
                stack.append(contentsOf: part.children.reversed())
            } else {
                result.append(part)
            }
        }
        return result
    }

    /// The octets to attach: byte for byte for base64 and binary (and any encoding the parser did not
    /// decode), with CRLF line breaks for 7bit, 8bit and quoted-printable, whose line breaks belong to the
    /// encoding (RFC 2045 §6.7 rule 4, RFC 2046 §4.1.1). UTF-16/32 text is never touched: its 0x0A octets
    /// are halves of characters.
    static func canonicalContent(_ part: MIMEPart) -> [UInt8] {
        let lineOriented = ["7bit", "8bit", "quoted-printable"].contains(part.transferEncoding)
        let wideCharset = part.charset.map { $0.hasPrefix("utf-16") || $0.hasPrefix("utf-32") } ?? false
        return lineOriented && !wideCharset ? LineBreaks.crlf(part.content) : part.content
    }

    /// A file name safe to show: the part after the last `/` or `\` (no directories from the sender's
    /// machine), without control characters and surrounding whitespace. Empty when nothing is left.
    static func sanitizedFileName(_ fileName: String) -> String {
        let base = fileName.split(omittingEmptySubsequences: false) { $0 == "/" || $0 == "\\" }.last ?? ""
        let scalars = base.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }
        let name = String(String.UnicodeScalarView(scalars)).trimmingWhitespace()
        return name == "." || name == ".." ? "" : name
    }

    /// The Content-IDs the HTML references as `cid:` URLs (RFC 2392), percent-decoded and lower-cased.
    static func contentIDReferences(_ html: String) -> Set<String> {
        var result: Set<String> = []
        let bytes = Array(html.utf8)
        let terminators: Set<UInt8> = Set("\"'()<> \t\r\n".utf8)
        var index = 0
        while index + 4 <= bytes.count {
            let isCID =
                bytes[index] | 0x20 == UInt8(ascii: "c") && bytes[index + 1] | 0x20 == UInt8(ascii: "i")
                && bytes[index + 2] | 0x20 == UInt8(ascii: "d") && bytes[index + 3] == UInt8(ascii: ":")
            guard isCID else {
                index += 1
                continue
            }
            var end = index + 4
            while end < bytes.count, !terminators.contains(bytes[end]) {
                end += 1
            }
            if end > index + 4 {
                let decoded = ContentParameters.percentDecode(bytes[(index + 4)..<end])
                result.insert(String(decoding: decoded, as: UTF8.self).lowercased())
            }
            index = end
        }
        return result
    }
}

/// Line-break normalization to CRLF: a lone CR, a lone LF and CRLF each become one CRLF.
enum LineBreaks {
    static func crlf(_ bytes: [UInt8]) -> [UInt8] {
        var result: [UInt8] = []
        result.reserveCapacity(bytes.count + bytes.count / 16)
        var index = 0
        while index < bytes.count {
            let byte = bytes[index]
            if byte == 0x0D {
                result.append(contentsOf: [0x0D, 0x0A])
                if index + 1 < bytes.count, bytes[index + 1] == 0x0A {
                    index += 1
                }
            } else if byte == 0x0A {
                result.append(contentsOf: [0x0D, 0x0A])
            } else {
                result.append(byte)
            }
            index += 1
        }
        return result
    }

    static func crlf(_ text: String) -> String {
        String(decoding: crlf(Array(text.utf8)), as: UTF8.self)
    }
}
