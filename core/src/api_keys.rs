//! A user's API keys: long-lived credentials for servers and scripts that log in as that user.

use std::fmt;
use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};

use crate::context::Context;
use crate::error::{AppError, Result};
use crate::session::UserInner;
use crate::transport::{Route, required_str};

shared_type! {
    $ __api_key;
    #[derive(Clone, PartialEq, Eq)]
    =>
    /// An API key. `key` is only present right after creation; `Debug` never shows it.
    pub struct ApiKey {
        pub id: String,
        pub key: Option<String>,
        pub name: String,
        pub disabled: bool,
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("id", &self.id)
            .field("key", &self.key.as_ref().map(|_| "<redacted>"))
            .field("name", &self.name)
            .field("disabled", &self.disabled)
            .finish()
    }
}

impl ApiKey {
    fn parse(doc: &Value) -> Result<Self> {
        Ok(Self {
            id: required_str(doc, "_id", "api key")?,
            key: doc.get("key").and_then(Value::as_str).map(str::to_string),
            name: required_str(doc, "name", "api key")?,
            disabled: doc
                .get("disabled")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        })
    }
}

/// Manages the API keys of one user (requests carry the user's refresh token).
pub struct ApiKeyAuth {
    ctx: Arc<Context>,
    user: Arc<UserInner>,
}

impl ApiKeyAuth {
    pub(crate) fn new(ctx: Arc<Context>, user: Arc<UserInner>) -> Self {
        Self { ctx, user }
    }

    async fn call(&self, method: Method, path: String, body: Option<Value>) -> Result<Value> {
        // A session from an API key cannot manage API keys (the server refuses it too, so a
        // leaked key cannot mint keys that outlive it): nothing is sent. As realm-core.
        if self.user.data().provider_type() == "api-key" {
            return Err(AppError::invalid(
                "API keys cannot be managed by a user logged in with an API key; \
                 log in with another provider first",
            ));
        }
        let _pass = self.ctx.pass()?;
        self.ctx
            .refresh_authed(&self.user, method, Route::Base(path), body.as_ref())
            .await
    }

    fn key_path(id: &str) -> Result<String> {
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(AppError::invalid(format!(
                "api key id: {id:?} is not a key id"
            )));
        }
        Ok(format!("auth/api_keys/{id}"))
    }

    /// Creates a key; the returned `key` is the only time the secret is shown.
    pub async fn create(&self, name: &str) -> Result<ApiKey> {
        if name.trim().is_empty() {
            return Err(AppError::invalid("api key name: must not be empty"));
        }
        ApiKey::parse(
            &self
                .call(
                    Method::POST,
                    "auth/api_keys".into(),
                    Some(json!({ "name": name })),
                )
                .await?,
        )
    }

    pub async fn fetch(&self, id: &str) -> Result<ApiKey> {
        ApiKey::parse(&self.call(Method::GET, Self::key_path(id)?, None).await?)
    }

    pub async fn fetch_all(&self) -> Result<Vec<ApiKey>> {
        let doc = self.call(Method::GET, "auth/api_keys".into(), None).await?;
        doc.as_array()
            .ok_or_else(|| AppError::malformed("api keys: expected an array"))?
            .iter()
            .map(ApiKey::parse)
            .collect()
    }

    pub async fn delete(&self, id: &str) -> Result<()> {
        self.call(Method::DELETE, Self::key_path(id)?, None)
            .await
            .map(drop)
    }

    pub async fn enable(&self, id: &str) -> Result<()> {
        self.call(Method::PUT, format!("{}/enable", Self::key_path(id)?), None)
            .await
            .map(drop)
    }

    pub async fn disable(&self, id: &str) -> Result<()> {
        self.call(
            Method::PUT,
            format!("{}/disable", Self::key_path(id)?),
            None,
        )
        .await
        .map(drop)
    }
}
