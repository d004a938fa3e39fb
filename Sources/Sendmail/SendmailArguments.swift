/// The command line of `sendmail`, as cron, PHP's `mail()`, mailx and the other local senders write it: the
/// flags of sendmail(8) that real callers pass, read the way getopt(3) reads Postfix's and sendmail's (flags may
/// be grouped, `-tif sender`; an option's value may be attached or the next argument, `-fsender`, `-f sender`;
/// `--` ends the options; options and recipients may be mixed).
///
/// Unknown flags are errors (exit 64), never guesses: a caller that asks for something this command does not do
/// (`-q`, `-bd`) must hear so.
public struct SendmailArguments: Hashable, Sendable {
    /// What the invocation asks for.
    public enum Mode: Hashable, Sendable {
        /// Read a message on standard input and submit it (`-bm`, the default).
        case submit
        /// SMTP on standard input and output (`-bs`).
        case smtp
        /// List the queue (`-bp`, or invoked as `mailq`).
        case listQueue
        /// Rebuild the aliases database (`-bi`, or invoked as `newaliases`): there is none to rebuild.
        case rebuildAliases
        /// `--help`.
        case help
    }

    public var mode: Mode = .submit
    /// `-t`: recipients from the `To`, `Cc` and `Bcc` fields, besides those on the command line.
    public var recipientsFromHeaders = false
    /// `-i`, `-oi`: a line with a single dot does not end the message.
    public var ignoreDots = false
    /// `-f`, `-r`: the envelope sender (`<>` or an empty value: the null sender).
    public var sender: String?
    /// `-F`: the full name of a `From` field that is added.
    public var fullName: String?
    /// `-v`: the SMTP dialogue on standard error.
    public var verbose = false
    /// `-C`: the gateway's configuration file (where the socket is named).
    public var configurationFile: String?
    /// The recipients on the command line, each argument possibly a comma-separated list.
    public var recipients: [String] = []

    public init() {}

    /// A usage error: the message names the flag.
    public struct UsageError: Error, Hashable, CustomStringConvertible {
        public var description: String

        public init(description: String) {
            self.description = description
        }
    }

    /// Flags that take a value.
    static let valued: Set<Character> = ["B", "C", "F", "N", "R", "V", "b", "f", "h", "o", "r"]

    /// Reads the arguments after the command name. `invokedAs` is the program's base name: `mailq` lists the
    /// queue and `newaliases` has nothing to rebuild, as with every MTA that provides them.
    public static func parse(_ arguments: [String], invokedAs name: String = "sendmail") throws(UsageError) -> Self {
        var parsed = SendmailArguments()
        switch name {
        case "mailq": parsed.mode = .listQueue
        case "newaliases": parsed.mode = .rebuildAliases
        default: break
        }
        var index = 0
        var optionsEnded = false
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if optionsEnded || !argument.hasPrefix("-") || argument == "-" {
                parsed.recipients.append(argument)
                continue
            }
            if argument == "--" {
                optionsEnded = true
                continue
            }
            if argument == "--help" {
                parsed.mode = .help
                continue
            }
            var flags = Substring(argument.dropFirst())
            while let flag = flags.first {
                flags = flags.dropFirst()
                var value: String?
                if valued.contains(flag) {
                    if !flags.isEmpty {
                        value = String(flags)
                        flags = ""
                    } else if index < arguments.count {
                        value = arguments[index]
                        index += 1
                    } else {
                        throw UsageError(description: "option -\(flag) needs a value")
                    }
                }
                try parsed.apply(flag, value: value ?? "")
            }
        }
        return parsed
    }

    private mutating func apply(_ flag: Character, value: String) throws(UsageError) {
        switch flag {
        case "t": recipientsFromHeaders = true
        case "i": ignoreDots = true
        case "v": verbose = true
        case "f", "r": sender = value
        case "F": fullName = value
        case "C": configurationFile = value
        case "o":
            // -oi is -i; the rest (-odb, -oem, -oQ…) set delivery and error modes of a queueing MTA, which the
            // gateway decides itself: accepted and ignored.
            if value == "i" { ignoreDots = true }
        case "B", "N", "R", "V", "h":
            break  // body type, DSN notify and return, envelope id, hop count: the gateway's own business
        case "G", "U", "m", "n":
            break  // gateway submission, initial submission, "me too", no aliasing: nothing to change
        case "b":
            switch value {
            case "m": mode = .submit
            case "s": mode = .smtp
            case "p": mode = .listQueue
            case "i": mode = .rebuildAliases
            default:
                throw UsageError(description: "-b\(value) is not supported (this sendmail does -bm, -bs, -bp and -bi)")
            }
        case "q":
            throw UsageError(description: "-q is not supported: run acs-smtp-gateway queue retry")
        default:
            throw UsageError(description: "unknown option -\(flag)")
        }
    }

    /// One line per flag, for `--help` and usage errors.
    public static let usage = """
        usage: sendmail [-t] [-i|-oi] [-f sender|-r sender] [-F full-name] [-v] [-C gateway.conf] [--] [recipient ...]
               sendmail -bs | -bp
        Reads a message on standard input and hands it to the acs-smtp-gateway daemon over its local socket.
          -t          recipients also from the To, Cc and Bcc fields (Bcc is removed)
          -i, -oi     a line with a single dot does not end the message
          -f, -r      the envelope sender (default: the invoking user at this host)
          -F          the full name of the From field added when the message has none
          -bs         SMTP on standard input and output; -bp lists the queue (mailq)
          -v          the SMTP dialogue on standard error
          -C          the gateway's configuration file (default /etc/acs-smtp-gateway/gateway.conf)
          -B, -N, -R, -V, -h, -o*, -G, -U, -m, -n are accepted and ignored
        The socket: ACSGW_SENDMAIL_SOCKET, else sendmail.socket in the configuration, else
        /run/acs-smtp-gateway/submit.sock. Exit status: 0 accepted, 75 try again later, 65/67/69 refused, 64 usage.
        """
}
