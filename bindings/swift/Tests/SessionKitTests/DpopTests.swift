// Issue #29, DPoP (RFC 9449) through the Swift binding, against sessionkit-server apps with
// `dpop = "required"` (or "optional"): `AppConfig(dpop: true)` binds each login's session to a
// key, `dpopThumbprint()` is the access tokens' `cnf.jkt`, and everything the SDK sends carries a
// proof; `URLSession.data(for:user:)` sends `Authorization: DPoP` with a proof per request and
// answers the server's nonce challenge once; a copied token is refused without ending anything;
// an app's `DpopSigner` (DpopSigners.swift) makes and holds the keys, and when it fails, the
// request fails with `Storage` and the session stays. No assertion message holds a token, a
// proof or a key.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest
@testable import SessionKit

final class DpopTests: XCTestCase {
    private let profilePath = "/api/client/v2.0/auth/profile"

    private func profile(_ server: TestServer) -> URLRequest {
        URLRequest(url: URL(string: server.baseUrl + profilePath)!)
    }

    private func dpopApp(_ server: TestServer, signer: DpopSigner? = nil) throws -> App {
        try App(config: server.config(dpop: true, dpopSigner: signer))
    }

    /// How many requests of `op` ("profile", "function", "refresh") the server counted.
    private func count(_ server: TestServer, _ op: String) async throws -> Int {
        let (status, body) = try await server.admin("GET", "/metrics")
        guard status == 200 else { throw TestFailure(description: "metrics: \(status) \(body)") }
        let requests = (try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])?["requests"]
        return ((requests as? [String: Any])?[op] as? Int) ?? 0
    }

    /// What a thief holding a copy of the user's tokens gets, by plain HTTP without a proof:
    /// the refresh token at the token endpoint, and the access token at the profile.
    private func stolen(_ server: TestServer, _ user: User) async throws -> (refresh: (Int, String?), access: Int) {
        let (refreshStatus, body) = try await server.http(
            "POST", "\(server.baseUrl)/api/client/v2.0/auth/session", token: user.refreshToken())
        let code = (try? JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])?["error_code"] as? String
        let (accessStatus, _) = try await server.http("GET", server.baseUrl + profilePath, token: user.accessToken())
        return ((refreshStatus, code), accessStatus)
    }

    /// Login, refresh, a function and the URLSession hook of a session bound with the SDK's own
    /// software key: the thumbprint is the access tokens' `cnf.jkt` before and after the
    /// refresh; the logout drops the key.
    func testALoginWithDpopBindsTheSessionAndItsCallsCarryProofs() async throws {
        try await withServer(dpop: "required") { server in
            let app = try dpopApp(server)
            let user = try await app.emailUser()
            let thumbprint = try XCTUnwrap(user.dpopThumbprint(), "the session is not bound")
            XCTAssertEqual(try cnfJkt(user.accessToken()), thumbprint)
            let first = user.accessToken()
            try await user.refreshAccessToken()
            XCTAssertTrue(user.accessToken() != first, "the token was not replaced")
            XCTAssertEqual(user.dpopThumbprint(), thumbprint)
            XCTAssertEqual(try cnfJkt(user.accessToken()), thumbprint)
            let sum: Int = try await user.callFunction("sum", 1, 2)
            XCTAssertEqual(sum, 3)
            // The server checks the hook's proof as an app's backend would.
            let (data, response) = try await URLSession.shared.data(for: profile(server), user: user)
            XCTAssertEqual(httpStatus(response), 200)
            XCTAssertEqual(try jsonString(String(decoding: data, as: UTF8.self), "user_id"), user.id())
            try await user.logOut()
            XCTAssertNil(user.dpopThumbprint())
        }
    }

    /// A copy of a bound session's refresh token, sent without a proof, is refused with
    /// InvalidDPoPProof (400, a token endpoint's status), its access token with a 401; the
    /// session is not ended: the device refreshes and calls on, and nobody hears of an error.
    func testAStolenTokenIsRefusedAndEndsNothing() async throws {
        try await withServer(dpop: "required") { server in
            let app = try dpopApp(server)
            let errors = Locked<[SessionError]>([])
            app.onSessionError { _, error in errors.mutate { $0.append(error) } }
            let user = try await app.emailUser()
            let thief = try await stolen(server, user)
            XCTAssertEqual(thief.refresh.0, 400)
            XCTAssertEqual(thief.refresh.1, "InvalidDPoPProof")
            XCTAssertEqual(thief.access, 401)
            XCTAssertEqual(user.state(), .loggedIn)
            try await user.refreshAccessToken()
            let sum: Int = try await user.callFunction("sum", 4)
            XCTAssertEqual(sum, 4)
            try await sleepMs(50)
            XCTAssertTrue(errors.get.isEmpty)
        }
    }

    /// A client without DPoP cannot log in to an app that requires it.
    func testARequiredAppRefusesALoginWithoutAProof() async throws {
        try await withServer(dpop: "required") { server in
            await assertThrowsAsync({ try await server.app().logIn(credentials: .anonymous(reuse: false)) }) {
                if case AppError.Service(let code, _, let status, _, _) = $0 {
                    return code == "InvalidDPoPProof" && status == 400
                }
                return false
            }
        }
    }

    /// On an app where DPoP is optional, a client without it gets a bearer session: no
    /// thumbprint, no `cnf`, `dpopProof` nil, and the hook sends `Bearer` with no `DPoP` header.
    func testABearerSessionHasNoProofAndTheHookSendsBearer() async throws {
        try await withServer(dpop: "optional") { server in
            let user = try await server.app().logIn(credentials: .anonymous(reuse: false))
            XCTAssertNil(user.dpopThumbprint())
            XCTAssertNil(try cnfJkt(user.accessToken()))
            let token = try XCTUnwrap(user.accessToken())
            XCTAssertNil(try user.dpopProof(method: "GET", url: server.baseUrl + profilePath, accessToken: token))
            let api = try TinyAPI { _ in 200 }
            defer { api.stop() }
            var request = URLRequest(url: URL(string: "\(api.url)/orders")!)
            request.setValue("stale", forHTTPHeaderField: "DPoP")
            _ = try await URLSession.shared.data(for: request, user: user)
            XCTAssertTrue(api.received.first?.authorization == "Bearer \(token)", "not Bearer <the access token>")
            XCTAssertNil(api.received.first?.dpop)
        }
    }

    /// What the hook puts on the wire for a bound session: `Authorization: DPoP <token>` and a
    /// proof of the session's key for that method and URL (no query) with the token's hash;
    /// after a 401, the replay carries the refreshed token and a new proof for it.
    func testTheHookSendsTheDpopSchemeAndANewProofForEachRequest() async throws {
        try await withServer(dpop: "optional") { server in
            let user = try await dpopApp(server).logIn(credentials: .anonymous(reuse: false))
            let thumbprint = try XCTUnwrap(user.dpopThumbprint())
            let first = try XCTUnwrap(user.accessToken())
            let api = try TinyAPI { _ in 401 }
            defer { api.stop() }
            var request = URLRequest(url: URL(string: "\(api.url)/orders/7?secret=1#top")!)
            request.httpMethod = "PUT"
            request.httpBody = Data(#"{"order":7}"#.utf8)
            let (_, response) = try await URLSession.shared.data(for: request, user: user)
            XCTAssertEqual(httpStatus(response), 401)
            let received = api.received
            XCTAssertEqual(received.count, 2)
            let second = try XCTUnwrap(user.accessToken())
            XCTAssertTrue(first != second, "no refresh happened")
            var jtis: Set<String> = []
            for (sent, token) in zip(received, [first, second]) {
                XCTAssertTrue(sent.authorization == "DPoP \(token)", "not DPoP <the token of that attempt>")
                let proof = try XCTUnwrap(sent.dpop, "no DPoP header")
                let header = try jwtPart(proof, 0)
                let claims = try jwtPart(proof, 1)
                XCTAssertEqual(header["typ"] as? String, "dpop+jwt")
                XCTAssertEqual(header["alg"] as? String, "ES256")
                XCTAssertEqual(try jwkThumbprint(header["jwk"]), thumbprint)
                XCTAssertEqual(claims["htm"] as? String, "PUT")
                XCTAssertEqual(claims["htu"] as? String, "\(api.url)/orders/7")
                XCTAssertEqual(claims["ath"] as? String, base64url(Data(sha256(Array(token.utf8)))))
                XCTAssertNil(claims["nonce"])
                jtis.insert(claims["jti"] as? String ?? "")
                XCTAssertEqual(String(decoding: sent.body, as: UTF8.self), #"{"order":7}"#)
            }
            XCTAssertEqual(jtis.count, 2, "a proof was sent twice")
        }
    }

    /// The server's clock runs 10 minutes ahead of the device's, so every proof's `iat` is too
    /// old for it: it answers 401 `use_dpop_nonce` with a `DPoP-Nonce`. The hook sends the
    /// request once more with the nonce (no refresh) and keeps it: the next request goes
    /// through at once.
    func testTheHookAnswersANonceChallengeOnceAndKeepsTheNonce() async throws {
        try await withServer(dpop: "required") { server in
            let user = try await dpopApp(server).logIn(credentials: .anonymous(reuse: false))
            try await server.advanceClock(600)
            let profiles = try await count(server, "profile")
            let (_, response) = try await URLSession.shared.data(for: profile(server), user: user)
            XCTAssertEqual(httpStatus(response), 200)
            let afterChallenge = try await count(server, "profile")
            XCTAssertEqual(afterChallenge, profiles + 2) // the challenge, then the retry
            let (_, again) = try await URLSession.shared.data(for: profile(server), user: user)
            XCTAssertEqual(httpStatus(again), 200)
            let afterAgain = try await count(server, "profile")
            XCTAssertEqual(afterAgain, afterChallenge + 1)
            let refreshes = try await server.refreshCount()
            XCTAssertEqual(refreshes, 0)
        }
    }

    /// `dpopSigner` is for `dpop: true` only.
    func testASignerWithoutDpopIsAnInvalidArgument() async throws {
        try await withServer(dpop: "optional") { server in
            XCTAssertThrowsError(try App(config: server.config(dpopSigner: GarbagePublicKeySigner()))) {
                guard case AppError.InvalidArgument(let message) = $0 else {
                    return XCTFail("expected InvalidArgument, got \($0)")
                }
                XCTAssertTrue(message.contains("dpop_signer"), message)
            }
        }
    }

    /// A signer whose public key is not a P-256 key fails the login with Storage, saying so.
    func testASignerWithAGarbagePublicKeyFailsTheLogin() async throws {
        try await withServer(dpop: "required") { server in
            let app = try dpopApp(server, signer: GarbagePublicKeySigner())
            await assertThrowsAsync({ try await app.logIn(credentials: .anonymous(reuse: false)) }) {
                guard case AppError.Storage(let message) = $0 else { return false }
                return message.contains("public_key gave 3 bytes") && message.contains("P-256")
            }
            XCTAssertNil(app.currentUser())
        }
    }

    /// The app's signer makes the key, the SDK only holds its handle and public key (given as
    /// the raw point and as SubjectPublicKeyInfo, signing DER as `SecKeyCreateSignature` does):
    /// the session is bound to it, refreshes, calls and the hook work, a thief is refused, and the
    /// logout deletes the key.
    func testAnAppSignerBindsTheSessionToItsKey() async throws {
        for form in [OpenSSLSigner.PublicForm.point, .spki] {
            guard let signer = OpenSSLSigner.make(form) else {
                throw XCTSkip("no P-256 ECDSA for Swift here (libcrypto.so.3 cannot be loaded)")
            }
            try await withServer(dpop: "required") { server in
                let user = try await dpopApp(server, signer: signer).logIn(credentials: .anonymous(reuse: false))
                let handles = signer.handles
                XCTAssertEqual(handles.count, 1)
                let thumbprint = try XCTUnwrap(user.dpopThumbprint(), "the session is not bound")
                XCTAssertEqual(try cnfJkt(user.accessToken()), thumbprint)
                try await user.refreshAccessToken()
                XCTAssertEqual(try cnfJkt(user.accessToken()), thumbprint)
                let sum: Int = try await user.callFunction("sum", 2, 2)
                XCTAssertEqual(sum, 4)
                let (_, response) = try await URLSession.shared.data(for: profile(server), user: user)
                XCTAssertEqual(httpStatus(response), 200)
                let thief = try await stolen(server, user)
                XCTAssertEqual(thief.refresh.0, 400)
                XCTAssertEqual(thief.access, 401)
                XCTAssertGreaterThanOrEqual(signer.signatures, 4) // login, refresh, call, hook
                try await user.logOut()
                XCTAssertEqual(signer.deleted, handles)
                XCTAssertTrue(signer.handles.isEmpty)
            }
        }
    }

    /// A signer that cannot sign (a locked device): the refresh and the hook fail with Storage,
    /// nothing is sent, the session stays; once it signs again, all goes on.
    func testASignerThatCannotSignFailsTheRequestAndKeepsTheSession() async throws {
        guard let signer = OpenSSLSigner.make() else {
            throw XCTSkip("no P-256 ECDSA for Swift here (libcrypto.so.3 cannot be loaded)")
        }
        try await withServer(dpop: "required") { server in
            let app = try dpopApp(server, signer: signer)
            let errors = Locked<[SessionError]>([])
            app.onSessionError { _, error in errors.mutate { $0.append(error) } }
            let user = try await app.logIn(credentials: .anonymous(reuse: false))
            let token = user.accessToken()
            let refreshes = try await server.refreshCount()
            signer.isLocked = true
            let locked: (Error) -> Bool = {
                if case AppError.Storage(let message) = $0 { return message.contains("the device is locked") }
                return false
            }
            await assertThrowsAsync({ try await user.refreshAccessToken() }, locked)
            await assertThrowsAsync({ try await URLSession.shared.data(for: self.profile(server), user: user) }, locked)
            XCTAssertEqual(user.state(), .loggedIn)
            XCTAssertTrue(user.accessToken() == token, "the token changed")
            let refreshesWhileLocked = try await server.refreshCount()
            XCTAssertEqual(refreshesWhileLocked, refreshes)
            signer.isLocked = false
            try await user.refreshAccessToken()
            let (_, response) = try await URLSession.shared.data(for: profile(server), user: user)
            XCTAssertEqual(httpStatus(response), 200)
            XCTAssertTrue(errors.get.isEmpty)
        }
    }
}

private func httpStatus(_ response: URLResponse) -> Int { (response as? HTTPURLResponse)?.statusCode ?? 0 }

/// Part `index` of a JWT (0 the header, 1 the claims) as a JSON object; tests only.
func jwtPart(_ jwt: String, _ index: Int) throws -> [String: Any] {
    let parts = jwt.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 3 else { throw TestFailure(description: "not a JWS: \(parts.count) parts") }
    var text = String(parts[index]).replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
    while text.count % 4 != 0 { text += "=" }
    guard let data = Data(base64Encoded: text),
          let object = try JSONSerialization.jsonObject(with: data) as? [String: Any] else {
        throw TestFailure(description: "JWT part \(index) is not a JSON object")
    }
    return object
}

/// The `cnf.jkt` of an access token, or nil when it has none.
func cnfJkt(_ token: String?) throws -> String? {
    guard let token else { return nil }
    return (try jwtPart(token, 1)["cnf"] as? [String: Any])?["jkt"] as? String
}

/// The RFC 7638 thumbprint of a P-256 JWK: SHA-256 of its required members in order.
func jwkThumbprint(_ jwk: Any?) throws -> String {
    guard let jwk = jwk as? [String: Any], let x = jwk["x"] as? String, let y = jwk["y"] as? String,
          jwk["kty"] as? String == "EC", jwk["crv"] as? String == "P-256", jwk["d"] == nil else {
        throw TestFailure(description: "not a public P-256 JWK")
    }
    return base64url(Data(sha256(Array(#"{"crv":"P-256","kty":"EC","x":"\#(x)","y":"\#(y)"}"#.utf8))))
}
