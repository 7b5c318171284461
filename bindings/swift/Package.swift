// swift-tools-version:5.9
// Starling for iOS and macOS: the uniffi-generated Swift (Sources/Starling/
// Starling.swift), hand-written async helpers, and the native library as an
// XCFramework (StarlingFFI.xcframework, module StarlingFFI).
//
// Both generated pieces are built, not committed: run
//     cargo run -p xtask -- ios
// at the workspace root on a Mac with Xcode first (see bindings/README.md).
import PackageDescription

let package = Package(
    name: "Starling",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "Starling", targets: ["Starling"]),
    ],
    targets: [
        .binaryTarget(
            name: "StarlingFFI",
            path: "StarlingFFI.xcframework"
        ),
        .target(
            name: "Starling",
            dependencies: ["StarlingFFI"],
            path: "Sources/Starling"
        ),
        .testTarget(
            name: "StarlingTests",
            dependencies: ["Starling"],
            path: "Tests/StarlingTests"
        ),
    ]
)
