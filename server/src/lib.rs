//! sessionkit-server: a self-hostable server for the App Services client API v2.0 (and an admin
//! subset), storing users, identities, sessions and API keys in SQLite.
//!
//! Start it in-process with [`RunningServer::start`], or run the `sessionkit-server` binary.

pub mod admin_client;
pub mod audit;
pub mod backup;
pub mod config;
pub mod copy;
pub mod credentials;
pub mod dpop;
pub mod email;
pub mod email_otp;
pub mod error;
pub mod export;
pub mod functions;
pub mod import;
pub mod jwks;
pub mod legacy_hashes;
pub mod mail;
pub mod metrics;
pub mod migrate;
pub mod passwords;
pub mod percent;
pub mod providers;
pub mod rate_limit;
pub mod routes;
mod serve;
pub mod sessions;
pub mod signing;
pub mod social;
pub mod state;
pub mod store;
pub mod template;
pub mod testing;
pub mod timed;
pub mod tokens;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use tokio::sync::{Notify, oneshot};
use tokio::task::JoinHandle;

pub use config::{AdminConfig, AppConfig, Config, ConfigError};
pub use error::ApiError;

use state::{AppRuntime, AppState, Clock, Counters, Inner};

/// Anonymous users are deleted this long after creation.
pub const ANON_USER_MAX_AGE_SECS: i64 = 90 * 24 * 3600;
/// How often the sweeper runs (it also runs when the test clock moves).
const SWEEP_INTERVAL: Duration = Duration::from_secs(3600);
/// How often signing keys made by another process (a rotation, another instance) are looked
/// for.
const KEY_RELOAD_INTERVAL: Duration = Duration::from_secs(60);

/// Re-reads every key-pair app's signing keys.
async fn reload_keys(st: &AppState) {
    for app in st.apps.values() {
        if app.config.access_token_algorithm == config::JwtAlgorithm::HS256 {
            continue;
        }
        let id = app.config.id.clone();
        let now = st.now();
        match signing::load(st.store.as_ref(), &id, now).await {
            Ok(ring) => *app.keys.write().unwrap_or_else(|e| e.into_inner()) = ring,
            Err(e) => tracing::warn!(
                app = app.config.id,
                "cannot reload signing keys: {}",
                e.message
            ),
        }
    }
}

/// What start-up reads (and on a new database, creates): each app's runtime, the admin secret
/// and, in `--dev`, the generated admin key pair. Secrets are created once however many
/// instances start together ([`store::Store::meta_get_or_insert`]).
type Loaded = (
    HashMap<String, Arc<AppRuntime>>,
    Vec<u8>,
    Option<AdminConfig>,
);

