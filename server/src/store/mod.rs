//! Storage: one interface in the server's own terms, two implementations.
//!
//! [`Store`] is what handlers call; it has no SQL in its signature. [`sqlite::SqliteStore`] is
//! the embedded default (one file, one process), [`postgres::PostgresStore`] the scale-out
//! backend (several server instances on one database). Every method that must be atomic is
//! one transaction in both, and every guarantee of the protocol (rotation with reuse
//! detection, single-use mail tokens, unique API key names, one signing secret per app) holds
//! with several instances: it comes from the database (constraints, row locks), never from an
//! in-process mutex. Both run the same test suites (`SESSIONKIT_TEST_POSTGRES`).
//!
//! What an operation means is decided once, not per back end (#28): [`login`], [`refresh`],
//! [`import`], [`users`], [`accounts`] and [`api_keys`] are written over
//! [`transaction::Transaction`], the reads and writes of one transaction in the server's terms,
//! which each back end implements with its SQL and locks.

pub mod accounts;
pub mod api_keys;
pub mod import;
pub mod login;
pub mod postgres;
pub mod refresh;
pub mod sqlite;
pub mod transaction;
pub mod users;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value, json};
use subtle::ConstantTimeEq;

use crate::credentials::{Identity, Proof};
use crate::error::ApiError;
use crate::tokens;

/// Write counts and connection use of one instance, for the metrics extension and
/// `/metrics`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct StoreStats {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// Write operations answered (each a transaction of its own on PostgreSQL).
    pub writes: u64,
    /// Commits made: on SQLite, one commit (one fsync) holds every write waiting at the time
    /// (group commit), so under load `commits` < `writes`.
    pub commits: u64,
    /// Database connections at work now: SQLite's read connections in a query, plus its
    /// writer while it runs a batch; PostgreSQL's pool connections lent out.
    pub connections_in_use: u64,
    /// Open connections waiting for work.
    pub connections_idle: u64,
    /// The most connections this instance holds (SQLite: its read connections and the
    /// writer; PostgreSQL: `[database] max_connections`).
    pub connections_max: u64,
}

/// What every store method answers: the protocol's error on failure (a database error is a 500
/// with no detail for the client, logged on the server).
pub type StoreResult<T> = Result<T, ApiError>;

/// How long a rotated-out refresh token keeps working, in seconds: a retry after a lost
/// response (PROTOCOL.md, "Refresh token rotation").
pub const ROTATION_GRACE_SECS: i64 = 10;

// Pruning rotated-out refresh tokens (both stores, at each rotation): a session keeps its
// current token, the token just presented (the current one's parent: a retry after a lost
// answer), and every token still within its grace window; older rows are deleted, so a
// session's rows stay few however long it lives (#16: refreshes got slower with session age).
// Reuse of a pruned token is still detected: its signature proves the server issued it, its
// `sid` names its session, and a live session's token that is not in the store can only be a
// rotated-out one (PresentedRefresh::session_id).
//
// A token that is accepted again (within its grace window, or after a lost answer) is answered
// with its successor, made again from that successor's row (`successor_again`), so the row must
// still be there; it is: a pruning that keeps the parent keeps its successor too, which is of a
// later generation and was superseded no earlier (or is current).

/// A user row.
#[derive(Debug, Clone)]
pub struct UserRow {
    /// User id.
    pub id: String,
    /// App id.
    pub app_id: String,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// Last login time (Unix seconds).
    pub last_login_at: i64,
    /// Disabled by the admin.
    pub disabled: bool,
    /// Created by anonymous login.
    pub anonymous: bool,
    /// Custom user data (`user_data` claim).
    pub custom_data: Option<Value>,
}

/// An identity of a user.
#[derive(Debug, Clone)]
pub struct IdentityRow {
    /// Provider type, e.g. `local-userpass`.
    pub provider_type: String,
    /// The id within the provider.
    pub external_id: String,
    /// Profile data from this identity.
    pub data: Map<String, Value>,
}

/// A login session (one per login; rotation keeps the row).
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// Session id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Device id of the login.
    pub device_id: String,
    /// Last refresh (or the login), Unix seconds.
    pub last_used_at: i64,
    /// Absolute expiry of the session's refresh tokens, Unix seconds.
    pub expires_at: i64,
    /// Logged out or revoked.
    pub revoked: bool,
    /// The API key it logged in with, if it did.
    pub api_key_id: Option<String>,
    /// The thumbprint of the key it is bound to (DPoP, dpop.rs): its refresh token works only
    /// with a proof from that key.
    pub jkt: Option<String>,
}

/// An email/password account.
#[derive(Debug, Clone)]
pub struct UserpassRow {
    /// The email (canonical form, email.rs).
    pub email: String,
    /// The `local-userpass` identity id.
    pub identity_id: String,
    /// The password column: the server's argon2 PHC string, or an imported hash or the
    /// must-reset mark ([`crate::passwords::StoredPassword`]).
    pub password_hash: String,
    /// Email confirmed.
    pub confirmed: bool,
}

