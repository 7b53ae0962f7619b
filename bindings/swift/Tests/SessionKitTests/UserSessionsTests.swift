// Issue #25: a user sees and ends their own sessions. Two Apps with separate in-memory stores
// act as two devices of one user (a custom-JWT subject), each with its own DeviceInfo.
import Foundation
import XCTest
@testable import SessionKit

private func isNotFound(_ error: Error) -> Bool {
    guard case let AppError.Service(code, _, status, _, _) = error else { return false }
    return code == "SessionNotFound" && status == 404
}

private func isRevoked(_ error: Error) -> Bool {
    if case AppError.SessionExpired(.sessionRevoked, _) = error { return true }
    return false
}

/// One device: its App, the user logged in there, and its session-error handler's calls.
private struct Device {
    let app: App
    let user: User
    let errors: Locked<[(String, SessionErrorKind)]>
}

private func device(_ server: TestServer, _ platform: String, _ sub: String) async throws -> Device {
    var config = server.config()
    config.device = DeviceInfo(platform: platform, platformVersion: "1.0", deviceName: "\(platform) test device",
                               appVersion: "\(platform)-2.4.0")
    let app = try App(config: config)
    let errors = Locked<[(String, SessionErrorKind)]>([])
    app.onSessionError { user, error in errors.mutate { $0.append((user.id(), error.kind)) } }
    let user = try await app.logIn(credentials: .jwt(token: signJwt(#"{"sub":"\#(sub)","exp":\#(nowSecs() + 600)}"#)))
    return Device(app: app, user: user, errors: errors)
}

final class UserSessionsTests: XCTestCase {
    func testEachDeviceListsBothAndRevokingTheOtherEndsItAtItsNextRefresh() async throws {
        try await withServer { server in
            let phone = try await device(server, "iOS", "kim")
            let laptop = try await device(server, "macOS", "kim")
            XCTAssertEqual(phone.user.id(), laptop.user.id())
            let seen: [SessionInfo] = try await phone.user.sessions()
            XCTAssertEqual(seen.map(\.current), [true, false])
            XCTAssertEqual(seen.map(\.device.platform), ["iOS", "macOS"])
            XCTAssertEqual(seen[1].device.deviceName, "macOS test device")
            XCTAssertEqual(seen[1].device.platformVersion, "1.0")
            XCTAssertEqual(seen[1].device.appVersion, "macOS-2.4.0")
            XCTAssertEqual(seen[0].providerType, "custom-token")
            XCTAssertNil(seen[0].apiKeyName)
            XCTAssertLessThanOrEqual(seen[0].created, seen[0].lastUsed)
            XCTAssertEqual(Set(seen.map(\.id)).count, 2) // Identifiable: distinct ids
            let text = String(describing: seen)
            XCTAssertTrue(text.contains("iOS"), text)
            XCTAssertFalse(text.contains(phone.user.refreshToken()!), "no token in the description")
            let fromLaptop = try await laptop.user.sessions()
            XCTAssertEqual(fromLaptop.map(\.current), [false, true])

            try await phone.user.revokeSession(id: seen[1].id)
            let left = try await phone.user.sessions()
            XCTAssertEqual(left.map(\.id), [seen[0].id])
            await assertThrowsAsync({ try await laptop.user.refreshAccessToken() }, isRevoked)
            XCTAssertEqual(laptop.user.state(), .loggedOut)
            // Called once, on the revoked device only, even after another try.
            await assertThrowsAsync({ try await laptop.user.refreshAccessToken() }) { $0 is AppError }
            try await waitFor("the laptop's session error") { !laptop.errors.get.isEmpty }
            try await sleepMs(100) // a second call would have come by now
            XCTAssertEqual(laptop.errors.get.map(\.1), [.sessionRevoked])
            XCTAssertEqual(laptop.errors.get.map(\.0), [laptop.user.id()])
            XCTAssertTrue(phone.errors.get.isEmpty)
            try await phone.user.refreshAccessToken()

            // Again (no longer live), or an id nobody has: 404 SessionNotFound.
            for id in [seen[1].id, "000000000000000000000000"] {
                await assertThrowsAsync({ try await phone.user.revokeSession(id: id) }, isNotFound)
            }
            await assertThrowsAsync({ try await phone.user.revokeSession(id: "../profile") }) {
                if case AppError.InvalidArgument = $0 { return true } else { return false }
            }
        }
    }

    func testAnotherUsersSessionIdIsNotFoundAndThatSessionLivesOn() async throws {
        try await withServer { server in
            let ana = try await device(server, "Android", "ana")
            let ben = try await device(server, "Linux", "ben")
            let bens = try await ben.user.sessions()
            XCTAssertEqual(bens.count, 1)
            await assertThrowsAsync({ try await ana.user.revokeSession(id: bens[0].id) }, isNotFound)
            try await ben.user.refreshAccessToken()
            let still = try await ben.user.sessions()
            XCTAssertEqual(still.map(\.id), [bens[0].id])
        }
    }

    func testOtherDevicesKeepsThisOneAndEverywhereLogsItOutToo() async throws {
        try await withServer { server in
            let phone = try await device(server, "Android", "lea")
            let tablet = try await device(server, "iPadOS", "lea")
            try await phone.user.logOut(scope: .otherDevices)
            XCTAssertEqual(phone.user.state(), .loggedIn)
            try await phone.user.refreshAccessToken()
            await assertThrowsAsync({ try await tablet.user.refreshAccessToken() }, isRevoked)
            try await waitFor("the tablet's session error") { !tablet.errors.get.isEmpty }
            XCTAssertEqual(tablet.errors.get.map(\.1), [.sessionRevoked])
            let mine = try await phone.user.sessions()
            XCTAssertEqual(mine.map(\.current), [true])

            let desktop = try await device(server, "Linux", "lea")
            let both = try await desktop.user.sessions()
            XCTAssertEqual(both.count, 2)
            try await phone.user.logOut(scope: .everywhere)
            XCTAssertEqual(phone.user.state(), .loggedOut)
            await assertThrowsAsync({ try await desktop.user.refreshAccessToken() }, isRevoked)
            try await waitFor("the desktop's session error") { !desktop.errors.get.isEmpty }
            XCTAssertEqual(desktop.errors.get.count, 1)
            // A logout here, not an expiry: no session error on this device.
            XCTAssertTrue(phone.errors.get.isEmpty)
        }
    }

    func testTheDefaultScopeIsThisDeviceOnly() async throws {
        try await withServer { server in
            let phone = try await device(server, "iOS", "max")
            let laptop = try await device(server, "macOS", "max")
            try await phone.user.logOut()
            XCTAssertEqual(phone.user.state(), .loggedOut)
            let left = try await laptop.user.sessions()
            XCTAssertEqual(left.map(\.current), [true])
            try await laptop.user.logOut(scope: .thisDevice)
            XCTAssertEqual(laptop.user.state(), .loggedOut)
        }
    }
}
