import SMTPProtocol
import SMTPServer
import Testing

@testable import ACSClient
@testable import Gateway

/// What ACS delivery tells the audit line and the metrics, for each kind of outcome.
@Suite struct ACSSubmitterAuditTests {
    static let id = "0192f0c4-0000-7000-8000-000000000001"

    private func annotations(_ outcome: ACSSendOutcome, attempts: Int = 1) -> SubmissionResult {
        ACSSubmitter.result(
            for: ACSSendResult(outcome: outcome, attempts: attempts, requestID: "req-1"), operationID: Self.id)
    }

    @Test func accepted_namesTheOperationAndItsStatus() {
        let result = annotations(.accepted(operationID: Self.id, status: "Running"))
        #expect(result.reply.code == 250)
        #expect(result.reason == .acsAccepted)
        #expect(
            result.auditFields == [
                AuditField("acs.operation_id", Self.id), AuditField("acs.status", "Running"),
                AuditField("acs.request_id", "req-1"), AuditField("acs.attempts", "1"),
            ])
    }

    @Test func failed_namesTheStatusAndACSsCode() {
        let result = annotations(.failed(operationID: Self.id, status: "Failed", code: "EmailDropped", message: "x"))
        #expect(result.reply.code == 554)
        #expect(result.reason == .acsFailed)
        #expect(result[field: "acs.status"] == "Failed")
        #expect(result[field: "acs.error_code"] == "EmailDropped")
    }

    @Test func refusals_andDeferrals_haveTheirReasons() {
        let rejected = annotations(.rejected(status: 400, code: "InvalidEmailAddress", message: nil))
        #expect(rejected.reason == .acsRejected)
        #expect(rejected[field: "acs.error_code"] == "InvalidEmailAddress")
        #expect(rejected[field: "acs.operation_id"] == Self.id)  // the Operation-Id that was sent
        #expect(rejected[field: "acs.status"] == nil)
        #expect(
            annotations(.authenticationFailed(status: 401, code: nil, message: nil)).reason
                == .acsAuthentication)
        #expect(annotations(.throttled(retryAfter: 3), attempts: 4).reason == .acsThrottled)
        #expect(annotations(.unavailable(status: 503, detail: "HTTP 503")).reason == .acsUnavailable)
        let unauthenticated = annotations(
            .notAuthenticated(AuthenticationError("token endpoint down", isTransient: true)), attempts: 0)
        #expect(unauthenticated.reason == .acsNoCredentials)
        #expect(unauthenticated[field: "acs.operation_id"] == nil)  // ACS was never asked
        #expect(unauthenticated.reply.code == 451)
    }
}
