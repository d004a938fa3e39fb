/// Builds the MIME entity tree (RFC 2045 §2.4, RFC 2046 §5) in one pass per message, without
/// recursion.
///
/// Each message (the top-level one, and each embedded `message/rfc822`) is scanned line by
/// line once, with a stack of the open multipart boundaries. A line that starts a delimiter is
/// matched against the innermost boundary first, then the enclosing ones (RFC 2046 §5.1.2):
/// an enclosing boundary ends the inner multiparts whose close delimiter is missing.
/// Embedded messages are queued as separate work items and parsed with a fresh stack.
///
/// Entities go into a flat node list; part numbers are assigned afterwards in pre-order, and
/// the value tree is assembled bottom-up. Depth, entity count and header size are capped by
/// ``MailParser/Limits``, so time is O(size × depth) and memory O(size × embedded-message depth)
/// on any input.
struct EntityParser {
    /// A buffer to parse: a whole message, or the decoded body of a transfer-encoded multipart.
    private struct WorkItem {
        var buffer: ArraySlice<UInt8>
        /// For a message: the `message/rfc822` node it is embedded in (nil for the top level).
        var parent: Int?
        var depth: Int
        /// When set, `buffer` is the body of this existing multipart node, not a message.
        var bodyOf: (node: Int, boundary: Boundary, subtype: String)?
    }

    private struct Node {
        var part: MIMEPart
        var children: [Int] = []
        var depth: Int
        /// How many decoded-and-reparsed copies enclose this entity (embedded messages and
        /// transfer-encoded multiparts); capped by `maxEmbeddedMessageDepth`.
        var copyDepth = 0
        /// The root entity of an embedded message: it starts a new numbering.
        var isMessageRoot = false
    }

    /// A multipart whose body is being scanned.
    private struct OpenMultipart {
        var node: Int
        var boundary: Boundary
        var subtype: String
        var depth: Int
        var sawDelimiter = false
        /// The body was transfer-decoded already (a transfer-encoded multipart, RFC 2045 §6.4).
        var isDecodedBody = false
    }

    /// The content the scanner is currently in; it ends at the next delimiter line.
    private enum Region {
        case entityBody(node: Int, start: Int)
        case preamble(node: Int, start: Int)
        case epilogue(node: Int, start: Int)
        case nothing
    }

    let limits: MailParser.Limits
    private var nodes: [Node] = []
    private var work: [WorkItem] = []
    private var pendingDiagnostics: [(code: String, message: String, node: Int?)] = []
    private var reportedPartLimit = false

    init(limits: MailParser.Limits) {
        self.limits = limits
    }

    /// Parses `message` into its root entity and the diagnostics found.
    mutating func parse(_ message: [UInt8]) -> (root: MIMEPart, diagnostics: [MailDiagnostic]) {
        work = [WorkItem(buffer: message[...], parent: nil, depth: 0, bodyOf: nil)]
        while let item = work.popLast() {
            scan(item)
        }
        let topIndex = number()
        let diagnostics = pendingDiagnostics.map { pending in
            MailDiagnostic(
                code: pending.code, message: pending.message,
                partIndex: pending.node.map { topIndex[$0] })
        }
        return (assemble(), diagnostics)
    }

    private mutating func note(_ code: String, _ message: String, _ node: Int?) {
        pendingDiagnostics.append((code, message, node))
    }

    // MARK: - Scanning one buffer

