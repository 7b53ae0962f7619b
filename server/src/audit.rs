//! The audit log of security events (#26; SERVER.md, "Audit log"): an append-only table,
//! written by the store in the same transaction as the change an event records (so there is no
//! event without its change and no change without its event), on both back ends. Events
//! without a change (a refused login, a rate limit) are written on their own.
//!
//! Who asked (the client's address, its user agent, and whether a user or an admin acted) is
//! the request's, set once per request by [`scope`] and read by the store where it writes the
//! event ([`context`]); work of the server's own (the sweeper, the mail worker) has none and is
//! the server's. An event never holds a token, a password, a code or a hash: its fields are
//! ids, names and kinds, and its `detail` is built here from such values only.

use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::Value;

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Actor {
    /// The user the event is about, or a client with no user yet (a login, a registration).
    User,
    /// An operator, through the admin API or CLI.
    Admin,
    /// The server itself: the sweeper, the mail worker, a start.
    Server,
}

impl Actor {
    /// The stored and listed name: `user`, `admin`, `server`.
    pub fn as_str(self) -> &'static str {
        match self {
            Actor::User => "user",
            Actor::Admin => "admin",
            Actor::Server => "server",
        }
    }
}

/// Where the events a request (or a job) wrote wait until its change has committed, to be
/// written to the log target (`[audit] log`): the store puts each event here once it is in the
/// database, and [`ship`] writes them after the store call returned.
#[derive(Debug, Clone, Default)]
pub struct Outbox(Option<Arc<Mutex<Vec<Event>>>>);

impl Outbox {
    /// An outbox that keeps events (the log target is on).
    pub fn new() -> Self {
        Self(Some(Arc::default()))
    }

    /// Keeps `e`, written as `seq`, for the log target, if there is one.
    pub fn put(&self, e: &Event, seq: i64) {
        if let Some(v) = &self.0 {
            let mut e = e.clone();
            e.seq = seq;
            v.lock().unwrap_or_else(|p| p.into_inner()).push(e);
        }
    }

    fn take(&self) -> Vec<Event> {
        match &self.0 {
            Some(v) => std::mem::take(&mut *v.lock().unwrap_or_else(|p| p.into_inner())),
            None => Vec::new(),
        }
    }
}

impl PartialEq for Outbox {
    fn eq(&self, _: &Self) -> bool {
        true // not part of what an event says
    }
}

/// What `[audit] log` (or `SESSIONKIT_AUDIT_LOG`) may be, for errors.
const LOG_TARGETS: &str = "[audit] log, or SESSIONKIT_AUDIT_LOG, is stdout, stderr or the path \
                           of a file in an existing directory";

/// The log target of `[audit] log`: each event as one JSON line, appended.
pub struct LogTarget {
    out: Mutex<Box<dyn std::io::Write + Send>>,
}

impl std::fmt::Debug for LogTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogTarget")
    }
}

impl LogTarget {
    /// `stdout`, `stderr` (in any case), or a file path (created with mode 0600, appended to).
    /// Errors: an empty target, or the file's, as a message naming it and what the target may
    /// be.
    pub fn open(target: &str) -> Result<Self, String> {
        let out: Box<dyn std::io::Write + Send> = match target {
            "" => return Err(LOG_TARGETS.into()),
            t if t.eq_ignore_ascii_case("stdout") => Box::new(std::io::stdout()),
            t if t.eq_ignore_ascii_case("stderr") => Box::new(std::io::stderr()),
            path => {
                let mut o = std::fs::OpenOptions::new();
                o.create(true).append(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut o, 0o600);
                Box::new(
                    o.open(path)
                        .map_err(|e| format!("cannot open {path}: {e} ({LOG_TARGETS})"))?,
                )
            }
        };
        Ok(Self {
            out: Mutex::new(out),
        })
    }

    /// Writes `events`, one JSON line each, in one write; a failure is logged, never returned
    /// (the database holds every event whatever happens here).
    pub fn write(&self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        let mut text = String::new();
        for e in events {
            text.push_str(&serde_json::to_string(e).unwrap_or_default());
            text.push('\n');
        }
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
            tracing::warn!("cannot write audit events to the log target: {e}");
        }
    }
}

