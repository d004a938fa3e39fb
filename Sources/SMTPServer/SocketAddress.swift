import Glibc

/// An IPv4 or IPv6 socket address, convertible to and from `sockaddr_storage`.
public struct SocketAddress: Hashable, Sendable, CustomStringConvertible {
    /// The IP address octets: 4 for IPv4, 16 for IPv6.
    public var ipBytes: [UInt8]
    public var port: UInt16

    public init(ipBytes: [UInt8], port: UInt16) {
        precondition(ipBytes.count == 4 || ipBytes.count == 16, "an IP address has 4 or 16 octets")
        self.ipBytes = ipBytes
        self.port = port
    }

    public var isIPv6: Bool { ipBytes.count == 16 }

    /// The address as an IPv4 address when it is one, including IPv4-mapped IPv6 (`::ffff:a.b.c.d`),
    /// which is how an IPv4 client appears on a dual-stack socket.
    public var unmappedIPBytes: [UInt8] {
        if isIPv6, ipBytes[0..<10].allSatisfy({ $0 == 0 }), ipBytes[10] == 0xFF, ipBytes[11] == 0xFF {
            return Array(ipBytes[12..<16])
        }
        return ipBytes
    }

    /// The IP address in text form (`127.0.0.1`, `::1`), without the port.
    public var ipString: String {
        let bytes = ipBytes
        var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        let family = isIPv6 ? AF_INET6 : AF_INET
        let ok = bytes.withUnsafeBytes { raw in
            inet_ntop(family, raw.baseAddress, &text, socklen_t(text.count)) != nil
        }
        guard ok else { return "?" }
        return String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// `127.0.0.1:2525` or `[::1]:2525`.
    public var description: String { isIPv6 ? "[\(ipString)]:\(port)" : "\(ipString):\(port)" }

    /// Parses a literal IP address (no host names: the gateway never resolves names to listen or admit).
    public init?(ip text: String, port: UInt16) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self.init(ipBytes: withUnsafeBytes(of: v4) { Array($0) }, port: port)
            return
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            self.init(ipBytes: withUnsafeBytes(of: v6) { Array($0) }, port: port)
            return
        }
        return nil
    }

    /// Parses `HOST:PORT`, `[IPv6]:PORT`; `localhost` means 127.0.0.1.
    public init?(hostAndPort text: String) {
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { return nil }
            host = text[text.index(after: text.startIndex)..<close]
            let rest = text[text.index(after: close)...]
            guard rest.hasPrefix(":") else { return nil }
            portText = rest.dropFirst()
        } else {
            guard let colon = text.lastIndex(of: ":") else { return nil }
            host = text[..<colon]
            portText = text[text.index(after: colon)...]
            if host.contains(":") { return nil }  // an IPv6 literal needs brackets
        }
        guard let port = UInt16(portText) else { return nil }
        let ip = host == "localhost" ? "127.0.0.1" : String(host)
        self.init(ip: ip, port: port)
    }

    init?(storage: sockaddr_storage) {
        var storage = storage
        switch Int32(storage.ss_family) {
        case AF_INET:
            let sin = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in.self) }
            self.init(ipBytes: withUnsafeBytes(of: sin.sin_addr) { Array($0) }, port: UInt16(bigEndian: sin.sin_port))
        case AF_INET6:
            let sin6 = withUnsafeBytes(of: &storage) { $0.load(as: sockaddr_in6.self) }
            self.init(
                ipBytes: withUnsafeBytes(of: sin6.sin6_addr) { Array($0) }, port: UInt16(bigEndian: sin6.sin6_port))
        default:
            return nil
        }
    }

    /// Calls `body` with this address as a `sockaddr` pointer and its length.
    public func withSockAddr<Result>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> Result) -> Result {
        if isIPv6 {
            var sin6 = sockaddr_in6()
            sin6.sin6_family = sa_family_t(AF_INET6)
            sin6.sin6_port = port.bigEndian
            withUnsafeMutableBytes(of: &sin6.sin6_addr) { $0.copyBytes(from: ipBytes) }
            return withUnsafePointer(to: &sin6) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    body($0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        }
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = port.bigEndian
        withUnsafeMutableBytes(of: &sin.sin_addr) { $0.copyBytes(from: ipBytes) }
        return withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
}

/// An IP network in CIDR notation (`192.0.2.0/24`, `2001:db8::/32`), for access control.
public struct IPNetwork: Hashable, Sendable, CustomStringConvertible {
    public var prefix: [UInt8]
    public var prefixLength: Int

    /// Parses `ADDRESS/LENGTH`, or a bare address meaning a single host.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        guard let address = SocketAddress(ip: String(parts[0]), port: 0) else { return nil }
        let maxLength = address.ipBytes.count * 8
        var length = maxLength
        if parts.count == 2 {
            guard let parsed = Int(parts[1]), (0...maxLength).contains(parsed) else { return nil }
            length = parsed
        }
        self.prefix = Self.masked(address.ipBytes, length)
        self.prefixLength = length
    }

    /// The loopback networks: the default set of allowed clients.
    public static let loopback: [IPNetwork] = [IPNetwork("127.0.0.0/8"), IPNetwork("::1/128")].compactMap { $0 }

    public var description: String {
        let address = SocketAddress(ipBytes: prefix, port: 0)
        return "\(address.ipString)/\(prefixLength)"
    }

    /// True when `address` is inside this network. IPv4-mapped IPv6 clients match IPv4 networks.
    public func contains(_ address: SocketAddress) -> Bool {
        let bytes = prefix.count == 4 ? address.unmappedIPBytes : address.ipBytes
        guard bytes.count == prefix.count else { return false }
        return Self.masked(bytes, prefixLength) == prefix
    }

    private static func masked(_ bytes: [UInt8], _ length: Int) -> [UInt8] {
        bytes.enumerated().map { index, byte in
            let bits = max(0, min(8, length - index * 8))
            let mask: UInt8 = bits == 0 ? 0 : ~UInt8(0) << (8 - bits)
            return byte & mask
        }
    }
}
