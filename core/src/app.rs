//! The App: one server app, its users on this device, and the operations across them.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::clock::{Clock, SystemClock};
use crate::config::{AppConfig, StorageConfig};
use crate::credentials::Credentials;
use crate::email_otp::EmailOtpAuth;
use crate::email_password::EmailPasswordAuth;
use crate::error::{AppError, Result};
use crate::events::{
    AuthEvent, AuthEventKind, AuthEventListener, EventHub, SessionErrorHandler, Subscription,
};
use crate::lifecycle::{Lifecycle, Pass};
use crate::log::{Log, LogLevel};
use crate::persist::Synced;
use crate::refresh::Backoff;
use crate::storage::{FileStore, InMemoryStore, SessionStore};
use crate::transport::{ApiResponse, Route, Transport, required_str};
use crate::user::{AccessToken, User, UserData, UserIdentity, UserInner, UserState};

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
                .filter(|u| u.data().state == UserState::LoggedIn)
                .cloned()
        };
        self.current
            .as_deref()
            .and_then(logged_in)
            .or_else(|| self.recent.iter().find_map(|id| logged_in(id)))
            .or_else(|| {
                self.users
                    .iter()
                    .find(|u| u.data().state == UserState::LoggedIn)
                    .cloned()
            })
    }

    fn make_current(&mut self, id: &str) {
        self.current = Some(id.to_string());
        self.recent.retain(|r| r != id);
        self.recent.insert(0, id.to_string());
    }

    pub(crate) fn forget(&mut self, id: &str) {
        self.users.retain(|u| u.id != id);
        self.recent.retain(|r| r != id);
    }

    /// Re-picks the current user after a change; the event to send if it changed.
    pub(crate) fn settle_current(&mut self, before: Option<String>) -> Option<AuthEvent> {
        let after = self.current().map(|u| u.id.clone());
        self.current = after.clone();
        (before != after)
            .then(|| AuthEvent::new(AuthEventKind::CurrentUserChanged, after.as_deref(), false))
    }
}

pub(crate) struct AppInner {
    pub app_id: String,
    pub transport: Transport,
    pub clock: Arc<dyn Clock>,
    pub log: Log,
    pub margin: Duration,
    pub device: crate::config::DeviceInfo,
    pub(crate) store: Arc<dyn SessionStore>,
    registry: Mutex<Registry>,
    /// What was last saved; its lock also serialises saves, so a later snapshot is never
    /// overwritten by an earlier one.
    synced: Mutex<Synced>,
    /// Why the store was reset at start, if it was: told to every new subscriber.
    storage_warning: Mutex<Option<String>>,
    pub events: Arc<EventHub>,
    error_handler: RwLock<Option<Arc<dyn SessionErrorHandler>>>,
    pub auto_refresh: AtomicBool,
    pub background: AtomicBool,
    pub scheduler_wake: Arc<tokio::sync::Notify>,
    /// Bumped each time a scheduler starts; an older loop that sees a newer one ends.
    pub scheduler_generation: std::sync::atomic::AtomicU64,
    /// Held by an anonymous login with `reuse` from its check to its end.
    anonymous_reuse: tokio::sync::Mutex<()>,
    /// Open or closed, and the operations in flight that closing waits for.
    lifecycle: Arc<Lifecycle>,
    /// How long closing waits for operations in flight: no request takes longer.
    close_deadline: Duration,
}

/// An App Services app, as seen from this device.
///
/// ```no_run
/// # async fn demo() -> sessionkit::Result<()> {
/// use sessionkit::{App, AppConfig, Credentials};
/// let app = App::new(AppConfig::new("sessionkit-dev", "http://127.0.0.1:9090"))?;
/// let user = app.log_in(Credentials::email_password("ada@example.com", "s3cret-pw")).await?;
/// assert_eq!(app.current_user(), Some(user));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct App {
    inner: Arc<AppInner>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("app_id", &self.inner.app_id)
            .field("base_url", &self.base_url())
            .finish()
    }
}

