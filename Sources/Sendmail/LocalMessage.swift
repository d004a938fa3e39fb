import Foundation
import MailParser

/// A message as a local program handed it to `sendmail`, made ready for submission: lines ending in CRLF, the
/// header fields a relay expects added when missing (`Date`, `Message-ID`, `From`), `Bcc` removed, and, with
/// `-t`, the recipients its `To`, `Cc` and `Bcc` fields name.
///
/// Local programs write what they like: bare LF line ends (all of them), no header at all (`echo hi | sendmail
/// root`), an mbox `From ` line first, no Date. Postfix's cleanup and nullmailer-inject repair the same things.
public struct LocalMessage: Sendable, Hashable {
    /// The header fields, each one whole (with its folded lines, without the final CRLF).
    public var fields: [[UInt8]]
    /// The body, CRLF line ends, without the empty line that separates it from the header.
    public var body: [UInt8]

    /// Who submits it: the invoking user, for an added `From`.
    public struct Author: Sendable, Hashable {
        public var user: String
        public var host: String
        /// `-F`, else the user's full name from the password database; nil for none.
        public var fullName: String?

        public init(user: String, host: String, fullName: String?) {
            self.user = user
            self.host = host
            self.fullName = fullName
        }

        public var address: String { "\(user)@\(host)" }
    }

    /// Reads the input: lines end at LF (a CR before it is dropped, so CRLF and LF input read the same). Unless
    /// `ignoreDots`, a line with a single dot ends the message, as it does for sendmail without `-i`. A leading
    /// mbox `From ` line is dropped. The header is the run of lines that are header fields (or their
    /// continuations) up to the first empty line; a line that is neither starts the body.
    public init(input: [UInt8], ignoreDots: Bool) {
        var lines: [ArraySlice<UInt8>] = []
        var start = 0
        var index = 0
        while index < input.count {
            if input[index] == UInt8(ascii: "\n") {
                var line = input[start..<index]
                if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
                lines.append(line)
                start = index + 1
            }
            index += 1
        }
        if start < input.count {
            var line = input[start...]
            if line.last == UInt8(ascii: "\r") { line = line.dropLast() }
            lines.append(line)
        }
        if !ignoreDots, let dot = lines.firstIndex(where: { $0.elementsEqual([UInt8(ascii: ".")]) }) {
            lines.removeSubrange(dot...)
        }
        if let first = lines.first, first.starts(with: Array("From ".utf8)) { lines.removeFirst() }

        var fields: [[UInt8]] = []
        var position = 0
        while position < lines.count {
            let line = lines[position]
            if let first = line.first, first == UInt8(ascii: " ") || first == UInt8(ascii: "\t"), !fields.isEmpty {
                fields[fields.count - 1] += [13, 10] + line
            } else if Self.isField(line) {
                fields.append(Array(line))
            } else {
                break
            }
            position += 1
        }
        // The empty line after the header belongs to neither part; without one, the body starts at once.
        if position < lines.count, lines[position].isEmpty { position += 1 }
        var body: [UInt8] = []
        body.reserveCapacity(input.count + lines.count)
        for line in lines[position...] {
            body += line
            body += [13, 10]
        }
        self.fields = fields
        self.body = body
    }

    /// `Name: value`, the name printable ASCII without a colon (RFC 5322 §2.2).
    static func isField(_ line: ArraySlice<UInt8>) -> Bool {
        guard let colon = line.firstIndex(of: UInt8(ascii: ":")), colon > line.startIndex else { return false }
        return line[..<colon].allSatisfy { $0 > 32 && $0 < 127 }
    }

    /// The lower-cased name of a field.
    static func name(of field: [UInt8]) -> String {
        let colon = field.firstIndex(of: UInt8(ascii: ":")) ?? field.endIndex
        return String(decoding: field[..<colon], as: UTF8.self).lowercased()
    }

    /// The body of a field (after the colon), unfolded.
    static func value(of field: [UInt8]) -> [UInt8] {
        guard let colon = field.firstIndex(of: UInt8(ascii: ":")) else { return [] }
        return field[(colon + 1)...].filter { $0 != 13 && $0 != 10 }
    }

    /// True when a field of this name (any case) is present.
    public func has(_ name: String) -> Bool {
        let name = name.lowercased()
        return fields.contains { Self.name(of: $0) == name }
    }

    /// The addresses of the `To`, `Cc` and `Bcc` fields (`-t`), in order.
    public var headerRecipients: [String] {
        fields.filter { ["to", "cc", "bcc"].contains(Self.name(of: $0)) }
            .flatMap { MailAddress.list(fromFieldBody: Self.value(of: $0)) }.map(\.address)
    }

    /// Removes every `Bcc` field: its recipients must not see each other, nor be seen by the others.
    public mutating func removeBcc() {
        fields.removeAll { Self.name(of: $0) == "bcc" }
    }

    /// Adds `From`, `Date` and `Message-ID` where missing. `now` is the RFC 5322 date text.
    public mutating func complete(author: Author, date: String, messageID: String) {
        if !has("from") {
            fields.insert(Array("From: \(Self.mailbox(author))".utf8), at: 0)
        }
        if !has("date") { fields.append(Array("Date: \(date)".utf8)) }
        if !has("message-id") { fields.append(Array("Message-ID: <\(messageID)>".utf8)) }
    }

    /// `Full Name <user@host>`, the name quoted when it has specials and RFC 2047-encoded when it is not ASCII;
    /// the bare address without a name.
    static func mailbox(_ author: Author) -> String {
        guard let name = author.fullName?.trimmingCharacters(in: .whitespaces), !name.isEmpty else {
            return author.address
        }
        if name.unicodeScalars.contains(where: { !$0.isASCII }) {
            return "=?UTF-8?B?\(Data(name.utf8).base64EncodedString())?= <\(author.address)>"
        }
        let specials = "()<>[]:;@\\,.\""
        if name.contains(where: { specials.contains($0) }) {
            let escaped = name.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
            return "\"\(escaped)\" <\(author.address)>"
        }
        return "\(name) <\(author.address)>"
    }

    /// The message as submitted: the fields, an empty line, the body.
    public var octets: [UInt8] {
        var octets: [UInt8] = []
        octets.reserveCapacity(body.count + fields.reduce(0) { $0 + $1.count + 2 } + 2)
        for field in fields {
            octets += field
            octets += [13, 10]
        }
        octets += [13, 10]
        octets += body
        return octets
    }
}
