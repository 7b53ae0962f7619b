// Sessions of a user (#25): the generated API is already Swift's (`try await user.sessions()`,
// `revokeSession(id:)`, `logOut(scope:)` with `nil` meaning `.thisDevice`); this only adds what
// SwiftUI and collections expect of a listed value.

/// A session is identified by its server id (`id`), the one `revokeSession(id:)` takes, so a
/// list of them drives `ForEach(sessions)` / `List(sessions)` as it is.
extension SessionInfo: Identifiable {}
