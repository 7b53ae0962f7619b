// The same coverage as the Kotlin and Python suites, against the real sessionkit-server.
import Foundation
import XCTest
@testable import SessionKit

private func isService(_ code: String? = nil, status: Int32? = nil) -> (Error) -> Bool {
    { error in
        guard case let AppError.Service(c, _, s, _, _) = error else { return false }
        return (code == nil || c == code) && (status == nil || s == status)
    }
}

final class LoginTests: XCTestCase {
    func testAnonymousLoginAndReuse() async throws {
        try await withServer { server in
            let app = try server.app()
            let user = try await app.logIn(credentials: .anonymous(reuse: true))
            XCTAssertEqual(user.providerType(), "anon-user")
            XCTAssertEqual(user.state(), .loggedIn)
            XCTAssertEqual(app.currentUser(), user)
            XCTAssertNotNil(user.accessToken())
            XCTAssertNotNil(user.refreshToken())
            let again = try await app.logIn(credentials: .anonymous(reuse: true))
            XCTAssertEqual(again, user)
            let fresh = try await app.logIn(credentials: .anonymous(reuse: false))
            XCTAssertNotEqual(fresh, user)
            XCTAssertEqual(Set(app.allUsers().map { $0.id() }), [user.id(), fresh.id()])
        }
    }

    func testEmailPasswordLogin() async throws {
        try await withServer { server in
            let app = try server.app()
            let email = uniqueEmail()
            let user = try await app.emailUser(email)
            XCTAssertEqual(user.providerType(), "local-userpass")
            XCTAssertEqual(user.profile().email, email)
            XCTAssertEqual(user.identities().map(\.providerType), ["local-userpass"])
            await assertThrowsAsync({
                try await app.logIn(credentials: .emailPassword(email: email, password: "wrong-horse"))
            }, isService("InvalidPassword", status: 401))
            XCTAssertEqual(app.currentUser(), user)
        }
    }

    func testApiKeyLogin() async throws {
        try await withServer { server in
            let owner = try await server.app().emailUser()
            let key = try await owner.apiKeys().create(name: "ci-script")
            XCTAssertNotNil(key.key)
            XCTAssertEqual(key.name, "ci-script")
            XCTAssertFalse(key.disabled)
            let awaited1 = try await owner.apiKeys().fetchAll().map(\.id)
            XCTAssertEqual(awaited1, [key.id])
            let user = try await server.app().logIn(credentials: .apiKey(key: key.key!))
            XCTAssertEqual(user.id(), owner.id())
            try await owner.apiKeys().disable(id: key.id)
            let awaited2 = try await owner.apiKeys().fetch(id: key.id).disabled
            XCTAssertTrue(awaited2)
            await assertThrowsAsync({ try await server.app().logIn(credentials: .apiKey(key: key.key!)) }, isService())
        }
    }

