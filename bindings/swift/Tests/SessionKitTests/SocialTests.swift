// Social sign-in (#14) through the Swift binding, against the real server trusting the loopback
// test issuer (TestIssuer.swift): the issuer mints the tokens, the server verifies them.
import Foundation
import XCTest
@testable import SessionKit

/// Runs `body` with a fresh test issuer and a server that trusts it, both stopped afterwards.
func withSocialServer(_ body: (TestServer, TestIssuer) async throws -> Void) async throws {
    let issuer = try TestIssuer()
    defer { issuer.stop() }
    let server = try TestServer(extraProviders: try await issuer.providersToml())
    defer { server.stop() }
    try await body(server, issuer)
}

final class SocialTests: XCTestCase {
    /// A Google ID token logs in; the profile comes from its claims; a token for another client
    /// is refused and logs nobody in.
    func testLogInWithGoogleIdToken() async throws {
        try await withSocialServer { server, issuer in
            let app = try server.app()
            let sub = "g-swift-\(UUID().uuidString)"
            let token = try await issuer.credential(
                kind: "google_id_token", specJson: #"{"sub":"\#(sub)","email":"ada@example.com","name":"Ada"}"#)
            let user = try await app.logIn(credentials: .googleIdToken(idToken: token))
            XCTAssertEqual(user.providerType(), "oauth2-google")
            XCTAssertEqual(user.identities().map(\.providerType), ["oauth2-google"])
            XCTAssertEqual(user.profile().email, "ada@example.com")
            XCTAssertEqual(user.profile().name, "Ada")
            XCTAssertEqual(user.state(), .loggedIn)

            let misaddressed = try await issuer.credential(
                kind: "google_id_token", specJson: #"{"sub":"g-other","aud":"wrong"}"#)
            await assertThrowsAsync({ try await app.logIn(credentials: .googleIdToken(idToken: misaddressed)) }) {
                if case let AppError.Service(code, _, _, _, _) = $0 { return code == "AuthError" }
                return false
            }
            XCTAssertEqual(app.allUsers().map { $0.id() }, [user.id()])
        }
    }

    /// An Apple identity linked to an anonymous user is that user: logging in with an Apple
    /// token for the same subject, from another App (another device), gives the same user id.
    func testAppleTokenLinkedToAnonymousUserLogsInAsThatUser() async throws {
        try await withSocialServer { server, issuer in
            let app = try server.app()
            let anonymous = try await app.logIn(credentials: .anonymous(reuse: false))
            let sub = "apple-swift-\(UUID().uuidString)"
            let spec = #"{"sub":"\#(sub)"}"#
            let linkToken = try await issuer.credential(kind: "apple_id_token", specJson: spec)
            try await anonymous.linkCredentials(credentials: .appleIdToken(idToken: linkToken))
            XCTAssertEqual(anonymous.identities().map(\.providerType).sorted(), ["anon-user", "oauth2-apple"])

            let otherDevice = try server.app()
            let loginToken = try await issuer.credential(kind: "apple_id_token", specJson: spec)
            let again = try await otherDevice.logIn(credentials: .appleIdToken(idToken: loginToken))
            XCTAssertEqual(again.id(), anonymous.id())
            XCTAssertEqual(again.identities().map(\.providerType).sorted(), ["anon-user", "oauth2-apple"])
        }
    }
}
