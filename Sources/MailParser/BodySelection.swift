/// The RFC 8621 §4.1.4 body-selection algorithm (`parseStructure`), transcribed faithfully.
///
/// The RFC gives it as recursive JavaScript; here the recursion is an explicit stack of frames
/// so that the depth of the input can never exhaust the thread's stack. Each frame holds what
/// the JavaScript keeps in locals: the multipart type, `inAlternative`, whether its own
/// `textBody`/`htmlBody` variables have been set to `null`, and the lengths at entry.
enum BodySelection {
    struct Result {
        var textBody: [MIMEPart] = []
        var htmlBody: [MIMEPart] = []
        var attachments: [MIMEPart] = []
    }

    private struct Frame {
        var parts: [MIMEPart]
        var multipartType: String
        var inAlternative: Bool
        var textIsNull: Bool
        var htmlIsNull: Bool
        var textLength: Int
        var htmlLength: Int
        var next = 0
    }

    /// `image/*`, `audio/*`, `video/*` (RFC 8621 `isInlineMediaType`).
    static func isInlineMediaType(_ type: String) -> Bool {
        type.hasPrefix("image/") || type.hasPrefix("audio/") || type.hasPrefix("video/")
    }

    /// Runs `parseStructure([bodyStructure], "mixed", false, htmlBody, textBody, attachments)`.
    static func select(_ root: MIMEPart) -> Result {
        var result = Result()
        var stack = [
            Frame(
                parts: [root], multipartType: "mixed", inAlternative: false, textIsNull: false,
                htmlIsNull: false, textLength: 0, htmlLength: 0)
        ]
        while let top = stack.indices.last {
            var frame = stack[top]
            guard frame.next < frame.parts.count else {
                // End of this call: the "found only one flavour" fix-up for multipart/alternative.
                if frame.multipartType == "alternative" && !frame.textIsNull && !frame.htmlIsNull {
                    if frame.textLength == result.textBody.count && frame.htmlLength != result.htmlBody.count {
                        result.textBody.append(contentsOf: result.htmlBody[frame.htmlLength...])
                    }
                    if frame.htmlLength == result.htmlBody.count && frame.textLength != result.textBody.count {
                        result.htmlBody.append(contentsOf: result.textBody[frame.textLength...])
                    }
                }
                stack.removeLast()
                continue
            }
            let i = frame.next
            let part = frame.parts[i]
            frame.next += 1
            defer { stack[top] = frame }

            if part.isMultipart {
                let subMultiType = String(part.contentType.dropFirst("multipart/".count))
                stack.append(
                    Frame(
                        parts: part.children, multipartType: subMultiType,
                        inAlternative: frame.inAlternative || subMultiType == "alternative",
                        textIsNull: frame.textIsNull, htmlIsNull: frame.htmlIsNull,
                        textLength: frame.textIsNull ? -1 : result.textBody.count,
                        htmlLength: frame.htmlIsNull ? -1 : result.htmlBody.count))
                continue
            }
            let type = part.contentType
            // Is this a body part rather than an attachment?
            let isInline =
                part.dispositionType != "attachment"
                // Must be one of the allowed body types.
                && (type == "text/plain" || type == "text/html" || isInlineMediaType(type))
                // If multipart/related, only the first part can be inline. If a text part with a
                // filename, and not the first item in the multipart, assume it is an attachment.
                && (i == 0 || (frame.multipartType != "related" && (isInlineMediaType(type) || part.filename == nil)))
            guard isInline else {
                result.attachments.append(part)
                continue
            }
            if frame.multipartType == "alternative" {
                switch type {
                case "text/plain":
                    if !frame.textIsNull { result.textBody.append(part) }
                case "text/html":
                    if !frame.htmlIsNull { result.htmlBody.append(part) }
                default:
                    result.attachments.append(part)
                }
                continue
            } else if frame.inAlternative {
                if type == "text/plain" { frame.htmlIsNull = true }
                if type == "text/html" { frame.textIsNull = true }
            }
            if !frame.textIsNull { result.textBody.append(part) }
            if !frame.htmlIsNull { result.htmlBody.append(part) }
            if (frame.textIsNull || frame.htmlIsNull) && isInlineMediaType(type) {
                result.attachments.append(part)
            }
        }
        return result
    }
}
