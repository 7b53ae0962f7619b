//! A user of the App: identity, tokens and the operations that act on one user.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::api_keys::ApiKeyAuth;
use crate::context::Context;
use crate::credentials::Credentials;
use crate::error::{AppError, Result};
use crate::session::{UserIdentity, UserInner, UserState};
use crate::sessions::{self, LogOutScope, SessionInfo};
use crate::transport::{self, Route};

shared_type! {
    $ __user_profile;
    #[derive(Clone, Debug, PartialEq, Eq, Default)]
    =>
    /// The profile from the last profile fetch. The well-known fields are read out of `data_json`.
    pub struct UserProfile {
        pub name: Option<String>,
        pub email: Option<String>,
        pub picture_url: Option<String>,
        pub first_name: Option<String>,
        pub last_name: Option<String>,
        pub gender: Option<String>,
        pub birthday: Option<String>,
        pub min_age: Option<String>,
        pub max_age: Option<String>,
        /// The whole `data` document as JSON.
        pub data_json: String,
    }
}

impl UserProfile {
    pub(crate) fn from_data(data: &Value) -> Self {
        let field = |k: &str| match data.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        Self {
            name: field("name"),
            email: field("email"),
            picture_url: field("picture_url").or_else(|| field("picture")),
            first_name: field("first_name"),
            last_name: field("last_name"),
            gender: field("gender"),
            birthday: field("birthday"),
            min_age: field("min_age"),
            max_age: field("max_age"),
            data_json: if data.is_null() {
                "{}".into()
            } else {
                data.to_string()
            },
        }
    }
}

/// An HTTP answer from [`User::request`], as it came.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// A user of an [`App`](crate::App). Cheap to clone; all clones see the same user.
///
/// ```no_run
/// # async fn demo(app: sessionkit::App) -> sessionkit::Result<()> {
/// use sessionkit::Credentials;
/// let user = app.log_in(Credentials::anonymous()).await?;
/// let token = user.valid_access_token(None).await?; // refreshed first if about to expire
/// # let _ = token;
/// user.log_out().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct User {
    pub(crate) ctx: Arc<Context>,
    pub(crate) inner: Arc<UserInner>,
}

impl PartialEq for User {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.ctx, &other.ctx) && self.inner.id == other.inner.id
    }
}
impl Eq for User {}

impl fmt::Debug for User {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("User")
            .field("id", &self.inner.id)
            .field("state", &self.state())
            .finish()
    }
}

impl User {
    pub(crate) fn new(ctx: Arc<Context>, inner: Arc<UserInner>) -> Self {
        Self { ctx, inner }
    }

    /// The server's id for this user.
    pub fn id(&self) -> String {
        self.inner.id.clone()
    }
    pub fn state(&self) -> UserState {
        self.inner.data().state()
    }
    /// The provider of the login that first created this user on the device.
    pub fn provider_type(&self) -> String {
        self.inner.data().provider_type().to_string()
    }
    pub fn device_id(&self) -> String {
        self.inner.data().device_id().to_string()
    }
    pub fn identities(&self) -> Vec<UserIdentity> {
        self.inner.data().identities().to_vec()
    }
    pub fn profile(&self) -> UserProfile {
        UserProfile::from_data(self.inner.data().profile())
    }
    /// The `user_data` claim of the current access token, as JSON.
    pub fn custom_data_json(&self) -> Option<String> {
        let d = self.inner.data();
        d.access()?.claims.user_data.as_ref().map(Value::to_string)
    }
    /// The access token as stored; it may be stale. Prefer [`valid_access_token`](Self::valid_access_token).
    pub fn access_token(&self) -> Option<String> {
        self.inner.data().access().map(|t| t.raw.clone())
    }
    pub fn refresh_token(&self) -> Option<String> {
        self.inner.data().refresh_token().map(str::to_string)
    }

    /// The RFC 7638 thumbprint of the key this user's session is bound to with DPoP
    /// (`AppConfig::dpop`; the access tokens' `cnf.jkt`), or `None` for a bearer session.
    /// Public, not a secret.
    pub fn dpop_thumbprint(&self) -> Option<String> {
        let d = self.inner.data();
        d.dpop_key().map(|k| k.thumbprint().to_string())
    }

    /// A DPoP proof for one request to the app's own API with `access_token` (RFC 9449
    /// section 7; PROTOCOL.md, "DPoP"): `htm` = `method`, `htu` = `url` without query and
    /// fragment, `ath` of the token, `iat` now, and `nonce` when the API answered a
    /// `DPoP-Nonce`. Send it as the `DPoP` header with `Authorization: DPoP <access_token>`.
    /// `None` when the session is not bound: send `Authorization: Bearer <access_token>`. The
    /// HTTP client hooks of the bindings use it. Errors: `Storage` when no proof could be
    /// signed (the system's random source or the app's `DpopSigner` failed).
    pub fn dpop_proof(
        &self,
        method: &str,
        url: &str,
        access_token: &str,
        nonce: Option<&str>,
    ) -> Result<Option<String>> {
        let Some(key) = self.inner.data().dpop_key().cloned() else {
            return Ok(None);
        };
        key.proof(
            method,
            url,
            Some(access_token),
            nonce,
            self.ctx.clock.unix_now(),
        )
        .map(Some)
        .map_err(|e| AppError::from(transport::Error::Proof(e)))
    }

