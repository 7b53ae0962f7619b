//! The context every operation runs in: server connection, clock, session store, the users on
//! this device, the event hub and the config values, in one place that knows neither `App` nor
//! `User` (docs/ARCHITECTURE.md). The operations (`persist`, `refresh`, `login`, `logout`,
//! `request`, ...) are `impl Context` blocks in their own modules; `App` and `User` are thin
//! faces that hold an `Arc<Context>`.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::config::{AppConfig, DeviceInfo, StorageConfig};
use crate::dpop::DpopSigner;
use crate::error::{AppError, Result, SessionError};
use crate::hub::{AuthEventKind, Event, EventHub};
use crate::lifecycle::{Lifecycle, Pass};
use crate::log::Log;
use crate::session::{UserInner, UserState};
use crate::storage::{FileStore, InMemoryStore, SessionStore, Synced};
use crate::transport::Transport;

/// The users on this device, in the order they first logged in.
#[derive(Default)]
pub(crate) struct Registry {
    pub users: Vec<Arc<UserInner>>,
    /// The user the app chose last; only ever a logged-in user.
    pub current: Option<String>,
    /// Most recently used first: who becomes current when the current user goes.
    pub recent: Vec<String>,
}

impl Registry {
    pub(crate) fn find(&self, id: &str) -> Option<&Arc<UserInner>> {
        self.users.iter().find(|u| u.id == id)
    }

    /// The current user: the chosen one if still logged in, else the most recently used
    /// logged-in user, else the first logged-in user.
    pub(crate) fn current(&self) -> Option<Arc<UserInner>> {
        let logged_in = |id: &str| {
            self.find(id)
                .filter(|u| u.data().state() == UserState::LoggedIn)
                .cloned()
        };
        self.current
            .as_deref()
            .and_then(logged_in)
            .or_else(|| self.recent.iter().find_map(|id| logged_in(id)))
            .or_else(|| {
                self.users
                    .iter()
                    .find(|u| u.data().state() == UserState::LoggedIn)
                    .cloned()
            })
    }

    pub(crate) fn make_current(&mut self, id: &str) {
        self.current = Some(id.to_string());
        self.recent.retain(|r| r != id);
        self.recent.insert(0, id.to_string());
    }

    pub(crate) fn forget(&mut self, id: &str) {
        self.users.retain(|u| u.id != id);
        self.recent.retain(|r| r != id);
    }

    /// Re-picks the current user after a change; the event to send if it changed.
    pub(crate) fn settle_current(&mut self, before: Option<String>) -> Option<Event> {
        let after = self.current().map(|u| u.id.clone());
        self.current = after.clone();
        (before != after)
            .then(|| Event::new(AuthEventKind::CurrentUserChanged, after.as_deref(), false))
    }
}

/// Told when a user's session ended for good (the face wraps the app's
/// `SessionErrorHandler` in one, turning the record into a `User`).
pub(crate) trait SessionEndSink: Send + Sync {
    fn session_ended(&self, ctx: &Arc<Context>, user: &Arc<UserInner>, error: SessionError);
}

/// What every operation needs, and nothing that is `App` or `User`: the server connection, the
/// clock, the session store and what was last synced with it, the users on this device, the
/// event hub, the session-end callback, the config values the operations read, and whether the
/// App is open. `App` and each `User` hold it in an `Arc`.
pub(crate) struct Context {
    pub app_id: String,
    pub transport: Transport,
    pub clock: Arc<dyn Clock>,
    pub log: Log,
    pub margin: Duration,
    pub device: DeviceInfo,
    /// `AppConfig::dpop`: logins ask for sessions bound to a new key.
    pub dpop: bool,
    /// `AppConfig::dpop_signer`: makes and holds the keys when the app has its own key store.
    pub dpop_signer: Option<Arc<dyn DpopSigner>>,
    pub(crate) store: Arc<dyn SessionStore>,
    registry: Mutex<Registry>,
    /// What was last saved; its lock also serialises saves, so a later snapshot is never
    /// overwritten by an earlier one.
    synced: Mutex<Synced>,
    /// Why the store was reset at start, if it was: told to every new subscriber.
    pub storage_warning: Mutex<Option<String>>,
    pub events: Arc<EventHub>,
    /// The app's `SessionErrorHandler`, wrapped by the face.
    session_end: RwLock<Option<Arc<dyn SessionEndSink>>>,
    pub auto_refresh: AtomicBool,
    pub background: AtomicBool,
    pub scheduler_wake: Arc<tokio::sync::Notify>,
    /// Bumped each time a scheduler starts; an older loop that sees a newer one ends.
    pub scheduler_generation: std::sync::atomic::AtomicU64,
    /// Held by an anonymous login with `reuse` from its check to its end.
    pub anonymous_reuse: tokio::sync::Mutex<()>,
    /// Open or closed, and the operations in flight that closing waits for.
    pub lifecycle: Arc<Lifecycle>,
    /// How long closing waits for operations in flight: no request takes longer.
    pub close_deadline: Duration,
}

