// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "acs-smtp-gateway",
    products: [
        .library(name: "MailParser", targets: ["MailParser"])
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
    ],
    swiftLanguageModes: [.v6]
)