/// A user as an export writes it (export.rs): the user, its identities (oldest first), and the
/// email account of its `local-userpass` identity when it has one.
#[derive(Debug, Clone)]
pub struct ExportUser {
    /// The user.
    pub user: UserRow,
    /// Its identities, oldest first.
    pub identities: Vec<IdentityRow>,
    /// The email account of its `local-userpass` identity (found by the identity's email).
    pub account: Option<UserpassRow>,
}

/// An API key as its owner sees it (never the key itself, which is stored hashed).
#[derive(Debug, Clone)]
pub struct ApiKeyRow {
    /// Key id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Name, unique per user.
    pub name: String,
    /// Disabled by its owner.
    pub disabled: bool,
}

/// An access-token signing key as stored (signing.rs parses it).
#[derive(Debug, Clone)]
pub struct SigningKeyRow {
    /// Key id (`kid`).
    pub kid: String,
    /// `ES256` or `RS256`.
    pub alg: String,
    /// PKCS#8 PEM of the private key.
    pub private_pem: String,
    /// The public JWK, as JSON text.
    pub public_jwk: String,
    /// Creation time (Unix seconds).
    pub created_at: i64,
    /// When a newer key replaced it (Unix seconds).
    pub retired_at: Option<i64>,
}

/// A mail the server would have sent (confirmation, reset, sign-in code), kept for the admin
/// API.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    /// `confirm`, `reset` or `email-otp`.
    pub kind: String,
    /// Recipient.
    pub email: String,
    /// The single-use token.
    pub token: String,
    /// Its id.
    pub token_id: String,
}

/// A mail of the queue, claimed by the delivery worker (mail.rs) for a while.
#[derive(Debug, Clone)]
pub struct QueuedMail {
    /// Its place in the queue.
    pub seq: i64,
    /// App id.
    pub app_id: String,
    /// `confirm`, `reset` or `email-otp`.
    pub kind: String,
    /// Recipient (canonical form, email.rs).
    pub email: String,
    /// The single-use token (or sign-in code) the mail carries; empty once it must no longer
    /// be sent (a newer code replaced it).
    pub token: String,
    /// Its id.
    pub token_id: String,
    /// When it was queued (Unix seconds, server clock).
    pub created_at: i64,
    /// When its token expires (Unix seconds).
    pub expires_at: i64,
    /// Tries so far, this one included.
    pub attempts: i64,
}

/// A mail of the queue as an operator sees it (never its token).
#[derive(Debug, Clone, serde::Serialize)]
pub struct MailRow {
    /// Its place in the queue.
    pub seq: i64,
    /// `confirm` or `reset`.
    pub kind: String,
    /// Recipient.
    pub email: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    /// Tries so far.
    pub attempts: i64,
    /// When it was queued (Unix seconds, server clock).
    pub created_at: i64,
    /// When it is due for its next try (pending), Unix seconds.
    pub next_at: i64,
    /// When the relay took it (sent), Unix seconds.
    pub sent_at: Option<i64>,
    /// Why the last try failed (failed; pending after a failed try).
    pub error: Option<String>,
}

/// How long a sent mail stays in the queue's listing (seconds): then the sweeper deletes it.
/// Failed and pending mails stay until an operator retries them or they are sent.
pub const SENT_MAIL_KEPT_SECS: i64 = 30 * 24 * 3600;

/// Status of a queued mail: waiting for (another) try.
pub const MAIL_PENDING: &str = "pending";
/// Status of a queued mail: the relay took it.
pub const MAIL_SENT: &str = "sent";
/// Status of a queued mail: given up (5xx, or retried too long), reason kept.
pub const MAIL_FAILED: &str = "failed";

/// What the delivery worker reports of a try.
#[derive(Debug, Clone)]
pub enum MailOutcome {
    /// The relay accepted the mail at this time (Unix seconds): the token is no longer kept.
    Sent(i64),
    /// Try again at this time (Unix seconds); the reason of this failure.
    RetryAt(i64, String),
    /// Given up, with the reason.
    Failed(String),
}

/// A new single-use mail token: the token goes to the outbox, its hash to the token table.
#[derive(Debug, Clone)]
pub struct MailToken {
    /// `confirm` or `reset`.
    pub kind: &'static str,
    /// The token (64 alphanumerics).
    pub token: String,
    /// Its id (an object id).
    pub token_id: String,
    /// When it was made (Unix seconds).
    pub created_at: i64,
    /// When it expires (Unix seconds).
    pub expires_at: i64,
}

