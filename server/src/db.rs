//! SQLite storage: schema, the shared connection, and the row-level queries.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use serde_json::{Map, Value, json};

use crate::error::ApiError;
use crate::tokens;

/// The schema version this build writes (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 5;

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
];

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

/// The database: one connection behind a mutex, used from blocking threads.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Option<Connection>>>,
}

impl Db {
    /// Opens (creating if needed) `<dir>/sessionkit.db` and brings its schema up to date.
    pub fn open(dir: &Path) -> Result<Db, String> {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create data dir {}: {e}", dir.display()))?;
        let path = dir.join("sessionkit.db");
        restrict_permissions(dir, &path)?;
        let mut conn = Connection::open(&path)
            .map_err(|e| format!("cannot open database {}: {e}", path.display()))?;
        // WAL lets readers proceed during a write; synchronous=FULL fsyncs the WAL on every
        // commit, so every write we acknowledge survives a power cut. Auth traffic is small,
        // the extra fsync is affordable.
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA busy_timeout=5000;",
        )
        .map_err(|e| format!("cannot configure database: {e}"))?;
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| format!("cannot read schema version: {e}"))?;
        if version > SCHEMA_VERSION {
            return Err(format!(
                "database schema version {version} is newer than this server ({SCHEMA_VERSION}); \
                 run a newer sessionkit-server"
            ));
        }
        if version == 0 {
            conn.execute_batch(&format!("BEGIN; {SCHEMA} PRAGMA user_version = 1; COMMIT;"))
                .map_err(|e| format!("cannot create schema: {e}"))?;
        }
        for (to, sql, data) in MIGRATIONS.iter().filter(|(to, ..)| *to > version.max(1)) {
            let migrate = |conn: &mut Connection| -> rusqlite::Result<()> {
                let tx = conn.transaction()?;
                tx.execute_batch(sql)?;
                if let Some(step) = data {
                    step(&tx)?;
                }
                tx.execute_batch(&format!("PRAGMA user_version = {to};"))?;
                tx.commit()
            };
            migrate(&mut conn)
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

    /// Runs `f` with the connection on a blocking thread.
    pub async fn call<T, F>(&self, f: F) -> Result<T, ApiError>
    where
        F: FnOnce(&mut Connection) -> Result<T, ApiError> + Send + 'static,
        T: Send + 'static,
    {
        let db = self.clone();
        tokio::task::spawn_blocking(move || db.call_sync(f))
            .await
            .map_err(|e| {
                tracing::error!("database task failed: {e}");
                ApiError::internal()
            })?
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

/// Reads a meta value, creating it with `make` when absent.
pub fn meta_get_or_insert(
    conn: &Connection,
    key: &str,
    make: impl FnOnce() -> String,
) -> rusqlite::Result<String> {
    if let Some(v) = meta_get(conn, key)? {
        return Ok(v);
    }
    let v = make();
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2)",
        params![key, v],
    )?;
    Ok(v)
}

/// Reads a meta value.
pub fn meta_get(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

/// Writes a meta value.
pub fn meta_set(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        params![key, value],
    )?;
    Ok(())
}

/// A user row.
#[derive(Debug, Clone)]
pub struct UserRow {
    /// User id.
    pub id: String,
    /// App id.
    pub app_id: String,
    /// Creation time.
    pub created_at: i64,
    /// Last login time.
    pub last_login_at: i64,
    /// Disabled by the admin.
    pub disabled: bool,
    /// Created by anonymous login.
    pub anonymous: bool,
    /// Custom user data (`user_data` claim).
    pub custom_data: Option<Value>,
}

/// Loads a user of an app.
pub fn user(conn: &Connection, app_id: &str, id: &str) -> rusqlite::Result<Option<UserRow>> {
    conn.query_row(
        "SELECT id, app_id, created_at, last_login_at, disabled, anonymous, custom_data FROM users WHERE id = ?1 AND app_id = ?2",
        params![id, app_id],
        |r| {
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
        },
    )
    .optional()
}

