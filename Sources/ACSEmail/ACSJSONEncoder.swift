/// Encodes an ``EmailMessage`` as the JSON request body of `POST /emails:send`.
///
/// The writer is hand-ordered rather than built on Foundation's `JSONEncoder`, for three reasons:
/// - **Deterministic bytes.** The body is hashed for the HMAC signature (docs/acs-email-api.md §2.3, §3.1) and
///   compared byte for byte by the golden tests, so the key order must never depend on a dictionary.
///   Object keys come in the spec's schema order (§2.1: `senderAddress`, `content`, `recipients`,
///   `attachments`, `headers`, `replyTo`, `userEngagementTrackingDisabled`); the free-form `headers` map is
///   written with its keys sorted by their UTF-8 bytes.
/// - **Compact UTF-8, absent optionals omitted** (§2.3 recommendation): `nil` properties are left out, never
///   written as `null`; non-ASCII text is written as UTF-8, not `\uXXXX`; `/` is not escaped.
/// - **The API version decides the shape:** `contentId` is only written for versions that have it (§1.2).
///
/// `prettyPrinted` output (two-space indentation, same key order) is for golden fixtures that humans review;
/// it is never sent.
public struct ACSJSONEncoder: Sendable {
    /// The API version whose body shape is produced.
    public var apiVersion: ACSAPIVersion
    /// Indented output for review; compact (the default) for the wire.
    public var prettyPrinted: Bool

    public init(apiVersion: ACSAPIVersion = .v2025_09_01, prettyPrinted: Bool = false) {
        self.apiVersion = apiVersion
        self.prettyPrinted = prettyPrinted
    }

    /// The UTF-8 JSON bytes of `message`.
    public func encode(_ message: EmailMessage) -> [UInt8] {
        var writer = JSONWriter(pretty: prettyPrinted)
        writer.reserve(estimatedSize(of: message))
        writer.object { w in
            w.member("senderAddress") { $0.string(message.senderAddress) }
            w.member("content") { $0.content(message.content) }
            w.member("recipients") { $0.recipients(message.recipients) }
            if let attachments = message.attachments {
                w.member("attachments") { w in
                    w.array(attachments) { w, attachment in
                        w.object { w in
                            w.member("name") { $0.string(attachment.name) }
                            w.member("contentType") { $0.string(attachment.contentType) }
                            w.member("contentInBase64") { $0.string(attachment.contentInBase64) }
                            if let contentID = attachment.contentId, apiVersion.supportsContentID {
                                w.member("contentId") { $0.string(contentID) }
                            }
                        }
                    }
                }
            }
            if let headers = message.headers {
                w.member("headers") { w in
                    w.object { w in
                        // Sorted by UTF-8 bytes, not by String's Unicode ordering, so the order is the
                        // same on every platform and toolchain.
                        let sorted = headers.sorted { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }
                        for (name, value) in sorted {
                            w.member(name) { $0.string(value) }
                        }
                    }
                }
            }
            if let replyTo = message.replyTo {
                w.member("replyTo") { $0.addresses(replyTo) }
            }
            if let disabled = message.userEngagementTrackingDisabled {
                w.member("userEngagementTrackingDisabled") { $0.bool(disabled) }
            }
        }
        if prettyPrinted {
            writer.bytes.append(UInt8(ascii: "\n"))
        }
        return writer.bytes
    }

    /// A lower bound of the output size, so that a request carrying megabytes of base64 is written into one
    /// allocation instead of being copied on every growth.
    private func estimatedSize(of message: EmailMessage) -> Int {
        let attachmentBytes = message.attachments?.reduce(0) { $0 + $1.contentInBase64.utf8.count } ?? 0
        return 256 + message.content.subject.utf8.count + (message.content.plainText?.utf8.count ?? 0)
            + (message.content.html?.utf8.count ?? 0) + attachmentBytes
    }
}

/// A minimal streaming JSON writer: the caller decides the key order.
struct JSONWriter {
    var bytes: [UInt8] = []
    let pretty: Bool
    private var depth = 0
    /// Whether the container being written already has an element (a comma is needed before the next one).
    private var hasElement: [Bool] = []

    init(pretty: Bool) {
        self.pretty = pretty
    }

    mutating func reserve(_ count: Int) {
        bytes.reserveCapacity(count)
    }

    mutating func object(_ body: (inout JSONWriter) -> Void) {
        open(UInt8(ascii: "{"))
        body(&self)
        close(UInt8(ascii: "}"))
    }

    mutating func array<Element>(_ elements: [Element], _ body: (inout JSONWriter, Element) -> Void) {
        open(UInt8(ascii: "["))
        for element in elements {
            separate()
            body(&self, element)
        }
        close(UInt8(ascii: "]"))
    }

    mutating func member(_ key: String, _ value: (inout JSONWriter) -> Void) {
        separate()
        string(key)
        bytes.append(UInt8(ascii: ":"))
        if pretty {
            bytes.append(UInt8(ascii: " "))
        }
        value(&self)
    }

    mutating func bool(_ value: Bool) {
        bytes.append(contentsOf: value ? Array("true".utf8) : Array("false".utf8))
    }

    /// Writes a JSON string: `"` and `\` escaped, control characters as the short escapes or `\u00XX`
    /// (RFC 8259 §7); everything else, including non-ASCII, as raw UTF-8.
    mutating func string(_ value: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): bytes.append(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [0x5C, 0x5C])
            case 0x0A: bytes.append(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: bytes.append(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: bytes.append(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x08: bytes.append(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: bytes.append(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0x00..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: Array("\\u00".utf8))
                bytes.append(hex[Int(byte >> 4)])
                bytes.append(hex[Int(byte & 0x0F)])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }

    mutating func content(_ content: EmailContent) {
        object { w in
            w.member("subject") { $0.string(content.subject) }
            if let plainText = content.plainText {
                w.member("plainText") { $0.string(plainText) }
            }
            if let html = content.html {
                w.member("html") { $0.string(html) }
            }
        }
    }

    mutating func recipients(_ recipients: EmailRecipients) {
        object { w in
            w.member("to") { $0.addresses(recipients.to) }
            if let cc = recipients.cc {
                w.member("cc") { $0.addresses(cc) }
            }
            if let bcc = recipients.bcc {
                w.member("bcc") { $0.addresses(bcc) }
            }
        }
    }

    mutating func addresses(_ addresses: [EmailAddress]) {
        array(addresses) { w, address in
            w.object { w in
                w.member("address") { $0.string(address.address) }
                if let displayName = address.displayName {
                    w.member("displayName") { $0.string(displayName) }
                }
            }
        }
    }

    private mutating func open(_ bracket: UInt8) {
        bytes.append(bracket)
        depth += 1
        hasElement.append(false)
    }

    private mutating func close(_ bracket: UInt8) {
        depth -= 1
        if hasElement.removeLast(), pretty {
            newline()
        }
        bytes.append(bracket)
    }

    private mutating func separate() {
        if hasElement[hasElement.count - 1] {
            bytes.append(UInt8(ascii: ","))
        }
        hasElement[hasElement.count - 1] = true
        if pretty {
            newline()
        }
    }

    private mutating func newline() {
        bytes.append(UInt8(ascii: "\n"))
        bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: 2 * depth))
    }
}