    /// The stored access token if it has at least `min_ttl_secs` to live (default: the config's
    /// `refresh_margin_secs`), judged exactly as [`valid_access_token`](Self::valid_access_token)
    /// judges it; `None` when a refresh is due. No network, no waiting: for synchronous code,
    /// and the fast path of the bindings.
    pub fn fresh_access_token(&self, min_ttl_secs: Option<u32>) -> Option<String> {
        let min_ttl = min_ttl_secs.map_or(self.ctx.margin, |s| Duration::from_secs(s.into()));
        let d = self.inner.data();
        let token = d.access().filter(|_| d.state() == UserState::LoggedIn)?;
        (!token.needs_refresh(self.ctx.clock.as_ref(), min_ttl)).then(|| token.raw.clone())
    }

    /// An access token with at least `min_ttl_secs` to live (default: the config's
    /// `refresh_margin_secs`), refreshing first when needed. However many callers ask at once,
    /// one refresh request is made. When a refresh fails for a transient reason and the current
    /// token has not expired yet, the current token is returned.
    pub async fn valid_access_token(&self, min_ttl_secs: Option<u32>) -> Result<String> {
        let _pass = self.ctx.pass()?;
        self.ctx.valid_access_token(&self.inner, min_ttl_secs).await
    }

    /// Refreshes the access token now (joining a refresh already in flight).
    pub async fn refresh_access_token(&self) -> Result<()> {
        let _pass = self.ctx.pass()?;
        self.ctx.forced_refresh(&self.inner).await.map(drop)
    }

    /// Refreshes the access token and returns the new custom data.
    pub async fn refresh_custom_data(&self) -> Result<Option<String>> {
        self.refresh_access_token().await?;
        Ok(self.custom_data_json())
    }

    /// Fetches the profile and identities again.
    pub async fn refresh_profile(&self) -> Result<UserProfile> {
        let _pass = self.ctx.pass()?;
        self.ctx.ensure_known(&self.inner)?;
        self.ctx.fetch_profile(&self.inner, true).await?;
        Ok(self.profile())
    }

    /// Adds another way to log in to this user. Anonymous credentials are refused.
    pub async fn link_credentials(&self, credentials: Credentials) -> Result<()> {
        let _pass = self.ctx.pass()?;
        self.ctx.link(&self.inner, credentials).await
    }

    /// Logs the user out: tokens are cleared locally first, then the session is revoked on the
    /// server. An anonymous user becomes `Removed`. The local logout stands even if the server
    /// could not be reached (the error is returned).
    pub async fn log_out(&self) -> Result<()> {
        let _pass = self.ctx.pass()?;
        self.ctx.log_out(&self.inner).await
    }

    /// Ends this device's session ([`LogOutScope::ThisDevice`]: [`User::log_out`]), every
    /// other session of the user (`OtherDevices`: this device stays logged in and hears no
    /// event), or all of them (`Everywhere`: the others on the server first, then this device
    /// as [`User::log_out`] does, with its events). PROTOCOL.md "Sessions of a user".
    ///
    /// Errors: `NotLoggedIn`; for the other scopes, the server's (`Service` with `Forbidden` for
    /// a session logged in with an API key, which may end no other session) or the network's,
    /// in which case nothing changed here, so the call can be repeated; a refresh token the
    /// server no longer takes ends the session as any request does (`SessionExpired`).
    pub async fn log_out_scope(&self, scope: LogOutScope) -> Result<()> {
        if scope == LogOutScope::ThisDevice {
            return self.log_out().await;
        }
        sessions::revoke_beyond_this_device(&self.ctx, &self.inner, scope).await?;
        if scope == LogOutScope::Everywhere {
            self.log_out().await?;
        }
        Ok(())
    }

