// Issue #13, "reads like each language", for Swift: plain integer literals, errors that read as
// sentences, auth events and session state as AsyncStreams, typed function calls. Against the
// real sessionkit-server, as the rest of the suite.
import Foundation
import XCTest
@testable import SessionKit

private struct Point: Codable, Equatable {
    let x: Int
    let y: Int
}

private struct Plan: Codable, Equatable {
    let plan: String
    let seats: Int
}

private struct WhoAmI: Decodable {
    let userId: String
    enum CodingKeys: String, CodingKey { case userId = "user_id" }
}

private func invalidArgument(naming field: String) -> (Error) -> Bool {
    { error in
        guard case let AppError.InvalidArgument(message) = error else { return false }
        return message.contains(field)
    }
}

final class NumberTypeTests: XCTestCase {
    /// Plain literals everywhere an integer crosses the FFI; the App they configure works.
    func testPlainLiteralsCompileAndWork() async throws {
        try await withServer { server in
            let config = AppConfig(appId: appId, baseUrl: server.baseUrl, storage: .inMemory,
                                   requestTimeoutMs: 5000, refreshMarginSecs: 30, maxResponseBytes: 1_000_000)
            let app = try App(config: config)
            let user = try await app.logIn(credentials: .anonymous(reuse: true))
            let token = try await user.validAccessToken(minTtlSecs: 30)
            XCTAssertEqual(token, user.accessToken())
            let fresh = try await user.freshAccessToken(minTtlSecs: 0)
            XCTAssertFalse(fresh.isEmpty)
            let response = try await user.request(method: "GET", path: "/api/client/v2.0/auth/profile")
            XCTAssertTrue(response.status == 200, "\(response.status)")
            let email = uniqueEmail()
            _ = try await app.emailUser(email)
            do {
                _ = try await app.logIn(credentials: .emailPassword(email: email, password: "wrong-horse"))
                XCTFail("a wrong password logged in")
            } catch let AppError.Service(code, _, httpStatus, _, _) {
                XCTAssertEqual(code, "InvalidPassword")
                XCTAssertTrue(httpStatus == 401, "\(httpStatus)")
            }
        }
    }

    /// A negative count fails with InvalidArgument naming the field, before any request.
    func testNegativeValuesAreInvalidArguments() async throws {
        try await withServer { server in
            let cases: [(String, AppConfig)] = [
                ("request_timeout_ms", AppConfig(appId: appId, baseUrl: server.baseUrl, storage: .inMemory,
                                                 requestTimeoutMs: -1)),
                ("refresh_margin_secs", AppConfig(appId: appId, baseUrl: server.baseUrl, storage: .inMemory,
                                                  refreshMarginSecs: -5)),
                ("max_response_bytes", AppConfig(appId: appId, baseUrl: server.baseUrl, storage: .inMemory,
                                                 maxResponseBytes: -1)),
            ]
            for (field, config) in cases {
                XCTAssertThrowsError(try App(config: config), field) {
                    XCTAssertTrue(invalidArgument(naming: field)($0), "\(field): \($0)")
                }
            }
            let user = try await server.app().logIn(credentials: .anonymous(reuse: true))
            await assertThrowsAsync({ try await user.validAccessToken(minTtlSecs: -1) },
                                    invalidArgument(naming: "min_ttl_secs"))
            await assertThrowsAsync({ try await user.freshAccessToken(minTtlSecs: -30) },
                                    invalidArgument(naming: "min_ttl_secs"))
            // Refused in Swift: the SDK is not told anything, so the process goes on normally.
            XCTAssertThrowsError(try foreignRuntimeExiting(timeoutMs: -1)) {
                XCTAssertTrue(invalidArgument(naming: "timeoutMs")($0), "\($0)")
            }
            try await user.refreshAccessToken()
        }
    }

