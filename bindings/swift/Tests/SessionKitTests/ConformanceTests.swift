// The Swift conformance runner: every scenario of tests/conformance/scenarios through the Swift
// binding, each against a fresh sessionkit-server (or the server given below), written as
// target/conformance/swift.json for tests/conformance/report.py. A translation of
// tests/conformance/runners/python_runner.py; the scenario format is in tests/conformance/README.md.
//
// Scenarios with "server": {"social": true} also get the loopback test issuer (TestIssuer.swift,
// SESSIONKIT_TEST_ISSUER_BIN): its provider tables join the server's config, and it turns each
// social credential spec into a token, so this runner signs nothing itself (#14). Scenarios
// with "server": {"mail": true} get a loopback SMTP relay (MailRelay.swift,
// SESSIONKIT_TEST_SMTP_PYTHON) that the server sends its mail through.
//
// It is an XCTest (`swift test --filter ConformanceTests`), so the other runners' command-line
// options are environment variables here:
//   SESSIONKIT_CONFORMANCE_BASE_URL / _APP_ID   (--base-url / --app-id, together)
//   SESSIONKIT_CONFORMANCE_ADMIN=PUBLIC:PRIVATE (--admin)
//   SESSIONKIT_CONFORMANCE_JWT_KEY              (--jwt-key)
//   SESSIONKIT_CONFORMANCE_FILTER               (--filter)
//   SESSIONKIT_CONFORMANCE_SCENARIOS / _OUT     (--scenarios / --out)
//   SESSIONKIT_SERVER_BIN                       (--server-bin)
//   SESSIONKIT_TEST_ISSUER_BIN                  (the test issuer, as the other runners)
//   SESSIONKIT_TEST_SMTP_PYTHON                 (the SMTP relay's Python, as the other runners)
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
import XCTest
@testable import SessionKit

private let confAppId = "sk-test"
private let confJwtKey = "test-jwt-signing-key-0123456789"
private let confAdmin = (pub: "test-admin-public", priv: "test-admin-private")
/// `"server": {"email_otp": true}`: one-time codes by mail, living 300 s of the server's clock.
private let confEmailOtpToml = "[app.providers.email-otp]\ncode_lifetime_secs = 300\n"
/// How long `read_mail` waits for a mail, in seconds.
private let confMailWaitSecs = 15.0

/// The repository root: Tests/SessionKitTests/ConformanceTests.swift, five levels up.
private let repoRoot: URL = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()

/// Cargo's target dir, as scripts/test-all sees it.
private func confTargetDir() -> URL {
    let t = ProcessInfo.processInfo.environment["CARGO_TARGET_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "target"
    return t.hasPrefix("/") ? URL(fileURLWithPath: t) : repoRoot.appendingPathComponent(t)
}

// MARK: - JSON that keeps number literals and key order

/// A JSON value. Numbers keep their literal text, so `3` stays `3` and `1.5` stays `1.5`, as in
/// the other runners; objects keep their key order.
indirect enum CJSON {
    case null
    case bool(Bool)
    case number(String)
    case string(String)
    case array([CJSON])
    case object(CObject)

    subscript(key: String) -> CJSON? {
        if case let .object(o) = self { return o[key] }
        return nil
    }
    var stringValue: String? { if case let .string(s) = self { return s }; return nil }
    var objectValue: CObject? { if case let .object(o) = self { return o }; return nil }
    var arrayValue: [CJSON]? { if case let .array(a) = self { return a }; return nil }
    var boolValue: Bool? { if case let .bool(b) = self { return b }; return nil }
    var isNull: Bool { if case .null = self { return true }; return false }

    /// Compact text (request bodies, messages).
    var text: String { var out = ""; write(to: &out, indent: nil, level: 0); return out }
    /// Two-space indented text (the transcript file).
    var pretty: String { var out = ""; write(to: &out, indent: 2, level: 0); return out }

    private func write(to out: inout String, indent: Int?, level: Int) {
        func newline(_ l: Int) {
            if let indent { out += "\n" + String(repeating: " ", count: indent * l) }
        }
        switch self {
        case .null: out += "null"
        case let .bool(b): out += b ? "true" : "false"
        case let .number(n): out += n
        case let .string(s): out += jsonQuote(s)
        case let .array(items):
            if items.isEmpty { out += "[]"; return }
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                newline(level + 1)
                item.write(to: &out, indent: indent, level: level + 1)
            }
            newline(level)
            out += "]"
        case let .object(o):
            if o.keys.isEmpty { out += "{}"; return }
            out += "{"
            for (i, key) in o.keys.enumerated() {
                if i > 0 { out += "," }
                newline(level + 1)
                out += jsonQuote(key) + (indent == nil ? ":" : ": ")
                o.values[key]!.write(to: &out, indent: indent, level: level + 1)
            }
            newline(level)
            out += "}"
        }
    }

    static func str(_ s: String?) -> CJSON { s.map { CJSON.string($0) } ?? CJSON.null }
    static func int(_ n: Int) -> CJSON { .number(String(n)) }
}

/// An object with its keys in insertion order.
struct CObject {
    private(set) var keys: [String] = []
    private(set) var values: [String: CJSON] = [:]

    init() {}
    init(_ pairs: [(String, CJSON)]) { for (k, v) in pairs { self[k] = v } }

    subscript(key: String) -> CJSON? {
        get { values[key] }
        set {
            if let newValue {
                if values[key] == nil { keys.append(key) }
                values[key] = newValue
            } else if values.removeValue(forKey: key) != nil {
                keys.removeAll { $0 == key }
            }
        }
    }
    func has(_ key: String) -> Bool { values[key] != nil }
    var isEmpty: Bool { keys.isEmpty }
}

