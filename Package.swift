// swift-tools-version:6.1
import PackageDescription

let package = Package(
    name: "acs-smtp-gateway",
    products: [
        .library(name: "ACSEmail", targets: ["ACSEmail"])
    ],
    targets: [
        // The ACS Email REST model, its JSON encoding and the MIME → ACS translation; pure, no I/O
        // (docs/design.md "Modules").
        .target(name: "ACSEmail"),
        .testTarget(
            name: "ACSEmailTests",
            dependencies: ["ACSEmail"],
            // The golden fixtures are read (and re-recorded) in place through #filePath, so they are
            // not bundled as resources.
            exclude: ["Fixtures"]
        ),
    ]
)
