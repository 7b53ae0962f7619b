//! Prometheus metrics (#26; SERVER.md, "Metrics"): `GET /metrics` in the OpenMetrics text
//! format (which Prometheus scrapes as it does its own), off by default. Served on its own
//! listen address (`[metrics] listen`), or on the server's with HTTP Basic authentication by
//! the admin key pair (user: the public key, password: the private key), which Prometheus's
//! `basic_auth` sends.
//!
//! Every family lives in a registry of this server's own (`prometheus-client`), not a
//! process-global one, so that servers started side by side (the tests) count apart. Label
//! values are bounded: route templates as the router matched them (never raw paths), methods
//! of a fixed set, status codes, provider types of the server's own list, error codes (the
//! protocol's constants). No user id, session id, address or token is ever a label.

use axum::http::{Method, StatusCode};
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::config::{OIDC_PREFIX, PROVIDER_TYPES};
use crate::error::ApiError;

/// The content type of the exposition (OpenMetrics 1.0 text).
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Labels of a request: its route template, method, and answer's status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The route as the router matched it (`/api/client/v2.0/app/{app_id}/...`), or
    /// `unmatched`.
    pub route: &'static str,
    /// GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS, or `other`.
    pub method: &'static str,
    /// The HTTP status, e.g. `200`.
    pub status: u16,
}

/// Labels of a request's duration: its route and method.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// As in [`RequestLabels::route`].
    pub route: &'static str,
    /// As in [`RequestLabels::method`].
    pub method: &'static str,
}

/// Labels of a login: the provider and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LoginLabels {
    /// A provider type of [`PROVIDER_TYPES`], `oidc` for any OpenID Connect provider, or
    /// `unknown`.
    pub provider: &'static str,
    /// `success`, or the error code of the refusal (`InvalidPassword`, ...).
    pub outcome: &'static str,
}

/// Labels of a refresh: whether it rotated the refresh token, and how it ended.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefreshLabels {
    /// Whether the answer carried a new refresh token (rotation on); false for a refusal.
    pub rotated: bool,
    /// `success`, or the error code (`InvalidSession`, ...).
    pub outcome: &'static str,
}

/// Put in a refresh's answer by its handler: whether it carried a new refresh token.
#[derive(Clone, Copy, Debug)]
pub struct Rotated(pub bool);

/// Every value of [`RevocationLabels::by`].
const REVOCATION_CAUSES: [&str; 6] = [
    "logout",
    "user",
    "admin",
    "password_reset",
    "user_deleted",
    "reuse",
];

/// Labels naming who or what ended sessions.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RevocationLabels {
    /// `logout` (this device), `user` (the user's session list or scopes), `admin`,
    /// `password_reset`, `user_deleted`, or `reuse` (a rotated-out refresh token presented
    /// again).
    pub by: &'static str,
}

/// Labels of a route alone.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteOnly {
    /// As in [`RequestLabels::route`].
    pub route: &'static str,
}

/// Labels of a fetch of an issuer's keys or discovery document.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FetchLabels {
    /// `success` or `failure`.
    pub outcome: &'static str,
}

/// Labels of a try to send a mail.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MailTryLabels {
    /// `sent`, `retry` (refused for now: tried again later) or `failed` (given up).
    pub outcome: &'static str,
}

/// Labels of the mail queue's states.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MailLabels {
    /// `pending` (queued or waiting for a retry) or `failed` (given up).
    pub state: &'static str,
}

/// Labels of a store operation.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OperationLabels {
    /// The store method (`login`, `use_refresh_token`, `session_live`, ...): one kind of
    /// query or transaction.
    pub operation: &'static str,
}

