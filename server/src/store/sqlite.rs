//! The SQLite store: schema and migrations, the one connection, and the queries.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value, json};

use super::transaction::{RowLock, TokenSession, Transaction, UserLock};
use super::users::UserChange;
use super::{
    ApiKeyRow, CODE_REPLACED, CheckedSession, EmailOtpCode, ExportUser, IdentityRow, Login,
    MailOutcome, MailRow, MailToken, NewSession, OutboxRow, PasswordAccount, PresentedRefresh,
    PresentedToken, QueuedMail, RefreshUse, SessionInfo, SessionRow, SigningKeyRow, StartSession,
    Store, StoreResult, StoreStats, StoredCode, Successor, UserRow, UserpassRow,
};
use crate::audit::{self, Event, kind};
use crate::error::ApiError;
use crate::store::import::{self, ImportUser, Imported, Write};
use crate::store::{accounts, api_keys, login, refresh, users};
use crate::tokens;

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 13;

/// The database file's name in the data directory.
pub const DB_FILE: &str = "sessionkit.db";

/// A data step of a migration, run in its transaction after its SQL.
type DataStep = fn(&rusqlite::Transaction) -> rusqlite::Result<()>;

/// Numbered migrations: `(version, SQL, data step)` takes a database from `version - 1` to
/// `version`. Version 1 is `SCHEMA`. Each runs in its own transaction, at start; never edit one
/// that has shipped, add the next.
const MIGRATIONS: &[(i64, &str, Option<DataStep>)] = &[
    (
        2,
        // The API key a session logged in with (its sessions end with the key), and whether a
        // refresh token was ever presented (a crash between rotating and answering is not reuse).
        "ALTER TABLE sessions ADD COLUMN api_key_id TEXT;
         CREATE INDEX sessions_api_key ON sessions(api_key_id);
         ALTER TABLE refresh_tokens ADD COLUMN used_at INTEGER;",
        None,
    ),
    (3, "", Some(canonical_emails)),
    (
        4,
        // Asymmetric access-token signing keys (signing.rs): the private key stays here, the
        // public one is served as a JWKS until the last token it signed has expired.
        "CREATE TABLE signing_keys (
           kid TEXT PRIMARY KEY,
           app_id TEXT NOT NULL,
           alg TEXT NOT NULL,
           private_pem TEXT NOT NULL,
           public_jwk TEXT NOT NULL,
           created_at INTEGER NOT NULL,
           retired_at INTEGER
         );
         CREATE INDEX signing_keys_app ON signing_keys(app_id);",
        None,
    ),
    (
        5,
        // A rotating session keeps every token it had (reuse of any of them is detected), so
        // the queries of a refresh must not scan them: by (session, superseded_at) the current
        // token (superseded_at IS NULL) and the newest superseded one are one search each.
        // With the session id alone a refresh got slower the longer its session lived
        // (BENCHMARKS.md, rotating refreshes). The new index also serves the old one's uses.
        "CREATE INDEX refresh_tokens_superseded ON refresh_tokens(session_id, superseded_at);
         DROP INDEX refresh_tokens_session;",
        None,
    ),
    (
        6,
        // A token's place in its session's chain (the first is 0, a rotation's is its
        // parent's + 1): "the parent of the current token" is exact, where comparing
        // superseded_at seconds took a grandparent rotated out in the same second for the
        // parent (and let its reuse through).
        "ALTER TABLE refresh_tokens ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;",
        Some(number_generations),
    ),
    (
        7,
        // Only sessions that logged in with an API key are looked up by it: the index leaves
        // out the others (most), one index entry less for every login to write.
        "DROP INDEX sessions_api_key;
         CREATE INDEX sessions_api_key ON sessions(api_key_id) WHERE api_key_id IS NOT NULL;",
        None,
    ),
    (
        8,
        // The outbox becomes the mail queue (#23; mail.rs): a mail is queued in the
        // transaction that makes its token and sent by the delivery worker. Mails of the
        // development outbox made before were never meant to be sent: failed, with that reason
        // (an operator can retry them).
        "ALTER TABLE outbox ADD COLUMN status TEXT NOT NULL DEFAULT 'pending';
         ALTER TABLE outbox ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE outbox ADD COLUMN next_at INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE outbox ADD COLUMN expires_at INTEGER NOT NULL DEFAULT 0;
         ALTER TABLE outbox ADD COLUMN error TEXT;
         ALTER TABLE outbox ADD COLUMN sent_at INTEGER;
         UPDATE outbox SET status = 'failed',
           error = 'queued before this server could send mail (development outbox)';
         CREATE INDEX outbox_due ON outbox(next_at) WHERE status = 'pending';",
        None,
    ),
    (
        9,
        // One-time sign-in codes (#23, email_otp.rs): one live code per address, as its MAC,
        // with its expiry and the wrong attempts it has left. The queue finds the mails of an
        // address's older codes (their code erased when a new one is sent) by the index.
        "CREATE TABLE email_otp_codes (
           app_id TEXT NOT NULL,
           email TEXT NOT NULL,
           code_mac TEXT NOT NULL,
           created_at INTEGER NOT NULL,
           expires_at INTEGER NOT NULL,
           attempts_left INTEGER NOT NULL,
           PRIMARY KEY (app_id, email)
         );
         CREATE INDEX outbox_codes ON outbox(app_id, email) WHERE kind = 'email-otp' AND token != '';",
        None,
    ),
    (
        10,
        // Users see their own sessions (#25): what a session logged in with, the device
        // document its login sent (a bounded JSON subset, routes/auth.rs), and the client
        // address it was first seen from. NULL for sessions from before: listed without them.
        "ALTER TABLE sessions ADD COLUMN provider_type TEXT;
         ALTER TABLE sessions ADD COLUMN device TEXT;
         ALTER TABLE sessions ADD COLUMN ip TEXT;",
        None,
    ),
    (
        11,
        // The audit log of security events (#26, audit.rs): append-only, written in the
        // transaction of the change each records; pruned by age. No index on `at`: events
        // are written in time order, so the oldest are the first by `seq` (the pruning reads
        // from there), and each index is one more write in every login. No AUTOINCREMENT
        // (a write of sqlite_sequence in every login): a `seq` could only come again after
        // the newest event was deleted, which the pruning of the oldest never does.
        "CREATE TABLE audit_events (
           seq INTEGER PRIMARY KEY,
           at INTEGER NOT NULL,
           app_id TEXT NOT NULL,
           kind TEXT NOT NULL,
           user_id TEXT,
           session_id TEXT,
           ip TEXT,
           user_agent TEXT,
           actor TEXT NOT NULL,
           detail TEXT
         );
         CREATE INDEX audit_events_app ON audit_events(app_id, seq);
         CREATE INDEX audit_events_user ON audit_events(app_id, user_id, seq);",
        None,
    ),
    (
        12,
        // The audit log's indexes, cheaper to write (each is a B-tree insert in every login,
        // measured at 4 % of login throughput each) and used by the queries: a user's events
        // by `user_id` alone (SQLite appends the rowid, `seq`, to every index entry, so they
        // come in `seq` order; a user id belongs to one app), and an app's by `seq`, the
        // primary key, skipping other apps' rows (a server usually serves one app or a few).
        // The index of version 11 on (app_id, user_id, seq) was never used: its query's
        // `(?3 IS NULL OR user_id = ?3)` hid the user from the planner.
        "DROP INDEX audit_events_app;
         DROP INDEX audit_events_user;
         CREATE INDEX audit_events_user ON audit_events(user_id) WHERE user_id IS NOT NULL;",
        None,
    ),
    (
        13,
        // DPoP (#29, dpop.rs): the key a session is bound to (its JWK thumbprint; NULL for a
        // bearer session), and the proofs seen, each refused a second time until it expires.
        "ALTER TABLE sessions ADD COLUMN jkt TEXT;
         CREATE TABLE dpop_proofs (
           replay_key TEXT PRIMARY KEY,
           expires_at INTEGER NOT NULL
         );",
        None,
    ),
];

/// Version 6: tokens stored before get their generation from their order in the session
/// (insertion order: rowid).
fn number_generations(tx: &rusqlite::Transaction) -> rusqlite::Result<()> {
    tx.execute_batch(
        "UPDATE refresh_tokens SET generation = (
           SELECT COUNT(*) FROM refresh_tokens AS older
           WHERE older.session_id = refresh_tokens.session_id AND older.rowid < refresh_tokens.rowid)",
    )
}

/// Version 3: email addresses are stored in their canonical form (email.rs), so that every
/// spelling of an address finds its account. Where two accounts of an app differ only in
/// spelling, the older keeps the canonical form and the other its own, with a warning.
fn canonical_emails(tx: &rusqlite::Transaction) -> rusqlite::Result<()> {
    let rows: Vec<(String, String)> = tx
        .prepare("SELECT app_id, email FROM userpass ORDER BY created_at")?
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<rusqlite::Result<_>>()?;
    for (app_id, email) in rows {
        let Ok(canonical) = crate::email::canonical(&email) else {
            continue; // not an address at all: left as it was, found by its exact spelling
        };
        if canonical == email {
            continue;
        }
        let taken: bool = tx.query_row(
            "SELECT EXISTS (SELECT 1 FROM userpass WHERE app_id = ?1 AND email = ?2)",
            params![app_id, canonical],
            |r| r.get(0),
        )?;
        if taken {
            tracing::warn!(
                "app {app_id}: two accounts differ only in the spelling of their email; \
                 the newer keeps its exact spelling"
            );
            continue;
        }
        for table in ["userpass", "userpass_tokens"] {
            tx.execute(
                &format!("UPDATE {table} SET email = ?1 WHERE app_id = ?2 AND email = ?3"),
                params![canonical, app_id, email],
            )?;
        }
    }
    Ok(())
}

