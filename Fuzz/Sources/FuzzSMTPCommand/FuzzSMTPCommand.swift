import SMTPProtocol

/// One command line, as the session hands it over (without CRLF). Invariants: never a trap; a parsed path
/// fits RFC 5321's limit; a refusal is a 5xx whose wire form is one bounded line.
func fuzzSMTPCommand(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data else { return 0 }
    let line = UnsafeBufferPointer(start: data, count: size)
    switch SMTPCommand.parse(line) {
    case .success(.mail(let from, _)):
        precondition(from.description.utf8.count <= SMTPCommand.maxPathLength + 2, "reverse-path over the limit")
    case .success(.recipient(let to, _)):
        precondition(to.description.utf8.count <= SMTPCommand.maxPathLength + 2, "forward-path over the limit")
    case .success:
        break
    case .failure(let error):
        precondition(error.reply.code >= 500, "a syntax refusal must be permanent: \(error.reply)")
        precondition(error.reply.wireBytes.count <= 512, "reply over RFC 5321's 512 octets")
    }
    return 0
}
