// A Swift executable that logs in and ends with its App still open: a subscription, auto
// refresh and refreshes in flight. ExitTests runs it many times; it must exit 0 every time and
// leave the session saved. Arguments: BASE_URL APP_ID DIR. Prints the user's id.
import Foundation
import SessionKit

final class Quiet: AuthEventListener {
    func onEvent(event: AuthEvent) throws {}
}

let args = CommandLine.arguments
let app = try App(config: AppConfig(appId: args[2], baseUrl: args[1],
                                    storage: .file(dir: args[3], encryptionKey: nil),
                                    autoRefresh: true))
let subscription = app.subscribe(listener: Quiet())
let user = try await app.logIn(credentials: .anonymous(reuse: false))
print(user.id())
for _ in 0..<3 {
    Task.detached { try? await user.refreshAccessToken() }
}
withExtendedLifetime(subscription) {}
