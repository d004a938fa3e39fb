// swift-tools-version:6.1
// acs-smtp-gateway: an SMTP server that delivers mail through Azure Communication Services Email.
// Module rooms and the direction of dependencies are described in README.md ("Layout").
import PackageDescription

let package = Package(
    name: "acs-smtp-gateway",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "acs-smtp-gateway", targets: ["acs-smtp-gateway"]),
        .executable(name: "acs-email-emulator", targets: ["acs-email-emulator"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // Metrics API for the libraries; the Prometheus backend is bootstrapped by the daemon only when the admin
        // listener serves /metrics. swift-prometheus needs swift-atomics and CoreMetrics only (no SwiftNIO).
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        // The emulator's HTTP server (HTTP/1.1 over SwiftNIO, optional TLS): no hand-written HTTP parser.
        // Its HummingbirdHTTP2 product (swift-nio-http2) lets https offer h2 by ALPN, as real ACS endpoints do,
        // so the client's multiplexed path (many transfers on one connection) is tested, not only HTTP/1.1.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        // The configuration file is YAML read as a node tree (libyaml's marks give every value its line).
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        // Already in the graph through Hummingbird; named so the emulator can see its graceful shutdown.
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        // Already in the graph through Hummingbird; named so a `refuse` fault can reset a connection (SO_LINGER).
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
    ],
    targets: [
        // C libraries, quarantined: module map + typed shims, no logic.
        .systemLibrary(
            name: "CCurl",
            pkgConfig: "libcurl",
            providers: [.apt(["libcurl4-openssl-dev"])]
        ),
        .systemLibrary(
            name: "COpenSSL",
            pkgConfig: "openssl",
            providers: [.apt(["libssl-dev"])]
        ),
        // crypt(3) from libxcrypt (yescrypt, bcrypt, sha512crypt) for the SMTP AUTH users file.
        .systemLibrary(
            name: "CCrypt",
            pkgConfig: "libxcrypt",
            providers: [.apt(["libcrypt-dev"])]
        ),

        // RFC 5321 grammar, replies, the session state machine and the input framers. No I/O.
        .target(name: "SMTPProtocol"),

        // Dispatch-based listener and connections: sockets, timers, back-pressure, and TLS (libssl over memory
        // BIOs, Transport/).
        .target(
            name: "SMTPServer",
            dependencies: [
                "SMTPProtocol",
                "COpenSSL",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),

        // The durable queue and nothing else: records, atomic writes, locks, listing. Knows envelopes and
        // bytes, not ACS.
        .target(name: "Spool"),

        // RFC 5322 / 2045–2049 / 2047 / 2231 parsing and the RFC 8621 mail view. Pure: no I/O, stdlib + libc iconv.
        .target(name: "MailParser"),

        // The ACS Email REST model, its JSON encoding and the MIME → ACS translation. Pure: no I/O.
        .target(name: "ACSEmail", dependencies: ["MailParser", "SMTPProtocol"]),

        // The sendmail command's pure parts: sendmail(8) flags, repairing a local program's message, sysexits.
        .target(name: "Sendmail", dependencies: ["MailParser"]),

        // Talks to ACS: request signing (HMAC-SHA256 over libcrypto) and HTTP over libcurl's multi interface.
        .target(
            name: "ACSClient",
            dependencies: ["CCurl", "COpenSSL", .product(name: "CoreMetrics", package: "swift-metrics")]
        ),

        // Wiring: configuration, submitters (outbox), logging, metrics, the admin listener and AUTH's users (Auth/).
        .target(
            name: "Gateway",
            dependencies: [
                "SMTPProtocol",
                "SMTPServer",
                "CCrypt",
                "MailParser",
                "ACSEmail",
                "ACSClient",
                "Spool",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),

        .executableTarget(
            name: "acs-smtp-gateway",
            dependencies: [
                "Gateway",
                "SMTPServer",
                "SMTPProtocol",
                "MailParser",
                "ACSEmail",
                "ACSClient",
                "Spool",
                "Sendmail",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        // A local ACS Email endpoint (like Azurite for Storage): HMAC and bearer auth, validation, faults.
        .target(
            name: "ACSEmulator",
            dependencies: [
                "ACSEmail",
                "ACSClient",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTLS", package: "hummingbird"),
                .product(name: "HummingbirdHTTP2", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "NIOCore", package: "swift-nio"),
            ]
        ),

        .executableTarget(
            name: "acs-email-emulator",
            dependencies: [
                "ACSEmulator",
                "ACSClient",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ]
        ),

        .testTarget(name: "SMTPProtocolTests", dependencies: ["SMTPProtocol"]),
        .testTarget(name: "SpoolTests", dependencies: ["Spool"]),
        .testTarget(name: "SendmailTests", dependencies: ["Sendmail"]),
        .testTarget(
            name: "SMTPServerTests",
            dependencies: [
                "SMTPServer", "SMTPProtocol", "COpenSSL", .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]
        ),
        .testTarget(
            name: "GatewayTests",
            dependencies: [
                "Gateway", "SMTPProtocol", "SMTPServer", "ACSEmail", "ACSClient", "Spool",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
            ]
        ),
        .testTarget(name: "SystemLibrariesTests", dependencies: ["CCurl", "COpenSSL"]),
        .testTarget(
            name: "ACSClientTests",
            dependencies: [
                "ACSClient", .product(name: "MetricsTestKit", package: "swift-metrics"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ],
            exclude: ["Fixtures"]
        ),
        // Fixtures are read (and golden files re-recorded) in place through #filePath, not bundled.
        .testTarget(name: "MailParserTests", dependencies: ["MailParser"], exclude: ["Fixtures"]),
        .testTarget(name: "ACSEmailTests", dependencies: ["ACSEmail", "MailParser"], exclude: ["Fixtures"]),
        .testTarget(
            name: "ACSEmulatorTests",
            dependencies: ["ACSEmulator", "ACSClient", "ACSEmail", .product(name: "Logging", package: "swift-log")]
        ),
    ],
    swiftLanguageModes: [.v6]
)
