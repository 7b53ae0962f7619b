//! The values that configure an App and log users in.

use std::sync::Arc;

use sessionkit as sk;
use sk::Credentials;

use crate::dpop::{DpopSigner, SignerAdapter};
use crate::errors::AppError;
use crate::foreign::Foreign;

use crate::logger::{Logger, LoggerAdapter};
use crate::storage::{SessionStore, StoreAdapter};

// The core's credentials, as they are; its `Debug` shows no secret.
sessionkit::__credentials!(uniffi::remote(Enum));

/// Where the App keeps its users' sessions.
#[derive(Clone, uniffi::Enum)]
pub enum StorageConfig {
    /// One file per app in `dir`.
    File {
        dir: String,
        encryption_key: Option<Vec<u8>>,
    },
    /// Nothing survives the App.
    InMemory,
    /// The app's own store (Keychain, Keystore-backed preferences, ...).
    Custom { store: Arc<dyn SessionStore> },
}

impl From<StorageConfig> for sk::StorageConfig {
    fn from(s: StorageConfig) -> Self {
        match s {
            StorageConfig::File {
                dir,
                encryption_key,
            } => Self::File {
                dir: dir.into(),
                encryption_key,
            },
            StorageConfig::InMemory => Self::InMemory,
            StorageConfig::Custom { store } => {
                Self::Custom(Arc::new(StoreAdapter(Foreign::new(store))))
            }
        }
    }
}

/// The device and SDK, as sent at login. Empty strings (the defaults) are filled in with what
/// the SDK detects.
#[derive(Clone, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct DeviceInfo {
    #[uniffi(default)]
    pub platform: String,
    #[uniffi(default)]
    pub platform_version: String,
    #[uniffi(default)]
    pub sdk: String,
    #[uniffi(default)]
    pub sdk_version: String,
    #[uniffi(default)]
    pub cpu_arch: String,
    #[uniffi(default)]
    pub device_name: Option<String>,
    #[uniffi(default)]
    pub device_version: Option<String>,
    #[uniffi(default)]
    pub framework_name: Option<String>,
    #[uniffi(default)]
    pub framework_version: Option<String>,
    #[uniffi(default)]
    pub bundle_id: Option<String>,
    /// The app's own version, sent as `appVersion` and listed with the user's sessions.
    #[uniffi(default)]
    pub app_version: Option<String>,
}

impl From<DeviceInfo> for sk::DeviceInfo {
    fn from(d: DeviceInfo) -> Self {
        let detected = sk::DeviceInfo::default();
        let or = |given: String, default: String| if given.is_empty() { default } else { given };
        Self {
            platform: or(d.platform, detected.platform),
            platform_version: or(d.platform_version, detected.platform_version),
            sdk: or(d.sdk, "sessionkit-ffi".to_string()),
            sdk_version: or(d.sdk_version, detected.sdk_version),
            cpu_arch: or(d.cpu_arch, detected.cpu_arch),
            device_name: d.device_name,
            device_version: d.device_version,
            framework_name: d.framework_name,
            framework_version: d.framework_version,
            bundle_id: d.bundle_id,
            app_version: d.app_version,
        }
    }
}

/// Everything `App::new` needs; only `app_id`, `base_url` and `storage` have no default.
#[derive(Clone, uniffi::Record)]
pub struct AppConfig {
    pub app_id: String,
    pub base_url: String,
    /// Required: where sessions live is a choice every app should make on purpose (the
    /// generators cannot render an enum variant as a default either).
    pub storage: StorageConfig,
    /// Milliseconds; at least 1. (Signed so that every language takes a plain literal:
    /// Kotlin `Long`, Swift `Int64`, Python `int`.)
    #[uniffi(default = 60000)]
    pub request_timeout_ms: i64,
    /// Seconds before expiry at which an access token counts as stale; 0 or more.
    #[uniffi(default = 60)]
    pub refresh_margin_secs: i32,
    #[uniffi(default = false)]
    pub auto_refresh: bool,
    #[uniffi(default)]
    pub device: DeviceInfo,
    #[uniffi(default = false)]
    pub allow_insecure_http: bool,
    /// Receives the SDK's log lines, tokens redacted.
    #[uniffi(default = None)]
    pub logger: Option<Arc<dyn Logger>>,
    /// The largest response body read, in bytes (default 4 MiB); a larger one is refused with
    /// `MalformedResponse` before it is read whole.
    #[uniffi(default = 4194304)]
    pub max_response_bytes: i64,
    /// Bind each login's session to a new key on this device with DPoP (RFC 9449; default
    /// false): every request carries a proof signed with it, so a copied token is useless
    /// elsewhere. The key is kept with the session in the store (encrypted with it).
    #[uniffi(default = false)]
    pub dpop: bool,
    /// Makes and holds the keys in the app's key store (Secure Enclave, Android Keystore)
    /// instead; only with `dpop`.
    #[uniffi(default = None)]
    pub dpop_signer: Option<Arc<dyn DpopSigner>>,
}

/// A non-negative count from a foreign language's signed integer, or an `InvalidArgument` that
/// names the field.
pub(crate) fn non_negative<T: TryFrom<i64>>(field: &str, value: i64) -> Result<T, AppError> {
    T::try_from(value).map_err(|_| AppError::InvalidArgument {
        message: format!("{field} must be 0 or more (got {value})"),
    })
}

impl TryFrom<AppConfig> for sk::AppConfig {
    type Error = AppError;

    fn try_from(c: AppConfig) -> Result<Self, AppError> {
        let mut config = sk::AppConfig::new(c.app_id, c.base_url);
        config.request_timeout_ms = non_negative("request_timeout_ms", c.request_timeout_ms)?;
        config.refresh_margin_secs =
            non_negative("refresh_margin_secs", i64::from(c.refresh_margin_secs))?;
        config.max_response_bytes = non_negative("max_response_bytes", c.max_response_bytes)?;
        config.storage = c.storage.into();
        config.auto_refresh = c.auto_refresh;
        config.device = c.device.into();
        config.allow_insecure_http = c.allow_insecure_http;
        config.logger = c
            .logger
            .map(|l| Arc::new(LoggerAdapter(Foreign::new(l))) as Arc<dyn sk::Logger>);
        config.dpop = c.dpop;
        config.dpop_signer = c
            .dpop_signer
            .map(|s| Arc::new(SignerAdapter(Foreign::new(s))) as Arc<dyn sk::DpopSigner>);
        Ok(config)
    }
}
