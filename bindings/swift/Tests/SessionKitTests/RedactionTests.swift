// No string form of a type that holds a secret shows it (#12, item 14).
import Foundation
import SessionKit
import XCTest

final class RedactionTests: XCTestCase {
    func testStringFormsNeverShowSecrets() {
        let secrets = ["hunter2-password", String(repeating: "k", count: 64), "eyJhbGciOiJIUzI1NiJ9.e30.sig", "{\"s\":1}",
                       "4/0AX4XfWh-google-auth-code", "EAAGm0PX4ZCps-facebook-token", "90210417"]
        let key = Data(repeating: 7, count: 32)
        let objects: [Any] = [
            Credentials.emailPassword(email: "ada@example.com", password: secrets[0]),
            // The email one-time code (#23).
            Credentials.emailOtp(email: "ada@example.com", code: secrets[6]),
            Credentials.apiKey(key: secrets[1]),
            Credentials.jwt(token: secrets[2]),
            Credentials.function(payloadJson: secrets[3]),
            // Social sign-in (#14): ID tokens, an auth code and a Facebook access token.
            Credentials.googleIdToken(idToken: secrets[2]),
            Credentials.googleAuthCode(authCode: secrets[4]),
            Credentials.appleIdToken(idToken: secrets[2]),
            Credentials.facebookAccessToken(accessToken: secrets[5]),
            Credentials.oidcIdToken(provider: "corp", idToken: secrets[2]),
            ApiKey(id: "abc", key: secrets[1], name: "ci", disabled: false),
            StorageConfig.file(dir: "/tmp/s", encryptionKey: key),
            AppConfig(appId: "a", baseUrl: "http://127.0.0.1:1", storage: .file(dir: "/tmp/s", encryptionKey: key)),
        ]
        for o in objects {
            for text in [String(describing: o), "\(o)", String(reflecting: o)] {
                for s in secrets + [key.base64EncodedString(), "\(key as NSData)"] {
                    XCTAssertFalse(text.contains(s), "\(type(of: o)) shows a secret: \(text)")
                }
                XCTAssertTrue(text.contains("<redacted>"), text)
            }
        }
        XCTAssertTrue("\(objects[0])".contains("ada@example.com"))
        XCTAssertEqual(String(reflecting: objects[1]), "Credentials.emailOtp(email: ada@example.com, code: <redacted>)")
    }

    /// Each social credential reads as its Swift spelling, the secret replaced; the OpenID
    /// Connect provider's name is not a secret and stays, so a log says which issuer it was.
    func testSocialCredentialDescriptions() {
        let token = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJnLTEifQ.c2ln"
        XCTAssertEqual("\(Credentials.googleIdToken(idToken: token))", "Credentials.googleIdToken(idToken: <redacted>)")
        XCTAssertEqual("\(Credentials.googleAuthCode(authCode: token))", "Credentials.googleAuthCode(authCode: <redacted>)")
        XCTAssertEqual("\(Credentials.appleIdToken(idToken: token))", "Credentials.appleIdToken(idToken: <redacted>)")
        XCTAssertEqual(String(reflecting: Credentials.facebookAccessToken(accessToken: token)),
                       "Credentials.facebookAccessToken(accessToken: <redacted>)")
        XCTAssertEqual(String(describing: Credentials.oidcIdToken(provider: "corp", idToken: token)),
                       "Credentials.oidcIdToken(provider: corp, idToken: <redacted>)")
    }
}
