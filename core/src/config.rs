//! App configuration: which server, where sessions live, and how tokens are kept fresh.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use crate::clock::Clock;
use crate::dpop::DpopSigner;
use crate::error::{AppError, Result};
use crate::log::Logger;
use crate::storage::SessionStore;

/// Where the App keeps its users' sessions.
#[derive(Clone)]
pub enum StorageConfig {
    /// One file per app in `dir` (0600, atomic replace).
    File {
        dir: PathBuf,
        encryption_key: Option<Vec<u8>>,
    },
    /// Nothing survives the App: for tests and throwaway scripts.
    InMemory,
    /// The app's own store (Keychain, Keystore-backed preferences, ...).
    Custom(Arc<dyn SessionStore>),
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File {
                dir,
                encryption_key,
            } => f
                .debug_struct("File")
                .field("dir", dir)
                .field("encrypted", &encryption_key.is_some())
                .finish(),
            Self::InMemory => f.write_str("InMemory"),
            Self::Custom(_) => f.write_str("Custom"),
        }
    }
}

/// Describes the device and SDK in the login body's `options.device` (the fields of realm-core's
/// `attach_auth_options`, plus realm-web's `appVersion`: REALM-SEMANTICS.md). The server keeps
/// them with the session and lists them in the user's sessions (PROTOCOL.md, "Sessions").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The operating system (`platform`), e.g. `iOS`, `Android`, `linux`.
    pub platform: String,
    /// Its version (`platformVersion`).
    pub platform_version: String,
    /// The SDK's name (`sdk`).
    pub sdk: String,
    /// The SDK's version (`sdkVersion`).
    pub sdk_version: String,
    /// The processor architecture (`cpuArch`), e.g. `aarch64`.
    pub cpu_arch: String,
    /// The device's model or name (`deviceName`), e.g. `Pixel 8`.
    pub device_name: Option<String>,
    /// The device's version (`deviceVersion`).
    pub device_version: Option<String>,
    /// The UI framework (`frameworkName`), e.g. `Flutter`.
    pub framework_name: Option<String>,
    /// Its version (`frameworkVersion`).
    pub framework_version: Option<String>,
    /// The app's bundle id or package name (`bundleId`).
    pub bundle_id: Option<String>,
    /// The app's own version (`appVersion`), e.g. `2.4.0`: which build a session signed in from.
    pub app_version: Option<String>,
}

impl Default for DeviceInfo {
    fn default() -> Self {
        Self {
            platform: std::env::consts::OS.to_string(),
            platform_version: "unknown".to_string(),
            sdk: "sessionkit-rust".to_string(),
            sdk_version: env!("CARGO_PKG_VERSION").to_string(),
            cpu_arch: std::env::consts::ARCH.to_string(),
            device_name: None,
            device_version: None,
            framework_name: None,
            framework_version: None,
            bundle_id: None,
            app_version: None,
        }
    }
}

/// Everything [`App::new`](crate::App::new) needs.
///
/// ```
/// use sessionkit::{AppConfig, StorageConfig};
/// let mut config = AppConfig::new("myapp-abcde", "http://127.0.0.1:9090");
/// config.storage = StorageConfig::InMemory;
/// config.refresh_margin_secs = 30;
/// ```
/// The default of [`AppConfig::max_response_bytes`]: 4 MiB.
pub const DEFAULT_MAX_RESPONSE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct AppConfig {
    pub app_id: String,
    pub base_url: String,
    pub storage: StorageConfig,
    /// Per-request timeout (default 60 000 ms, as realm-core).
    pub request_timeout_ms: u64,
    /// How long an access token must still live to be handed out without a refresh (default 60 s).
    pub refresh_margin_secs: u32,
    /// Refresh logged-in users' access tokens before they expire (default off).
    pub auto_refresh: bool,
    pub device: DeviceInfo,
    /// Allow plain http to non-loopback hosts (default false).
    pub allow_insecure_http: bool,
    /// The largest response body the SDK reads, in bytes (default 4 MiB); a larger one fails
    /// with `MalformedResponse` without being read whole.
    pub max_response_bytes: u64,
    /// Receives the SDK's log lines, tokens redacted.
    pub logger: Option<Arc<dyn Logger>>,
    /// Time source; tests inject a [`ManualClock`](crate::ManualClock).
    pub clock: Option<Arc<dyn Clock>>,
    /// Bind new sessions to a key on this device with DPoP (RFC 9449; PROTOCOL.md, "DPoP";
    /// default false). Each login makes a P-256 key, kept with the session in the store; every
    /// request of a bound session carries a proof signed with it, so a copied refresh or access
    /// token is useless elsewhere. A server (or app) with `dpop = "off"` answers with bearer
    /// tokens, and the key is dropped. Sessions made before it was turned on stay bearer until
    /// their next login, except where the app requires DPoP: its refusal of such a session's
    /// refresh is answered by binding the session to a new key at that refresh. Bound sessions
    /// stay bound if it is turned off.
    pub dpop: bool,
    /// Where new DPoP keys are made and kept when `dpop` is on: the app's hardware-backed key
    /// store (Secure Enclave, Android Keystore), which hands the SDK signatures only. `None`
    /// (the default): software keys, kept in the session store with the session.
    pub dpop_signer: Option<Arc<dyn DpopSigner>>,
}

