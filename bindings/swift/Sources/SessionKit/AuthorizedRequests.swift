// Calling the app's own backend with the user's session (#15): `URLSession.data(for:user:)`
// sends a URLRequest with the user's access token, refreshes once and replays once on a 401,
// and ends with the SDK's own `AppError.SessionExpired` when the session is over. A session
// bound to a key with DPoP (#29, `AppConfig.dpop`) sends `Authorization: DPoP <token>` with a
// proof of that key for each request, and answers the API's nonce challenge once. One
// implementation for Apple platforms and Linux (FoundationNetworking): the completion-handler
// `dataTask`, which both have.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension URLSession {
    /// Sends `request` with the user's access token and returns the body and the response, as
    /// `data(for:)` does; for calling the app's own API with the session the SDK keeps:
    ///
    ///     let (data, response) = try await URLSession.shared.data(for: request, user: user)
    ///
    /// - The token is `user.validAccessToken()`: one with at least the config's
    ///   `refreshMarginSecs` to live. While the stored token has that, it is answered on the
    ///   calling task, without a hop to the SDK's runtime; otherwise it is refreshed first, one
    ///   refresh however many requests ask at once (the SDK's coalescing).
    /// - A bearer session sends it as `Authorization: Bearer <token>`. A session bound with
    ///   DPoP (#29: `AppConfig.dpop`, `user.dpopThumbprint()` not nil) sends `Authorization:
    ///   DPoP <token>` and a `DPoP` header with a new proof for this request
    ///   (`user.dpopProof(method:url:accessToken:nonce:)`: its method, its URL without query,
    ///   the token's hash). Any `Authorization` and `DPoP` headers the request had are replaced.
    /// - A DPoP nonce challenge (RFC 9449 section 9: a 401 whose `WWW-Authenticate` says
    ///   `use_dpop_nonce`, or a 400 whose JSON body does, with a `DPoP-Nonce` header) is
    ///   answered by sending the request once more, body included, with a proof that carries
    ///   the nonce; no refresh. The latest `DPoP-Nonce` an origin (scheme, host, port) sent is
    ///   kept in memory and put in the later proofs to it.
    /// - Any other 401 answer is taken to mean the token is no longer accepted: the token is
    ///   refreshed once (`refreshAccessToken()`; requests that got a 401 for the same token
    ///   share one refresh, and none is made when the token has already been replaced since it
    ///   was sent), then the request is sent once more, body included, with the new token (and
    ///   a new proof for it). A second 401 is returned as the response: never a loop. A request
    ///   whose body is a stream (`httpBodyStream`) cannot be sent twice: its 401 (or its nonce
    ///   challenge) is returned, after the refresh for a 401.
    /// - Any other status, error statuses included, is returned as the response.
    ///
    /// Throws, with nothing sent: `AppError.InvalidArgument` when the URL is not http(s),
    /// `AppError.InsecureUrl` for plain http to a host that is not a loopback address (unless
    /// `allowInsecureHttp`, as the SDK's own config; the token must not cross a network in
    /// clear). Throws what `validAccessToken()` and `refreshAccessToken()` throw:
    /// `AppError.SessionExpired` when the refresh token was rejected (expired, revoked, user
    /// disabled or deleted; the App's session error handler has then been called, once, and the
    /// user is logged out), `AppError.ClientUserNotLoggedIn` when the user is logged out,
    /// `AppError.Network`/`Timeout` when a needed refresh could not be made;
    /// `AppError.Storage` when a bound session's proof could not be signed (the app's
    /// `DpopSigner` failed: a locked device; the session is kept). Throws the session's own
    /// error when the request itself fails (a `URLError`; `URLError.cancelled` when the calling
    /// task is cancelled). Never logs the token or the proof.
    public func data(for request: URLRequest, user: User,
                     allowInsecureHttp: Bool = false) async throws -> (Data, URLResponse) {
        let url = try checkDestination(request.url, allowInsecureHttp: allowInsecureHttp)
        // A body stream is read by the first attempt and cannot be read again.
        let replayable = request.httpBodyStream == nil || request.httpBody != nil
        let token = try await user.validAccessToken()
        let first = try await attempt(request, url: url, user: user, token: token, replayable: replayable)
        // A nonce challenge still standing after its retry: a refresh would not change it.
        guard first.status == 401, !first.nonceChallenge else { return first.answer }
        try await UnauthorizedRefreshes.shared.refresh(user, rejected: token)
        guard replayable else { return first.answer }
        let fresh = try await user.validAccessToken()
        return try await attempt(request, url: url, user: user, token: fresh, replayable: true).answer
    }

    /// One attempt with `token`: as the bearer, or, for a bound session, with a proof; a nonce
    /// challenge is answered once (when the body can be sent again). The answer, its status, and
    /// whether it is (still) a nonce challenge.
    private func attempt(_ request: URLRequest, url: URL, user: User, token: String,
                         replayable: Bool) async throws
        -> (answer: (Data, URLResponse), status: Int, nonceChallenge: Bool) {
        let method = request.httpMethod ?? "GET"
        let origin = dpopOrigin(url)
        let sent = DpopNonces.shared.nonce(for: origin)
        guard let proof = try user.dpopProof(method: method, url: url.absoluteString, accessToken: token,
                                             nonce: sent) else {
            let answer = try await send(request, authorization: "Bearer \(token)", proof: nil)
            return (answer, httpStatus(answer.1), false)
        }
        var answer = try await send(request, authorization: "DPoP \(token)", proof: proof)
        var challenge = DpopNonces.shared.remember(answer, for: origin)
        // (No proof now only if the key went with a logout meanwhile: the challenge is the answer.)
        if let nonce = challenge, replayable,
           let retry = try user.dpopProof(method: method, url: url.absoluteString, accessToken: token,
                                          nonce: nonce) {
            answer = try await send(request, authorization: "DPoP \(token)", proof: retry)
            challenge = DpopNonces.shared.remember(answer, for: origin)
        }
        return (answer, httpStatus(answer.1), challenge != nil)
    }

    /// One request: `request` with that `Authorization` and `DPoP` header (none for a bearer),
    /// through `dataTask` (cancelled with the calling task).
    private func send(_ request: URLRequest, authorization: String,
                      proof: String?) async throws -> (Data, URLResponse) {
        var request = request
        request.setValue(authorization, forHTTPHeaderField: "Authorization")
        request.setValue(proof, forHTTPHeaderField: "DPoP")
        let running = LockedValue<URLSessionDataTask?>(nil)
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                let task = dataTask(with: request) { data, response, error in
                    if let error {
                        continuation.resume(throwing: error)
                    } else if let response {
                        continuation.resume(returning: (data ?? Data(), response))
                    } else {
                        continuation.resume(throwing: URLError(.badServerResponse))
                    }
                }
                running.mutate { $0 = task }
                task.resume()
                // Cancelled before the task was known to the handler below.
                if Task.isCancelled { task.cancel() }
            }
        } onCancel: {
            running.get?.cancel()
        }
    }
}

