import ACSClient
import SMTPProtocol
import Testing

@testable import Gateway

/// Every row of the reply table (`ACSReplyMapping`, README "Delivering through ACS").
@Suite struct ACSReplyMappingTests {
    struct Row: Sendable, CustomTestStringConvertible {
        var name: String
        var outcome: ACSSendOutcome
        var code: Int
        var enhanced: String
        var textContains: String
        var testDescription: String { name }
    }

    static let id = "0192f0c4-0000-7000-8000-000000000001"

    static let rows: [Row] = [
        Row(
            name: "202 accepted", outcome: .accepted(operationID: id, status: "Running"), code: 250,
            enhanced: "2.0.0", textContains: "OK queued as \(id)"),
        Row(
            name: "poll Succeeded", outcome: .accepted(operationID: id, status: "Succeeded"), code: 250,
            enhanced: "2.0.0", textContains: id),
        Row(
            name: "poll Failed, all recipients suppressed",
            outcome: .failed(
                operationID: id, status: "Failed", code: "EmailDroppedAllRecipientsSuppressed",
                message: "Message dropped because all recipients were suppressed"),
            code: 550, enhanced: "5.1.0", textContains: "EmailDroppedAllRecipientsSuppressed"),
        Row(
            name: "poll Failed, dropped",
            outcome: .failed(
                operationID: id, status: "Failed", code: "EmailDropped",
                message: "dropped"),
            code: 554, enhanced: "5.0.0", textContains: "EmailDropped"),
        Row(
            name: "poll Canceled", outcome: .failed(operationID: id, status: "Canceled", code: nil, message: nil),
            code: 554, enhanced: "5.0.0", textContains: "canceled"),
        Row(
            name: "400 InvalidEmailAddress",
            outcome: .rejected(status: 400, code: "InvalidEmailAddress", message: "bad"),
            code: 550, enhanced: "5.1.3", textContains: "InvalidEmailAddress"),
        Row(
            name: "400 InvalidSenderUserName",
            outcome: .rejected(status: 400, code: "InvalidSenderUserName", message: "Invalid email sender username"),
            code: 553, enhanced: "5.1.7", textContains: "Invalid email sender username"),
        Row(
            name: "404 DomainNotLinked",
            outcome: .rejected(status: 404, code: "DomainNotLinked", message: "not linked"),
            code: 553, enhanced: "5.1.7", textContains: "DomainNotLinked"),
        Row(
            name: "403 DomainNotLinked",
            outcome: .authenticationFailed(status: 403, code: "DomainNotLinked", message: "not linked"),
            code: 553, enhanced: "5.1.7", textContains: "DomainNotLinked"),
        Row(
            name: "400 invalid attachment",
            outcome: .rejected(status: 400, code: "BadRequest", message: "Invalid attachment report.exe"),
            code: 554, enhanced: "5.6.0", textContains: "report.exe"),
        Row(
            name: "413", outcome: .rejected(status: 413, code: "RequestEntityTooLarge", message: nil), code: 552,
            enhanced: "5.3.4", textContains: "413"),
        Row(
            name: "other 4xx", outcome: .rejected(status: 409, code: "Conflict", message: "differs"), code: 554,
            enhanced: "5.0.0", textContains: "Conflict"),
        Row(
            name: "401", outcome: .authenticationFailed(status: 401, code: "Denied", message: "Denied"), code: 451,
            enhanced: "4.7.0", textContains: "credentials"),
        Row(
            name: "403 role", outcome: .authenticationFailed(status: 403, code: "Forbidden", message: nil), code: 451,
            enhanced: "4.7.0", textContains: "credentials"),
        Row(
            name: "429 after the budget", outcome: .throttled(retryAfter: 29.2), code: 451, enhanced: "4.7.1",
            textContains: "retry in 30 s"),
        Row(
            name: "5xx after retries", outcome: .unavailable(status: 503, detail: "HTTP 503"), code: 451,
            enhanced: "4.4.0", textContains: "unavailable"),
        Row(
            name: "timeout after retries", outcome: .unavailable(status: nil, detail: "timeout: stalled"), code: 451,
            enhanced: "4.4.1", textContains: "did not answer"),
        Row(
            name: "no token", outcome: .notAuthenticated(AuthenticationError("token endpoint down", isTransient: true)),
            code: 451, enhanced: "4.7.0", textContains: "authenticate"),
    ]

    @Test(arguments: rows)
    func mapsTheOutcome(_ row: Row) {
        let reply = ACSReplyMapping.reply(for: row.outcome)
        #expect(reply.code == row.code)
        #expect(reply.enhancedCode?.description == row.enhanced)
        #expect(reply.lines.joined().contains(row.textContains))
    }

    @Test(arguments: [Double.infinity, .nan, 1e300, -1])
    func absurdRetryAfterValues_neverTrap(_ value: Double) {
        let reply = ACSReplyMapping.reply(for: .throttled(retryAfter: value))
        #expect(reply.code == 451)
        #expect(reply.enhancedCode == EnhancedStatusCode(4, 7, 1))
    }

    @Test func authenticationFailures_nameALikelyCause() {
        #expect(ACSReplyMapping.likelyCause(status: 401, code: nil, message: "request time drift").contains("NTP"))
        #expect(ACSReplyMapping.likelyCause(status: 403, code: nil, message: nil).contains("role"))
        #expect(ACSReplyMapping.likelyCause(status: 401, code: "Denied", message: nil).contains("access key"))
    }
}
