// Test helpers: a sessionkit-server process per test, its admin API over URLSession, HS256 JWTs
// (HMAC-SHA256 written out here: CryptoKit is absent on Linux), and polling for callbacks.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest
@testable import SessionKit

let appId = "swift-app"
let jwtKey = "swift-custom-token-key"
private let adminPublic = "swift-admin-public"
private let adminPrivate = "swift-admin-private"

struct TestFailure: Error, CustomStringConvertible { let description: String }

final class TestServer {
    let baseUrl: String
    private let process: Process
    private let dir: URL
    private var adminToken: String?

    static func serverBin() throws -> String {
        let env = ProcessInfo.processInfo.environment
        if let bin = env["SESSIONKIT_SERVER_BIN"], !bin.isEmpty { return bin }
        // Tests/SessionKitTests/TestServer.swift -> the repository root, five levels up.
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent()
        return repo.appendingPathComponent("target/debug/sessionkit-server").path
    }

    /// Starts the server on a free loopback port with a fresh data dir; lifetimes in seconds.
    /// `extraProviders`: more `[app.providers.*]` tables for the app (a TestIssuer's);
    /// `rateLimits`: the `[rate_limits]` table inline (off unless given); `dpop`: the app's
    /// DPoP setting (#29: "off", "optional" or "required"; the server's default, off, unless given).
    init(access: Int = 1800, refresh: Int = 86400, extraProviders: String = "",
         rateLimits: String = "{ enabled = false }", dpop: String? = nil) throws {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("sessionkit-swift-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let config = dir.appendingPathComponent("server.toml")
        try """
        listen = "127.0.0.1:0"
        data_dir = "\(dir.appendingPathComponent("data").path)"
        test_clock = true
        rate_limits = \(rateLimits)

        [admin]
        public_key = "\(adminPublic)"
        private_key = "\(adminPrivate)"

        [[app]]
        id = "\(appId)"
        access_token_lifetime_secs = \(access)
        refresh_token_lifetime_secs = \(refresh)
        \(dpop.map { "dpop = \"\($0)\"" } ?? "")

        [app.providers.anon-user]
        [app.providers.local-userpass]
        auto_confirm = true
        reset_function = "success"
        allow_insecure_reset_function = true
        [app.providers.api-key]
        [app.providers.custom-token]
        algorithm = "HS256"
        key = "\(jwtKey)"
        [app.providers.custom-function]
        id_field = "username"
        \(extraProviders)
        """.write(to: config, atomically: true, encoding: .utf8)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: try TestServer.serverBin())
        process.arguments = ["--config", config.path, "--listen", "127.0.0.1:0"]
        let stdout = Pipe()
        process.standardOutput = stdout
        process.standardError = FileHandle.nullDevice
        try process.run()
        // The first stdout line: "listening on http://IP:PORT".
        var line = Data()
        while true {
            let byte = stdout.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty || byte == Data([0x0A]) { break }
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self)
        let prefix = "listening on "
        guard text.hasPrefix(prefix) else {
            process.terminate()
            throw TestFailure(description: "server did not start (first line: \(text))")
        }
        self.dir = dir
        self.process = process
        baseUrl = String(text.dropFirst(prefix.count)).trimmingCharacters(in: .whitespaces)
    }

