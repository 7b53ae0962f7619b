//! A user on this device, and their API keys.

use std::sync::Arc;

use sessionkit as sk;

use crate::foreign::Foreign;

use crate::config::Credentials;
use crate::errors::AppError;
use crate::events::{AuthEventListener, ListenerAdapter, Subscription};
use crate::runtime::run;

#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum UserState {
    LoggedIn,
    LoggedOut,
    Removed,
}

impl From<sk::UserState> for UserState {
    fn from(s: sk::UserState) -> Self {
        match s {
            sk::UserState::LoggedIn => Self::LoggedIn,
            sk::UserState::LoggedOut => Self::LoggedOut,
            sk::UserState::Removed => Self::Removed,
        }
    }
}

/// One way the user can log in: a provider and the id it knows them by.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct UserIdentity {
    pub id: String,
    pub provider_type: String,
}

impl From<sk::UserIdentity> for UserIdentity {
    fn from(i: sk::UserIdentity) -> Self {
        Self {
            id: i.id,
            provider_type: i.provider_type,
        }
    }
}

/// The profile from the last profile fetch; `data_json` is the whole document.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
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
    pub data_json: String,
}

impl From<sk::UserProfile> for UserProfile {
    fn from(p: sk::UserProfile) -> Self {
        Self {
            name: p.name,
            email: p.email,
            picture_url: p.picture_url,
            first_name: p.first_name,
            last_name: p.last_name,
            gender: p.gender,
            birthday: p.birthday,
            min_age: p.min_age,
            max_age: p.max_age,
            data_json: p.data_json,
        }
    }
}

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

/// An API key; `key` is only present right after creation.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct ApiKey {
    pub id: String,
    pub key: Option<String>,
    pub name: String,
    pub disabled: bool,
}

impl From<sk::ApiKey> for ApiKey {
    fn from(k: sk::ApiKey) -> Self {
        Self {
            id: k.id,
            key: k.key,
            name: k.name,
            disabled: k.disabled,
        }
    }
}

/// Which sessions `log_out` ends (#25); `None` there is `ThisDevice`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum LogOutScope {
    /// This device only: today's logout.
    ThisDevice,
    /// Every other session of the user; this device stays logged in.
    OtherDevices,
    /// Every session of the user, this device's included.
    Everywhere,
}

impl From<LogOutScope> for sk::LogOutScope {
    fn from(s: LogOutScope) -> Self {
        match s {
            LogOutScope::ThisDevice => Self::ThisDevice,
            LogOutScope::OtherDevices => Self::OtherDevices,
            LogOutScope::Everywhere => Self::Everywhere,
        }
    }
}

/// The device a session logged in from, as its login described it (not verified); each field
/// at most 100 characters, `None` when not sent.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SessionDevice {
    pub platform: Option<String>,
    pub platform_version: Option<String>,
    pub sdk: Option<String>,
    pub sdk_version: Option<String>,
    pub cpu_arch: Option<String>,
    pub device_name: Option<String>,
    pub device_version: Option<String>,
    pub framework_name: Option<String>,
    pub framework_version: Option<String>,
    pub bundle_id: Option<String>,
    pub app_version: Option<String>,
}

/// One live session of the user on the server (a device signed in); no secret in it.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SessionInfo {
    /// The server's id of the session: what `revoke_session` takes.
    pub id: String,
    /// When it logged in.
    pub created: std::time::SystemTime,
    /// Its last refresh (or the login).
    pub last_used: std::time::SystemTime,
    /// The provider it logged in with.
    pub provider_type: Option<String>,
    /// The device it logged in from.
    pub device: SessionDevice,
    /// The client address the server saw at its login.
    pub ip: Option<String>,
    /// The API key's name, for a session logged in with one.
    pub api_key_name: Option<String>,
    /// Whether it is this device's session.
    pub current: bool,
}

impl From<sk::SessionInfo> for SessionInfo {
    fn from(s: sk::SessionInfo) -> Self {
        let d = s.device;
        Self {
            id: s.id,
            created: s.created,
            last_used: s.last_used,
            provider_type: s.provider_type,
            device: SessionDevice {
                platform: d.platform,
                platform_version: d.platform_version,
                sdk: d.sdk,
                sdk_version: d.sdk_version,
                cpu_arch: d.cpu_arch,
                device_name: d.device_name,
                device_version: d.device_version,
                framework_name: d.framework_name,
                framework_version: d.framework_version,
                bundle_id: d.bundle_id,
                app_version: d.app_version,
            },
            ip: s.ip,
            api_key_name: s.api_key_name,
            current: s.current,
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
        self.inner.state().into()
    }
    pub fn provider_type(&self) -> String {
        self.inner.provider_type()
    }
    pub fn device_id(&self) -> String {
        self.inner.device_id()
    }
    pub fn identities(&self) -> Vec<UserIdentity> {
        self.inner
            .identities()
            .into_iter()
            .map(Into::into)
            .collect()
    }
    pub fn profile(&self) -> UserProfile {
        self.inner.profile().into()
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
        run(async move { user.refresh_profile().await.map(Into::into) }).await
    }

    /// Adds an identity; anonymous credentials are refused.
    pub async fn link_credentials(&self, credentials: Credentials) -> Result<(), AppError> {
        let user = self.inner.clone();
        run(async move { user.link_credentials(credentials.into()).await }).await
    }

    /// Logs out: this device (`scope` `None` or `ThisDevice`: the tokens are cleared locally
    /// first, then the session is revoked on the server), every other device
    /// (`OtherDevices`), or all of them (`Everywhere`).
    #[uniffi::method(default(scope = None))]
    pub async fn log_out(&self, scope: Option<LogOutScope>) -> Result<(), AppError> {
        let user = self.inner.clone();
        let scope = scope.map_or(sk::LogOutScope::ThisDevice, Into::into);
        run(async move { user.log_out_scope(scope).await }).await
    }

    /// The user's live sessions on the server, oldest first, this device's marked `current`.
    pub async fn sessions(&self) -> Result<Vec<SessionInfo>, AppError> {
        let user = self.inner.clone();
        run(async move { user.sessions().await })
            .await
            .map(|list| list.into_iter().map(Into::into).collect())
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

    /// This user's events (an `InitialState` first) until the subscription is cancelled or
    /// dropped.
    pub fn subscribe(&self, listener: Arc<dyn AuthEventListener>) -> Arc<Subscription> {
        Subscription::new(
            self.inner
                .subscribe(Arc::new(ListenerAdapter(Foreign::new(listener)))),
        )
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
        run(async move { keys.create(&name).await.map(Into::into) }).await
    }
    pub async fn fetch(&self, id: String) -> Result<ApiKey, AppError> {
        let keys = Arc::clone(&self.inner);
        run(async move { keys.fetch(&id).await.map(Into::into) }).await
    }
    pub async fn fetch_all(&self) -> Result<Vec<ApiKey>, AppError> {
        let keys = Arc::clone(&self.inner);
        run(async move {
            keys.fetch_all()
                .await
                .map(|all| all.into_iter().map(Into::into).collect())
        })
        .await
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
