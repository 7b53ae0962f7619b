//! Auth events: what happened to which user, delivered in order to every subscriber.
//!
//! Delivery never happens under the SDK's locks. Events go into a queue; whichever thread finds
//! nobody delivering becomes the deliverer until the queue is empty. A listener that calls back
//! into the SDK (even one that emits more events) therefore neither deadlocks nor reorders.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, OnceLock, Weak};
use std::thread::ThreadId;
use std::time::Duration;

use crate::app::AppInner;
use crate::error::SessionError;
use crate::user::User;

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuthEventKind {
    /// First event to every new subscriber: the state at the time of subscribing.
    InitialState,
    SignedIn,
    TokenRefreshed,
    /// Logged out by the app (`log_out`, `remove_user`).
    SignedOut,
    /// The refresh token was rejected; the user must log in again.
    SessionExpired,
    /// A refresh failed for a transient reason; tokens were kept.
    RefreshFailed,
    UserRemoved,
    UserDeleted,
    CurrentUserChanged,
    ProfileUpdated,
}

/// One auth event. `error` is the failure as text, never with a token in it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthEvent {
    pub kind: AuthEventKind,
    pub user_id: Option<String>,
    /// The user the event is about, as a handle (so a listener needs no lookup): also for a
    /// user just removed or deleted, whose state then reads `Removed`. `None` when `user_id`
    /// is, and when the App was dropped meanwhile. realm-kotlin's `AuthenticationChange` and
    /// supabase-kt's session status carry the user the same way.
    pub user: Option<User>,
    /// True when the app asked for this (log in, log out, switch); false for the SDK's own work.
    pub user_initiated: bool,
    pub error: Option<String>,
    /// For `RefreshFailed`: whether the SDK will try again by itself.
    pub will_retry: bool,
}

impl AuthEvent {
    pub(crate) fn new(kind: AuthEventKind, user_id: Option<&str>, user_initiated: bool) -> Self {
        Self {
            kind,
            user_id: user_id.map(str::to_string),
            user: None,
            user_initiated,
            error: None,
            will_retry: false,
        }
    }
}

/// Receives auth events. Called on whichever thread delivers; keep it quick.
pub trait AuthEventListener: Send + Sync {
    fn on_event(&self, event: AuthEvent);
}

impl<F: Fn(AuthEvent) + Send + Sync> AuthEventListener for F {
    fn on_event(&self, event: AuthEvent) {
        self(event)
    }
}

/// The token-expiry callback: called exactly once each time a user's session ends for good, so
/// the app can send that user to the login screen.
pub trait SessionErrorHandler: Send + Sync {
    fn on_session_error(&self, user: User, error: SessionError);
}

impl<F: Fn(User, SessionError) + Send + Sync> SessionErrorHandler for F {
    fn on_session_error(&self, user: User, error: SessionError) {
        self(user, error)
    }
}

struct Listener {
    id: u64,
    user_filter: Option<String>,
    listener: Arc<dyn AuthEventListener>,
}

#[derive(Default)]
struct HubState {
    listeners: Vec<Listener>,
    next_id: u64,
    /// Events waiting, each for everyone (`None`) or for one new subscriber.
    queue: VecDeque<(AuthEvent, Option<u64>)>,
    /// The thread delivering, if one is.
    deliverer: Option<ThreadId>,
    /// After `App::close`: nothing is queued or delivered any more.
    closed: bool,
}

/// The App's event fan-out.
#[derive(Default)]
pub(crate) struct EventHub {
    state: Mutex<HubState>,
    /// Told when a deliverer stops.
    delivered: Condvar,
    /// The App, to hand events a `User`: weak, because the App owns this hub.
    app: OnceLock<Weak<AppInner>>,
}

