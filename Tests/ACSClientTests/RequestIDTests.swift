import Testing

@testable import ACSClient

/// `x-ms-client-request-id`: a random UUID in the form ACS logs and echoes.
struct RequestIDTests {
    @Test func isALowercaseVersion4UUID() {
        let id = RequestID.make()
        #expect(id.split(separator: "-", omittingEmptySubsequences: false).map(\.count) == [8, 4, 4, 4, 12])
        #expect(id.allSatisfy { "0123456789abcdef-".contains($0) })
        #expect(Array(id)[14] == "4")
        #expect("89ab".contains(Array(id)[19]))
    }

    @Test func idsDoNotRepeat() {
        #expect(Set((0..<1_000).map { _ in RequestID.make() }).count == 1_000)
    }
}
