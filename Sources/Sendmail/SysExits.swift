/// The exit statuses of sysexits.h that sendmail callers act on: cron mails the line, PHP's `mail()` returns
/// false, and a status of 75 tells a queueing caller to try again later.
public enum SysExit: Int32, Sendable, Hashable, CustomStringConvertible {
    case ok = 0
    /// `EX_USAGE`: the command line is wrong.
    case usage = 64
    /// `EX_DATAERR`: the message itself was refused (its content, its size).
    case dataError = 65
    /// `EX_NOINPUT`: standard input could not be read.
    case noInput = 66
    /// `EX_IOERR`: reading or writing failed.
    case ioError = 74
    /// `EX_NOUSER`: a recipient does not exist (an unknown local name, an address refused).
    case noUser = 67
    /// `EX_UNAVAILABLE`: refused for good for another reason (policy, the sender).
    case unavailable = 69
    /// `EX_SOFTWARE`: the daemon answered something that is not SMTP.
    case software = 70
    /// `EX_TEMPFAIL`: not now (a 4xx, or the daemon is not running); nothing was accepted.
    case temporaryFailure = 75

    public var description: String { "\(rawValue)" }

    /// The status for a refusing SMTP reply: 4xx is temporary; a 5xx is mapped by its enhanced status code
    /// (RFC 3463) when it has one, else by its basic code.
    public static func forRefusal(code: Int, enhancedCode: String?) -> SysExit {
        guard code >= 500 else { return code >= 400 ? .temporaryFailure : .software }
        let parts = enhancedCode?.split(separator: ".").compactMap { Int($0) } ?? []
        if parts.count == 3 {
            switch (parts[1], parts[2]) {
            case (1, 1), (1, 2), (1, 3), (1, 6), (1, 10): return .noUser  // bad or unknown destination address
            case (1, _): return .unavailable  // the sender's address (5.1.7, 5.1.8)
            case (3, 4), (6, _): return .dataError  // too big, or the content
            default: return .unavailable
            }
        }
        switch code {
        case 550, 551, 553: return .noUser
        case 552, 554: return .dataError
        default: return .unavailable
        }
    }
}