    /// No public or open declaration of the package's Swift sources (the generated bindings
    /// included) takes or returns an unsigned integer, apart from UniFFI's own plumbing.
    func testNoUnsignedTypeInThePublicApi() throws {
        let sources = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../Sources/SessionKit").standardizedFileURL
        let files = try FileManager.default.contentsOfDirectory(atPath: sources.path).filter { $0.hasSuffix(".swift") }
        XCTAssertTrue(files.contains("SessionKit.swift"), "the generated bindings are missing: \(files)")
        var offending: [String] = []
        for file in files {
            let text = try String(contentsOf: sources.appendingPathComponent(file), encoding: .utf8)
            var plumbing = false // inside a generated FfiConverter type (documented as private)
            for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                if line.hasPrefix("public struct FfiConverter") || line.hasPrefix("fileprivate struct FfiConverter") {
                    plumbing = true
                } else if line.hasPrefix("}") {
                    plumbing = false
                }
                let code = line.trimmingCharacters(in: .whitespaces)
                guard !plumbing, code.hasPrefix("public ") || code.hasPrefix("open ") else { continue }
                // The object handles (`init(unsafeFromHandle:)`, `uniffiCloneHandle()`, the
                // `FfiConverter*` lift/lower functions) are UniFFI's, not the SDK's; byte
                // buffers are [UInt8] by nature.
                if code.contains("unsafeFromHandle") || code.contains("uniffiCloneHandle")
                    || code.contains("FfiConverter") { continue }
                let stripped = code.replacingOccurrences(of: "[UInt8]", with: "")
                if stripped.range(of: #"\bUInt(8|16|32|64)?\b"#, options: .regularExpression) != nil {
                    offending.append("\(file): \(code)")
                }
            }
        }
        XCTAssertEqual(offending, [])
    }
}

final class ReadableErrorTests: XCTestCase {
    /// "\(error)", localizedDescription and errorDescription are describe()'s sentence; the
    /// associated values stay.
    func testAppErrorsReadAsSentences() async throws {
        try await withServer { server in
            let app = try server.app()
            let email = uniqueEmail()
            let user = try await app.emailUser(email)
            let error = await assertThrowsAsync({
                try await app.logIn(credentials: .emailPassword(email: email, password: "wrong-horse"))
            }) { _ in true }
            let appError = try XCTUnwrap(error as? AppError)
            let sentence = appError.describe()
            XCTAssertTrue(sentence.contains("invalid username/password"), sentence)
            XCTAssertTrue(sentence.hasSuffix("(server error InvalidPassword, HTTP 401)"), sentence)
            XCTAssertFalse(sentence.contains("wrong-horse"))
            XCTAssertEqual("\(appError)", sentence)
            XCTAssertEqual(String(describing: appError), sentence)
            XCTAssertEqual(appError.errorDescription, sentence)
            XCTAssertEqual(error?.localizedDescription, sentence)
            XCTAssertEqual((error as? LocalizedError)?.errorDescription, sentence)
            guard case let .Service(code, _, status, link, _) = appError else { return XCTFail("\(appError)") }
            XCTAssertEqual(code, "InvalidPassword")
            XCTAssertEqual(status, 401)
            XCTAssertNil(link) // sessionkit-server sends none

            // A client-side error reads the same way.
            try await user.logOut()
            XCTAssertThrowsError(try app.switchUser(user: user)) {
                XCTAssertTrue("\($0)".hasPrefix("user not logged in: "), "\($0)")
                XCTAssertEqual($0.localizedDescription, "\($0)")
                guard case AppError.ClientUserNotLoggedIn = $0 else { return XCTFail("\($0)") }
            }
        }
    }

    func testStoreErrorsReadAsSentences() async throws {
        let unavailable = StoreError.Unavailable(message: "device locked")
        XCTAssertEqual("\(unavailable)", "session store unavailable: device locked")
        XCTAssertEqual((unavailable as Error).localizedDescription, "session store unavailable: device locked")
        XCTAssertEqual("\(StoreError.Corrupt(message: "bad header"))", "session store corrupt: bad header")
        // Thrown by an app's store, the SDK passes the message on in AppError.Storage.
        try await withServer { server in
            let store = ClosureSessionStore(load: { throw unavailable }, save: { _ in })
            XCTAssertThrowsError(try server.app(storage: .custom(store: store))) {
                guard case AppError.Storage = $0 else { return XCTFail("\($0)") }
                XCTAssertTrue("\($0)".hasPrefix("session storage error: "), "\($0)")
                XCTAssertTrue("\($0)".contains("device locked"), "\($0)")
            }
        }
    }
}

