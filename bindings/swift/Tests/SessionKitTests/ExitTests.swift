// App.close(), and a Swift executable that ends with an App left open (SessionKitExitCheck).
import Foundation
import SessionKit
import XCTest

final class ExitTests: XCTestCase {
    func testCloseRefusesLaterCallsAndKeepsTheSession() async throws {
        try await withServer { server in
            let dir = FileManager.default.temporaryDirectory
                .appendingPathComponent("sk-swift-close-\(UUID().uuidString)").path
            let app = try server.app(storage: .file(dir: dir, encryptionKey: nil))
            let events = Recorder()
            let subscription = app.subscribe(listener: events)
            let user = try await app.logIn(credentials: .anonymous(reuse: false))
            app.close()
            XCTAssertTrue(app.isClosed())
            let seen = events.kinds.count
            await assertThrowsAsync({ try await user.refreshAccessToken() }) {
                if case AppError.AppClosed = $0 { return true } else { return false }
            }
            await assertThrowsAsync({ try await app.logIn(credentials: .anonymous(reuse: false)) }) {
                if case AppError.AppClosed = $0 { return true } else { return false }
            }
            XCTAssertEqual(events.kinds.count, seen, "no event after close")
            subscription.cancel()
            let again = try server.app(storage: .file(dir: dir, encryptionKey: nil))
            XCTAssertEqual(again.allUsers().map { $0.id() }, [user.id()])
            try await again.currentUser()!.refreshAccessToken()
            again.close()
        }
    }

    /// The executable built beside this test bundle, run many times (SESSIONKIT_SWIFT_EXIT_RUNS,
    /// default 20): every run exits 0 and leaves its session saved.
    func testAnExecutableThatEndsWithAnAppOpenExitsCleanly() async throws {
        let runs = Int(ProcessInfo.processInfo.environment["SESSIONKIT_SWIFT_EXIT_RUNS"] ?? "") ?? 20
        let products = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        var exe = products.appendingPathComponent("SessionKitExitCheck")
        if !FileManager.default.fileExists(atPath: exe.path) {
            // On Linux the test runner is .build/debug/SessionKitPackageTests.xctest itself.
            exe = products.deletingLastPathComponent().appendingPathComponent("SessionKitExitCheck")
        }
        XCTAssertTrue(FileManager.default.fileExists(atPath: exe.path), "not built: \(exe.path)")
        try await withServer { server in
            var failures: [String] = []
            for i in 0..<runs {
                let dir = FileManager.default.temporaryDirectory
                    .appendingPathComponent("sk-swift-exit-\(UUID().uuidString)").path
                let process = Process()
                process.executableURL = exe
                process.arguments = [server.baseUrl, appId, dir]
                let out = Pipe()
                process.standardOutput = out
                try process.run()
                let text = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
                process.waitUntilExit()
                guard process.terminationReason == .exit, process.terminationStatus == 0 else {
                    failures.append("run \(i): \(process.terminationReason) \(process.terminationStatus)")
                    continue
                }
                let id = text.trimmingCharacters(in: .whitespacesAndNewlines)
                let again = try server.app(storage: .file(dir: dir, encryptionKey: nil))
                if !again.allUsers().map({ $0.id() }).contains(id) {
                    failures.append("run \(i): the session of \(id) is gone")
                }
                again.close()
            }
            XCTAssertEqual(failures, [], "\(failures.count) of \(runs) runs failed")
        }
    }
}
