//! Registration, confirmation and password resets for email/password users.

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};

use crate::context::Context;
use crate::error::{AppError, Result};
use crate::transport::{Auth, Route};

/// The email/password provider's flows. None of them logs anyone in.
pub struct EmailPasswordAuth {
    app: Arc<Context>,
}

impl EmailPasswordAuth {
    pub(crate) fn new(app: Arc<Context>) -> Self {
        Self { app }
    }

    async fn post(&self, path: &str, body: Value) -> Result<()> {
        let _pass = self.app.pass()?;
        let route = Route::App(format!("auth/providers/local-userpass/{path}"));
        self.app
            .transport
            .send(Method::POST, &route, Auth::NONE, Some(&body))
            .await?
            .into_json()?;
        Ok(())
    }

    fn email(email: &str) -> Result<&str> {
        if email.trim().is_empty() {
            return Err(AppError::invalid("email: must not be empty"));
        }
        Ok(email)
    }

    pub async fn register_user(&self, email: &str, password: &str) -> Result<()> {
        self.post(
            "register",
            json!({ "email": Self::email(email)?, "password": password }),
        )
        .await
    }
    /// Confirms a registration with the token pair from the confirmation email.
    pub async fn confirm_user(&self, token: &str, token_id: &str) -> Result<()> {
        self.post("confirm", json!({ "token": token, "tokenId": token_id }))
            .await
    }
    pub async fn resend_confirmation_email(&self, email: &str) -> Result<()> {
        self.post("confirm/send", json!({ "email": Self::email(email)? }))
            .await
    }
    pub async fn retry_custom_confirmation(&self, email: &str) -> Result<()> {
        self.post("confirm/call", json!({ "email": Self::email(email)? }))
            .await
    }
    pub async fn send_reset_password_email(&self, email: &str) -> Result<()> {
        self.post("reset/send", json!({ "email": Self::email(email)? }))
            .await
    }
    /// Sets a new password with the token pair from the reset email.
    pub async fn reset_password(&self, token: &str, token_id: &str, password: &str) -> Result<()> {
        self.post(
            "reset",
            json!({ "password": password, "token": token, "tokenId": token_id }),
        )
        .await
    }
    /// Asks the app's reset function to reset the password; `args_json` is a JSON array.
    pub async fn call_reset_password_function(
        &self,
        email: &str,
        password: &str,
        args_json: &str,
    ) -> Result<()> {
        let args: Value = serde_json::from_str(args_json)
            .map_err(|e| AppError::invalid(format!("args_json: not valid JSON ({e})")))?;
        if !args.is_array() {
            return Err(AppError::invalid("args_json: must be a JSON array"));
        }
        self.post(
            "reset/call",
            json!({ "email": Self::email(email)?, "password": password, "arguments": args }),
        )
        .await
    }
}
