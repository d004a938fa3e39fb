import Foundation
import Testing

@testable import ACSClient

/// The one IMF-fixdate implementation the signer, the client and the emulator share.
@Suite struct HTTPDateTests {
    @Test func formatsAndParsesRoundTrip() {
        let date = Date(timeIntervalSince1970: 1_700_000_000)
        #expect(HTTPDate.format(date) == "Tue, 14 Nov 2023 22:13:20 GMT")
        #expect(HTTPDate.parse("Tue, 14 Nov 2023 22:13:20 GMT") == date)
        #expect(HTTPDate.format(Date(timeIntervalSince1970: 0)) == "Thu, 01 Jan 1970 00:00:00 GMT")
    }

    @Test(arguments: [
        "", "Tue, 14 Nov 2023 22:13:20", "Tue, 14 Nov 99999 22:13:20 GMT", "Tue, 32 Nov 2023 22:13:20 GMT",
        "Tue, 14 Foo 2023 22:13:20 GMT", "Tue, 14 Nov 2023 24:00:00 GMT", "Tue, 14 Nov 1969 22:13:20 GMT",
    ])
    func refusesWhatIsNotAnIMFFixdate(text: String) {
        #expect(HTTPDate.parse(text) == nil)
    }
}
