import ACSClient
import ACSEmail

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
        if settings.listen.isEmpty {
            problems.append("\(named("smtp.listen")) must name at least one address")
        }
        if let admin = settings.adminListen, settings.listen.contains(admin) {
            problems.append("\(named("admin.listen")) \(admin) is also an SMTP address in \(named("smtp.listen"))")
        }
        return problems
    }
}
