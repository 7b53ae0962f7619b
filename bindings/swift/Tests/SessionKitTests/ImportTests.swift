// Issue #24: users moved in from another system (an App Services-shaped line: an ObjectId id,
// custom data, an email/password identity with a hash made by Python's argon2-cffi, a custom-JWT
// identity) log in from Swift as the same users, with the exported ids.
import Foundation
import XCTest
@testable import SessionKit

final class ImportTests: XCTestCase {
    private let password = "correct horse battery staple"
    // argon2-cffi's default parameters (bindings/python/tests/test_admin.py has the same hash).
    private let hash = "$argon2id$v=19$m=65536,t=3,p=4$jBN4emKrU7ZFsqrx10K8Gg$r3eFJN0Qm7YpLdVMVYUU3+6T1cnAgaAXQeOhklFU+44"

    private func report(_ body: String) throws -> [String: Any] {
        try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any] ?? [:]
    }

    func testAnImportedUserLogsInWithTheExportedIdByPasswordAndByCustomJwt() async throws {
        try await withServer { server in
            let userId = String(UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(24))
            let email = uniqueEmail()
            let sub = "sw-imported-\(UUID().uuidString.prefix(8))"
            let line = """
            {"id":"\(userId)","created_at":"2021-06-01T12:00:00Z","custom_data":{"plan":"pro"},\
            "identities":[{"provider_type":"local-userpass","id":"\(String(userId.reversed()))",\
            "profile_data":{"email":"\(email)"},"password_hash":"\(self.hash)"},\
            {"provider_type":"custom-token","id":"\(sub)"}]}
            """
            let (status, body) = try await server.admin("POST", "/users/import", body: "[\(line)]")
            XCTAssertEqual(status, 200, body)
            XCTAssertEqual(try self.report(body)["created"] as? Int, 1, body)

            let app = try server.app()
            defer { app.close() }
            let user = try await app.logIn(credentials: .emailPassword(email: email, password: self.password))
            XCTAssertEqual(user.id(), userId)
            XCTAssertTrue(user.customDataJson()?.contains("\"plan\":\"pro\"") == true, user.customDataJson() ?? "nil")
            let token = signJwt("{\"sub\":\"\(sub)\",\"exp\":\(nowSecs() + 600)}")
            let again = try await app.logIn(credentials: .jwt(token: token))
            XCTAssertEqual(again.id(), userId)
            // Upgraded at the first login: the password still works, a wrong one does not.
            try await user.logOut()
            let third = try await app.logIn(credentials: .emailPassword(email: email, password: self.password))
            XCTAssertEqual(third.id(), userId)
            await assertThrowsAsync({
                try await app.logIn(credentials: .emailPassword(email: email, password: "not it"))
            }) { error in
                if case let AppError.Service(code, _, _, _, _) = error { return code == "InvalidPassword" }
                return false
            }
            // The same line again changes nothing.
            let (_, second) = try await server.admin("POST", "/users/import", body: "[\(line)]")
            XCTAssertEqual(try self.report(second)["unchanged"] as? Int, 1, second)
        }
    }
}
