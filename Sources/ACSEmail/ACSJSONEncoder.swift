import MailParser

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

    /// The UTF-8 JSON bytes of `message`, written into one array allocated at its exact final size.
    ///
    /// A first pass only counts the octets, a second one writes them. A request carrying megabytes of base64
    /// is then held once: growing the array as it is written would briefly hold the old and the doubled
    /// storage together, 3× the request (`EncoderTests.largeAttachment_isWrittenIntoOneExactlySizedArray`).
    public func encode(_ message: EmailMessage) -> [UInt8] {
        let count = encodedCount(message)
        var writer = JSONWriter(pretty: prettyPrinted)
        writer.output.reserveCapacity(count)
        write(message, to: &writer)
        assert(writer.output.count == count, "the measuring pass and the writing pass disagree")
        return writer.output
    }

    /// The number of octets ``encode(_:)`` returns for `message`, counted without writing them.
    public func encodedCount(_ message: EmailMessage) -> Int {
        var counter = JSONWriter(output: JSONOctetCounter(), pretty: prettyPrinted)
        write(message, to: &counter)
        return counter.output.count
    }

    /// Writes the octets of ``encode(_:)`` to `sink` in pieces of about `chunkSize` octets, holding one piece
    /// at a time: for a caller that passes the request on rather than keeping it (`convert` writing it to its
    /// standard output), so that a request of megabytes is never held whole
    /// (`TranslationTests.writtenInPieces_isTheEncodedRequest`).
    public func write(
        _ message: EmailMessage, chunkSize: Int = 1 << 16, to sink: (UnsafeBufferPointer<UInt8>) -> Void
    ) {
        withoutActuallyEscaping(sink) { sink in
            var writer = JSONWriter(output: JSONPieces(chunkSize: max(chunkSize, 4), sink: sink), pretty: prettyPrinted)
            write(message, to: &writer)
            writer.output.flush()
        }
    }

    private func write<Output: JSONOutput>(_ message: EmailMessage, to writer: inout JSONWriter<Output>) {
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
                            w.member("contentInBase64") { w in
                                switch attachment.content {
                                case .base64(let text): w.string(text)
                                case .octets(let octets): w.base64String(octets)
                                case .encoded(let encoded): w.base64String(reencoding: encoded)
                                }
                            }
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
            writer.output.write(UInt8(ascii: "\n"))
        }
    }
}

extension JSONWriter where Output == [UInt8] {
    /// A writer into a new array.
    init(pretty: Bool) {
        self.init(output: [], pretty: pretty)
    }

    /// What was written so far.
    var bytes: [UInt8] { output }
}

/// Where ``JSONWriter`` puts its octets: an array, or a counter that only measures what an array would get.
protocol JSONOutput {
    mutating func write(_ byte: UInt8)
    mutating func write(contentsOf bytes: some Collection<UInt8>)
    /// Writes the standard base64 of `octets` (RFC 4648 §4, padded, no line breaks).
    mutating func writeBase64(of octets: [UInt8])
    /// Writes the standard base64 of what `content` decodes to.
    mutating func writeBase64(reencoding content: Base64Content)
}

/// Counts the octets a ``JSONWriter`` would write, without storing them.
struct JSONOctetCounter: JSONOutput {
    var count = 0

    mutating func write(_ byte: UInt8) {
        count += 1
    }

    mutating func write(contentsOf bytes: some Collection<UInt8>) {
        count += bytes.count
    }

    mutating func writeBase64(of octets: [UInt8]) {
        count += Base64.encodedCount(octets.count)
    }

    mutating func writeBase64(reencoding content: Base64Content) {
        count += Base64.encodedCount(content.decodedCount)
    }
}

extension Array: JSONOutput where Element == UInt8 {
    mutating func write(_ byte: UInt8) {
        append(byte)
    }

    mutating func write(contentsOf bytes: some Collection<UInt8>) {
        append(contentsOf: bytes)
    }

    mutating func writeBase64(of octets: [UInt8]) {
        // Encoded in place at the end of the array: no base64 copy exists beside the request.
        let start = count
        append(contentsOf: repeatElement(0, count: Base64.encodedCount(octets.count)))
        withUnsafeMutableBufferPointer { output in
            octets.withUnsafeBufferPointer { input in
                _ = Base64.encode(input, into: UnsafeMutableBufferPointer(rebasing: output[start...]))
            }
        }
    }

    mutating func writeBase64(reencoding content: Base64Content) {
        // The array moves into the encoder and back (a swap, no copy), which appends to it as octets are decoded.
        var encoder = Base64StreamEncoder(output: [])
        swap(&encoder.output, &self)
        content.decode(into: &encoder)
        encoder.finish()
        swap(&encoder.output, &self)
    }
}

/// Hands what a ``JSONWriter`` writes to a sink in pieces of about `chunkSize` octets.
struct JSONPieces: JSONOutput {
    let chunkSize: Int
    let sink: (UnsafeBufferPointer<UInt8>) -> Void
    private var buffer: [UInt8] = []

    init(chunkSize: Int, sink: @escaping (UnsafeBufferPointer<UInt8>) -> Void) {
        self.chunkSize = chunkSize
        self.sink = sink
        buffer.reserveCapacity(chunkSize + 4)
    }