/// The schema of version 1; later versions are `MIGRATIONS` applied to it.
pub const SCHEMA: &str = r#"
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE users (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_login_at INTEGER NOT NULL,
    disabled INTEGER NOT NULL DEFAULT 0,
    anonymous INTEGER NOT NULL DEFAULT 0,
    custom_data TEXT
);
CREATE INDEX users_app ON users(app_id, created_at);
CREATE TABLE identities (
    app_id TEXT NOT NULL,
    provider_type TEXT NOT NULL,
    external_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    data TEXT NOT NULL DEFAULT '{}',
    created_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, provider_type, external_id)
);
CREATE INDEX identities_user ON identities(user_id);
CREATE TABLE userpass (
    app_id TEXT NOT NULL,
    email TEXT NOT NULL,
    identity_id TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    confirmed INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (app_id, email)
);
CREATE TABLE userpass_tokens (
    token_id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    email TEXT NOT NULL,
    kind TEXT NOT NULL,
    token_hash TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    app_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    email TEXT NOT NULL,
    token TEXT NOT NULL,
    token_id TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    key_hash TEXT NOT NULL UNIQUE,
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    UNIQUE (user_id, name)
);
CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    app_id TEXT NOT NULL,
    user_id TEXT NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
    issued_at INTEGER NOT NULL,
    superseded_at INTEGER
);
CREATE INDEX refresh_tokens_session ON refresh_tokens(session_id);
"#;

/// The database file with its schema brought up to date: one connection, which the store hands
/// to its writer thread; tests and tools use it directly.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Option<Connection>>>,
}

impl Db {
    /// Opens (creating if needed) `<dir>/sessionkit.db` and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<Db, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
        let path = dir.join(DB_FILE);
        restrict_permissions(dir, &path)?;
        let mut conn = Connection::open(&path)
            .map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
        // Waits for another process's lock (several instances on one file) before anything
        // else, switching to WAL included.
        conn.execute_batch("PRAGMA busy_timeout=5000;")
            .map_err(|e| format!("cannot configure database: {e}"))?;
        // WAL lets readers proceed during a write; synchronous=FULL fsyncs the WAL on every
        // commit, so every write we acknowledge survives a power cut (the writer commits the
        // writes waiting together, so the fsyncs stay few under load).
        // Switching to WAL does not wait on the busy handler: another instance creating the
        // file at the same moment makes it fail with SQLITE_BUSY, so it is retried for as
        // long as busy_timeout.
        let mut tries = 0;
        loop {
            match conn.execute_batch("PRAGMA journal_mode=WAL;") {
                Ok(()) => break,
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && tries < 100 =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                Err(e) => return Err(format!("cannot configure database: {e}")),
            }
        }
        // temp_store=MEMORY keeps the sub-journal of the writer's per-request savepoints in
        // memory: on a file it spilled past 64 KiB in a batch, and copying every page a batch
        // touches into it was over half of the writer's page writes (strace of a login burst).
        // It only ever serves rolling back one request inside the open transaction, so it
        // need not survive anything.
        conn.execute_batch(
            "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA temp_store=MEMORY;",
        )
        .map_err(|e| format!("cannot configure database: {e}"))?;
        // Every statement of the store is prepared once and kept (prepare_cached).
        conn.set_prepared_statement_cache_capacity(128);
        // One step per immediate transaction, the version read under the write lock: two
        // instances starting together on one file migrate it once, in order.
        loop {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(|e| format!("cannot lock the database to migrate it: {e}"))?;
            let version: i64 = tx
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .map_err(|e| format!("cannot read schema version: {e}"))?;
            if version > SCHEMA_VERSION {
                return Err(format!(
                    "database schema version {version} is newer than this server \
                     ({SCHEMA_VERSION}); run a newer sessionkit-server"
                ));
            }
            if version == 0 {
                tx.execute_batch(&format!("{SCHEMA} PRAGMA user_version = 1;"))
                    .and_then(|()| tx.commit())
                    .map_err(|e| format!("cannot create schema: {e}"))?;
                continue;
            }
            let Some((to, sql, data)) = MIGRATIONS.iter().find(|(to, ..)| *to == version + 1)
            else {
                tx.commit()
                    .map_err(|e| format!("cannot read schema version: {e}"))?;
                break;
            };
            let migrate = || -> rusqlite::Result<()> {
                tx.execute_batch(sql)?;
                if let Some(step) = data {
                    step(&tx)?;
                }
                tx.execute_batch(&format!("PRAGMA user_version = {to};"))?;
                Ok(())
            };
            migrate()
                .and_then(|()| tx.commit())
                .map_err(|e| format!("cannot migrate the database to version {to}: {e}"))?;
        }
        Ok(Db {
            conn: Arc::new(Mutex::new(Some(conn))),
        })
    }

    /// Runs `f` with the connection on the current thread (startup and shutdown only).
    pub fn call_sync<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        match guard.as_mut() {
            Some(conn) => f(conn),
            None => Err(ApiError::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "MaintenanceInProgress",
                "server is shutting down",
            )),
        }
    }

    /// Checkpoints the WAL into the main file and closes the connection.
    pub fn close(&self) {
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(conn) = guard.take() {
            if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
                tracing::warn!("checkpoint at close failed: {e}");
            }
            if let Err((_, e)) = conn.close() {
                tracing::warn!("closing database failed: {e}");
            }
        }
    }
}

fn meta_get(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT value FROM meta WHERE key = ?1")?
        .query_row([key], |r| r.get(0))
        .optional()
}

const USER_COLUMNS: &str =
    "id, app_id, created_at, last_login_at, disabled, anonymous, custom_data";

fn user_row(r: &rusqlite::Row) -> rusqlite::Result<UserRow> {
    let cd: Option<String> = r.get(6)?;
    Ok(UserRow {
        id: r.get(0)?,
        app_id: r.get(1)?,
        created_at: r.get(2)?,
        last_login_at: r.get(3)?,
        disabled: r.get(4)?,
        anonymous: r.get(5)?,
        custom_data: cd.and_then(|s| serde_json::from_str(&s).ok()),
    })
}

fn user(conn: &Connection, app_id: &str, id: &str) -> rusqlite::Result<Option<UserRow>> {
    conn.prepare_cached(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE id = ?1 AND app_id = ?2"
    ))?
    .query_row(params![id, app_id], user_row)
    .optional()
}

fn create_user(
    conn: &Connection,
    app_id: &str,
    now: i64,
    anonymous: bool,
) -> rusqlite::Result<String> {
    let id = tokens::new_object_id();
    conn.prepare_cached(
        "INSERT INTO users (id, app_id, created_at, last_login_at, anonymous) VALUES (?1, ?2, ?3, ?3, ?4)",
    )?
    .execute(params![id, app_id, now, anonymous])?;
    Ok(id)
}

fn identity_owner(
    conn: &Connection,
    app_id: &str,
    provider_type: &str,
    external_id: &str,
) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached(
        "SELECT user_id FROM identities WHERE app_id = ?1 AND provider_type = ?2 AND external_id = ?3",
    )?
    .query_row(params![app_id, provider_type, external_id], |r| r.get(0))
    .optional()
}

/// Inserts an identity, or updates its profile data (merged or replaced, see
/// [`super::merges_profile_data`]).
fn upsert_identity(
    conn: &Connection,
    app_id: &str,
    provider_type: &str,
    external_id: &str,
    user_id: &str,
    data: &Map<String, Value>,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO identities (app_id, provider_type, external_id, user_id, data, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(app_id, provider_type, external_id) DO UPDATE SET data =
           CASE WHEN ?7 THEN json_patch(identities.data, excluded.data) ELSE excluded.data END",
    )?
    .execute(params![
        app_id,
        provider_type,
        external_id,
        user_id,
        Value::Object(data.clone()).to_string(),
        now,
        super::merges_profile_data(provider_type),
    ])?;
    Ok(())
}

fn identities(conn: &Connection, user_id: &str) -> rusqlite::Result<Vec<IdentityRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT provider_type, external_id, data FROM identities WHERE user_id = ?1 ORDER BY created_at, rowid",
    )?;
    let rows = stmt.query_map([user_id], |r| {
        let data: String = r.get(2)?;
        Ok(IdentityRow {
            provider_type: r.get(0)?,
            external_id: r.get(1)?,
            data: match serde_json::from_str(&data) {
                Ok(Value::Object(m)) => m,
                _ => Map::new(),
            },
        })
    })?;
    rows.collect()
}

fn revoke_user_sessions(conn: &Connection, user_id: &str) -> rusqlite::Result<usize> {
    conn.prepare_cached("UPDATE sessions SET revoked = 1 WHERE user_id = ?1 AND revoked = 0")?
        .execute([user_id])
}

/// Appends `e` to the audit log, in the caller's transaction (audit.rs).
fn insert_event(conn: &Connection, e: &Event) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit_events (at, app_id, kind, user_id, session_id, ip, user_agent, actor, detail)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        e.at,
        e.app_id,
        e.kind,
        e.user_id,
        e.session_id,
        e.ip,
        e.user_agent,
        e.actor,
        e.detail_text()
    ])?;
    e.outbox.put(e, conn.last_insert_rowid());
    Ok(())
}

fn userpass(conn: &Connection, app_id: &str, email: &str) -> rusqlite::Result<Option<UserpassRow>> {
    conn.prepare_cached(
        "SELECT email, identity_id, password_hash, confirmed FROM userpass WHERE app_id = ?1 AND email = ?2",
    )?
    .query_row(params![app_id, email], |r| {
        Ok(UserpassRow {
            email: r.get(0)?,
            identity_id: r.get(1)?,
            password_hash: r.get(2)?,
            confirmed: r.get(3)?,
        })
    })
    .optional()
}

/// The user with this id, in any app (ids are unique across apps).
fn user_any_app(conn: &Connection, id: &str) -> rusqlite::Result<Option<UserRow>> {
    conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = ?1"))?
        .query_row([id], user_row)
        .optional()
}

/// Stores a mail token's hash and puts the token in the outbox.
fn store_mail_token(
    conn: &Connection,
    app_id: &str,
    email: &str,
    t: &MailToken,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO userpass_tokens (token_id, app_id, email, kind, token_hash, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![t.token_id, app_id, email, t.kind, tokens::sha256_hex(&t.token), t.expires_at])?;
    conn.prepare_cached(
        "INSERT INTO outbox (app_id, kind, email, token, token_id, created_at, next_at, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7)",
    )?
    .execute(params![
        app_id,
        t.kind,
        email,
        t.token,
        t.token_id,
        t.created_at,
        t.expires_at
    ])?;
    Ok(())
}

