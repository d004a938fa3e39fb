import ArgumentParser
import Gateway
import Glibc
import Logging
import SMTPProtocol
import SMTPServer

@main
struct GatewayCommand: ParsableCommand {
    /// `sendmail` takes sendmail(8)'s flags, not ArgumentParser's: as a link named `sendmail` (or `mailq`,
    /// `newaliases`), or as the `sendmail` subcommand, it is run before the command line is parsed.
    static func main() {
        let arguments = CommandLine.arguments
        let name = arguments.first.map { String($0.split(separator: "/").last ?? "") } ?? ""
        if SendmailCommand.linkNames.contains(name) {
            Glibc.exit(SendmailCommand.run(arguments: Array(arguments.dropFirst()), invokedAs: name))
        }
        if arguments.count > 1, arguments[1] == "sendmail" {
            Glibc.exit(SendmailCommand.run(arguments: Array(arguments.dropFirst(2)), invokedAs: "sendmail"))
        }
        main(nil)
    }

    static let configuration = CommandConfiguration(
        commandName: "acs-smtp-gateway",
        abstract: "An SMTP server that delivers mail through Azure Communication Services Email.",
        subcommands: [
            Serve.self, CheckConfig.self, Convert.self, SendTest.self, Queue.self, Passwd.self, SendmailHelp.self,
        ],
        defaultSubcommand: Serve.self
    )
}
