@testable import MailParser

/// The header-field grammars on their own: RFC 2047 encoded words, RFC 2045/2231 parameters and RFC 5322
/// address lists. Invariants: never a trap, and no address carries a control character (a line break in one
/// found here first: `AddressTests.addressesWithControlCharactersAreLeftOut`).
func fuzzHeaderFields(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let octets = Array(UnsafeBufferPointer(start: data, count: size))
    _ = EncodedWords.decode(octets)
    _ = EncodedWords.headerText(octets)
    let parameters = ContentParameters.parse(octets)
    precondition(parameters.value == parameters.value.lowercased(), "the media type is not lower-cased")
    for address in AddressParser.parse(octets) {
        precondition(
            !address.address.unicodeScalars.contains { $0.value < 0x20 || $0.value == 0x7F },
            "control character in an address")
    }
    return 0
}