func jsonQuote(_ s: String) -> String {
    var out = "\""
    for scalar in s.unicodeScalars {
        switch scalar {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case "\n": out += "\\n"
        case "\r": out += "\\r"
        case "\t": out += "\\t"
        default:
            if scalar.value < 0x20 {
                out += String(format: "\\u%04x", scalar.value)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
    }
    return out + "\""
}

struct JSONSyntaxError: Error, CustomStringConvertible { let description: String }

/// A strict JSON parser (RFC 8259) over UTF-8 bytes.
struct CJSONParser {
    private let b: [UInt8]
    private var i = 0

    static func parse(_ text: String) throws -> CJSON {
        var p = CJSONParser(bytes: Array(text.utf8))
        p.skipSpace()
        let value = try p.value()
        p.skipSpace()
        guard p.i == p.b.count else { throw p.fail("trailing characters") }
        return value
    }

    private init(bytes: [UInt8]) { b = bytes }

    private func fail(_ what: String) -> JSONSyntaxError { JSONSyntaxError(description: "JSON: \(what) at byte \(i)") }

    private mutating func skipSpace() {
        while i < b.count, b[i] == 0x20 || b[i] == 0x09 || b[i] == 0x0A || b[i] == 0x0D { i += 1 }
    }

    private mutating func expect(_ literal: String) throws {
        for byte in literal.utf8 {
            guard i < b.count, b[i] == byte else { throw fail("expected \(literal)") }
            i += 1
        }
    }

    private mutating func value() throws -> CJSON {
        guard i < b.count else { throw fail("unexpected end") }
        switch b[i] {
        case UInt8(ascii: "{"):
            i += 1
            var o = CObject()
            skipSpace()
            if i < b.count, b[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
            while true {
                skipSpace()
                guard i < b.count, b[i] == UInt8(ascii: "\"") else { throw fail("expected a key") }
                let key = try string()
                skipSpace()
                try expect(":")
                skipSpace()
                o[key] = try value()
                skipSpace()
                guard i < b.count else { throw fail("unexpected end") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "}") { i += 1; return .object(o) }
                throw fail("expected , or }")
            }
        case UInt8(ascii: "["):
            i += 1
            var items: [CJSON] = []
            skipSpace()
            if i < b.count, b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
            while true {
                skipSpace()
                items.append(try value())
                skipSpace()
                guard i < b.count else { throw fail("unexpected end") }
                if b[i] == UInt8(ascii: ",") { i += 1; continue }
                if b[i] == UInt8(ascii: "]") { i += 1; return .array(items) }
                throw fail("expected , or ]")
            }
        case UInt8(ascii: "\""):
            return .string(try string())
        case UInt8(ascii: "t"):
            try expect("true"); return .bool(true)
        case UInt8(ascii: "f"):
            try expect("false"); return .bool(false)
        case UInt8(ascii: "n"):
            try expect("null"); return .null
        default:
            return .number(try number())
        }
    }

    private mutating func digits() -> Int {
        let start = i
        while i < b.count, b[i] >= UInt8(ascii: "0"), b[i] <= UInt8(ascii: "9") { i += 1 }
        return i - start
    }

    private mutating func number() throws -> String {
        let start = i
        if i < b.count, b[i] == UInt8(ascii: "-") { i += 1 }
        let intStart = i
        let intDigits = digits()
        guard intDigits > 0 else { throw fail("bad number") }
        if intDigits > 1, b[intStart] == UInt8(ascii: "0") { throw fail("leading zero") }
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            guard digits() > 0 else { throw fail("bad fraction") }
        }
        if i < b.count, b[i] == UInt8(ascii: "e") || b[i] == UInt8(ascii: "E") {
            i += 1
            if i < b.count, b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") { i += 1 }
            guard digits() > 0 else { throw fail("bad exponent") }
        }
        return String(decoding: b[start..<i], as: UTF8.self)
    }

    private mutating func hex4() throws -> UInt32 {
        guard i + 4 <= b.count, let v = UInt32(String(decoding: b[i..<i + 4], as: UTF8.self), radix: 16) else {
            throw fail("bad \\u escape")
        }
        i += 4
        return v
    }

    private mutating func string() throws -> String {
        i += 1 // the opening quote
        var bytes: [UInt8] = []
        while true {
            guard i < b.count else { throw fail("unterminated string") }
            let c = b[i]
            i += 1
            if c == UInt8(ascii: "\"") { break }
            if c < 0x20 { throw fail("control character in a string") }
            if c != UInt8(ascii: "\\") { bytes.append(c); continue }
            guard i < b.count else { throw fail("unterminated escape") }
            let e = b[i]
            i += 1
            switch e {
            case UInt8(ascii: "\""): bytes.append(0x22)
            case UInt8(ascii: "\\"): bytes.append(0x5C)
            case UInt8(ascii: "/"): bytes.append(0x2F)
            case UInt8(ascii: "b"): bytes.append(0x08)
            case UInt8(ascii: "f"): bytes.append(0x0C)
            case UInt8(ascii: "n"): bytes.append(0x0A)
            case UInt8(ascii: "r"): bytes.append(0x0D)
            case UInt8(ascii: "t"): bytes.append(0x09)
            case UInt8(ascii: "u"):
                var code = try hex4()
                if (0xD800..<0xDC00).contains(code), i + 6 <= b.count,
                   b[i] == UInt8(ascii: "\\"), b[i + 1] == UInt8(ascii: "u") {
                    let save = i
                    i += 2
                    let low = try hex4()
                    if (0xDC00..<0xE000).contains(low) {
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else {
                        i = save
                    }
                }
                let scalar = Unicode.Scalar(code) ?? "\u{FFFD}"
                bytes.append(contentsOf: Array(String(Character(scalar)).utf8))
            default:
                throw fail("bad escape")
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

func parseJSONOrNil(_ text: String) -> CJSON? { try? CJSONParser.parse(text) }

/// JSON equality as the Python runner's `==` sees it: numbers by value (1 == 1.0), object keys in
/// any order. Booleans are not numbers here.
func jsonEquals(_ a: CJSON, _ b: CJSON) -> Bool {
    switch (a, b) {
    case (.null, .null): return true
    case let (.bool(x), .bool(y)): return x == y
    case let (.string(x), .string(y)): return x == y
    case let (.number(x), .number(y)):
        if let dx = Decimal(string: x, locale: Locale(identifier: "en_US_POSIX")),
           let dy = Decimal(string: y, locale: Locale(identifier: "en_US_POSIX")) { return dx == dy }
        return x == y
    case let (.array(x), .array(y)):
        return x.count == y.count && zip(x, y).allSatisfy { jsonEquals($0, $1) }
    case let (.object(x), .object(y)):
        return Set(x.keys) == Set(y.keys) && x.keys.allSatisfy { jsonEquals(x[$0]!, y[$0]!) }
    default: return false
    }
}

// MARK: - names as the Rust runner writes them

/// The `AppError` variant's Rust name, and its code / session-error kind.
func normaliseError(_ e: AppError) -> CJSON {
    var out = CObject()
    switch e {
    case .Network: out["type"] = .string("Network")
    case .Timeout: out["type"] = .string("Timeout")
    case let .Service(code, _, _, _, _):
        out["type"] = .string("Service")
        out["code"] = .string(code)
    case let .SessionExpired(kind, _):
        out["type"] = .string("SessionExpired")
        out["kind"] = .string(kindName(kind))
    case .ClientUserNotFound: out["type"] = .string("ClientUserNotFound")
    case .ClientUserNotLoggedIn: out["type"] = .string("ClientUserNotLoggedIn")
    case .ClientUserAlreadyNamed: out["type"] = .string("ClientUserAlreadyNamed")
    case .BadToken: out["type"] = .string("BadToken")
    case .MalformedResponse: out["type"] = .string("MalformedResponse")
    case .Storage: out["type"] = .string("Storage")
    case .InvalidArgument: out["type"] = .string("InvalidArgument")
    case .InsecureUrl: out["type"] = .string("InsecureUrl")
    case .AppClosed: out["type"] = .string("AppClosed")
    case .Internal: out["type"] = .string("Internal")
    }
    return .object(out)
}

func kindName(_ k: SessionErrorKind) -> String {
    switch k {
    case .tokenExpired: return "TokenExpired"
    case .sessionRevoked: return "SessionRevoked"
    case .userDisabled: return "UserDisabled"
    case .userDeleted: return "UserDeleted"
    }
}

func eventName(_ k: AuthEventKind) -> String {
    switch k {
    case .initialState: return "InitialState"
    case .signedIn: return "SignedIn"
    case .tokenRefreshed: return "TokenRefreshed"
    case .signedOut: return "SignedOut"
    case .sessionExpired: return "SessionExpired"
    case .refreshFailed: return "RefreshFailed"
    case .userRemoved: return "UserRemoved"
    case .userDeleted: return "UserDeleted"
    case .currentUserChanged: return "CurrentUserChanged"
    case .profileUpdated: return "ProfileUpdated"
    }
}

func stateName(_ s: UserState) -> String {
    switch s {
    case .loggedIn: return "LoggedIn"
    case .loggedOut: return "LoggedOut"
    case .removed: return "Removed"
    }
}

// MARK: - the local server

/// The scenario is wrong (unknown label, bad step): the scenario fails.
struct ScriptError: Error, CustomStringConvertible { let description: String }

/// A sessionkit-server process for one scenario.
final class ConformanceServer {
    let baseUrl: String
    private let process: Process
    private let dir: URL

    /// `extraProviders`: provider tables appended to the app's (the test issuer's); `relay`:
    /// the SMTP relay it sends its mail through (`"mail": true`).
    init(binary: String, options: CObject, extraProviders: String = "", relay: MailRelay? = nil) throws {
        let dir = FileManager.default.temporaryDirectory
            .appendingPathComponent("sk-conformance-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        func opt(_ key: String, _ fallback: String) -> String {
            switch options[key] {
            case let .number(n)?: return n
            case let .string(s)?: return s
            case let .bool(b)?: return b ? "true" : "false"
            default: return fallback
            }
        }
        let mailLinks = relay == nil ? "" : "confirm_url = \"\(confirmUrl)\"\nreset_url = \"\(resetUrl)\""
        let emailOtp = options["email_otp"]?.boolValue == true ? confEmailOtpToml : ""
        let config = """
        listen = "127.0.0.1:0"
        data_dir = "\(dir.path)"
        test_clock = true
        rate_limits = { enabled = false }

        [admin]
        public_key = "\(confAdmin.pub)"
        private_key = "\(confAdmin.priv)"

        [[app]]
        id = "\(confAppId)"
        access_token_lifetime_secs = \(opt("access_token_lifetime_secs", "1800"))
        refresh_token_lifetime_secs = \(opt("refresh_token_lifetime_secs", "3600"))
        refresh_token_rotation = \(opt("refresh_token_rotation", "false").lowercased())
        dpop = "\(opt("dpop", "optional"))"

        [app.providers.anon-user]
        [app.providers.local-userpass]
        auto_confirm = \(opt("auto_confirm", "true").lowercased())
        reset_function = "\(opt("reset_function", "pending"))"
        allow_insecure_reset_function = true
        \(mailLinks)
        [app.providers.api-key]
        [app.providers.custom-token]
        algorithm = "HS256"
        key = "\(confJwtKey)"
        [app.providers.custom-function]
        id_field = "username"
        \(extraProviders)
        \(emailOtp)
        \(relay?.toml() ?? "")

        """
        let path = dir.appendingPathComponent("server.toml")
        try config.write(to: path, atomically: true, encoding: .utf8)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.arguments = ["--config", path.path, "--listen", "127.0.0.1:0"]
        let stdout = Pipe()
        process.standardOutput = stdout
        // A file, not a pipe nobody reads; a failed start quotes it.
        let stderrPath = dir.appendingPathComponent("server.stderr")
        _ = FileManager.default.createFile(atPath: stderrPath.path, contents: nil)
        let stderr = try FileHandle(forWritingTo: stderrPath)
        defer { try? stderr.close() }
        process.standardError = stderr
        try process.run()
        var line = Data()
        while true {
            let byte = stdout.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty || byte == Data([0x0A]) { break }
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self).trimmingCharacters(in: .whitespaces)
        let prefix = "listening on "
        guard text.hasPrefix(prefix) else {
            process.terminate()
            process.waitUntilExit()
            let err = ((try? String(contentsOf: stderrPath, encoding: .utf8)) ?? "")
                .trimmingCharacters(in: .whitespacesAndNewlines).suffix(2000)
            try? FileManager.default.removeItem(at: dir)
            throw ScriptError(description: "the server did not start: \(text); stderr: \(err.isEmpty ? "(empty)" : String(err))")
        }
        // Keep draining stdout so the server never blocks on a full pipe.
        let reader = stdout.fileHandleForReading
        Thread.detachNewThread { _ = reader.readDataToEndOfFile() }
        self.process = process
        self.dir = dir
        baseUrl = String(text.dropFirst(prefix.count))
    }

    func stop() {
        process.terminate()
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: dir)
    }
}

// MARK: - the runner

final class ConformanceRecorder: AuthEventListener, @unchecked Sendable {
    private let lock = NSLock()
    private var events: [AuthEvent] = []
    func onEvent(event: AuthEvent) throws { lock.lock(); events.append(event); lock.unlock() }
    func take() -> [AuthEvent] {
        lock.lock(); defer { lock.unlock() }
        let out = events
        events = []
        return out
    }
}

/// The label of the scenario's first App among its devices (`open_device` adds others).
let confMainDevice = "main"
/// The device `open_process` names its App: a second process on the main device's store.
let confProcessDevice = "process"

/// Every device's session errors, in the order they were reported: (device, user id, kind).
final class ConformanceErrorSink: @unchecked Sendable {
    private let lock = NSLock()
    private var errors: [(String, String, String)] = []
    func add(_ device: String, _ userId: String, _ kind: String) {
        lock.lock(); errors.append((device, userId, kind)); lock.unlock()
    }
    func take() -> [(String, String, String)] {
        lock.lock(); defer { lock.unlock() }
        let out = errors
        errors = []
        return out
    }
}

/// Records each session error with the device whose App reported it.
final class ConformanceErrorHandler: SessionErrorHandler, @unchecked Sendable {
    private let sink: ConformanceErrorSink
    private let device: String
    init(_ sink: ConformanceErrorSink, device: String = confMainDevice) { self.sink = sink; self.device = device }
    func onSessionError(user: User, error: SessionError) throws { sink.add(device, user.id(), kindName(error.kind)) }
}

/// A listener of the scenario: its recorder, its subscription, and the device it listens on.
struct ConformanceListener {
    let recorder: ConformanceRecorder
    let subscription: Subscription
    let device: String
}

private var emailCounter = 0

final class ConformanceRunner {
    private let baseUrl: String
    private let appId: String
    private let admin: (pub: String, priv: String)?
    private let jwtKey: String
    private var adminToken: String?
    private let storageDir: URL?
    /// `"client": {"dpop": true}`: the main App (its restarts and processes) binds its sessions.
    private let dpop: Bool
    private let sessionErrors: ConformanceErrorSink
    private var app: App
    /// The devices `open_device` opened, by name; the scenario's first App is the main device.
    private var devices: [String: App] = [:]
    private var users: [String: User] = [:]
    /// Which device each user label belongs to.
    private var userDevice: [String: String] = [:]
    /// Labels per device, then user id: the same user on two devices has two labels.
    private var labels: [String: [String: String]] = [:]
    private var labelCount = 0
    /// The session ids of each label's last `sessions` list, in the server's order.
    private var lastSessions: [String: [String]] = [:]
    private var emails: [(name: String, email: String)] = []
    private var keys: [String: (id: String, key: String?)] = [:]
    private var listeners: [String: ConformanceListener] = [:]
    private var refreshBase = 0
    /// The scenario's test issuer, when it has `"server": {"social": true}`.
    private let issuer: TestIssuer?
    /// The scenario's SMTP relay, when it has `"server": {"mail": true}`.
    private let relay: MailRelay?
    /// Per address: how many of its mails `read_mail` has read, and the last one's text part.
    private var mailsRead: [String: Int] = [:]
    private var lastMail: [String: String] = [:]

    init(baseUrl: String, appId: String, admin: (pub: String, priv: String)?, jwtKey: String,
         fileStorage: Bool, dpop: Bool = false, issuer: TestIssuer? = nil, relay: MailRelay? = nil) async throws {
        self.issuer = issuer
        self.dpop = dpop
        self.relay = relay
        self.baseUrl = baseUrl
        self.appId = appId
        self.admin = admin
        self.jwtKey = jwtKey
        if fileStorage {
            let dir = FileManager.default.temporaryDirectory
                .appendingPathComponent("sk-conformance-client-\(UUID().uuidString)")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            storageDir = dir
        } else {
            storageDir = nil
        }
        let sink = ConformanceErrorSink()
        sessionErrors = sink
        app = try ConformanceRunner.newApp(appId: appId, baseUrl: baseUrl, storageDir: storageDir, dpop: dpop, sink: sink)
        if admin != nil { refreshBase = try await refreshCount() }
    }

    /// An App on the main device's store (in memory unless a file store is asked for):
    /// the main device itself, or (`device`) a second process of it.
    private static func newApp(appId: String, baseUrl: String, storageDir: URL?, dpop: Bool,
                               sink: ConformanceErrorSink, device: String = confMainDevice) throws -> App {
        let storage: StorageConfig = storageDir.map { .file(dir: $0.path, encryptionKey: nil) } ?? .inMemory
        let app = try App(config: AppConfig(appId: appId, baseUrl: baseUrl, storage: storage, requestTimeoutMs: 10_000,
                                            dpop: dpop))
        app.setSessionErrorHandler(handler: ConformanceErrorHandler(sink, device: device))
        return app
    }

    // MARK: helpers

    private func user(_ step: CObject, _ key: String = "user") throws -> User {
        let name = step[key]?.stringValue
        guard let name, let user = users[name] else {
            throw ScriptError(description: "unknown user label \(name.map { "'\($0)'" } ?? "None")")
        }
        return user
    }

    private func label(_ user: User, _ asName: String?, device: String = confMainDevice) -> String {
        let id = user.id()
        let label: String
        if let known = labels[device]?[id] {
            label = known
        } else {
            labelCount += 1
            label = asName ?? "user\(labelCount)"
            labels[device, default: [:]][id] = label
        }
        users[label] = user
        userDevice[label] = device
        if let asName {
            users[asName] = user
            userDevice[asName] = device
        }
        return label
    }

    private func labelOfId(_ userId: String?, device: String = confMainDevice) -> String? {
        guard let userId else { return nil }
        return labels[device]?[userId] ?? "?"
    }

    /// The App of the device named `name` (the main device when nil).
    private func deviceApp(_ name: String?) throws -> App {
        guard let name, name != confMainDevice else { return app }
        guard let other = devices[name] else {
            throw ScriptError(description: "unknown device '\(name)' (open_device first)")
        }
        return other
    }

    /// A second App on the same server and app: its own in-memory store, this `platform`, DPoP
    /// on when `dpop`.
    private func openDevice(_ name: String, platform: String, dpop: Bool) throws {
        if name == confMainDevice || devices[name] != nil {
            throw ScriptError(description: "device '\(name)' is already open")
        }
        let device = DeviceInfo(platform: platform, platformVersion: "1.0", deviceName: "\(platform) test device")
        let other = try App(config: AppConfig(appId: appId, baseUrl: baseUrl, storage: .inMemory,
                                              requestTimeoutMs: 10_000, device: device, dpop: dpop))
        other.setSessionErrorHandler(handler: ConformanceErrorHandler(sessionErrors, device: name))
        devices[name] = other
    }

    private func logOutScope(_ name: String?) throws -> LogOutScope? {
        switch name {
        case nil: return nil
        case "this_device": return .thisDevice
        case "other_devices": return .otherDevices
        case "everywhere": return .everywhere
        default:
            throw ScriptError(description: "log_out \"scope\" is this_device, other_devices or everywhere, not '\(name!)'")
        }
    }

    /// The id a `revoke_session` step names: index N of a label's last list, or "unknown".
    private func sessionId(_ spec: CJSON?) throws -> String {
        if spec?.stringValue == "unknown" { return "000000000000000000000000" }
        guard let o = spec?.objectValue else {
            throw ScriptError(description: "revoke_session needs \"session\": {\"of\", \"index\"} or \"unknown\"")
        }
        guard let of = o["of"]?.stringValue else { throw ScriptError(description: "revoke_session \"session\" needs \"of\"") }
        guard let ids = lastSessions[of] else {
            throw ScriptError(description: "no sessions list of '\(of)' yet (a sessions step first)")
        }
        guard case let .number(n) = o["index"], let index = Int(n) else {
            throw ScriptError(description: "revoke_session \"session\" needs \"index\"")
        }
        guard ids.indices.contains(index) else {
            throw ScriptError(description: "'\(of)' had \(ids.count) sessions, no index \(index)")
        }
        return ids[index]
    }

    private func email(_ name: String) -> String {
        if let known = emails.first(where: { $0.name == name }) { return known.email }
        emailCounter += 1
        let email = "\(name)-\(ProcessInfo.processInfo.processIdentifier)-\(emailCounter)@example.com"
        emails.append((name, email))
        return email
    }

    private func text(_ v: CJSON?) -> String {
        let s = v?.stringValue ?? ""
        return s.hasPrefix("$email:") ? email(String(s.dropFirst("$email:".count))) : s
    }

    private func need(_ step: CObject, _ key: String) throws -> CJSON {
        guard let v = step[key] else { throw ScriptError(description: "missing \"\(key)\"") }
        return v
    }

    func placeholders(_ value: CJSON) -> CJSON {
        switch value {
        case let .string(s):
            if let hit = emails.first(where: { $0.email == s }) { return .string("$email:\(hit.name)") }
            return value
        case let .array(items): return .array(items.map { placeholders($0) })
        case let .object(o):
            var out = CObject()
            for k in o.keys { out[k] = placeholders(o[k]!) }
            return .object(out)
        default: return value
        }
    }

    private func credentials(_ c: CObject) async throws -> Credentials {
        if let a = c["anonymous"] {
            return .anonymous(reuse: a["reuse"]?.boolValue ?? true)
        }
        if let e = c["email_password"]?.objectValue {
            return .emailPassword(email: text(try need(e, "email")), password: text(try need(e, "password")))
        }
        if let k = c["api_key"] {
            let label = k.stringValue ?? ""
            return .apiKey(key: keys[label]?.key ?? label)
        }
        if let j = c["jwt"]?.objectValue {
            return .jwt(token: try confSignJwt(j, key: jwtKey, appId: appId))
        }
        if let f = c["function"] {
            return .function(payloadJson: f.text)
        }
        if let e = c["email_otp"]?.objectValue {
            let email = text(try need(e, "email"))
            return .emailOtp(email: email, code: try mailedCode(email, e["code"]))
        }
        for (kind, make) in socialCredentials {
            guard let spec = c[kind] else { continue }
            guard let issuer else { throw ScriptError(description: "social credentials need \"server\": {\"social\": true}") }
            do {
                return make(try await issuer.credential(kind: kind, specJson: spec.text))
            } catch let e as TestFailure {
                throw ScriptError(description: e.description)
            }
        }
        throw ScriptError(description: "unknown credentials \(CJSON.object(c).text)")
    }

    /// An HTTP call; the status and the body as JSON (nil when empty or not JSON).
    private func http(_ method: String, _ url: String, _ body: CJSON?, _ token: String?) async throws -> (Int, CJSON?) {
        guard let u = URL(string: url) else { throw ScriptError(description: "bad URL \(url)") }
        var request = URLRequest(url: u)
        request.httpMethod = method
        request.timeoutInterval = 10
        if let body, !body.isNull {
            request.httpBody = Data(body.text.utf8)
            request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        }
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        let (status, text): (Int, String) = try await withCheckedThrowingContinuation { continuation in
            URLSession.shared.dataTask(with: request) { data, response, error in
                if let error { return continuation.resume(throwing: error) }
                let status = (response as? HTTPURLResponse)?.statusCode ?? 0
                continuation.resume(returning: (status, String(decoding: data ?? Data(), as: UTF8.self)))
            }.resume()
        }
        return (status, text.isEmpty ? nil : parseJSONOrNil(text))
    }

    private func adminLogin() async throws -> String {
        guard let admin else { throw ScriptError(description: "this step needs the admin API (--admin)") }
        let url = "\(baseUrl)/api/admin/v3.0/auth/providers/mongodb-cloud/login"
        let body = CJSON.object(CObject([("username", .string(admin.pub)), ("apiKey", .string(admin.priv))]))
        let (status, doc) = try await http("POST", url, body, nil)
        guard status == 200, let token = doc?["access_token"]?.stringValue else {
            throw ScriptError(description: "admin login: \(status) \(doc?.text ?? "None")")
        }
        adminToken = token
        return token
    }

    private func adminCall(_ method: String, _ path: String, _ body: CJSON? = nil) async throws -> (Int, CJSON?) {
        let url = path.hasPrefix("/api/") ? "\(baseUrl)\(path)"
            : "\(baseUrl)/api/admin/v3.0/groups/conformance/apps/\(appId)\(path)"
        // A cached admin token expires when a scenario moves the server clock: log in again.
        for fresh in [false, true] {
            let token: String
            if let cached = adminToken, !fresh { token = cached } else { token = try await adminLogin() }
            let (status, doc) = try await http(method, url, body, token)
            if status != 401 || fresh { return (status, doc) }
        }
        fatalError("unreachable")
    }

    private func adminOk(_ method: String, _ path: String, _ body: CJSON? = nil) async throws {
        let (status, doc) = try await adminCall(method, path, body)
        guard (200..<300).contains(status) else {
            throw ScriptError(description: "admin \(path): \(status) \(doc?.text ?? "None")")
        }
    }

    private func refreshCount() async throws -> Int {
        let (_, doc) = try await adminCall("GET", "/metrics")
        if case let .number(n)? = doc?["requests"]?["refresh"], let count = Int(n) { return count }
        return 0
    }

    private func outboxToken(_ email: String, _ kind: String) async throws -> (String, String) {
        let (_, doc) = try await adminCall("GET", "/outbox?email=\(email)")
        let items = (doc?.arrayValue ?? []).filter { $0["kind"]?.stringValue == kind }
        guard let last = items.last else { throw ScriptError(description: "no \(kind) token in the outbox for \(email)") }
        return (last["token"]?.stringValue ?? "", last["tokenId"]?.stringValue ?? "")
    }

    /// Waits for the next mail to `email` not read yet; remembers it as its last mail.
    private func readMail(_ email: String) async throws -> CJSON {
        guard let relay else { throw ScriptError(description: "read_mail needs \"server\": {\"mail\": true}") }
        let n = mailsRead[email] ?? 0
        let deadline = Date().addingTimeInterval(confMailWaitSecs)
        var mail: CJSON? = nil
        while mail == nil {
            let mails = relay.mails(to: email)
            if mails.count > n { mail = mails[n]; break }
            if Date() > deadline {
                throw ScriptError(description: "no mail number \(n + 1) to \(email) within \(Int(confMailWaitSecs)) s (\(n) read)")
            }
            try await Task.sleep(nanoseconds: 50_000_000)
        }
        let body = mail?["text"]?.stringValue ?? ""
        mailsRead[email] = n + 1
        lastMail[email] = body
        let link: String? = mailLink(body, confirmUrl) != nil ? "confirm" : mailLink(body, resetUrl) != nil ? "reset" : nil
        return .object(CObject([("link", .str(link)), ("code", .bool(mailCode(body) != nil))]))
    }

    /// The token and tokenId of the link to `page` in the last mail read for `email`.
    private func mailedToken(_ email: String, _ page: String) throws -> (String, String) {
        guard let link = lastMail[email].flatMap({ mailLink($0, page) }) else {
            throw ScriptError(description: "the last mail read for \(email) has no link to \(page) (read_mail first)")
        }
        guard let pair = linkToken(link) else { throw ScriptError(description: "the link to \(page) has no token and tokenId") }
        return pair
    }

    /// `"mailed"`: the code in the last mail read for `email`; `"wrong"`: it with its last digit changed.
    private func mailedCode(_ email: String, _ which: CJSON?) throws -> String {
        guard let code = lastMail[email].flatMap({ mailCode($0) }) else {
            throw ScriptError(description: "the last mail read for \(email) has no code (read_mail first)")
        }
        switch which?.stringValue {
        case "mailed": return code
        case "wrong":
            let last = Int(String(code.last!))!
            return String(code.dropLast()) + String((last + 1) % 10)
        default:
            throw ScriptError(description: "email_otp \"code\" is \"mailed\" or \"wrong\", not \(which?.text ?? "None")")
        }
    }

    private func keyView(_ k: ApiKey) -> CJSON {
        .object(CObject([("name", .string(k.name)), ("disabled", .bool(k.disabled)), ("has_key", .bool(k.key != nil))]))
    }

    private func profileView(_ p: UserProfile) -> CJSON {
        .object(CObject([("name", .str(p.name)), ("email", .str(p.email))]))
    }

    private func jsonOrNull(_ data: String?) throws -> CJSON {
        guard let data, !data.isEmpty else { return .null }
        return try CJSONParser.parse(data)
    }

    // MARK: steps

    func step(_ step: CObject) async throws -> CJSON {
        let op = step["do"]?.stringValue ?? ""
        let asName = step["as"]?.stringValue
        let epa = app.emailPasswordAuth()
        switch op {
        case "log_in":
            guard let c = try need(step, "credentials").objectValue else { throw ScriptError(description: "bad credentials") }
            let device = step["device"]?.stringValue ?? confMainDevice
            let user = try await deviceApp(device).logIn(credentials: try await credentials(c))
            return .string(label(user, asName, device: device))
        case "open_device":
            guard let name = step["name"]?.stringValue else { throw ScriptError(description: "open_device needs \"name\"") }
            guard let platform = step["platform"]?.stringValue else {
                throw ScriptError(description: "open_device needs \"platform\"")
            }
            try openDevice(name, platform: platform, dpop: step["dpop"]?.boolValue == true)
        case "open_process":
            guard storageDir != nil else { throw ScriptError(description: "open_process needs \"client\": {\"storage\": \"file\"}") }
            guard devices[confProcessDevice] == nil else { throw ScriptError(description: "a process is already open") }
            let uid = try user(step).id()
            let process = try ConformanceRunner.newApp(appId: appId, baseUrl: baseUrl, storageDir: storageDir, dpop: dpop,
                                                       sink: sessionErrors, device: confProcessDevice)
            guard let theirs = process.allUsers().first(where: { $0.id() == uid }) else {
                throw ScriptError(description: "the other process does not have the user")
            }
            devices[confProcessDevice] = process
            _ = label(theirs, asName, device: confProcessDevice)
        case "dpop_bound":
            let u = try user(step)
            let thumbprint = u.dpopThumbprint()
            let jkt = try cnfJkt(u.accessToken())
            let cnf: String? = jkt.map { $0 == thumbprint ? "thumbprint" : "other" }
            return .object(CObject([("bound", .bool(thumbprint != nil)), ("cnf_jkt", .str(cnf))]))
        case "stolen_refresh":
            let (status, doc) = try await http("POST", "\(baseUrl)/api/client/v2.0/auth/session", nil,
                                               try user(step).refreshToken() ?? "")
            return .object(CObject([("status", .int(status)), ("code", .str(doc?["error_code"]?.stringValue))]))
        case "stolen_access":
            let (status, _) = try await http("GET", "\(baseUrl)/api/client/v2.0/auth/profile", nil,
                                             try user(step).accessToken() ?? "")
            return .object(CObject([("status", .int(status))]))
        case "hook_request":
            let path = text(try need(step, "path")).replacingOccurrences(of: "$app_id", with: appId)
            guard let url = URL(string: baseUrl + path) else { throw ScriptError(description: "bad URL \(baseUrl + path)") }
            var request = URLRequest(url: url)
            request.httpMethod = step["method"]?.stringValue ?? "GET"
            request.timeoutInterval = 10
            let (_, response) = try await URLSession.shared.data(
                for: request, user: try user(step), allowInsecureHttp: baseUrl.lowercased().hasPrefix("http://"))
            return .object(CObject([("status", .int((response as? HTTPURLResponse)?.statusCode ?? 0))]))
        case "sessions":
            let list = try await user(step).sessions()
            lastSessions[step["user"]?.stringValue ?? ""] = list.map(\.id)
            return .array(list.map {
                .object(CObject([
                    ("platform", .str($0.device.platform)),
                    ("current", .bool($0.current)),
                    ("provider_type", .str($0.providerType)),
                ]))
            })
        case "revoke_session":
            try await user(step).revokeSession(id: try sessionId(step["session"]))
        case "register":
            try await epa.registerUser(email: text(try need(step, "email")), password: text(try need(step, "password")))
        case "confirm_from_outbox":
            let (token, tokenId) = try await outboxToken(text(try need(step, "email")), "confirm")
            try await epa.confirmUser(token: token, tokenId: tokenId)
        case "confirm":
            try await epa.confirmUser(token: text(try need(step, "token")), tokenId: text(try need(step, "token_id")))
        case "resend_confirmation":
            try await epa.resendConfirmationEmail(email: text(try need(step, "email")))
        case "retry_custom_confirmation":
            try await epa.retryCustomConfirmation(email: text(try need(step, "email")))
        case "send_reset_email":
            try await epa.sendResetPasswordEmail(email: text(try need(step, "email")))
        case "reset_from_outbox":
            let (token, tokenId) = try await outboxToken(text(try need(step, "email")), "reset")
            try await epa.resetPassword(token: token, tokenId: tokenId, password: text(try need(step, "password")))
        case "read_mail":
            return try await readMail(text(try need(step, "email")))
        case "confirm_from_mail":
            let (token, tokenId) = try mailedToken(text(try need(step, "email")), confirmUrl)
            try await epa.confirmUser(token: token, tokenId: tokenId)
        case "reset_from_mail":
            let (token, tokenId) = try mailedToken(text(try need(step, "email")), resetUrl)
            try await epa.resetPassword(token: token, tokenId: tokenId, password: text(try need(step, "password")))
        case "email_otp_send":
            try await app.emailOtp().send(email: text(try need(step, "email")))
        case "call_reset_function":
            try await epa.callResetPasswordFunction(
                email: text(try need(step, "email")), password: text(try need(step, "password")),
                argsJson: (step["args"] ?? .array([])).text)
        case "current_user":
            return .str(labelOfId(app.currentUser()?.id()))
        case "all_users":
            return .array(app.allUsers().map { CJSON.str(labelOfId($0.id())) })
        case "state":
            return .string(stateName(try user(step).state()))
        case "provider_type":
            return .string(try user(step).providerType())
        case "identities":
            // Python's sorted(): by code point, which for these ASCII names is byte order.
            let types = try user(step).identities().map(\.providerType)
                .sorted { $0.unicodeScalars.lexicographicallyPrecedes($1.unicodeScalars) }
            return .array(types.map { CJSON.string($0) })
        case "profile":
            return profileView(try user(step).profile())
        case "has_tokens":
            let u = try user(step)
            return .object(CObject([("access", .bool(u.accessToken() != nil)), ("refresh", .bool(u.refreshToken() != nil))]))
        case "switch_user":
            try app.switchUser(user: try user(step))
        case "log_out":
            try await user(step).logOut(scope: try logOutScope(step["scope"]?.stringValue))
        case "remove_user":
            try await app.removeUser(user: try user(step))
        case "delete_user":
            try await app.deleteUser(user: try user(step))
        case "link":
            guard let c = try need(step, "credentials").objectValue else { throw ScriptError(description: "bad credentials") }
            try await user(step).linkCredentials(credentials: try await credentials(c))
        case "refresh":
            try await user(step).refreshAccessToken()
        case "valid_access_token":
            var minTtl: Int32? = nil
            if let v = step["min_ttl_secs"], !v.isNull {
                guard case let .number(n) = v, let parsed = Int32(n) else {
                    throw ScriptError(description: "min_ttl_secs is not an integer: \(v.text)")
                }
                minTtl = parsed
            }
            _ = try await user(step).validAccessToken(minTtlSecs: minTtl)
        case "custom_data":
            return try jsonOrNull(try user(step).customDataJson())
        case "refresh_custom_data":
            return try jsonOrNull(try await user(step).refreshCustomData())
        case "refresh_profile":
            return profileView(try await user(step).refreshProfile())
        case "call_function":
            let args = step["args"] ?? .null
            let raw = args.stringValue ?? args.text
            let result = try await user(step).callFunction(name: step["name"]?.stringValue ?? "", argsJson: raw)
            return parseJSONOrNil(result) ?? .string(result)
        case "request":
            let path = text(try need(step, "path")).replacingOccurrences(of: "$app_id", with: appId)
            let body = step["body"].map { $0.text }
            let response = try await user(step).request(method: step["method"]?.stringValue ?? "GET", path: path, bodyJson: body)
            return .object(CObject([("status", .int(Int(response.status)))]))
        case "api_key_create":
            let k = try await user(step).apiKeys().create(name: step["name"]?.stringValue ?? "")
            keys[asName ?? k.name] = (k.id, k.key)
            return keyView(k)
        case "api_key_list":
            let list = try await user(step).apiKeys().fetchAll()
            // A stable sort by name, as Python's sorted(key=...).
            let sorted = list.enumerated().sorted { a, b in
                a.element.name != b.element.name
                    ? a.element.name.unicodeScalars.lexicographicallyPrecedes(b.element.name.unicodeScalars)
                    : a.offset < b.offset
            }.map(\.element)
            return .array(sorted.map { keyView($0) })
        case "api_key_fetch", "api_key_enable", "api_key_disable", "api_key_delete":
            let label = step["key"]?.stringValue ?? ""
            let keyId = keys[label]?.id ?? label
            let apiKeys = try user(step).apiKeys()
            switch op {
            case "api_key_fetch": return keyView(try await apiKeys.fetch(id: keyId))
            case "api_key_enable": try await apiKeys.enable(id: keyId)
            case "api_key_disable": try await apiKeys.disable(id: keyId)
            default: try await apiKeys.delete(id: keyId)
            }
        case "subscribe":
            guard let asName else { throw ScriptError(description: "subscribe needs \"as\"") }
            let recorder = ConformanceRecorder()
            if step.has("user") {
                let device = userDevice[step["user"]?.stringValue ?? ""] ?? confMainDevice
                listeners[asName] = ConformanceListener(
                    recorder: recorder, subscription: try user(step).subscribe(listener: recorder), device: device)
            } else {
                let device = step["device"]?.stringValue ?? confMainDevice
                listeners[asName] = ConformanceListener(
                    recorder: recorder, subscription: try deviceApp(device).subscribe(listener: recorder), device: device)
            }
        case "unsubscribe":
            let name = step["listener"]?.stringValue
            guard let name, let entry = listeners.removeValue(forKey: name) else {
                throw ScriptError(description: "unknown listener \(name.map { "'\($0)'" } ?? "None")")
            }
            entry.subscription.cancel()
        case "events":
            let name = step["listener"]?.stringValue
            guard let name, let entry = listeners[name] else {
                throw ScriptError(description: "unknown listener \(name.map { "'\($0)'" } ?? "None")")
            }
            return .array(entry.recorder.take().map {
                CJSON.string("\(eventName($0.kind)):\(labelOfId($0.userId, device: entry.device) ?? "-")")
            })
        case "session_errors":
            return .array(sessionErrors.take().map {
                CJSON.string("\(labelOfId($0.1, device: $0.0) ?? "None"):\($0.2)")
            })
        case "refresh_count":
            return .int(try await refreshCount() - refreshBase)
        case "restart_app":
            guard storageDir != nil else { throw ScriptError(description: "restart_app needs \"client\": {\"storage\": \"file\"}") }
            for entry in listeners.values { entry.subscription.cancel() }
            listeners = [:]
            app = try ConformanceRunner.newApp(appId: appId, baseUrl: baseUrl, storageDir: storageDir, dpop: dpop,
                                               sink: sessionErrors)
            var fresh: [String: User] = [:]
            for u in app.allUsers() { fresh[u.id()] = u }
            // Only the main device restarts; the other devices' users stay as they are.
            var kept: [String: User] = [:]
            for (label, u) in users {
                if userDevice[label] != confMainDevice {
                    kept[label] = u
                } else if let f = fresh[u.id()] {
                    kept[label] = f
                }
            }
            users = kept
        case "admin_revoke", "admin_disable", "admin_enable", "admin_delete":
            let uid = try user(step).id()
            switch op {
            case "admin_revoke": try await adminOk("PUT", "/users/\(uid)/logout")
            case "admin_disable": try await adminOk("PUT", "/users/\(uid)/disable")
            case "admin_enable": try await adminOk("PUT", "/users/\(uid)/enable")
            default: try await adminOk("DELETE", "/users/\(uid)")
            }
        case "admin_set_custom_data":
            let uid = try user(step).id()
            try await adminOk("PUT", "/users/\(uid)/custom_data", step["data"])
        case "advance_server_clock":
            try await adminOk("POST", "/api/admin/v3.0/test/clock",
                              .object(CObject([("advance_secs", try need(step, "secs"))])))
        default:
            throw ScriptError(description: "unknown operation '\(op)'")
        }
        return .null
    }

    func close() {
        for entry in listeners.values { entry.subscription.cancel() }
        devices = [:]
        if let storageDir { try? FileManager.default.removeItem(at: storageDir) }
    }
}

/// The social credential kinds of the scenarios and the credentials each becomes; the test
/// issuer names its OpenID Connect provider "conformance".
let socialCredentials: [(String, (String) -> Credentials)] = [
    ("google_id_token", { .googleIdToken(idToken: $0) }),
    ("google_auth_code", { .googleAuthCode(authCode: $0) }),
    ("apple_id_token", { .appleIdToken(idToken: $0) }),
    ("facebook_access_token", { .facebookAccessToken(accessToken: $0) }),
    ("oidc_id_token", { .oidcIdToken(provider: "conformance", idToken: $0) }),
]

func confSignJwt(_ spec: CObject, key: String, appId: String) throws -> String {
    func enc(_ v: CJSON) -> String { base64url(Data(v.text.utf8)) }
    guard let sub = spec["sub"] else { throw ScriptError(description: "jwt needs \"sub\"") }
    let now = Int(Date().timeIntervalSince1970)
    var claims = CObject([
        ("sub", sub), ("aud", .string(appId)), ("iat", .int(now - 120)),
        ("exp", .int(spec["expired"]?.boolValue == true ? now - 60 : now + 3600)),
    ])
    if let extra = spec["claims"]?.objectValue {
        for k in extra.keys { claims[k] = extra[k]! }
    }
    let payload = enc(.object(claims))
    let signature = spec["signature"]?.stringValue
    if signature == "none" {
        return "\(enc(.object(CObject([("alg", .string("none")), ("typ", .string("JWT"))])))).\(payload)."
    }
    let header = enc(.object(CObject([("alg", .string("HS256")), ("typ", .string("JWT"))])))
    let secret = signature == "wrong_key" ? "not-the-server-key" : key
    let mac = hmacSha256(key: Array(secret.utf8), message: Array("\(header).\(payload)".utf8))
    return "\(header).\(payload).\(base64url(Data(mac)))"
}

/// nil when the outcome meets `expect`, else what went wrong.
func checkOutcome(_ expect: CObject?, _ outcome: CObject) -> String? {
    let got = outcome["error"]
    guard let expect else { return got.map { "expected success, got error \($0.text)" } }
    if let wanted = expect["error"] {
        guard let got else { return "expected error \(CJSON.object(expect).text), got \(CJSON.object(outcome).text)" }
        let typeDiffers = got["type"]?.stringValue != wanted.stringValue
        let fieldDiffers = ["code", "kind"].contains { k in
            expect.has(k) && !jsonEquals(got[k] ?? .null, expect[k]!)
        }
        return typeDiffers || fieldDiffers ? "expected error \(CJSON.object(expect).text), got \(got.text)" : nil
    }
    if let value = expect["value"] {
        guard let ok = outcome["ok"], jsonEquals(ok, value) else {
            return "expected value \(value.text), got \(CJSON.object(outcome).text)"
        }
        return nil
    }
    return got.map { "expected success, got error \($0.text)" }
}

// MARK: - scenarios

struct ConformanceOptions {
    var scenarios = repoRoot.appendingPathComponent("tests/conformance/scenarios")
    var out = confTargetDir().appendingPathComponent("conformance/swift.json")
    var baseUrl: String?
    var appId: String?
    var admin: (pub: String, priv: String)?
    var jwtKey: String?
    var filter: String?
    var serverBin = confTargetDir().appendingPathComponent("debug/sessionkit-server").path

    /// The other runners' command-line options, from the environment.
    static func fromEnvironment() throws -> ConformanceOptions {
        let env = ProcessInfo.processInfo.environment
        func get(_ name: String) -> String? { env[name].flatMap { $0.isEmpty ? nil : $0 } }
        func path(_ p: String) -> URL {
            p.hasPrefix("/") ? URL(fileURLWithPath: p)
                : URL(fileURLWithPath: FileManager.default.currentDirectoryPath).appendingPathComponent(p)
        }
        var o = ConformanceOptions()
        if let v = get("SESSIONKIT_CONFORMANCE_SCENARIOS") { o.scenarios = path(v) }
        if let v = get("SESSIONKIT_CONFORMANCE_OUT") { o.out = path(v) }
        o.baseUrl = get("SESSIONKIT_CONFORMANCE_BASE_URL")
        o.appId = get("SESSIONKIT_CONFORMANCE_APP_ID")
        if let v = get("SESSIONKIT_CONFORMANCE_ADMIN") {
            let parts = v.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false)
            o.admin = (String(parts[0]), parts.count > 1 ? String(parts[1]) : "")
        }
        o.jwtKey = get("SESSIONKIT_CONFORMANCE_JWT_KEY")
        o.filter = get("SESSIONKIT_CONFORMANCE_FILTER")
        if let v = get("SESSIONKIT_SERVER_BIN") { o.serverBin = path(v).path }
        guard (o.baseUrl == nil) == (o.appId == nil) else {
            throw ScriptError(description: "SESSIONKIT_CONFORMANCE_BASE_URL and _APP_ID go together")
        }
        return o
    }
}

struct ScenarioResult {
    let name: String
    let skipped: String?
    let passed: Bool
    let failures: [String]
    let transcript: [CJSON]

    var json: CJSON {
        .object(CObject([
            ("name", .string(name)), ("skipped", .str(skipped)), ("passed", .bool(passed)),
            ("failures", .array(failures.map { CJSON.string($0) })), ("transcript", .array(transcript)),
        ]))
    }
}

func runScenario(_ file: URL, _ options: ConformanceOptions) async throws -> ScenarioResult {
    let name = file.deletingPathExtension().lastPathComponent
    let text = try String(contentsOf: file, encoding: .utf8)
    guard let scenario = try CJSONParser.parse(text).objectValue else {
        return ScenarioResult(name: name, skipped: nil, passed: false, failures: ["not a JSON object"], transcript: [])
    }
    let serverOpts = scenario["server"]?.objectValue ?? CObject()
    if options.baseUrl != nil && !serverOpts.isEmpty {
        return ScenarioResult(name: name, skipped: "needs its own server configuration", passed: false,
                              failures: [], transcript: [])
    }
    var issuer: TestIssuer? = nil
    var relay: MailRelay? = nil
    var server: ConformanceServer? = nil
    // Stopped in this order: the server first, then the issuer it verifies tokens against and
    // the relay it sends mail through.
    defer {
        server?.stop()
        issuer?.stop()
        relay?.stop()
    }
    if options.baseUrl == nil {
        var extra = ""
        if serverOpts["social"]?.boolValue == true {
            do {
                let started = try TestIssuer()
                issuer = started
                extra = try await started.providersToml()
            } catch let e as TestFailure {
                // This scenario fails (the issuer binary is missing, say); the others still run.
                return ScenarioResult(name: name, skipped: nil, passed: false, failures: [e.description], transcript: [])
            }
        }
        if serverOpts["mail"]?.boolValue == true {
            do {
                relay = try await MailRelay()
            } catch let e as TestFailure {
                // No Python with aiosmtpd: this scenario fails saying how to get one (never a skip).
                return ScenarioResult(name: name, skipped: nil, passed: false, failures: [e.description], transcript: [])
            }
        }
        do {
            server = try ConformanceServer(binary: options.serverBin, options: serverOpts, extraProviders: extra,
                                           relay: relay)
        } catch let e as ScriptError {
            // The server refused its config (a provider this build lacks, say): this scenario
            // fails, the others still run.
            return ScenarioResult(name: name, skipped: nil, passed: false, failures: [e.description], transcript: [])
        }
    }
    let baseUrl = server?.baseUrl ?? options.baseUrl!
    let appId = server != nil ? confAppId : options.appId!
    let admin: (pub: String, priv: String)? = server != nil ? confAdmin : options.admin
    let fileStorage = scenario["client"]?["storage"]?.stringValue == "file"
    let dpop = scenario["client"]?["dpop"]?.boolValue == true
    var failures: [String] = []
    var transcript: [CJSON] = []
    let runner = try await ConformanceRunner(baseUrl: baseUrl, appId: appId, admin: admin,
                                             jwtKey: options.jwtKey ?? confJwtKey, fileStorage: fileStorage,
                                             dpop: dpop, issuer: issuer, relay: relay)
    defer { runner.close() }
    let steps = scenario["steps"]?.arrayValue ?? []
    stepLoop: for (i, element) in steps.enumerated() {
        let step = element.objectValue ?? CObject()
        let op = step["do"]?.stringValue ?? "?"
        var outcome = CObject()
        do {
            let value = try await runner.step(step)
            outcome["ok"] = runner.placeholders(value)
        } catch let e as AppError {
            outcome["error"] = normaliseError(e)
        } catch let e as ScriptError {
            failures.append("step \(i) (\(op)): \(e.description)")
            break stepLoop
        } catch {
            // Not an SDK error (a panic, a broken runner): the scenario fails.
            failures.append("step \(i) (\(op)): unexpected \(error)")
            break stepLoop
        }
        if let problem = checkOutcome(step["expect"]?.objectValue, outcome) {
            failures.append("step \(i) (\(op)): \(problem)")
        }
        transcript.append(.object(CObject([("step", .int(i)), ("do", .string(op)), ("outcome", .object(outcome))])))
    }
    return ScenarioResult(name: name, skipped: nil, passed: failures.isEmpty, failures: failures, transcript: transcript)
}

/// Runs the scenarios, prints SKIP/FAIL lines and `swift conformance: N passed, N failed`, and
/// writes the transcript.
func runAllScenarios(_ options: ConformanceOptions) async throws -> [ScenarioResult] {
    let files = try FileManager.default.contentsOfDirectory(at: options.scenarios, includingPropertiesForKeys: nil)
        .filter { $0.pathExtension == "json" }
        .sorted { $0.lastPathComponent < $1.lastPathComponent }
        .filter { f in options.filter.map { f.lastPathComponent.contains($0) } ?? true }
    var results: [ScenarioResult] = []
    for f in files {
        let r = try await runScenario(f, options)
        if let skipped = r.skipped {
            print("SKIP \(r.name) (\(skipped))")
        } else if !r.passed {
            print("FAIL \(r.name)\n  " + r.failures.joined(separator: "\n  "))
        }
        results.append(r)
    }
    try FileManager.default.createDirectory(at: options.out.deletingLastPathComponent(), withIntermediateDirectories: true)
    let doc = CJSON.object(CObject([("language", .string("swift")), ("scenarios", .array(results.map(\.json)))]))
    try (doc.pretty + "\n").write(to: options.out, atomically: true, encoding: .utf8)
    let ran = results.filter { $0.skipped == nil }
    let failed = ran.filter { !$0.passed }.count
    let skipped = results.count - ran.count
    print("swift conformance: \(ran.count - failed) passed, \(failed) failed" + (skipped > 0 ? ", \(skipped) skipped" : ""))
    return results
}

final class ConformanceTests: XCTestCase {
    /// Every scenario through the Swift binding; fails listing the failing scenarios.
    func testEveryConformanceScenario() async throws {
        let options = try ConformanceOptions.fromEnvironment()
        let results = try await runAllScenarios(options)
        let ran = results.filter { $0.skipped == nil }
        XCTAssertFalse(ran.isEmpty, "no scenario ran (none found in \(options.scenarios.path))")
        let failing = ran.filter { !$0.passed }
        XCTAssertTrue(failing.isEmpty, "\(failing.count) of \(ran.count) scenarios failed:\n"
            + failing.map { "\($0.name)\n  " + $0.failures.joined(separator: "\n  ") }.joined(separator: "\n"))
    }
}