impl AppConfig {
    /// A config with the defaults: in-memory storage, 60 s timeout, 60 s margin, no auto refresh.
    pub fn new(app_id: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self {
            app_id: app_id.into(),
            base_url: base_url.into(),
            storage: StorageConfig::InMemory,
            request_timeout_ms: 60_000,
            refresh_margin_secs: 60,
            auto_refresh: false,
            device: DeviceInfo::default(),
            allow_insecure_http: false,
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            logger: None,
            clock: None,
            dpop: false,
            dpop_signer: None,
        }
    }

    /// Checks every field, naming the one that is wrong.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.app_id.trim().is_empty() {
            return Err(AppError::invalid("app_id: must not be empty"));
        }
        if self.app_id.contains(['/', '?', '#', ' ']) {
            return Err(AppError::invalid(format!(
                "app_id: {:?} contains a character that cannot appear in a URL path",
                self.app_id
            )));
        }
        if self.max_response_bytes == 0 {
            return Err(AppError::invalid(
                "max_response_bytes: must be greater than 0",
            ));
        }
        if self.request_timeout_ms == 0 {
            return Err(AppError::invalid(
                "request_timeout_ms: must be greater than 0",
            ));
        }
        for (name, value) in [
            ("device.platform", &self.device.platform),
            ("device.platform_version", &self.device.platform_version),
            ("device.sdk", &self.device.sdk),
            ("device.sdk_version", &self.device.sdk_version),
        ] {
            if value.trim().is_empty() {
                return Err(AppError::invalid(format!("{name}: must not be empty")));
            }
        }
        if let StorageConfig::File {
            dir,
            encryption_key,
        } = &self.storage
        {
            if dir.as_os_str().is_empty() {
                return Err(AppError::invalid("storage.dir: must not be empty"));
            }
            if let Some(key) = encryption_key
                && key.len() != 32
            {
                return Err(AppError::invalid(format!(
                    "storage.encryption_key: must be 32 bytes, got {}",
                    key.len()
                )));
            }
        }
        if self.dpop_signer.is_some() && !self.dpop {
            return Err(AppError::invalid(
                "dpop_signer: set only with dpop = true (it makes the keys DPoP binds sessions to)",
            ));
        }
        crate::transport::check_base_url(&self.base_url, self.allow_insecure_http)?;
        Ok(())
    }
}

impl fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppConfig")
            .field("app_id", &self.app_id)
            .field("base_url", &self.base_url)
            .field("storage", &self.storage)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("refresh_margin_secs", &self.refresh_margin_secs)
            .field("auto_refresh", &self.auto_refresh)
            .field("device", &self.device)
            .field("allow_insecure_http", &self.allow_insecure_http)
            .field("max_response_bytes", &self.max_response_bytes)
            .field("dpop", &self.dpop)
            .field("dpop_signer", &self.dpop_signer.is_some())
            .finish_non_exhaustive()
    }
}
