//! Shared server state: apps with their secrets, the clock, counters, the database.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::Notify;

use crate::config::{AdminConfig, AppConfig, Config};
use crate::error::ApiError;

/// Meta key of the test clock's offset (seconds), shared by every instance on a database.
pub const TEST_CLOCK_KEY: &str = "test_clock_offset";
/// Meta key prefix of each instance's request counters in test mode (`<prefix><instance id>`).
pub const TEST_COUNTERS_PREFIX: &str = "test_requests/";

/// The server's notion of now: system time plus a test offset.
#[derive(Debug, Default)]
pub struct Clock {
    offset: AtomicI64,
}

impl Clock {
    /// Unix seconds, shifted by every `advance`.
    pub fn now(&self) -> i64 {
        let sys = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        sys + self.offset.load(Ordering::SeqCst)
    }
    /// Moves now forward by `secs`; the new offset from system time.
    pub fn advance(&self, secs: i64) -> i64 {
        self.offset.fetch_add(secs, Ordering::SeqCst) + secs
    }
    /// Moves the offset up to `secs` (the one stored in the database, which another instance
    /// may have moved); never back, as the clock only moves forward.
    pub fn catch_up(&self, secs: i64) {
        self.offset.fetch_max(secs, Ordering::SeqCst);
    }
}

/// Per-request-kind counters, server-wide and per app.
#[derive(Debug, Default)]
pub struct Counters {
    map: Mutex<HashMap<(Option<String>, String), u64>>,
}

impl Counters {
    /// Counts one request of `op`, for `app` when known.
    pub fn bump(&self, app: Option<&str>, op: &str) {
        let mut m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry((None, op.to_string())).or_default() += 1;
        if let Some(app) = app {
            *m.entry((Some(app.to_string()), op.to_string()))
                .or_default() += 1;
        }
    }
    /// Server-wide count of `op`.
    pub fn get(&self, op: &str) -> u64 {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.get(&(None, op.to_string())).copied().unwrap_or(0)
    }
    /// Every app's counts, `{app: {op: n}}`: what an instance publishes to the database in
    /// test mode.
    pub fn all_apps(&self) -> serde_json::Value {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = serde_json::Map::new();
        for ((app, op), n) in m.iter() {
            if let Some(app) = app {
                let entry = out
                    .entry(app.clone())
                    .or_insert_with(|| serde_json::Value::Object(Default::default()));
                entry[op.as_str()] = serde_json::Value::from(*n);
            }
        }
        serde_json::Value::Object(out)
    }
    /// All counts of one app.
    pub fn for_app(&self, app: &str) -> serde_json::Map<String, serde_json::Value> {
        let m = self.map.lock().unwrap_or_else(|p| p.into_inner());
        m.iter()
            .filter(|((a, _), _)| a.as_deref() == Some(app))
            .map(|((_, op), n)| (op.clone(), serde_json::Value::from(*n)))
            .collect()
    }
}

/// One app at run time.
#[derive(Debug)]
pub struct AppRuntime {
    /// Its configuration.
    pub config: AppConfig,
    /// HS256 secret of its tokens.
    pub secret: Vec<u8>,
    /// Its domain id (`domain_id` claim and profile field).
    pub domain_id: String,
    /// Refresh token lifetime; changed at run time by the admin API.
    pub refresh_lifetime: AtomicI64,
    /// Access-token signing keys (empty for HS256), reloaded from the database now and then.
    pub keys: std::sync::RwLock<crate::signing::KeyRing>,
}

impl AppRuntime {
    /// The app's key ring, for reading.
    pub fn keys(&self) -> std::sync::RwLockReadGuard<'_, crate::signing::KeyRing> {
        self.keys.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Verifies one of this app's tokens: HS256 with the app secret (refresh tokens, and access
    /// tokens of HS256 apps), or a key of the app's ring picked by `kid`.
    pub fn verify(
        &self,
        token: &str,
        now: i64,
    ) -> Result<crate::tokens::Claims, crate::tokens::VerifyError> {
        use crate::tokens::VerifyError;
        let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Invalid)?;
        if header.alg == jsonwebtoken::Algorithm::HS256 {
            return crate::tokens::verify(token, &self.secret, now);
        }
        let kid = header.kid.ok_or(VerifyError::Invalid)?;
        let key = self
            .keys()
            .find(&kid)
            .cloned()
            .ok_or(VerifyError::UnknownKey)?;
        if key.alg != header.alg {
            return Err(VerifyError::Invalid);
        }
        crate::signing::verify(token, &key, now)
    }
}

/// Everything handlers share.
pub struct Inner {
    /// The configuration.
    pub config: Config,
    /// The address actually bound (`listen` with port 0 resolved).
    pub local_addr: std::net::SocketAddr,
    /// Apps by id.
    pub apps: HashMap<String, Arc<AppRuntime>>,
    /// Admin key pair, when the admin API is on.
    pub admin: Option<AdminConfig>,
    /// HS256 secret of admin tokens.
    pub admin_secret: Vec<u8>,
    /// The clock.
    pub clock: Clock,
    /// Request counters.
    pub counters: Counters,
    /// This process's id among the instances on the database (test-mode counters).
    pub instance_id: String,
    /// The database (SQLite or PostgreSQL).
    pub store: crate::store::SharedStore,
    /// HTTP client for custom-function webhooks.
    pub http: reqwest::Client,
    /// Issuers' keys for social and OpenID Connect sign-in (and custom JWTs with a JWK URI).
    pub jwks: crate::jwks::JwksCache,
    /// Wakes the sweeper (after the test clock moves).
    pub sweep_now: Notify,
    /// Wakes the mail worker (a mail was queued, the test clock moved).
    pub mail_now: Notify,
    /// Asks the sweeper to reload signing keys (a token with an unknown `kid` arrived).
    pub keys_changed: Notify,
    /// Server-clock second of the last reload asked for by an unknown `kid`.
    pub last_key_reload: AtomicI64,
    /// The bounded password-hashing pool.
    pub passwords: crate::passwords::Passwords,
    /// Request rate limits.
    pub rate_limits: crate::rate_limit::RateLimits,
    /// The audit log's JSON-line target, when `[audit] log` names one.
    pub audit_log: Option<Arc<crate::audit::LogTarget>>,
    /// Prometheus metrics, when `[metrics] enabled`.
    pub metrics: Option<std::sync::Arc<crate::metrics::Metrics>>,
}

/// Cheap-to-clone handle on the shared state.
pub type AppState = Arc<Inner>;

impl Inner {
    /// The app with this id, or the protocol's unknown-app error.
    pub fn app(&self, id: &str) -> Result<Arc<AppRuntime>, ApiError> {
        self.apps
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::app_not_found(id))
    }
    /// Now, on the server clock.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Asks for the signing keys to be reloaded, at most once per
    /// [`crate::signing::RELOAD_FLOOR_SECS`], so that forged `kid`s cannot keep the database
    /// busy.
    pub fn reload_keys_soon(&self) {
        let now = self.now();
        let last = self.last_key_reload.load(Ordering::SeqCst);
        if now - last >= crate::signing::RELOAD_FLOOR_SECS
            && self
                .last_key_reload
                .compare_exchange(last, now, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
        {
            self.keys_changed.notify_one();
        }
    }
}
