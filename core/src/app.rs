//! The App: one server app, its users on this device, and the operations across them.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::config::AppConfig;
use crate::context::Context;
use crate::credentials::Credentials;
use crate::email_otp::EmailOtpAuth;
use crate::email_password::EmailPasswordAuth;
use crate::error::{AppError, Result};
use crate::log::LogLevel;
use crate::user::User;

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
    inner: Arc<Context>,
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
        let inner = Context::new(&config)?;
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

    /// The context the App's users share (for the faces' own modules, such as `events.rs`).
    pub(crate) fn context(&self) -> &Arc<Context> {
        &self.inner
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
        self.check_same_app(user)?;
        self.inner.switch_user(&user.inner)
    }

    /// Logs the user out if needed and forgets them on this device.
    pub async fn remove_user(&self, user: &User) -> Result<()> {
        let _pass = self.inner.pass()?;
        self.check_same_app(user)?;
        self.inner.remove_user(&user.inner).await
    }

    /// Deletes the user's account on the server, then on this device.
    pub async fn delete_user(&self, user: &User) -> Result<()> {
        let _pass = self.inner.pass()?;
        self.check_same_app(user)?;
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
            inner.set_session_end_sink(None);
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

impl App {
    fn check_same_app(&self, user: &User) -> Result<()> {
        if Arc::ptr_eq(&self.inner, &user.ctx) {
            Ok(())
        } else {
            Err(AppError::not_found("the user belongs to another App"))
        }
    }
}
