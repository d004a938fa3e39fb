import ArgumentParser
import Foundation
import Gateway
import Glibc
import SMTPProtocol

/// `passwd`: adds a user to the SMTP AUTH users file, or sets its password (and senders).
struct Passwd: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "passwd",
        abstract: "Add a user to the SMTP AUTH users file, or set its password.",
        discussion: """
            Reads the password from the terminal (asked twice, not echoed) or, when standard input is not a \
            terminal, from its first line. Stores a crypt(3) hash (yescrypt by default), never the password. \
            --sender (repeatable) sets the MAIL FROM addresses the user may use: an address, *@domain or *; \
            without it an existing user keeps its senders. The file is replaced atomically with mode 0600. \
            Then reload the daemon: systemctl reload acs-smtp-gateway.
            """)

    @Option(name: .customLong("users-file"), help: ArgumentHelp("The users file.", valueName: "file"))
    var usersFile = "/etc/acs-smtp-gateway/users"

    @Option(
        name: .customLong("sender"),
        help: ArgumentHelp(
            "An allowed sender: address, *@domain or * (repeatable).",
            valueName: "pattern"))
    var senders: [String] = []

    @Option(help: "Hash method: yescrypt, bcrypt or sha512crypt.")
    var method = "yescrypt"

    @Argument(help: "The user name the client will send.")
    var user: String

    func validate() throws {
        if let problem = UsersFile.nameProblem(user) { throw ValidationError("the user name \(problem)") }
        for sender in senders where SenderPattern(sender) == nil {
            throw ValidationError("--sender \(sender): expected an address, *@domain or *")
        }
        guard Self.method(method) != nil else {
            throw ValidationError("--method: expected yescrypt, bcrypt or sha512crypt")
        }
    }

    func run() throws {
        let password = try readPassword()
        var file = UsersFile()
        if FileManager.default.fileExists(atPath: usersFile) {
            do {
                file = try UsersFile.load(path: usersFile)
            } catch {
                fail("\(error)")
            }
        }
        guard let hash = PasswordHash.make(password, method: Self.method(method)!) else {
            fail("could not hash the password (a NUL in it?)")
        }
        let existed = file.entry(named: user) != nil
        file.set(name: user, hash: hash, senders: senders.isEmpty ? nil : senders.compactMap(SenderPattern.init))
        do {
            try Self.writeAtomically(file.text, to: usersFile)
        } catch {
            fail("cannot write \(usersFile): \(error)")
        }
        let entry = file.entry(named: user)!
        let allowed = entry.senders.isEmpty ? "none" : entry.senders.map(\.description).joined(separator: ", ")
        print("\(existed ? "updated" : "added") user \(user) in \(usersFile) (senders: \(allowed))")
        if entry.senders.isEmpty {
            warn("user \(user) has no allowed senders: it can authenticate but not send; add --sender PATTERN")
        }
    }

    private static func method(_ name: String) -> PasswordHash.Method? {
        switch name {
        case "yescrypt": .yescrypt
        case "bcrypt": .bcrypt
        case "sha512crypt": .sha512crypt
        default: nil
        }
    }

    /// From the terminal without echo, asked twice; else the first line of standard input.
    private func readPassword() throws -> [UInt8] {
        guard isatty(STDIN_FILENO) == 1 else {
            var data = FileHandle.standardInput.readDataToEndOfFile()
            defer { data.resetBytes(in: 0..<data.count) }
            let line = Array(data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).first ?? [])
            let password = line.last == 13 ? Array(line.dropLast()) : line
            guard !password.isEmpty else { fail("no password on standard input") }
            return password
        }
        let first = promptWithoutEcho("Password for \(user): ")
        let second = promptWithoutEcho("Again: ")
        guard first == second else { fail("the passwords differ; nothing changed") }
        guard !first.isEmpty else { fail("empty password; nothing changed") }
        return first
    }

    private func promptWithoutEcho(_ prompt: String) -> [UInt8] {
        FileHandle.standardError.write(Data(prompt.utf8))
        var saved = termios()
        tcgetattr(STDIN_FILENO, &saved)
        var quiet = saved
        quiet.c_lflag &= ~tcflag_t(ECHO)
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet)
        defer {
            tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved)
            FileHandle.standardError.write(Data("\n".utf8))
        }
        var line: [UInt8] = []
        var byte: UInt8 = 0
        while read(STDIN_FILENO, &byte, 1) == 1, byte != UInt8(ascii: "\n") { line.append(byte) }
        return line.last == 13 ? Array(line.dropLast()) : line
    }

    /// A temporary file beside the target (mode 0600), synced, then renamed over it: a crash leaves the old file
    /// or the new one, never half of one.
    static func writeAtomically(_ text: String, to path: String) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        let temporary = (directory.isEmpty ? "." : directory) + "/.\(name).\(getpid()).tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        let bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else {
                let error = errno
                close(fd)
                unlink(temporary)
                throw POSIXError(POSIXErrorCode(rawValue: error) ?? .EIO)
            }
            offset += written
        }
        guard fsync(fd) == 0, close(fd) == 0, rename(temporary, path) == 0 else {
            let error = errno
            unlink(temporary)
            throw POSIXError(POSIXErrorCode(rawValue: error) ?? .EIO)
        }
    }

    private func warn(_ text: String) {
        FileHandle.standardError.write(Data("acs-smtp-gateway passwd: \(text)\n".utf8))
    }

    private func fail(_ text: String) -> Never {
        warn(text)
        Foundation.exit(1)
    }
}
