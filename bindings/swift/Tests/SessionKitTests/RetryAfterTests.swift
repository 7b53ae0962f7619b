// The server's login lockout through the SDK (#22): its Retry-After as `retryAfterSecs`.
import Foundation
import XCTest
@testable import SessionKit

final class RetryAfterTests: XCTestCase {
    func testTheLoginLockoutCarriesRetryAfterSecs() async throws {
        // Two attempts an hour on one account; the third waits for the next one.
        let server = try TestServer(rateLimits: "{ logins_per_account_per_hour = 2 }")
        defer { server.stop() }
        let app = try server.app()
        let email = uniqueEmail()
        _ = try await app.emailUser(email)
        let refused = await assertThrowsAsync({
            try await app.logIn(credentials: .emailPassword(email: email, password: "wrong-horse"))
        }) { error in
            guard case let AppError.Service(_, _, status, _, _) = error else { return false }
            return status == 401
        }
        XCTAssertNil((refused as? AppError)?.retryAfterSecs)
        let locked = await assertThrowsAsync({
            try await app.logIn(credentials: .emailPassword(email: email, password: "correct-horse"))
        }) { error in
            guard case let AppError.Service(code, _, status, _, _) = error else { return false }
            return code == "TooManyRequests" && status == 429
        }
        guard case let .Service(_, _, _, _, retryAfterSecs)? = locked as? AppError else {
            return XCTFail("\(String(describing: locked))")
        }
        let secs = try XCTUnwrap(retryAfterSecs)
        XCTAssertTrue((60...3600).contains(secs), "\(secs)")
        // The property reads the same on any AppError, nil on the other cases.
        XCTAssertEqual((locked as? AppError)?.retryAfterSecs, secs)
        XCTAssertNil(AppError.Network(message: "down").retryAfterSecs)
        XCTAssertFalse("\(String(describing: locked))".contains("correct-horse"))
    }
}