/// Labels of the database connections' states.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnectionLabels {
    /// `in_use` or `idle`.
    pub state: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency() -> Histogram {
    // 1 ms to about 16 s, doubling.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

fn query_latency() -> Histogram {
    // 50 µs to about 1.6 s, doubling: a read from SQLite's page cache takes tens of µs.
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// This server's metric families and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Histograms<RouteLabels>,
    logins: Family<LoginLabels, Counter>,
    refreshes: Family<RefreshLabels, Counter>,
    revocations: Family<RevocationLabels, Counter>,
    rate_limited: Family<RouteOnly, Counter>,
    issuer_fetches: Family<FetchLabels, Counter>,
    mail_queue: Family<MailLabels, Gauge>,
    mail_tries: Family<MailTryLabels, Counter>,
    password_checks: Gauge,
    database_writes: Gauge,
    database_commits: Gauge,
    database_operations: Histograms<OperationLabels>,
    database_failures: Family<OperationLabels, Counter>,
    database_connections: Family<ConnectionLabels, Gauge>,
    database_connections_max: Gauge,
    resident_memory: Gauge,
    cpu_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    open_fds: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every family registered, all at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("sessionkit");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route template, method and status",
            requests.clone(),
        );
        let durations: Histograms<RouteLabels> = Family::new_with_constructor(latency);
        registry.register_with_unit(
            "http_request_duration",
            "Time from a request's arrival to its answer, by route template and method",
            Unit::Seconds,
            durations.clone(),
        );
        let logins = Family::<LoginLabels, Counter>::default();
        registry.register(
            "logins",
            "Logins by provider and outcome (success, or the refusal's error code)",
            logins.clone(),
        );
        let refreshes = Family::<RefreshLabels, Counter>::default();
        registry.register(
            "refreshes",
            "Access-token refreshes (POST /auth/session) by whether they rotated the refresh \
             token, and outcome",
            refreshes.clone(),
        );
        let revocations = Family::<RevocationLabels, Counter>::default();
        registry.register(
            "revocations",
            "Operations that ended sessions, by who or what ended them; by=\"reuse\" counts \
             rotated-out refresh tokens presented again (a stolen session's loudest sign)",
            revocations.clone(),
        );
        let rate_limited = Family::<RouteOnly, Counter>::default();
        registry.register(
            "rate_limited_requests",
            "Requests refused by a rate limit (429), by route template",
            rate_limited.clone(),
        );
        let issuer_fetches = Family::<FetchLabels, Counter>::default();
        registry.register(
            "issuer_fetches",
            "Fetches of issuers' JWKS and OpenID discovery documents, by outcome",
            issuer_fetches.clone(),
        );
        let mail_queue = Family::<MailLabels, Gauge>::default();
        registry.register(
            "mail_queue",
            "Mail in the queue by state, as of the last scrape (pending, failed)",
            mail_queue.clone(),
        );
        let mail_tries = Family::<MailTryLabels, Counter>::default();
        registry.register(
            "mail_tries",
            "Tries to hand a mail to the relay, by outcome (sent, retry, failed)",
            mail_tries.clone(),
        );
        let password_checks = Gauge::default();
        registry.register(
            "password_hash_queue",
            "Password hashes and checks admitted to the hashing pool (running or waiting)",
            password_checks.clone(),
        );
        let database_writes = Gauge::default();
        registry.register(
            "database_writes",
            "Write transactions this instance ran since it started",
            database_writes.clone(),
        );
        let database_commits = Gauge::default();
        registry.register(
            "database_commits",
            "Commits this instance made since it started (SQLite commits several writes at once)",
            database_commits.clone(),
        );
        let database_operations: Histograms<OperationLabels> =
            Family::new_with_constructor(query_latency);
        registry.register_with_unit(
            "database_operation_duration",
            "Time of each store operation (a query or a transaction, waiting for a connection \
             or the SQLite writer included), by operation",
            Unit::Seconds,
            database_operations.clone(),
        );
        let database_failures = Family::<OperationLabels, Counter>::default();
        registry.register(
            "database_failures",
            "Store operations that failed (the database unreachable, an error, a shutdown; \
             not a refusal such as a wrong token), by operation",
            database_failures.clone(),
        );
        let database_connections = Family::<ConnectionLabels, Gauge>::default();
        registry.register(
            "database_connections",
            "Database connections by state (in_use, idle), as of the scrape: SQLite's read \
             connections and its writer, or PostgreSQL's pool",
            database_connections.clone(),
        );
        let database_connections_max = Gauge::default();
        registry.register(
            "database_connections_max",
            "The most database connections this instance holds ([database] max_connections \
             on PostgreSQL)",
            database_connections_max.clone(),
        );
        let resident_memory = Gauge::default();
        registry.register_with_unit(
            "process_resident_memory",
            "Resident memory of the server process (Linux)",
            Unit::Bytes,
            resident_memory.clone(),
        );
        let cpu_seconds = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register_with_unit(
            "process_cpu",
            "CPU time the server process used, user and system (Linux)",
            Unit::Seconds,
            cpu_seconds.clone(),
        );
        let open_fds = Gauge::default();
        registry.register(
            "process_open_fds",
            "File descriptors the server process holds open (Linux)",
            open_fds.clone(),
        );
        let start_time: Gauge = Gauge::default();
        registry.register_with_unit(
            "process_start_time",
            "When the server started, Unix time",
            Unit::Seconds,
            start_time.clone(),
        );
        start_time.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
        );
        // Every series of a fixed label set exists from the start, at 0: Prometheus's
        // `increase()` needs a sample before the first count, or an alert on the first reuse
        // ever (README, "Operating the server") would never fire.
        for by in REVOCATION_CAUSES {
            drop(revocations.get_or_create(&RevocationLabels { by }));
        }
        for outcome in ["sent", "retry", "failed"] {
            drop(mail_tries.get_or_create(&MailTryLabels { outcome }));
        }
        for outcome in ["success", "failure"] {
            drop(issuer_fetches.get_or_create(&FetchLabels { outcome }));
        }
        Self {
            registry,
            requests,
            durations,
            logins,
            refreshes,
            revocations,
            rate_limited,
            issuer_fetches,
            mail_queue,
            mail_tries,
            password_checks,
            database_writes,
            database_commits,
            database_operations,
            database_failures,
            database_connections,
            database_connections_max,
            resident_memory,
            cpu_seconds,
            open_fds,
        }
    }

    /// Counts a fetch of an issuer's keys or discovery document.
    pub fn issuer_fetch(&self, ok: bool) {
        let outcome = if ok { "success" } else { "failure" };
        self.issuer_fetches
            .get_or_create(&FetchLabels { outcome })
            .inc();
    }

    /// Counts one try of the mail worker: `sent`, `retry` or `failed`.
    pub fn mail_try(&self, outcome: &'static str) {
        self.mail_tries
            .get_or_create(&MailTryLabels { outcome })
            .inc();
    }

    /// Records one store operation: its time in seconds, and whether it failed (a 5xx).
    pub fn database_operation(&self, operation: &'static str, failed: bool, seconds: f64) {
        let labels = OperationLabels { operation };
        self.database_operations
            .get_or_create(&labels)
            .observe(seconds);
        if failed {
            self.database_failures.get_or_create(&labels).inc();
        }
    }

    /// Counts one refresh token presented again after its rotation: the session was revoked.
    pub fn reuse_detected(&self) {
        self.revocation("reuse");
    }

    fn revocation(&self, by: &'static str) {
        self.revocations
            .get_or_create(&RevocationLabels { by })
            .inc();
    }

    /// The exposition: every family in the OpenMetrics text format, ending in `# EOF`.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// Records one answered request: its route template (`None`: no route matched), path,
    /// method, the answer (status, error code, reuse, rotation) and its time in seconds.
    pub fn record(
        &self,
        route: Option<&str>,
        uri_path: &str,
        method: &Method,
        answer: &Response,
        seconds: f64,
    ) {
        let status = answer.status();
        let error = answer.extensions().get::<ApiError>();
        let reuse = error.is_some_and(|e| e.reuse_detected);
        let error = error.map(|e| e.code);
        let rotated = answer.extensions().get::<Rotated>().is_some_and(|r| r.0);
        let route_label = route.map_or("unmatched", interned_route);
        let method = method_label(method);
        self.requests
            .get_or_create(&RequestLabels {
                route: route_label,
                method,
                status: status.as_u16(),
            })
            .inc();
        self.durations
            .get_or_create(&RouteLabels {
                route: route_label,
                method,
            })
            .observe(seconds);
        if status == StatusCode::TOO_MANY_REQUESTS {
            self.rate_limited
                .get_or_create(&RouteOnly { route: route_label })
                .inc();
        }
        let outcome = if status.is_success() {
            "success"
        } else {
            error.unwrap_or("Error")
        };
        if reuse {
            self.reuse_detected();
        }
        let Some(route) = route else { return };
        if route.ends_with("/auth/providers/{provider}/login") {
            let provider = login_provider(uri_path);
            self.logins
                .get_or_create(&LoginLabels { provider, outcome })
                .inc();
            return;
        }
        let ok = status.is_success();
        match (method, route) {
            ("POST", "/api/client/v2.0/auth/session") => {
                self.refreshes
                    .get_or_create(&RefreshLabels { rotated, outcome })
                    .inc();
            }
            ("DELETE", "/api/client/v2.0/auth/session") if ok => self.revocation("logout"),
            ("DELETE", "/api/client/v2.0/auth/sessions")
            | ("DELETE", "/api/client/v2.0/auth/sessions/{id}")
                if ok =>
            {
                self.revocation("user")
            }
            ("DELETE", "/api/client/v2.0/auth/delete") if ok => self.revocation("user_deleted"),
            (_, r) if ok && r.starts_with("/api/admin/") && revokes_as_admin(method, r) => {
                self.revocation("admin")
            }
            ("POST", r) if ok && r.ends_with("/local-userpass/reset") => {
                self.revocation("password_reset")
            }
            _ => {}
        }
    }

    /// Sets the gauges read at scrape time: the mail queue (pending, failed; `None` when the
    /// database did not answer, which keeps the last figures), the hashing pool's admitted
    /// checks, the store's writes, commits and connections; and reads the process's figures.
    pub fn set_gauges(
        &self,
        mail: Option<(u64, u64)>,
        password_checks: usize,
        stats: &crate::store::StoreStats,
    ) {
        if let Some((pending, failed)) = mail {
            self.mail_queue
                .get_or_create(&MailLabels { state: "pending" })
                .set(pending as i64);
            self.mail_queue
                .get_or_create(&MailLabels { state: "failed" })
                .set(failed as i64);
        }
        self.password_checks.set(password_checks as i64);
        self.database_writes.set(stats.writes as i64);
        self.database_commits.set(stats.commits as i64);
        for (state, n) in [
            ("in_use", stats.connections_in_use),
            ("idle", stats.connections_idle),
        ] {
            self.database_connections
                .get_or_create(&ConnectionLabels { state })
                .set(n as i64);
        }
        self.database_connections_max
            .set(stats.connections_max as i64);
        if let Some(p) = process_figures() {
            self.resident_memory.set(p.resident_bytes as i64);
            self.cpu_seconds.set(p.cpu_seconds);
            self.open_fds.set(p.open_fds as i64);
        }
    }
}