impl EventHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lets events carry `User` handles; called once, when the App is built.
    pub(crate) fn bind(&self, app: Weak<AppInner>) {
        let _ = self.app.set(app);
    }

    /// A handle on a user the App still knows. Never called under the hub's lock.
    fn resolve(&self, user_id: &str) -> Option<User> {
        let app = self.app.get()?.upgrade()?;
        let inner = app.registry().find(user_id).cloned()?;
        Some(User::new(app, inner))
    }

    fn with_user(&self, mut event: AuthEvent) -> AuthEvent {
        if event.user.is_none() {
            event.user = event.user_id.as_deref().and_then(|id| self.resolve(id));
        }
        event
    }

    /// Registers a listener and queues its `InitialState` ahead of anything emitted later.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        user_filter: Option<String>,
        initial_user: Option<String>,
        initial_error: Option<String>,
        listener: Arc<dyn AuthEventListener>,
    ) -> Subscription {
        let initial_handle = initial_user.as_deref().and_then(|id| self.resolve(id));
        let id = {
            let mut st = self.lock();
            if st.closed {
                // A closed App delivers nothing; the listener is dropped at once.
                return Subscription {
                    hub: Weak::new(),
                    id: 0,
                };
            }
            st.next_id += 1;
            let id = st.next_id;
            st.listeners.push(Listener {
                id,
                user_filter,
                listener,
            });
            let mut initial =
                AuthEvent::new(AuthEventKind::InitialState, initial_user.as_deref(), false);
            initial.error = initial_error;
            initial.user = initial_handle;
            st.queue.push_back((initial, Some(id)));
            id
        };
        self.deliver();
        Subscription {
            hub: Arc::downgrade(self),
            id,
        }
    }

    pub(crate) fn emit(&self, event: AuthEvent) {
        self.emit_all([event]);
    }

    pub(crate) fn emit_all(&self, events: impl IntoIterator<Item = AuthEvent>) {
        // Resolved before the hub's lock is taken: the registry's lock is never taken under it.
        let events: Vec<AuthEvent> = events.into_iter().map(|e| self.with_user(e)).collect();
        {
            let mut st = self.lock();
            if st.closed {
                return;
            }
            st.queue.extend(events.into_iter().map(|e| (e, None)));
        }
        self.deliver();
    }

    /// Drops every listener and queued event; later events go nowhere. A delivery in progress
    /// on another thread is waited for (at most `deadline`), so that no listener is running
    /// once this returns and the last reference to each listener is released here, on the
    /// closing thread. Called by the deliverer itself (a listener closing the App), it does
    /// not wait for itself.
    pub(crate) fn close(&self, deadline: Duration) {
        let mut st = self.lock();
        st.closed = true;
        // Dropped with the listeners, after the lock: queued events hold `User` handles.
        let queued = std::mem::take(&mut st.queue);
        let listeners = std::mem::take(&mut st.listeners);
        let me = std::thread::current().id();
        let until = std::time::Instant::now() + deadline;
        while st.deliverer.is_some_and(|t| t != me) {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            st = self
                .delivered
                .wait_timeout(st, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        drop(st);
        drop(listeners);
        drop(queued);
    }

    fn deliver(&self) {
        let mut st = self.lock();
        if st.deliverer.is_some() {
            return; // the thread already delivering will reach our events
        }
        st.deliverer = Some(std::thread::current().id());
        while let Some((event, target)) = st.queue.pop_front() {
            let targets: Vec<Arc<dyn AuthEventListener>> = st
                .listeners
                .iter()
                .filter(|l| match target {
                    Some(id) => l.id == id,
                    None => match &l.user_filter {
                        None => true,
                        Some(uid) => event.user_id.as_deref() == Some(uid.as_str()),
                    },
                })
                .map(|l| Arc::clone(&l.listener))
                .collect();
            drop(st);
            for listener in targets {
                // A panicking listener must not wedge delivery for everyone else.
                let ev = event.clone();
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    listener.on_event(ev)
                }));
            }
            st = self.lock();
        }
        st.deliverer = None;
        drop(st);
        self.delivered.notify_all();
    }

    fn unsubscribe(&self, id: u64) {
        self.lock().listeners.retain(|l| l.id != id);
    }
}

/// Keeps a listener subscribed; dropping it (or calling [`cancel`](Self::cancel)) unsubscribes.
#[must_use = "dropping the Subscription unsubscribes at once"]
pub struct Subscription {
    hub: Weak<EventHub>,
    id: u64,
}

impl Subscription {
    /// Stops delivery to this listener.
    pub fn cancel(&self) {
        if let Some(hub) = self.hub.upgrade() {
            hub.unsubscribe(self.id);
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.cancel();
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .finish()
    }
}