    private mutating func scan(_ item: WorkItem) {
        let buffer = item.buffer
        var open: [OpenMultipart] = []
        var region: Region
        var cursor: Int
        if let body = item.bodyOf {
            open.append(
                OpenMultipart(
                    node: body.node, boundary: body.boundary, subtype: body.subtype, depth: item.depth,
                    isDecodedBody: true))
            region = .preamble(node: body.node, start: buffer.startIndex)
            cursor = buffer.startIndex
        } else {
            guard
                let entered = beginEntity(
                    in: buffer, at: buffer.startIndex, open: &open, depth: item.depth, parent: item.parent,
                    defaultType: "text/plain", isInRelated: false, isMessageRoot: true)
            else { return }
            (region, cursor) = entered
        }

        while true {
            let delimiter = nextDelimiter(in: buffer, from: cursor, open: open)
            finish(region, in: buffer, before: delimiter?.lineStart)
            guard let delimiter else { break }
            // An enclosing boundary implicitly closes the multiparts nested inside it.
            while open.count - 1 > delimiter.level, let inner = open.popLast() {
                note(
                    "multipart-missing-close-delimiter", "multipart/\(inner.subtype) has no close delimiter", inner.node
                )
                close(inner, in: buffer)
            }
            open[delimiter.level].sawDelimiter = true
            if delimiter.isClose {
                let closed = open.removeLast()
                close(closed, in: buffer)
                region = .epilogue(node: closed.node, start: delimiter.next)
                cursor = delimiter.next
                continue
            }
            let container = open[delimiter.level]
            // A delimiter followed only by blank lines at the end is a missing close delimiter,
            // not an empty part (Stalwart and Dovecot agree).
            if buffer[delimiter.next...].allSatisfy({ $0 == 0x0A || $0 == 0x0D || $0 == 0x20 || $0 == 0x09 }) {
                region = .nothing
                cursor = buffer.endIndex
                continue
            }
            guard
                let entered = beginEntity(
                    in: buffer, at: delimiter.next, open: &open, depth: container.depth + 1, parent: container.node,
                    // RFC 2046 §5.1.5: in a digest the default type is message/rfc822.
                    defaultType: container.subtype == "digest" ? "message/rfc822" : "text/plain",
                    isInRelated: container.subtype == "related", isMessageRoot: false)
            else {
                region = .nothing
                cursor = buffer.endIndex
                continue
            }
            (region, cursor) = entered
        }
        while let inner = open.popLast() {
            if inner.sawDelimiter {
                note(
                    "multipart-missing-close-delimiter", "multipart/\(inner.subtype) has no close delimiter", inner.node
                )
            }
            close(inner, in: buffer)
        }
    }

    /// The next delimiter line at or after `start`, matched innermost boundary first.
    private func nextDelimiter(
        in buffer: ArraySlice<UInt8>, from start: Int, open: [OpenMultipart]
    ) -> (lineStart: Int, next: Int, level: Int, isClose: Bool)? {
        guard !open.isEmpty else { return nil }
        var index = start
        let end = buffer.endIndex
        while index < end {
            var lineEnd = index
            while lineEnd < end, buffer[lineEnd] != 0x0A { lineEnd += 1 }
            let next = lineEnd < end ? lineEnd + 1 : end
            if buffer[index] == UInt8(ascii: "-"), let found = Self.match(buffer[index..<lineEnd], open) {
                return (index, next, found.level, found.isClose)
            }
            index = next
        }
        return nil
    }

    private static func match(_ line: ArraySlice<UInt8>, _ open: [OpenMultipart]) -> (level: Int, isClose: Bool)? {
        for level in open.indices.reversed() {
            if let isClose = open[level].boundary.match(line) { return (level, isClose) }
        }
        return nil
    }