final class ConcurrencyTests: XCTestCase {
    /// Events carry the User handle, also for a user just removed.
    func testEventsCarryTheUser() async throws {
        try await withServer { server in
            let app = try server.app()
            let stream = app.authEvents()
            let user = try await app.logIn(credentials: .anonymous(reuse: false))
            try await user.logOut() // anonymous: signed out, then removed
            var events: [AuthEvent] = []
            for await event in stream {
                events.append(event)
                if event.kind == .userRemoved { break }
            }
            XCTAssertNil(events.first?.user, "initial state, nobody logged in")
            let signedIn = try XCTUnwrap(events.first { $0.kind == .signedIn })
            XCTAssertEqual(signedIn.user, user)
            let removed = try XCTUnwrap(events.last)
            XCTAssertEqual(removed.user?.id(), user.id())
            XCTAssertEqual(removed.user?.state(), .removed)
        }
    }

    /// The current user and its state: the value now first, then each change once.
    func testSessionStatesFollowTheCurrentUser() async throws {
        try await withServer { server in
            let app = try server.app()
            let before = StreamListener.live.get
            var seen: [SessionState] = []
            let ada: User, bob: User
            do {
                let states = app.sessionStates()
                ada = try await app.logIn(credentials: .anonymous(reuse: false))
                bob = try await app.emailUser()
                try await bob.refreshAccessToken() // an event that changes nothing: no value
                try await bob.logOut() // the most recent logged-in user, ada, becomes current
                try await ada.logOut() // anonymous: removed; nobody is left
                for await state in states {
                    seen.append(state)
                    if seen.count == 5 { break }
                }
            } // the stream is released: the subscription is cancelled
            XCTAssertEqual(seen, [.loggedOut, .loggedIn(ada), .loggedIn(bob), .loggedIn(ada), .loggedOut])
            XCTAssertEqual(seen.map { $0.user?.id() }, [nil, ada.id(), bob.id(), ada.id(), nil])
            XCTAssertEqual(app.sessionState, .loggedOut)
            let carol = try await app.logIn(credentials: .anonymous(reuse: false))
            XCTAssertEqual(app.sessionState, .loggedIn(carol))
            try await waitFor("the subscription to end") { StreamListener.live.get == before }
        }
    }

    /// A user's states, ending by themselves once the user is removed; the stream outlives
    /// the handle it was made from.
    func testUserStatesEndWhenTheUserIsRemoved() async throws {
        try await withServer { server in
            let app = try server.app()
            let user = try await app.emailUser()
            let states = try XCTUnwrap(app.currentUser()).states() // a temporary handle
            try await user.logOut()
            try await app.removeUser(user: user)
            var seen: [UserState] = []
            for await state in states { seen.append(state) } // finishes after .removed
            XCTAssertEqual(seen, [.loggedIn, .loggedOut, .removed])
        }
    }

    /// Cancelling the consuming task, or dropping a stream never iterated, cancels the
    /// subscription: the SDK lets go of the listener, and events stop.
    func testEndingTheIterationCancelsTheSubscription() async throws {
        try await withServer { server in
            let app = try server.app()
            let before = StreamListener.live.get
            let received = Locked(0)
            let task = Task {
                for await _ in app.authEvents() { received.mutate { $0 += 1 } }
            }
            try await waitFor("the initial state") { received.get == 1 }
            XCTAssertEqual(StreamListener.live.get, before + 1)
            task.cancel()
            await task.value
            try await waitFor("the subscription to end") { StreamListener.live.get == before }
            _ = try await app.logIn(credentials: .anonymous(reuse: false))
            XCTAssertEqual(received.get, 1)

            do {
                let unused = app.sessionStates()
                XCTAssertEqual(StreamListener.live.get, before + 1)
                _ = unused
            }
            try await waitFor("the dropped stream's subscription to end") { StreamListener.live.get == before }
        }
    }
}

