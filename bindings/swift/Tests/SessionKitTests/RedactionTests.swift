// No string form of a type that holds a secret shows it (#12, item 14).
import Foundation
import SessionKit
import XCTest

final class RedactionTests: XCTestCase {
    func testStringFormsNeverShowSecrets() {
        let secrets = ["hunter2-password", String(repeating: "k", count: 64), "eyJhbGciOiJIUzI1NiJ9.e30.sig", "{\"s\":1}"]
        let key = Data(repeating: 7, count: 32)
        let objects: [Any] = [
            Credentials.emailPassword(email: "ada@example.com", password: secrets[0]),
            Credentials.apiKey(key: secrets[1]),
            Credentials.jwt(token: secrets[2]),
            Credentials.function(payloadJson: secrets[3]),
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
    }
}