/// Creates a user and returns its id.
pub fn create_user(
    tx: &Transaction,
    app_id: &str,
    now: i64,
    anonymous: bool,
) -> rusqlite::Result<String> {
    let id = tokens::new_object_id();
    tx.execute(
        "INSERT INTO users (id, app_id, created_at, last_login_at, anonymous) VALUES (?1, ?2, ?3, ?3, ?4)",
        params![id, app_id, now, anonymous],
    )?;
    Ok(id)
}

/// The user owning an identity.
pub fn identity_owner(
    conn: &Connection,
    app_id: &str,
    provider_type: &str,
    external_id: &str,
) -> rusqlite::Result<Option<String>> {
    conn.query_row(
        "SELECT user_id FROM identities WHERE app_id = ?1 AND provider_type = ?2 AND external_id = ?3",
        params![app_id, provider_type, external_id],
        |r| r.get(0),
    )
    .optional()
}

/// Inserts an identity, or replaces its profile data if it exists for the same user.
pub fn upsert_identity(
    tx: &Transaction,
    app_id: &str,
    provider_type: &str,
    external_id: &str,
    user_id: &str,
    data: &Map<String, Value>,
    now: i64,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO identities (app_id, provider_type, external_id, user_id, data, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT(app_id, provider_type, external_id) DO UPDATE SET data =
           CASE WHEN ?7 THEN json_patch(identities.data, excluded.data) ELSE excluded.data END",
        params![
            app_id,
            provider_type,
            external_id,
            user_id,
            Value::Object(data.clone()).to_string(),
            now,
            // Social issuers send profile claims only sometimes (Apple: the email once), so
            // what they sent before is kept; other providers' data is replaced as sent.
            provider_type.starts_with("oauth2-")
                || provider_type.starts_with(crate::config::OIDC_PREFIX),
        ],
    )?;
    Ok(())
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

/// A user's identities, oldest first.
pub fn identities(conn: &Connection, user_id: &str) -> rusqlite::Result<Vec<IdentityRow>> {
    let mut stmt = conn.prepare(
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

/// The client profile document of a user.
pub fn profile_json(conn: &Connection, user: &UserRow, domain_id: &str) -> rusqlite::Result<Value> {
    let ids = identities(conn, &user.id)?;
    let (list, data) = identities_json(&user.app_id, &ids);
    Ok(json!({
        "user_id": user.id,
        "domain_id": domain_id,
        "identities": list,
        "data": data,
        "type": "normal",
    }))
}

/// The admin API's user document.
pub fn admin_user_json(conn: &Connection, user: &UserRow) -> rusqlite::Result<Value> {
    let ids = identities(conn, &user.id)?;
    let (list, data) = identities_json(&user.app_id, &ids);
    Ok(json!({
        "_id": user.id,
        "identities": list,
        "type": "normal",
        "creation_date": user.created_at,
        "last_authentication_date": user.last_login_at,
        "disabled": user.disabled,
        "data": data,
        "custom_data": user.custom_data,
    }))
}

/// Revokes every session of a user.
pub fn revoke_user_sessions(conn: &Connection, user_id: &str) -> rusqlite::Result<usize> {
    conn.execute(
        "UPDATE sessions SET revoked = 1 WHERE user_id = ?1 AND revoked = 0",
        [user_id],
    )
}

/// Deletes a user with everything it owns (identities, sessions and keys cascade).
pub fn delete_user(tx: &Transaction, app_id: &str, user_id: &str) -> rusqlite::Result<bool> {
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

/// A login session (one per login; rotation keeps the row).
#[derive(Debug, Clone)]
pub struct SessionRow {
    /// Session id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Device id of the login.
    pub device_id: String,
    /// Last refresh (or the login).
    pub last_used_at: i64,
    /// Absolute expiry of the session's refresh tokens.
    pub expires_at: i64,
    /// Logged out or revoked.
    pub revoked: bool,
    /// The API key it logged in with, if it did.
    pub api_key_id: Option<String>,
}

/// Creates a session with its first refresh token (stored as a hash).
#[allow(clippy::too_many_arguments)]
pub fn create_session(
    tx: &Transaction,
    session_id: &str,
    app_id: &str,
    user_id: &str,
    device_id: &str,
    now: i64,
    expires_at: i64,
    token_hash: &str,
    api_key_id: Option<&str>,
) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO sessions (id, app_id, user_id, device_id, created_at, last_used_at, expires_at, api_key_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6, ?7)",
        params![session_id, app_id, user_id, device_id, now, expires_at, api_key_id],
    )?;
    tx.execute(
        "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES (?1, ?2, ?3)",
        params![token_hash, session_id, now],
    )?;
    Ok(())
}

/// Finds the session of a refresh token hash, with the token's `superseded_at`.
pub fn session_by_token(
    conn: &Connection,
    token_hash: &str,
) -> rusqlite::Result<Option<(SessionRow, Option<i64>)>> {
    conn.query_row(
        "SELECT s.id, s.user_id, s.device_id, s.last_used_at, s.expires_at, s.revoked, t.superseded_at, s.api_key_id
         FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id WHERE t.token_hash = ?1",
        [token_hash],
        |r| {
            Ok((
                SessionRow {
                    id: r.get(0)?,
                    user_id: r.get(1)?,
                    device_id: r.get(2)?,
                    last_used_at: r.get(3)?,
                    expires_at: r.get(4)?,
                    revoked: r.get(5)?,
                    api_key_id: r.get(7)?,
                },
                r.get(6)?,
            ))
        },
    )
    .optional()
}

/// Userpass account row.
#[derive(Debug, Clone)]
pub struct UserpassRow {
    /// The email.
    pub email: String,
    /// The `local-userpass` identity id.
    pub identity_id: String,
    /// argon2 PHC string.
    pub password_hash: String,
    /// Email confirmed.
    pub confirmed: bool,
}

/// Loads an email account.
pub fn userpass(
    conn: &Connection,
    app_id: &str,
    email: &str,
) -> rusqlite::Result<Option<UserpassRow>> {
    conn.query_row(
        "SELECT email, identity_id, password_hash, confirmed FROM userpass WHERE app_id = ?1 AND email = ?2",
        params![app_id, email],
        |r| {
            Ok(UserpassRow {
                email: r.get(0)?,
                identity_id: r.get(1)?,
                password_hash: r.get(2)?,
                confirmed: r.get(3)?,
            })
        },
    )
    .optional()
}

/// Deletes anonymous users created before `cutoff`, sessions expired before `session_cutoff`
/// and expired userpass tokens. Returns the number of users deleted.
pub fn sweep(
    conn: &mut Connection,
    cutoff: i64,
    session_cutoff: i64,
    now: i64,
) -> rusqlite::Result<usize> {
    let tx = conn.transaction()?;
    let n = tx.execute(
        "DELETE FROM users WHERE anonymous = 1 AND created_at < ?1",
        [cutoff],
    )?;
    tx.execute(
        "DELETE FROM sessions WHERE expires_at < ?1",
        [session_cutoff],
    )?;
    tx.execute("DELETE FROM userpass_tokens WHERE expires_at < ?1", [now])?;
    tx.commit()?;
    Ok(n)
}

/// The database holds the signing secrets, the admin secret, password hashes and reset tokens:
/// the data directory is made 0700 and the database files 0600, whatever the umask, before
/// SQLite opens them (it gives its -wal and -shm files the database file's mode). Looser modes
/// found at start are tightened, with a warning.
#[cfg(unix)]
fn restrict_permissions(dir: &Path, db: &Path) -> Result<(), String> {
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
fn restrict_permissions(_dir: &Path, _db: &Path) -> Result<(), String> {
    Ok(())
}