/// A new one-time sign-in code (`email-otp`, email_otp.rs): its MAC goes to the code table
/// (replacing the address's live code), the code itself to the mail queue. `Debug` leaves the
/// code out.
#[derive(Clone)]
pub struct EmailOtpCode {
    /// The code (decimal digits), for the mail only.
    pub code: String,
    /// [`crate::email_otp::code_mac`] of the code: what is stored.
    pub mac: String,
    /// Id of its mail in the queue (the outbox's `tokenId`).
    pub mail_id: String,
    /// When it was made (Unix seconds).
    pub created_at: i64,
    /// When it expires (Unix seconds).
    pub expires_at: i64,
    /// Wrong codes that may be tried before it is void.
    pub attempts: i64,
}

impl std::fmt::Debug for EmailOtpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailOtpCode")
            .field("mail_id", &self.mail_id)
            .field("expires_at", &self.expires_at)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Why a queued code mail of an address is no longer sent: a newer code replaced its code.
pub const CODE_REPLACED: &str = "its code was replaced by a newer one before it was sent";

/// An address's live code as stored: its MAC, expiry and the wrong attempts it has left.
#[derive(Debug, Clone)]
pub struct StoredCode {
    /// The code's MAC.
    pub mac: String,
    /// Unix seconds.
    pub expires_at: i64,
    /// Wrong attempts left.
    pub attempts_left: i64,
}

/// What a login's presented code (its MAC) does to the address's stored code (both stores,
/// in the login's transaction, the code's row locked).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeVerdict {
    /// No live code (none, or expired): 401 CodeExpired, nothing to write but the removal of
    /// an expired row.
    NoLiveCode,
    /// Wrong: one attempt spent, and `left` remain (the row is deleted at 0). The spent
    /// attempt is committed though the login fails (401 InvalidCode).
    Wrong {
        /// Attempts left after this one.
        left: i64,
    },
    /// Right: the code is consumed in the transaction that writes the session.
    Right,
}

/// Judges a presented MAC against the stored code at `now`, in constant time ([`same_mac`]).
pub fn judge_code(stored: Option<&StoredCode>, mac: &str, now: i64) -> CodeVerdict {
    match stored {
        Some(c) if c.expires_at > now && c.attempts_left > 0 => {
            if same_mac(&c.mac, mac) {
                CodeVerdict::Right
            } else {
                CodeVerdict::Wrong {
                    left: c.attempts_left - 1,
                }
            }
        }
        _ => CodeVerdict::NoLiveCode,
    }
}

impl CodeVerdict {
    /// The error a login with this verdict fails with (PROTOCOL.md, "Email one-time codes"):
    /// `None` for the right code.
    pub fn error(self) -> Option<ApiError> {
        match self {
            Self::NoLiveCode => Some(code_expired()),
            Self::Wrong { left } => Some(invalid_code(left)),
            Self::Right => None,
        }
    }
}

/// Whether two MACs are equal, in time that does not depend on where they differ.
pub fn same_mac(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// 401 InvalidCode: a live code exists for the address and this one is wrong; an attempt was
/// spent (`left` remain; at 0 the code is void).
fn invalid_code(left: i64) -> ApiError {
    let message = if left > 0 {
        format!(
            "wrong code ({left} attempt{} left); check the code in the mail",
            if left == 1 { "" } else { "s" }
        )
    } else {
        "wrong code, and no attempts are left: ask for a new code".to_string()
    };
    ApiError::new(axum::http::StatusCode::UNAUTHORIZED, "InvalidCode", message)
}

/// 401 CodeExpired: no live code for the address (never sent, expired, already used, or void
/// after too many wrong attempts).
fn code_expired() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "CodeExpired",
        "no valid code for this address (it expired, was used, or had too many wrong \
         attempts): ask for a new code",
    )
}

/// Kind of a confirmation token.
pub const CONFIRM: &str = "confirm";
/// Kind of a password-reset token.
pub const RESET: &str = "reset";
/// How long confirmation and reset tokens stay valid, in seconds.
pub const MAIL_TOKEN_LIFETIME_SECS: i64 = 30 * 60;

impl MailToken {
    /// A fresh token of `kind`, valid for [`MAIL_TOKEN_LIFETIME_SECS`] from `now`.
    pub fn new(kind: &'static str, now: i64) -> MailToken {
        MailToken {
            kind,
            token: tokens::random_alnum(64),
            token_id: tokens::new_object_id(),
            created_at: now,
            expires_at: now + MAIL_TOKEN_LIFETIME_SECS,
        }
    }
}

