// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "acs-smtp-gateway",
    products: [
        .library(name: "MailParser", targets: ["MailParser"]),
        .library(name: "ACSEmail", targets: ["ACSEmail"]),
    ],
    targets: [
        // RFC 5322 / 2045–2049 / 2047 / 2231 parsing and the RFC 8621 mail view. Pure: no I/O, stdlib + libc iconv.
        .target(name: "MailParser"),
        .testTarget(
            name: "MailParserTests",
            dependencies: ["MailParser"],
            // Read through #filePath at test time, not bundled as resources.
            exclude: ["Fixtures"]
        ),
        // The ACS Email REST model, its JSON encoding and the MIME → ACS translation; pure, no I/O
        // (docs/design.md "Modules").
        .target(name: "ACSEmail", dependencies: ["MailParser"]),
        .testTarget(
            name: "ACSEmailTests",
            dependencies: ["ACSEmail", "MailParser"],
            // The golden fixtures are read (and re-recorded) in place through #filePath, so they are
            // not bundled as resources.
            exclude: ["Fixtures"]
        ),
    ],
    swiftLanguageModes: [.v6]
)
