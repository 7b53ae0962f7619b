// swift-tools-version:5.10
// SessionKit for Swift: the UniFFI-generated bindings plus an AsyncSequence of auth events.
// 5.10, not 5.9: the bindings UniFFI 0.32 generates mark each callback vtable
// `nonisolated(unsafe) static let`, which Swift 5.9 does not parse (SE-0412 came in 5.10).
// The language mode stays Swift 5.
// `scripts/test-swift` generates Sources/SessionKit/SessionKit.swift and, in
// Sources/SessionKitFFI, SessionKitFFI.h and module.modulemap (none of them is committed), then
// runs `swift test` with the linker pointed at the cargo build of libsessionkit_ffi.
import PackageDescription

let package = Package(
    name: "SessionKit",
    platforms: [.macOS(.v12), .iOS(.v15)],
    products: [
        .library(name: "SessionKit", targets: ["SessionKit"]),
    ],
    targets: [
        // The C side of the FFI: the generated header and module map (module name = the
        // `ffi_module_name` of uniffi.toml). The map links libsessionkit_ffi.
        .systemLibrary(name: "SessionKitFFI", path: "Sources/SessionKitFFI"),
        .target(name: "SessionKit", dependencies: ["SessionKitFFI"], path: "Sources/SessionKit"),
        // Ends with an App left open; ExitTests runs it to check the process exits cleanly.
        .executableTarget(name: "SessionKitExitCheck", dependencies: ["SessionKit"],
                          path: "Sources/SessionKitExitCheck"),
        .testTarget(name: "SessionKitTests", dependencies: ["SessionKit", "SessionKitExitCheck"],
                    path: "Tests/SessionKitTests"),
    ]
)
