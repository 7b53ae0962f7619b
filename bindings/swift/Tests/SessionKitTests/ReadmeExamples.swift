// The Swift examples of README.md's Swift section, compiled with the tests (never run: they
// expect a server on port 9090). ReadmeTests checks that they are still the README's text, so
// an example that stops compiling fails the build instead of misleading a reader.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import SessionKit

// README block 1
func readmeExample1() async throws {
    let app = try App(config: AppConfig(appId: "sessionkit-dev", baseUrl: "http://127.0.0.1:9090",
                                        storage: .file(dir: "sessions", encryptionKey: nil)))
    // The token-expiry callback: the refresh token is dead, this user must log in again.
    app.onSessionError { user, error in print("user \(user.id()) must log in again: \(error.kind)") }
    let user = try await app.logIn(credentials: .emailPassword(email: "ada@example.com", password: "correct-horse"))
    let token = try await user.validAccessToken()   // refreshed first when about to expire
    do {
        try await user.refreshAccessToken()
    } catch AppError.SessionExpired(let kind, _) {
        // the handler above has been called once; show the login screen
    }
    for await event in app.authEvents() { print(event.kind) } // .initialState first
}
// end

// README block 2 (continues block 1: `app` and `user` are block 1's)
func readmeExample2(app: App, user: User) async throws {
    // Plain literals; a negative value throws AppError.InvalidArgument naming the field.
    let config = AppConfig(appId: "sessionkit-dev", baseUrl: "http://127.0.0.1:9090", storage: .inMemory,
                           requestTimeoutMs: 5000)
    let token = try await user.validAccessToken(minTtlSecs: 30)

    // Errors read as sentences; the associated values stay.
    do {
        _ = try await app.logIn(credentials: .emailPassword(email: "ada@example.com", password: "wrong"))
    } catch let error as AppError {
        print(error)      // invalid username/password (server error InvalidPassword, HTTP 401)
        if case .Service(_, _, let httpStatus, _, _) = error, httpStatus == 401 { /* ask again */ }
    }

    // Who is current: the value now first, then each change; ending the task (or releasing
    // the stream) cancels the subscription. `app.sessionState` is the value now.
    let watcher = Task {
        for await session in app.sessionStates() {
            switch session {
            case .loggedIn(let user): print("current user: \(user.id())")
            case .loggedOut: print("show the login screen")
            }
        }
    }
    watcher.cancel()

    // Typed function calls and custom data (JSONEncoder/JSONDecoder); the JSON-string forms stay.
    let sum: Int = try await user.callFunction("sum", 1, 2, 3)
    struct Plan: Decodable { let plan: String }
    let plan = try await user.refreshCustomData(as: Plan.self)
}
// end

// README block 3 (continues block 1: `app` is block 1's; the tokens come from the sign-in SDKs)
func readmeExample3(app: App, appleIdToken: String, googleIdToken: String) async throws {
    let user = try await app.logIn(credentials: .appleIdToken(idToken: appleIdToken))
    try await user.linkCredentials(credentials: .googleIdToken(idToken: googleIdToken))
}
// end

// README block 4 (continues block 1: `user` is block 1's)
func readmeExample4(user: User) async throws {
    var request = URLRequest(url: URL(string: "https://api.example.com/orders")!)
    request.httpMethod = "POST"
    request.httpBody = Data(#"{"item":"tea"}"#.utf8)
    let (data, response) = try await URLSession.shared.data(for: request, user: user)
}
// end
