import ACSClient
import ACSEmail
import SMTPServer

/// Rules that involve more than one key; each message names the keys and where their values came from.
enum ConfigurationValidation {
    static func problems(in loaded: LoadedConfiguration, environment: [String: String]) -> [String] {
        let settings = loaded.settings
        var problems: [String] = []
        func named(_ path: String) -> String {
            guard let key = ConfigurationSchema.keys.first(where: { $0.path == path }) else { return path }
            let origin = loaded.origin(of: key)
            return origin == .builtIn ? path : "\(path) (\(origin))"
        }

        if settings.acs.attemptTimeout > settings.acs.retryBudget {
            problems.append(
                "\(named("acs.attempt_timeout")) must not exceed \(named("acs.retry_budget")): "
                    + "one attempt would outlast every retry")
        }
        let acsDelivery = settings.acs.isConfigured(environment: environment) && !settings.acs.dryRun
        let acsLimit = settings.translation.maxRecipients
        if acsDelivery && settings.limits.maxRecipients > acsLimit {
            // More would be accepted over SMTP and then refused whole by ACS, which takes at most
            // that many recipients per request.
            problems.append(
                "\(named("limits.max_recipients")) is \(settings.limits.maxRecipients), but ACS takes at most "
                    + "\(acsLimit) recipients per message")
        }
        if acsDelivery && !settings.hasSenderPolicy {
            problems.append(
                "ACS delivery needs \(named("senders.sender_address")) (a MailFrom address of the ACS resource) "
                    + "or \(named("senders.verified_domains"))")
        }
        let listeners = settings.serverConfiguration.listeners
        if listeners.isEmpty {
            problems.append("\(named("smtp.listen")) or \(named("smtp.listeners")) must name at least one address")
        }
        var seen: Set<SocketAddress> = []
        for listener in listeners where !seen.insert(listener.address).inserted {
            problems.append(
                "\(listener.address) is listed twice in \(named("smtp.listen")) and \(named("smtp.listeners"))")
        }
        if let admin = settings.adminListen, seen.contains(admin) {
            problems.append(
                "\(named("admin.listen")) \(admin) is also an SMTP address in \(named("smtp.listen")) or "
                    + named("smtp.listeners"))
        }
        let certificateAndKey = settings.tls.certificate != nil && settings.tls.key != nil
        if let listener = listeners.first(where: { $0.tls != .none }), !certificateAndKey {
            problems.append(
                "\(named("smtp.listeners")): \(listener.address) uses tls: \(listener.tls.rawValue), which needs "
                    + "\(named("tls.certificate")) and \(named("tls.key"))")
        } else if (settings.tls.certificate == nil) != (settings.tls.key == nil) {
            problems.append("\(named("tls.certificate")) and \(named("tls.key")) go together: give both")
        }
        if let listener = listeners.first(where: { $0.auth != .none }), settings.auth.usersFile == nil {
            problems.append(
                "\(named("smtp.listeners")): \(listener.address) uses auth: \(listener.auth.rawValue), which needs "
                    + "\(named("auth.users_file"))")
        }
        let local = settings.localRecipients
        for alias in settings.aliases where local.isLocal(alias.address) {
            // The alias would be a local recipient again: mail to it could only be refused or loop.
            problems.append(
                "\(named("aliases")): \(alias.name) goes to \(alias.address.address), which is itself local (one of "
                    + "\(named("smtp.local_domains")), or localhost): give an address elsewhere")
        }
        return problems
    }
}
