// Callbacks run on SDK threads and may call the SDK synchronously (waiting on a semaphore for
// an async call); it completes, many at once, and the SDK is not starved (#12, item 18).
import Foundation
import SessionKit
import XCTest

/// On every TOKEN_REFRESHED, calls a function and blocks this (SDK) thread until it answers.
final class BlockingCaller: AuthEventListener, @unchecked Sendable {
    let app: App
    let results = Locked<[String]>([])
    init(app: App) { self.app = app }

    func onEvent(event: AuthEvent) throws {
        guard event.kind == .tokenRefreshed, let user = app.currentUser() else { return }
        let done = DispatchSemaphore(value: 0)
        let answer = Locked<String?>(nil)
        Task {
            let sum = try? await user.callFunction(name: "sum", argsJson: "[1, 2]")
            answer.mutate { $0 = sum }
            done.signal()
        }
        done.wait()
        results.mutate { $0.append(answer.get?.trimmingCharacters(in: .whitespaces) ?? "nil") }
    }
}

final class ReentrancyTests: XCTestCase {
    func testListenersThatBlockOnSdkCallsCompleteManyAtOnce() async throws {
        try await withServer { server in
            let app = try server.app()
            let caller = BlockingCaller(app: app)
            let subscription = app.subscribe(listener: caller)
            let user = try await app.logIn(credentials: .anonymous(reuse: false))
            for _ in 0..<4 {
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<8 { group.addTask { try await user.refreshAccessToken() } }
                    try await group.waitForAll()
                }
            }
            // Another App still gets its login through.
            let other = try server.app()
            _ = try await other.logIn(credentials: .anonymous(reuse: false))
            other.close()
            XCTAssertFalse(caller.results.get.isEmpty)
            XCTAssertEqual(Set(caller.results.get), ["3"])
            subscription.cancel()
            app.close()
        }
    }
}
