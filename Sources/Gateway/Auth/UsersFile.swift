import CCrypt
import Foundation
import SMTPProtocol

/// Why a users file cannot be used. The text names the file and line, and never shows a hash.
public struct UsersFileError: Error, CustomStringConvertible, Sendable {
    public var problems: [String]
    public init(_ problems: [String]) { self.problems = problems }
    public var description: String { problems.joined(separator: "\n") }
}

/// The users of SMTP AUTH (`auth.users_file`): one line per user, `name:hash:senders`.
///
/// - `name`: what the client sends as its user name (printable, no `:` or white space);
/// - `hash`: a crypt(3) hash made by libxcrypt — yescrypt (`$y$`), bcrypt (`$2b$`) or sha512crypt (`$6$`).
///   Never a password: a field that is not a hash is an error;
/// - `senders`: comma-separated `MAIL FROM` addresses the user may use: `user@example.com`, `*@example.com`
///   (any address of the domain) or `*` (any sender). Empty: the user may authenticate but send nothing.
///
/// `#` starts a comment line; blank lines are ignored. `acs-smtp-gateway passwd` writes the file.
public struct UsersFile: Sendable, Equatable {
    public struct Entry: Sendable, Equatable {
        public var name: String
        public var hash: String
        public var senders: [SenderPattern]

        public init(name: String, hash: String, senders: [SenderPattern]) {
            self.name = name
            self.hash = hash
            self.senders = senders
        }

        /// The line as the file holds it.
        public var line: String { "\(name):\(hash):\(senders.map(\.description).joined(separator: ","))" }
    }

    public private(set) var entries: [Entry]
    /// Lines kept as they were (comments, blank lines), with the index of the entry they precede, so a rewrite
    /// by `passwd` keeps the administrator's comments in place.
    private var otherLines: [(before: Int, text: String)]
    /// Problems that do not stop the gateway (a legacy hash method), named by line.
    public private(set) var warnings: [String]

    /// Largest users file read; a bigger one is a mistake (a log named by accident).
    static let maxFileSize = 4 << 20

    public init(entries: [Entry] = []) {
        self.entries = entries
        self.otherLines = []
        self.warnings = []
    }

    public static func == (lhs: UsersFile, rhs: UsersFile) -> Bool { lhs.entries == rhs.entries }

    public func entry(named name: String) -> Entry? { entries.first { $0.name == name } }