private func httpStatus(_ response: URLResponse) -> Int { (response as? HTTPURLResponse)?.statusCode ?? 0 }

/// The origin a DPoP nonce belongs to (RFC 9449 section 8: a nonce is the server's): scheme
/// and host lowercased, and the port unless it is the scheme's default.
private func dpopOrigin(_ url: URL) -> String {
    let scheme = url.scheme?.lowercased() ?? ""
    let host = url.host?.lowercased() ?? ""
    let port = url.port.flatMap { ($0 == 443 && scheme == "https") || ($0 == 80 && scheme == "http") ? nil : $0 }
    return "\(scheme)://\(host)" + (port.map { ":\($0)" } ?? "")
}

/// The last `DPoP-Nonce` each origin sent (RFC 9449 section 8.2: a server may send a new one
/// with any answer), for the next proofs to it. In memory only: a nonce lives minutes.
final class DpopNonces: @unchecked Sendable {
    static let shared = DpopNonces()

    private let nonces = LockedValue<[String: String]>([:])

    func nonce(for origin: String) -> String? { nonces.get[origin] }

    /// Keeps the answer's `DPoP-Nonce`, if it has one; returns it when the answer is a nonce
    /// challenge (a 401 with `WWW-Authenticate: DPoP error="use_dpop_nonce"`, or a 400 whose
    /// JSON `error` is `use_dpop_nonce`, as a token endpoint answers, or whose `error_code` is
    /// sessionkit-server's `UseDPoPNonce`), else nil.
    func remember(_ answer: (Data, URLResponse), for origin: String) -> String? {
        guard let response = answer.1 as? HTTPURLResponse,
              let nonce = response.value(forHTTPHeaderField: "DPoP-Nonce"), !nonce.isEmpty else { return nil }
        nonces.mutate { $0[origin] = nonce }
        switch response.statusCode {
        case 401:
            let challenge = response.value(forHTTPHeaderField: "WWW-Authenticate") ?? ""
            return challenge.contains("use_dpop_nonce") ? nonce : nil
        case 400:
            let body = (try? JSONSerialization.jsonObject(with: answer.0)) as? [String: Any]
            let error = body?["error"] as? String, code = body?["error_code"] as? String
            return error == "use_dpop_nonce" || code == "UseDPoPNonce" ? nonce : nil
        default:
            return nil
        }
    }
}