    /// Parses the header block at `start` and creates the entity's node.
    /// - Returns: the region its content starts, and where that content starts; `nil` when
    ///   the part limit is reached.
    private mutating func beginEntity(
        in buffer: ArraySlice<UInt8>, at start: Int, open: inout [OpenMultipart], depth: Int, parent: Int?,
        defaultType: String, isInRelated: Bool, isMessageRoot: Bool
    ) -> (Region, Int)? {
        guard nodes.count < limits.effectiveMaxParts else {
            if !reportedPartLimit {
                reportedPartLimit = true
                note(
                    "part-limit-exceeded", "more than \(limits.effectiveMaxParts) entities; the rest is not parsed", nil
                )
            }
            return nil
        }
        let openSnapshot = open
        let header = HeaderBlock.parse(
            buffer[start...], maxSize: limits.maxHeaderBlockSize, allowMboxLine: isMessageRoot && parent == nil,
            endsBlock: { line in Self.match(line, openSnapshot) != nil })
        let nodeID = nodes.count
        var part = Self.describe(header.fields, defaultType: defaultType)
        part.isInRelated = isInRelated
        var copyDepth = 0
        if let parent { copyDepth = nodes[parent].copyDepth + (isMessageRoot ? 1 : 0) }
        nodes.append(Node(part: part, depth: depth, copyDepth: copyDepth, isMessageRoot: isMessageRoot))
        if let parent { nodes[parent].children.append(nodeID) }

        if header.report.truncated {
            note(
                "header-block-too-large", "header block over \(limits.maxHeaderBlockSize) octets; later fields dropped",
                nodeID)
        }
        if header.report.missingSeparator && !header.fields.isEmpty {
            note("header-missing-separator", "no empty line after the header fields", nodeID)
        }
        if header.report.repairedLeadingWhitespace {
            note("header-leading-whitespace", "the header block started with whitespace; read past it", nodeID)
        }
        if header.report.skippedMboxLine {
            note("header-mbox-from-line", "skipped an mbox \"From \" line before the header", nodeID)
        }
        if part.contentType == "text/plain", let declared = Self.declaredType(header.fields),
            declared != "text/plain", declared != "text"
        {
            note(
                "content-type-invalid", "invalid Content-Type \"\(declared)\"; read as text/plain (RFC 2045 §5.2)",
                nodeID)
        }

        guard part.contentType.hasPrefix("multipart/") else {
            return (.entityBody(node: nodeID, start: header.bodyStart), header.bodyStart)
        }
        guard depth < limits.effectiveMaxDepth else {
            note("depth-limit-exceeded", "nesting deeper than \(limits.effectiveMaxDepth); kept unparsed", nodeID)
            nodes[nodeID].part.contentType = "application/octet-stream"
            return (.entityBody(node: nodeID, start: header.bodyStart), header.bodyStart)
        }
        guard let boundary = part.parameters["boundary"].flatMap(Boundary.init) else {
            // QUIRK: without a boundary there are no parts; rather than lose the body, read the
            // entity as one text/plain leaf (RFC 2045 §5.2's default for an unusable type).
            note(
                "multipart-missing-boundary", "\(part.contentType) without a boundary parameter; read as text/plain",
                nodeID)
            nodes[nodeID].part.contentType = "text/plain"
            return (.entityBody(node: nodeID, start: header.bodyStart), header.bodyStart)
        }
        let encoding = part.transferEncoding
        if encoding == "base64" || encoding == "quoted-printable" {
            // RFC 2045 §6.4 forbids encoding a multipart; its body is decoded, then split.
            return (.entityBody(node: nodeID, start: header.bodyStart), header.bodyStart)
        }
        let subtype = String(part.contentType.dropFirst("multipart/".count))
        open.append(OpenMultipart(node: nodeID, boundary: boundary, subtype: subtype, depth: depth))
        return (.preamble(node: nodeID, start: header.bodyStart), header.bodyStart)
    }

    /// Ends the current region just before the delimiter line at `delimiterLine` (or at the end).
    private mutating func finish(_ region: Region, in buffer: ArraySlice<UInt8>, before delimiterLine: Int?) {
        switch region {
        case .nothing:
            return
        case .preamble(let node, let start):
            nodes[node].part.preamble = Array(buffer[start..<contentEnd(buffer, before: delimiterLine, floor: start)])
        case .epilogue(let node, let start):
            nodes[node].part.epilogue = Array(buffer[start..<contentEnd(buffer, before: delimiterLine, floor: start)])
        case .entityBody(let node, let start):
            let body = buffer[start..<contentEnd(buffer, before: delimiterLine, floor: start)]
            finishBody(node, body)
        }
    }

