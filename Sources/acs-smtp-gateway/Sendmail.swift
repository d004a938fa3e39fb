import ArgumentParser
import Foundation
import Gateway
import Glibc
import MailParser
import SMTPServer
import Sendmail

/// `sendmail`: the door for local programs that do not speak SMTP (cron, PHP's `mail()`, mailx, logwatch…).
/// It reads a message on standard input and submits it over SMTP to the running daemon's local socket, where
/// the kernel tells the daemon which user is sending. Nothing is queued here: the daemon's answer is the
/// command's exit status (sysexits), so a caller that cannot be served now hears 75 and keeps its message.
///
/// Invoked through a link named `sendmail`, `mailq` or `newaliases` (`/usr/sbin/sendmail`), or as
/// `acs-smtp-gateway sendmail`. Its flags are sendmail's, not this program's (``SendmailArguments``), so it is
/// dispatched before ArgumentParser sees the command line; ``SendmailHelp`` only lists it in `--help`.
enum SendmailCommand {
    /// The names a link gives the program for which it behaves as sendmail.
    static let linkNames: Set<String> = ["sendmail", "mailq", "newaliases"]

    /// The socket when neither the environment nor the configuration names one (the systemd unit's).
    static let defaultSocket = "/run/acs-smtp-gateway/submit.sock"
    static let socketVariable = "ACSGW_SENDMAIL_SOCKET"

    /// Runs the command and returns its exit status.
    static func run(arguments commandLine: [String], invokedAs name: String) -> Int32 {
        let arguments: SendmailArguments
        do {
            arguments = try SendmailArguments.parse(commandLine, invokedAs: name)
        } catch {
            fail("\(error)\n\(SendmailArguments.usage)")
            return SysExit.usage.rawValue
        }
        switch arguments.mode {
        case .help:
            print(SendmailArguments.usage)
            return SysExit.ok.rawValue
        case .rebuildAliases:
            print(
                "newaliases: the aliases are the aliases: section of gateway.conf; after changing it, reload the "
                    + "daemon (systemctl reload acs-smtp-gateway)")
            return SysExit.ok.rawValue
        case .listQueue:
            var list = ["queue", "list"]
            if let file = arguments.configurationFile { list += ["--config", file] }
            GatewayCommand.main(list)
            return SysExit.ok.rawValue  // main exits itself on an error
        case .smtp:
            return relaySMTP(arguments)
        case .submit:
            return submit(arguments)
        }
    }

    // MARK: Submitting a message

    private static func submit(_ arguments: SendmailArguments) -> Int32 {
        guard let input = readStandardInput() else {
            fail("cannot read the message on standard input: \(String(cString: strerror(errno))); nothing was sent")
            return SysExit.noInput.rawValue
        }
        var message = LocalMessage(input: input, ignoreDots: arguments.ignoreDots)
        let author = invokingUser(fullName: arguments.fullName)
        var recipients: [String] = []
        var seen: Set<String> = []
        let named = arguments.recipients.flatMap { MailAddress.list(fromFieldBody: Array($0.utf8)).map(\.address) }
        for recipient in named + (arguments.recipientsFromHeaders ? message.headerRecipients : [])
        where seen.insert(recipient.lowercased()).inserted {
            recipients.append(recipient)
        }
        guard !recipients.isEmpty else {
            fail(
                "no recipients: name them after the options, or give -t to take them from To, Cc and Bcc; "
                    + "nothing was sent")
            return SysExit.usage.rawValue
        }
        message.removeBcc()
        message.complete(
            author: author, date: SendTest.rfc5322Date(Date(), timeZone: .current),
            messageID: "\(Identifiers.messageID())@\(author.host)")
        let sender: String
        switch arguments.sender {
        case nil: sender = author.address
        case "", "<>": sender = ""
        case let given?:
            let bare = given.hasPrefix("<") && given.hasSuffix(">") ? String(given.dropFirst().dropLast()) : given
            sender = bare.contains("@") ? bare : "\(bare)@\(author.host)"
        }

        let path = socketPath(arguments)
        let connection: SMTPClientConnection
        do {
            connection = try SMTPClientConnection(unixPath: path, timeout: nil)
        } catch {
            fail("\(error) (is acs-smtp-gateway running, with sendmail.socket set?); nothing was sent, try again later")
            return SysExit.temporaryFailure.rawValue
        }
        defer { connection.close() }
        if arguments.verbose { connection.transcript = { FileHandle.standardError.write(Data(($0 + "\n").utf8)) } }
        do {
            return try converse(
                connection, sender: sender, recipients: recipients, message: message.octets, host: author.host)
        } catch {
            fail("\(error); the gateway may not have the message: try again later")
            return SysExit.temporaryFailure.rawValue
        }
    }