/// Runs `f` (a request, or a job of the server's) in `context` with an outbox when `log` is
/// given, then writes the events it committed to `log`, unless `committed` says the work
/// failed (its events may not be in the database).
pub async fn ship<F: std::future::Future>(
    mut context: Context,
    log: Option<&LogTarget>,
    f: F,
    committed: impl FnOnce(&F::Output) -> bool,
) -> F::Output {
    if log.is_some() {
        context.outbox = Outbox::new();
    }
    let outbox = context.outbox.clone();
    let out = scope(context, f).await;
    if let Some(log) = log
        && committed(&out)
    {
        log.write(&outbox.take());
    }
    out
}

/// What a request tells every event it causes.
#[derive(Debug, Clone)]
pub struct Context {
    /// The client's address.
    pub ip: Option<std::net::IpAddr>,
    /// Its `User-Agent` as it came (a shared buffer: cloned by reference count, read and
    /// cut to [`USER_AGENT_MAX`] characters only when an event is made, which most requests
    /// never do).
    pub user_agent: Option<axum::http::HeaderValue>,
    /// Who acts: a client route's caller, or an admin.
    pub actor: Actor,
    /// The request's time on the server clock (Unix seconds).
    pub now: i64,
    /// Where its committed events wait for the log target.
    pub outbox: Outbox,
}

/// Longest user agent kept (characters).
pub const USER_AGENT_MAX: usize = 200;

/// A `User-Agent` as an event keeps it: its first [`USER_AGENT_MAX`] characters; `None`
/// when it is not visible ASCII text (RFC 9110 allows only that; obs-text is dropped).
fn user_agent_text(v: &axum::http::HeaderValue) -> Option<String> {
    v.to_str()
        .ok()
        .map(|ua| ua.chars().take(USER_AGENT_MAX).collect())
}

tokio::task_local! {
    static REQUEST: Context;
}

/// Runs `f` with `context` as the context of every event it causes.
pub async fn scope<F: std::future::Future>(context: Context, f: F) -> F::Output {
    REQUEST.scope(context, f).await
}

/// The context of the current request; the server's own outside of one.
pub fn context() -> Context {
    REQUEST
        .try_with(Context::clone)
        .unwrap_or_else(|_| Context {
            ip: None,
            user_agent: None,
            actor: Actor::Server,
            now: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64),
            outbox: Outbox::default(),
        })
}

/// The context of the server's own work (the mail worker, a key rotation) at `now`.
pub fn server_context(now: i64) -> Context {
    Context {
        ip: None,
        user_agent: None,
        actor: Actor::Server,
        now,
        outbox: Outbox::default(),
    }
}

/// The kinds of event (SERVER.md, "Audit log").
pub mod kind {
    /// A login succeeded (`detail.provider`, `detail.new_user`).
    pub const LOGIN: &str = "login";
    /// A login was refused (`detail.provider`, `detail.error`: the error code).
    pub const LOGIN_FAILED: &str = "login_failed";
    /// An email/password account was registered.
    pub const REGISTERED: &str = "registered";
    /// An email address was confirmed.
    pub const CONFIRMED: &str = "confirmed";
    /// A password was reset (every session of the user ended with it).
    pub const PASSWORD_RESET: &str = "password_reset";
    /// A rotated-out refresh token was presented again: its session was revoked.
    pub const REFRESH_TOKEN_REUSE: &str = "refresh_token_reuse";
    /// Sessions were ended by the user or an admin (`detail.scope`, `detail.count`).
    pub const SESSIONS_REVOKED: &str = "sessions_revoked";
    /// A user was disabled.
    pub const USER_DISABLED: &str = "user_disabled";
    /// A user was enabled.
    pub const USER_ENABLED: &str = "user_enabled";
    /// A user was deleted, by themself or an admin.
    pub const USER_DELETED: &str = "user_deleted";
    /// An API key was created (`detail.key_id`, `detail.name`).
    pub const API_KEY_CREATED: &str = "api_key_created";
    /// An API key was disabled (`detail.key_id`).
    pub const API_KEY_DISABLED: &str = "api_key_disabled";
    /// An API key was enabled (`detail.key_id`).
    pub const API_KEY_ENABLED: &str = "api_key_enabled";
    /// An API key was deleted, and its sessions with it (`detail.key_id`).
    pub const API_KEY_DELETED: &str = "api_key_deleted";
    /// A request was refused by a rate limit (`detail.limit`).
    pub const RATE_LIMITED: &str = "rate_limited";
    /// A mail was sent (`detail.mail`: its kind, `detail.seq`).
    pub const MAIL_SENT: &str = "mail_sent";
    /// A mail failed for good (`detail.mail`, `detail.seq`).
    pub const MAIL_FAILED: &str = "mail_failed";
    /// An app's access-token signing key was added (`detail.kid`, `detail.alg`).
    pub const SIGNING_KEY_ADDED: &str = "signing_key_added";

