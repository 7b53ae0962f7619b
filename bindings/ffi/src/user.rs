//! A user on this device, and their API keys.

use std::sync::Arc;

use std::time::SystemTime;

use sessionkit as sk;
use sk::{
    ApiKey, Credentials, LogOutScope, SessionDevice, SessionInfo, UserIdentity, UserProfile,
    UserState,
};

use crate::errors::AppError;
use crate::runtime::run;

// The core's user values, as they are (sessionkit's `shared_type!`).
sessionkit::__user_state!(uniffi::remote(Enum));
sessionkit::__user_identity!(uniffi::remote(Record));
sessionkit::__user_profile!(uniffi::remote(Record));
sessionkit::__api_key!(uniffi::remote(Record));
sessionkit::__log_out_scope!(uniffi::remote(Enum));
sessionkit::__session_device!(uniffi::remote(Record));
sessionkit::__session_info!(uniffi::remote(Record));

/// One response header (a list, not a map: a name may repeat).
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct HttpHeader {
    pub name: String,
    pub value: String,
}

/// An HTTP answer from `User::request`, whatever its status.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct HttpResponse {
    /// The HTTP status code.
    pub status: i32,
    pub headers: Vec<HttpHeader>,
    pub body: String,
}

impl From<sk::HttpResponse> for HttpResponse {
    fn from(r: sk::HttpResponse) -> Self {
        Self {
            status: i32::from(r.status),
            headers: r
                .headers
                .into_iter()
                .map(|(name, value)| HttpHeader { name, value })
                .collect(),
            body: r.body,
        }
    }
}

/// A user of the App. Two handles on the same user compare equal.
#[derive(uniffi::Object)]
#[uniffi::export(Eq, Hash, Debug)]
pub struct User {
    pub(crate) inner: sk::User,
}

impl From<sk::User> for User {
    fn from(inner: sk::User) -> Self {
        Self { inner }
    }
}

impl PartialEq for User {
    fn eq(&self, other: &Self) -> bool {
        self.inner == other.inner
    }
}
impl Eq for User {}

impl std::hash::Hash for User {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.id().hash(state);
    }
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&self.inner, f)
    }
}

#[uniffi::export]
impl User {
    pub fn id(&self) -> String {
        self.inner.id()
    }
    pub fn state(&self) -> UserState {
        self.inner.state()
    }
    pub fn provider_type(&self) -> String {
        self.inner.provider_type()
    }
    pub fn device_id(&self) -> String {
        self.inner.device_id()
    }
    pub fn identities(&self) -> Vec<UserIdentity> {
        self.inner.identities()
    }
    pub fn profile(&self) -> UserProfile {
        self.inner.profile()
    }
    /// The `user_data` claim of the current access token, as JSON.
    pub fn custom_data_json(&self) -> Option<String> {
        self.inner.custom_data_json()
    }
    /// As stored; it may be stale. Prefer `valid_access_token`.
    pub fn access_token(&self) -> Option<String> {
        self.inner.access_token()
    }
    pub fn refresh_token(&self) -> Option<String> {
        self.inner.refresh_token()
    }
    /// The RFC 7638 thumbprint of the key the session is bound to with DPoP (the access
    /// tokens' `cnf.jkt`); none for a bearer session. Public, not a secret.
    pub fn dpop_thumbprint(&self) -> Option<String> {
        self.inner.dpop_thumbprint()
    }
    /// A DPoP proof for one request to the app's own API with `access_token` (RFC 9449
    /// section 7): send it as the `DPoP` header with `Authorization: DPoP <access_token>`.
    /// None when the session is not bound (send `Bearer`). `nonce`: the API's `DPoP-Nonce`
    /// when it asked for one. Errors: `Storage` when no proof could be signed.
    #[uniffi::method(default(nonce = None))]
    pub fn dpop_proof(
        &self,
        method: String,
        url: String,
        access_token: String,
        nonce: Option<String>,
    ) -> Result<Option<String>, AppError> {
        Ok(self
            .inner
            .dpop_proof(&method, &url, &access_token, nonce.as_deref())?)
    }