/// Deletes a user with everything it owns (identities, sessions and keys cascade).
fn delete_user(tx: &Connection, app_id: &str, user_id: &str) -> rusqlite::Result<bool> {
    // Email accounts are keyed by email, not user; drop those linked to this user so the
    // address can register again and an old password no longer logs in.
    tx.execute(
        "DELETE FROM userpass_tokens WHERE app_id = ?1 AND email IN (
            SELECT email FROM userpass WHERE app_id = ?1 AND identity_id IN (
                SELECT external_id FROM identities WHERE user_id = ?2 AND provider_type = 'local-userpass'))",
        params![app_id, user_id],
    )?;
    tx.execute(
        "DELETE FROM userpass WHERE app_id = ?1 AND identity_id IN (
            SELECT external_id FROM identities WHERE user_id = ?2 AND provider_type = 'local-userpass')",
        params![app_id, user_id],
    )?;
    let n = tx.execute(
        "DELETE FROM users WHERE id = ?1 AND app_id = ?2",
        params![user_id, app_id],
    )?;
    Ok(n > 0)
}

/// Stores a new session with its first refresh token (its hash).
fn insert_session(
    conn: &Connection,
    app_id: &str,
    user_id: &str,
    s: &NewSession,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO sessions (id, app_id, user_id, device_id, created_at, last_used_at, expires_at, api_key_id, provider_type, device, ip, jkt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?
    .execute(params![
        s.id,
        app_id,
        user_id,
        s.device_id,
        now,
        s.expires_at,
        s.api_key_id,
        s.provider_type,
        s.device,
        s.ip,
        s.jkt
    ])?;
    conn.prepare_cached(
        "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES (?1, ?2, ?3)",
    )?
    .execute(params![tokens::sha256_hex(&s.refresh_token), s.id, now])?;
    Ok(())
}

/// The session of a refresh token hash, with the token's `superseded_at`.
fn session_by_token(
    conn: &Connection,
    token_hash: &str,
) -> rusqlite::Result<Option<(SessionRow, PresentedToken)>> {
    conn.prepare_cached(
        "SELECT s.id, s.user_id, s.device_id, s.last_used_at, s.expires_at, s.revoked, t.superseded_at, s.api_key_id, t.generation, s.jkt
         FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id WHERE t.token_hash = ?1",
    )?
    .query_row([token_hash], |r| {
        Ok((
            SessionRow {
                id: r.get(0)?,
                user_id: r.get(1)?,
                device_id: r.get(2)?,
                last_used_at: r.get(3)?,
                expires_at: r.get(4)?,
                revoked: r.get(5)?,
                api_key_id: r.get(7)?,
                jkt: r.get(9)?,
            },
            PresentedToken {
                superseded_at: r.get(6)?,
                generation: r.get(8)?,
            },
        ))
    })
    .optional()
}

/// The session's tokens of generation `generation + 1`: a rotated-out token's successor (and,
/// from rotations before successors were derived, its siblings'). A token of generation
/// `generation` rotated out past the grace window still passes when one of them is current and
/// was never presented: its client never received it (a crash or a lost answer after the
/// rotation was committed), and the parent is still the client's latest token. Anything older,
/// or a parent whose successor was used, is reuse.
fn successors(
    conn: &Connection,
    session_id: &str,
    generation: i64,
) -> rusqlite::Result<Vec<Successor>> {
    conn.prepare_cached(
        "SELECT token_hash, issued_at, superseded_at IS NULL AND used_at IS NULL
         FROM refresh_tokens WHERE session_id = ?1 AND generation = ?2 + 1",
    )?
    .query_map(params![session_id, generation], |r| {
        Ok(Successor {
            token_hash: r.get(0)?,
            issued_at: r.get(1)?,
            current_unused: r.get(2)?,
        })
    })?
    .collect()
}

/// Runs a flow over the writer's connection ([`WriterTx`]) to its end. Its steps are plain
/// calls that never wait, so one poll finishes it; were one ever to wait, the job fails (and
/// rolls back) instead of blocking the writer.
fn run<T>(flow: impl std::future::Future<Output = StoreResult<T>>) -> StoreResult<T> {
    let mut flow = std::pin::pin!(flow);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match flow.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(out) => out,
        std::task::Poll::Pending => {
            tracing::error!("a store step waited on the SQLite writer, which it never should");
            Err(ApiError::internal())
        }
    }
}

/// The writer's connection, in a job (one transaction), as a [`Transaction`]: the flows of
/// `login.rs`, `refresh.rs`, `import.rs` and `users.rs` over SQLite. It takes no locks: the
/// writer runs one job at a time, so nothing comes between a flow's reads and its writes.
struct WriterTx<'c>(&'c Connection);