impl App {
    /// Checks the config, opens the session store and restores its users. No network.
    pub fn new(config: AppConfig) -> Result<Self> {
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
        )?;
        let inner = Arc::new(AppInner {
            app_id: config.app_id.clone(),
            transport,
            clock,
            log,
            margin: Duration::from_secs(config.refresh_margin_secs.into()),
            device: config.device.clone(),
            store,
            registry: Mutex::new(Registry::default()),
            synced: Mutex::new(Synced::default()),
            storage_warning: Mutex::new(None),
            events: Arc::new(EventHub::default()),
            error_handler: RwLock::new(None),
            auto_refresh: AtomicBool::new(false),
            background: AtomicBool::new(false),
            scheduler_wake: Arc::new(tokio::sync::Notify::new()),
            scheduler_generation: std::sync::atomic::AtomicU64::new(0),
            anonymous_reuse: tokio::sync::Mutex::new(()),
            lifecycle: Arc::default(),
            close_deadline: Duration::from_millis(config.request_timeout_ms),
        });
        inner.events.bind(Arc::downgrade(&inner));
        let warning = inner.restore()?;
        *inner
            .storage_warning
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = warning;
        let app = Self { inner };
        if config.auto_refresh {
            app.set_auto_refresh(true);
        }
        Ok(app)
    }

    pub fn app_id(&self) -> String {
        self.inner.app_id.clone()
    }
    pub fn base_url(&self) -> String {
        self.inner.transport.base_url()
    }

    /// Logs in; the user becomes current. Anonymous credentials with `reuse` hand back the
    /// logged-in anonymous user, if there is one, without a network call.
    pub async fn log_in(&self, credentials: Credentials) -> Result<User> {
        let _pass = self.inner.pass()?;
        let user = self.inner.log_in(credentials).await?;
        Ok(User::new(Arc::clone(&self.inner), user))
    }

    /// The current user: always a logged-in user, or none.
    pub fn current_user(&self) -> Option<User> {
        let current = self.inner.registry().current();
        current.map(|u| User::new(Arc::clone(&self.inner), u))
    }

    /// Every user on this device that was not removed, logged in or not.
    pub fn all_users(&self) -> Vec<User> {
        let users = self.inner.registry().users.clone();
        users
            .into_iter()
            .map(|u| User::new(Arc::clone(&self.inner), u))
            .collect()
    }

    /// Makes a logged-in user the current one.
    pub fn switch_user(&self, user: &User) -> Result<()> {
        let _pass = self.inner.pass()?;
        self.inner.check_same_app(user)?;
        self.inner.switch_user(&user.inner)
    }

    /// Logs the user out if needed and forgets them on this device.
    pub async fn remove_user(&self, user: &User) -> Result<()> {
        let _pass = self.inner.pass()?;
        self.inner.check_same_app(user)?;
        self.inner.remove_user(&user.inner).await
    }

    /// Deletes the user's account on the server, then on this device.
    pub async fn delete_user(&self, user: &User) -> Result<()> {
        let _pass = self.inner.pass()?;
        self.inner.check_same_app(user)?;
        self.inner.delete_user(&user.inner).await
    }

    /// Registration, confirmation and password resets for email/password users.
    pub fn email_password_auth(&self) -> EmailPasswordAuth {
        EmailPasswordAuth::new(Arc::clone(&self.inner))
    }

    /// Email one-time codes (#23): [`EmailOtpAuth::send`] mails a sign-in code, which then
    /// logs in as [`Credentials::email_otp`].
    pub fn email_otp(&self) -> EmailOtpAuth {
        EmailOtpAuth::new(Arc::clone(&self.inner))
    }

    /// Delivers every auth event of this app (an `InitialState` first) until the subscription
    /// is dropped.
    pub fn subscribe(&self, listener: Arc<dyn AuthEventListener>) -> Subscription {
        let current = self.current_user().map(|u| u.id());
        let warning = self.storage_warning();
        self.inner
            .events
            .subscribe(None, current, warning, listener)
    }

    /// Why the session store was reset when the App started, if it was: the stored document
    /// could not be read (corrupt, wrong key, unknown version) and was set aside. The same
    /// text is the `error` of every subscriber's `InitialState` event.
    pub fn storage_warning(&self) -> Option<String> {
        self.inner
            .storage_warning
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets (or clears) the callback told when a user's session ends for good.
    pub fn set_session_error_handler(&self, handler: Option<Arc<dyn SessionErrorHandler>>) {
        *self
            .inner
            .error_handler
            .write()
            .unwrap_or_else(|e| e.into_inner()) = handler;
    }

    /// Turns the proactive refresh of logged-in users' access tokens on or off. Does nothing
    /// once the App is closed.
    pub fn set_auto_refresh(&self, on: bool) {
        if self.inner.is_closed() {
            return;
        }
        let was = self.inner.auto_refresh.swap(on, Ordering::SeqCst);
        if on && !was {
            crate::refresh::start_scheduler(&self.inner);
        }
        self.inner.scheduler_wake.notify_one();
    }

    /// Pauses proactive refresh (the app went to the background).
    pub fn enter_background(&self) {
        self.inner.background.store(true, Ordering::SeqCst);
        self.inner.scheduler_wake.notify_one();
    }

    /// Resumes proactive refresh, refreshing at once whatever expired meanwhile.
    pub fn enter_foreground(&self) {
        self.inner.background.store(false, Ordering::SeqCst);
        self.inner.scheduler_wake.notify_one();
    }

    /// Closes the App: ends its background work and saves its sessions, so a process can end
    /// without losing anything and without the SDK calling into app code afterwards.
    ///
    /// What it does, in order: new operations fail with [`AppError::AppClosed`] from now on; the
    /// proactive refresh scheduler stops; operations already in flight (a login, a refresh, a
    /// logout) are waited for, at most `request_timeout_ms`, so their results are saved; the
    /// sessions are saved once more; then every subscription, the session error handler and
    /// the logger are dropped, after any event being delivered on another thread has been
    /// delivered. Events still queued are dropped. Nothing is logged out: a new `App` with the
    /// same storage restores every user.
    ///
    /// Calling it again only waits (as long) for operations still in flight. Getters (`current_user`,
    /// `access_token`...) keep answering from memory. Like `close()` on realm-kotlin's `App`.
    ///
    /// The closing steps up to the wait run before this returns its future, so an App is
    /// closed for new operations even if the future is never awaited.
    pub fn close(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let first = self.inner.lifecycle.begin_close();
        if first {
            // The scheduler sees the closed lifecycle when woken, and ends.
            self.inner.auto_refresh.store(false, Ordering::SeqCst);
            self.inner.scheduler_wake.notify_one();
        }
        let inner = Arc::clone(&self.inner);
        async move {
            let left = inner.lifecycle.wait_idle(inner.close_deadline).await;
            if !first {
                return;
            }
            if left > 0 {
                inner.log.log(LogLevel::Warn, "sessionkit::app", || {
                    format!(
                        "closing with {left} operation(s) still in flight after {} ms; \
                         what they change later is saved when they end",
                        inner.close_deadline.as_millis()
                    )
                });
            }
            inner.persist();
            inner.events.close(inner.close_deadline);
            *inner
                .error_handler
                .write()
                .unwrap_or_else(|e| e.into_inner()) = None;
            inner.log.close();
        }
    }

    /// True once [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Points the app at another server; location is looked up there first, and on failure the
    /// old URL stays.
    pub async fn update_base_url(&self, base_url: &str) -> Result<()> {
        let _pass = self.inner.pass()?;
        Ok(self.inner.transport.update_base_url(base_url).await?)
    }
}