    /// Every kind, for filters' checks.
    pub const ALL: &[&str] = &[
        LOGIN,
        LOGIN_FAILED,
        REGISTERED,
        CONFIRMED,
        PASSWORD_RESET,
        REFRESH_TOKEN_REUSE,
        SESSIONS_REVOKED,
        USER_DISABLED,
        USER_ENABLED,
        USER_DELETED,
        API_KEY_CREATED,
        API_KEY_DISABLED,
        API_KEY_ENABLED,
        API_KEY_DELETED,
        RATE_LIMITED,
        MAIL_SENT,
        MAIL_FAILED,
        SIGNING_KEY_ADDED,
    ];
}

/// One event, as written.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Its place in the log (assigned by the database; 0 before).
    pub seq: i64,
    /// Unix seconds, on the server clock.
    pub at: i64,
    /// The app.
    pub app_id: String,
    /// One of [`kind`].
    pub kind: String,
    /// The user it is about, if any.
    pub user_id: Option<String>,
    /// The session it is about, if any.
    pub session_id: Option<String>,
    /// The client's address.
    pub ip: Option<String>,
    /// The client's user agent.
    pub user_agent: Option<String>,
    /// Who acted.
    pub actor: String,
    /// What else it says (ids, names, kinds, counts; never a secret), or null.
    pub detail: Value,
    /// Where it goes once written, for the log target (not part of the event).
    #[serde(skip)]
    pub outbox: Outbox,
}

impl Event {
    /// An event of `kind` about `app_id`, now, in the current request's [`context`] (its
    /// time is the request's on the server clock).
    pub fn new(app_id: &str, kind: &str) -> Self {
        Self::in_context(app_id, kind, context())
    }

    /// An event of `kind` about `app_id` in context `c`, at its time.
    pub fn in_context(app_id: &str, kind: &str, c: Context) -> Self {
        Self {
            seq: 0,
            at: c.now,
            app_id: app_id.to_owned(),
            kind: kind.to_owned(),
            user_id: None,
            session_id: None,
            ip: c.ip.map(|a| a.to_string()),
            user_agent: c.user_agent.as_ref().and_then(user_agent_text),
            actor: c.actor.as_str().to_owned(),
            detail: Value::Null,
            outbox: c.outbox,
        }
    }

    /// At `at` (Unix seconds), for a change that knows its time.
    pub fn at(mut self, at: i64) -> Self {
        self.at = at;
        self
    }

    /// Of another kind.
    pub fn kind(mut self, kind: &str) -> Self {
        self.kind = kind.to_owned();
        self
    }

    /// With the user it is about.
    pub fn user(mut self, user_id: &str) -> Self {
        self.user_id = Some(user_id.to_owned());
        self
    }

    /// With the session it is about.
    pub fn session(mut self, session_id: &str) -> Self {
        self.session_id = Some(session_id.to_owned());
        self
    }

    /// With `detail`.
    pub fn detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }

    /// The detail as stored: JSON text, or `None` for null.
    pub fn detail_text(&self) -> Option<String> {
        (!self.detail.is_null()).then(|| self.detail.to_string())
    }
}

/// A query of the log (admin API, `admin events list`): every condition given must hold.
#[derive(Debug, Clone)]
pub struct Filter {
    /// The app.
    pub app_id: String,
    /// Only this user's.
    pub user_id: Option<String>,
    /// Only these kinds (empty: all).
    pub kinds: Vec<String>,
    /// From this time on (Unix seconds, inclusive).
    pub since: Option<i64>,
    /// Before this time (Unix seconds, exclusive).
    pub until: Option<i64>,
    /// After this `seq` (the previous page's last).
    pub after: Option<i64>,
    /// At most this many (1 to [`PAGE_MAX`]).
    pub limit: i64,
}

/// The largest page of events.
pub const PAGE_MAX: i64 = 1000;
