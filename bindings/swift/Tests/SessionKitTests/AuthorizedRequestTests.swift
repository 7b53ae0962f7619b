// Issue #15, "using the session with your own backend": URLSession.data(for:user:) against the
// sessionkit-server's own authenticated routes as "the app's API" (GET auth/profile, POST
// functions/call, which refuse an expired or unknown access token with a 401), and against
// TinyAPI, a local HTTP server in this file that records what it is sent and answers the status
// it is told to. Token expiry on the server comes from its test clock, without sleeping; no
// assertion message contains a token.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import XCTest
@testable import SessionKit

final class AuthorizedRequestTests: XCTestCase {
    private func profile(_ server: TestServer) -> URLRequest {
        URLRequest(url: URL(string: "\(server.baseUrl)/api/client/v2.0/auth/profile")!)
    }

    /// POST functions/call of `echo`: the answer is the arguments, so a body lost on the way
    /// shows (the server answers 400 to a call without one).
    private func echo(_ server: TestServer, _ marker: String) -> URLRequest {
        var request = URLRequest(url: URL(string: "\(server.baseUrl)/api/client/v2.0/app/\(appId)/functions/call")!)
        request.httpMethod = "POST"
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.httpBody = Data(#"{"name":"echo","arguments":["\#(marker)",42]}"#.utf8)
        return request
    }

    /// How many requests of `op` ("profile", "function", "refresh") the server counted.
    private func count(_ server: TestServer, _ op: String) async throws -> Int {
        let (status, body) = try await server.admin("GET", "/metrics")
        guard status == 200 else { throw TestFailure(description: "metrics: \(status) \(body)") }
        let requests = (try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])?["requests"]
        return ((requests as? [String: Any])?[op] as? Int) ?? 0
    }

    /// A fresh token goes out as it is stored, as `Bearer <token>`, in one request and no refresh.
    func testAFreshTokenIsSentAsTheBearerWithoutARefresh() async throws {
        try await withServer { server in
            let user = try await server.app().logIn(credentials: .anonymous(reuse: true))
            let profiles = try await count(server, "profile")
            let (data, response) = try await URLSession.shared.data(for: profile(server), user: user)
            XCTAssertEqual(httpStatus(response), 200)
            XCTAssertEqual(try jsonString(String(decoding: data, as: UTF8.self), "user_id"), user.id())
            let awaitedProfiles = try await count(server, "profile")
            XCTAssertEqual(awaitedProfiles, profiles + 1)
            let refreshes = try await server.refreshCount()
            XCTAssertEqual(refreshes, 0)

            // What the wire carried: exactly the stored token, any Authorization replaced.
            let api = try TinyAPI { _ in 200 }
            defer { api.stop() }
            var request = URLRequest(url: URL(string: "\(api.url)/orders")!)
            request.setValue("Bearer stale-or-foreign", forHTTPHeaderField: "Authorization")
            let (_, tinyResponse) = try await URLSession.shared.data(for: request, user: user)
            XCTAssertEqual(httpStatus(tinyResponse), 200)
            XCTAssertEqual(api.received.count, 1)
            XCTAssertTrue(api.received.first?.authorization == "Bearer \(user.accessToken() ?? "-")",
                          "the Authorization header is not Bearer <the user's access token>")
        }
    }

