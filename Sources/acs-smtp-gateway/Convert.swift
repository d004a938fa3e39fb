import ACSEmail
import ArgumentParser
import Foundation
import Gateway
import MailParser

/// `convert`: the translation as a command-line tool — a message in, the ACS request JSON out.
struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Translate a MIME message into the ACS Email request the gateway would send.",
        discussion: """
            Reads FILE (standard input when none is given) and prints the exact request body on standard
            output, diagnostics on standard error. Without --rcpt the recipients come from the To, Cc and Bcc
            headers. Without --sender-address or --verified-domain each message keeps its own sender (a dry
            run). Exits 1 when a message is refused, with the SMTP reply the gateway would give.
            """)

    @OptionGroup var file: ConfigFileOption

    @OptionGroup(title: "Translation to ACS")
    var translation: TranslationFlags

    @Option(help: "Envelope sender (MAIL FROM); default: none.")
    var mailFrom: String?

    @Option(name: .customLong("rcpt"), help: "Envelope recipient (RCPT TO), repeatable; default: the headers'.")
    var recipients: [String] = []

    @Flag(help: "Print the request indented for reading (not the exact bytes sent).")
    var pretty = false

    @Flag(help: "Print no request (for timing many files with --stats).")
    var quiet = false

    @Flag(help: "Print throughput figures on standard error.")
    var stats = false

    @Argument(help: "Message files (.eml); standard input when none is given.")
    var files: [String] = []

    func run() throws {
        // The same translation settings as `serve` (file < environment < flags); the server's own keys are
        // read and checked too, but only the translation ones matter here.
        let environment = ProcessInfo.processInfo.environment
        var overrides = FlagOverrides()
        translation.addOverrides(to: &overrides)
        let settings: GatewaySettings
        do {
            settings = try ConfigurationLoader.load(
                file: file.resolvedPath(environment: environment), environment: environment,
                flags: overrides.entries, crossKeyChecks: false
            ).settings
        } catch {
            reportConfigurationError(error)
            throw ExitCode(78)
        }
        var policy = settings.translationPolicy
        if !settings.hasSenderPolicy { policy.verifiedDomains = ["*"] }
        let parser = MailParser()
        let encoder = ACSJSONEncoder(apiVersion: policy.apiVersion, prettyPrinted: true)
        let compact = ACSJSONEncoder(apiVersion: policy.apiVersion)
        var refused = 0
        var octets = 0
        var seconds = 0.0
        let names = files.isEmpty ? ["<stdin>"] : files
        for name in names {
            // One file in memory at a time, released with its parsed message after the translation. A base64
            // attachment stays a slice of the file's octets and is re-encoded straight into the request, so the
            // peak is the file and a piece of the request, not also decoded or base64 copies of what it carries.
            let started = Date()
            let (mail, count) = try { () throws -> (ParsedMail, Int) in
                let bytes = try Self.readAll(
                    files.isEmpty ? FileHandle.standardInput : FileHandle(forReadingFrom: URL(fileURLWithPath: name)))
                return (parser.parse(bytes), bytes.count)
            }()
            let envelope =
                recipients.isEmpty && mailFrom == nil
                ? Envelope(headersOf: mail)
                : Envelope(
                    mailFrom: mailFrom ?? "",
                    recipients: recipients.isEmpty ? Envelope(headersOf: mail).recipients : recipients)
            // The request is written to standard output in pieces, never held whole: with the file's octets
            // that would be twice the message (--quiet still builds it, so --stats times the whole translation).
            let result = ACSTranslation.translateWithDetails(
                mail, envelope: envelope, policy: policy, writingRequest: quiet)
            seconds += Date().timeIntervalSince(started)
            octets += count
            if !quiet {
                for diagnostic in mail.diagnostics {
                    printError("\(name): diagnostic \(diagnostic.code): \(diagnostic.message)")
                }
            }
            switch result {
            case .success(let translated):
                if !quiet {
                    for note in translated.notes { printError("\(name): note \(note.code): \(note.message)") }
                    (pretty ? encoder : compact).write(translated.message) { piece in
                        FileHandle.standardOutput.write(Data(buffer: piece))
                    }
                    FileHandle.standardOutput.write(Data([10]))
                }
            case .failure(let rejection):
                refused += 1
                printError("\(name): refused: \(ACSReplyMapping.reply(for: rejection))")
            }
        }
        if stats {
            let megabytes = Double(octets) / 1_000_000
            printError(
                String(
                    format: "converted %d messages (%.2f MB) in %.3f s: %.1f MB/s, %.0f messages/s, %d refused",
                    names.count, megabytes, seconds, megabytes / max(seconds, 1e-9),
                    Double(names.count) / max(seconds, 1e-9), refused))
        }
        if refused > 0 { throw ExitCode(1) }
    }

    /// Everything `handle` has left to read, read straight into one array sized from the file's length when
    /// it is a regular file: reading into `Data` first and converting it would hold the message twice. (A file
    /// handle closes its descriptor when it is released.)
    static func readAll(_ handle: FileHandle) throws -> [UInt8] {
        var bytes: [UInt8] = []
        var info = stat()
        if fstat(handle.fileDescriptor, &info) == 0, info.st_mode & S_IFMT == S_IFREG {
            bytes.reserveCapacity(Int(info.st_size))
        }
        while let chunk = try handle.read(upToCount: 1 << 16), !chunk.isEmpty {
            bytes.append(contentsOf: chunk)
        }
        return bytes
    }

    private func printError(_ text: String) {
        FileHandle.standardError.write(Data((text + "\n").utf8))
    }
}
