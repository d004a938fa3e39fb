import Foundation
import Testing

@testable import SMTPServer

/// Loading the certificate and key: every mistake is a clear error naming the file, found at start (or reload)
/// rather than at the first handshake. Certificates come from the openssl CLI.
@Suite struct TLSContextTests {
    struct Files {
        var directory: URL
        var certificate: String { directory.appendingPathComponent("cert.pem").path }
        var key: String { directory.appendingPathComponent("key.pem").path }
        var otherKey: String { directory.appendingPathComponent("other.pem").path }
    }

    static func makeFiles() throws -> Files {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("tls-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        let script = """
            set -e
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout key.pem -out cert.pem \
              -days 30 -subj /CN=test.local
            openssl genpkey -algorithm ec -pkeyopt ec_paramgen_curve:prime256v1 -out other.pem
            chmod 600 key.pem other.pem
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = ["-c", script]
        process.currentDirectoryURL = directory
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "openssl could not make a test certificate")
        return Files(directory: directory)
    }

    static func error(_ body: () throws(TLSConfigurationError) -> TLSContext) -> String? {
        do {
            _ = try body()
            return nil
        } catch {
            return error.description
        }
    }

    @Test func aGoodPair_loads_andSummarizesTheCertificate() throws {
        let files = try Self.makeFiles()
        let context = try TLSContext(certificateFile: files.certificate, keyFile: files.key)
        #expect(context.certificate.subject == "/CN=test.local")
        #expect(context.certificate.chainLength == 1)
        #expect(context.certificate.notAfter.timeIntervalSinceNow > 29 * 86_400)
        #expect(context.warnings.isEmpty)
        #expect(context.minimumVersion == .tls1_2)
    }

    @Test func aKeyOfAnotherCertificate_isRefused() throws {
        let files = try Self.makeFiles()
        let message = Self.error { () throws(TLSConfigurationError) in
            try TLSContext(certificateFile: files.certificate, keyFile: files.otherKey)
        }
        #expect(
            message
                == "tls.key \(files.otherKey) does not match the certificate in tls.certificate \(files.certificate)")
    }

    @Test func anExpiredOrNotYetValidCertificate_isRefused_andOneCloseToItsEnd_warned() throws {
        let files = try Self.makeFiles()
        let expired = Self.error { () throws(TLSConfigurationError) in
            try TLSContext(certificateFile: files.certificate, keyFile: files.key, now: Date() + 31 * 86_400)
        }
        #expect(expired?.contains("the certificate expired on 20") == true)
        let early = Self.error { () throws(TLSConfigurationError) in
            try TLSContext(certificateFile: files.certificate, keyFile: files.key, now: Date() - 86_400)
        }
        #expect(early?.contains("is not valid before") == true)
        let soon = try TLSContext(certificateFile: files.certificate, keyFile: files.key, now: Date() + 20 * 86_400)
        #expect(soon.warnings.contains { $0.contains("in less than 14 days") })
    }

    @Test func unreadableOrWrongFiles_areNamed() throws {
        let files = try Self.makeFiles()
        let missing = files.directory.appendingPathComponent("missing.pem").path
        #expect(
            Self.error { () throws(TLSConfigurationError) in
                try TLSContext(certificateFile: missing, keyFile: files.key)
            } == "tls.certificate \(missing): cannot read it: No such file or directory")
        #expect(
            Self.error { () throws(TLSConfigurationError) in
                try TLSContext(certificateFile: files.key, keyFile: files.key)
            }?.hasPrefix("tls.certificate \(files.key): no PEM certificate found") == true)
        #expect(
            Self.error { () throws(TLSConfigurationError) in
                try TLSContext(certificateFile: files.certificate, keyFile: files.certificate)
            }?.hasPrefix("tls.key \(files.certificate): no PEM private key found") == true)
    }

    @Test func aLegacyMinimumVersion_isAWarning_andAKeyReadableByOthersToo() throws {
        let files = try Self.makeFiles()
        chmod(files.key, 0o644)
        let context = try TLSContext(certificateFile: files.certificate, keyFile: files.key, minimumVersion: .tls1_0)
        #expect(context.warnings.contains { $0.hasPrefix("tls.min_version 1.0 accepts TLS versions with known weak") })
        #expect(context.warnings.contains { $0.contains("is readable by group or others (mode 644)") })
    }

    @Test func anUnknownCipherList_isRefused() throws {
        let files = try Self.makeFiles()
        #expect(
            Self.error { () throws(TLSConfigurationError) in
                try TLSContext(certificateFile: files.certificate, keyFile: files.key, ciphers: "NO-SUCH-CIPHER")
            } == "tls.ciphers \"NO-SUCH-CIPHER\": no cipher of the list is available")
    }
}