    /// The line break before a delimiter belongs to the delimiter (RFC 2046 §5.1.1).
    private func contentEnd(_ buffer: ArraySlice<UInt8>, before delimiterLine: Int?, floor: Int) -> Int {
        guard var end = delimiterLine else { return buffer.endIndex }
        if end > floor, buffer[end - 1] == 0x0A {
            end -= 1
            if end > floor, buffer[end - 1] == 0x0D { end -= 1 }
        }
        return max(end, floor)
    }

    private mutating func finishBody(_ node: Int, _ body: ArraySlice<UInt8>, isDecoded: Bool = false) {
        let part = nodes[node].part
        let encoding = part.transferEncoding
        if !isDecoded, encoding == "base64", Self.keepsEncoded(part.contentType) {
            // Such content is only ever written out again (as an attachment, in base64): its octets stay a slice
            // of the message, checked here with the same diagnostics, and are decoded when read
            // (TransferDecodingTests.base64Attachment_isKeptEncoded_andDecodesToTheSameOctets).
            var counter = OctetCounter()
            noteBase64(TransferDecoding.base64(body, into: &counter), node: node)
            nodes[node].part.storedContent = .base64(Base64Content(encoded: body, decodedCount: counter.count))
            return
        }
        let content = isDecoded ? Array(body) : decode(body, encoding: encoding, node: node)
        let depth = nodes[node].depth
        if part.contentType.hasPrefix("multipart/") {
            // A transfer-encoded multipart (see beginEntity): split the decoded body.
            note("multipart-transfer-encoded", "multipart entity with \(encoding) encoding; decoded first", node)
            let subtype = String(part.contentType.dropFirst("multipart/".count))
            guard nodes[node].copyDepth < limits.maxEmbeddedMessageDepth,
                let boundary = part.parameters["boundary"].flatMap(Boundary.init)
            else {
                note("depth-limit-exceeded", "too many decoded levels; kept unparsed", node)
                nodes[node].part.contentType = "application/octet-stream"
                nodes[node].part.content = content
                return
            }
            // Its children live in the decoded copy: count it like an embedded message.
            nodes[node].copyDepth += 1
            work.append(WorkItem(buffer: content[...], parent: nil, depth: depth, bodyOf: (node, boundary, subtype)))
            return
        }
        nodes[node].part.content = content
        if part.contentType == "message/rfc822" || part.contentType == "message/global" {
            if encoding == "base64" || encoding == "quoted-printable" {
                // RFC 2046 §5.2.1 allows only 7bit/8bit/binary; decoding first is what the sender meant
                // (mime4j does the same; Python does not, smtp-behaviour.md §5.3 #3).
                note("message-transfer-encoded", "message/rfc822 with \(encoding) encoding; decoded first", node)
            }
            guard depth < limits.effectiveMaxDepth, nodes[node].copyDepth < limits.maxEmbeddedMessageDepth else {
                note("depth-limit-exceeded", "embedded message nested too deeply; kept unparsed", node)
                return
            }
            work.append(WorkItem(buffer: content[...], parent: node, depth: depth + 1, bodyOf: nil))
            return
        }
        if part.contentType.hasPrefix("text/") {
            let (text, outcome) = Charset.decode(content, label: part.charset)
            nodes[node].part.text = text
            switch outcome {
            case .exact:
                break
            case .undeclared8Bit(let used):
                note("charset-undeclared-8bit", "8-bit text without a usable charset; read as \(used)", node)
            case .unknown(let declared, let used):
                note("charset-unknown", "unknown charset \"\(declared)\"; read as \(used)", node)
            case .invalidOctets(let count):
                note(
                    "charset-invalid-octets", "\(count) octets invalid in \(part.charset ?? "utf-8") became U+FFFD",
                    node)
            }
        }
    }

