//! Auth events as the app sees them: [`AuthEvent`] with its `User` handle, the listener and
//! session-error callbacks, and the `subscribe` calls of `App` and `User`. Delivery itself is
//! the hub's (`hub.rs`); here the hub's events get their `User` handles on the way out.

use std::sync::{Arc, Weak};

use crate::app::App;
use crate::context::{Context, SessionEndSink};
use crate::error::SessionError;
use crate::hub::{AuthEventKind, Event, Sink, Subscription};
use crate::session::UserInner;
use crate::user::User;

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

/// Turns the hub's events into `AuthEvent`s for one app listener. Holds the context weakly: the
/// context owns the hub, which owns this.
struct ListenerSink {
    ctx: Weak<Context>,
    listener: Arc<dyn AuthEventListener>,
}

impl Sink for ListenerSink {
    fn deliver(&self, event: &Event) {
        let user = event
            .user
            .as_ref()
            .and_then(|record| Some(User::new(self.ctx.upgrade()?, Arc::clone(record))));
        self.listener.on_event(AuthEvent {
            kind: event.what.kind,
            user_id: event.user_id.clone(),
            user,
            user_initiated: event.what.user_initiated,
            error: event.what.error.clone(),
            will_retry: event.what.will_retry,
        });
    }
}

/// The app's `SessionErrorHandler` as the refresh engine calls it.
struct HandlerSink(Arc<dyn SessionErrorHandler>);

impl SessionEndSink for HandlerSink {
    fn session_ended(&self, ctx: &Arc<Context>, user: &Arc<UserInner>, error: SessionError) {
        self.0
            .on_session_error(User::new(Arc::clone(ctx), Arc::clone(user)), error);
    }
}

/// Registers `listener` with the context's hub, its `InitialState` about `initial_user`.
fn subscribe(
    ctx: &Arc<Context>,
    user_filter: Option<String>,
    initial_user: Option<String>,
    initial_error: Option<String>,
    listener: Arc<dyn AuthEventListener>,
) -> Subscription {
    let mut initial = Event::new(AuthEventKind::InitialState, initial_user.as_deref(), false);
    initial.what.error = initial_error;
    initial.user = initial_user.and_then(|id| ctx.registry().find(&id).cloned());
    let sink = Arc::new(ListenerSink {
        ctx: Arc::downgrade(ctx),
        listener,
    });
    ctx.events.subscribe(user_filter, initial, sink)
}

impl App {
    /// Delivers every auth event of this app (an `InitialState` first) until the subscription
    /// is dropped.
    pub fn subscribe(&self, listener: Arc<dyn AuthEventListener>) -> Subscription {
        let current = self.current_user().map(|u| u.id());
        subscribe(
            self.context(),
            None,
            current,
            self.storage_warning(),
            listener,
        )
    }

    /// Sets (or clears) the callback told when a user's session ends for good.
    pub fn set_session_error_handler(&self, handler: Option<Arc<dyn SessionErrorHandler>>) {
        let sink = handler.map(|h| Arc::new(HandlerSink(h)) as Arc<dyn SessionEndSink>);
        self.context().set_session_end_sink(sink);
    }
}

impl User {
    /// Delivers this user's events (an `InitialState` first) until the subscription is dropped.
    pub fn subscribe(&self, listener: Arc<dyn AuthEventListener>) -> Subscription {
        let id = self.id();
        subscribe(&self.ctx, Some(id.clone()), Some(id), None, listener)
    }
}
