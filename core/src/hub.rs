//! The event hub: auth events queued and delivered in order to every subscriber.
//!
//! Delivery never happens under the SDK's locks. Events go into a queue; whichever thread finds
//! nobody delivering becomes the deliverer until the queue is empty. A listener that calls back
//! into the SDK (even one that emits more events) therefore neither deadlocks nor reorders.
//!
//! The hub knows user records, not `User` handles: the public face (`events.rs`) registers
//! sinks that turn an [`Event`] into the app's `AuthEvent`.

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::thread::ThreadId;
use std::time::Duration;

pub(crate) use crate::session::AuthEventKind;
use crate::session::{Announcement, UserInner};

/// One auth event as the SDK's layers make it: what happened (the [`Announcement`]) to whom.
/// The face turns it into the public `AuthEvent`, with a `User` handle made from `user`.
#[derive(Clone)]
pub(crate) struct Event {
    pub user_id: Option<String>,
    /// The record of the user the event is about: attached when the event is emitted (looked
    /// up by id, or given by the operation when the user has left the registry).
    pub user: Option<Arc<UserInner>>,
    pub what: Announcement,
}

impl Event {
    pub(crate) fn new(kind: AuthEventKind, user_id: Option<&str>, user_initiated: bool) -> Self {
        Self {
            user_id: user_id.map(str::to_string),
            user: None,
            what: Announcement::new(kind, user_initiated),
        }
    }

    /// The event `announcement` about `user`. Its record is attached when it is emitted
    /// (`Context::emit_all`), or by the operation for a user that has left the registry.
    pub(crate) fn about(user: &UserInner, announcement: Announcement) -> Self {
        Self {
            user_id: Some(user.id.clone()),
            user: None,
            what: announcement,
        }
    }
}

/// Where the hub delivers: the face's adapter around an app's `AuthEventListener`.
pub(crate) trait Sink: Send + Sync {
    fn deliver(&self, event: &Event);
}

struct Listener {
    id: u64,
    user_filter: Option<String>,
    listener: Arc<dyn Sink>,
}

#[derive(Default)]
struct HubState {
    listeners: Vec<Listener>,
    next_id: u64,
    /// Events waiting, each for everyone (`None`) or for one new subscriber.
    queue: VecDeque<(Event, Option<u64>)>,
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
}

impl EventHub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a listener and queues its `InitialState` ahead of anything emitted later.
    pub(crate) fn subscribe(
        self: &Arc<Self>,
        user_filter: Option<String>,
        initial: Event,
        listener: Arc<dyn Sink>,
    ) -> Subscription {
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
            st.queue.push_back((initial, Some(id)));
            id
        };
        self.deliver();
        Subscription {
            hub: Arc::downgrade(self),
            id,
        }
    }

    /// Queues `events` for every subscriber (each filtered by its user) and delivers them,
    /// unless another thread is delivering already. Their users are attached by the caller
    /// (`Context::emit_all`), so no other lock is taken under the hub's.
    pub(crate) fn emit_all(&self, events: Vec<Event>) {
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
        // Dropped with the listeners, after the lock: queued events hold user records.
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
            let targets: Vec<Arc<dyn Sink>> = st
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
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    listener.deliver(&event)
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
