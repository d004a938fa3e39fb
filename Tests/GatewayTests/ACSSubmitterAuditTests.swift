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
        #expect(result.annotations == SubmissionAnnotations(
            reason: .acsAccepted, acsOperationID: Self.id, acsStatus: "Running", acsRequestID: "req-1", acsAttempts: 1))
    }

    @Test func failed_namesTheStatusAndACSsCode() {
        let result = annotations(.failed(operationID: Self.id, status: "Failed", code: "EmailDropped", message: "x"))
        #expect(result.reply.code == 554)
        #expect(result.annotations.reason == .acsFailed)
        #expect(result.annotations.acsStatus == "Failed")
        #expect(result.annotations.acsErrorCode == "EmailDropped")
    }

    @Test func refusals_andDeferrals_haveTheirReasons() {
        let rejected = annotations(.rejected(status: 400, code: "InvalidEmailAddress", message: nil))
        #expect(rejected.annotations.reason == .acsRejected)
        #expect(rejected.annotations.acsErrorCode == "InvalidEmailAddress")
        #expect(rejected.annotations.acsOperationID == Self.id)  // the Operation-Id that was sent
        #expect(rejected.annotations.acsStatus == nil)
        #expect(annotations(.authenticationFailed(status: 401, code: nil, message: nil)).annotations.reason
            == .acsAuthentication)
        #expect(annotations(.throttled(retryAfter: 3), attempts: 4).annotations.reason == .acsThrottled)
        #expect(annotations(.unavailable(status: 503, detail: "HTTP 503")).annotations.reason == .acsUnavailable)
        let unauthenticated = annotations(
            .notAuthenticated(AuthenticationError("token endpoint down", isTransient: true)), attempts: 0)
        #expect(unauthenticated.annotations.reason == .acsNoCredentials)
        #expect(unauthenticated.annotations.acsOperationID == nil)  // ACS was never asked
        #expect(unauthenticated.reply.code == 451)
    }
}
