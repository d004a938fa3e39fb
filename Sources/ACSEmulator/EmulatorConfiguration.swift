import ACSClient
import Foundation

/// How an ``ACSEmulator`` behaves: which credentials it accepts, which senders are "linked", how quickly
/// operations finish and where accepted messages are recorded.
///
/// Every default mirrors the real service where it is known (docs/acs-email-api.md §2.2, §3.4, §8) and is
/// permissive where it is not (any sender is accepted unless an allow-list is given).
public struct EmulatorConfiguration: Sendable {
    /// The access key HMAC signatures are verified with (acs-email-api.md §3.4). Nil: HMAC is refused.
    public var accessKey: AccessKey?
    /// A bearer token accepted as `Authorization: Bearer <token>` (Entra mode, §4.1). Nil: bearer is refused.
    public var bearerToken: String?
    /// Sender domains "linked" to the emulated resource, compared case-insensitively. Empty: any domain.
    /// A sender on another domain gets 404 `DomainNotLinked`.
    public var senderDomains: [String]
    /// Allowed sender addresses (`DoNotReply@contoso.com`) or local parts (`DoNotReply`), compared
    /// case-insensitively. Empty: any local part. Another sender gets 400 `InvalidSenderUserName`.
    public var senderAddresses: [String]
    /// The poll that reports the terminal status: 1 (the default) means the first poll already says
    /// `Succeeded`; 3 means two polls say `Running` first. 0 makes the 202 itself report the final status.
    public var pollsUntilDone: Int
    /// An operation also stays `Running` until this much time has passed since it was accepted.
    public var completionDelay: Duration
    /// The `Retry-After` (seconds) sent with the 202 and with non-terminal polls. ACS sends 20 and 100;
    /// 1 keeps clients that honour it fast.
    public var retryAfterSeconds: Int
    /// How far `x-ms-date` may be from the emulator's clock. ACS's window is undocumented; App
    /// Configuration's identical scheme documents ±15 minutes (§3.4 step 3).
    public var clockSkewTolerance: TimeInterval
    /// The largest accepted request body in bytes: ACS's "10 MB" read as 10⁷ (§2.2 "Size", §9 item 4).
    public var maxRequestBytes: Int
    /// The most recipients (to + cc + bcc) one message may have (§2.2 "Recipients").
    public var maxRecipients: Int
    /// Whether a repeated `Operation-Id` with a different body is refused with 409 `Conflict` (the §8
    /// suggestion). When false, the repeat is answered with the existing operation like an identical one.
    public var conflictOnDifferentBody: Bool
    /// A file that receives one JSON line per accepted message. Nil: messages are kept in memory only.
    public var recordFile: String?
    /// Whether https offers HTTP/2 as well as HTTP/1.1 (ALPN `h2`, `http/1.1`), as ACS endpoints do; the client
    /// picks. Plain http is HTTP/1.1 only either way (no h2c).
    public var http2: Bool
    /// ACS-like send quotas with sliding windows (429 `TooManyRequests` + `Retry-After` over them); off by
    /// default. `POST /admin/quota` changes them while the emulator runs.
    public var sendQuota: SendQuota

    public init(
        accessKey: AccessKey? = nil,
        bearerToken: String? = nil,
        senderDomains: [String] = [],
        senderAddresses: [String] = [],
        pollsUntilDone: Int = 1,
        completionDelay: Duration = .zero,
        retryAfterSeconds: Int = 1,
        clockSkewTolerance: TimeInterval = 15 * 60,
        maxRequestBytes: Int = 10_000_000,
        maxRecipients: Int = 50,
        conflictOnDifferentBody: Bool = true,
        recordFile: String? = nil,
        http2: Bool = true,
        sendQuota: SendQuota = SendQuota()
    ) {
        self.accessKey = accessKey
        self.bearerToken = bearerToken
        self.senderDomains = senderDomains
        self.senderAddresses = senderAddresses
        self.pollsUntilDone = pollsUntilDone
        self.completionDelay = completionDelay
        self.retryAfterSeconds = retryAfterSeconds
        self.clockSkewTolerance = clockSkewTolerance
        self.maxRequestBytes = maxRequestBytes
        self.maxRecipients = maxRecipients
        self.conflictOnDifferentBody = conflictOnDifferentBody
        self.recordFile = recordFile
        self.http2 = http2
        self.sendQuota = sendQuota
    }

    /// The api-versions the emulator serves (acs-email-api.md §1.2): the two GA versions and the two
    /// previews whose send body is the GA shape (plus `contentId`, plus `senderDisplayName`).
    public static let supportedAPIVersions: [String] = [
        "2023-03-31", "2024-07-01-preview", "2025-01-15-preview", "2025-09-01",
    ]

    /// Whether `attachments[].contentId` exists in `apiVersion`: not in 2023-03-31 (§1.2), so the
    /// duplicate-`contentId` rule does not apply there.
    static func supportsContentID(_ apiVersion: String) -> Bool {
        apiVersion != "2023-03-31"
    }
}