final class TypedCallTests: XCTestCase {
    func testTypedFunctionCalls() async throws {
        try await withServer { server in
            let user = try await server.app().logIn(credentials: .anonymous(reuse: true))
            let sum: Int = try await user.callFunction("sum", 1, 2, 3)
            XCTAssertEqual(sum, 6)
            let points = try await user.callFunction("echo", Point(x: 1, y: 2), Point(x: -3, y: 4), as: [Point].self)
            XCTAssertEqual(points, [Point(x: 1, y: 2), Point(x: -3, y: 4)])
            let who: WhoAmI = try await user.callFunction("whoami")
            XCTAssertEqual(who.userId, user.id())
            // The string form is still there, and agrees.
            let raw = try await user.callFunction(name: "sum", argsJson: "[1, 2, 3]")
            XCTAssertEqual(try JSONDecoder().decode(Int.self, from: Data(raw.utf8)), sum)

            await assertThrowsAsync({ let _: String = try await user.callFunction("sum", 1, 2) }) {
                $0 is DecodingError
            }
            await assertThrowsAsync({ let _: Int = try await user.callFunction("no-such-function") }) {
                guard case let AppError.Service(code, _, status, _, _) = $0 else { return false }
                return code == "FunctionNotFound" && status == 404
            }
        }
    }

    func testTypedCustomData() async throws {
        try await withServer { server in
            let user = try await server.app().logIn(credentials: .anonymous(reuse: true))
            XCTAssertNil(try user.customData(as: Plan.self))
            let (status, body) = try await server.admin("PUT", "/users/\(user.id())/custom_data",
                                                        body: #"{"plan":"pro","seats":3}"#)
            XCTAssertTrue((200..<300).contains(status), "\(status) \(body)")
            XCTAssertNil(try user.customData(as: Plan.self), "not in the token until a refresh")
            let plan = try await user.refreshCustomData(as: Plan.self)
            XCTAssertEqual(plan, Plan(plan: "pro", seats: 3))
            XCTAssertEqual(try user.customData(as: Plan.self), plan)
            XCTAssertThrowsError(try user.customData(as: [Int].self)) { XCTAssertTrue($0 is DecodingError, "\($0)") }
        }
    }
}

final class ReadmeTests: XCTestCase {
    /// ReadmeExamples.swift compiles README.md's Swift examples; this checks they are still the
    /// README's text (imports aside, indented one level in the file).
    func testReadmeExamplesAreTheCompiledOnes() throws {
        let here = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        let readme = try String(contentsOf: here.appendingPathComponent("../../../../README.md").standardizedFileURL,
                                encoding: .utf8)
        let examples = try String(contentsOf: here.appendingPathComponent("ReadmeExamples.swift"), encoding: .utf8)
        let section = try XCTUnwrap(readme.components(separatedBy: "\n## Swift\n").dropFirst().first?
            .components(separatedBy: "\n## ").first)
        let readmeBlocks = section.components(separatedBy: "```swift\n").dropFirst().map {
            $0.components(separatedBy: "```").first!.split(separator: "\n", omittingEmptySubsequences: false)
                .map(String.init).filter { !$0.hasPrefix("import ") }
        }
        let compiled = examples.components(separatedBy: "async throws {\n").dropFirst().map {
            $0.components(separatedBy: "\n}\n// end").first!.split(separator: "\n", omittingEmptySubsequences: false)
                .map { $0.hasPrefix("    ") ? String($0.dropFirst(4)) : String($0) }
        }
        let trim = { (lines: [String]) in lines.drop { $0.isEmpty }.reversed().drop { $0.isEmpty }.reversed() }
        XCTAssertEqual(readmeBlocks.count, 4)
        XCTAssertEqual(readmeBlocks.map { Array(trim($0)) }, compiled.map { Array(trim($0)) })
    }
}
