import ACSClient
import Foundation
import Testing

@testable import ACSEmulator

/// The gateway's transport (`CurlMultiTransport`, HTTP/2 by ALPN) against the emulator speaking HTTP/2 over TLS,
/// as real ACS endpoints do: many transfers multiplexed on few connections, one socket shared by many easy
/// handles. And the HTTP/1.1 paths that remain: plain http, and https with HTTP/2 turned off.
@Suite struct HTTP2Tests {
    static let concurrentSends = 50

    /// `count` signed sends at once, each with its own Operation-Id; returns the ids and the responses.
    private static func concurrentSends(
        _ emulator: EmulatorHarness, count: Int = concurrentSends
    ) async throws -> [(id: String, response: HTTPResponse)] {
        try await withThrowingTaskGroup(of: (String, HTTPResponse).self) { group in
            for _ in 0..<count {
                group.addTask {
                    let id = UUID().uuidString.lowercased()
                    return (id, try await emulator.send(operationID: id))
                }
            }
            var results: [(id: String, response: HTTPResponse)] = []
            for try await result in group {
                results.append(result)
            }
            return results
        }
    }

    private static func concurrentPolls(_ emulator: EmulatorHarness, _ ids: [String]) async throws -> [HTTPResponse] {
        try await withThrowingTaskGroup(of: HTTPResponse.self) { group in
            for id in ids {
                group.addTask { try await emulator.poll(id) }
            }
            var results: [HTTPResponse] = []
            for try await result in group {
                results.append(result)
            }
            return results
        }
    }

    private static func counts(_ emulator: EmulatorHarness, _ route: String) async throws -> JSONValue {
        let counts = try #require(JSONValue(parsing: try await emulator.admin("GET", "/admin/requests").body))
        return try #require(counts[route])
    }

    @Test func tlsWithHTTP2_concurrentSendsAndPollsAreMultiplexedOverH2() async throws {
        let certificates = try TestCertificates.make()
        try await EmulatorHarness.with(tls: certificates) { emulator in
            // A cold start: every send is added before any connection exists, as after the gateway starts.
            let sends = try await Self.concurrentSends(emulator)
            #expect(sends.count == Self.concurrentSends)
            #expect(sends.allSatisfy { $0.response.status == 202 }, "\(sends.map(\.response.status))")
            #expect(sends.allSatisfy { $0.response.httpVersion == "2" }, "\(sends.map(\.response.httpVersion))")
            #expect(sends.allSatisfy { $0.response.json?["id"]?.stringValue == $0.id })

            let polls = try await Self.concurrentPolls(emulator, sends.map(\.id))
            #expect(polls.allSatisfy { $0.status == 200 }, "\(polls.map(\.status))")
            #expect(polls.allSatisfy { $0.httpVersion == "2" })
            #expect(polls.allSatisfy { $0.json?["status"]?.stringValue == "Succeeded" })

            // Every send recorded exactly once, as an HTTP/2 request.
            let messages = try await emulator.recordedMessages()
            #expect(messages.count == Self.concurrentSends)
            #expect(messages.map(\.operationId).sorted() == sends.map(\.id).sorted())
            #expect(messages.allSatisfy { $0.httpVersion == "2" })

            // Multiplexed: the emulator saw far fewer client connections than requests. (libcurl may open a
            // second connection while the first is still in its handshake, so no exact number is asserted.)
            let send = try await Self.counts(emulator, "send")
            let poll = try await Self.counts(emulator, "poll")
            #expect(send["total"]?.intValue == Self.concurrentSends)
            #expect(send["httpVersions"] == .object(["2": .integer(Int64(Self.concurrentSends))]))
            #expect(poll["httpVersions"] == .object(["2": .integer(Int64(Self.concurrentSends))]))
            let sendConnections = try #require(send["connections"]?.intValue)
            let pollConnections = try #require(poll["connections"]?.intValue)
            #expect(sendConnections >= 1 && sendConnections <= 2, "sends came on \(sendConnections) connections")
            #expect(pollConnections >= 1 && pollConnections <= 2, "polls came on \(pollConnections) connections")
        }
    }

