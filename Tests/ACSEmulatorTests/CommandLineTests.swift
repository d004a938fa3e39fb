import ACSClient
import Foundation
import Testing

/// The `acs-email-emulator` binary itself: the "listening on" line with port 0, signed requests over
/// http and https, exit 0 on SIGINT and SIGTERM, and refused command lines.
@Suite(.serialized) struct CommandLineTests {
    /// `$EMULATOR_BIN`, or the binary SwiftPM built beside this test bundle.
    static let binary: String? = {
        if let path = ProcessInfo.processInfo.environment["EMULATOR_BIN"] { return path }
        let directory = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for candidate in [directory, directory.deletingLastPathComponent()] {
            let path = candidate.appendingPathComponent("acs-email-emulator").path
            if FileManager.default.isExecutableFile(atPath: path) { return path }
        }
        return nil
    }()

    /// A running emulator process and the port it printed.
    final class EmulatorProcess {
        let process = Process()
        let port: Int
        let scheme: String
        private let errors = Pipe()

        init(_ arguments: [String]) throws {
            guard let binary = CommandLineTests.binary else { throw TestCertificates.Failure(description: "no binary") }
            process.executableURL = URL(fileURLWithPath: binary)
            process.arguments = arguments
            let output = Pipe()
            process.standardOutput = output
            process.standardError = errors
            try process.run()
            var text = ""
            let deadline = Date().addingTimeInterval(15)
            while !text.contains("\n") && Date() < deadline {
                let chunk = output.fileHandleForReading.availableData
                if chunk.isEmpty { break }
                text += String(decoding: chunk, as: UTF8.self)
            }
            guard let line = text.split(separator: "\n").first, line.contains("listening on"),
                let colon = line.lastIndex(of: ":"), let port = Int(line[line.index(after: colon)...])
            else {
                kill(process.processIdentifier, SIGKILL)
                throw TestCertificates.Failure(description: "the emulator did not start: \(text)")
            }
            self.port = port
            self.scheme = line.contains("https://") ? "https" : "http"
        }

        /// Sends `signal` and returns the exit status, or nil when the process outlives `seconds`.
        func stop(with signal: Int32, within seconds: Double = 5) -> Int32? {
            kill(process.processIdentifier, signal)
            let deadline = Date().addingTimeInterval(seconds)
            while process.isRunning && Date() < deadline {
                usleep(20_000)
            }
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
                return nil
            }
            return process.terminationStatus
        }