    /// One SMTP session: the recipients in as many transactions as the daemon's recipient limit asks for (a
    /// `452 4.5.3` defers the rest to the next one, RFC 5321 §4.5.3.1.10). A recipient refused stops the whole
    /// submission before its message is sent, so the caller's error is never "some got it".
    private static func converse(
        _ connection: SMTPClientConnection, sender: String, recipients: [String], message: [UInt8], host: String
    ) throws -> Int32 {
        func refused(_ reply: SMTPClientConnection.Reply, _ what: String, sent: Int) -> Int32 {
            let status = SysExit.forRefusal(code: reply.code, enhancedCode: reply.enhancedCode)
            let before = sent > 0 ? " (\(sent) of \(recipients.count) recipients were sent the message before)" : ""
            let fate = status == .temporaryFailure ? "try again later" : "not sent"
            fail("\(what): \(reply.text); \(fate)\(before)")
            _ = try? connection.command("QUIT")
            return status.rawValue
        }
        let greeting = try connection.readReply()
        guard greeting.code == 220 else { return refused(greeting, "the gateway", sent: 0) }
        let hello = try connection.command("EHLO \(host)")
        guard hello.code == 250 else { return refused(hello, "EHLO", sent: 0) }
        let international = ([sender] + recipients).contains { $0.utf8.contains { $0 >= 0x80 } }
        var pending = recipients[...]
        var sent = 0
        while !pending.isEmpty {
            let mail = try connection.command("MAIL FROM:<\(sender)>" + (international ? " SMTPUTF8" : ""))
            guard mail.code == 250 else { return refused(mail, "sender <\(sender)>", sent: sent) }
            var accepted = 0
            while let recipient = pending.first {
                let reply = try connection.command("RCPT TO:<\(recipient)>")
                if reply.code == 452, reply.enhancedCode == "4.5.3", accepted > 0 { break }  // the next transaction
                guard reply.code == 250 || reply.code == 251 else {
                    return refused(reply, "recipient <\(recipient)>", sent: sent)
                }
                pending = pending.dropFirst()
                accepted += 1
            }
            let data = try connection.command("DATA")
            guard data.code == 354 else { return refused(data, "DATA", sent: sent) }
            try connection.sendMessageData(message)
            let final = try connection.readReply()
            guard (200..<300).contains(final.code) else { return refused(final, "the message", sent: sent) }
            sent += accepted
        }
        _ = try? connection.command("QUIT")
        return SysExit.ok.rawValue
    }

    // MARK: -bs

