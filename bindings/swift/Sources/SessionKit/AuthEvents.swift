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

    /// The current user now: `.loggedIn(user)`, or `.loggedOut` when there is none
    /// (`currentUser()`). No network; throws nothing.
    public var sessionState: SessionState { SessionState(of: self) }

    /// The session state as it changes: `.loggedIn(currentUser)` or `.loggedOut`, the value at
    /// the time of the call first, then one value each time an auth event changes who is
    /// current (log in, switch, log out, expiry, removal; a value equal to the last one is not
    /// repeated, so token refreshes yield nothing). Built on `subscribe(listener:)`, so the
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
            // Who is current is asked, not derived from the event: the SDK picks the next
            // current user after a log out, and other users' events change nothing.
            let now = SessionState(of: app)
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

/// Who is current in an App: a value of `App.sessionStates()` and `App.sessionState`. Equal
/// when the users are (User equality is the SDK's: the same user id). As Kotlin's
/// `SessionState` (`LoggedIn(user)` / `LoggedOut`).
public enum SessionState: Equatable, Sendable {
    /// The user is the App's current user, and logged in (the SDK's current user always is).
    case loggedIn(User)
    /// No current user: nobody logged in yet, or the current user logged out, expired or was
    /// removed and no other logged-in user took its place.
    case loggedOut

    /// The current user; nil when `.loggedOut`.
    public var user: User? {
        if case let .loggedIn(user) = self { return user }
        return nil
    }

    /// The state of `app`'s current user now (`App.currentUser()`).
    init(of app: App) {
        self = app.currentUser().map(SessionState.loggedIn) ?? .loggedOut
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