// A login that races a deletion (#22): credentials are checked before the login's transaction
// (a password hash takes tens of milliseconds), so the account they proved may be deleted in
// between, by this instance or another. [`Store::login`] checks again, in the transaction that
// writes the session, what the credentials proved ([`crate::credentials::Proof`]) and that the
// user still exists, and fails as a login a moment later would ([`Login::gone`]); on
// PostgreSQL it locks those rows first (email account, then user, then API key: the order of a
// deletion) so that a deletion on another instance cannot come between the check and the
// session. Never a new user for a deleted email account or API key; an outside identity of a
// deleted user logs in as a new, whole user (identity and session), as it would a moment later.
//
// An email one-time code ([`Proof::EmailOtp`], #23) is judged only in that transaction: the
// address's code row is locked (PostgreSQL: `FOR UPDATE`; SQLite: the one writer) and
// [`judge_code`] decides. A wrong code spends an attempt that is committed though the login
// fails; a right one is deleted with the session's writes, so of two logins with one code one
// gets a session and the other CodeExpired. The user is (1) the owner of the `email-otp`
// identity of the address, else (2) the user of a confirmed `local-userpass` account of the
// address (locked `FOR SHARE` like a password login's), which gets the identity, else (3) a new
// user. Linking takes the same owner: a code never moves an address away from the user it logs
// into (409 as for any identity of another user). An unconfirmed account is never logged into
// by a code: its password may have been set by someone who does not own the address.

/// A login: who logs in, and the session to start once the user is known.
pub struct Login {
    /// App id.
    pub app_id: String,
    /// The verified identity; `None` is an anonymous login (a new user every time).
    pub identity: Option<Identity>,
    /// Link the identity to this (authenticated) user instead of logging in with it.
    pub link_to: Option<String>,
    /// Unix seconds.
    pub now: i64,
}

impl Login {
    /// The error of this login when what its credentials proved is gone by the time of its
    /// transaction (deleted meanwhile): the answer the same login gets a moment later.
    pub fn gone(&self) -> ApiError {
        if self.link_to.is_some() {
            return linking_user_gone();
        }
        match self.identity.as_ref().map(|i| &i.proof) {
            Some(Proof::Userpass { .. }) => invalid_password(),
            Some(Proof::ApiKey { .. }) => invalid_api_key(),
            // An outside identity (or an address that proved itself with a code) whose user
            // vanished after the store saw it (PostgreSQL, a deletion racing a first login on
            // another instance): nothing was written, the code is still live, and the next try
            // logs in.
            Some(Proof::Outside | Proof::EmailOtp { .. }) | None => {
                ApiError::unavailable("the account changed during the login; retry the login", 1)
            }
        }
    }
}

/// A session about to be stored: the store keeps the refresh token's hash only.
pub struct NewSession {
    /// Session id.
    pub id: String,
    /// Device id of the login.
    pub device_id: String,
    /// Absolute expiry, Unix seconds.
    pub expires_at: i64,
    /// The first refresh token.
    pub refresh_token: String,
    /// The API key it logs in with, whose deletion or disabling ends it.
    pub api_key_id: Option<String>,
    /// The provider it logged in with (`anon-user`, `local-userpass`, ...).
    pub provider_type: String,
    /// The login's device document, as the JSON text listed to its user (bounded).
    pub device: Option<String>,
    /// The client address of the login.
    pub ip: Option<String>,
    /// The thumbprint of the key it is bound to (DPoP), if it is.
    pub jkt: Option<String>,
}

/// A live session as its user sees it (`GET auth/sessions`, #25): never a token or a hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionInfo {
    /// Session id (not a credential).
    pub id: String,
    /// Login time, Unix seconds.
    pub created_at: i64,
    /// Last refresh (or the login), Unix seconds.
    pub last_used_at: i64,
    /// The provider it logged in with; `None` for sessions from before #25.
    pub provider_type: Option<String>,
    /// The login's device document (JSON text); `None` for sessions from before #25.
    pub device: Option<String>,
    /// The client address of the login.
    pub ip: Option<String>,
    /// The API key it logged in with: its id and name.
    pub api_key: Option<(String, String)>,
}

/// Makes the session of a login once its user is known (in the login's transaction).
pub type StartSession = Box<dyn FnOnce(&UserRow) -> NewSession + Send>;

/// Makes the refresh tokens of a rotating session: `(session, parent_hash, issued_at)` is the
/// successor of the token whose SHA-256 (hex) is `parent_hash`, issued at `issued_at` (Unix
/// seconds). The same arguments give the same token, so the store can hand out again the
/// successor a token already produced from the successor's row (sessions.rs).
pub type NextRefreshToken = Box<dyn Fn(&SessionRow, &str, i64) -> String + Send>;

/// A stored token of the generation after a presented one's: its successor, or (in sessions
/// rotated before successors were derived, when a retry made a sibling) a token of another
/// parent.
#[derive(Debug, Clone)]
pub struct Successor {
    /// SHA-256 (hex) of the token.
    pub token_hash: String,
    /// When it was issued (its `iat`), Unix seconds.
    pub issued_at: i64,
    /// Whether it is the session's current token and was never presented: the answer that
    /// carried it was lost (the "lost answer" rule, PROTOCOL.md "Refresh token rotation").
    pub current_unused: bool,
}

/// What a refresh token is presented for.
pub enum RefreshUse {
    /// POST session: mark the session used and, with `Some`, rotate to the token it makes (a
    /// token rotated out already gets the successor it produced, [`refresh::successor_again`]).
    Refresh(Option<NextRefreshToken>),
    /// DELETE session: end the session.
    Logout,
    /// Authenticate another call (API keys).
    Authenticate,
}