    /// Parses the file's text; `path` names it in messages. Every problem is reported, each with its line.
    public init(parsing text: String, path: String) throws(UsersFileError) {
        var entries: [Entry] = []
        var otherLines: [(Int, String)] = []
        var problems: [String] = []
        var warnings: [String] = []
        var names: Set<String> = []
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }  // the newline that ends the last line
        for (index, rawLine) in lines.enumerated() {
            let number = index + 1
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if trimmed.isEmpty || trimmed.hasPrefix("#") {
                otherLines.append((entries.count, String(line)))
                continue
            }
            let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false).map(String.init)
            guard fields.count == 3 else {
                problems.append("\(path):\(number): expected name:hash:senders (three fields separated by colons)")
                continue
            }
            let (name, hash, sendersText) = (fields[0], fields[1], fields[2])
            if let problem = Self.nameProblem(name) {
                problems.append("\(path):\(number): the user name \(problem)")
                continue
            }
            guard names.insert(name).inserted else {
                problems.append("\(path):\(number): user \(name) is listed twice")
                continue
            }
            switch Self.hashProblem(hash) {
            case .some(.invalid):
                // The field is never echoed: a password pasted there must not reach a log.
                problems.append(
                    "\(path):\(number): user \(name): the second field is not a crypt(3) hash ($y$ yescrypt, $2b$ "
                        + "bcrypt or $6$ sha512crypt); set the password with `acs-smtp-gateway passwd`")
                continue
            case .some(.legacy):
                warnings.append(
                    "\(path):\(number): user \(name): the hash uses a legacy method; set the password again with "
                        + "`acs-smtp-gateway passwd` to get yescrypt")
            case nil:
                break
            }
            var senders: [SenderPattern] = []
            var badSender = false
            for item in sendersText.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) })
            where !item.isEmpty {
                guard let pattern = SenderPattern(item) else {
                    problems.append(
                        "\(path):\(number): user \(name): sender \"\(item)\" is not an address, *@domain or *")
                    badSender = true
                    continue
                }
                senders.append(pattern)
            }
            if badSender { continue }
            if senders.isEmpty {
                warnings.append("\(path):\(number): user \(name) has no allowed senders: it can authenticate, not send")
            }
            entries.append(Entry(name: name, hash: hash, senders: senders))
        }
        guard problems.isEmpty else { throw UsersFileError(problems) }
        self.entries = entries
        self.otherLines = otherLines
        self.warnings = warnings
    }

    /// Reads and parses a users file.
    public static func load(path: String) throws(UsersFileError) -> UsersFile {
        let data: Data
        do {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            if let size = attributes[.size] as? Int, size > maxFileSize {
                throw UsersFileError(["\(path): \(size) octets; a users file is at most \(maxFileSize)"])
            }
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch let error as UsersFileError {
            throw error
        } catch {
            throw UsersFileError(["\(path): cannot read the users file: \(ConfigurationLoader.reason(error))"])
        }
        guard let text = String(data: data, encoding: .utf8) else {
            throw UsersFileError(["\(path): not UTF-8 text"])
        }
        var file = try UsersFile(parsing: text, path: path)
        var status = stat()
        if stat(path, &status) == 0, status.st_mode & 0o077 != 0 {
            file.warnings.append(
                "\(path) is readable by group or others (mode \(String(status.st_mode & 0o777, radix: 8))): it holds "
                    + "password hashes; make it 0600, or pass it with LoadCredential=")
        }
        return file
    }

    /// Adds a user or replaces its hash (and its senders, when `senders` is given).
    public mutating func set(name: String, hash: String, senders: [SenderPattern]?) {
        if let index = entries.firstIndex(where: { $0.name == name }) {
            entries[index].hash = hash
            if let senders { entries[index].senders = senders }
        } else {
            entries.append(Entry(name: name, hash: hash, senders: senders ?? []))
        }
    }

    /// The file's text: the entries in order, comments where they were.
    public var text: String {
        var lines: [String] = []
        for index in 0...entries.count {
            lines += otherLines.filter { $0.before == index }.map(\.text)
            if index < entries.count { lines.append(entries[index].line) }
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Why a user name cannot be used, or nil.
    public static func nameProblem(_ name: String) -> String? {
        if name.isEmpty { return "is empty" }
        if name.utf8.count > 256 { return "is longer than 256 octets" }
        if name.unicodeScalars.contains(where: { $0.value <= 0x20 || $0.value == 0x7F || $0 == ":" }) {
            return "contains a colon, a space or a control character"
        }
        return nil
    }

    enum HashProblem { case invalid, legacy }

    /// The length of the hash part (after the last `$`) of the methods `passwd` makes and their relatives.
    static let hashLengths = ["$y$": 43, "$2b$": 53, "$2y$": 53, "$2a$": 53, "$6$": 86, "$5$": 43]

    /// Whether `hash` is a whole crypt(3) hash libxcrypt can check (without computing anything): a known method
    /// with its setting (crypt_checksalt(3)), then a hash part of the method's length.
    static func hashProblem(_ hash: String) -> HashProblem? {
        let segments = hash.split(separator: "$", omittingEmptySubsequences: false)
        guard hash.hasPrefix("$"), segments.count >= 4, let last = segments.last, !last.isEmpty else { return .invalid }
        if let length = hashLengths.first(where: { hash.hasPrefix($0.key) })?.value, last.count != length {
            return .invalid
        }
        switch acsgw_crypt_checksalt(hash) {
        case acsgw_crypt_salt_ok(), acsgw_crypt_salt_too_cheap(): return nil
        case acsgw_crypt_salt_legacy(): return .legacy
        default: return .invalid
        }
    }
}

/// crypt(3) from libxcrypt: hashing a new password, and checking one against a stored hash. Deliberately slow
/// (that is the point of yescrypt and bcrypt), so callers run it off the connection queues
/// (``CredentialVerifier``).
public enum PasswordHash {
    /// The methods a new hash may use, by prefix.
    public enum Method: String, CaseIterable, Sendable {
        case yescrypt = "$y$"
        case bcrypt = "$2b$"
        case sha512crypt = "$6$"
    }

    /// A new hash of `password` with a random salt at the library's default cost.
    public static func make(_ password: [UInt8], method: Method = .yescrypt) -> String? {
        guard !password.contains(0) else { return nil }  // crypt(3) takes a C string
        var setting = [CChar](repeating: 0, count: Int(acsgw_crypt_gensalt_output_size()))
        guard acsgw_crypt_gensalt(method.rawValue, &setting, Int32(setting.count)) == 1 else { return nil }
        return hash(password, setting: setting)
    }

    /// Whether `password` matches `storedHash`, compared in constant time.
    public static func verify(_ password: [UInt8], against storedHash: String) -> Bool {
        guard !password.contains(0) else { return false }
        guard let computed = hash(password, setting: Array(storedHash.utf8CString)) else { return false }
        let a = Array(computed.utf8)
        let b = Array(storedHash.utf8)
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for index in a.indices { difference |= a[index] ^ b[index] }
        return difference == 0
    }

    private static func hash(_ password: [UInt8], setting: [CChar]) -> String? {
        var phrase = password.map { CChar(bitPattern: $0) } + [0]
        defer { for index in phrase.indices { phrase[index] = 0 } }
        var output = [CChar](repeating: 0, count: Int(acsgw_crypt_output_size()))
        guard acsgw_crypt(phrase, setting, &output, output.count) == 1 else { return nil }
        return String(decoding: output.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