    /// A token the server no longer accepts (its clock moved past the token's life; the client
    /// still finds it fresh): one 401, one refresh, one replay with the body, then 200.
    func testA401RefreshesOnceAndReplaysTheRequestWithItsBody() async throws {
        try await withServer { server in
            let user = try await server.app().logIn(credentials: .anonymous(reuse: true))
            let first = user.accessToken()
            try await server.advanceClock(1801)
            let calls = try await count(server, "function")
            let (data, response) = try await URLSession.shared.data(for: echo(server, "replayed"), user: user)
            XCTAssertEqual(httpStatus(response), 200)
            XCTAssertEqual(String(decoding: data, as: UTF8.self).filter { !$0.isWhitespace }, #"["replayed",42]"#)
            let awaitedCalls = try await count(server, "function")
            XCTAssertEqual(awaitedCalls, calls + 2) // the 401, then the replay
            let refreshes = try await server.refreshCount()
            XCTAssertEqual(refreshes, 1)
            XCTAssertTrue(user.accessToken() != first, "the token was not replaced")
            // The new token is accepted: the next request goes through at once.
            let (_, again) = try await URLSession.shared.data(for: echo(server, "again"), user: user)
            XCTAssertEqual(httpStatus(again), 200)
            let awaitedRefreshes = try await server.refreshCount()
            XCTAssertEqual(awaitedRefreshes, 1)
        }
    }

    /// An API that refuses every token: the replay's 401 is the answer, after exactly two
    /// requests (the second with the refreshed token and the same body) and one refresh.
    func testASecond401IsReturnedAsTheResponseNotRetried() async throws {
        try await withServer { server in
            let user = try await server.app().logIn(credentials: .anonymous(reuse: true))
            let first = user.accessToken()
            let api = try TinyAPI { _ in 401 }
            defer { api.stop() }
            var request = URLRequest(url: URL(string: "\(api.url)/orders")!)
            request.httpMethod = "PUT"
            request.httpBody = Data(#"{"order":7}"#.utf8)
            let (_, response) = try await URLSession.shared.data(for: request, user: user)
            XCTAssertEqual(httpStatus(response), 401)
            let received = api.received
            XCTAssertEqual(received.count, 2)
            XCTAssertEqual(received.map(\.method), ["PUT", "PUT"])
            XCTAssertEqual(received.map { String(decoding: $0.body, as: UTF8.self) }, [#"{"order":7}"#, #"{"order":7}"#])
            XCTAssertTrue(received.first?.authorization == "Bearer \(first ?? "-")", "first attempt: not the first token")
            XCTAssertTrue(received.last?.authorization == "Bearer \(user.accessToken() ?? "-")",
                          "replay: not the refreshed token")
            XCTAssertTrue(first != user.accessToken(), "no refresh happened")
            let refreshes = try await server.refreshCount()
            XCTAssertEqual(refreshes, 1)
        }
    }

    /// A request refused a token that another request has replaced meanwhile (its 401 arrives
    /// after the other's refresh ended) is replayed with the new token, with no refresh of its
    /// own; a plain `refreshAccessToken()` there would refresh a second time.
    func testALate401ForAReplacedTokenMakesNoSecondRefresh() async throws {
        try await withServer { server in
            let user = try await server.app().logIn(credentials: .anonymous(reuse: true))
            let stale = "Bearer \(user.accessToken() ?? "-")"
            let replayed = DispatchSemaphore(value: 0)
            let api = try TinyAPI { received in
                guard received.authorization == stale else {
                    if received.path == "/fast" { replayed.signal() }
                    return 200
                }
                // The slow request's 401 waits until the fast one was replayed.
                if received.path == "/slow" { _ = replayed.wait(timeout: .now() + 10) }
                return 401
            }
            defer { api.stop() }
            let slow = Task { try await URLSession.shared.data(for: URLRequest(url: URL(string: "\(api.url)/slow")!), user: user) }
            try await waitFor("the slow request") { api.received.count == 1 }
            let (_, fast) = try await URLSession.shared.data(for: URLRequest(url: URL(string: "\(api.url)/fast")!), user: user)
            XCTAssertEqual(httpStatus(fast), 200)
            let (_, late) = try await slow.value
            XCTAssertEqual(httpStatus(late), 200)
            XCTAssertEqual(api.received.map(\.path), ["/slow", "/fast", "/fast", "/slow"])
            let refreshes = try await server.refreshCount()
            XCTAssertEqual(refreshes, 1)
        }
    }

    /// A body given as a stream cannot be sent twice: the 401 is returned after the refresh.
    func testABodyStreamIsNotReplayed() async throws {
        try await withServer { server in
            let user = try await server.app().logIn(credentials: .anonymous(reuse: true))
            let api = try TinyAPI { _ in 401 }
            defer { api.stop() }
            var request = URLRequest(url: URL(string: "\(api.url)/upload")!)
            request.httpMethod = "POST"
            let body = Data("streamed".utf8)
            request.httpBodyStream = InputStream(data: body)
            request.setValue(String(body.count), forHTTPHeaderField: "Content-Length")
            let (_, response) = try await URLSession.shared.data(for: request, user: user)
            XCTAssertEqual(httpStatus(response), 401)
            XCTAssertEqual(api.received.count, 1)
            let refreshes = try await server.refreshCount()
            XCTAssertEqual(refreshes, 1)
        }
    }

    private func sessionErrors(_ app: App) -> Locked<[SessionError]> {
        let calls = Locked<[SessionError]>([])
        app.onSessionError { _, error in calls.mutate { $0.append(error) } }
        return calls
    }

    /// The refresh token expired: the request throws the SDK's SessionExpired, the session
    /// error handler is called once, and later requests say the user is logged out.
    func testAnExpiredSessionThrowsSessionExpiredAndCallsTheHandlerOnce() async throws {
        try await withServer(refresh: 3600) { server in
            let app = try server.app()
            let calls = sessionErrors(app)
            let user = try await app.emailUser()
            try await server.advanceClock(3601)
            await assertThrowsAsync({ try await URLSession.shared.data(for: self.profile(server), user: user) }) {
                if case AppError.SessionExpired(.tokenExpired, _) = $0 { return true } else { return false }
            }
            try await waitFor("the session error handler") { calls.get.count == 1 }
            XCTAssertEqual(calls.get.first?.kind, .tokenExpired)
            XCTAssertEqual(user.state(), .loggedOut)
            await assertThrowsAsync({ try await URLSession.shared.data(for: self.profile(server), user: user) }) {
                if case AppError.ClientUserNotLoggedIn = $0 { return true } else { return false }
            }
            try await sleepMs(100) // a second call would have come by now
            XCTAssertEqual(calls.get.count, 1)
        }
    }

    /// The session was revoked on the server: the next 401 (the access token expired there
    /// too) ends in SessionExpired for every request in flight, and one handler call.
    func testARevokedSessionEndsConcurrentRequestsWithSessionExpiredAndOneHandlerCall() async throws {
        try await withServer { server in
            let app = try server.app()
            let calls = sessionErrors(app)
            let user = try await app.emailUser()
            try await server.revokeSessions(user.id())
            try await server.advanceClock(1801)
            let request = profile(server)
            let outcomes = await withTaskGroup(of: Error?.self) { group in
                for _ in 0..<6 {
                    group.addTask {
                        do { _ = try await URLSession.shared.data(for: request, user: user); return nil }
                        catch { return error }
                    }
                }
                return await group.reduce(into: [Error?]()) { $0.append($1) }
            }
            // Each request that got its 401 throws the SessionExpired of the one refresh; one
            // that only started after the session had ended finds the user logged out.
            var expired = 0
            for outcome in outcomes {
                switch outcome {
                case AppError.SessionExpired(.sessionRevoked, _)?: expired += 1
                case AppError.ClientUserNotLoggedIn?: break
                default: XCTFail("expected SessionExpired(sessionRevoked), got \(String(describing: outcome))")
                }
            }
            XCTAssertGreaterThanOrEqual(expired, 1)
            try await waitFor("the session error handler") { calls.get.count == 1 }
            try await sleepMs(100)
            XCTAssertEqual(calls.get.map(\.kind), [.sessionRevoked])
            let refreshes = try await server.refreshCount()
            XCTAssertEqual(refreshes, 1)
        }
    }

    /// A request whose 401 arrives after another request found the session ended throws the
    /// same SessionExpired (not "logged out"), with no second refresh and one handler call.
    func testALate401AfterTheSessionEndedThrowsTheSameSessionExpired() async throws {
        try await withServer { server in
            let app = try server.app()
            let calls = sessionErrors(app)
            let user = try await app.emailUser()
            try await server.revokeSessions(user.id())
            let ended = DispatchSemaphore(value: 0)
            let api = try TinyAPI { received in
                if received.path == "/slow" { _ = ended.wait(timeout: .now() + 10) }
                return 401
            }
            defer { api.stop() }
            let revoked: (Error) -> Bool = {
                if case AppError.SessionExpired(.sessionRevoked, _) = $0 { return true } else { return false }
            }
            let slow = Task { try await URLSession.shared.data(for: URLRequest(url: URL(string: "\(api.url)/slow")!), user: user) }
            try await waitFor("the slow request") { api.received.count == 1 }
            await assertThrowsAsync({ try await URLSession.shared.data(for: URLRequest(url: URL(string: "\(api.url)/fast")!), user: user) }, revoked)
            XCTAssertEqual(user.state(), .loggedOut)
            ended.signal()
            await assertThrowsAsync({ try await slow.value }, revoked)
            try await waitFor("the session error handler") { calls.get.count == 1 }
            try await sleepMs(100)
            XCTAssertEqual(calls.get.map(\.kind), [.sessionRevoked])
            XCTAssertEqual(api.received.map(\.path), ["/slow", "/fast"])
            let refreshes = try await server.refreshCount()
            XCTAssertEqual(refreshes, 1)
        }
    }

    /// A user disabled on the server: the API's 401, then a refresh the server refuses.
    func testADisabledUserThrowsSessionExpired() async throws {
        try await withServer { server in
            let app = try server.app()
            let calls = sessionErrors(app)
            let user = try await app.emailUser()
            try await server.disableUser(user.id())
            await assertThrowsAsync({ try await URLSession.shared.data(for: self.echo(server, "x"), user: user) }) {
                if case AppError.SessionExpired(.userDisabled, _) = $0 { return true } else { return false }
            }
            try await waitFor("the session error handler") { calls.get.count == 1 }
            XCTAssertEqual(user.state(), .loggedOut)
        }
    }

    /// Eight requests on a token the client finds expiring: one refresh before any is sent
    /// (the SDK's coalescing), and all go out with the new token.
    func testConcurrentRequestsOnAnExpiringTokenShareOneRefresh() async throws {
        try await withServer(access: 3) { server in
            let user = try await server.app().logIn(credentials: .anonymous(reuse: true))
            let first = user.accessToken()
            let profiles = try await count(server, "profile")
            // A 3 s token with the default 60 s margin is due at half its life.
            try await sleepMs(1600)
            let request = profile(server)
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<8 {
                    group.addTask { httpStatus(try await URLSession.shared.data(for: request, user: user).1) }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            XCTAssertEqual(statuses, Array(repeating: 200, count: 8))
            let refreshes = try await server.refreshCount()
            XCTAssertEqual(refreshes, 1)
            XCTAssertTrue(user.accessToken() != first, "the token was not replaced")
            let awaitedProfiles = try await count(server, "profile")
            XCTAssertEqual(awaitedProfiles, profiles + 8) // no 401, no replay
        }
    }

    /// Eight requests that all get a 401 for the same token (expired on the server only): one
    /// refresh between them, then each is replayed once.
    func testConcurrent401sForOneTokenShareOneRefresh() async throws {
        try await withServer { server in
            let user = try await server.app().logIn(credentials: .anonymous(reuse: true))
            try await server.advanceClock(1801)
            let profiles = try await count(server, "profile")
            let request = profile(server)
            let statuses = try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<8 {
                    group.addTask { httpStatus(try await URLSession.shared.data(for: request, user: user).1) }
                }
                return try await group.reduce(into: [Int]()) { $0.append($1) }
            }
            XCTAssertEqual(statuses, Array(repeating: 200, count: 8))
            let refreshes = try await server.refreshCount()
            XCTAssertEqual(refreshes, 1)
            // Each got a 401 and a replay, unless it read its token after the refresh.
            let awaitedProfiles = try await count(server, "profile")
            XCTAssertTrue((profiles + 9...profiles + 16).contains(awaitedProfiles), "\(awaitedProfiles - profiles) requests")
        }
    }

    /// The token never crosses a network in clear, and only http(s) URLs are taken: refused
    /// before any token is read or anything sent.
    func testPlainHttpToAnotherHostAndOtherSchemesAreRefused() async throws {
        try await withServer { server in
            let user = try await server.app().logIn(credentials: .anonymous(reuse: true))
            let insecure = URLRequest(url: URL(string: "http://api.example.com/orders?secret=1")!)
            let error = await assertThrowsAsync({ try await URLSession.shared.data(for: insecure, user: user) }) {
                if case AppError.InsecureUrl(let url) = $0 { return url == "http://api.example.com" } else { return false }
            }
            XCTAssertFalse("\(error.map { "\($0)" } ?? "")".contains("secret"))
            let file = URLRequest(url: URL(fileURLWithPath: "/etc/hostname"))
            await assertThrowsAsync({ try await URLSession.shared.data(for: file, user: user) }) {
                if case AppError.InvalidArgument = $0 { return true } else { return false }
            }
            // Loopback http is allowed, by name too.
            let api = try TinyAPI { _ in 204 }
            defer { api.stop() }
            let local = URLRequest(url: URL(string: api.url.replacingOccurrences(of: "127.0.0.1", with: "localhost"))!)
            let (_, response) = try await URLSession.shared.data(for: local, user: user)
            XCTAssertEqual(httpStatus(response), 204)
            let refreshes = try await server.refreshCount()
            XCTAssertEqual(refreshes, 0)
        }
    }

    /// The README's call (README block 3 is compiled, never run), run against the server.
    func testTheReadmeCallRuns() async throws {
        try await withServer { server in
            let user = try await server.app().logIn(credentials: .anonymous(reuse: true))
            let apiBase = URL(string: server.baseUrl)!
            let request = URLRequest(url: apiBase.appendingPathComponent("api/client/v2.0/auth/profile"))
            let (data, response) = try await URLSession.shared.data(for: request, user: user)
            XCTAssertEqual((response as? HTTPURLResponse)?.statusCode, 200)
            XCTAssertFalse(data.isEmpty)
        }
    }
}

private func httpStatus(_ response: URLResponse) -> Int { (response as? HTTPURLResponse)?.statusCode ?? 0 }

/// An HTTP/1.1 server on a loopback port, one request per connection and a thread per
/// connection: records each request (method, path, Authorization, DPoP, body) as it arrives and
/// answers the status `answer` gives (which may block), with an empty JSON body.
final class TinyAPI: @unchecked Sendable {
    struct Received {
        let method: String
        let path: String
        let authorization: String?
        /// The `DPoP` header (a bound session's proof, #29).
        let dpop: String?
        let body: Data
    }

    let url: String
    private let fd: Int32
    private let answer: @Sendable (Received) -> Int
    private let thread: Thread
    private let log: Locked<[Received]>
    var received: [Received] { log.get }

    init(answer: @escaping @Sendable (Received) -> Int) throws {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw TestFailure(description: "socket: \(errno)") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        #if canImport(Darwin)
        addr.sin_len = UInt8(MemoryLayout<sockaddr_in>.size)
        #endif
        addr.sin_port = 0
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &addr) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                bind(fd, address, len) == 0 && listen(fd, 32) == 0 && getsockname(fd, address, &len) == 0
            }
        }
        guard bound else {
            close(fd)
            throw TestFailure(description: "bind/listen: \(errno)")
        }
        let log = Locked<[Received]>([])
        self.fd = fd
        self.answer = answer
        self.log = log
        url = "http://127.0.0.1:\(UInt16(bigEndian: addr.sin_port))"
        thread = Thread {
            while true {
                let connection = accept(fd, nil, nil)
                if connection < 0 { return }
                Thread { TinyAPI.serve(connection, answer, log) }.start()
            }
        }
        thread.start()
    }

    func stop() {
        shutdown(fd, Int32(SHUT_RDWR))
        close(fd)
    }

    private static func serve(_ connection: Int32, _ answer: (Received) -> Int, _ log: Locked<[Received]>) {
        defer { close(connection) }
        var bytes = [UInt8]()
        var buffer = [UInt8](repeating: 0, count: 4096)
        func readMore() -> Bool {
            let n = read(connection, &buffer, buffer.count)
            if n <= 0 { return false }
            bytes += buffer[0..<n]
            return true
        }
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        var headEnd: Int?
        while headEnd == nil {
            guard readMore() else { return }
            if bytes.count >= 4 {
                headEnd = (0...(bytes.count - 4)).first { Array(bytes[$0..<($0 + 4)]) == separator }
            }
        }
        let head = String(decoding: bytes[0..<headEnd!], as: UTF8.self).components(separatedBy: "\r\n")
        let requestLine = head[0].split(separator: " ")
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        let bodyStart = headEnd! + 4
        while bytes.count - bodyStart < length {
            guard readMore() else { break }
        }
        let body = Data(bytes[bodyStart..<min(bytes.count, bodyStart + length)])
        let received = Received(method: requestLine.count > 0 ? String(requestLine[0]) : "",
                                path: requestLine.count > 1 ? String(requestLine[1]) : "",
                                authorization: headers["authorization"], dpop: headers["dpop"], body: body)
        log.mutate { $0.append(received) }
        let status = answer(received)
        let content = status == 204 ? "" : "{}"
        let response = "HTTP/1.1 \(status) Status\r\nContent-Type: application/json\r\n"
            + "Content-Length: \(content.utf8.count)\r\nConnection: close\r\n\r\n\(content)"
        let out = Array(response.utf8)
        _ = out.withUnsafeBytes { write(connection, $0.baseAddress, out.count) }
    }
}
