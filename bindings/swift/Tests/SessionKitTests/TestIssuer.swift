// The loopback test issuer (tests/src/issuer.rs, the `test_issuer` binary of sessionkit-tests):
// a stand-in for Google, Apple, Facebook and an OpenID Connect issuer, so that social sign-in is
// tested without the internet (#14). The conformance runner and SocialTests share this helper.
// The issuer mints every token itself, so nothing here signs anything.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// One `test_issuer` process, started for one scenario or test and stopped after it.
final class TestIssuer {
    /// Its base URL, `http://127.0.0.1:PORT`.
    let url: String
    private let process: Process
    private let stdin: Pipe

    /// SESSIONKIT_TEST_ISSUER_BIN, else `$CARGO_TARGET_DIR/debug/test_issuer`, else the
    /// repository's `target/debug/test_issuer` (scripts/test-swift sets the first to its staged
    /// copy, since others rebuild target/debug meanwhile).
    static func binary() -> String {
        let env = ProcessInfo.processInfo.environment
        if let bin = env["SESSIONKIT_TEST_ISSUER_BIN"], !bin.isEmpty { return bin }
        if let target = env["CARGO_TARGET_DIR"], !target.isEmpty {
            let dir = target.hasPrefix("/") ? URL(fileURLWithPath: target)
                : testsRepoRoot.appendingPathComponent(target)
            return dir.appendingPathComponent("debug/test_issuer").path
        }
        return testsRepoRoot.appendingPathComponent("target/debug/test_issuer").path
    }

    /// Starts it on a free loopback port; returns once it printed `listening on URL`.
    init(binary: String = TestIssuer.binary()) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        // It serves until its stdin closes, so it cannot outlive this process even if a test
        // crashes before stop().
        let stdin = Pipe()
        let stdout = Pipe()
        process.standardInput = stdin
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw TestFailure(description: "the test issuer did not start (\(binary)): \(error)")
        }
        var line = Data()
        while true {
            let byte = stdout.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty || byte == Data([0x0A]) { break }
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        let prefix = "listening on "
        self.process = process
        self.stdin = stdin
        url = String(text.dropFirst(prefix.count))
        guard text.hasPrefix(prefix) else {
            stop()
            throw TestFailure(description: "the test issuer did not start (\(binary)): \(text)")
        }
        // Nothing else is expected on stdout, but a full pipe must never block it.
        let reader = stdout.fileHandleForReading
        Thread.detachNewThread { _ = reader.readDataToEndOfFile() }
    }

    /// The server config that trusts this issuer: provider tables to append to an `[[app]]`.
    func providersToml() async throws -> String {
        let (status, body) = try await call("GET", "/control/providers.toml", body: nil)
        guard status == 200 else { throw TestFailure(description: "providers.toml: \(status) \(body)") }
        return body
    }

    /// A social credential for a spec (`kind`: google_id_token, google_auth_code,
    /// apple_id_token, facebook_access_token, oidc_id_token; `specJson`: the JSON object that
    /// tests/src/issuer.rs documents at `credential`): the token, or the auth code. Errors
    /// carry the issuer's answer, never the token.
    func credential(kind: String, specJson: String) async throws -> String {
        let (status, body) = try await call("POST", "/control/credential",
                                            body: "{\"kind\":\(jsonQuote(kind)),\"spec\":\(specJson)}")
        guard status == 200 else { throw TestFailure(description: "credential \(kind): \(status) \(body)") }
        return try jsonString(body, "token")
    }

    /// Closes its stdin, which ends it; killed if it has not gone within 5 s.
    func stop() {
        try? stdin.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { Thread.sleep(forTimeInterval: 0.01) }
        if process.isRunning { process.terminate() }
        process.waitUntilExit()
    }

    private func call(_ method: String, _ path: String, body: String?) async throws -> (Int, String) {
        var request = URLRequest(url: URL(string: url + path)!)
        request.httpMethod = method
        request.timeoutInterval = 10
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        return try await withCheckedThrowingContinuation { continuation in
            URLSession.shared.dataTask(with: request) { data, response, error in
                if let error { return continuation.resume(throwing: error) }
                let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                continuation.resume(returning: (status, String(decoding: data ?? Data(), as: UTF8.self)))
            }.resume()
        }
    }
}

/// The repository root: Tests/SessionKitTests/TestIssuer.swift, five levels up.
let testsRepoRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()