async fn load_apps(
    store: &dyn store::Store,
    cfg: &Config,
    log: Option<&audit::LogTarget>,
) -> Result<Loaded, ApiError> {
    let mut apps = HashMap::new();
    for app in &cfg.apps {
        let id = &app.id;
        let secret = store
            .meta_get_or_insert(&format!("app_secret:{id}"), tokens::new_secret())
            .await?;
        let domain = store
            .meta_get_or_insert(&format!("domain_id:{id}"), tokens::new_object_id())
            .await?;
        let lifetime = store
            .meta_get(&format!("refresh_lifetime:{id}"))
            .await?
            .and_then(|v| v.parse::<i64>().ok())
            .unwrap_or(app.refresh_token_lifetime_secs as i64);
        let now = state::Clock::default().now();
        audit::ship(
            audit::server_context(now),
            log,
            signing::ensure_active(store, id, app.access_token_algorithm, now),
            Result::is_ok,
        )
        .await?;
        let keys = signing::load(store, id, now).await?;
        apps.insert(
            id.clone(),
            Arc::new(AppRuntime {
                config: app.clone(),
                secret: hex::decode(secret).unwrap_or_default(),
                domain_id: domain,
                refresh_lifetime: AtomicI64::new(lifetime),
                keys: std::sync::RwLock::new(keys),
            }),
        );
    }
    let admin_secret = store
        .meta_get_or_insert("admin_secret", tokens::new_secret())
        .await?;
    let admin = match (&cfg.admin, cfg.dev_admin) {
        (Some(a), _) => Some(a.clone()),
        (None, true) => Some(AdminConfig {
            public_key: store
                .meta_get_or_insert(
                    "dev_admin_public_key",
                    tokens::random_alnum(8).to_ascii_lowercase(),
                )
                .await?,
            private_key: store
                .meta_get_or_insert("dev_admin_private_key", tokens::random_alnum(36))
                .await?,
        }),
        (None, false) => None,
    };
    Ok((apps, hex::decode(admin_secret).unwrap_or_default(), admin))
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The configuration is invalid.
    #[error("config error: {0}")]
    Config(#[from] ConfigError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The metrics address (`[metrics] listen`) could not be bound.
    #[error("cannot listen on {addr} ([metrics] listen): {source}")]
    MetricsBind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The database could not be opened or initialised.
    #[error("storage error: {0}")]
    Storage(String),
}

/// A server serving on the current tokio runtime.
pub struct RunningServer {
    addr: SocketAddr,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    serve: Option<JoinHandle<()>>,
    sweeper: JoinHandle<()>,
    mailer: Option<JoinHandle<()>>,
    /// The metrics address's server (`[metrics] listen`) and its bound address.
    metrics: Option<(SocketAddr, JoinHandle<()>)>,
}

fn storage(e: impl std::fmt::Display) -> ServerError {
    ServerError::Storage(e.to_string())
}

impl RunningServer {
    /// Validates the config, opens (or creates) the database, binds `config.listen` and
    /// starts serving on the current tokio runtime.
    pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
        config.validate()?;
        for app in &config.apps {
            if app
                .providers
                .local_userpass
                .as_ref()
                .is_some_and(|up| up.reset_function == config::ResetFunction::Success)
            {
                tracing::warn!(
                    "app {}: reset_function = \"success\": ANYONE WHO KNOWS AN EMAIL CAN SET \
                     THAT ACCOUNT'S PASSWORD. For tests only.",
                    app.id
                );
            }
        }
        // Built before the database is opened: a bad [mail] or template stops the start.
        let delivery = match &config.mail {
            Some(m) => Some((
                Arc::new(mail::SmtpMailer::new(m)?) as Arc<dyn mail::Mailer>,
                mail::templates(&config.apps)?,
            )),
            None => None,
        };
        let audit_log = match &config.audit.log {
            Some(target) => Some(Arc::new(audit::LogTarget::open(target).map_err(|e| {
                ServerError::Config(ConfigError::Invalid {
                    key: "audit.log".into(),
                    problem: e,
                })
            })?)),
            None => None,
        };
        let store = store::open(&config).await.map_err(ServerError::Storage)?;
        let loaded = load_apps(store.as_ref(), &config, audit_log.as_deref())
            .await
            .map_err(|e| storage(e.message))?;
        let (apps, admin_secret, admin) = loaded;
        if config.metrics.enabled && config.metrics.listen.is_none() && admin.is_none() {
            return Err(ServerError::Config(ConfigError::Invalid {
                key: "metrics".into(),
                problem: "metrics on the server's address are read with the admin key pair: \
                          set [admin] public_key and private_key, or give [metrics] a \
                          listen address of its own"
                    .into(),
            }));
        }
        let metrics_listener = match config.metrics.listen.filter(|_| config.metrics.enabled) {
            Some(addr) => Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .map_err(|source| ServerError::MetricsBind { addr, source })?,
            ),
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| ServerError::Bind {
                addr: config.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: config.listen,
            source,
        })?;
        let http = reqwest::Client::builder()
            .timeout(providers::WEBHOOK_TIMEOUT)
            .build()
            .map_err(storage)?;
        let config_rate_limits = config.rate_limits.clone();
        let metrics = config
            .metrics
            .enabled
            .then(|| Arc::new(metrics::Metrics::new()));
        let store = match &metrics {
            Some(m) => timed::Timed::wrap(store, m.clone()),
            None => store,
        };
        let state: AppState = Arc::new(Inner {
            config,
            local_addr: addr,
            apps,
            admin,
            admin_secret,
            clock: Clock::default(),
            counters: Counters::default(),
            instance_id: tokens::new_object_id(),
            store,
            jwks: jwks::JwksCache::new(http.clone(), metrics.clone()),
            http,
            sweep_now: Notify::new(),
            mail_now: Notify::new(),
            keys_changed: Notify::new(),
            last_key_reload: AtomicI64::new(0),
            passwords: passwords::Passwords::for_this_machine(),
            rate_limits: rate_limit::RateLimits::new(&config_rate_limits),
            metrics: metrics.clone(),
            audit_log,
        });
        let router = routes::router(state.clone());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let deadline = Duration::from_secs(state.config.shutdown_timeout_secs);
        let limits = state.config.limits.clone();
        let serve = tokio::spawn(async move {
            serve::serve(listener, router, stop_rx, deadline, &limits).await
        });
        let sweeper = tokio::spawn(sweep_loop(state.clone()));
        let metrics_server = match metrics_listener {
            Some(l) => {
                let addr = l.local_addr().map_err(|source| ServerError::Bind {
                    addr: state.config.metrics.listen.unwrap_or(addr),
                    source,
                })?;
                let app = routes::metrics::router(state.clone());
                Some((
                    addr,
                    tokio::spawn(async move {
                        if let Err(e) = axum::serve(l, app).await {
                            tracing::error!("the metrics address stopped serving: {e}");
                        }
                    }),
                ))
            }
            None => None,
        };
        let mailer = delivery.map(|(mailer, templates)| {
            tokio::spawn(mail::worker(state.clone(), mailer, templates))
        });
        Ok(RunningServer {
            addr,
            state,
            stop: Some(stop_tx),
            serve: Some(serve),
            sweeper,
            mailer,
            metrics: metrics_server,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics address as bound (`[metrics] listen`, port 0 resolved), when metrics are
    /// served on an address of their own.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(a, _)| *a)
    }

    /// `http://IP:PORT` of the bound address.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests of kind `op` were served (all apps), e.g. "refresh", "login",
    /// "profile", "logout", "location".
    pub fn request_count(&self, op: &str) -> u64 {
        self.state.counters.get(op)
    }

    /// Moves the server clock forward by `secs` (tokens expire without sleeping) and runs
    /// the sweeper.
    pub fn advance_clock(&self, secs: i64) {
        let _ = self.state.clock.advance(secs);
        self.state.sweep_now.notify_one();
        self.state.mail_now.notify_one();
    }

    /// The server clock's now (unix seconds).
    pub fn now(&self) -> i64 {
        self.state.now()
    }

    /// The admin key pair, when the admin API is on (in dev mode: the generated pair).
    pub fn admin_keys(&self) -> Option<AdminConfig> {
        self.state.admin.clone()
    }

    /// The configuration served.
    pub fn config(&self) -> &Config {
        &self.state.config
    }

    /// Deletes expired anonymous users and dead sessions now.
    pub async fn sweep(&self) -> Result<usize, ApiError> {
        sweep(&self.state).await
    }

    /// Stops accepting, closes idle connections, gives in-flight requests up to
    /// `shutdown_timeout_secs` to finish (then closes their connections), and checkpoints and
    /// closes the database. Every write acknowledged before is kept.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serve) = self.serve.take() {
            let _ = serve.await;
        }
        self.sweeper.abort();
        if let Some(m) = &self.mailer {
            m.abort();
        }
        if let Some((_, m)) = &self.metrics {
            m.abort();
        }
        self.state.store.close().await;
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.sweeper.abort();
        if let Some(m) = &self.mailer {
            m.abort();
        }
        if let Some((_, m)) = &self.metrics {
            m.abort();
        }
        if let (Some(path), Some(metrics)) = (
            &self.state.config.metrics.exposition_on_stop,
            &self.state.metrics,
        ) && let Err(e) = std::fs::write(path, metrics.encode())
        {
            tracing::warn!("cannot write the exposition to {}: {e}", path.display());
        }
    }
}