    func testCustomJwtLogin() async throws {
        try await withServer { server in
            let app = try server.app()
            let sub = "jwt-\(UUID().uuidString.prefix(8))"
            let token = signJwt(#"{"sub":"\#(sub)","exp":\#(nowSecs() + 600),"name":"Ada"}"#)
            let user = try await app.logIn(credentials: .jwt(token: token))
            XCTAssertEqual(user.providerType(), "custom-token")
            XCTAssertEqual(user.profile().name, "Ada")
            XCTAssertEqual(user.identities().first?.id, sub)
            let forged = signJwt(#"{"sub":"\#(sub)","exp":\#(nowSecs() + 600)}"#, key: "not-the-key")
            await assertThrowsAsync({ try await app.logIn(credentials: .jwt(token: forged)) }, isService(status: 401))
        }
    }

    func testCustomFunctionLogin() async throws {
        try await withServer { server in
            let app = try server.app()
            let payload = #"{"username":"fn-\#(UUID().uuidString.prefix(8))"}"#
            let first = try await app.logIn(credentials: .function(payloadJson: payload))
            XCTAssertEqual(first.providerType(), "custom-function")
            let second = try await server.app().logIn(credentials: .function(payloadJson: payload))
            XCTAssertEqual(second.id(), first.id())
            await assertThrowsAsync({ try await app.logIn(credentials: .function(payloadJson: "not json")) }) {
                if case AppError.InvalidArgument = $0 { return true } else { return false }
            }
        }
    }

    func testCallFunctionAndRequest() async throws {
        try await withServer { server in
            let user = try await server.app().logIn(credentials: .anonymous(reuse: true))
            let sum = try await user.callFunction(name: "sum", argsJson: "[1, 2, 3]")
            XCTAssertEqual(sum.trimmingCharacters(in: .whitespaces), "6")
            let response = try await user.request(method: "GET", path: "/api/client/v2.0/auth/profile")
            XCTAssertEqual(response.status, 200)
            XCTAssertEqual(try jsonString(response.body, "user_id"), user.id())
        }
    }

    /// The hand-rolled HMAC-SHA256 the JWT helper uses, against published test vectors.
    func testHmacSha256KnownAnswers() {
        let hex = { (b: [UInt8]) in b.map { String(format: "%02x", $0) }.joined() }
        XCTAssertEqual(hex(sha256(Array("abc".utf8))),
                       "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // RFC 4231, test case 2.
        XCTAssertEqual(hex(hmacSha256(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8))),
                       "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
    }
}

final class SessionTests: XCTestCase {
    func testSwitchUserAndLogOut() async throws {
        try await withServer { server in
            let app = try server.app()
            let ada = try await app.emailUser()
            let bob = try await app.emailUser()
            XCTAssertEqual(app.currentUser(), bob)
            try app.switchUser(user: ada)
            XCTAssertEqual(app.currentUser(), ada)
            try await ada.logOut()
            XCTAssertEqual(ada.state(), .loggedOut)
            XCTAssertNil(ada.accessToken())
            XCTAssertNil(ada.refreshToken())
            XCTAssertEqual(app.currentUser(), bob)
            XCTAssertThrowsError(try app.switchUser(user: ada)) {
                guard case AppError.ClientUserNotLoggedIn = $0 else { return XCTFail("\($0)") }
            }
            XCTAssertEqual(app.allUsers().count, 2)
            try await app.removeUser(user: ada)
            XCTAssertEqual(app.allUsers().map { $0.id() }, [bob.id()])
            XCTAssertEqual(ada.state(), .removed)
        }
    }

    func testAnonymousLogOutRemoves() async throws {
        try await withServer { server in
            let app = try server.app()
            let anon = try await app.logIn(credentials: .anonymous(reuse: true))
            try await anon.logOut()
            XCTAssertEqual(anon.state(), .removed)
            XCTAssertNil(app.currentUser())
            XCTAssertTrue(app.allUsers().isEmpty)
        }
    }

    func testDeleteUser() async throws {
        try await withServer { server in
            let app = try server.app()
            let user = try await app.emailUser()
            try await app.deleteUser(user: user)
            XCTAssertTrue(app.allUsers().isEmpty)
            let (status, _) = try await server.admin("GET", "/users/\(user.id())")
            XCTAssertEqual(status, 404)
        }
    }

    func testValidAndForcedRefresh() async throws {
        try await withServer { server in
            let user = try await server.app().logIn(credentials: .anonymous(reuse: true))
            let first = user.accessToken()
            let awaited3 = try await user.freshAccessToken()
            XCTAssertEqual(awaited3, first)
            let awaited4 = try await server.refreshCount()
            XCTAssertEqual(awaited4, 0)
            try await user.refreshAccessToken()
            let awaited5 = try await server.refreshCount()
            XCTAssertEqual(awaited5, 1)
            let second = user.accessToken()
            XCTAssertNotEqual(second, first)
            try await user.refreshAccessToken()
            let awaited6 = try await server.refreshCount()
            XCTAssertEqual(awaited6, 2)
            XCTAssertFalse([first, second].contains(user.accessToken()))
            // A minimum no token can meet counts as half the token's life: no refresh.
            let awaited7 = try await user.freshAccessToken(minTtlSecs: 7200)
            XCTAssertEqual(awaited7, user.accessToken())
            let awaited8 = try await server.refreshCount()
            XCTAssertEqual(awaited8, 2)
        }
    }

    func testConcurrentCallersOfAnExpiringTokenShareOneRefresh() async throws {
        // A 4 s token is due at half its life (the default 60 s margin is longer): 2 s of slack
        // on either side of each check, so that a busy machine cannot make a fresh token due.
        try await withServer(access: 4) { server in
            let user = try await server.app().logIn(credentials: .anonymous(reuse: true))
            let first = user.accessToken()
            let awaited9 = try await user.validAccessToken()
            XCTAssertEqual(awaited9, first)
            try await sleepMs(2200) // more than half of the token's life is gone: it is expiring
            let tokens = try await withThrowingTaskGroup(of: String.self) { group in
                for _ in 0..<8 { group.addTask { try await user.freshAccessToken() } }
                return try await group.reduce(into: [String]()) { $0.append($1) }
            }
            let awaited10 = try await server.refreshCount()
            XCTAssertEqual(awaited10, 1)
            XCTAssertEqual(Set(tokens), [user.accessToken()!])
            XCTAssertNotEqual(tokens[0], first)
        }
    }

    private func expirySetup(_ server: TestServer) async throws -> (App, User, Locked<[(User, SessionError)]>) {
        let app = try server.app()
        let calls = Locked<[(User, SessionError)]>([])
        app.onSessionError { user, error in calls.mutate { $0.append((user, error)) } }
        let user = try await app.emailUser()
        return (app, user, calls)
    }

    func testExpiryCallbackWhenTheRefreshTokenExpired() async throws {
        try await withServer(refresh: 3600) { server in
            let (app, user, calls) = try await expirySetup(server)
            try await server.advanceClock(3601)
            await assertThrowsAsync({ try await user.refreshAccessToken() }) {
                if case AppError.SessionExpired(.tokenExpired, _) = $0 { return true } else { return false }
            }
            try await waitFor { calls.get.count == 1 }
            let (handed, error) = calls.get[0]
            XCTAssertEqual(handed, user)
            XCTAssertEqual(handed.state(), .loggedOut)
            XCTAssertEqual(error.userId, user.id())
            XCTAssertEqual(error.kind, .tokenExpired)
            XCTAssertNil(app.currentUser())
            await assertThrowsAsync({ try await user.validAccessToken() }) {
                if case AppError.ClientUserNotLoggedIn = $0 { return true } else { return false }
            }
            XCTAssertEqual(calls.get.count, 1)
        }
    }

    func testExpiryCallbackOnARevokedSession() async throws {
        try await withServer(access: 1) { server in
            let (_, user, calls) = try await expirySetup(server)
            try await server.revokeSessions(user.id())
            try await sleepMs(600)
            await assertThrowsAsync({ try await user.freshAccessToken() }) {
                if case AppError.SessionExpired(.sessionRevoked, _) = $0 { return true } else { return false }
            }
            try await waitFor { calls.get.count == 1 }
            XCTAssertEqual(calls.get[0].1.kind, .sessionRevoked)
            XCTAssertEqual(user.state(), .loggedOut)
            XCTAssertNil(user.refreshToken())
        }
    }

    func testExpiryCallbackWhenTheUserWasDisabled() async throws {
        try await withServer { server in
            let (_, user, calls) = try await expirySetup(server)
            try await server.disableUser(user.id())
            await assertThrowsAsync({ try await user.refreshAccessToken() }) {
                if case AppError.SessionExpired = $0 { return true } else { return false }
            }
            try await waitFor { calls.get.count == 1 }
            XCTAssertEqual(calls.get[0].1.kind, .userDisabled)
            XCTAssertEqual(user.state(), .loggedOut)
        }
    }

    func testAutoRefreshRunsOnTheSdkRuntime() async throws {
        try await withServer(access: 2) { server in
            let app = try server.app()
            let events = Recorder()
            let subscription = app.subscribe(listener: events)
            defer { subscription.cancel() }
            let user = try await app.logIn(credentials: .anonymous(reuse: true))
            let first = user.accessToken()
            app.setAutoRefresh(on: true)
            defer { app.setAutoRefresh(on: false) }
            try await waitFor(timeout: 10, "an automatic refresh") { events.kinds.contains(.tokenRefreshed) }
            XCTAssertNotEqual(user.accessToken(), first)
            let awaited11 = try await server.refreshCount()
            XCTAssertGreaterThanOrEqual(awaited11, 1)
        }
    }
}

final class EventTests: XCTestCase {
    func testAppEventsInOrderAsAnAsyncSequence() async throws {
        try await withServer { server in
            let app = try server.app()
            let stream = app.authEvents() // subscribed now; events are buffered
            let user = try await app.logIn(credentials: .anonymous(reuse: true))
            try await user.refreshAccessToken()
            try await user.logOut() // anonymous: signed out, then removed
            var events: [AuthEvent] = []
            for await event in stream {
                events.append(event)
                if event.kind == .userRemoved { break } // ends the stream: unsubscribes
            }
            let kinds = events.map(\.kind)
            XCTAssertEqual(kinds.first, .initialState)
            XCTAssertNil(events.first?.userId)
            let signedIn = try XCTUnwrap(kinds.firstIndex(of: .signedIn))
            let refreshed = try XCTUnwrap(kinds.firstIndex(of: .tokenRefreshed))
            let signedOut = try XCTUnwrap(kinds.firstIndex(of: .signedOut))
            XCTAssertTrue(signedIn < refreshed && refreshed < signedOut, "\(kinds)")
            XCTAssertEqual(events[signedIn].userId, user.id())
            XCTAssertTrue(events[signedIn].userInitiated)
        }
    }

    func testUserEventsCarryOnlyThatUser() async throws {
        try await withServer { server in
            let app = try server.app()
            let ada = try await app.logIn(credentials: .anonymous(reuse: false))
            let bob = try await app.logIn(credentials: .anonymous(reuse: false))
            let stream = ada.authEvents()
            try await bob.refreshAccessToken()
            try await ada.refreshAccessToken()
            var events: [AuthEvent] = []
            for await event in stream {
                events.append(event)
                if events.count == 2 { break }
            }
            XCTAssertEqual(events.map(\.kind), [.initialState, .tokenRefreshed])
            XCTAssertTrue(events.allSatisfy { $0.userId == ada.id() })
        }
    }

    func testCancelledListenersHearNothingMore() async throws {
        try await withServer { server in
            let app = try server.app()
            let everything = Recorder()
            let subscription = app.subscribe(listener: everything)
            try await waitFor { everything.events.count == 1 }
            let user = try await app.logIn(credentials: .anonymous(reuse: true))
            let mine = Recorder()
            let userSubscription = user.subscribe(listener: mine)
            try await user.refreshAccessToken()
            try await waitFor { mine.kinds.contains(.tokenRefreshed) }
            XCTAssertEqual(mine.events.first?.kind, .initialState)
            XCTAssertEqual(mine.events.first?.userId, user.id())
            subscription.cancel()
            userSubscription.cancel()
            let seen = everything.events.count, mineSeen = mine.events.count
            try await user.refreshAccessToken()
            _ = try await app.logIn(credentials: .anonymous(reuse: false))
            XCTAssertEqual(everything.events.count, seen)
            XCTAssertEqual(mine.events.count, mineSeen)
        }
    }

    func testAThrowingSwiftListenerBreaksNothing() async throws {
        final class Throwing: AuthEventListener, @unchecked Sendable {
            let calls = Locked(0)
            func onEvent(event: AuthEvent) throws {
                calls.mutate { $0 += 1 }
                throw TestFailure(description: "listener bug")
            }
        }
        try await withServer { server in
            let app = try server.app()
            let bad = Throwing(), good = Recorder()
            let subscriptions = [app.subscribe(listener: bad), app.subscribe(listener: good)]
            defer { subscriptions.forEach { $0.cancel() } }
            let user = try await app.logIn(credentials: .anonymous(reuse: true))
            try await user.refreshAccessToken()
            try await waitFor { good.kinds.contains(.tokenRefreshed) }
            XCTAssertGreaterThanOrEqual(bad.calls.get, 3)
            let awaited12 = try await user.validAccessToken()
            XCTAssertEqual(awaited12, user.accessToken())
        }
    }
}

/// A SessionStore written in Swift: a dictionary, as an app might use the Keychain.
final class DictStore: SessionStore, @unchecked Sendable {
    private let lock = NSLock()
    private var data: [String: Data] = [:]
    private(set) var saves = 0
    var document: Data? { lock.lock(); defer { lock.unlock() }; return data["doc"] }
    func load() throws -> Data? { document }
    func save(bytes: Data) throws { lock.lock(); data["doc"] = bytes; saves += 1; lock.unlock() }
}

final class StoreAndErrorTests: XCTestCase {
    func testASwiftStoreRestoresUsersInASecondApp() async throws {
        try await withServer { server in
            let store = DictStore()
            let app = try server.app(storage: .custom(store: store))
            let kept = try await app.emailUser()
            let anon = try await app.logIn(credentials: .anonymous(reuse: true))
            try app.switchUser(user: kept)
            XCTAssertGreaterThan(store.saves, 0)
            XCTAssertNotNil(store.document)

            let again = try server.app(storage: .custom(store: store))
            XCTAssertEqual(Set(again.allUsers().map { $0.id() }), [kept.id(), anon.id()])
            let restored = try XCTUnwrap(again.currentUser())
            XCTAssertEqual(restored.id(), kept.id())
            XCTAssertEqual(restored.state(), .loggedIn)
            XCTAssertEqual(restored.refreshToken(), kept.refreshToken())
            try await restored.refreshAccessToken()
            let sum = try await restored.callFunction(name: "sum", argsJson: "[2, 2]")
            XCTAssertEqual(sum.trimmingCharacters(in: .whitespaces), "4")
        }
    }

    func testStoreErrorsReachTheApp() async throws {
        try await withServer { server in
            let locked = ClosureSessionStore(
                load: { throw StoreError.Unavailable(message: "device locked") },
                save: { _ in throw StoreError.Unavailable(message: "device locked") })
            XCTAssertThrowsError(try server.app(storage: .custom(store: locked))) {
                guard case let AppError.Storage(message) = $0 else { return XCTFail("\($0)") }
                XCTAssertTrue(message.contains("device locked"), message)
            }
        }
    }

    func testErrorsAreAppErrorCases() async throws {
        try await withServer { server in
            XCTAssertThrowsError(try App(config: AppConfig(appId: "x", baseUrl: "http://example.com", storage: .inMemory))) {
                guard case AppError.InsecureUrl = $0 else { return XCTFail("\($0)") }
            }
            XCTAssertThrowsError(try App(config: server.config(requestTimeoutMs: 0))) {
                guard case AppError.InvalidArgument = $0 else { return XCTFail("\($0)") }
            }
            let app = try server.app()
            let user = try await app.logIn(credentials: .anonymous(reuse: true))
            await assertThrowsAsync({ try await user.callFunction(name: "sum", argsJson: "{not json") }) {
                if case AppError.InvalidArgument = $0 { return true } else { return false }
            }
            await assertThrowsAsync({ try await user.callFunction(name: "no-such-function", argsJson: "[]") }) {
                if case let AppError.Service(code, _, status, _, _) = $0 { return !code.isEmpty && status >= 400 }
                return false
            }
            await assertThrowsAsync({ try await user.linkCredentials(credentials: .anonymous(reuse: false)) }) {
                if case AppError.ClientUserAlreadyNamed = $0 { return true } else { return false }
            }
            await assertThrowsAsync({ try await app.updateBaseUrl(baseUrl: "http://127.0.0.1:1") }) {
                switch $0 {
                case AppError.Network, AppError.Timeout: return true
                default: return false
                }
            }
            XCTAssertEqual(app.baseUrl(), server.baseUrl)
        }
    }

    func testASwiftLoggerNeverSeesAToken() async throws {
        final class Lines: Logger, @unchecked Sendable {
            let lines = Locked<[String]>([])
            func log(level: LogLevel, target: String, message: String) throws { lines.mutate { $0.append(message) } }
        }
        try await withServer { server in
            let logger = Lines()
            let app = try server.app(logger: logger)
            let user = try await app.logIn(credentials: .anonymous(reuse: true))
            let secrets = [user.refreshToken()!, user.accessToken()!]
            try await user.refreshAccessToken()
            try await user.logOut()
            let text = logger.lines.get.joined(separator: "\n")
            XCTAssertFalse(text.isEmpty)
            XCTAssertTrue(secrets.allSatisfy { !text.contains($0) })
        }
    }
}