    /// SMTP on standard input and output, relayed to the daemon's socket as it is: the daemon's session is the
    /// caller's session.
    private static func relaySMTP(_ arguments: SendmailArguments) -> Int32 {
        let path = socketPath(arguments)
        let connection: SMTPClientConnection
        do {
            connection = try SMTPClientConnection(unixPath: path, timeout: nil)
        } catch {
            print("421 4.3.0 The mail gateway is not available; try again later\r")
            fail("\(error) (is acs-smtp-gateway running, with sendmail.socket set?)")
            return SysExit.temporaryFailure.rawValue
        }
        defer { connection.close() }
        var descriptors = [
            pollfd(fd: 0, events: Int16(POLLIN), revents: 0),
            pollfd(fd: connection.fd, events: Int16(POLLIN), revents: 0),
        ]
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            guard poll(&descriptors, nfds_t(descriptors.count), -1) >= 0 else {
                if errno == EINTR { continue }
                return SysExit.software.rawValue
            }
            if descriptors[1].revents != 0 {
                let count = read(connection.fd, &buffer, buffer.count)
                if count <= 0 { return SysExit.ok.rawValue }  // the daemon ended the session (QUIT)
                guard writeAll(1, buffer[0..<count]) else { return SysExit.ok.rawValue }
            }
            if descriptors[0].revents != 0 {
                let count = read(0, &buffer, buffer.count)
                if count <= 0 {
                    // The caller is done writing: the daemon answers what it sent, then closes.
                    shutdown(connection.fd, Int32(SHUT_WR))
                    descriptors[0].fd = -1
                } else {
                    try? connection.send(bytes: Array(buffer[0..<count]))
                }
            }
        }
    }

    // MARK: Helpers

    /// `ACSGW_SENDMAIL_SOCKET`, else `sendmail.socket` of the configuration, else the default.
    static func socketPath(_ arguments: SendmailArguments) -> String {
        let environment = ProcessInfo.processInfo.environment
        if let path = environment[socketVariable], !path.isEmpty { return path }
        let file = ConfigurationLoader.filePath(flag: arguments.configurationFile, environment: environment)
        if let file {
            do {
                let loaded = try ConfigurationLoader.load(file: file, environment: [:], crossKeyChecks: false)
                if let path = loaded.settings.sendmailSocket { return path }
            } catch {
                fail("warning: cannot read \(file) (\(error.problems.first ?? "")); using \(defaultSocket)")
            }
        }
        return defaultSocket
    }

    /// The user the kernel says runs this command (never `$USER`, which the caller sets), and this host's name.
    static func invokingUser(fullName: String?) -> LocalMessage.Author {
        let uid = getuid()
        var entry = passwd()
        var result: UnsafeMutablePointer<passwd>?
        var buffer = [CChar](repeating: 0, count: 4096)
        var user = "uid\(uid)"
        var gecos: String?
        if getpwuid_r(uid, &entry, &buffer, buffer.count, &result) == 0, result != nil {
            if let name = entry.pw_name { user = String(cString: name) }
            // The full name is the GECOS field's first comma-separated part (passwd(5)).
            if let field = entry.pw_gecos {
                gecos = String(cString: field).split(separator: ",", omittingEmptySubsequences: false).first.map(
                    String.init)
            }
        }
        var host = [CChar](repeating: 0, count: 256)
        let hostName =
            gethostname(&host, host.count) == 0
            ? String(decoding: host.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self) : "localhost"
        return LocalMessage.Author(user: user, host: hostName, fullName: fullName ?? gecos)
    }

    private static func readStandardInput() -> [UInt8]? {
        var input: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = read(0, &buffer, buffer.count)
            if count < 0 && errno == EINTR { continue }
            if count < 0 { return nil }
            if count == 0 { return input }
            input += buffer[0..<count]
        }
    }

    private static func writeAll(_ fd: Int32, _ bytes: ArraySlice<UInt8>) -> Bool {
        var remaining = bytes
        while !remaining.isEmpty {
            let written = remaining.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return false }
            remaining = remaining.dropFirst(written)
        }
        return true
    }

    /// One line on standard error, as cron mails it and PHP logs it.
    static func fail(_ text: String) {
        FileHandle.standardError.write(Data("sendmail: \(text)\n".utf8))
    }
}

/// Lists `sendmail` in `acs-smtp-gateway --help`. The command line never reaches it: `main` hands `sendmail`
/// and its sendmail(8) flags to ``SendmailCommand`` first.
struct SendmailHelp: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sendmail",
        abstract: "Submit a message from standard input, like sendmail(8) (for cron, PHP mail(), mailx).",
        discussion: SendmailArguments.usage)

    @Argument(parsing: .allUnrecognized) var arguments: [String] = []

    func run() throws {
        throw ExitCode(SendmailCommand.run(arguments: arguments, invokedAs: "sendmail"))
    }
}