impl Transaction for WriterTx<'_> {
    async fn user(&mut self, app_id: &str, user_id: &str) -> StoreResult<Option<UserRow>> {
        Ok(user(self.0, app_id, user_id)?)
    }

    async fn user_any_app(&mut self, user_id: &str) -> StoreResult<Option<UserRow>> {
        Ok(user_any_app(self.0, user_id)?)
    }

    async fn lock_user(&mut self, app_id: &str, user_id: &str, _: UserLock) -> StoreResult<bool> {
        Ok(self
            .0
            .prepare_cached("SELECT 1 FROM users WHERE id = ?1 AND app_id = ?2")?
            .exists(params![user_id, app_id])?)
    }

    async fn create_user(
        &mut self,
        app_id: &str,
        now: i64,
        anonymous: bool,
    ) -> StoreResult<String> {
        Ok(create_user(self.0, app_id, now, anonymous)?)
    }

    async fn set_not_anonymous(&mut self, user_id: &str) -> StoreResult<()> {
        self.0
            .prepare_cached("UPDATE users SET anonymous = 0 WHERE id = ?1")?
            .execute([user_id])?;
        Ok(())
    }

    async fn drop_created_user(&mut self, user_id: &str) -> StoreResult<()> {
        self.0
            .prepare_cached("DELETE FROM users WHERE id = ?1")?
            .execute([user_id])?;
        Ok(())
    }

    async fn record_login(
        &mut self,
        app_id: &str,
        user_id: &str,
        now: i64,
    ) -> StoreResult<Option<UserRow>> {
        Ok(self
            .0
            .prepare_cached(&format!(
                "UPDATE users SET last_login_at = ?3 WHERE id = ?1 AND app_id = ?2 RETURNING {USER_COLUMNS}"
            ))?
            .query_row(params![user_id, app_id, now], user_row)
            .optional()?)
    }

    async fn set_disabled(&mut self, user_id: &str, disabled: bool) -> StoreResult<()> {
        self.0
            .prepare_cached("UPDATE users SET disabled = ?1 WHERE id = ?2")?
            .execute(params![disabled, user_id])?;
        Ok(())
    }

    async fn set_custom_data(&mut self, user_id: &str, doc: &str) -> StoreResult<()> {
        self.0
            .prepare_cached("UPDATE users SET custom_data = ?1 WHERE id = ?2")?
            .execute(params![doc, user_id])?;
        Ok(())
    }

    async fn revoke_user_sessions(&mut self, user_id: &str) -> StoreResult<u64> {
        Ok(revoke_user_sessions(self.0, user_id)? as u64)
    }

    async fn delete_user(&mut self, app_id: &str, user_id: &str) -> StoreResult<bool> {
        Ok(delete_user(self.0, app_id, user_id)?)
    }

    async fn identity_owner(
        &mut self,
        app_id: &str,
        provider_type: &str,
        external_id: &str,
    ) -> StoreResult<Option<String>> {
        Ok(identity_owner(self.0, app_id, provider_type, external_id)?)
    }

    async fn upsert_identity(
        &mut self,
        app_id: &str,
        provider_type: &str,
        external_id: &str,
        user_id: &str,
        data: &Map<String, Value>,
        now: i64,
    ) -> StoreResult<()> {
        Ok(upsert_identity(
            self.0,
            app_id,
            provider_type,
            external_id,
            user_id,
            data,
            now,
        )?)
    }

    async fn identities(&mut self, user_id: &str) -> StoreResult<Vec<IdentityRow>> {
        Ok(identities(self.0, user_id)?)
    }

    async fn account(
        &mut self,
        app_id: &str,
        email: &str,
        _: RowLock,
    ) -> StoreResult<Option<UserpassRow>> {
        Ok(userpass(self.0, app_id, email)?)
    }

    async fn api_key_disabled(
        &mut self,
        app_id: &str,
        key_id: &str,
        user_id: &str,
    ) -> StoreResult<Option<bool>> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT disabled FROM api_keys WHERE id = ?1 AND user_id = ?2 AND app_id = ?3",
            )?
            .query_row(params![key_id, user_id, app_id], |r| r.get(0))
            .optional()?)
    }

    async fn email_code(&mut self, app_id: &str, email: &str) -> StoreResult<Option<StoredCode>> {
        Ok(self
            .0
            .prepare_cached(
                "SELECT code_mac, expires_at, attempts_left FROM email_otp_codes WHERE app_id = ?1 AND email = ?2",
            )?
            .query_row(params![app_id, email], |r| {
                Ok(StoredCode {
                    mac: r.get(0)?,
                    expires_at: r.get(1)?,
                    attempts_left: r.get(2)?,
                })
            })
            .optional()?)
    }

    async fn set_code_attempts(&mut self, app_id: &str, email: &str, left: i64) -> StoreResult<()> {
        self.0
            .prepare_cached(
                "UPDATE email_otp_codes SET attempts_left = ?3 WHERE app_id = ?1 AND email = ?2",
            )?
            .execute(params![app_id, email, left])?;
        Ok(())
    }

    async fn delete_code(&mut self, app_id: &str, email: &str) -> StoreResult<()> {
        self.0
            .prepare_cached("DELETE FROM email_otp_codes WHERE app_id = ?1 AND email = ?2")?
            .execute(params![app_id, email])?;
        Ok(())
    }

    async fn insert_account(
        &mut self,
        app_id: &str,
        email: &str,
        identity_id: &str,
        password_hash: &str,
        confirmed: bool,
        now: i64,
    ) -> StoreResult<bool> {
        Ok(self
            .0
            .prepare_cached(
                "INSERT INTO userpass (app_id, email, identity_id, password_hash, confirmed, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(app_id, email) DO NOTHING",
            )?
            .execute(params![app_id, email, identity_id, password_hash, confirmed, now])?
            > 0)
    }

    async fn set_confirmed(&mut self, app_id: &str, email: &str) -> StoreResult<()> {
        self.0
            .prepare_cached("UPDATE userpass SET confirmed = 1 WHERE app_id = ?1 AND email = ?2")?
            .execute(params![app_id, email])?;
        Ok(())
    }

    async fn set_account_password(
        &mut self,
        app_id: &str,
        email: &str,
        password_hash: &str,
    ) -> StoreResult<()> {
        self.0
            .prepare_cached(
                "UPDATE userpass SET password_hash = ?1 WHERE app_id = ?2 AND email = ?3",
            )?
            .execute(params![password_hash, app_id, email])?;
        Ok(())
    }

    async fn store_mail_token(
        &mut self,
        app_id: &str,
        email: &str,
        token: &MailToken,
    ) -> StoreResult<()> {
        Ok(store_mail_token(self.0, app_id, email, token)?)
    }

    async fn take_mail_token(
        &mut self,
        app_id: &str,
        kind: &str,
        token: &str,
        token_id: &str,
        now: i64,
    ) -> StoreResult<Option<String>> {
        Ok(self
            .0
            .prepare_cached(
                "DELETE FROM userpass_tokens
                 WHERE token_id = ?1 AND app_id = ?2 AND kind = ?3 AND token_hash = ?4 AND expires_at > ?5
                 RETURNING email",
            )?
            .query_row(
                params![token_id, app_id, kind, tokens::sha256_hex(token), now],
                |r| r.get(0),
            )
            .optional()?)
    }

    async fn delete_mail_tokens(
        &mut self,
        app_id: &str,
        email: &str,
        kind: &str,
    ) -> StoreResult<()> {
        self.0
            .prepare_cached(
                "DELETE FROM userpass_tokens WHERE app_id = ?1 AND email = ?2 AND kind = ?3",
            )?
            .execute(params![app_id, email, kind])?;
        Ok(())
    }

    async fn insert_api_key(
        &mut self,
        app_id: &str,
        user_id: &str,
        key: &ApiKeyRow,
        key_hash: &str,
        now: i64,
    ) -> StoreResult<bool> {
        Ok(self
            .0
            .prepare_cached(
                "INSERT INTO api_keys (id, app_id, user_id, name, key_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(user_id, name) DO NOTHING",
            )?
            .execute(params![key.id, app_id, user_id, key.name, key_hash, now])?
            > 0)
    }

    async fn delete_api_key(&mut self, user_id: &str, id: &str) -> StoreResult<Option<String>> {
        Ok(self
            .0
            .prepare_cached("DELETE FROM api_keys WHERE id = ?1 AND user_id = ?2 RETURNING app_id")?
            .query_row(params![id, user_id], |r| r.get(0))
            .optional()?)
    }

    async fn set_api_key_disabled(
        &mut self,
        user_id: &str,
        id: &str,
        disabled: bool,
    ) -> StoreResult<Option<String>> {
        Ok(self
            .0
            .prepare_cached(
                "UPDATE api_keys SET disabled = ?1 WHERE id = ?2 AND user_id = ?3 RETURNING app_id",
            )?
            .query_row(params![disabled, id, user_id], |r| r.get(0))
            .optional()?)
    }

    async fn revoke_api_key_sessions(&mut self, id: &str) -> StoreResult<u64> {
        Ok(self
            .0
            .prepare_cached(
                "UPDATE sessions SET revoked = 1 WHERE api_key_id = ?1 AND revoked = 0",
            )?
            .execute([id])? as u64)
    }

    async fn delete_identity(
        &mut self,
        user_id: &str,
        provider_type: &str,
        external_id: &str,
    ) -> StoreResult<()> {
        self.0
            .prepare_cached(
                "DELETE FROM identities WHERE provider_type = ?1 AND external_id = ?2 AND user_id = ?3",
            )?
            .execute(params![provider_type, external_id, user_id])?;
        Ok(())
    }

    async fn insert_session(
        &mut self,
        app_id: &str,
        user_id: &str,
        session: &NewSession,
        now: i64,
    ) -> StoreResult<()> {
        Ok(insert_session(self.0, app_id, user_id, session, now)?)
    }

    async fn token_session(&mut self, token_hash: &str) -> StoreResult<Option<TokenSession>> {
        // Pruning starts from the first generation each time: SQLite deletes by its index on
        // (session, generation) without the bookkeeping PostgreSQL's MVCC needs.
        Ok(
            session_by_token(self.0, token_hash)?.map(|(session, token)| TokenSession {
                session,
                token,
                prune_from: 0,
            }),
        )
    }

    async fn successors(
        &mut self,
        session_id: &str,
        generation: i64,
    ) -> StoreResult<Vec<Successor>> {
        Ok(successors(self.0, session_id, generation)?)
    }

    async fn revoke_live_session(
        &mut self,
        app_id: &str,
        user_id: &str,
        session_id: &str,
        now: i64,
    ) -> StoreResult<bool> {
        Ok(self
            .0
            .prepare_cached(
                "UPDATE sessions SET revoked = 1
                 WHERE id = ?1 AND app_id = ?2 AND user_id = ?3 AND revoked = 0 AND expires_at > ?4",
            )?
            .execute(params![session_id, app_id, user_id, now])?
            == 1)
    }

    async fn revoke_sessions_but(
        &mut self,
        app_id: &str,
        user_id: &str,
        keep: Option<&str>,
    ) -> StoreResult<u64> {
        Ok(self
            .0
            .prepare_cached(
                "UPDATE sessions SET revoked = 1
                 WHERE app_id = ?1 AND user_id = ?2 AND revoked = 0 AND id IS NOT ?3",
            )?
            .execute(params![app_id, user_id, keep])? as u64)
    }

    async fn session_jkt(&mut self, session_id: &str) -> StoreResult<Option<Option<String>>> {
        Ok(self
            .0
            .prepare_cached("SELECT jkt FROM sessions WHERE id = ?1")?
            .query_row([session_id], |r| r.get(0))
            .optional()?)
    }

    async fn bind_session(&mut self, session_id: &str, jkt: &str) -> StoreResult<()> {
        self.0
            .prepare_cached("UPDATE sessions SET jkt = ?2 WHERE id = ?1")?
            .execute(params![session_id, jkt])?;
        Ok(())
    }

    async fn revoke_session(&mut self, session_id: &str, user_id: &str) -> StoreResult<bool> {
        Ok(self
            .0
            .prepare_cached(
                "UPDATE sessions SET revoked = 1 WHERE id = ?1 AND user_id = ?2 AND revoked = 0",
            )?
            .execute(params![session_id, user_id])?
            > 0)
    }

    async fn mark_used(&mut self, token_hash: &str, now: i64) -> StoreResult<()> {
        self.0
            .prepare_cached(
                "UPDATE refresh_tokens SET used_at = ?1 WHERE token_hash = ?2 AND used_at IS NULL",
            )?
            .execute(params![now, token_hash])?;
        Ok(())
    }

    async fn refresh(
        &mut self,
        p: &PresentedRefresh,
        session_id: &str,
        generation: i64,
        prune_from: i64,
        next: Option<&str>,
        _only_if_first: bool,
    ) -> StoreResult<bool> {
        // `only_if_first` needs no check here: a token this job read as current has no
        // successor, as no other job ran since.
        let conn = self.0;
        self.mark_used(&p.token_hash, p.now).await?;
        conn.prepare_cached("UPDATE sessions SET last_used_at = ?1 WHERE id = ?2")?
            .execute(params![p.now, session_id])?;
        let Some(next) = next else {
            return Ok(false);
        };
        // A retried parent whose successor cannot be made again (rotated before successors
        // were derived) supersedes it, too.
        conn.prepare_cached(
            "UPDATE refresh_tokens SET superseded_at = ?1 WHERE session_id = ?2 AND superseded_at IS NULL",
        )?
        .execute(params![p.now, session_id])?;
        conn.prepare_cached(
            "INSERT INTO refresh_tokens (token_hash, session_id, issued_at, generation) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![
            tokens::sha256_hex(next),
            session_id,
            p.now,
            generation + 1
        ])?;
        // Pruning (store/mod.rs): older than the presented token, and past the grace window.
        conn.prepare_cached(
            "DELETE FROM refresh_tokens WHERE session_id = ?1 AND superseded_at <= ?2 AND generation < ?3 AND generation >= ?4",
        )?
        .execute(params![
            session_id,
            p.now - super::ROTATION_GRACE_SECS,
            generation,
            prune_from
        ])?;
        Ok(true)
    }

    async fn insert_event(&mut self, event: &Event) -> StoreResult<()> {
        Ok(insert_event(self.0, event)?)
    }

    async fn lock_import(&mut self, _: &[String]) -> StoreResult<()> {
        // The writer runs one job at a time: imports are serialized already.
        Ok(())
    }

    async fn import_write(
        &mut self,
        app_id: &str,
        user_id: &str,
        write: &Write,
        now: i64,
    ) -> StoreResult<bool> {
        let conn = self.0;
        let n = match write {
            Write::DeleteAccount { email } => {
                conn.execute(
                    "DELETE FROM userpass WHERE app_id = ?1 AND email = ?2",
                    params![app_id, email],
                )?;
                conn.execute(
                    "DELETE FROM userpass_tokens WHERE app_id = ?1 AND email = ?2",
                    params![app_id, email],
                )?;
                1
            }
            Write::InsertUser {
                created_at,
                disabled,
                custom_data,
            } => conn
                .prepare_cached(
                    "INSERT INTO users (id, app_id, created_at, last_login_at, disabled, anonymous, custom_data)
                     VALUES (?1, ?2, ?3, ?3, ?4, 0, ?5) ON CONFLICT DO NOTHING",
                )?
                .execute(params![user_id, app_id, created_at, disabled, custom_data])?,
            Write::UpdateUser {
                created_at,
                disabled,
                custom_data,
            } => {
                conn.prepare_cached(
                    "UPDATE users SET created_at = ?2, disabled = ?3, custom_data = ?4, anonymous = 0 WHERE id = ?1",
                )?
                .execute(params![user_id, created_at, disabled, custom_data])?;
                1
            }
            Write::RevokeSessions => {
                revoke_user_sessions(conn, user_id)?;
                1
            }
            Write::InsertIdentity {
                provider_type,
                external_id,
                data,
            } => conn
                .prepare_cached(
                    "INSERT INTO identities (app_id, provider_type, external_id, user_id, data, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO NOTHING",
                )?
                .execute(params![
                    app_id,
                    provider_type,
                    external_id,
                    user_id,
                    Value::Object(data.clone()).to_string(),
                    now
                ])?,
            Write::UpdateIdentity {
                provider_type,
                external_id,
                data,
            } => {
                conn.prepare_cached(
                    "UPDATE identities SET data = ?4 WHERE app_id = ?1 AND provider_type = ?2 AND external_id = ?3",
                )?
                .execute(params![
                    app_id,
                    provider_type,
                    external_id,
                    Value::Object(data.clone()).to_string()
                ])?;
                1
            }
            Write::InsertAccount {
                email,
                identity_id,
                password,
            } => conn
                .prepare_cached(
                    "INSERT INTO userpass (app_id, email, identity_id, password_hash, confirmed, created_at)
                     VALUES (?1, ?2, ?3, ?4, 1, ?5) ON CONFLICT DO NOTHING",
                )?
                .execute(params![app_id, email, identity_id, password, now])?,
            Write::UpdateAccount { email, password } => {
                conn.prepare_cached(
                    "UPDATE userpass SET password_hash = ?3, confirmed = 1 WHERE app_id = ?1 AND email = ?2",
                )?
                .execute(params![app_id, email, password])?;
                1
            }
        };
        Ok(n > 0)
    }
}