async fn sweep(st: &AppState) -> Result<usize, ApiError> {
    let now = st.now();
    let deleted = st
        .store
        .sweep(now - ANON_USER_MAX_AGE_SECS, now - 24 * 3600, now)
        .await?;
    let days = i64::from(st.config.audit.retention_days);
    if days > 0 {
        // In batches: each is a short write, so logins and refreshes queue behind none for
        // long however many events have aged out.
        while st
            .store
            .prune_events(now - days * 24 * 3600, AUDIT_PRUNE_BATCH)
            .await?
            == AUDIT_PRUNE_BATCH as u64
        {}
    }
    Ok(deleted)
}

/// Audit events deleted per write when the retention prunes them.
const AUDIT_PRUNE_BATCH: i64 = 5000;

async fn sweep_loop(st: AppState) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    let mut forget = tokio::time::interval(rate_limit::FORGET_EVERY);
    let mut keys = tokio::time::interval(KEY_RELOAD_INTERVAL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = st.sweep_now.notified() => {}
            _ = forget.tick() => {
                st.rate_limits.forget_idle();
                continue;
            }
            _ = keys.tick() => {
                reload_keys(&st).await;
                continue;
            }
            _ = st.keys_changed.notified() => {
                reload_keys(&st).await;
                continue;
            }
        }
        match sweep(&st).await {
            Ok(0) => {}
            Ok(n) => tracing::info!("deleted {n} expired anonymous users"),
            Err(e) => tracing::warn!("sweep failed: {}", e.message),
        }
    }
}