/// A verified refresh token presented to the store.
pub struct PresentedRefresh {
    /// App id (the token's verified `iss`).
    pub app_id: String,
    /// The token's `sub`.
    pub user_id: String,
    /// SHA-256 (hex) of the token.
    pub token_hash: String,
    /// The token's `sid`: the session it was issued for. Finds the session of a rotated-out
    /// token whose row was pruned, so that its reuse still revokes the session.
    pub session_id: Option<String>,
    /// The app's inactivity timeout in seconds (0: none).
    pub inactivity_timeout_secs: i64,
    /// The thumbprint of the key of the request's DPoP proof, checked (dpop.rs); `None`
    /// without one.
    pub proof_jkt: Option<String>,
    /// The app binds every session (`dpop = "required"`): an unbound session is bound to the
    /// proof's key at this use, and refused without one.
    pub dpop_required: bool,
    /// Unix seconds.
    pub now: i64,
}

/// A refresh token that passed: its session and user, and the rotated-in token if any.
pub struct CheckedSession {
    /// The session.
    pub session: SessionRow,
    /// Its user.
    pub user: UserRow,
    /// The session's next refresh token (rotation).
    pub rotated: Option<String>,
}

/// What the store knows of a presented refresh token.
#[derive(Debug, Clone, Copy)]
pub struct PresentedToken {
    /// When a rotation replaced it (Unix seconds); `None` for the session's current token.
    pub superseded_at: Option<i64>,
    /// Its place in the session's chain: 0 for the login's, parent's + 1 for a rotation's.
    pub generation: i64,
}