    @Test func tlsWithHTTP2_theGatewaysClientSendsAndPollsOverH2() async throws {
        let certificates = try TestCertificates.make()
        try await EmulatorHarness.with(tls: certificates) { emulator in
            let endpoint = try #require(ACSEndpoint("https://\(emulator.host)"))
            var configuration = ACSClientConfiguration(endpoint: endpoint)
            configuration.replyAfter = .final
            configuration.defaultPollInterval = 0.05
            let client = ACSEmailClient(
                configuration: configuration, authenticator: HMACAuthenticator(key: EmulatorHarness.key),
                transport: emulator.transport)
            let ids = (0..<20).map { _ in UUID().uuidString.lowercased() }
            let outcomes = await withTaskGroup(of: ACSSendOutcome.self) { group in
                for id in ids {
                    group.addTask {
                        await withCheckedContinuation { continuation in
                            client.send(body: Array(EmulatorHarness.validMessage.utf8), operationID: id) {
                                continuation.resume(returning: $0.outcome)
                            }
                        }
                    }
                }
                var outcomes: [ACSSendOutcome] = []
                for await outcome in group {
                    outcomes.append(outcome)
                }
                return outcomes
            }
            #expect(outcomes.count == ids.count)
            for outcome in outcomes {
                guard case .accepted(_, let status) = outcome else {
                    Issue.record("not accepted: \(outcome)")
                    continue
                }
                #expect(status == "Succeeded")
            }
            let messages = try await emulator.recordedMessages()
            #expect(messages.map(\.operationId).sorted() == ids.sorted())
            #expect(messages.allSatisfy { $0.httpVersion == "2" })
            let poll = try await Self.counts(emulator, "poll")
            #expect(poll["httpVersions"] == .object(["2": .integer(Int64(ids.count))]))
        }
    }

    @Test func tlsWithoutHTTP2_isHTTP11() async throws {
        let certificates = try TestCertificates.make()
        try await EmulatorHarness.with(
            EmulatorConfiguration(accessKey: EmulatorHarness.key, http2: false), tls: certificates
        ) { emulator in
            let sends = try await Self.concurrentSends(emulator, count: 10)
            #expect(sends.allSatisfy { $0.response.status == 202 && $0.response.httpVersion == "1.1" })
            let polls = try await Self.concurrentPolls(emulator, sends.map(\.id))
            #expect(polls.allSatisfy { $0.status == 200 && $0.httpVersion == "1.1" })
            #expect(try await emulator.recordedMessages().allSatisfy { $0.httpVersion == "1.1" })
            let send = try await Self.counts(emulator, "send")
            #expect(send["httpVersions"] == .object(["1.1": .integer(10)]))
        }
    }

    @Test func plainHTTP_isHTTP11() async throws {
        try await EmulatorHarness.with { emulator in
            #expect(emulator.emulator.configuration.http2, "HTTP/2 is on by default; plain http ignores it")
            let sends = try await Self.concurrentSends(emulator, count: 10)
            #expect(sends.allSatisfy { $0.response.status == 202 && $0.response.httpVersion == "1.1" })
            let polls = try await Self.concurrentPolls(emulator, sends.map(\.id))
            #expect(polls.allSatisfy { $0.status == 200 && $0.httpVersion == "1.1" })
            let messages = try await emulator.recordedMessages()
            #expect(messages.count == 10)
            #expect(messages.allSatisfy { $0.httpVersion == "1.1" })
            let send = try await Self.counts(emulator, "send")
            #expect(send["httpVersions"] == .object(["1.1": .integer(10)]))
            // HTTP/1.1 takes one connection per concurrent request (some may be reused).
            #expect((send["connections"]?.intValue ?? 0) >= 1)
        }
    }
}