/// Admin routes whose success ends sessions: a user's logout, deletion, or disabling.
fn revokes_as_admin(method: &str, route: &str) -> bool {
    matches!(
        (method, route.rsplit_once("/users/").map(|(_, tail)| tail)),
        ("PUT", Some("{user_id}/logout"))
            | ("DELETE", Some("{user_id}"))
            | ("PUT", Some("{user_id}/disable"))
    )
}

/// A route template as a `&'static str`, so that a request's labels are copied, not
/// allocated. Templates come from the router (a fixed set of a few dozen), never from a
/// request's path, so each is kept once for the life of the process.
fn interned_route(route: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{OnceLock, RwLock};
    static ROUTES: OnceLock<RwLock<HashSet<&'static str>>> = OnceLock::new();
    let routes = ROUTES.get_or_init(Default::default);
    if let Some(r) = routes.read().unwrap_or_else(|p| p.into_inner()).get(route) {
        return r;
    }
    let mut routes = routes.write().unwrap_or_else(|p| p.into_inner());
    if let Some(r) = routes.get(route) {
        return r;
    }
    let kept: &'static str = Box::leak(route.into());
    routes.insert(kept);
    kept
}

fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The provider segment of a login path, if it is one of [`PROVIDER_TYPES`] (an unknown one is
/// `unknown`, so that made-up names cannot grow the label set).
pub fn login_provider(path: &str) -> &'static str {
    let segment = path
        .strip_suffix("/login")
        .and_then(|p| p.rsplit('/').next())
        .unwrap_or_default();
    PROVIDER_TYPES
        .iter()
        .find(|p| **p == segment)
        .copied()
        .or_else(|| segment.starts_with(OIDC_PREFIX).then_some("oidc"))
        .unwrap_or("unknown")
}

struct ProcessFigures {
    resident_bytes: u64,
    cpu_seconds: f64,
    open_fds: u64,
}

/// Resident memory, CPU time and open descriptors from /proc/self (Linux); `None` elsewhere.
fn process_figures() -> Option<ProcessFigures> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces, so split after its ')').
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // proc(5): utime and stime are fields 14 and 15, rss 24 (1-based, the pid being 1).
    let ticks = |i: usize| fields.get(i - 3)?.parse::<u64>().ok();
    // sysconf(_SC_CLK_TCK) is 100 on every Linux that Rust targets.
    let cpu_seconds = (ticks(14)? + ticks(15)?) as f64 / 100.0;
    let page = 4096;
    let resident_bytes = ticks(24)? * page;
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64);
    Some(ProcessFigures {
        resident_bytes,
        cpu_seconds,
        open_fds,
    })
}