fn api_key_row(r: &rusqlite::Row) -> rusqlite::Result<ApiKeyRow> {
    Ok(ApiKeyRow {
        id: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        disabled: r.get(3)?,
    })
}

/// What the writer hands back once the batch's commit is known: sends the job's result, or
/// the commit's error, to the caller.
type Reply = Box<dyn FnOnce(Option<&ApiError>) + Send>;
/// A write: runs in the batch's transaction (in a savepoint of its own); whether its writes
/// are kept, and its reply.
type Job = Box<dyn FnOnce(&Connection) -> (bool, Reply) + Send>;

/// Most writes committed together (bounds the latency of the first one of a batch).
const MAX_BATCH: usize = 256;
/// Read connections: reads never wait for the writer's fsync (WAL: readers see the last commit).
const READERS: usize = 4;

/// The SQLite store: one file in the data directory.
///
/// Group commit: every write goes to one writer thread, which takes all the writes waiting,
/// runs them in one transaction (each in a savepoint, so one that fails is rolled back alone),
/// commits once (one fsync with `synchronous=FULL`), and only then answers each of them. While
/// it waits for the disk the next writes queue up, so the fsyncs per request fall as the load
/// rises; an answered write is durable as before. Reads run on connections of their own.
pub struct SqliteStore {
    counts: Arc<WriteCounts>,
    jobs: std::sync::RwLock<Option<std::sync::mpsc::Sender<Job>>>,
    writer: Mutex<Option<std::thread::JoinHandle<Connection>>>,
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: std::sync::atomic::AtomicUsize,
}

/// Runs one batch: BEGIN IMMEDIATE, each job in its savepoint, one COMMIT, then the replies.
fn run_batch(conn: &Connection, batch: Vec<Job>) {
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        // Another process held the file's write lock past busy_timeout: the jobs are not run,
        // and their callers (whose reply channels close) answer 500.
        tracing::error!("cannot begin a write transaction: {e}");
        return;
    }
    // Two statements a write: kept prepared, like the writes' own.
    let statement =
        |sql: &str| -> rusqlite::Result<()> { conn.prepare_cached(sql)?.execute([]).map(|_| ()) };
    let mut replies = Vec::with_capacity(batch.len());
    for job in batch {
        let ran = statement("SAVEPOINT job")
            .map_err(ApiError::from)
            .and_then(|()| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(conn))).map_err(|_| {
                    tracing::error!("a database job panicked; rolled back");
                    ApiError::internal()
                })
            });
        match ran {
            Ok((keep, reply)) => {
                let ended = if keep {
                    statement("RELEASE job")
                } else {
                    conn.execute_batch("ROLLBACK TO job; RELEASE job")
                };
                if let Err(e) = ended {
                    tracing::error!("savepoint failed: {e}");
                }
                replies.push(reply);
            }
            Err(_) => {
                let _ = conn.execute_batch("ROLLBACK TO job; RELEASE job");
            }
        }
    }
    let committed = conn.execute_batch("COMMIT").map_err(ApiError::from);
    if committed.is_err() {
        let _ = conn.execute_batch("ROLLBACK");
    }
    for reply in replies {
        reply(committed.as_ref().err());
    }
}

/// Writes and commits made by the writer.
#[derive(Default)]
struct WriteCounts {
    writes: std::sync::atomic::AtomicU64,
    commits: std::sync::atomic::AtomicU64,
    /// 1 while the writer runs a batch.
    writing: std::sync::atomic::AtomicU64,
    /// Read connections in a query.
    reading: std::sync::atomic::AtomicU64,
}

/// Counts one connection at work while it lives.
struct AtWork<'a>(&'a std::sync::atomic::AtomicU64);

impl<'a> AtWork<'a> {
    fn new(counter: &'a std::sync::atomic::AtomicU64) -> Self {
        counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(counter)
    }
}

impl Drop for AtWork<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

fn writer_loop(
    conn: Connection,
    jobs: std::sync::mpsc::Receiver<Job>,
    counts: Arc<WriteCounts>,
) -> Connection {
    use std::sync::atomic::Ordering::Relaxed;
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        counts.writes.fetch_add(batch.len() as u64, Relaxed);
        counts.commits.fetch_add(1, Relaxed);
        let _writing = AtWork::new(&counts.writing);
        run_batch(&conn, batch);
    }
    conn
}

fn shutting_down() -> ApiError {
    ApiError::new(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        "MaintenanceInProgress",
        "server is shutting down",
    )
}

impl SqliteStore {
    /// Opens (creating if needed) `<dir>/sessionkit.db`, brings its schema up to date, and
    /// starts the writer thread.
    pub fn open(dir: &Path) -> Result<SqliteStore, String> {
        let db = Db::open(dir)?;
        let conn = db
            .conn
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
            .ok_or("database closed")?;
        let path = dir.join(DB_FILE);
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = Connection::open(&path)
                .map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
            r.execute_batch("PRAGMA query_only=ON; PRAGMA busy_timeout=5000;")
                .map_err(|e| format!("cannot configure database: {e}"))?;
            r.set_prepared_statement_cache_capacity(64);
            readers.push(Mutex::new(r));
        }
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        let counts = Arc::new(WriteCounts::default());
        let writer_counts = counts.clone();
        let writer = std::thread::Builder::new()
            .name("sessionkit-sqlite-writer".into())
            .spawn(move || writer_loop(conn, rx, writer_counts))
            .map_err(|e| format!("cannot start the database writer: {e}"))?;
        Ok(SqliteStore {
            counts,
            jobs: std::sync::RwLock::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            readers: Arc::new(readers),
            next_reader: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Runs `f` in the writer's next batch; its result once that batch is committed. An `Err`
    /// from `f` rolls back `f`'s writes alone.
    async fn write<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        self.write_job(f, true).await
    }

    /// As [`SqliteStore::write`]; with `commit` false, `f`'s writes are rolled back even when
    /// it succeeds (a dry run), and its result answered.
    async fn write_job<T, F>(&self, f: F, commit: bool) -> Result<T, ApiError>
    where
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<T, ApiError>>();
        let job: Job = Box::new(move |conn| {
            let out = f(conn);
            let keep = out.is_ok() && commit;
            let reply: Reply = Box::new(move |commit: Option<&ApiError>| {
                let _ = tx.send(match commit {
                    Some(e) => Err(e.clone()),
                    None => out,
                });
            });
            (keep, reply)
        });
        {
            let jobs = self.jobs.read().unwrap_or_else(|p| p.into_inner());
            let sender = jobs.as_ref().ok_or_else(shutting_down)?;
            sender.send(job).map_err(|_| shutting_down())?;
        }
        rx.await.unwrap_or_else(|_| Err(ApiError::internal()))
    }

