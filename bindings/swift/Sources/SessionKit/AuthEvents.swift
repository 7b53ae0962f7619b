// The idiomatic layer over the generated SessionKit.swift: auth events as an AsyncSequence,
// closures for the callbacks.
import Foundation

extension App {
    /// Every auth event of this app, an `.initialState` first. The subscription is made when
    /// this is called (so nothing that happens afterwards is missed) and cancelled when the
    /// stream terminates: the consuming task is cancelled, or the stream is dropped. Events are
    /// buffered without bound, so the SDK thread delivering them never waits.
    public func authEvents() -> AsyncStream<AuthEvent> {
        authEventStream { self.subscribe(listener: $0) }
    }

    /// Sets the token-expiry callback: called once, on an SDK thread, each time a user's
    /// refresh token is rejected. The user is already logged out: show the login screen.
    public func onSessionError(_ handler: @escaping @Sendable (User, SessionError) -> Void) {
        setSessionErrorHandler(handler: ClosureSessionErrorHandler(handler))
    }

    /// `subscribe(listener:)` with a closure; cancel the returned subscription to stop.
    public func subscribe(_ onEvent: @escaping @Sendable (AuthEvent) -> Void) -> Subscription {
        subscribe(listener: ClosureListener(onEvent))
    }
}

extension User {
    /// This user's events only, an `.initialState` first; see `App.authEvents()`.
    public func authEvents() -> AsyncStream<AuthEvent> {
        authEventStream { self.subscribe(listener: $0) }
    }

    /// `subscribe(listener:)` with a closure; cancel the returned subscription to stop.
    public func subscribe(_ onEvent: @escaping @Sendable (AuthEvent) -> Void) -> Subscription {
        subscribe(listener: ClosureListener(onEvent))
    }

    /// An access token with at least `minTtlSecs` to live, refreshed first when needed.
    public func freshAccessToken(minTtlSecs: Int32? = nil) async throws -> String {
        try await validAccessToken(minTtlSecs: minTtlSecs)
    }
}

private func authEventStream(_ subscribe: (AuthEventListener) -> Subscription) -> AsyncStream<AuthEvent> {
    AsyncStream(AuthEvent.self, bufferingPolicy: .unbounded) { continuation in
        let subscription = subscribe(StreamListener(continuation))
        continuation.onTermination = { @Sendable _ in subscription.cancel() }
    }
}

private final class StreamListener: AuthEventListener, @unchecked Sendable {
    private let continuation: AsyncStream<AuthEvent>.Continuation
    init(_ continuation: AsyncStream<AuthEvent>.Continuation) { self.continuation = continuation }
    func onEvent(event: AuthEvent) throws { continuation.yield(event) }
}

private final class ClosureListener: AuthEventListener, @unchecked Sendable {
    private let body: @Sendable (AuthEvent) -> Void
    init(_ body: @escaping @Sendable (AuthEvent) -> Void) { self.body = body }
    func onEvent(event: AuthEvent) throws { body(event) }
}

private final class ClosureSessionErrorHandler: SessionErrorHandler, @unchecked Sendable {
    private let body: @Sendable (User, SessionError) -> Void
    init(_ body: @escaping @Sendable (User, SessionError) -> Void) { self.body = body }
    func onSessionError(user: User, error: SessionError) throws { body(user, error) }
}

/// A `SessionStore` from two closures (for example over the Keychain).
public final class ClosureSessionStore: SessionStore, @unchecked Sendable {
    private let loader: @Sendable () throws -> Data?
    private let saver: @Sendable (Data) throws -> Void
    public init(load: @escaping @Sendable () throws -> Data?, save: @escaping @Sendable (Data) throws -> Void) {
        loader = load
        saver = save
    }
    public func load() throws -> Data? { try loader() }
    public func save(bytes: Data) throws { try saver(bytes) }
}
