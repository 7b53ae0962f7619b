//! Email one-time codes (#23): asking the server to mail a sign-in code. The code itself logs in
//! (or is linked) as [`Credentials::email_otp`](crate::Credentials::email_otp).

use std::sync::Arc;

use reqwest::Method;
use serde_json::json;

use crate::context::Context;
use crate::error::{AppError, Result};
use crate::transport::{Auth, Route};

/// The email one-time-code provider's request for a code (provider `email-otp`, PROTOCOL.md).
/// Sending logs nobody in: the code the user then types goes to
/// [`App::log_in`](crate::App::log_in) or [`User::link_credentials`](crate::User::link_credentials)
/// as [`Credentials::email_otp`](crate::Credentials::email_otp).
pub struct EmailOtpAuth {
    app: Arc<Context>,
}

impl EmailOtpAuth {
    pub(crate) fn new(app: Arc<Context>) -> Self {
        Self { app }
    }

    /// Asks the server to mail a one-time sign-in code to `email`
    /// (`POST .../auth/providers/email-otp/send {"email"}`); returns once the server accepted
    /// the request (HTTP 204). The server answers alike whether or not an account has that
    /// address (no account enumeration), and a new code replaces any earlier one for it; the
    /// code's length and lifetime are the server's `[app.providers.email-otp]` settings.
    ///
    /// Errors: `InvalidArgument` for an empty address (no request is made); `Service` when the
    /// server refuses (HTTP 400 for a malformed address; 429 over its mail rate limit, with
    /// [`AppError::retry_after`] saying how long to wait; 404 `AuthProviderNotFound` when the
    /// app has no email-otp provider); `Network`, `Timeout`; `AppClosed` after [`App::close`](crate::App::close).
    pub async fn send(&self, email: &str) -> Result<()> {
        let _pass = self.app.pass()?;
        if email.trim().is_empty() {
            return Err(AppError::invalid("email: must not be empty"));
        }
        let route = Route::App("auth/providers/email-otp/send".into());
        self.app
            .transport
            .send(
                Method::POST,
                &route,
                Auth::NONE,
                Some(&json!({ "email": email })),
            )
            .await?
            .into_json()?;
        Ok(())
    }
}