        deinit {
            if process.isRunning {
                kill(process.processIdentifier, SIGKILL)
                process.waitUntilExit()
            }
        }
    }

    private static func send(port: Int, scheme: String, caFile: String? = nil) async throws -> HTTPResponse {
        let body = Array(EmulatorHarness.validMessage.utf8)
        let pathAndQuery = "/emails:send?api-version=2025-09-01"
        let host = "127.0.0.1:\(port)"
        let headers =
            [("Content-Type", "application/json")]
            + RequestSigner(key: EmulatorHarness.key).headers(
                method: "POST", pathAndQuery: pathAndQuery, host: host, body: body, date: Date())
        let transport = try CurlMultiTransport(options: CurlMultiTransport.Options(caFile: caFile))
        let request = HTTPRequest(
            method: "POST", url: "\(scheme)://\(host)\(pathAndQuery)", headers: headers, body: body)
        return try await withCheckedContinuation { continuation in
            transport.perform(request) { continuation.resume(returning: $0) }
        }.get()
    }

    static var keyText: String { Data((0..<64).map { UInt8($0) }).base64EncodedString() }

    @Test(.enabled(if: binary != nil))
    func httpOnPortZero_acceptsASignedSend_andExitsZeroOnSIGINT() async throws {
        let emulator = try EmulatorProcess(["--listen", "127.0.0.1:0", "--access-key", Self.keyText])
        #expect(emulator.scheme == "http")
        #expect(emulator.port > 0)
        #expect(try await Self.send(port: emulator.port, scheme: "http").status == 202)
        #expect(emulator.stop(with: SIGINT) == 0)
    }

    @Test(.enabled(if: binary != nil))
    func httpsWithAConnectionString_andExitsZeroOnSIGTERM() async throws {
        let certificates = try TestCertificates.make()
        defer { try? FileManager.default.removeItem(atPath: certificates.directory) }
        let emulator = try EmulatorProcess([
            "--listen", "127.0.0.1:0", "--connection-string", "endpoint=https://127.0.0.1/;accesskey=\(Self.keyText)",
            "--tls-cert", certificates.serverCertificate, "--tls-key", certificates.serverKey,
        ])
        #expect(emulator.scheme == "https")
        let response = try await Self.send(port: emulator.port, scheme: "https", caFile: certificates.caCertificate)
        #expect(response.status == 202)
        #expect(
            response.header("Operation-Location")?.hasPrefix("https://127.0.0.1:\(emulator.port)/emails/operations/")
                == true)
        #expect(emulator.stop(with: SIGTERM) == 0)
    }

    @Test(.enabled(if: binary != nil))
    func quotaOptions_throttleTheSendOverThem() async throws {
        let emulator = try EmulatorProcess([
            "--listen", "127.0.0.1:0", "--access-key", Self.keyText, "--quota-per-minute", "1",
            "--quota-minute-seconds", "5",
        ])
        #expect(try await Self.send(port: emulator.port, scheme: "http").status == 202)
        let throttled = try await Self.send(port: emulator.port, scheme: "http")
        #expect(throttled.status == 429)
        #expect((4...5).contains(Int(throttled.header("Retry-After") ?? "") ?? 0))
        #expect(emulator.stop(with: SIGTERM) == 0)
    }

    /// Runs the binary to completion and returns its status and stdout + stderr.
    private static func run(_ arguments: [String]) throws -> (Int32, String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary ?? "/bin/false")
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: data, as: UTF8.self))
    }

    @Test(.enabled(if: binary != nil))
    func badCommandLines_areRefusedWithAReason() throws {
        let cases: [([String], String)] = [
            (["--listen", "127.0.0.1:0"], "--bearer-token"),
            (["--access-key", "not base64!", "--listen", "127.0.0.1:0"], "base64"),
            (["--access-key", Self.keyText, "--tls-cert", "/nonexistent.pem"], "--tls-key"),
            (["--access-key", Self.keyText, "--listen", "nohost"], "HOST:PORT"),
            (
                [
                    "--access-key", Self.keyText, "--listen", "127.0.0.1:0", "--tls-cert", "/nonexistent.pem",
                    "--tls-key", "/nonexistent.key",
                ], "certificate"
            ),
            (["--access-key", Self.keyText, "--quota-per-minute", "0"], "perMinute must be at least 1"),
            (["--access-key", Self.keyText, "--quota-hour-seconds", "0"], "hourSeconds must be more than 0"),
        ]
        for (arguments, reason) in cases {
            let (status, output) = try Self.run(arguments)
            #expect(status != 0, "\(arguments)")
            #expect(output.contains(reason), "\(arguments): \(output)")
        }
    }

    @Test(.enabled(if: binary != nil))
    func helpDocumentsTheAdminRoutesAndTheFaultJSON() throws {
        let (status, output) = try Self.run(["--help"])
        #expect(status == 0)
        for text in [
            "/admin/faults", "/admin/messages", "/admin/requests", "finalStatus", "retryAfter", "delayMs",
            "--sender-domain", "--no-http2", "httpVersions", "--quota-per-minute", "--quota-per-hour",
            "--quota-minute-seconds", "--quota-hour-seconds", "/admin/quota", "outageMs", "refuse",
        ] {
            #expect(output.contains(text), "\(text)")
        }
    }
}