/// Only http(s), and plain http only to loopback hosts unless allowed: the rule of the SDK's
/// `allow_insecure_http` for its own server, applied to the app's API.
private func checkDestination(_ url: URL?, allowInsecureHttp: Bool) throws -> URL {
    guard let url, let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http",
          let host = url.host, !host.isEmpty else {
        throw AppError.InvalidArgument(message: "request.url: must be an http or https URL with a host")
    }
    guard scheme == "http", !allowInsecureHttp, !isLoopback(host) else { return url }
    // Scheme and host only: a query may carry secrets of its own.
    throw AppError.InsecureUrl(url: "http://\(host)")
}

private func isLoopback(_ host: String) -> Bool {
    let host = host.lowercased().trimmingCharacters(in: CharacterSet(charactersIn: "[]"))
    if host == "localhost" || host.hasSuffix(".localhost") || host == "::1" { return true }
    let parts = host.split(separator: ".", omittingEmptySubsequences: false)
    return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
}

/// The refreshes made after a 401: one per rejected token. Requests that were refused the same
/// token join one `refreshAccessToken()`; a request refused a token that the user no longer
/// holds makes none (it was replaced meanwhile). `refreshAccessToken()` alone would refresh
/// again for a request whose 401 arrives just after another request's refresh ended, since it
/// refreshes whatever token is current. A session found ended is remembered (one entry per
/// user id, the rejected token with the error), so that the requests refused that token all
/// throw the same `SessionExpired`.
final class UnauthorizedRefreshes: @unchecked Sendable {
    static let shared = UnauthorizedRefreshes()

    private enum Flight {
        case running(Task<Void, Error>)
        case ended(Error)
    }

    /// By user id: the token that was refused, and its refresh.
    private let flights = LockedValue<[String: (rejected: String, flight: Flight)]>([:])

    /// Refreshes the user's token after a 401 to `rejected`, or joins the refresh already made
    /// for it; returns at once when the user holds another token by now. Throws what
    /// `refreshAccessToken()` threw.
    func refresh(_ user: User, rejected: String) async throws {
        let id = user.id()
        let flight: Flight? = flights.mutate { flights in
            if let entry = flights[id], entry.rejected == rejected { return entry.flight }
            // Replaced meanwhile (another refresh, or a log out: the replay then says so).
            if user.accessToken() != rejected { return nil }
            let task = Task { [self] in
                do {
                    try await user.refreshAccessToken()
                    finish(id, rejected, nil)
                } catch {
                    finish(id, rejected, error)
                    throw error
                }
            }
            flights[id] = (rejected, .running(task))
            return .running(task)
        }
        switch flight {
        case nil: return
        case .ended(let error): throw error
        case .running(let task): try await task.value
        }
    }

    /// The refresh for `rejected` is over: forgotten when it succeeded or failed for a reason
    /// that may pass, remembered when the session ended.
    private func finish(_ id: String, _ rejected: String, _ error: Error?) {
        flights.mutate { flights in
            guard flights[id]?.rejected == rejected else { return }
            if let error, case AppError.SessionExpired = error {
                flights[id] = (rejected, .ended(error))
            } else {
                flights[id] = nil
            }
        }
    }
}
