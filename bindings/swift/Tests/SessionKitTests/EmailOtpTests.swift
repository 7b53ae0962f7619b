// Email one-time codes (#23) against the real server with `[app.providers.email-otp]`; the code
// is read from the server's dev outbox through the admin API (kind `email-otp`, the code in
// `token`), as the mail would bring it.
import Foundation
import XCTest
@testable import SessionKit

final class EmailOtpTests: XCTestCase {
    private func withOtpServer(_ body: (TestServer) async throws -> Void) async throws {
        let server = try TestServer(extraProviders: "[app.providers.email-otp]")
        defer { server.stop() }
        try await body(server)
    }

    /// The newest one-time code the server mailed to `email`.
    private func mailedCode(_ server: TestServer, _ email: String) async throws -> String {
        let query = email.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? email
        let (status, body) = try await server.admin("GET", "/outbox?email=\(query)")
        guard status == 200 else { throw TestFailure(description: "outbox: \(status) \(body)") }
        let mails = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [[String: Any]] ?? []
        let codes = mails.filter { $0["kind"] as? String == "email-otp" }.compactMap { $0["token"] as? String }
        guard let code = codes.last else { throw TestFailure(description: "no email-otp mail for \(email): \(body)") }
        return code
    }

    /// Another code of the same length.
    private func wrong(_ code: String) -> String {
        String(code.dropLast()) + String((Int(String(code.last!))! + 1) % 10)
    }

    /// True for a `Service` error with this code and HTTP status.
    private func isService(_ error: Error, _ code: String, _ status: Int32) -> Bool {
        if case let AppError.Service(c, _, httpStatus, _, _) = error { return c == code && httpStatus == status }
        return false
    }

    func testAMailedCodeLogsInOnceAsAUserWithAnEmailOtpIdentity() async throws {
        try await withOtpServer { server in
            let app = try server.app()
            defer { app.close() }
            let email = uniqueEmail()
            try await app.emailOtp().send(email: email)
            let code = try await mailedCode(server, email)
            XCTAssertTrue(code.count >= 6 && code.allSatisfy(\.isNumber), code)

            await assertThrowsAsync({ try await app.logIn(credentials: .emailOtp(email: email, code: self.wrong(code))) }) {
                self.isService($0, "InvalidCode", 401)
            }
            let user = try await app.logIn(credentials: .emailOtp(email: email, code: code))
            XCTAssertEqual(user.providerType(), "email-otp")
            XCTAssertEqual(user.identities().map(\.providerType), ["email-otp"])
            XCTAssertEqual(user.profile().email, email)

            // Single use: the same code again finds no live code.
            await assertThrowsAsync({ try await app.logIn(credentials: .emailOtp(email: email, code: code)) }) {
                self.isService($0, "CodeExpired", 401)
            }
        }
    }

    func testACodeLinkedToAnAnonymousUserLaterLogsIntoThatUser() async throws {
        try await withOtpServer { server in
            let app = try server.app()
            defer { app.close() }
            let anon = try await app.logIn(credentials: .anonymous(reuse: false))
            let email = uniqueEmail()
            try await app.emailOtp().send(email: email)
            try await anon.linkCredentials(credentials: .emailOtp(email: email, code: try await mailedCode(server, email)))
            XCTAssertEqual(anon.identities().map(\.providerType).sorted(), ["anon-user", "email-otp"])

            // On another device (a fresh App): the same user.
            let other = try server.app()
            defer { other.close() }
            try await other.emailOtp().send(email: email)
            let user = try await other.logIn(credentials: .emailOtp(email: email, code: try await mailedCode(server, email)))
            XCTAssertEqual(user.id(), anon.id())
        }
    }
}