    /// The user's live sessions on the server, oldest first: every device signed in to the
    /// account, this one marked `current` (PROTOCOL.md "Sessions of a user", sessionkit-server).
    ///
    /// Errors: `NotLoggedIn`; the server's or the network's; `SessionExpired` when the server
    /// no longer takes this device's refresh token.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>> {
        sessions::list(&self.ctx, &self.inner).await
    }

    /// Ends one session of the user by its [`SessionInfo::id`]: that device is refused at its
    /// next request and its next refresh ends its session (`SessionExpired`, `SessionRevoked`).
    /// This device's own id is a [`User::log_out`] here as well.
    ///
    /// Errors: `InvalidArgument` for an id that cannot be one; `Service` with
    /// `SessionNotFound` (404) for an id that is not a live session of this user (another
    /// user's included), `Forbidden` when this session logged in with an API key and the id is
    /// another's; `NotLoggedIn`; the network's.
    pub async fn revoke_session(&self, id: &str) -> Result<()> {
        let own = self
            .refresh_token()
            .and_then(|t| crate::jwt::decode(&t).ok())
            .and_then(|c| c.sid)
            .is_some_and(|sid| sid == id);
        sessions::revoke(&self.ctx, &self.inner, id).await?;
        if own {
            self.log_out().await?;
        }
        Ok(())
    }

    /// Calls a server function with typed arguments (serialized as the JSON array the
    /// protocol sends: a tuple, a `Vec` or an array) and decodes its result into `R`: the
    /// typed form of [`User::call_function`], as Kotlin's `callFunction<T>` and Swift's
    /// `callFunction(_:_:as:)`.
    ///
    /// Errors: `InvalidArgument` when the arguments do not serialize to a JSON array or the
    /// result does not decode into `R`; otherwise those of [`User::call_function`].
    ///
    /// ```no_run
    /// # async fn demo(user: sessionkit::User) -> sessionkit::Result<()> {
    /// let sum: i64 = user.call("sum", &(1, 2, 3)).await?;
    /// assert_eq!(sum, 6);
    /// # Ok(()) }
    /// ```
    pub async fn call<R: serde::de::DeserializeOwned>(
        &self,
        name: &str,
        args: &impl serde::Serialize,
    ) -> Result<R> {
        let args = serde_json::to_string(args)
            .map_err(|e| AppError::invalid(format!("function arguments: {e}")))?;
        let result = self.call_function(name, &args).await?;
        serde_json::from_str(&result).map_err(|e| {
            AppError::invalid(format!(
                "the result of {name} does not decode into the requested type ({e})"
            ))
        })
    }

    /// Calls a server function with a JSON array of arguments; returns its JSON result.
    ///
    /// ```no_run
    /// # async fn demo(user: sessionkit::User) -> sessionkit::Result<()> {
    /// let sum = user.call_function("sum", "[1, 2, 3]").await?;
    /// assert_eq!(sum, "6");
    /// # Ok(()) }
    /// ```
    pub async fn call_function(&self, name: &str, args_json: &str) -> Result<String> {
        let _pass = self.ctx.pass()?;
        if name.is_empty() {
            return Err(AppError::invalid("function name: must not be empty"));
        }
        let args: Value = serde_json::from_str(args_json)
            .map_err(|e| AppError::invalid(format!("args_json: not valid JSON ({e})")))?;
        if !args.is_array() {
            return Err(AppError::invalid(
                "args_json: must be a JSON array of arguments",
            ));
        }
        let body = json!({ "name": name, "arguments": args });
        let response = self
            .ctx
            .authed(
                &self.inner,
                Method::POST,
                Route::App("functions/call".into()),
                Some(&body),
            )
            .await?;
        if let Some(e) = response.error() {
            return Err(e);
        }
        // The result is handed on as the server wrote it, but only if it is JSON at all.
        if let Err(e) = serde_json::from_str::<Value>(&response.body) {
            return Err(AppError::malformed(format!(
                "function {name}: result is not JSON ({e})"
            )));
        }
        Ok(response.body)
    }

    /// Any authenticated request to the app's server (`path` starts with `/`), with the same
    /// refresh rules as every SDK call. The answer comes back whatever its status.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body_json: Option<&str>,
    ) -> Result<HttpResponse> {
        let _pass = self.ctx.pass()?;
        let method = match method.to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "POST" => Method::POST,
            "PUT" => Method::PUT,
            "PATCH" => Method::PATCH,
            "DELETE" => Method::DELETE,
            other => {
                return Err(AppError::invalid(format!(
                    "method: {other:?} is not one of GET, POST, PUT, PATCH, DELETE"
                )));
            }
        };
        // Only paths on the app's own host: the token must never go anywhere else.
        if !path.starts_with('/') || path.starts_with("//") {
            return Err(AppError::invalid(format!(
                "path: {path:?} must be an absolute path such as /api/..."
            )));
        }
        let body = body_json
            .map(|b| {
                serde_json::from_str::<Value>(b)
                    .map_err(|e| AppError::invalid(format!("body_json: not valid JSON ({e})")))
            })
            .transpose()?;
        let r = self
            .ctx
            .authed(&self.inner, method, Route::Host(path.into()), body.as_ref())
            .await?;
        Ok(HttpResponse {
            status: r.status,
            headers: r.headers,
            body: r.body,
        })
    }

    /// This user's API keys.
    pub fn api_keys(&self) -> ApiKeyAuth {
        ApiKeyAuth::new(Arc::clone(&self.ctx), Arc::clone(&self.inner))
    }
}
