import ArgumentParser
import Gateway
import Logging
import SMTPProtocol
import SMTPServer

@main
struct GatewayCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "acs-smtp-gateway",
        abstract: "An SMTP server that delivers mail through Azure Communication Services Email.",
        subcommands: [Serve.self, CheckConfig.self, Convert.self, SendTest.self, Queue.self, Passwd.self],
        defaultSubcommand: Serve.self
    )
}