    func stop() {
        process.terminate() // SIGTERM: graceful stop
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: dir)
    }

    func config(storage: StorageConfig = .inMemory, logger: Logger? = nil, requestTimeoutMs: Int64 = 10_000,
                dpop: Bool = false, dpopSigner: DpopSigner? = nil) -> AppConfig {
        AppConfig(appId: appId, baseUrl: baseUrl, storage: storage, requestTimeoutMs: requestTimeoutMs, logger: logger,
                  dpop: dpop, dpopSigner: dpopSigner)
    }

    func app(storage: StorageConfig = .inMemory, logger: Logger? = nil) throws -> App {
        try App(config: config(storage: storage, logger: logger))
    }

    /// One HTTP call; the status and the body text.
    func http(_ method: String, _ url: String, body: String? = nil, token: String? = nil) async throws -> (Int, String) {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.timeoutInterval = 10
        if let body {
            request.httpBody = Data(body.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        return try await withCheckedThrowingContinuation { continuation in
            URLSession.shared.dataTask(with: request) { data, response, error in
                if let error { return continuation.resume(throwing: error) }
                let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                continuation.resume(returning: (status, String(decoding: data ?? Data(), as: UTF8.self)))
            }.resume()
        }
    }

    private func admin() async throws -> String {
        if let adminToken { return adminToken }
        let (status, body) = try await http(
            "POST", "\(baseUrl)/api/admin/v3.0/auth/providers/mongodb-cloud/login",
            body: #"{"username":"\#(adminPublic)","apiKey":"\#(adminPrivate)"}"#)
        guard status == 200 else { throw TestFailure(description: "admin login: \(status) \(body)") }
        let token = try jsonString(body, "access_token")
        adminToken = token
        return token
    }

    /// A call to this app's admin API (`path` below `/groups/g/apps/{app}`).
    func admin(_ method: String, _ path: String, body: String? = nil) async throws -> (Int, String) {
        try await http(method, "\(baseUrl)/api/admin/v3.0/groups/swift-group/apps/\(appId)\(path)",
                       body: body, token: try await admin())
    }

    func refreshCount() async throws -> Int {
        let (status, body) = try await admin("GET", "/metrics")
        guard status == 200 else { throw TestFailure(description: "metrics: \(status) \(body)") }
        guard let range = body.range(of: #""refresh"\s*:\s*[0-9]+"#, options: .regularExpression) else { return 0 }
        return Int(body[range].split(separator: ":").last!.trimmingCharacters(in: .whitespaces))!
    }

    func revokeSessions(_ userId: String) async throws {
        let (status, body) = try await admin("PUT", "/users/\(userId)/logout")
        guard status == 204 else { throw TestFailure(description: "revoke: \(status) \(body)") }
    }

    func disableUser(_ userId: String) async throws {
        let (status, body) = try await admin("PUT", "/users/\(userId)/disable")
        guard status == 204 else { throw TestFailure(description: "disable: \(status) \(body)") }
    }

    /// Moves the server clock forward, so tokens expire without sleeping.
    func advanceClock(_ secs: Int) async throws {
        let (status, body) = try await http("POST", "\(baseUrl)/api/admin/v3.0/test/clock",
                                            body: #"{"advance_secs":\#(secs)}"#, token: try await admin())
        guard status == 200 else { throw TestFailure(description: "clock: \(status) \(body)") }
        // The admin token ages with the clock too: the next admin call logs in again.
        adminToken = nil
    }
}

/// Runs `body` against a fresh server, stopped afterwards; `dpop` as `TestServer`'s.
func withServer(access: Int = 1800, refresh: Int = 86400, dpop: String? = nil,
                _ body: (TestServer) async throws -> Void) async throws {
    let server = try TestServer(access: access, refresh: refresh, dpop: dpop)
    defer { server.stop() }
    try await body(server)
}

/// The string value of `"key": "value"` in a JSON text (tests only).
func jsonString(_ json: String, _ key: String) throws -> String {
    let object = try JSONSerialization.jsonObject(with: Data(json.utf8))
    guard let dict = object as? [String: Any], let value = dict[key] as? String else {
        throw TestFailure(description: "no \"\(key)\" in \(json)")
    }
    return value
}

func uniqueEmail() -> String { "sw-\(UUID().uuidString.prefix(12).lowercased())@example.com" }

func nowSecs() -> Int { Int(Date().timeIntervalSince1970) }

/// Callbacks arrive on SDK threads: poll briefly instead of sleeping a fixed time.
func waitFor(timeout: TimeInterval = 5, _ what: String = "a callback", _ predicate: () -> Bool) async throws {
    let deadline = Date().addingTimeInterval(timeout)
    while !predicate() {
        if Date() > deadline { throw TestFailure(description: "timed out waiting for \(what)") }
        try await Task.sleep(nanoseconds: 5_000_000)
    }
}

func sleepMs(_ ms: UInt64) async throws { try await Task.sleep(nanoseconds: ms * 1_000_000) }

extension App {
    func emailUser(_ email: String = uniqueEmail(), password: String = "correct-horse") async throws -> User {
        try await emailPasswordAuth().registerUser(email: email, password: password)
        return try await logIn(credentials: .emailPassword(email: email, password: password))
    }
}

/// Asserts that `body` throws an error `matches` accepts; returns it.
@discardableResult
func assertThrowsAsync<T>(_ body: () async throws -> T, file: StaticString = #filePath, line: UInt = #line,
                          _ matches: (Error) -> Bool) async -> Error? {
    do {
        _ = try await body()
        XCTFail("no error thrown", file: file, line: line)
        return nil
    } catch {
        XCTAssertTrue(matches(error), "unexpected error: \(error)", file: file, line: line)
        return error
    }
}

/// Records every event it is given, from whatever SDK thread delivers it.
final class Recorder: AuthEventListener, @unchecked Sendable {
    private let lock = NSLock()
    private var _events: [AuthEvent] = []
    var events: [AuthEvent] { lock.lock(); defer { lock.unlock() }; return _events }
    var kinds: [AuthEventKind] { events.map(\.kind) }
    func onEvent(event: AuthEvent) throws { lock.lock(); _events.append(event); lock.unlock() }
}

/// A thread-safe box for values written from SDK threads.
final class Locked<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    var get: T { lock.lock(); defer { lock.unlock() }; return value }
    func mutate(_ body: (inout T) -> Void) { lock.lock(); body(&value); lock.unlock() }
}

// MARK: - HS256

/// An HS256 JWT, as the app's own identity provider would sign it.
func signJwt(_ claimsJson: String, key: String = jwtKey) -> String {
    let header = base64url(Data(#"{"alg":"HS256","typ":"JWT"}"#.utf8))
    let payload = base64url(Data(claimsJson.utf8))
    let signature = hmacSha256(key: Array(key.utf8), message: Array("\(header).\(payload)".utf8))
    return "\(header).\(payload).\(base64url(Data(signature)))"
}

func base64url(_ data: Data) -> String {
    data.base64EncodedString()
        .replacingOccurrences(of: "+", with: "-")
        .replacingOccurrences(of: "/", with: "_")
        .replacingOccurrences(of: "=", with: "")
}

/// HMAC (RFC 2104) over SHA-256, block size 64.
func hmacSha256(key: [UInt8], message: [UInt8]) -> [UInt8] {
    var k = key.count > 64 ? sha256(key) : key
    k += [UInt8](repeating: 0, count: 64 - k.count)
    let inner = sha256(k.map { $0 ^ 0x36 } + message)
    return sha256(k.map { $0 ^ 0x5c } + inner)
}

/// SHA-256 (FIPS 180-4).
func sha256(_ message: [UInt8]) -> [UInt8] {
    let k: [UInt32] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
        0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
        0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
        0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
        0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
        0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
        0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
    ]
    var h: [UInt32] = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]
    var data = message
    let bitLength = UInt64(message.count) * 8
    data.append(0x80)
    while data.count % 64 != 56 { data.append(0) }
    for i in (0..<8).reversed() { data.append(UInt8(truncatingIfNeeded: bitLength >> (UInt64(i) * 8))) }
    func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
    var w = [UInt32](repeating: 0, count: 64)
    for chunk in stride(from: 0, to: data.count, by: 64) {
        for t in 0..<16 {
            let b = chunk + t * 4
            w[t] = UInt32(data[b]) << 24 | UInt32(data[b + 1]) << 16 | UInt32(data[b + 2]) << 8 | UInt32(data[b + 3])
        }
        for t in 16..<64 {
            let s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
            let s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
            w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
        }
        var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7]
        for t in 0..<64 {
            let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
            let ch = (e & f) ^ (~e & g)
            let t1 = hh &+ s1 &+ ch &+ k[t] &+ w[t]
            let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
            let maj = (a & b) ^ (a & c) ^ (b & c)
            let t2 = s0 &+ maj
            hh = g; g = f; f = e; e = d &+ t1; d = c; c = b; b = a; a = t1 &+ t2
        }
        h[0] = h[0] &+ a; h[1] = h[1] &+ b; h[2] = h[2] &+ c; h[3] = h[3] &+ d
        h[4] = h[4] &+ e; h[5] = h[5] &+ f; h[6] = h[6] &+ g; h[7] = h[7] &+ hh
    }
    return h.flatMap { v in (0..<4).reversed().map { UInt8(truncatingIfNeeded: v >> (UInt32($0) * 8)) } }
}
