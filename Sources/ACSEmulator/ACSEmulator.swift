import Foundation
import Hummingbird
import HummingbirdHTTP2
import HummingbirdTLS
import Logging
import ServiceLifecycle

/// A local Azure Communication Services Email endpoint, for tests and for trying the gateway without
/// Azure (like Azurite for Storage). See the module documentation for its routes and the fault JSON.
///
/// ```swift
/// let emulator = try ACSEmulator(configuration: EmulatorConfiguration(accessKey: key))
/// try await emulator.run(host: "127.0.0.1", port: 0) { port in print("listening on 127.0.0.1:\(port)") }
/// ```
public final class ACSEmulator: Sendable {
    /// PEM files for https.
    public struct TLSFiles: Sendable {
        public var certificateChain: String
        public var privateKey: String

        public init(certificateChain: String, privateKey: String) {
            self.certificateChain = certificateChain
            self.privateKey = privateKey
        }
    }

    public let configuration: EmulatorConfiguration
    let store: EmulatorStore
    private let logger: Logger

    /// Opens the record file, if one is configured; throws for a ``SendQuota`` with a ``SendQuota/problem``.
    public init(configuration: EmulatorConfiguration, logger: Logger = Logger(label: "acs-email-emulator")) throws {
        if let problem = configuration.sendQuota.problem {
            throw EmulatorError("send quota: \(problem)")
        }
        self.configuration = configuration
        self.logger = logger
        self.store = try EmulatorStore(configuration: configuration, logger: logger)
    }

    /// Serves until SIGTERM or SIGINT arrives (when `handleSignals`; then open requests are drained and it
    /// returns) or the calling task is cancelled. `onListening` receives the bound port (useful with port 0).
    public func run(
        host: String, port: Int, tls: TLSFiles? = nil, handleSignals: Bool = true,
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        let responder = EmulatorResponder(
            configuration: configuration, store: store, scheme: tls == nil ? "http" : "https", logger: logger)
        let http2 = configuration.http2
        let tlsConfiguration = try tls.map { try Self.tlsConfiguration($0, http2: http2) }
        let application = Application(
            responder: responder,
            // With TLS, h2 or http/1.1 as ALPN settles (HummingbirdHTTP2), or http/1.1 only.
            server: try tlsConfiguration.map {
                http2 ? try .http2Upgrade(tlsConfiguration: $0) : try .tls(.http1(), tlsConfiguration: $0)
            } ?? .http1(),
            configuration: ApplicationConfiguration(
                address: .hostname(host, port: port), serverName: "acs-email-emulator"),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) },
            logger: logger)
        var group = ServiceGroupConfiguration(
            services: [application], gracefulShutdownSignals: handleSignals ? [.sigterm, .sigint] : [], logger: logger)
        // At shutdown an HTTP/2 connection gets GOAWAY and a PING, and is closed once the client acknowledges it.
        // A client that keeps the connection idle without reading it (the gateway's libcurl multi interface does
        // not watch idle connections) never does, which held SIGTERM forever. Open requests, stalls included, are
        // answered well within this bound; then the group is cancelled, which closes what is left.
        group.maximumGracefulShutdownDuration = Self.maximumGracefulShutdown
        try await ServiceGroup(configuration: group).run()
    }

    /// How long a graceful shutdown may wait for connections to close.
    static let maximumGracefulShutdown: Duration = .seconds(1)

    /// The messages accepted so far, oldest first.
    public func recordedMessages() async -> [RecordedMessage] {
        await store.recordedMessages()
    }

    /// Appends faults, as `POST /admin/faults` does.
    public func addFaults(_ faults: [Fault]) async throws {
        if let problem = faults.lazy.compactMap(\.problem).first {
            throw EmulatorError(problem)
        }
        await store.addFaults(faults)
    }

    static func tlsConfiguration(_ files: TLSFiles, http2: Bool) throws -> TLSConfiguration {
        let chain: [NIOSSLCertificate]
        let key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(files.certificateChain)
        } catch {
            throw EmulatorError("cannot read the TLS certificate chain \(files.certificateChain): \(error)")
        }
        do {
            key = try NIOSSLPrivateKey(file: files.privateKey, format: .pem)
        } catch {
            throw EmulatorError("cannot read the TLS private key \(files.privateKey): \(error)")
        }
        guard !chain.isEmpty else {
            throw EmulatorError("the TLS certificate file \(files.certificateChain) holds no PEM certificate")
        }
        var configuration = TLSConfiguration.makeServerConfiguration(
            certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
        // What ALPN offers, preferred first (`http2Upgrade` sets the same list). Without h2, saying http/1.1
        // keeps ALPN clients (libcurl) from asking for h2.
        configuration.applicationProtocols = http2 ? ["h2", "http/1.1"] : ["http/1.1"]
        // At shutdown an idle keep-alive connection gets close_notify; waiting NIOSSL's default 5 s for the
        // peer's reply (clients such as Python's requests never send one while idle) would delay the exit.
        configuration.shutdownTimeout = .milliseconds(200)
        return configuration
    }
}
