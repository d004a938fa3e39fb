// swift-tools-version:6.1
// libFuzzer targets for the gateway's parsers, kept out of the main package so its build stays clean.
// The modules under test are the main package's own sources, reached through symlinks in Sources/ (SwiftPM
// does not allow a target path outside the package, and the main package exports no libraries).
// Build and run with `make fuzz` (Fuzz/run.sh): every target gets -sanitize=fuzzer,address.
import PackageDescription

let fuzzTargets: [(name: String, dependencies: [Target.Dependency])] = [
    ("FuzzSMTPCommand", ["SMTPProtocol"]),
    ("FuzzFraming", ["SMTPProtocol"]),
    ("FuzzSession", ["SMTPProtocol"]),
    ("FuzzMailToACS", ["MailParser", "ACSEmail"]),
    ("FuzzHeaderFields", ["MailParser"]),
    ("FuzzAdminHTTP", ["AdminHTTP"]),
    ("FuzzACSResponses", ["ACSClient"]),
    ("FuzzConfiguration", ["GatewayConfiguration", .product(name: "Yams", package: "Yams")]),
    ("FuzzAuthExchange", ["SMTPProtocol"]),
]

let package = Package(
    name: "acs-smtp-gateway-fuzz",
    platforms: [.macOS(.v13)],
    // The same packages, from the same versions, as the main Package.swift names.
    dependencies: [
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
    ],
    targets: [
        .target(name: "SMTPProtocol"),
        .target(name: "MailParser"),
        .target(name: "ACSEmail", dependencies: ["MailParser", "SMTPProtocol"]),
        // Sources/Gateway/Admin/AdminHTTP.swift alone: it imports nothing.
        .target(name: "AdminHTTP"),
        // The whole ACS client (its response decoders are members of ACSEmailClient, which needs the rest);
        // libcurl and libcrypto are linked but never called by the fuzz target.
        .systemLibrary(name: "CCurl", pkgConfig: "libcurl"),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl"),
        .target(
            name: "ACSClient",
            dependencies: ["CCurl", "COpenSSL", .product(name: "CoreMetrics", package: "swift-metrics")]),
        .target(
            name: "SMTPServer",
            dependencies: [
                "SMTPProtocol", "COpenSSL", .product(name: "Logging", package: "swift-log"),
                .product(name: "CoreMetrics", package: "swift-metrics"),
            ]),
        // Sources/Gateway/Configuration/*.swift and EscapedText.swift: the configuration loader without the
        // rest of Gateway (its submitters, spool and Prometheus are not needed to read a file).
        .target(
            name: "GatewayConfiguration",
            dependencies: [
                "SMTPProtocol", "SMTPServer", "ACSEmail", "ACSClient",
                .product(name: "Logging", package: "swift-log"), .product(name: "Yams", package: "Yams"),
            ]),
        .target(name: "FuzzDriver"),
    ] + fuzzTargets.map { .executableTarget(name: $0.name, dependencies: $0.dependencies + ["FuzzDriver"]) },
    swiftLanguageModes: [.v6]
)
