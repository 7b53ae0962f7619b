// Sessions of a user (#25): the generated API is already Swift's (`try await user.sessions()`,
// `revokeSession(id:)`, `logOut(scope:)` with `nil` meaning `.thisDevice`); this only adds what
// SwiftUI and collections expect of a listed value.

/// A session is identified by its server id (`id`), the one `revokeSession(id:)` takes, so a
/// list of them drives `ForEach(sessions)` / `List(sessions)` as it is.
extension SessionInfo: Identifiable {}

extension User {
    /// Ends `session` (an element of `sessions()`): `revokeSession(id: session.id)`. That device
    /// learns it at its next refresh (`AppError.SessionExpired(.sessionRevoked, _)`); this
    /// device's own session logs it out here. Throws `AppError.Service` with code
    /// `SessionNotFound` (HTTP 404) when the session is no longer live or not this user's.
    public func revoke(_ session: SessionInfo) async throws {
        try await revokeSession(id: session.id)
    }
}
