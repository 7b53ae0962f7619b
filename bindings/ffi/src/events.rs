//! Auth events, the token-expiry callback, and subscriptions.

use std::sync::{Arc, Mutex};

use sessionkit as sk;
use sk::{AuthEventKind, SessionError};

use crate::errors::AppError;
use crate::foreign::{self, Foreign};
use crate::user::User;

sessionkit::__auth_event_kind!(uniffi::remote(Enum));

/// One auth event. `error` is the failure as text, never with a token in it.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct AuthEvent {
    pub kind: AuthEventKind,
    pub user_id: Option<String>,
    /// The user the event is about, ready to use: also for a user just removed or deleted
    /// (its state then reads `Removed`). As realm-kotlin's `AuthenticationChange` carries it.
    pub user: Option<Arc<User>>,
    pub user_initiated: bool,
    pub error: Option<String>,
    pub will_retry: bool,
}

impl From<sk::AuthEvent> for AuthEvent {
    fn from(e: sk::AuthEvent) -> Self {
        Self {
            kind: e.kind,
            user_id: e.user_id,
            user: e.user.map(|u| Arc::new(User::from(u))),
            user_initiated: e.user_initiated,
            error: e.error,
            will_retry: e.will_retry,
        }
    }
}

/// Receives auth events, on an SDK thread; keep it quick.
#[uniffi::export(foreign)]
pub trait AuthEventListener: Send + Sync {
    fn on_event(&self, event: AuthEvent) -> Result<(), AppError>;
}

/// The token-expiry callback: called once each time a user's session ends for good.
#[uniffi::export(foreign)]
pub trait SessionErrorHandler: Send + Sync {
    fn on_session_error(&self, user: Arc<User>, error: SessionError) -> Result<(), AppError>;
}

pub(crate) struct ListenerAdapter(pub(crate) Foreign<Arc<dyn AuthEventListener>>);

impl sk::AuthEventListener for ListenerAdapter {
    fn on_event(&self, event: sk::AuthEvent) {
        // A listener that raises must not stop delivery to the others.
        foreign::call(|| self.0.on_event(event.into()));
    }
}

pub(crate) struct HandlerAdapter(pub(crate) Foreign<Arc<dyn SessionErrorHandler>>);

impl sk::SessionErrorHandler for HandlerAdapter {
    fn on_session_error(&self, user: sk::User, error: sk::SessionError) {
        foreign::call(|| self.0.on_session_error(Arc::new(User::from(user)), error));
    }
}

/// Keeps a listener subscribed until `cancel()` or until it is dropped.
#[derive(uniffi::Object)]
pub struct Subscription {
    // Taken on cancel, so the listener (and what it holds) is released at once.
    inner: Mutex<Option<sk::Subscription>>,
}

impl Subscription {
    pub(crate) fn new(inner: sk::Subscription) -> Arc<Self> {
        Arc::new(Self {
            inner: Mutex::new(Some(inner)),
        })
    }
}

#[uniffi::export]
impl Subscription {
    /// Stops delivery to this listener; calling it again does nothing.
    pub fn cancel(&self) {
        let taken = self.inner.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(sub) = taken {
            sub.cancel();
        }
    }
}

// In this module rather than user.rs, which events.rs imports for `AuthEvent::user`: the
// modules import each other one way only (docs/ARCHITECTURE.md).
#[uniffi::export]
impl User {
    /// This user's events (an `InitialState` first) until the subscription is cancelled or
    /// dropped.
    pub fn subscribe(&self, listener: Arc<dyn AuthEventListener>) -> Arc<Subscription> {
        Subscription::new(
            self.inner
                .subscribe(Arc::new(ListenerAdapter(Foreign::new(listener)))),
        )
    }
}