/// The storage interface of the server.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which backend this is: `sqlite` or `postgres` (logs, `/health`).
    fn backend(&self) -> &'static str;

    /// This instance's write counts since start (GET metrics).
    fn stats(&self) -> StoreStats;

    /// Answers when the database does (GET /health).
    async fn ping(&self) -> StoreResult<()>;

    /// The value under `key`, storing `value` first when there is none. Two instances starting
    /// together get the same value (the first insert wins).
    async fn meta_get_or_insert(&self, key: &str, value: String) -> StoreResult<String>;
    /// The value under `key`.
    async fn meta_get(&self, key: &str) -> StoreResult<Option<String>>;
    /// Stores `value` under `key`.
    async fn meta_set(&self, key: &str, value: &str) -> StoreResult<()>;
    /// Every `(key, value)` whose key starts with `prefix`, by key.
    async fn meta_with_prefix(&self, prefix: &str) -> StoreResult<Vec<(String, String)>>;

    /// An app's signing keys, newest first.
    async fn signing_keys(&self, app_id: &str) -> StoreResult<Vec<SigningKeyRow>>;
    /// Retires the app's active key and stores `make()`'s, in one transaction that excludes
    /// every other key change of the app; with `only_if_alg_differs`, does nothing when the
    /// active key already has that algorithm. Whether a key was stored.
    async fn add_signing_key(
        &self,
        app_id: &str,
        only_if_alg_differs: Option<&'static str>,
        make: Box<dyn FnOnce() -> Result<SigningKeyRow, String> + Send>,
        now: i64,
    ) -> StoreResult<bool>;

    /// Logs in (or links): finds or creates the user, records the identity, refuses a
    /// disabled user (401 UserDisabled) or an identity of another user when linking (409),
    /// and stores the session `start` makes, in one transaction. That transaction first finds
    /// again what the credentials proved (the identity's `proof`: the email account with the
    /// checked password hash, the enabled API key) and the linking user, and fails with
    /// [`Login::gone`] when a deletion came between (see "A login that races a deletion"
    /// above). The user and that session.
    async fn login(&self, login: Login, start: StartSession) -> StoreResult<(UserRow, NewSession)>;
    /// Imports a batch of users (import.rs), each line in a transaction of its own (SQLite: a
    /// savepoint of its own): created, updated, unchanged, or refused with the reason (a
    /// refused line writes nothing). With `dry_run`, nothing is kept, and the lines of the
    /// batch still see each other's effects (one transaction, rolled back at the end).
    /// PostgreSQL serializes imports of one user id, email or identity across instances.
    async fn import_users(
        &self,
        app_id: &str,
        users: Vec<import::ImportUser>,
        dry_run: bool,
        now: i64,
    ) -> StoreResult<Vec<Result<import::Imported, String>>>;
    /// Replaces the password column `old` of an email account by `new` when `old` is still
    /// there (an imported hash upgraded at its first login, #24). Whether it was: `false` when
    /// another login upgraded it first or the password changed meanwhile.
    async fn upgrade_password(
        &self,
        app_id: &str,
        email: &str,
        old: &str,
        new: &str,
    ) -> StoreResult<bool>;
    /// A user of an app.
    async fn user(&self, app_id: &str, user_id: &str) -> StoreResult<Option<UserRow>>;
    /// A user's identities, oldest first.
    async fn identities(&self, user_id: &str) -> StoreResult<Vec<IdentityRow>>;
    /// Every user of an app with their identities, oldest first (admin API).
    async fn users(&self, app_id: &str) -> StoreResult<Vec<(UserRow, Vec<IdentityRow>)>>;
    /// A page of an app's users for an export (#24): up to `limit` users whose id sorts after
    /// `after` (all from the first without it), by id, each with its identities and email
    /// account. Paging by id keeps each page one index range, however far the export is.
    async fn export_users(
        &self,
        app_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<ExportUser>>;
    /// Deletes a user with everything it owns, email accounts included. Whether it existed.
    async fn delete_user(&self, app_id: &str, user_id: &str) -> StoreResult<bool>;
    /// Ends every session of a user. Whether the user exists.
    async fn revoke_sessions(&self, app_id: &str, user_id: &str) -> StoreResult<bool>;
    /// The user's live sessions (not revoked, not expired at `now`), oldest first.
    async fn user_sessions(
        &self,
        app_id: &str,
        user_id: &str,
        now: i64,
    ) -> StoreResult<Vec<SessionInfo>>;
    /// Ends one live session of the user; false when the user has no live session of that id
    /// (another user's id included), so that ids cannot be probed. One statement: atomic on
    /// both back ends.
    async fn revoke_user_session(
        &self,
        app_id: &str,
        user_id: &str,
        session_id: &str,
        now: i64,
    ) -> StoreResult<bool>;
    /// Ends the user's sessions but `keep` (every one when `None`); how many were live.
    async fn revoke_sessions_but(
        &self,
        app_id: &str,
        user_id: &str,
        keep: Option<&str>,
    ) -> StoreResult<usize>;
    /// Whether a session still stands (exists, not revoked, not expired at `now`): an access
    /// token of a revoked session is refused at once (#25).
    async fn session_live(&self, session_id: &str, now: i64) -> StoreResult<bool>;

    /// Remembers a DPoP proof (its [`crate::dpop::Proof::replay_key`]) until `until` (Unix
    /// seconds); `false` when it was remembered already: a replay, to be refused. On every
    /// instance (the database decides).
    async fn remember_proof(&self, replay_key: &str, until: i64) -> StoreResult<bool>;
    /// Disables (ending its sessions) or enables a user. Whether the user exists.
    async fn set_user_disabled(
        &self,
        app_id: &str,
        user_id: &str,
        disabled: bool,
    ) -> StoreResult<bool>;
    /// Replaces a user's custom data (a JSON object's text). Whether the user exists.
    async fn set_custom_data(&self, app_id: &str, user_id: &str, doc: &str) -> StoreResult<bool>;

    /// Judges a refresh token and uses it, in one transaction that excludes every other use
    /// of the same session (on every instance): reuse of a rotated-out token after the grace
    /// window revokes the session (committed, though the call fails with 401); a token that
    /// passes is marked as seen by its client, then refreshed (and rotated), logged out, or
    /// just accepted. A rotated-out token that passes (the grace window, a lost answer) gets
    /// the successor it already produced, not a new one: no row is added or superseded.
    async fn use_refresh_token(
        &self,
        presented: PresentedRefresh,
        purpose: RefreshUse,
    ) -> StoreResult<CheckedSession>;

    /// Stores a new API key (its SHA-256 only); 409 APIKeyAlreadyExists when the user has one
    /// of that name.
    async fn create_api_key(
        &self,
        app_id: &str,
        user_id: &str,
        key: &ApiKeyRow,
        key_hash: &str,
        now: i64,
    ) -> StoreResult<()>;
    /// A user's API keys, oldest first.
    async fn api_keys(&self, user_id: &str) -> StoreResult<Vec<ApiKeyRow>>;
    /// One API key of a user.
    async fn api_key(&self, user_id: &str, id: &str) -> StoreResult<Option<ApiKeyRow>>;
    /// The API key with this hash, in an app.
    async fn api_key_by_hash(&self, app_id: &str, key_hash: &str)
    -> StoreResult<Option<ApiKeyRow>>;
    /// Deletes an API key, its identity, and ends the sessions that logged in with it.
    /// Whether it existed.
    async fn delete_api_key(&self, user_id: &str, id: &str) -> StoreResult<bool>;
    /// Disables (ending its sessions) or enables an API key. Whether it exists.
    async fn set_api_key_disabled(
        &self,
        user_id: &str,
        id: &str,
        disabled: bool,
    ) -> StoreResult<bool>;

    /// An email account.
    async fn userpass(&self, app_id: &str, email: &str) -> StoreResult<Option<UserpassRow>>;
    /// Creates an email account (with `confirm` in the outbox when it needs confirming);
    /// 409 AccountNameInUse when the address has one.
    async fn register(
        &self,
        app_id: &str,
        email: &str,
        password_hash: &str,
        confirm: Option<MailToken>,
        now: i64,
    ) -> StoreResult<()>;
    /// Creates a confirmed email account with its user (admin API); 409 AccountNameInUse.
    async fn create_confirmed_user(
        &self,
        app_id: &str,
        email: &str,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<(UserRow, Vec<IdentityRow>)>;
    /// Stores a mail token for an existing account and puts it in the outbox; 404
    /// UserNotFound without one, 409 UserAlreadyConfirmed for a confirmation of a confirmed
    /// account.
    async fn issue_mail_token(
        &self,
        app_id: &str,
        email: &str,
        token: MailToken,
    ) -> StoreResult<()>;
    /// The hash of an unexpired reset token, without consuming it (to answer bad tokens
    /// before the slow password hash).
    async fn reset_token_hash(
        &self,
        app_id: &str,
        token_id: &str,
        now: i64,
    ) -> StoreResult<Option<String>>;
    /// Consumes a confirmation token (exactly once, whichever instance sees it first) and
    /// confirms its account; 400 UserpassTokenInvalid otherwise.
    async fn confirm(&self, app_id: &str, token: &str, token_id: &str, now: i64)
    -> StoreResult<()>;
    /// Sets a new password and ends the user's sessions; with `token`, first consumes that
    /// reset token (`(token, token_id)`, exactly once) and takes its account's email.
    async fn set_password(
        &self,
        app_id: &str,
        account: PasswordAccount<'_>,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<()>;
    /// Stores a new sign-in code for an address (replacing its live code, attempts reset) and
    /// puts its mail in the queue, in one transaction; the queued mails of the address's older
    /// codes that are not sent yet lose their code and are not sent ([`CODE_REPLACED`]).
    async fn issue_email_otp(
        &self,
        app_id: &str,
        email: &str,
        code: EmailOtpCode,
    ) -> StoreResult<()>;
    /// The outbox of an app, oldest first, for one address or all.
    async fn outbox(&self, app_id: &str, email: Option<&str>) -> StoreResult<Vec<OutboxRow>>;
    /// Claims up to `limit` pending mails due at `now` for `lease_secs`: each is handed to one
    /// caller only, on every instance (PostgreSQL: `FOR UPDATE SKIP LOCKED`), and comes back
    /// after the lease if its outcome is never reported (the process died while sending).
    async fn claim_mail(
        &self,
        now: i64,
        lease_secs: i64,
        limit: i64,
    ) -> StoreResult<Vec<QueuedMail>>;
    /// Records the outcome of a try of mail `seq`. A sent mail's token is erased.
    async fn mail_outcome(&self, seq: i64, outcome: MailOutcome) -> StoreResult<()>;
    /// The mail queue of an app, oldest first, without tokens (admin API).
    async fn mail_queue(&self, app_id: &str) -> StoreResult<Vec<MailRow>>;
    /// Appends events that record no change of their own (a refused login, a rate limit):
    /// the changes' own events are written by the store in their transactions (audit.rs).
    async fn record_events(&self, events: Vec<crate::audit::Event>) -> StoreResult<()>;
    /// The events `filter` selects, in the order they were written (`seq`), at most
    /// `filter.limit`.
    async fn audit_events(
        &self,
        filter: crate::audit::Filter,
    ) -> StoreResult<Vec<crate::audit::Event>>;
    /// Deletes up to `limit` events from before `before` (Unix seconds), oldest first; how many
    /// it deleted (the sweeper calls it until it deletes fewer, so that no batch holds the
    /// writers up for long).
    async fn prune_events(&self, before: i64, limit: i64) -> StoreResult<u64>;
    /// How many mails of every app are pending (queued or waiting for a retry) and how many
    /// failed for good: the metrics' `mail_queue` gauges.
    async fn mail_queue_depth(&self) -> StoreResult<(u64, u64)>;
    /// An operator's retry (`admin mail retry`): the app's failed mails that can still be sent
    /// (their token live, not erased by a newer code) back in the queue, and its pending mails
    /// waiting for their next try, all due at `now`. Each keeps its queuing time. How many
    /// mails are now due; a mail whose link or code has expired is left failed and not counted.
    async fn retry_mail(&self, app_id: &str, now: i64) -> StoreResult<usize>;

    /// Deletes anonymous users created before `anon_cutoff`, sessions expired before
    /// `session_cutoff`, expired mail tokens and sign-in codes, and mails sent more than
    /// [`SENT_MAIL_KEPT_SECS`] ago. The number of users deleted.
    async fn sweep(&self, anon_cutoff: i64, session_cutoff: i64, now: i64) -> StoreResult<usize>;

    /// Closes the database (SQLite checkpoints its WAL); later calls answer 503.
    async fn close(&self);
}

/// Whose password [`Store::set_password`] sets.
pub enum PasswordAccount<'a> {
    /// The account of this email.
    Email(&'a str),
    /// The account a reset token `(token, token_id)` was issued for; the token is consumed.
    ResetToken(&'a str, &'a str),
}

/// 400 UserpassTokenInvalid: a confirmation or reset token that does not match.
pub fn invalid_mail_token() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::BAD_REQUEST,
        "UserpassTokenInvalid",
        "invalid token data",
    )
}