    /// Runs `f` on a read connection, on a blocking thread.
    async fn read<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&Connection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        if self
            .jobs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
        {
            return Err(shutting_down());
        }
        let readers = self.readers.clone();
        let counts = self.counts.clone();
        let start = self
            .next_reader
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            // The first free connection from a rotating start, else wait for one.
            for i in 0..readers.len() {
                if let Ok(conn) = readers[(start + i) % readers.len()].try_lock() {
                    let _reading = AtWork::new(&counts.reading);
                    return f(&conn);
                }
            }
            let conn = readers[start % readers.len()]
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let _reading = AtWork::new(&counts.reading);
            f(&conn)
        })
        .await
        .map_err(|e| {
            tracing::error!("database task failed: {e}");
            ApiError::internal()
        })?
    }

    /// Deletes the user (`None`) or applies `change` to it ([`users`]), in one job; whether
    /// it exists.
    async fn change(
        &self,
        app_id: &str,
        user_id: &str,
        change: Option<UserChange>,
    ) -> StoreResult<bool> {
        let audit = audit::context();
        let (app_id, user_id) = (app_id.to_owned(), user_id.to_owned());
        self.write(move |conn| {
            let t = &mut WriterTx(conn);
            match change {
                None => run(users::delete_user(t, &app_id, &user_id, audit)),
                Some(c) => run(users::change_user(t, &app_id, &user_id, c, audit)),
            }
        })
        .await
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    fn stats(&self) -> StoreStats {
        use std::sync::atomic::Ordering::Relaxed;
        let in_use = self.counts.reading.load(Relaxed) + self.counts.writing.load(Relaxed);
        let max = self.readers.len() as u64 + 1;
        StoreStats {
            backend: "sqlite",
            writes: self.counts.writes.load(Relaxed),
            commits: self.counts.commits.load(Relaxed),
            connections_in_use: in_use,
            connections_idle: max.saturating_sub(in_use),
            connections_max: max,
        }
    }

    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| {
            Ok(conn
                .query_row("SELECT 1", [], |r| r.get::<_, i64>(0))
                .map(|_| ())?)
        })
        .await
    }

    async fn meta_get_or_insert(&self, key: &str, value: String) -> StoreResult<String> {
        let key = key.to_owned();
        self.write(move |conn| {
            let tx = conn;
            tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO NOTHING",
            )?
            .execute(params![key, value])?;
            Ok(meta_get(tx, &key)?.unwrap_or_default())
        })
        .await
    }

    async fn meta_get(&self, key: &str) -> StoreResult<Option<String>> {
        let key = key.to_owned();
        self.read(move |conn| Ok(meta_get(conn, &key)?)).await
    }

    async fn meta_set(&self, key: &str, value: &str) -> StoreResult<()> {
        let (key, value) = (key.to_owned(), value.to_owned());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute(params![key, value])?;
            Ok(())
        })
        .await
    }

    async fn meta_with_prefix(&self, prefix: &str) -> StoreResult<Vec<(String, String)>> {
        let prefix = prefix.to_owned();
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT key, value FROM meta WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
                )?
                .query_map([&prefix], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn signing_keys(&self, app_id: &str) -> StoreResult<Vec<SigningKeyRow>> {
        let app_id = app_id.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT kid, alg, private_pem, public_jwk, created_at, retired_at FROM signing_keys
                 WHERE app_id = ?1 ORDER BY created_at DESC, rowid DESC",
            )?;
            let rows = stmt.query_map([&app_id], |r| {
                Ok(SigningKeyRow {
                    kid: r.get(0)?,
                    alg: r.get(1)?,
                    private_pem: r.get(2)?,
                    public_jwk: r.get(3)?,
                    created_at: r.get(4)?,
                    retired_at: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn add_signing_key(
        &self,
        app_id: &str,
        only_if_alg_differs: Option<&'static str>,
        make: Box<dyn FnOnce() -> Result<SigningKeyRow, String> + Send>,
        now: i64,
    ) -> StoreResult<bool> {
        let app_id = app_id.to_owned();
        let ctx = audit::context();
        self.write(move |conn| {
            let tx = conn;
            if let Some(alg) = only_if_alg_differs {
                let active: Option<String> = tx
                    .query_row(
                        "SELECT alg FROM signing_keys WHERE app_id = ?1 AND retired_at IS NULL",
                        [&app_id],
                        |r| r.get(0),
                    )
                    .optional()?;
                if active.as_deref() == Some(alg) {
                    return Ok(false);
                }
            }
            let key = make().map_err(|e| {
                tracing::error!("cannot make a signing key: {e}");
                ApiError::internal()
            })?;
            tx.execute(
                "UPDATE signing_keys SET retired_at = ?2 WHERE app_id = ?1 AND retired_at IS NULL",
                params![app_id, now],
            )?;
            tx.execute(
                "INSERT INTO signing_keys (kid, app_id, alg, private_pem, public_jwk, created_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    key.kid,
                    app_id,
                    key.alg,
                    key.private_pem,
                    key.public_jwk,
                    now
                ],
            )?;
            let event = Event::in_context(&app_id, kind::SIGNING_KEY_ADDED, ctx)
                .at(now)
                .detail(json!({"kid": key.kid, "alg": key.alg}));
            insert_event(tx, &event)?;
            Ok(true)
        })
        .await
    }

    async fn login(&self, login: Login, start: StartSession) -> StoreResult<(UserRow, NewSession)> {
        let audit = audit::context();
        // A refused code (its spent attempt kept) is committed as an `Ok` of the job.
        self.write(move |conn| run(login::login(&mut WriterTx(conn), login, start, audit)))
            .await?
    }

    async fn import_users(
        &self,
        app_id: &str,
        users: Vec<ImportUser>,
        dry_run: bool,
        now: i64,
    ) -> StoreResult<Vec<Result<Imported, String>>> {
        let app_id = app_id.to_owned();
        self.write_job(
            move |conn| {
                let mut out = Vec::with_capacity(users.len());
                for u in &users {
                    conn.prepare_cached("SAVEPOINT import_line")?.execute([])?;
                    let result = run(import::import_line(&mut WriterTx(conn), &app_id, u, now));
                    if matches!(result, Ok(Ok(_))) {
                        conn.prepare_cached("RELEASE import_line")?.execute([])?;
                    } else {
                        conn.execute_batch("ROLLBACK TO import_line; RELEASE import_line")?;
                    }
                    out.push(result?);
                }
                Ok(out)
            },
            !dry_run,
        )
        .await
    }

    async fn upgrade_password(
        &self,
        app_id: &str,
        email: &str,
        old: &str,
        new: &str,
    ) -> StoreResult<bool> {
        let (app_id, email, old, new) = (
            app_id.to_owned(),
            email.to_owned(),
            old.to_owned(),
            new.to_owned(),
        );
        self.write(move |conn| {
            Ok(conn
                .prepare_cached(
                    "UPDATE userpass SET password_hash = ?4 WHERE app_id = ?1 AND email = ?2 AND password_hash = ?3",
                )?
                .execute(params![app_id, email, old, new])?
                == 1)
        })
        .await
    }

    async fn user(&self, app_id: &str, user_id: &str) -> StoreResult<Option<UserRow>> {
        let (app_id, user_id) = (app_id.to_owned(), user_id.to_owned());
        self.read(move |conn| Ok(user(conn, &app_id, &user_id)?))
            .await
    }

    async fn identities(&self, user_id: &str) -> StoreResult<Vec<IdentityRow>> {
        let user_id = user_id.to_owned();
        self.read(move |conn| Ok(identities(conn, &user_id)?)).await
    }

    async fn users(&self, app_id: &str) -> StoreResult<Vec<(UserRow, Vec<IdentityRow>)>> {
        let app_id = app_id.to_owned();
        self.read(move |conn| {
            let users: Vec<UserRow> = conn
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE app_id = ?1 ORDER BY created_at, rowid"
                ))?
                .query_map([&app_id], user_row)?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::with_capacity(users.len());
            for u in users {
                let ids = identities(conn, &u.id)?;
                out.push((u, ids));
            }
            Ok(out)
        })
        .await
    }

    async fn export_users(
        &self,
        app_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<ExportUser>> {
        let (app_id, after) = (app_id.to_owned(), after.unwrap_or("").to_owned());
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(move |conn| {
            // One snapshot per page: a user and its identities and account as of one moment.
            let conn = &conn.unchecked_transaction()?;
            // Every id sorts after "" (ids are never empty), so the first page needs no other
            // query. `+app_id` keeps SQLite off users_app (app_id, created_at): by that index
            // each page read and sorted every user of the app after `after` (300,000 users took
            // 35 s, 30,000 took 0.6 s); by the id index a page is one range
            // (tests/query_plans.rs).
            let users: Vec<UserRow> = conn
                .prepare_cached(&format!(
                    "SELECT {USER_COLUMNS} FROM users WHERE +app_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
                ))?
                .query_map(params![app_id, after, limit], user_row)?
                .collect::<rusqlite::Result<_>>()?;
            let mut out = Vec::with_capacity(users.len());
            for user in users {
                let identities = identities(conn, &user.id)?;
                let mut account = None;
                if let Some((id, email)) = super::userpass_identity(&identities) {
                    account = userpass(conn, &app_id, email)?.filter(|a| a.identity_id == id);
                }
                out.push(ExportUser {
                    user,
                    identities,
                    account,
                });
            }
            Ok(out)
        })
        .await
    }

    async fn delete_user(&self, app_id: &str, user_id: &str) -> StoreResult<bool> {
        self.change(app_id, user_id, None).await
    }

    async fn revoke_sessions(&self, app_id: &str, user_id: &str) -> StoreResult<bool> {
        self.change(app_id, user_id, Some(UserChange::Revoke)).await
    }

    async fn user_sessions(
        &self,
        app_id: &str,
        user_id: &str,
        now: i64,
    ) -> StoreResult<Vec<SessionInfo>> {
        let (app_id, user_id) = (app_id.to_owned(), user_id.to_owned());
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT s.id, s.created_at, s.last_used_at, s.provider_type, s.device, s.ip, k.id, k.name
                 FROM sessions s LEFT JOIN api_keys k ON k.id = s.api_key_id
                 WHERE s.app_id = ?1 AND s.user_id = ?2 AND s.revoked = 0 AND s.expires_at > ?3
                 ORDER BY s.created_at, s.id",
            )?;
            let rows = stmt.query_map(params![app_id, user_id, now], |r| {
                Ok(SessionInfo {
                    id: r.get(0)?,
                    created_at: r.get(1)?,
                    last_used_at: r.get(2)?,
                    provider_type: r.get(3)?,
                    device: r.get(4)?,
                    ip: r.get(5)?,
                    api_key: match (r.get::<_, Option<String>>(6)?, r.get(7)?) {
                        (Some(id), Some(name)) => Some((id, name)),
                        _ => None,
                    },
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn revoke_user_session(
        &self,
        app_id: &str,
        user_id: &str,
        session_id: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let audit = audit::context();
        let (app_id, user_id, session_id) =
            (app_id.to_owned(), user_id.to_owned(), session_id.to_owned());
        self.write(move |conn| {
            let t = &mut WriterTx(conn);
            run(users::revoke_user_session(
                t,
                &app_id,
                &user_id,
                &session_id,
                now,
                audit,
            ))
        })
        .await
    }

    async fn revoke_sessions_but(
        &self,
        app_id: &str,
        user_id: &str,
        keep: Option<&str>,
    ) -> StoreResult<usize> {
        let audit = audit::context();
        let (app_id, user_id) = (app_id.to_owned(), user_id.to_owned());
        let keep = keep.map(str::to_owned);
        let n = self
            .write(move |conn| {
                let t = &mut WriterTx(conn);
                run(users::revoke_sessions_but(
                    t,
                    &app_id,
                    &user_id,
                    keep.as_deref(),
                    audit,
                ))
            })
            .await?;
        Ok(n as usize)
    }

    async fn session_live(&self, session_id: &str, now: i64) -> StoreResult<bool> {
        let session_id = session_id.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT EXISTS (SELECT 1 FROM sessions WHERE id = ?1 AND revoked = 0 AND expires_at > ?2)",
                )?
                .query_row(params![session_id, now], |r| r.get(0))?)
        })
        .await
    }

    async fn remember_proof(&self, replay_key: &str, until: i64) -> StoreResult<bool> {
        let replay_key = replay_key.to_owned();
        self.write(move |conn| {
            Ok(conn
                .prepare_cached(
                    "INSERT INTO dpop_proofs (replay_key, expires_at) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
                )?
                .execute(params![replay_key, until])?
                == 1)
        })
        .await
    }

    async fn set_user_disabled(
        &self,
        app_id: &str,
        user_id: &str,
        disabled: bool,
    ) -> StoreResult<bool> {
        self.change(app_id, user_id, Some(UserChange::Disabled(disabled)))
            .await
    }

    async fn set_custom_data(&self, app_id: &str, user_id: &str, doc: &str) -> StoreResult<bool> {
        self.change(
            app_id,
            user_id,
            Some(UserChange::CustomData(doc.to_owned())),
        )
        .await
    }

    async fn use_refresh_token(
        &self,
        presented: PresentedRefresh,
        purpose: RefreshUse,
    ) -> StoreResult<CheckedSession> {
        let audit = audit::context();
        // A reuse revokes the session, kept though the call fails: an `Ok` of the job.
        self.write(move |conn| {
            run(refresh::use_refresh_token(
                &mut WriterTx(conn),
                &presented,
                purpose,
                audit,
            ))
        })
        .await?
    }

    async fn create_api_key(
        &self,
        app_id: &str,
        user_id: &str,
        key: &ApiKeyRow,
        key_hash: &str,
        now: i64,
    ) -> StoreResult<()> {
        let audit = audit::context();
        let (app_id, user_id, key, key_hash) = (
            app_id.to_owned(),
            user_id.to_owned(),
            key.clone(),
            key_hash.to_owned(),
        );
        self.write(move |conn| {
            let t = &mut WriterTx(conn);
            run(api_keys::create_api_key(
                t, &app_id, &user_id, &key, &key_hash, now, audit,
            ))
        })
        .await
    }

    async fn api_keys(&self, user_id: &str) -> StoreResult<Vec<ApiKeyRow>> {
        let user_id = user_id.to_owned();
        self.read(move |conn| {
            let rows = conn
                .prepare_cached(
                    "SELECT id, user_id, name, disabled FROM api_keys WHERE user_id = ?1 ORDER BY created_at, rowid",
                )?
                .query_map([&user_id], api_key_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn api_key(&self, user_id: &str, id: &str) -> StoreResult<Option<ApiKeyRow>> {
        let (user_id, id) = (user_id.to_owned(), id.to_owned());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT id, user_id, name, disabled FROM api_keys WHERE id = ?1 AND user_id = ?2")?
                .query_row(params![id, user_id], api_key_row)
                .optional()?)
        })
        .await
    }

    async fn api_key_by_hash(
        &self,
        app_id: &str,
        key_hash: &str,
    ) -> StoreResult<Option<ApiKeyRow>> {
        let (app_id, key_hash) = (app_id.to_owned(), key_hash.to_owned());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT id, user_id, name, disabled FROM api_keys WHERE key_hash = ?1 AND app_id = ?2",
                )?
                .query_row(params![key_hash, app_id], api_key_row)
                .optional()?)
        })
        .await
    }

    async fn delete_api_key(&self, user_id: &str, id: &str) -> StoreResult<bool> {
        let audit = audit::context();
        let (user_id, id) = (user_id.to_owned(), id.to_owned());
        self.write(move |conn| {
            run(api_keys::delete_api_key(
                &mut WriterTx(conn),
                &user_id,
                &id,
                audit,
            ))
        })
        .await
    }

    async fn set_api_key_disabled(
        &self,
        user_id: &str,
        id: &str,
        disabled: bool,
    ) -> StoreResult<bool> {
        let audit = audit::context();
        let (user_id, id) = (user_id.to_owned(), id.to_owned());
        self.write(move |conn| {
            let t = &mut WriterTx(conn);
            run(api_keys::set_api_key_disabled(
                t, &user_id, &id, disabled, audit,
            ))
        })
        .await
    }

    async fn userpass(&self, app_id: &str, email: &str) -> StoreResult<Option<UserpassRow>> {
        let (app_id, email) = (app_id.to_owned(), email.to_owned());
        self.read(move |conn| Ok(userpass(conn, &app_id, &email)?))
            .await
    }

    async fn register(
        &self,
        app_id: &str,
        email: &str,
        password_hash: &str,
        confirm: Option<MailToken>,
        now: i64,
    ) -> StoreResult<()> {
        let audit = audit::context();
        let (app_id, email, hash) = (
            app_id.to_owned(),
            email.to_owned(),
            password_hash.to_owned(),
        );
        self.write(move |conn| {
            let t = &mut WriterTx(conn);
            run(accounts::register(
                t,
                &app_id,
                &email,
                &hash,
                confirm.as_ref(),
                now,
                audit,
            ))
        })
        .await
    }

    async fn create_confirmed_user(
        &self,
        app_id: &str,
        email: &str,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<(UserRow, Vec<IdentityRow>)> {
        let audit = audit::context();
        let (app_id, email, hash) = (
            app_id.to_owned(),
            email.to_owned(),
            password_hash.to_owned(),
        );
        self.write(move |conn| {
            let t = &mut WriterTx(conn);
            run(accounts::create_confirmed_user(
                t, &app_id, &email, &hash, now, audit,
            ))
        })
        .await
    }

    async fn issue_mail_token(
        &self,
        app_id: &str,
        email: &str,
        token: MailToken,
    ) -> StoreResult<()> {
        let (app_id, email) = (app_id.to_owned(), email.to_owned());
        self.write(move |conn| {
            let t = &mut WriterTx(conn);
            run(accounts::issue_mail_token(t, &app_id, &email, &token))
        })
        .await
    }

    async fn reset_token_hash(
        &self,
        app_id: &str,
        token_id: &str,
        now: i64,
    ) -> StoreResult<Option<String>> {
        let (app_id, token_id) = (app_id.to_owned(), token_id.to_owned());
        self.read(move |conn| {
            Ok(conn
                .prepare_cached(
                    "SELECT token_hash FROM userpass_tokens WHERE token_id = ?1 AND app_id = ?2 AND kind = 'reset' AND expires_at > ?3",
                )?
                .query_row(params![token_id, app_id, now], |r| r.get::<_, String>(0))
                .optional()?)
        })
        .await
    }

    async fn confirm(
        &self,
        app_id: &str,
        token: &str,
        token_id: &str,
        now: i64,
    ) -> StoreResult<()> {
        let audit = audit::context();
        let (app_id, token, token_id) = (app_id.to_owned(), token.to_owned(), token_id.to_owned());
        self.write(move |conn| {
            let t = &mut WriterTx(conn);
            run(accounts::confirm(t, &app_id, &token, &token_id, now, audit))
        })
        .await
    }

    async fn set_password(
        &self,
        app_id: &str,
        account: PasswordAccount<'_>,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<()> {
        let audit = audit::context();
        let app_id = app_id.to_owned();
        let hash = password_hash.to_owned();
        // Owned for the writer's thread; borrowed again there.
        let account = match account {
            PasswordAccount::Email(e) => (e.to_owned(), None),
            PasswordAccount::ResetToken(t, id) => (t.to_owned(), Some(id.to_owned())),
        };
        self.write(move |conn| {
            let account = match &account {
                (email, None) => PasswordAccount::Email(email),
                (token, Some(id)) => PasswordAccount::ResetToken(token, id),
            };
            let t = &mut WriterTx(conn);
            run(accounts::set_password(
                t, &app_id, account, &hash, now, audit,
            ))
        })
        .await
    }

    async fn issue_email_otp(
        &self,
        app_id: &str,
        email: &str,
        code: EmailOtpCode,
    ) -> StoreResult<()> {
        let (app_id, email) = (app_id.to_owned(), email.to_owned());
        self.write(move |conn| {
            conn.prepare_cached(
                "INSERT INTO email_otp_codes (app_id, email, code_mac, created_at, expires_at, attempts_left)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(app_id, email) DO UPDATE SET code_mac = excluded.code_mac,
                   created_at = excluded.created_at, expires_at = excluded.expires_at,
                   attempts_left = excluded.attempts_left",
            )?
            .execute(params![app_id, email, code.mac, code.created_at, code.expires_at, code.attempts])?;
            // The older codes' mails: a dead code is not sent, nor kept in clear.
            conn.prepare_cached(
                "UPDATE outbox SET token = '',
                   error = CASE WHEN status = 'pending' THEN ?3 ELSE error END,
                   status = CASE WHEN status = 'pending' THEN 'failed' ELSE status END
                 WHERE app_id = ?1 AND email = ?2 AND kind = 'email-otp' AND token != ''",
            )?
            .execute(params![app_id, email, CODE_REPLACED])?;
            conn.prepare_cached(
                "INSERT INTO outbox (app_id, kind, email, token, token_id, created_at, next_at, expires_at)
                 VALUES (?1, 'email-otp', ?2, ?3, ?4, ?5, ?5, ?6)",
            )?
            .execute(params![app_id, email, code.code, code.mail_id, code.created_at, code.expires_at])?;
            Ok(())
        })
        .await
    }

    async fn outbox(&self, app_id: &str, email: Option<&str>) -> StoreResult<Vec<OutboxRow>> {
        let (app_id, email) = (app_id.to_owned(), email.map(str::to_owned));
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT kind, email, token, token_id FROM outbox WHERE app_id = ?1 AND (?2 IS NULL OR email = ?2) ORDER BY seq",
            )?;
            let rows = stmt.query_map(params![app_id, email], |r| {
                Ok(OutboxRow {
                    kind: r.get(0)?,
                    email: r.get(1)?,
                    token: r.get(2)?,
                    token_id: r.get(3)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn claim_mail(
        &self,
        now: i64,
        lease_secs: i64,
        limit: i64,
    ) -> StoreResult<Vec<QueuedMail>> {
        // Most polls find nothing due: a read says so without a write (a commit) each time.
        let due = self
            .read(move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM outbox WHERE status = 'pending' AND next_at <= ?1)",
                    )?
                    .query_row([now], |r| r.get::<_, bool>(0))?)
            })
            .await?;
        if !due {
            return Ok(Vec::new());
        }
        // One process per SQLite file, and one writer: the UPDATE is the claim.
        self.write(move |conn| {
            let mut stmt = conn.prepare_cached(
                "UPDATE outbox SET next_at = ?1 + ?2, attempts = attempts + 1
                 WHERE seq IN (SELECT seq FROM outbox WHERE status = 'pending' AND next_at <= ?1
                               ORDER BY next_at, seq LIMIT ?3)
                 RETURNING seq, app_id, kind, email, token, token_id, created_at, expires_at, attempts",
            )?;
            let rows = stmt.query_map(params![now, lease_secs, limit], |r| {
                Ok(QueuedMail {
                    seq: r.get(0)?,
                    app_id: r.get(1)?,
                    kind: r.get(2)?,
                    email: r.get(3)?,
                    token: r.get(4)?,
                    token_id: r.get(5)?,
                    created_at: r.get(6)?,
                    expires_at: r.get(7)?,
                    attempts: r.get(8)?,
                })
            })?;
            let mut out = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            out.sort_by_key(|m| m.seq);
            Ok(out)
        })
        .await
    }

    async fn mail_outcome(&self, seq: i64, outcome: MailOutcome) -> StoreResult<()> {
        let ctx = audit::context();
        self.write(move |conn| {
            let done = match &outcome {
                MailOutcome::Sent(at) => Some((kind::MAIL_SENT, Some(*at))),
                MailOutcome::Failed(_) => Some((kind::MAIL_FAILED, None)),
                MailOutcome::RetryAt(..) => None,
            };
            if let Some((event_kind, at)) = done {
                let mail: Option<(String, String, i64)> = conn
                    .prepare_cached(
                        "SELECT app_id, kind, attempts FROM outbox WHERE seq = ?1 AND status = 'pending'",
                    )?
                    .query_row([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()?;
                if let Some((app_id, mail_kind, attempts)) = mail {
                    let mut event = Event::in_context(&app_id, event_kind, ctx)
                        .detail(json!({"mail": mail_kind, "seq": seq, "attempts": attempts}));
                    if let Some(at) = at {
                        event = event.at(at);
                    }
                    insert_event(conn, &event)?;
                }
            }
            match outcome {
                MailOutcome::Sent(at) => conn.execute(
                    "UPDATE outbox SET status = 'sent', sent_at = ?2, token = '', error = NULL WHERE seq = ?1",
                    params![seq, at],
                )?,
                MailOutcome::RetryAt(at, why) => conn.execute(
                    "UPDATE outbox SET next_at = ?2, error = ?3 WHERE seq = ?1 AND status = 'pending'",
                    params![seq, at, why],
                )?,
                MailOutcome::Failed(why) => conn.execute(
                    "UPDATE outbox SET status = 'failed', error = ?2 WHERE seq = ?1",
                    params![seq, why],
                )?,
            };
            Ok(())
        })
        .await
    }

    async fn mail_queue(&self, app_id: &str) -> StoreResult<Vec<MailRow>> {
        let app_id = app_id.to_owned();
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT seq, kind, email, status, attempts, created_at, next_at, sent_at, error FROM outbox WHERE app_id = ?1 ORDER BY seq",
            )?;
            let rows = stmt.query_map([app_id], |r| {
                Ok(MailRow {
                    seq: r.get(0)?,
                    kind: r.get(1)?,
                    email: r.get(2)?,
                    status: r.get(3)?,
                    attempts: r.get(4)?,
                    created_at: r.get(5)?,
                    next_at: r.get(6)?,
                    sent_at: r.get(7)?,
                    error: r.get(8)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn record_events(&self, events: Vec<Event>) -> StoreResult<()> {
        self.write(move |conn| {
            for e in &events {
                insert_event(conn, e)?;
            }
            Ok(())
        })
        .await
    }

    async fn audit_events(&self, filter: audit::Filter) -> StoreResult<Vec<Event>> {
        self.read(move |conn| {
            let kinds = (!filter.kinds.is_empty()).then(|| json!(filter.kinds).to_string());
            // Two statements, so that the planner sees the user when there is one and reads
            // the user's index (migration 12); else the primary key from `after` on.
            let mut stmt = conn.prepare_cached(if filter.user_id.is_some() {
                "SELECT seq, at, app_id, kind, user_id, session_id, ip, user_agent, actor, detail
                 FROM audit_events
                 WHERE user_id = ?3 AND user_id IS NOT NULL AND app_id = ?1 AND seq > ?2
                   AND (?4 IS NULL OR at >= ?4) AND (?5 IS NULL OR at < ?5)
                   AND (?6 IS NULL OR kind IN (SELECT value FROM json_each(?6)))
                 ORDER BY seq LIMIT ?7"
            } else {
                "SELECT seq, at, app_id, kind, user_id, session_id, ip, user_agent, actor, detail
                 FROM audit_events
                 WHERE app_id = ?1 AND seq > ?2 AND ?3 IS NULL
                   AND (?4 IS NULL OR at >= ?4) AND (?5 IS NULL OR at < ?5)
                   AND (?6 IS NULL OR kind IN (SELECT value FROM json_each(?6)))
                 ORDER BY seq LIMIT ?7"
            })?;
            let rows = stmt.query_map(
                params![
                    filter.app_id,
                    filter.after.unwrap_or(0),
                    filter.user_id,
                    filter.since,
                    filter.until,
                    kinds,
                    filter.limit
                ],
                |r| {
                    let detail: Option<String> = r.get(9)?;
                    Ok(Event {
                        seq: r.get(0)?,
                        at: r.get(1)?,
                        app_id: r.get(2)?,
                        kind: r.get(3)?,
                        user_id: r.get(4)?,
                        session_id: r.get(5)?,
                        ip: r.get(6)?,
                        user_agent: r.get(7)?,
                        actor: r.get(8)?,
                        detail: detail
                            .and_then(|d| serde_json::from_str(&d).ok())
                            .unwrap_or(Value::Null),
                        outbox: Default::default(),
                    })
                },
            )?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn prune_events(&self, before: i64, limit: i64) -> StoreResult<u64> {
        self.write(move |conn| {
            Ok(conn
                .prepare_cached(
                    "DELETE FROM audit_events WHERE seq IN (
                       SELECT seq FROM audit_events WHERE at < ?1 ORDER BY seq LIMIT ?2)",
                )?
                .execute(params![before, limit])? as u64)
        })
        .await
    }

    async fn mail_queue_depth(&self) -> StoreResult<(u64, u64)> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT COALESCE(SUM(status = 'pending'), 0), COALESCE(SUM(status = 'failed'), 0) FROM outbox",
            )?;
            Ok(stmt.query_row([], |r| {
                Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
            })?)
        })
        .await
    }

    async fn retry_mail(&self, app_id: &str, now: i64) -> StoreResult<usize> {
        let app_id = app_id.to_owned();
        self.write(move |conn| {
            // Mails queued before expiries were kept (0) carry a token of the usual lifetime.
            let failed = conn.execute(
                "UPDATE outbox SET status = 'pending', attempts = 0, next_at = ?1, error = NULL
                 WHERE app_id = ?2 AND status = 'failed' AND token <> ''
                   AND (CASE WHEN expires_at = 0 THEN created_at + ?3 ELSE expires_at END) > ?1",
                params![now, app_id, super::MAIL_TOKEN_LIFETIME_SECS],
            )?;
            let pending = conn.execute(
                "UPDATE outbox SET next_at = ?1 WHERE app_id = ?2 AND status = 'pending' AND next_at > ?1",
                params![now, app_id],
            )?;
            Ok(failed + pending)
        })
        .await
    }

    async fn sweep(&self, anon_cutoff: i64, session_cutoff: i64, now: i64) -> StoreResult<usize> {
        self.write(move |conn| {
            let tx = conn;
            let n = tx.execute(
                "DELETE FROM users WHERE anonymous = 1 AND created_at < ?1",
                [anon_cutoff],
            )?;
            tx.execute(
                "DELETE FROM sessions WHERE expires_at < ?1",
                [session_cutoff],
            )?;
            tx.execute("DELETE FROM userpass_tokens WHERE expires_at < ?1", [now])?;
            tx.execute("DELETE FROM email_otp_codes WHERE expires_at <= ?1", [now])?;
            tx.execute("DELETE FROM dpop_proofs WHERE expires_at <= ?1", [now])?;
            tx.execute(
                "DELETE FROM outbox WHERE status = 'sent' AND sent_at < ?1",
                [now - super::SENT_MAIL_KEPT_SECS],
            )?;
            Ok(n)
        })
        .await
    }

    async fn close(&self) {
        // No new work; the writer finishes what is queued, then hands its connection back.
        self.jobs.write().unwrap_or_else(|p| p.into_inner()).take();
        let writer = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(writer) = writer else { return };
        let _ = tokio::task::spawn_blocking(move || {
            let Ok(conn) = writer.join() else {
                tracing::error!("the database writer panicked");
                return;
            };
            if let Err(e) = conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);") {
                tracing::warn!("checkpoint at close failed: {e}");
            }
            if let Err((_, e)) = conn.close() {
                tracing::warn!("closing database failed: {e}");
            }
        })
        .await;
    }
}

/// The database holds the signing secrets, the admin secret, password hashes and reset tokens:
/// the data directory is made 0700 and the database files 0600, whatever the umask, before
/// SQLite opens them (it gives its -wal and -shm files the database file's mode). Looser modes
/// found at start are tightened, with a warning.
#[cfg(unix)]
pub(crate) fn restrict_permissions(dir: &Path, db: &Path) -> Result<(), String> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tighten = |path: &Path, mode: u32| -> Result<(), String> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        let current = meta.permissions().mode() & 0o777;
        if current & !mode != 0 {
            tracing::warn!(
                "{} had mode {current:o}; tightening to {mode:o} (it holds secrets)",
                path.display()
            );
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
                .map_err(|e| format!("cannot restrict {} to {mode:o}: {e}", path.display()))?;
        }
        Ok(())
    };
    tighten(dir, 0o700)?;
    // Created 0600 from the start, so there is no moment at which it is readable by others.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(db)
        .map_err(|e| format!("cannot create database {}: {e}", db.display()))?;
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        tighten(Path::new(&name), 0o600)?;
    }
    Ok(())
}

#[cfg(not(unix))]
pub(crate) fn restrict_permissions(_dir: &Path, _db: &Path) -> Result<(), String> {
    Ok(())
}
