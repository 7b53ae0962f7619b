// swift-tools-version:5.10
// SessionKit for Swift: the UniFFI-generated bindings plus an AsyncSequence of auth events.
// 5.10, not 5.9: the bindings UniFFI 0.32 generates mark each callback vtable
// `nonisolated(unsafe) static let`, which Swift 5.9 does not parse (SE-0412 came in 5.10).
// The language mode stays Swift 5.
// `scripts/test-swift` generates Sources/SessionKit/SessionKit.swift and, in
// Sources/SessionKitFFI, SessionKitFFI.h and module.modulemap (none of them is committed), then
// runs `swift test` with the linker pointed at the cargo build of libsessionkit_ffi.
//
// With SESSIONKIT_XCFRAMEWORK=path/to/SessionKitFFI.xcframework (scripts/platforms-apple builds
// it, with the SessionKit.swift that goes with it) the FFI module is that XCFramework instead: a
// binary target of static libraries for iOS, the iOS simulator and macOS, whose own module map
// (no `link` line) and header replace Sources/SessionKitFFI. Unset or empty: as above.
import PackageDescription

/// SESSIONKIT_XCFRAMEWORK as SwiftPM takes a binary target's path: relative to this package
/// (it refuses absolute ones), the form the variable may be given in too.
func xcframeworkPath() -> String? {
    guard let path = Context.environment["SESSIONKIT_XCFRAMEWORK"], !path.isEmpty else { return nil }
    guard path.hasPrefix("/") else { return path }
    func parts(_ p: String) -> [String] {
        var out: [String] = []
        for c in p.split(separator: "/").map(String.init) where c != "." {
            if c == "..", !out.isEmpty { out.removeLast() } else if c != ".." { out.append(c) }
        }
        return out
    }
    let base = parts(Context.packageDirectory), target = parts(path)
    var common = 0
    while common < min(base.count, target.count), base[common] == target[common] { common += 1 }
    return (Array(repeating: "..", count: base.count - common) + target[common...]).joined(separator: "/")
}

// The C side of the FFI: the generated header and module map (module name = the
// `ffi_module_name` of uniffi.toml).
let ffi: Target = if let path = xcframeworkPath() {
    .binaryTarget(name: "SessionKitFFI", path: path)
} else {
    // The map links libsessionkit_ffi, the cargo build's.
    .systemLibrary(name: "SessionKitFFI", path: "Sources/SessionKitFFI")
}

let package = Package(
    name: "SessionKit",
    platforms: [.macOS(.v12), .iOS(.v15)],
    products: [
        .library(name: "SessionKit", targets: ["SessionKit"]),
    ],
    targets: [
        ffi,
        .target(name: "SessionKit", dependencies: ["SessionKitFFI"], path: "Sources/SessionKit"),
        // Ends with an App left open; ExitTests runs it to check the process exits cleanly.
        .executableTarget(name: "SessionKitExitCheck", dependencies: ["SessionKit"],
                          path: "Sources/SessionKitExitCheck"),
        .testTarget(name: "SessionKitTests", dependencies: ["SessionKit", "SessionKitExitCheck"],
                    path: "Tests/SessionKitTests"),
    ]
)