impl Context {
    /// Checks the config and opens the session store; no user is restored yet (that is
    /// `restore`, in persist.rs). Errors: `InvalidArgument`, `InsecureUrl` for a bad config,
    /// `Storage` when the file store cannot be opened.
    pub(crate) fn new(config: &AppConfig) -> Result<Arc<Self>> {
        config.validate()?;
        let log = Log::new(config.logger.clone());
        let clock = config
            .clock
            .clone()
            .unwrap_or_else(|| Arc::new(SystemClock::new()));
        let store: Arc<dyn SessionStore> = match &config.storage {
            StorageConfig::InMemory => Arc::new(InMemoryStore::new()),
            StorageConfig::Custom(store) => Arc::clone(store),
            StorageConfig::File {
                dir,
                encryption_key,
            } => {
                let key = encryption_key
                    .as_deref()
                    .map(|k| <[u8; 32]>::try_from(k).expect("validate() checked the key length"));
                Arc::new(FileStore::new(dir, &config.app_id, key).map_err(|e| {
                    AppError::Storage {
                        message: e.to_string(),
                    }
                })?)
            }
        };
        let transport = Transport::new(
            &config.app_id,
            &config.base_url,
            Duration::from_millis(config.request_timeout_ms),
            config.allow_insecure_http,
            config.max_response_bytes,
            log.clone(),
            Arc::clone(&clock),
        )?;
        Ok(Arc::new(Self {
            app_id: config.app_id.clone(),
            transport,
            clock,
            log,
            margin: Duration::from_secs(config.refresh_margin_secs.into()),
            device: config.device.clone(),
            dpop: config.dpop,
            dpop_signer: config.dpop_signer.clone(),
            store,
            registry: Mutex::new(Registry::default()),
            synced: Mutex::new(Synced::default()),
            storage_warning: Mutex::new(None),
            events: Arc::new(EventHub::default()),
            session_end: RwLock::new(None),
            auto_refresh: AtomicBool::new(false),
            background: AtomicBool::new(false),
            scheduler_wake: Arc::new(tokio::sync::Notify::new()),
            scheduler_generation: std::sync::atomic::AtomicU64::new(0),
            anonymous_reuse: tokio::sync::Mutex::new(()),
            lifecycle: Arc::default(),
            close_deadline: Duration::from_millis(config.request_timeout_ms),
        }))
    }

    /// The users on this device, locked. Never held while events are emitted.
    pub(crate) fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A pass for one operation that may change stored state; `AppClosed` once closed.
    pub(crate) fn pass(&self) -> Result<Pass> {
        self.lifecycle.enter()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lifecycle.is_closed()
    }

    pub(crate) fn synced(&self) -> MutexGuard<'_, Synced> {
        self.synced.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The user must still be on this device. Errors: `ClientUserNotFound`.
    pub(crate) fn ensure_known(&self, user: &Arc<UserInner>) -> Result<()> {
        match self.registry().find(&user.id) {
            Some(u) if Arc::ptr_eq(u, user) => Ok(()),
            _ => Err(AppError::not_found(format!(
                "user {} is no longer on this device",
                user.id
            ))),
        }
    }

    pub(crate) fn session_end_sink(&self) -> Option<Arc<dyn SessionEndSink>> {
        self.session_end
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_session_end_sink(&self, sink: Option<Arc<dyn SessionEndSink>>) {
        *self.session_end.write().unwrap_or_else(|e| e.into_inner()) = sink;
    }

    /// Sets the user of the events about `user`, for when it can no longer be looked up.
    pub(crate) fn attach_user(events: &mut [Event], user: &Arc<UserInner>) {
        for e in events.iter_mut() {
            if e.user_id.as_deref() == Some(user.id.as_str()) {
                e.user = Some(Arc::clone(user));
            }
        }
    }

    pub(crate) fn emit(&self, event: Event) {
        self.emit_all(vec![event]);
    }

    /// Sends `events` to the subscribers. Each gets its user's record first (unless the
    /// operation attached it): looked up here, before the hub's lock is taken, so the registry's
    /// lock is never taken under it.
    pub(crate) fn emit_all(&self, events: impl IntoIterator<Item = Event>) {
        let mut events: Vec<Event> = events.into_iter().collect();
        {
            let reg = self.registry();
            for e in events.iter_mut().filter(|e| e.user.is_none()) {
                e.user = e.user_id.as_deref().and_then(|id| reg.find(id).cloned());
            }
        }
        self.events.emit_all(events);
    }
}
