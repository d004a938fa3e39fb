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
]

let package = Package(
    name: "acs-smtp-gateway-fuzz",
    platforms: [.macOS(.v13)],
    targets: [
        .target(name: "SMTPProtocol"),
        .target(name: "MailParser"),
        .target(name: "ACSEmail", dependencies: ["MailParser"]),
        // Sources/Gateway/Admin/AdminHTTP.swift alone: it imports nothing.
        .target(name: "AdminHTTP"),
        .target(name: "FuzzDriver"),
    ] + fuzzTargets.map { .executableTarget(name: $0.name, dependencies: $0.dependencies + ["FuzzDriver"]) },
    swiftLanguageModes: [.v6]
)