/// 409 UserAlreadyConfirmed.
pub fn already_confirmed() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "UserAlreadyConfirmed",
        "already confirmed",
    )
}

/// 409 APIKeyAlreadyExists: the user has a key of that name.
pub fn api_key_name_taken() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "APIKeyAlreadyExists",
        "API key with that name already exists",
    )
}

/// 409 AccountNameInUse.
pub fn account_name_in_use() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "AccountNameInUse",
        "name already in use",
    )
}

/// A shared handle on the store.
pub type SharedStore = Arc<dyn Store>;

/// Opens the configured store: PostgreSQL when a database URL is set, else SQLite in the data
/// directory. Brings its schema up to date (numbered migrations of that backend).
pub async fn open(config: &crate::config::Config) -> Result<SharedStore, String> {
    match &config.database.url {
        Some(url) => Ok(Arc::new(
            postgres::PostgresStore::open(url.expose(), &config.database).await?,
        )),
        None => {
            let dir = config.data_dir.clone();
            let store = tokio::task::spawn_blocking(move || sqlite::SqliteStore::open(&dir))
                .await
                .map_err(|e| format!("cannot open the database: {e}"))??;
            Ok(Arc::new(store))
        }
    }
}

/// The `local-userpass` identity among `ids`: its id and the email its profile names (where
/// its email account is found).
pub fn userpass_identity(ids: &[IdentityRow]) -> Option<(&str, &str)> {
    ids.iter()
        .filter(|i| i.provider_type == import::USERPASS)
        .find_map(|i| Some((i.external_id.as_str(), i.data.get("email")?.as_str()?)))
}

