/// A multipart boundary and the recognition of its delimiter lines (RFC 2046 §5.1.1).
struct Boundary {
    /// `--` + boundary.
    private let dashBoundary: [UInt8]
    /// `--` + boundary without trailing whitespace, when the parameter ends in whitespace.
    private let trimmedDashBoundary: [UInt8]?

    init?(_ parameter: String) {
        let octets = Array(parameter.utf8)
        guard !octets.isEmpty else { return nil }
        dashBoundary = [UInt8(ascii: "-"), UInt8(ascii: "-")] + octets
        var trimmed = octets
        while let last = trimmed.last, last == 0x20 || last == 0x09 { trimmed.removeLast() }
        // QUIRK: a boundary ending in whitespace (legal bchars, but often stripped in transit)
        // also matches delimiter lines written without it.
        trimmedDashBoundary =
            trimmed.count != octets.count && !trimmed.isEmpty ? [UInt8(ascii: "-"), UInt8(ascii: "-")] + trimmed : nil
    }

    /// `nil` when `line` (without its line break) is not a delimiter line for this boundary;
    /// otherwise whether it is the close delimiter (`--boundary--`).
    ///
    /// Matching is by prefix, as RFC 2046 §5.1.1 instructs: "an exact match of the entire
    /// candidate line is not required; it is sufficient that the boundary appear in its
    /// entirety following the CRLF". That is also how Dovecot and Stalwart match.
    func match(_ line: ArraySlice<UInt8>) -> Bool? {
        if let kind = Self.match(line, dashBoundary) { return kind }
        if let trimmedDashBoundary { return Self.match(line, trimmedDashBoundary) }
        return nil
    }

    private static func match(_ line: ArraySlice<UInt8>, _ dashBoundary: [UInt8]) -> Bool? {
        guard line.starts(with: dashBoundary) else { return nil }
        return line.dropFirst(dashBoundary.count).starts(with: [UInt8(ascii: "-"), UInt8(ascii: "-")])
    }
}
