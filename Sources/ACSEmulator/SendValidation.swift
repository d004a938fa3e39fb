import ACSEmail
import Foundation

/// A send request that passed validation: the message as ACS would process it.
struct ValidatedSend: Sendable {
    /// The message, with invalid attachments removed when the sender asked for that.
    var message: EmailMessage
    /// The request body as a JSON value, for the record (`/admin/messages`, `--record`).
    var requestJSON: JSONValue
    /// Names of attachments dropped under `x-ms-acsemail-suppress-invalid-attachment: true`.
    var droppedAttachments: [String]
}

/// The payload rules of `POST /emails:send` (acs-email-api.md §2.2, §6, §7, §8 "Send validation"), each
/// failing with the ACS error shape. Pure: configuration in, body in, verdict out.
struct SendValidator: Sendable {
    var configuration: EmulatorConfiguration

    /// The reserved custom headers that change validation (acs-email-api.md §6).
    static let suppressInvalidAttachmentHeader = "x-ms-acsemail-suppress-invalid-attachment"
    static let ignoreDuplicateContentIDHeader = "x-ms-acsemail-ignore-duplicate-content-id"
    static let validateMessageIDHeader = "x-ms-acsemail-validate-message-id"

    func validate(body: [UInt8], apiVersion: String) -> Result<ValidatedSend, ACSErrorResponse> {
        guard let json = JSONValue(parsing: body), case .object(var object) = json else {
            return .failure(.badRequest("The request body is not a valid JSON object."))
        }
        guard case .string(let sender)? = object["senderAddress"], !sender.isEmpty else {
            return .failure(.badRequest("The senderAddress field is required and must be a non-empty string."))
        }
        guard case .object(let content)? = object["content"] else {
            return .failure(.badRequest("The content field is required and must be an object."))
        }
        guard case .string(let subject)? = content["subject"], !subject.isEmpty else {
            return .failure(.badRequest("The content.subject field is required and must be a non-empty string."))
        }
        guard case .object(var recipients)? = object["recipients"] else {
            return .failure(.badRequest("The recipients field is required and must be an object."))
        }
        // QUIRK: the Azure CLI sends `"to": null` when only cc/bcc are given (§2.2 "Recipients"), and ACS
        // accepts it; the model's `to` is required, so an absent or null `to` is read as [].
        var schemaInput = body
        if recipients["to"] == nil || recipients["to"] == .null {
            recipients["to"] = .array([])
            object["recipients"] = .object(recipients)
            schemaInput = JSONValue.object(object).serialized()
        }
        let message: EmailMessage
        do {
            message = try JSONDecoder().decode(EmailMessage.self, from: Data(schemaInput))
        } catch {
            return .failure(
                .badRequest("The request body does not match the EmailMessage schema: \(Self.describe(error))"))
        }
        return validate(message, requestJSON: json, apiVersion: apiVersion)
    }

    private func validate(
        _ original: EmailMessage, requestJSON: JSONValue, apiVersion: String
    ) -> Result<ValidatedSend, ACSErrorResponse> {
        var message = original
        if (message.content.plainText ?? "").isEmpty && (message.content.html ?? "").isEmpty {
            return .failure(.badRequest("Email content must have either HTML or PlainText."))
        }
        let recipientCount = message.recipients.count
        if recipientCount == 0 {
            return .failure(.badRequest("At least one recipient is required in to, cc or bcc."))
        }
        if recipientCount > configuration.maxRecipients {
            return .failure(
                .badRequest(
                    "The message has \(recipientCount) recipients; at most \(configuration.maxRecipients) "
                        + "(to + cc + bcc) are allowed."))
        }
        if !Self.isValidAddress(message.senderAddress) {
            return .failure(.invalidEmailAddress(message.senderAddress, field: "senderAddress"))
        }
        let lists: [(String, [EmailAddress])] = [
            ("recipients.to", message.recipients.to), ("recipients.cc", message.recipients.cc ?? []),
            ("recipients.bcc", message.recipients.bcc ?? []), ("replyTo", message.replyTo ?? []),
        ]
        for (field, addresses) in lists {
            if let bad = addresses.first(where: { !Self.isValidAddress($0.address) }) {
                return .failure(.invalidEmailAddress(bad.address, field: field))
            }
        }
        if let senderError = checkSender(message.senderAddress) {
            return .failure(senderError)
        }
        var dropped: [String] = []
        if let attachments = message.attachments {
            let suppress = Self.headerIsTrue(message.headers, Self.suppressInvalidAttachmentHeader)
            var kept: [EmailAttachment] = []
            for (index, attachment) in attachments.enumerated() {
                if let problem = Self.attachmentProblem(attachment) {
                    if suppress {
                        dropped.append(attachment.name)
                        continue
                    }
                    return .failure(.badRequest("Attachment \(index) ('\(attachment.name)'): \(problem)"))
                }
                kept.append(attachment)
            }
            if EmulatorConfiguration.supportsContentID(apiVersion)
                && !Self.headerIsTrue(message.headers, Self.ignoreDuplicateContentIDHeader)
            {
                var seen = Set<String>()
                for contentID in kept.compactMap(\.contentId) where !seen.insert(contentID.lowercased()).inserted {
                    return .failure(.badRequest("Duplicate attachment contentId '\(contentID)'."))
                }
            }
            message.attachments = kept
        }
        // Without the header ACS silently drops a malformed Message-ID and makes its own (§6), so only a
        // sender who asked for strict validation gets a 400.
        if Self.headerIsTrue(message.headers, Self.validateMessageIDHeader),
            let messageID = message.headers?.first(where: { $0.key.lowercased() == "message-id" })?.value,
            !Self.isValidMessageID(messageID)
        {
            return .failure(.badRequest("The Message-ID header '\(messageID)' is not of the form <id@domain>."))
        }
        return .success(ValidatedSend(message: message, requestJSON: requestJSON, droppedAttachments: dropped))
    }