impl AppInner {
    /// Sets the `user` of the events about `user`, for when it can no longer be looked up.
    fn attach_user(self: &Arc<Self>, events: &mut [AuthEvent], user: &Arc<UserInner>) {
        for e in events.iter_mut() {
            if e.user_id.as_deref() == Some(user.id.as_str()) {
                e.user = Some(User::new(self.clone(), user.clone()));
            }
        }
    }

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

    fn check_same_app(self: &Arc<Self>, user: &User) -> Result<()> {
        if Arc::ptr_eq(self, &user.app) {
            Ok(())
        } else {
            Err(AppError::not_found("the user belongs to another App"))
        }
    }

    /// The user must still be on this device.
    pub(crate) fn ensure_known(&self, user: &Arc<UserInner>) -> Result<()> {
        match self.registry().find(&user.id) {
            Some(u) if Arc::ptr_eq(u, user) => Ok(()),
            _ => Err(AppError::not_found(format!(
                "user {} is no longer on this device",
                user.id
            ))),
        }
    }

    fn handler(&self) -> Option<Arc<dyn SessionErrorHandler>> {
        self.error_handler
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn session_error_handler(&self) -> Option<Arc<dyn SessionErrorHandler>> {
        self.handler()
    }

    // ---- login, link, profile ------------------------------------------------------------

    fn login_body(&self, credentials: &Credentials) -> Result<Value> {
        let mut body = credentials.body()?;
        let d = &self.device;
        let mut device = json!({
            "appId": self.app_id,
            "platform": d.platform,
            "platformVersion": d.platform_version,
            "sdk": d.sdk,
            "sdkVersion": d.sdk_version,
            "cpuArch": d.cpu_arch,
        });
        for (key, value) in [
            ("deviceName", &d.device_name),
            ("deviceVersion", &d.device_version),
            ("frameworkName", &d.framework_name),
            ("frameworkVersion", &d.framework_version),
            ("bundleId", &d.bundle_id),
            ("appVersion", &d.app_version),
        ] {
            if let Some(v) = value {
                device[key] = json!(v);
            }
        }
        body.insert("options".into(), json!({ "device": device }));
        Ok(Value::Object(body))
    }

    async fn log_in(self: &Arc<Self>, credentials: Credentials) -> Result<Arc<UserInner>> {
        // Reuse means one anonymous user per app on this device: concurrent reusing logins
        // wait for each other, so the second finds the user the first created.
        let _reusing = match credentials {
            Credentials::Anonymous { reuse: true } => {
                let guard = self.anonymous_reuse.lock().await;
                if let Some(user) = self.logged_in_anonymous() {
                    self.switch_user(&user)?;
                    return Ok(user);
                }
                Some(guard)
            }
            _ => None,
        };
        let body = self.login_body(&credentials)?;
        let route = Route::App(format!("auth/providers/{}/login", credentials.provider()));
        let doc = self
            .transport
            .send(Method::POST, &route, None, Some(&body))
            .await?
            .into_json()?;
        let user_id = required_str(&doc, "user_id", "login")?;
        let access = required_str(&doc, "access_token", "login")?;
        let refresh = required_str(&doc, "refresh_token", "login")?;
        let device_id = required_str(&doc, "device_id", "login")?;
        let access =
            AccessToken::received(access, self.clock.as_ref()).map_err(|e| AppError::BadToken {
                message: format!(
                    "could not log in: the server sent a malformed access token ({e})"
                ),
            })?;
        let (user, current_changed) =
            self.upsert_user(user_id, access, refresh, device_id, &credentials.provider());
        self.persist();
        let mut events = vec![AuthEvent::new(
            AuthEventKind::SignedIn,
            Some(&user.id),
            true,
        )];
        events.extend(current_changed.map(|mut e| {
            e.user_initiated = true;
            e
        }));
        self.events.emit_all(events);
        // A new session for the proactive scheduler to look after.
        self.scheduler_wake.notify_one();
        // realm-core: login, then profile, then the user is made current.
        self.fetch_profile(&user).await?;
        self.switch_user(&user)?;
        Ok(user)
    }

    fn logged_in_anonymous(&self) -> Option<Arc<UserInner>> {
        let reg = self.registry();
        let found = reg.users.iter().find(|u| {
            let d = u.data();
            d.state == UserState::LoggedIn && d.is_anonymous()
        });
        found.cloned()
    }

    /// Creates the user, or gives an existing one (even logged out) its new session. Returns
    /// the event to send if that changed who is current (a first user becomes current at once).
    fn upsert_user(
        &self,
        id: String,
        access: AccessToken,
        refresh: String,
        device_id: String,
        provider: &str,
    ) -> (Arc<UserInner>, Option<AuthEvent>) {
        let mut reg = self.registry();
        let before = reg.current().map(|u| u.id.clone());
        let user = self.upsert_in(&mut reg, id, access, refresh, device_id, provider);
        let event = reg.settle_current(before);
        (user, event)
    }

    fn upsert_in(
        &self,
        reg: &mut Registry,
        id: String,
        access: AccessToken,
        refresh: String,
        device_id: String,
        provider: &str,
    ) -> Arc<UserInner> {
        if let Some(user) = reg.find(&id).cloned() {
            let mut d = user.data();
            d.state = UserState::LoggedIn;
            d.access = Some(access);
            d.refresh = Some(refresh);
            d.token_gen += 1;
            d.device_id = device_id;
            d.session += 1;
            d.backoff = Backoff::default();
            drop(d);
            return user;
        }
        let user = Arc::new(UserInner::new(
            id,
            UserData {
                state: UserState::LoggedIn,
                access: Some(access),
                refresh: Some(refresh),
                device_id,
                provider_type: provider.to_string(),
                identities: Vec::new(),
                profile: json!({}),
                session: 0,
                token_gen: 0,
                backoff: Backoff::default(),
            },
        ));
        reg.users.push(Arc::clone(&user));
        user
    }

    /// GET the profile and keep its identities and data.
    pub(crate) async fn fetch_profile(self: &Arc<Self>, user: &Arc<UserInner>) -> Result<()> {
        let doc = self
            .authed(user, Method::GET, Route::Base("auth/profile".into()), None)
            .await?
            .into_json()?;
        let identities = doc
            .get("identities")
            .and_then(Value::as_array)
            .ok_or_else(|| AppError::malformed("profile: missing array field \"identities\""))?
            .iter()
            .map(|i| {
                Ok(UserIdentity {
                    id: required_str(i, "id", "profile identity")?,
                    provider_type: required_str(i, "provider_type", "profile identity")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let data = doc
            .get("data")
            .filter(|d| d.is_object())
            .cloned()
            .ok_or_else(|| AppError::malformed("profile: missing object field \"data\""))?;
        {
            let mut d = user.data();
            d.identities = identities;
            d.profile = data;
        }
        self.persist();
        Ok(())
    }

    pub(crate) fn emit_profile_updated(&self, user: &Arc<UserInner>) {
        self.events.emit(AuthEvent::new(
            AuthEventKind::ProfileUpdated,
            Some(&user.id),
            true,
        ));
    }

    pub(crate) async fn link(
        self: &Arc<Self>,
        user: &Arc<UserInner>,
        credentials: Credentials,
    ) -> Result<()> {
        self.ensure_known(user)?;
        let session = {
            let d = user.data();
            if d.state != UserState::LoggedIn {
                return Err(AppError::not_logged_in(
                    "the user must be logged in to link credentials",
                ));
            }
            d.session
        };
        if let Credentials::Anonymous { .. } = credentials {
            return Err(AppError::ClientUserAlreadyNamed {
                message: "cannot add anonymous credentials to an existing user".into(),
            });
        }
        let body = self.login_body(&credentials)?;
        let route = Route::App(format!(
            "auth/providers/{}/login?link=true",
            credentials.provider()
        ));
        let doc = self
            .authed(user, Method::POST, route, Some(&body))
            .await?
            .into_json()?;
        if let Some(linked) = doc.get("user_id").and_then(Value::as_str)
            && linked != user.id
        {
            return Err(AppError::malformed(format!(
                "link: the server linked user {linked}, not {}",
                user.id
            )));
        }
        let access = AccessToken::received(
            required_str(&doc, "access_token", "link")?,
            self.clock.as_ref(),
        )?;
        {
            let mut d = user.data();
            if d.session != session || d.state != UserState::LoggedIn {
                return Err(AppError::not_logged_in("the user logged out while linking"));
            }
            d.access = Some(access);
            d.token_gen += 1;
        }
        self.persist();
        self.fetch_profile(user).await?;
        self.emit_profile_updated(user);
        self.switch_user(user)
    }

    // ---- switching, logging out, removing, deleting ---------------------------------------

    fn switch_user(&self, user: &Arc<UserInner>) -> Result<()> {
        if user.data().state != UserState::LoggedIn {
            return Err(AppError::not_logged_in(
                "the user is logged out or removed; log in again first",
            ));
        }
        let event = {
            let mut reg = self.registry();
            if !reg.find(&user.id).is_some_and(|u| Arc::ptr_eq(u, user)) {
                return Err(AppError::not_found("the user is not on this device"));
            }
            let before = reg.current().map(|u| u.id.clone());
            reg.make_current(&user.id);
            reg.settle_current(before)
        };
        self.persist();
        if let Some(mut e) = event {
            e.user_initiated = true;
            self.events.emit(e);
        }
        Ok(())
    }

    /// Ends a user's session locally: tokens cleared, state set, current user re-picked, the
    /// change saved. Returns the refresh token it held and the events to send.
    pub(crate) fn end_locally(
        &self,
        user: &Arc<UserInner>,
        state: UserState,
        only_session: Option<u64>,
    ) -> Option<(Option<String>, Option<AuthEvent>)> {
        let mut reg = self.registry();
        let before = reg.current().map(|u| u.id.clone());
        let refresh = {
            let mut d = user.data();
            if only_session.is_some_and(|s| s != d.session) || d.state == UserState::Removed {
                return None;
            }
            d.end(state)
        };
        if state == UserState::Removed {
            reg.forget(&user.id);
        }
        let event = reg.settle_current(before);
        drop(reg);
        self.persist();
        Some((refresh, event))
    }

    pub(crate) async fn log_out(self: &Arc<Self>, user: &Arc<UserInner>) -> Result<()> {
        let target = {
            let d = user.data();
            let target = if d.is_anonymous() {
                UserState::Removed
            } else {
                UserState::LoggedOut
            };
            if d.state == UserState::Removed || d.state == target {
                return Ok(());
            }
            target
        };
        let Some((refresh, current_changed)) = self.end_locally(user, target, None) else {
            return Ok(());
        };
        let mut events = vec![AuthEvent::new(
            AuthEventKind::SignedOut,
            Some(&user.id),
            true,
        )];
        if target == UserState::Removed {
            events.push(AuthEvent::new(
                AuthEventKind::UserRemoved,
                Some(&user.id),
                true,
            ));
        }
        events.extend(current_changed);
        // The user may be gone from the registry: these events carry the handle themselves.
        self.attach_user(&mut events, user);
        self.events.emit_all(events);
        match refresh {
            Some(token) => self.revoke(&token).await,
            None => Ok(()),
        }
    }

    /// DELETE the session on the server. A token the server already forgot is fine.
    async fn revoke(&self, refresh_token: &str) -> Result<()> {
        let response = self
            .transport
            .send(
                Method::DELETE,
                &Route::Base("auth/session".into()),
                Some(refresh_token),
                None,
            )
            .await?;
        if response.status == 401 {
            return Ok(());
        }
        response.into_json()?;
        Ok(())
    }

    async fn remove_user(self: &Arc<Self>, user: &Arc<UserInner>) -> Result<()> {
        if user.data().state == UserState::Removed {
            return Err(AppError::not_found("the user has already been removed"));
        }
        self.ensure_known(user)?;
        let was_logged_in = user.data().state == UserState::LoggedIn;
        let Some((refresh, current_changed)) = self.end_locally(user, UserState::Removed, None)
        else {
            return Err(AppError::not_found("the user has already been removed"));
        };
        let mut events = Vec::new();
        if was_logged_in {
            events.push(AuthEvent::new(
                AuthEventKind::SignedOut,
                Some(&user.id),
                true,
            ));
        }
        events.push(AuthEvent::new(
            AuthEventKind::UserRemoved,
            Some(&user.id),
            true,
        ));
        events.extend(current_changed);
        // The user may be gone from the registry: these events carry the handle themselves.
        self.attach_user(&mut events, user);
        self.events.emit_all(events);
        match refresh {
            Some(token) => self.revoke(&token).await,
            None => Ok(()),
        }
    }

    async fn delete_user(self: &Arc<Self>, user: &Arc<UserInner>) -> Result<()> {
        self.ensure_known(user)?;
        if user.data().state != UserState::LoggedIn {
            return Err(AppError::not_logged_in(
                "the user must be logged in to be deleted",
            ));
        }
        self.authed(
            user,
            Method::DELETE,
            Route::Base("auth/delete".into()),
            None,
        )
        .await?
        .into_json()?;
        let current_changed = self
            .end_locally(user, UserState::Removed, None)
            .and_then(|(_, e)| e);
        let mut events = vec![AuthEvent::new(
            AuthEventKind::UserDeleted,
            Some(&user.id),
            true,
        )];
        events.extend(current_changed);
        // The user may be gone from the registry: these events carry the handle themselves.
        self.attach_user(&mut events, user);
        self.events.emit_all(events);
        Ok(())
    }

    // ---- authenticated requests -----------------------------------------------------------

    /// A request with the user's access token: a fresh token first, and on 401 one refresh and
    /// one replay. A second 401 is returned as it came.
    pub(crate) async fn authed(
        self: &Arc<Self>,
        user: &Arc<UserInner>,
        method: Method,
        route: Route,
        body: Option<&Value>,
    ) -> Result<ApiResponse> {
        let token = self.valid_access_token(user, None).await?;
        let response = self
            .transport
            .send(method.clone(), &route, Some(&token), body)
            .await?;
        if response.status != 401 {
            return Ok(response);
        }
        match self.refresh_after_401(user, &token).await {
            Ok(fresh) => Ok(self
                .transport
                .send(method, &route, Some(&fresh), body)
                .await?),
            Err(e @ AppError::SessionExpired { .. }) => Err(e),
            Err(_) => Ok(response),
        }
    }

    /// A request with the user's refresh token (the API key endpoints). A 401 means the refresh
    /// token is dead: the session ends as it would on a failed refresh.
    pub(crate) async fn refresh_authed(
        self: &Arc<Self>,
        user: &Arc<UserInner>,
        method: Method,
        route: Route,
        body: Option<&Value>,
    ) -> Result<Value> {
        self.ensure_known(user)?;
        let (token, session) = {
            let d = user.data();
            match (&d.refresh, d.state) {
                (Some(t), UserState::LoggedIn) => (t.clone(), d.session),
                _ => return Err(AppError::not_logged_in("the user must be logged in")),
            }
        };
        let response = self
            .transport
            .send(method, &route, Some(&token), body)
            .await?;
        if response.ends_session() {
            return Err(self.session_rejected(user, session, &response));
        }
        if response.status == 401 {
            return Err(response.stray_401("request with the refresh token"));
        }
        Ok(response.into_json()?)
    }
}
