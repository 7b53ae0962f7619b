// The idiomatic layer over the generated SessionKit.swift: auth events and session state as
// AsyncStreams, closures for the callbacks.
import Foundation

extension App {
    /// Every auth event of this app, an `.initialState` first; each carries the `User` it is
    /// about (`event.user`, also for a user just removed). The subscription is made when this
    /// is called (so nothing that happens afterwards is missed) and cancelled when the stream
    /// terminates: the consuming task is cancelled, or the stream and its iterators are
    /// released (leaving a `for await` loop alone does not release a stream kept in a
    /// variable). Events are buffered without bound, so the SDK thread delivering them never
    /// waits. Throws nothing.
    public func authEvents() -> AsyncStream<AuthEvent> {
        eventStream({ self.subscribe(listener: $0) }) { event, continuation in continuation.yield(event) }
    }

    /// The session state as it changes: the current user (`currentUser()`) and its state, the
    /// value at the time of the call first, then one value each time an auth event changes it
    /// (a value equal to the last one is not repeated). Built on `subscribe(listener:)`, so the
    /// same rules hold: the subscription is made now and cancelled when the stream terminates
    /// (the consuming task is cancelled, or the stream and its iterators are released); values
    /// are buffered without bound. The stream does not keep the App alive; it finishes at the
    /// first event after the App is released. Throws nothing.
    public func sessionStates() -> AsyncStream<SessionState> {
        let last = LockedValue<SessionState?>(nil)
        // Weak: the SDK holds the listener until the subscription ends, and the App must not be
        // kept alive by its own listener.
        return eventStream({ self.subscribe(listener: $0) }) { [weak self] _, continuation in
            // A released App has no current user to report any more: the stream finishes.
            guard let app = self else { return continuation.finish() }
            let user = app.currentUser()
            let now = SessionState(user: user, state: user?.state())
            // Read and yielded under one lock, so that two deliveries cannot reorder values.
            last.mutate { last in
                if last != now {
                    last = now
                    continuation.yield(now)
                }
            }
        }
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
        eventStream({ self.subscribe(listener: $0) }) { event, continuation in continuation.yield(event) }
    }

    /// This user's state as it changes (`.loggedIn`, `.loggedOut`, `.removed`): the state at the
    /// time of the call first, then one value each time one of the user's auth events changes
    /// it (a value equal to the last one is not repeated). After `.removed` the stream finishes,
    /// since a removed user never changes again. Cancelling the consuming task or releasing the
    /// stream cancels the subscription (see `App.authEvents()`). The stream keeps this handle
    /// (and so the user's App) alive until it ends. Throws nothing.
    public func states() -> AsyncStream<UserState> {
        let last = LockedValue<UserState?>(nil)
        // Strong, unlike sessionStates()'s App: a User handle is often a temporary
        // (`app.currentUser()?.states()`), and the stream must outlive it.
        return eventStream({ self.subscribe(listener: $0) }) { _, continuation in
            let now = self.state()
            last.mutate { last in
                if last != now {
                    last = now
                    continuation.yield(now)
                }
            }
            if now == .removed { continuation.finish() }
        }
    }

    /// `subscribe(listener:)` with a closure; cancel the returned subscription to stop.
    public func subscribe(_ onEvent: @escaping @Sendable (AuthEvent) -> Void) -> Subscription {
        subscribe(listener: ClosureListener(onEvent))
    }

    /// An access token with at least `minTtlSecs` seconds to live (default: the config's
    /// `refreshMarginSecs`), refreshed first when needed: `validAccessToken(minTtlSecs:)`.
    /// Throws `AppError.InvalidArgument` for a negative `minTtlSecs` (from the FFI), and what
    /// `validAccessToken` throws (`SessionExpired`, `Network`, ...).
    public func freshAccessToken(minTtlSecs: Int32? = nil) async throws -> String {
        try await validAccessToken(minTtlSecs: minTtlSecs)
    }
}

/// One value of `App.sessionStates()`: who the current user is, and that user's state.
public struct SessionState: Equatable, Sendable {
    /// The current user (`App.currentUser()`), nil when no user is logged in.
    public let user: User?
    /// `user`'s state when the value was taken: `.loggedIn` (the SDK keeps only a logged-in user
    /// current), nil when there is no current user.
    public let state: UserState?

    /// Whether a user is logged in and current.
    public var isLoggedIn: Bool { state == .loggedIn }

    /// A value as `App.sessionStates()` yields it.
    public init(user: User?, state: UserState?) {
        self.user = user
        self.state = state
    }
}

/// A stream fed by an auth-event listener: `body` turns each event into values. The
/// subscription is made at once (so nothing that happens afterwards is missed) and cancelled
/// when the stream terminates, whichever way; buffered without bound, so the SDK thread that
/// delivers never waits on the consumer.
private func eventStream<Element>(
    _ subscribe: (AuthEventListener) -> Subscription,
    _ body: @escaping @Sendable (AuthEvent, AsyncStream<Element>.Continuation) -> Void
) -> AsyncStream<Element> {
    AsyncStream(Element.self, bufferingPolicy: .unbounded) { continuation in
        let subscription = subscribe(StreamListener { body($0, continuation) })
        continuation.onTermination = { @Sendable _ in subscription.cancel() }
    }
}

/// A mutex-guarded value, for state shared with the SDK threads that deliver events.
final class LockedValue<T>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: T
    init(_ value: T) { self.value = value }
    var get: T { lock.lock(); defer { lock.unlock() }; return value }
    func mutate<R>(_ body: (inout T) -> R) -> R { lock.lock(); defer { lock.unlock() }; return body(&value) }
}

/// The listener behind a stream. `live` counts those the SDK still holds, so that the tests can
/// see that a terminated stream really released its subscription.
final class StreamListener: AuthEventListener, @unchecked Sendable {
    static let live = LockedValue(0)
    private let body: @Sendable (AuthEvent) -> Void
    init(_ body: @escaping @Sendable (AuthEvent) -> Void) {
        self.body = body
        StreamListener.live.mutate { $0 += 1 }
    }
    deinit { StreamListener.live.mutate { $0 -= 1 } }
    func onEvent(event: AuthEvent) throws { body(event) }
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
