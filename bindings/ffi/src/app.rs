//! The App, and the email/password and email one-time-code flows it offers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use sessionkit as sk;
use sk::Credentials;

use crate::foreign::Foreign;

use crate::config::AppConfig;
use crate::errors::AppError;
use crate::events::{
    AuthEventListener, HandlerAdapter, ListenerAdapter, SessionErrorHandler, Subscription,
};
use crate::runtime::{enter, guard, run, runtime};
use crate::user::User;

/// An App Services app, as seen from this device.
#[derive(uniffi::Object)]
pub struct App {
    inner: sk::App,
}

#[uniffi::export]
impl App {
    /// Validates the config, opens the session store and restores its users; no network.
    #[uniffi::constructor]
    pub fn new(config: AppConfig) -> Result<Arc<Self>, AppError> {
        // In the runtime's context: with auto_refresh on, the scheduler starts here.
        enter(|| {
            let inner = sk::App::new(config.try_into()?)?;
            Ok(Arc::new(Self { inner }))
        })
    }

    pub fn app_id(&self) -> String {
        self.inner.app_id()
    }

    pub fn base_url(&self) -> String {
        self.inner.base_url()
    }

    /// Logs in; the user becomes current.
    pub async fn log_in(&self, credentials: Credentials) -> Result<Arc<User>, AppError> {
        let app = self.inner.clone();
        let user = run(async move { app.log_in(credentials).await }).await?;
        Ok(Arc::new(user.into()))
    }

    /// Always a logged-in user, or none.
    pub fn current_user(&self) -> Option<Arc<User>> {
        self.inner.current_user().map(|u| Arc::new(u.into()))
    }

    /// Every user not removed, logged in or out.
    pub fn all_users(&self) -> Vec<Arc<User>> {
        self.inner
            .all_users()
            .into_iter()
            .map(|u| Arc::new(u.into()))
            .collect()
    }

    /// Makes a logged-in user the current one.
    pub fn switch_user(&self, user: Arc<User>) -> Result<(), AppError> {
        guard(|| Ok(self.inner.switch_user(&user.inner)?))
    }

    /// Logs the user out if needed and forgets them on this device.
    pub async fn remove_user(&self, user: Arc<User>) -> Result<(), AppError> {
        let app = self.inner.clone();
        let user = user.inner.clone();
        run(async move { app.remove_user(&user).await }).await
    }

    /// Deletes the account on the server, then on this device.
    pub async fn delete_user(&self, user: Arc<User>) -> Result<(), AppError> {
        let app = self.inner.clone();
        let user = user.inner.clone();
        run(async move { app.delete_user(&user).await }).await
    }

    pub fn email_password_auth(&self) -> Arc<EmailPasswordAuth> {
        Arc::new(EmailPasswordAuth {
            inner: Arc::new(self.inner.email_password_auth()),
        })
    }

    /// Email one-time codes (#23): `send(email)` mails a sign-in code, which then logs in (or
    /// is linked) as `Credentials::EmailOtp`.
    pub fn email_otp(&self) -> Arc<EmailOtpAuth> {
        Arc::new(EmailOtpAuth {
            inner: Arc::new(self.inner.email_otp()),
        })
    }

    /// Every auth event of this app, an `InitialState` first, until the subscription is
    /// cancelled or dropped.
    pub fn subscribe(&self, listener: Arc<dyn AuthEventListener>) -> Arc<Subscription> {
        Subscription::new(
            self.inner
                .subscribe(Arc::new(ListenerAdapter(Foreign::new(listener)))),
        )
    }

    /// Sets (or clears) the token-expiry callback.
    pub fn set_session_error_handler(&self, handler: Option<Arc<dyn SessionErrorHandler>>) {
        self.inner.set_session_error_handler(handler.map(|h| {
            Arc::new(HandlerAdapter(Foreign::new(h))) as Arc<dyn sk::SessionErrorHandler>
        }));
    }

    /// Proactive refresh of logged-in users' access tokens before they expire.
    pub fn set_auto_refresh(&self, on: bool) {
        // Only fails if the runtime cannot start; the core then leaves auto refresh off and
        // logs why.
        let _ = enter(|| {
            self.inner.set_auto_refresh(on);
            Ok(())
        });
    }

