//! A user's sessions as the server sees them (#25, PROTOCOL.md "Sessions of a user"): the
//! devices signed in to the account, ending one, and logging out of other devices or of all.
//! Requests carry the user's refresh token, as API keys' do.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde_json::Value;

use crate::context::Context;
use crate::error::{AppError, Result};
use crate::session::UserInner;
use crate::transport::{Route, required_str};

shared_type! {
    $ __log_out_scope;
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
    =>
    /// Which sessions `User::log_out_scope` ends.
    pub enum LogOutScope {
        /// This device only: `User::log_out` (the default).
        #[default]
        ThisDevice,
        /// Every other session of the user; this device stays logged in and hears nothing.
        OtherDevices,
        /// Every session of the user, this device's included (with the usual logout events).
        Everywhere,
    }
}

shared_type! {
    $ __session_device;
    #[derive(Clone, Debug, Default, PartialEq, Eq)]
    =>
    /// The device a session logged in from, as its login described it (the app's `DeviceInfo`).
    /// The client chose these values: show them, do not trust them. Each is at most 100
    /// characters; `None` when the login did not send it.
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
}

shared_type! {
    $ __session_info;
    #[derive(Clone, Debug, PartialEq, Eq)]
    =>
    /// One live session of the user: a device signed in to the account. Holds no secret; its `id`
    /// only names it to `User::revoke_session`.
    pub struct SessionInfo {
        /// The server's id of the session.
        pub id: String,
        /// When it logged in.
        pub created: SystemTime,
        /// Its last refresh (or the login).
        pub last_used: SystemTime,
        /// The provider it logged in with (`local-userpass`, `api-key`, ...); `None` for sessions
        /// the server started before it recorded it.
        pub provider_type: Option<String>,
        /// The device it logged in from.
        pub device: SessionDevice,
        /// The client address the server saw at its login.
        pub ip: Option<String>,
        /// The name of the API key it logged in with, for an API-key session.
        pub api_key_name: Option<String>,
        /// Whether it is this device's session (the one asking).
        pub current: bool,
    }
}

impl SessionInfo {
    fn parse(doc: &Value) -> Result<Self> {
        let time = |key: &str| -> Result<SystemTime> {
            let secs = doc.get(key).and_then(Value::as_i64).ok_or_else(|| {
                AppError::malformed(format!("session: missing integer field {key:?}"))
            })?;
            Ok(UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64))
        };
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        let device = doc.get("device").cloned().unwrap_or(Value::Null);
        Ok(Self {
            id: required_str(doc, "id", "session")?,
            created: time("created")?,
            last_used: time("last_used")?,
            provider_type: text(doc, "provider_type"),
            device: SessionDevice {
                platform: text(&device, "platform"),
                platform_version: text(&device, "platform_version"),
                sdk: text(&device, "sdk"),
                sdk_version: text(&device, "sdk_version"),
                cpu_arch: text(&device, "cpu_arch"),
                device_name: text(&device, "device_name"),
                device_version: text(&device, "device_version"),
                framework_name: text(&device, "framework_name"),
                framework_version: text(&device, "framework_version"),
                bundle_id: text(&device, "bundle_id"),
                app_version: text(&device, "app_version"),
            },
            ip: text(doc, "ip"),
            api_key_name: doc.get("api_key").and_then(|k| text(k, "name")),
            current: doc.get("current").and_then(Value::as_bool).unwrap_or(false),
        })
    }
}

/// GET auth/sessions.
pub(crate) async fn list(ctx: &Arc<Context>, user: &Arc<UserInner>) -> Result<Vec<SessionInfo>> {
    let doc = call(ctx, user, Method::GET, "auth/sessions".into()).await?;
    doc.as_array()
        .ok_or_else(|| AppError::malformed("sessions: expected an array"))?
        .iter()
        .map(SessionInfo::parse)
        .collect()
}

/// DELETE auth/sessions/{id}.
pub(crate) async fn revoke(ctx: &Arc<Context>, user: &Arc<UserInner>, id: &str) -> Result<()> {
    // Session ids are ObjectIds; anything else would only change the path.
    if id.is_empty() || id.len() > 64 || !id.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(AppError::invalid(format!(
            "session id: {id:?} is not a session id"
        )));
    }
    call(ctx, user, Method::DELETE, format!("auth/sessions/{id}"))
        .await
        .map(drop)
}

/// DELETE auth/sessions?scope=... for the scopes that reach beyond this device.
pub(crate) async fn revoke_beyond_this_device(
    ctx: &Arc<Context>,
    user: &Arc<UserInner>,
    scope: LogOutScope,
) -> Result<()> {
    let scope = match scope {
        LogOutScope::ThisDevice => return Ok(()),
        LogOutScope::OtherDevices => "other_devices",
        LogOutScope::Everywhere => "everywhere",
    };
    call(
        ctx,
        user,
        Method::DELETE,
        format!("auth/sessions?scope={scope}"),
    )
    .await
    .map(drop)
}

async fn call(
    ctx: &Arc<Context>,
    user: &Arc<UserInner>,
    method: Method,
    path: String,
) -> Result<Value> {
    let _pass = ctx.pass()?;
    ctx.refresh_authed(user, method, Route::Base(path), None)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_listed_session_reads_every_field_and_tolerates_missing_ones() {
        let s = SessionInfo::parse(&json!({
            "id": "65a1", "created": 10, "last_used": 20, "provider_type": "api-key",
            "device": {"platform": "iOS", "device_name": "Ann's phone", "other": 1},
            "ip": "127.0.0.1", "current": true, "api_key": {"_id": "k1", "name": "ci"},
        }))
        .unwrap();
        assert_eq!(s.created, UNIX_EPOCH + Duration::from_secs(10));
        assert_eq!(s.last_used, UNIX_EPOCH + Duration::from_secs(20));
        assert_eq!(s.device.platform.as_deref(), Some("iOS"));
        assert_eq!(s.device.device_name.as_deref(), Some("Ann's phone"));
        assert_eq!(s.device.sdk, None);
        assert_eq!(s.api_key_name.as_deref(), Some("ci"));
        assert!(s.current);
        let bare = SessionInfo::parse(&json!({"id": "a", "created": 1, "last_used": 1})).unwrap();
        assert_eq!(bare.device, SessionDevice::default());
        assert!(!bare.current && bare.provider_type.is_none() && bare.ip.is_none());
        assert!(SessionInfo::parse(&json!({"id": "a", "created": "x", "last_used": 1})).is_err());
        assert!(SessionInfo::parse(&json!({"created": 1, "last_used": 1})).is_err());
    }
}