    /// A multipart leaves the stack: one that never saw a delimiter becomes a text/plain leaf
    /// holding what would have been its preamble (QUIRK, as for a missing boundary).
    private mutating func close(_ multipart: OpenMultipart, in buffer: ArraySlice<UInt8>) {
        guard !multipart.sawDelimiter else { return }
        let node = multipart.node
        note(
            "multipart-boundary-not-found", "no delimiter line in multipart/\(multipart.subtype); read as text/plain",
            node)
        nodes[node].part.contentType = "text/plain"
        let preamble = nodes[node].part.preamble
        nodes[node].part.preamble = []
        finishBody(node, preamble[...], isDecoded: multipart.isDecodedBody)
    }

    private mutating func decode(_ body: ArraySlice<UInt8>, encoding: String, node: Int) -> [UInt8] {
        switch encoding {
        case "base64":
            let (octets, report) = TransferDecoding.base64(body)
            noteBase64(report, node: node)
            return octets
        case "quoted-printable":
            let (octets, report) = TransferDecoding.quotedPrintable(body)
            if report.invalidEscapes > 0 {
                note(
                    "quoted-printable-invalid-escape",
                    "\(report.invalidEscapes) malformed \"=\" escapes kept as written", node)
            }
            return octets
        case "7bit", "8bit", "binary":
            return Array(body)
        default:
            note(
                "transfer-encoding-unknown", "unknown Content-Transfer-Encoding \"\(encoding)\"; content kept as is",
                node)
            return Array(body)
        }
    }

    /// The diagnostics of a lenient base64 decode.
    private mutating func noteBase64(_ report: TransferDecoding.Base64Report, node: Int) {
        if report.invalidCharacters > 0 {
            note(
                "base64-invalid-characters",
                "\(report.invalidCharacters) octets outside the base64 alphabet skipped", node)
        }
        if report.missingPadding {
            note("base64-missing-padding", "base64 without final \"=\" padding; decoded anyway", node)
        }
        if report.danglingCharacter {
            note("base64-truncated", "base64 ends with a lone character, dropped", node)
        }
        if report.dataAfterPadding {
            note("base64-data-after-padding", "base64 continues after \"=\" padding; the rest is ignored", node)
        }
    }

    /// Whether a base64 leaf of this type keeps its encoded octets rather than decoded ones: everything but
    /// text (read as text for the bodies) and embedded messages (parsed), and multiparts (split).
    private static func keepsEncoded(_ contentType: String) -> Bool {
        !contentType.hasPrefix("text/") && !contentType.hasPrefix("multipart/") && contentType != "message/rfc822"
            && contentType != "message/global"
    }

    // MARK: - Header interpretation

    /// Builds an entity description (no content yet) from its header fields.
    static func describe(_ fields: [HeaderField], defaultType: String) -> MIMEPart {
        func first(_ name: String) -> HeaderField? {
            fields.first { $0.name.lowercased() == name }
        }
        // Content-Type (RFC 2045 §5): absent → the context default; invalid → text/plain; charset=us-ascii
        // (§5.2). QUIRK: a charset parameter beside the invalid type is kept: the generators that write such
        // types still label their text correctly, and 8-bit text under us-ascii is sniffed anyway (Charset).
        var contentType = defaultType
        var parameters: [String: String] = [:]
        if let field = first("content-type") {
            let parsed = ContentParameters.parse(field.rawValue)
            parameters = parsed.parameters
            if isValidMediaType(parsed.value) {
                contentType = parsed.value
            } else if !parsed.value.isEmpty {
                contentType = "text/plain"
                if nonEmpty(parameters["charset"]) == nil { parameters["charset"] = "us-ascii" }
            }
        }
        var dispositionType: String?
        var dispositionParameters: [String: String] = [:]
        if let field = first("content-disposition") {
            let parsed = ContentParameters.parse(field.rawValue)
            dispositionType = parsed.value.isEmpty ? nil : parsed.value
            dispositionParameters = parsed.parameters
        }
        var transferEncoding = "7bit"
        if let field = first("content-transfer-encoding") {
            let value = ContentParameters.parse(field.rawValue).value
            if !value.isEmpty { transferEncoding = value }
        }
        return MIMEPart(
            headers: fields, contentType: contentType, parameters: parameters, dispositionType: dispositionType,
            filename: nonEmpty(dispositionParameters["filename"]) ?? nonEmpty(parameters["name"]),
            contentID: first("content-id").flatMap { stripAngles($0.value) },
            charset: nonEmpty(parameters["charset"]?.lowercased()), transferEncoding: transferEncoding)
    }