    /// Hands over what is buffered.
    mutating func flush() {
        guard !buffer.isEmpty else { return }
        buffer.withUnsafeBufferPointer { sink($0) }
        buffer.removeAll(keepingCapacity: true)
    }

    mutating func write(_ byte: UInt8) {
        buffer.append(byte)
        if buffer.count >= chunkSize { flush() }
    }

    mutating func write(contentsOf bytes: some Collection<UInt8>) {
        buffer.append(contentsOf: bytes)
        if buffer.count >= chunkSize { flush() }
    }

    mutating func writeBase64(of octets: [UInt8]) {
        // Slices of a multiple of 3 octets encode to the base64 of the whole, padded only at the end.
        let slice = max(3, chunkSize / 4 * 3)
        var start = 0
        while start < octets.count {
            let end = min(start + slice, octets.count)
            buffer.writeBase64(of: Array(octets[start..<end]))
            flush()
            start = end
        }
    }

    mutating func writeBase64(reencoding content: Base64Content) {
        // The encoder appends to the buffer (moved in and back, not copied) and hands it over when full.
        var pieces = Base64Pieces(encoder: Base64StreamEncoder(output: []), chunkSize: chunkSize, sink: sink)
        swap(&pieces.encoder.output, &buffer)
        content.decode(into: &pieces)
        pieces.encoder.finish()
        swap(&pieces.encoder.output, &buffer)
        if buffer.count >= chunkSize { flush() }
    }

    /// Re-encodes decoded octets, handing the buffer over whenever it is full.
    private struct Base64Pieces: OctetSink {
        var encoder: Base64StreamEncoder
        let chunkSize: Int
        let sink: (UnsafeBufferPointer<UInt8>) -> Void

        mutating func put(_ octet: UInt8) {
            encoder.put(octet)
            if encoder.output.count >= chunkSize {
                encoder.output.withUnsafeBufferPointer { sink($0) }
                encoder.output.removeAll(keepingCapacity: true)
            }
        }
    }
}

/// A minimal streaming JSON writer: the caller decides the key order.
struct JSONWriter<Output: JSONOutput> {
    var output: Output
    let pretty: Bool
    private var depth = 0
    /// Whether the container being written already has an element (a comma is needed before the next one).
    private var hasElement: [Bool] = []

    init(output: Output, pretty: Bool) {
        self.output = output
        self.pretty = pretty
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
        output.write(UInt8(ascii: ":"))
        if pretty {
            output.write(UInt8(ascii: " "))
        }
        value(&self)
    }

    mutating func bool(_ value: Bool) {
        output.write(contentsOf: value ? "true".utf8 : "false".utf8)
    }

    /// Writes a JSON string: `"` and `\` escaped, control characters as the short escapes or `\u00XX`
    /// (RFC 8259 §7); everything else, including non-ASCII, as raw UTF-8.
    mutating func string(_ value: String) {
        output.write(UInt8(ascii: "\""))
        for byte in value.utf8 {
            switch byte {
            case UInt8(ascii: "\""): output.write(contentsOf: [0x5C, 0x22])
            case UInt8(ascii: "\\"): output.write(contentsOf: [0x5C, 0x5C])
            case 0x0A: output.write(contentsOf: [0x5C, UInt8(ascii: "n")])
            case 0x0D: output.write(contentsOf: [0x5C, UInt8(ascii: "r")])
            case 0x09: output.write(contentsOf: [0x5C, UInt8(ascii: "t")])
            case 0x08: output.write(contentsOf: [0x5C, UInt8(ascii: "b")])
            case 0x0C: output.write(contentsOf: [0x5C, UInt8(ascii: "f")])
            case 0x00..<0x20:
                let hex = Array("0123456789abcdef".utf8)
                output.write(contentsOf: Array("\\u00".utf8))
                output.write(hex[Int(byte >> 4)])
                output.write(hex[Int(byte & 0x0F)])
            default: output.write(byte)
            }
        }
        output.write(UInt8(ascii: "\""))
    }

    /// Writes `octets` as a JSON string of their base64, encoded straight into the output. Base64 needs no
    /// escaping, so this is what ``string(_:)`` would write for `Base64.encode(octets)`, without that copy.
    mutating func base64String(_ octets: [UInt8]) {
        output.write(UInt8(ascii: "\""))
        output.writeBase64(of: octets)
        output.write(UInt8(ascii: "\""))
    }

    /// Writes the base64 that `content` decodes to, as a JSON string, decoding and re-encoding it straight
    /// into the output: the canonical form ACS expects (no line breaks), with no decoded copy held.
    mutating func base64String(reencoding content: Base64Content) {
        output.write(UInt8(ascii: "\""))
        output.writeBase64(reencoding: content)
        output.write(UInt8(ascii: "\""))
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
        output.write(bracket)
        depth += 1
        hasElement.append(false)
    }

    private mutating func close(_ bracket: UInt8) {
        depth -= 1
        if hasElement.removeLast(), pretty {
            newline()
        }
        output.write(bracket)
    }

    private mutating func separate() {
        if hasElement[hasElement.count - 1] {
            output.write(UInt8(ascii: ","))
        }
        hasElement[hasElement.count - 1] = true
        if pretty {
            newline()
        }
    }

    private mutating func newline() {
        output.write(UInt8(ascii: "\n"))
        output.write(contentsOf: repeatElement(UInt8(ascii: " "), count: 2 * depth))
    }
}