    /// Pauses the refresh scheduler.
    pub fn enter_background(&self) {
        self.inner.enter_background();
    }

    /// Resumes the scheduler, refreshing what expired meanwhile.
    pub fn enter_foreground(&self) {
        self.inner.enter_foreground();
    }

    /// Closes the App: new operations fail with `AppClosed`, the refresh scheduler stops,
    /// operations in flight are waited for (at most `request_timeout_ms`) and saved, the
    /// sessions are saved once more, and listeners, the session error handler and the logger
    /// are released: the SDK calls no app code after this returns. Nobody is logged out; a new
    /// App restores every user. Blocks the calling thread until done; called from an SDK
    /// callback (a listener), it closes at once and finishes in the background instead of
    /// waiting for itself. Calling it again does nothing more. (core `App::close`)
    pub fn close(&self) {
        // Boxed as the same task type as every `run`, so spawning it adds no task machinery.
        let closing: Pin<Box<dyn Future<Output = ()> + Send>> = Box::pin(self.inner.close());
        let Ok(rt) = runtime() else {
            return; // no runtime: nothing was ever started that needs stopping
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            rt.spawn(closing);
            return;
        }
        // The wait is bounded inside close(); a panic there must not unwind into the caller.
        let _ = guard(|| {
            rt.block_on(closing);
            Ok(())
        });
    }

    /// True once `close()` was called.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Re-runs location against the new URL; on failure the old one stays.
    pub async fn update_base_url(&self, base_url: String) -> Result<(), AppError> {
        let app = self.inner.clone();
        run(async move { app.update_base_url(&base_url).await }).await
    }
}

/// The email/password provider's flows; none of them logs anyone in.
#[derive(uniffi::Object)]
pub struct EmailPasswordAuth {
    inner: Arc<sk::EmailPasswordAuth>,
}

#[uniffi::export]
impl EmailPasswordAuth {
    pub async fn register_user(&self, email: String, password: String) -> Result<(), AppError> {
        let auth = Arc::clone(&self.inner);
        run(async move { auth.register_user(&email, &password).await }).await
    }
    pub async fn confirm_user(&self, token: String, token_id: String) -> Result<(), AppError> {
        let auth = Arc::clone(&self.inner);
        run(async move { auth.confirm_user(&token, &token_id).await }).await
    }
    pub async fn resend_confirmation_email(&self, email: String) -> Result<(), AppError> {
        let auth = Arc::clone(&self.inner);
        run(async move { auth.resend_confirmation_email(&email).await }).await
    }
    pub async fn retry_custom_confirmation(&self, email: String) -> Result<(), AppError> {
        let auth = Arc::clone(&self.inner);
        run(async move { auth.retry_custom_confirmation(&email).await }).await
    }
    pub async fn send_reset_password_email(&self, email: String) -> Result<(), AppError> {
        let auth = Arc::clone(&self.inner);
        run(async move { auth.send_reset_password_email(&email).await }).await
    }
    pub async fn reset_password(
        &self,
        token: String,
        token_id: String,
        password: String,
    ) -> Result<(), AppError> {
        let auth = Arc::clone(&self.inner);
        run(async move { auth.reset_password(&token, &token_id, &password).await }).await
    }
    pub async fn call_reset_password_function(
        &self,
        email: String,
        password: String,
        args_json: String,
    ) -> Result<(), AppError> {
        let auth = Arc::clone(&self.inner);
        run(async move {
            auth.call_reset_password_function(&email, &password, &args_json)
                .await
        })
        .await
    }
}

/// The email one-time-code provider's request for a code; it logs nobody in (#23).
#[derive(uniffi::Object)]
pub struct EmailOtpAuth {
    inner: Arc<sk::EmailOtpAuth>,
}

#[uniffi::export]
impl EmailOtpAuth {
    /// Asks the server to mail a one-time sign-in code to `email`; returns once it accepted
    /// (HTTP 204, whether or not an account has that address). Errors: `InvalidArgument` (an
    /// empty address), `Service` (400 a malformed address, 429 over the mail rate limit with
    /// `retry_after_secs`), `Network`, `Timeout`, `AppClosed`. (core `EmailOtpAuth::send`)
    pub async fn send(&self, email: String) -> Result<(), AppError> {
        let auth = Arc::clone(&self.inner);
        run(async move { auth.send(&email).await }).await
    }
}
