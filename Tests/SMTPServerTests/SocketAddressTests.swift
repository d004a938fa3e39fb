import Foundation
import Testing

@testable import SMTPServer

@Suite struct SocketAddressTests {
    @Test(arguments: [
        ("127.0.0.1:2525", "127.0.0.1:2525"),
        ("localhost:25", "127.0.0.1:25"),
        ("[::1]:2525", "[::1]:2525"),
        ("0.0.0.0:0", "0.0.0.0:0"),
        ("[2001:db8::1]:587", "[2001:db8::1]:587"),
    ])
    func parsesHostAndPort(_ text: String, _ expected: String) throws {
        #expect(try #require(SocketAddress(hostAndPort: text)).description == expected)
    }

    @Test(arguments: ["127.0.0.1", "::1:25", "example.com:25", "127.0.0.1:99999", "[::1]2525", "[::1", ""])
    func rejectsMalformedHostAndPort(_ text: String) {
        #expect(SocketAddress(hostAndPort: text) == nil)
    }

    @Test func ipv4Network_containsItsHosts_andMappedIPv6Clients() throws {
        let network = try #require(IPNetwork("192.0.2.0/24"))
        #expect(network.contains(try #require(SocketAddress(ip: "192.0.2.77", port: 1))))
        #expect(!network.contains(try #require(SocketAddress(ip: "192.0.3.1", port: 1))))
        #expect(network.contains(try #require(SocketAddress(ip: "::ffff:192.0.2.9", port: 1))))
        #expect(network.description == "192.0.2.0/24")
    }

    @Test func ipv6Network() throws {
        let network = try #require(IPNetwork("2001:db8::/32"))
        #expect(network.contains(try #require(SocketAddress(ip: "2001:db8:1::5", port: 1))))
        #expect(!network.contains(try #require(SocketAddress(ip: "2001:db9::1", port: 1))))
        #expect(!network.contains(try #require(SocketAddress(ip: "192.0.2.1", port: 1))))
    }

    @Test func bareAddressIsASingleHost_andOddPrefixLengthsMask() throws {
        let host = try #require(IPNetwork("10.1.2.3"))
        #expect(host.prefixLength == 32)
        #expect(!host.contains(try #require(SocketAddress(ip: "10.1.2.4", port: 1))))
        let odd = try #require(IPNetwork("10.1.2.255/23"))
        #expect(odd.description == "10.1.2.0/23")
        #expect(odd.contains(try #require(SocketAddress(ip: "10.1.3.9", port: 1))))
    }

    @Test(arguments: ["10.0.0.0/33", "::/129", "nonsense", "10.0.0.0/-1", "10.0.0.0/"])
    func rejectsMalformedNetworks(_ text: String) {
        #expect(IPNetwork(text) == nil)
    }

    @Test func loopbackDefault_admitsBothFamilies() throws {
        let v4 = try #require(SocketAddress(ip: "127.0.0.53", port: 1))
        let v6 = try #require(SocketAddress(ip: "::1", port: 1))
        let other = try #require(SocketAddress(ip: "192.0.2.1", port: 1))
        #expect(IPNetwork.loopback.contains { $0.contains(v4) })
        #expect(IPNetwork.loopback.contains { $0.contains(v6) })
        #expect(!IPNetwork.loopback.contains { $0.contains(other) })
    }

    @Test func messageIDs_areUUIDv7AndTimeOrdered() {
        let first = Identifiers.messageID()
        let second = Identifiers.messageID()
        #expect(first.count == 36)
        #expect(Array(first)[14] == "7")
        #expect(first.prefix(8) <= second.prefix(8))
        #expect(first != second)
    }

    @Test func messageIDs_haveTheUUIDLayoutVariantAndTimestamp() throws {
        let now = Date(timeIntervalSince1970: 1_796_000_000.123)
        let id = Identifiers.messageID(now: now)
        let groups = id.split(separator: "-", omittingEmptySubsequences: false).map(\.count)
        #expect(groups == [8, 4, 4, 4, 12])
        #expect(id.allSatisfy { "0123456789abcdef-".contains($0) })
        #expect("89ab".contains(Array(id)[19]))  // RFC 9562 variant bits 10
        let stamp = try #require(Identifiers.timestamp(ofMessageID: id))
        #expect(abs(stamp.timeIntervalSince1970 - now.timeIntervalSince1970) < 0.001)
        // The random part differs between two ids made in the same millisecond.
        #expect(Set((0..<100).map { _ in Identifiers.messageID(now: now) }).count == 100)
    }

    @Test func sessionIDs_areTwelveHexDigits() {
        let ids = (0..<100).map { _ in Identifiers.sessionID() }
        #expect(ids.allSatisfy { $0.count == 12 && $0.allSatisfy { "0123456789abcdef".contains($0) } })
        #expect(Set(ids).count == 100)
    }
}