/// A stable per-(app, provider) id, reported as `provider_id`.
pub fn provider_id(app_id: &str, provider_type: &str) -> String {
    tokens::sha256_hex(&format!("{app_id}/{provider_type}"))[..24].to_string()
}

fn identities_json(app_id: &str, ids: &[IdentityRow]) -> (Vec<Value>, Map<String, Value>) {
    let mut data = Map::new();
    let list = ids
        .iter()
        .map(|i| {
            for (k, v) in &i.data {
                data.insert(k.clone(), v.clone());
            }
            json!({
                "id": i.external_id,
                "provider_type": i.provider_type,
                "provider_id": provider_id(app_id, &i.provider_type),
            })
        })
        .collect();
    (list, data)
}

/// The client profile document of a user (PROTOCOL.md, "Profile").
pub fn profile_json(user: &UserRow, ids: &[IdentityRow], domain_id: &str) -> Value {
    let (list, data) = identities_json(&user.app_id, ids);
    json!({
        "user_id": user.id,
        "domain_id": domain_id,
        "identities": list,
        "data": data,
        "type": "normal",
    })
}

/// The admin API's user document.
pub fn admin_user_json(user: &UserRow, ids: &[IdentityRow]) -> Value {
    let (list, data) = identities_json(&user.app_id, ids);
    json!({
        "_id": user.id,
        "identities": list,
        "type": "normal",
        "creation_date": user.created_at,
        "last_authentication_date": user.last_login_at,
        "disabled": user.disabled,
        "data": data,
        "custom_data": user.custom_data,
    })
}

/// Whether an identity's profile data merges with what was stored (social issuers send profile
/// claims only sometimes: Apple the email once) rather than replacing it.
pub fn merges_profile_data(provider_type: &str) -> bool {
    provider_type.starts_with("oauth2-") || provider_type.starts_with(crate::config::OIDC_PREFIX)
}

/// 401 InvalidPassword: a wrong password, an unknown email, or an account deleted while its
/// login was under way (the same answer, so it says nothing of which).
pub fn invalid_password() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "InvalidPassword",
        "invalid username/password",
    )
}

/// 401 AuthError for an API key that does not exist (never did, or deleted, with its owner or
/// alone, while its login was under way).
pub fn invalid_api_key() -> ApiError {
    ApiError::auth("invalid API key")
}

/// 401 AuthError for a disabled API key.
pub fn api_key_disabled() -> ApiError {
    ApiError::auth("API key is disabled")
}

/// 401 InvalidSession: the user a link is for no longer exists (what its access token gets a
/// moment later).
pub fn linking_user_gone() -> ApiError {
    ApiError::invalid_session("invalid session: user not found")
}

/// 401 UserDisabled.
pub fn user_disabled() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "UserDisabled",
        "user disabled",
    )
}

/// 409 when an identity being linked belongs to another user.
pub fn identity_of_another_user() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::CONFLICT,
        "AccountNameInUse",
        "a user already exists with the specified provider identity",
    )
}