    /// A sender on an unlinked domain is 404 `DomainNotLinked`; an unknown user name on a linked domain is
    /// 400 `InvalidSenderUserName` (acs-email-api.md §1.8, §2.2 "Sender").
    private func checkSender(_ address: String) -> ACSErrorResponse? {
        guard let at = address.lastIndex(of: "@") else { return nil }
        let localPart = address[..<at].lowercased()
        let domain = address[address.index(after: at)...].lowercased()
        if !configuration.senderDomains.isEmpty
            && !configuration.senderDomains.contains(where: { $0.lowercased() == domain })
        {
            return ACSErrorResponse(
                status: 404, code: "DomainNotLinked", message: "The specified sender domain has not been linked.")
        }
        if !configuration.senderAddresses.isEmpty {
            let allowed = configuration.senderAddresses.contains { entry in
                let entry = entry.lowercased()
                return entry.contains("@") ? entry == address.lowercased() : entry == localPart
            }
            if !allowed {
                return ACSErrorResponse(
                    status: 400, code: "InvalidSenderUserName", message: "Invalid email sender username.")
            }
        }
        return nil
    }

    /// Why ACS would refuse an attachment (§2.2 "Attachments", §7.1), or nil.
    static func attachmentProblem(_ attachment: EmailAttachment) -> String? {
        if attachment.name.isEmpty {
            return "the name must not be empty."
        }
        if !AttachmentTypes.isAllowed(attachment.contentType) {
            return "the content type '\(attachment.contentType)' is not an allowed attachment type."
        }
        guard let data = Data(base64Encoded: attachment.contentInBase64) else {
            return "contentInBase64 is not valid base64."
        }
        if data.isEmpty {
            return "Attachment Content cannot be empty."
        }
        return nil
    }

    /// `<left@right>` with non-empty parts and no spaces or further brackets (RFC 5322 §3.6.4, as the
    /// examples of acs-email-api.md §6 read it: `<guid>` and `guid@domain.com` are refused).
    static func isValidMessageID(_ value: String) -> Bool {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        guard trimmed.hasPrefix("<"), trimmed.hasSuffix(">"), trimmed.count > 2 else { return false }
        let inner = trimmed.dropFirst().dropLast()
        let parts = inner.split(separator: "@", omittingEmptySubsequences: false)
        return parts.count == 2 && parts.allSatisfy { !$0.isEmpty }
            && !inner.contains(where: { $0 == " " || $0 == "<" || $0 == ">" })
    }

    /// Whether the custom header `name` (case-insensitive) is `true` (case-insensitive).
    static func headerIsTrue(_ headers: [String: String]?, _ name: String) -> Bool {
        headers?.contains {
            $0.key.lowercased() == name && $0.value.trimmingCharacters(in: .whitespaces).lowercased() == "true"
        }
            ?? false
    }

    /// An address as ACS accepts it: `local@domain` with one `@`, a non-empty local part without spaces or
    /// control characters, and a dotted host of letters, digits and hyphens (the .NET SDK's
    /// `MailAddress` check plus a dotted host, §2.2 "Addresses"). Non-ASCII letters are allowed (IDN, EAI).
    static func isValidAddress(_ address: String) -> Bool {
        let parts = address.split(separator: "@", omittingEmptySubsequences: false)
        guard parts.count == 2, let local = parts.first, let domain = parts.last else { return false }
        guard !local.isEmpty, local.utf8.count <= 64, !local.hasPrefix("."), !local.hasSuffix("."),
            !local.contains("..")
        else { return false }
        let forbiddenInLocal = Set("()<>[]\\,;:\" ")
        guard local.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7F }),
            !local.contains(where: { forbiddenInLocal.contains($0) })
        else { return false }
        let labels = domain.split(separator: ".", omittingEmptySubsequences: false)
        guard labels.count >= 2, domain.utf8.count <= 253 else { return false }
        for label in labels {
            guard !label.isEmpty, label.utf8.count <= 63, !label.hasPrefix("-"), !label.hasSuffix("-"),
                label.unicodeScalars.allSatisfy({
                    ($0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "-")) || $0.value > 0x7F
                })
            else { return false }
        }
        return true
    }

    /// A one-line description of a decoding error that names the offending field.
    static func describe(_ error: Error) -> String {
        guard let error = error as? DecodingError else { return "\(error)" }
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch error {
        case .keyNotFound(let key, let context):
            let prefix = path(context)
            return "the field \(prefix.isEmpty ? "" : prefix + ".")\(key.stringValue) is required."
        case .typeMismatch(_, let context), .valueNotFound(_, let context), .dataCorrupted(let context):
            return "the field \(path(context)) has the wrong type."
        @unknown default:
            return "\(error)"
        }
    }
}
