//! A client of the admin API (PROTOCOL.md, "Admin API subset"), for `sessionkit-server admin`
//! and for backend code in Rust: log in with the admin key pair, then list, revoke, disable,
//! enable and delete users, and verify tokens.
//!
//! The key pair is a secret: it comes from the config file or from the environment
//! (`SESSIONKIT_ADMIN_PUBLIC_KEY`, `SESSIONKIT_ADMIN_PRIVATE_KEY`), never from a command-line
//! argument, which other users of the machine can read.

use reqwest::Method;
use serde_json::{Value, json};

/// The group id sent in admin paths; the server accepts any.
const GROUP: &str = "sessionkit";

/// Environment variable with the admin public key.
pub const ENV_PUBLIC_KEY: &str = "SESSIONKIT_ADMIN_PUBLIC_KEY";
/// Environment variable with the admin private key.
pub const ENV_PRIVATE_KEY: &str = "SESSIONKIT_ADMIN_PRIVATE_KEY";

/// What went wrong, as the server said it (`code` is its `error_code`) or locally.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The server answered with an error.
    #[error("{message} (server error {code}, HTTP {status})")]
    Server {
        code: String,
        message: String,
        status: u16,
    },
    /// The server could not be reached or answered something unreadable.
    #[error("cannot reach the admin API at {url}: {message}")]
    Unreachable { url: String, message: String },
}

/// A logged-in admin session against one server.
pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl AdminClient {
    /// Logs in at `base_url` (the server's URL, e.g. `http://127.0.0.1:9090`) with the key pair.
    ///
    /// Errors: `Server` with `InvalidSession`/401 for a wrong key pair, `NotFound` when the
    /// admin API is off; `Unreachable` when nothing answers.
    pub async fn log_in(
        base_url: &str,
        public_key: &str,
        private_key: &str,
    ) -> Result<Self, AdminError> {
        let base = base_url.trim_end_matches('/').to_string();
        let mut client = Self {
            http: reqwest::Client::new(),
            base,
            token: String::new(),
        };
        let doc = client
            .send(
                Method::POST,
                "/api/admin/v3.0/auth/providers/mongodb-cloud/login",
                Some(json!({"username": public_key, "apiKey": private_key})),
            )
            .await?;
        client.token = doc["access_token"]
            .as_str()
            .ok_or_else(|| client.unreadable("no access_token in the login answer"))?
            .to_string();
        Ok(client)
    }

    fn unreadable(&self, message: &str) -> AdminError {
        AdminError::Unreachable {
            url: self.base.clone(),
            message: message.to_string(),
        }
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, AdminError> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if !self.token.is_empty() {
            req = req.bearer_auth(&self.token);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| AdminError::Unreachable {
            url: self.base.clone(),
            message: e.without_url().to_string(),
        })?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|_| self.unreadable("the answer could not be read"))?;
        let doc: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).map_err(|_| self.unreadable("the answer is not JSON"))?
        };
        if status >= 400 {
            return Err(AdminError::Server {
                code: doc["error_code"].as_str().unwrap_or("Unknown").to_string(),
                message: doc["error"].as_str().unwrap_or("error").to_string(),
                status,
            });
        }
        Ok(doc)
    }

    fn app_path(app_id: &str, rest: &str) -> String {
        format!("/api/admin/v3.0/groups/{GROUP}/apps/{app_id}{rest}")
    }

    /// Every user of the app, as the admin API lists them (`_id`, `identities`, `disabled`...).
    pub async fn list_users(&self, app_id: &str) -> Result<Vec<Value>, AdminError> {
        let doc = self
            .send(Method::GET, &Self::app_path(app_id, "/users"), None)
            .await?;
        Ok(doc.as_array().cloned().unwrap_or_default())
    }

    /// Revokes every session of the user: their refresh tokens are refused from now on, so
    /// each device learns it at its next refresh (access tokens already issued live on until
    /// they expire). Errors: `UserNotFound`/404.
    pub async fn revoke_sessions(&self, app_id: &str, user_id: &str) -> Result<(), AdminError> {
        self.send(
            Method::PUT,
            &Self::app_path(app_id, &format!("/users/{user_id}/logout")),
            None,
        )
        .await
        .map(drop)
    }

    /// Disables the user (sessions revoked, logins refused) or enables them again.
    pub async fn set_disabled(
        &self,
        app_id: &str,
        user_id: &str,
        disabled: bool,
    ) -> Result<(), AdminError> {
        let op = if disabled { "disable" } else { "enable" };
        self.send(
            Method::PUT,
            &Self::app_path(app_id, &format!("/users/{user_id}/{op}")),
            None,
        )
        .await
        .map(drop)
    }

    /// Deletes the user and their sessions.
    pub async fn delete_user(&self, app_id: &str, user_id: &str) -> Result<(), AdminError> {
        self.send(
            Method::DELETE,
            &Self::app_path(app_id, &format!("/users/{user_id}")),
            None,
        )
        .await
        .map(drop)
    }

    /// Verifies one of the app's tokens: its claims, or the string `"token expired"`.
    /// Errors: `InvalidSession`/401 for a forged token.
    pub async fn verify_token(&self, app_id: &str, token: &str) -> Result<Value, AdminError> {
        self.send(
            Method::POST,
            &Self::app_path(app_id, "/users/verify_token"),
            Some(json!({ "token": token })),
        )
        .await
    }

    /// The app's mail queue (SERVER.md, "Mail"): each mail's `seq`, `kind`, `email`, `status`
    /// (`pending`, `sent`, `failed`), `attempts` and `error`; never a token.
    pub async fn list_mail(&self, app_id: &str) -> Result<Vec<Value>, AdminError> {
        let doc = self
            .send(Method::GET, &Self::app_path(app_id, "/mail"), None)
            .await?;
        Ok(doc.as_array().cloned().unwrap_or_default())
    }

    /// One page of the app's audit events (GET events): `query` is the endpoint's query
    /// string (`user_id=...&kind=login,login_failed&after=...`), already encoded. Returns the
    /// events and the `after` of the next page (`None` on the last).
    pub async fn list_events(
        &self,
        app_id: &str,
        query: &str,
    ) -> Result<(Vec<Value>, Option<i64>), AdminError> {
        let doc = self
            .send(
                Method::GET,
                &Self::app_path(app_id, &format!("/events?{query}")),
                None,
            )
            .await?;
        Ok((
            doc["events"].as_array().cloned().unwrap_or_default(),
            doc["next_after"].as_i64(),
        ))
    }

    /// Sends the app's mail now: its failed mails that can still be sent (their link or code
    /// live) and its pending ones waiting for a try; how many (POST mail/retry).
    pub async fn retry_mail(&self, app_id: &str) -> Result<u64, AdminError> {
        let doc = self
            .send(
                Method::POST,
                &Self::app_path(app_id, "/mail/retry"),
                Some(Value::Object(Default::default())),
            )
            .await?;
        Ok(doc["retried"].as_u64().unwrap_or(0))
    }
}
