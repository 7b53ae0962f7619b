// Calling the app's own backend with the user's session (#15): `URLSession.data(for:user:)`
// sends a URLRequest with `Authorization: Bearer <access token>`, refreshes once and replays once
// on a 401, and ends with the SDK's own `AppError.SessionExpired` when the session is over. One
// implementation for Apple platforms and Linux (FoundationNetworking): the completion-handler
// `dataTask`, which both have.
import Foundation
#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension URLSession {
    /// Sends `request` with the user's access token as `Authorization: Bearer <token>` (any
    /// `Authorization` header it had is replaced) and returns the body and the response, as
    /// `data(for:)` does; for calling the app's own API with the session the SDK keeps:
    ///
    ///     let (data, response) = try await URLSession.shared.data(for: request, user: user)
    ///
    /// - The token is `user.validAccessToken()`: one with at least the config's
    ///   `refreshMarginSecs` to live. While the stored token has that, it is answered on the
    ///   calling task, without a hop to the SDK's runtime; otherwise it is refreshed first, one
    ///   refresh however many requests ask at once (the SDK's coalescing).
    /// - A 401 answer is taken to mean the token is no longer accepted: the token is refreshed
    ///   once (`refreshAccessToken()`; requests that got a 401 for the same token share one
    ///   refresh, and none is made when the token has already been replaced since it was sent),
    ///   then the request is sent once more, body included, with the new token. A second 401
    ///   is returned as the response: never a loop. A request whose body is a stream
    ///   (`httpBodyStream`) cannot be sent twice: its 401 is returned after the refresh.
    /// - Any other status, error statuses included, is returned as the response.
    ///
    /// Throws, with nothing sent: `AppError.InvalidArgument` when the URL is not http(s),
    /// `AppError.InsecureUrl` for plain http to a host that is not a loopback address (unless
    /// `allowInsecureHttp`, as the SDK's own config; the token must not cross a network in
    /// clear). Throws what `validAccessToken()` and `refreshAccessToken()` throw:
    /// `AppError.SessionExpired` when the refresh token was rejected (expired, revoked, user
    /// disabled or deleted; the App's session error handler has then been called, once, and the
    /// user is logged out), `AppError.ClientUserNotLoggedIn` when the user is logged out,
    /// `AppError.Network`/`Timeout` when a needed refresh could not be made. Throws the
    /// session's own error when the request itself fails (a `URLError`; `URLError.cancelled`
    /// when the calling task is cancelled). Never logs the token.
    public func data(for request: URLRequest, user: User,
                     allowInsecureHttp: Bool = false) async throws -> (Data, URLResponse) {
        try checkDestination(request.url, allowInsecureHttp: allowInsecureHttp)
        let token = try await user.validAccessToken()
        let first = try await send(request, bearer: token)
        guard (first.1 as? HTTPURLResponse)?.statusCode == 401 else { return first }
        try await UnauthorizedRefreshes.shared.refresh(user, rejected: token)
        // A body stream was read by the first attempt and cannot be read again.
        if request.httpBodyStream != nil && request.httpBody == nil { return first }
        let fresh = try await user.validAccessToken()
        return try await send(request, bearer: fresh)
    }

    /// One attempt: `request` with `token` as its bearer, through `dataTask` (cancelled with the
    /// calling task).
    private func send(_ request: URLRequest, bearer token: String) async throws -> (Data, URLResponse) {
        var request = request
        request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization")
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

/// Only http(s), and plain http only to loopback hosts unless allowed: the rule of the SDK's
/// `allow_insecure_http` for its own server, applied to the app's API.
private func checkDestination(_ url: URL?, allowInsecureHttp: Bool) throws {
    guard let url, let scheme = url.scheme?.lowercased(), scheme == "https" || scheme == "http",
          let host = url.host, !host.isEmpty else {
        throw AppError.InvalidArgument(message: "request.url: must be an http or https URL with a host")
    }
    guard scheme == "http", !allowInsecureHttp, !isLoopback(host) else { return }
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