    /// The declared Content-Type value (lower-cased, no parameters), if any.
    private static func declaredType(_ fields: [HeaderField]) -> String? {
        fields.first { $0.name.lowercased() == "content-type" }.map { ContentParameters.parse($0.rawValue).value }
            .flatMap { $0.isEmpty ? nil : $0 }
    }

    /// `type "/" subtype`, each an RFC 2045 §5.1 token: printable US-ASCII except SPACE and the tspecials.
    private static func isValidMediaType(_ value: String) -> Bool {
        let pieces = value.split(separator: "/", omittingEmptySubsequences: false)
        guard pieces.count == 2 else { return false }
        return pieces.allSatisfy { piece in
            !piece.isEmpty && piece.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F && !tspecials.contains($0) }
        }
    }

    /// RFC 2045 §5.1 `tspecials` ("/" separates type and subtype, so it is not in a piece either).
    private static let tspecials: Set<UInt8> = Set("()<>@,;:\\\"/[]?=".utf8)

    private static func nonEmpty(_ value: String?) -> String? {
        guard let value else { return nil }
        let trimmed = value.trimmingASCIIWhitespace()
        return trimmed.isEmpty ? nil : trimmed
    }

    // MARK: - Numbering and assembly

    /// Assigns pre-order part indices, restarting at 0 for each embedded message (Stalwart's
    /// numbering). Returns, per node, the top-level index used to attribute diagnostics.
    private mutating func number() -> [Int] {
        var topIndex = [Int](repeating: 0, count: nodes.count)
        guard !nodes.isEmpty else { return topIndex }
        var counters: [Int] = [0]
        // (node, numbering space, top-level index of the outermost enclosing message part)
        var stack: [(node: Int, space: Int, top: Int?)] = [(0, 0, nil)]
        while let (node, space, top) = stack.popLast().map({ ($0.node, $0.space, $0.top) }) {
            let index = counters[space]
            counters[space] += 1
            nodes[node].part.partIndex = index
            let attributed = top ?? index
            topIndex[node] = attributed
            for child in nodes[node].children.reversed() {
                if nodes[child].isMessageRoot {
                    counters.append(0)
                    stack.append((child, counters.count - 1, attributed))
                } else {
                    stack.append((child, space, top))
                }
            }
        }
        return topIndex
    }

    /// Children always have larger node ids than their parent (they are created later), so a
    /// reverse sweep finds every child already built.
    private mutating func assemble() -> MIMEPart {
        var built = [MIMEPart?](repeating: nil, count: nodes.count)
        for id in nodes.indices.reversed() {
            var part = nodes[id].part
            part.children = nodes[id].children.compactMap { child in
                let value = built[child]
                built[child] = nil
                return value
            }
            built[id] = part
            nodes[id].part = MIMEPart()
        }
        return built.first.flatMap { $0 } ?? MIMEPart()
    }
}

/// Strips whitespace and one pair of angle brackets: `<id@host>` → `id@host` (RFC 2392).
func stripAngles(_ value: String) -> String? {
    var text = value.trimmingASCIIWhitespace()
    if let open = text.firstIndex(of: "<") {
        let after = text[text.index(after: open)...]
        if let close = after.firstIndex(of: ">") {
            text = String(after[..<close])
        } else {
            text = String(after)
        }
    }
    text = text.trimmingASCIIWhitespace()
    return text.isEmpty ? nil : text
}