    /// An access token with at least `min_ttl_secs` to live (default: the config's margin),
    /// refreshed first when needed; one refresh however many callers.
    #[uniffi::method(default(min_ttl_secs = None))]
    pub async fn valid_access_token(&self, min_ttl_secs: Option<i32>) -> Result<String, AppError> {
        let min_ttl_secs = min_ttl_secs
            .map(|s| crate::config::non_negative("min_ttl_secs", i64::from(s)))
            .transpose()?;
        // A fresh token is answered here, on the caller's own poll: the hop to the SDK's runtime
        // and back (two cross-thread wake-ups) is only paid when a refresh is due.
        if let Some(token) = self.inner.fresh_access_token(min_ttl_secs) {
            return Ok(token);
        }
        let user = self.inner.clone();
        run(async move { user.valid_access_token(min_ttl_secs).await }).await
    }

    pub async fn refresh_access_token(&self) -> Result<(), AppError> {
        let user = self.inner.clone();
        run(async move { user.refresh_access_token().await }).await
    }

    pub async fn refresh_custom_data(&self) -> Result<Option<String>, AppError> {
        let user = self.inner.clone();
        run(async move { user.refresh_custom_data().await }).await
    }

    pub async fn refresh_profile(&self) -> Result<UserProfile, AppError> {
        let user = self.inner.clone();
        run(async move { user.refresh_profile().await }).await
    }

    /// Adds an identity; anonymous credentials are refused.
    pub async fn link_credentials(&self, credentials: Credentials) -> Result<(), AppError> {
        let user = self.inner.clone();
        run(async move { user.link_credentials(credentials).await }).await
    }

    /// Logs out: this device (`scope` `None` or `ThisDevice`: the tokens are cleared locally
    /// first, then the session is revoked on the server), every other device
    /// (`OtherDevices`), or all of them (`Everywhere`).
    #[uniffi::method(default(scope = None))]
    pub async fn log_out(&self, scope: Option<LogOutScope>) -> Result<(), AppError> {
        let user = self.inner.clone();
        let scope = scope.unwrap_or_default();
        run(async move { user.log_out_scope(scope).await }).await
    }

    /// The user's live sessions on the server, oldest first, this device's marked `current`.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, AppError> {
        let user = self.inner.clone();
        run(async move { user.sessions().await }).await
    }

    /// Ends one of the user's sessions by id (this device's own: a logout here too).
    pub async fn revoke_session(&self, id: String) -> Result<(), AppError> {
        let user = self.inner.clone();
        run(async move { user.revoke_session(&id).await }).await
    }

    /// Calls a server function with a JSON array of arguments; returns its JSON result.
    pub async fn call_function(&self, name: String, args_json: String) -> Result<String, AppError> {
        let user = self.inner.clone();
        run(async move { user.call_function(&name, &args_json).await }).await
    }

    /// Any authenticated request to the app's server (`path` starts with `/`).
    #[uniffi::method(default(body_json = None))]
    pub async fn request(
        &self,
        method: String,
        path: String,
        body_json: Option<String>,
    ) -> Result<HttpResponse, AppError> {
        let user = self.inner.clone();
        run(async move {
            user.request(&method, &path, body_json.as_deref())
                .await
                .map(Into::into)
        })
        .await
    }

    pub fn api_keys(&self) -> Arc<ApiKeyAuth> {
        Arc::new(ApiKeyAuth {
            inner: Arc::new(self.inner.api_keys()),
        })
    }
}

/// Manages one user's API keys.
#[derive(uniffi::Object)]
pub struct ApiKeyAuth {
    // Shared with the spawned tasks.
    inner: Arc<sk::ApiKeyAuth>,
}

#[uniffi::export]
impl ApiKeyAuth {
    /// The returned key carries the secret `key`, this once.
    pub async fn create(&self, name: String) -> Result<ApiKey, AppError> {
        let keys = Arc::clone(&self.inner);
        run(async move { keys.create(&name).await }).await
    }
    pub async fn fetch(&self, id: String) -> Result<ApiKey, AppError> {
        let keys = Arc::clone(&self.inner);
        run(async move { keys.fetch(&id).await }).await
    }
    pub async fn fetch_all(&self) -> Result<Vec<ApiKey>, AppError> {
        let keys = Arc::clone(&self.inner);
        run(async move { keys.fetch_all().await }).await
    }
    pub async fn delete(&self, id: String) -> Result<(), AppError> {
        let keys = Arc::clone(&self.inner);
        run(async move { keys.delete(&id).await }).await
    }
    pub async fn enable(&self, id: String) -> Result<(), AppError> {
        let keys = Arc::clone(&self.inner);
        run(async move { keys.enable(&id).await }).await
    }
    pub async fn disable(&self, id: String) -> Result<(), AppError> {
        let keys = Arc::clone(&self.inner);
        run(async move { keys.disable(&id).await }).await
    }
}
