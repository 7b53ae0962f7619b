//! The PostgreSQL store: several server instances on one database.
//!
//! Everything that must be atomic across instances is one transaction whose conflicts the
//! database resolves: rows are locked (`SELECT … FOR UPDATE`) before they are judged, inserts
//! that must be unique rely on constraints (`ON CONFLICT DO NOTHING`), single-use tokens are
//! consumed by one `DELETE … RETURNING`, and key changes of an app are serialized by a
//! transaction-scoped advisory lock. READ COMMITTED is enough for that: each statement after a
//! lock sees what the other instance committed. Migrations are sqlx's, versioned files in
//! `server/migrations/postgres`, run under sqlx's advisory lock so that instances starting
//! together migrate once.

use std::borrow::Cow;
use std::time::Duration;

use serde_json::{Map, Value, json};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, SqlStr};

use super::transaction::{RowLock, TokenSession, Transaction, UserLock};
use super::users::UserChange;
use super::{
    ApiKeyRow, CODE_REPLACED, CheckedSession, EmailOtpCode, ExportUser, IdentityRow, Login,
    MailOutcome, MailRow, MailToken, NewSession, OutboxRow, PasswordAccount, PresentedRefresh,
    PresentedToken, QueuedMail, RefreshUse, SessionInfo, SessionRow, SigningKeyRow, StartSession,
    Store, StoreResult, StoreStats, StoredCode, Successor, UserRow, UserpassRow,
};
use crate::audit::{self, Event, kind};
use crate::config::DatabaseConfig;
use crate::error::ApiError;
use crate::store::import::{self, ImportUser, Imported, Write};
use crate::store::{accounts, api_keys, login, refresh, users};
use crate::tokens;

/// The numbered migrations of this backend, embedded in the binary.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "schema",
        include_str!("../../migrations/postgres/0001_schema.sql"),
    ),
    (
        2,
        "refresh tokens by generation",
        include_str!("../../migrations/postgres/0002_refresh_tokens_by_generation.sql"),
    ),
    (
        3,
        "mail queue",
        include_str!("../../migrations/postgres/0003_mail_queue.sql"),
    ),
    (
        4,
        "email one-time codes",
        include_str!("../../migrations/postgres/0004_email_otp_codes.sql"),
    ),
    (
        5,
        "session devices",
        include_str!("../../migrations/postgres/0005_session_devices.sql"),
    ),
    (
        6,
        "audit events",
        include_str!("../../migrations/postgres/0006_audit_events.sql"),
    ),
    (
        7,
        "dpop",
        include_str!("../../migrations/postgres/0007_dpop.sql"),
    ),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = 7;

fn newer_schema(version: i64) -> String {
    format!(
        "database schema version {version} is newer than this server ({SCHEMA_VERSION}); \
         run a newer sessionkit-server"
    )
}

fn migrator() -> Migrator {
    let migrations: Vec<Migration> = MIGRATIONS
        .iter()
        .map(|(version, description, sql)| {
            Migration::new(
                *version,
                Cow::Borrowed(*description),
                MigrationType::Simple,
                SqlStr::from_static(sql),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            // The database is down or every connection is busy: busy, not broken; the client
            // retries (503 with Retry-After).
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed => {
                tracing::warn!("database unavailable: {e}");
                ApiError::unavailable("the database does not answer; retry shortly", 1)
            }
            // A change on another instance came between (a deadlock broken, a serialization
            // failure, a row a foreign key needs deleted meanwhile): nothing was written, and
            // the same request a moment later sees the change. The row locks of each
            // transaction are meant to keep these from happening; if one does, the client
            // retries rather than taking a 500 for a transient state.
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("40001" | "40P01" | "23503")) =>
            {
                tracing::warn!("concurrent change, the request is to be retried: {e}");
                ApiError::unavailable("a concurrent change came between; retry shortly", 1)
            }
            _ => {
                tracing::error!("database error: {e}");
                ApiError::internal()
            }
        }
    }
}

/// The PostgreSQL store: a connection pool on one database.
#[derive(Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// `[database] max_connections`.
    max_connections: u32,
    /// Write transactions begun (each its own commit).
    writes: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

/// Parses a `postgres://` URL, with an error that says what to fix (never the password).
fn connect_options(url: &str) -> Result<PgConnectOptions, String> {
    url.parse::<PgConnectOptions>().map_err(|e| {
        format!(
            "database url: not a PostgreSQL URL ({}): expected \
             postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE",
            redact(&e.to_string(), url)
        )
    })
}

/// `text` with the URL's password, if any, replaced.
pub(crate) fn redact(text: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.split_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, p)| p)
        .filter(|p| !p.is_empty());
    match password {
        Some(p) => text.replace(p, "***"),
        None => text.to_string(),
    }
}

impl PostgresStore {
    /// Connects to `url` and brings the schema up to date (unless `config.migrate` is off, when
    /// the schema must already be current: `sessionkit-server migrate`). Errors name the URL's
    /// host and database, never its password.
    pub async fn open(url: &str, config: &DatabaseConfig) -> Result<PostgresStore, String> {
        let store = Self::open_unchecked(url, config).await?;
        if config.migrate {
            store.migrate().await?;
        } else {
            store.check_version().await?;
        }
        Ok(store)
    }

    /// Connects without looking at the schema (`migrate` looks itself).
    pub async fn open_unchecked(
        url: &str,
        config: &DatabaseConfig,
    ) -> Result<PostgresStore, String> {
        let options = connect_options(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(config.connect_timeout_secs))
            .idle_timeout(Some(Duration::from_secs(300)))
            .connect_with(options)
            .await
            .map_err(|e| {
                format!(
                    "cannot connect to PostgreSQL: {}",
                    redact(&e.to_string(), url)
                )
            })?;
        Ok(PostgresStore {
            pool,
            max_connections: config.max_connections,
            writes: Default::default(),
        })
    }

    /// Applies every migration the database lacks (an empty or older schema); the versions
    /// applied. Refuses a database newer than this build.
    pub async fn migrate(&self) -> Result<Vec<i64>, String> {
        let before = self.applied().await?;
        if let Some(v) = before.iter().max().filter(|v| **v > SCHEMA_VERSION) {
            return Err(newer_schema(*v));
        }
        migrator()
            .run(&self.pool)
            .await
            .map_err(|e| format!("cannot migrate the PostgreSQL schema: {e}"))?;
        let after = self.applied().await?;
        Ok(after.into_iter().filter(|v| !before.contains(v)).collect())
    }

    async fn applied(&self) -> Result<Vec<i64>, String> {
        let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
            .fetch_one(&self.pool)
            .await
            .map_err(|e| format!("cannot read the schema version: {e}"))?;
        if !exists {
            return Ok(Vec::new());
        }
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(&self.pool)
            .await
            .map_err(|e| format!("cannot read the schema version: {e}"))
    }

    /// Refuses a database migrated by a newer server, or not migrated at all.
    async fn check_version(&self) -> Result<(), String> {
        let applied = self.applied().await?;
        match applied.iter().max() {
            Some(v) if *v > SCHEMA_VERSION => Err(newer_schema(*v)),
            Some(v) if *v == SCHEMA_VERSION => Ok(()),
            _ => Err(format!(
                "the database schema is not at version {SCHEMA_VERSION}: run \
                 `sessionkit-server migrate`, or set [database] migrate = true"
            )),
        }
    }

    /// Creates the database of `url` when it does not exist (connecting to the server's
    /// `postgres` database to do it). Whether it was created.
    pub async fn create_database(url: &str) -> Result<bool, String> {
        use sqlx::migrate::MigrateDatabase;
        let exists = Postgres::database_exists(url)
            .await
            .map_err(|e| format!("cannot reach PostgreSQL: {}", redact(&e.to_string(), url)))?;
        if exists {
            return Ok(false);
        }
        match Postgres::create_database(url).await {
            Ok(()) => Ok(true),
            // Another instance created it in the meantime.
            Err(_) if Postgres::database_exists(url).await.unwrap_or(false) => Ok(false),
            Err(e) => Err(format!(
                "cannot create the database: {}",
                redact(&e.to_string(), url)
            )),
        }
    }
}

/// For test harnesses (`SESSIONKIT_TEST_POSTGRES`): creates a new, empty database on the
/// cluster of `cluster_url` (the URL of any database there) and returns its URL, so that every
/// test server starts on a database of its own, as it would on a fresh SQLite data directory.
/// With `same_as`, the database is named after it (a data directory's path, say) and reused
/// when it exists: a restarted test server finds its data again.
pub async fn create_test_database(
    cluster_url: &str,
    same_as: Option<&str>,
) -> Result<String, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut url = reqwest::Url::parse(cluster_url)
        .map_err(|e| format!("SESSIONKIT_TEST_POSTGRES is not a URL: {e}"))?;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = match same_as {
        Some(key) => format!("sk_test_{}", &tokens::sha256_hex(key)[..24]),
        None => format!(
            "sk_test_{}_{}_{nanos}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ),
    };
    url.set_path(&format!("/{name}"));
    let url = url.to_string();
    PostgresStore::create_database(&url).await?;
    Ok(url)
}

fn user_row(r: &PgRow) -> Result<UserRow, sqlx::Error> {
    let cd: Option<String> = r.try_get(6)?;
    Ok(UserRow {
        id: r.try_get(0)?,
        app_id: r.try_get(1)?,
        created_at: r.try_get(2)?,
        last_login_at: r.try_get(3)?,
        disabled: r.try_get(4)?,
        anonymous: r.try_get(5)?,
        custom_data: cd.and_then(|s| serde_json::from_str(&s).ok()),
    })
}

fn api_key_row(r: &PgRow) -> Result<ApiKeyRow, sqlx::Error> {
    Ok(ApiKeyRow {
        id: r.try_get(0)?,
        user_id: r.try_get(1)?,
        name: r.try_get(2)?,
        disabled: r.try_get(3)?,
    })
}

type Conn = sqlx::PgConnection;

async fn user(c: &mut Conn, app_id: &str, id: &str) -> Result<Option<UserRow>, sqlx::Error> {
    sqlx::query(
        "SELECT id, app_id, created_at, last_login_at, disabled, anonymous, custom_data \
         FROM users WHERE id = $1 AND app_id = $2",
    )
    .bind(id)
    .bind(app_id)
    .fetch_optional(&mut *c)
    .await?
    .map(|r| user_row(&r))
    .transpose()
}

async fn create_user(
    c: &mut Conn,
    app_id: &str,
    now: i64,
    anonymous: bool,
) -> Result<String, sqlx::Error> {
    let id = tokens::new_object_id();
    sqlx::query(
        "INSERT INTO users (id, app_id, created_at, last_login_at, anonymous) VALUES ($1, $2, $3, $3, $4)",
    )
    .bind(&id)
    .bind(app_id)
    .bind(now)
    .bind(anonymous)
    .execute(&mut *c)
    .await?;
    Ok(id)
}

async fn identity_owner(
    c: &mut Conn,
    app_id: &str,
    provider_type: &str,
    external_id: &str,
) -> Result<Option<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT user_id FROM identities WHERE app_id = $1 AND provider_type = $2 AND external_id = $3",
    )
    .bind(app_id)
    .bind(provider_type)
    .bind(external_id)
    .fetch_optional(&mut *c)
    .await
}

/// Inserts an identity, or updates its profile data: merged (a shallow merge, the profile
/// claims are flat) or replaced, see [`super::merges_profile_data`].
async fn upsert_identity(
    c: &mut Conn,
    app_id: &str,
    provider_type: &str,
    external_id: &str,
    user_id: &str,
    data: &Map<String, Value>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO identities (app_id, provider_type, external_id, user_id, data, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (app_id, provider_type, external_id) DO UPDATE SET data =
           CASE WHEN $7 THEN (identities.data::jsonb || excluded.data::jsonb)::text
                ELSE excluded.data END",
    )
    .bind(app_id)
    .bind(provider_type)
    .bind(external_id)
    .bind(user_id)
    .bind(Value::Object(data.clone()).to_string())
    .bind(now)
    .bind(super::merges_profile_data(provider_type))
    .execute(&mut *c)
    .await?;
    Ok(())
}

async fn identities(c: &mut Conn, user_id: &str) -> Result<Vec<IdentityRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT provider_type, external_id, data FROM identities WHERE user_id = $1 ORDER BY created_at, seq",
    )
    .bind(user_id)
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|r| {
            let data: String = r.try_get(2)?;
            Ok(IdentityRow {
                provider_type: r.try_get(0)?,
                external_id: r.try_get(1)?,
                data: match serde_json::from_str(&data) {
                    Ok(Value::Object(m)) => m,
                    _ => Map::new(),
                },
            })
        })
        .collect()
}

/// Appends `e` to the audit log, in the caller's transaction (audit.rs).
async fn insert_event(c: &mut Conn, e: &Event) -> Result<(), sqlx::Error> {
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO audit_events (at, app_id, kind, user_id, session_id, ip, user_agent, actor, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING seq",
    )
    .bind(e.at)
    .bind(&e.app_id)
    .bind(&e.kind)
    .bind(&e.user_id)
    .bind(&e.session_id)
    .bind(&e.ip)
    .bind(&e.user_agent)
    .bind(&e.actor)
    .bind(e.detail_text())
    .fetch_one(c)
    .await?;
    e.outbox.put(e, seq);
    Ok(())
}

async fn revoke_user_sessions(c: &mut Conn, user_id: &str) -> Result<u64, sqlx::Error> {
    Ok(
        sqlx::query("UPDATE sessions SET revoked = TRUE WHERE user_id = $1 AND NOT revoked")
            .bind(user_id)
            .execute(&mut *c)
            .await?
            .rows_affected(),
    )
}

/// An email account of an app, locked as `lock` says.
async fn userpass(
    c: &mut Conn,
    app_id: &str,
    email: &str,
    lock: RowLock,
) -> Result<Option<UserpassRow>, sqlx::Error> {
    let sql = match lock {
        RowLock::None => {
            "SELECT email, identity_id, password_hash, confirmed FROM userpass WHERE app_id = $1 AND email = $2"
        }
        RowLock::Update => {
            "SELECT email, identity_id, password_hash, confirmed FROM userpass WHERE app_id = $1 AND email = $2 FOR UPDATE"
        }
        RowLock::Share => {
            "SELECT email, identity_id, password_hash, confirmed FROM userpass WHERE app_id = $1 AND email = $2 FOR SHARE"
        }
    };
    sqlx::query(sql)
        .bind(app_id)
        .bind(email)
        .fetch_optional(&mut *c)
        .await?
        .map(|r| {
            Ok(UserpassRow {
                email: r.try_get(0)?,
                identity_id: r.try_get(1)?,
                password_hash: r.try_get(2)?,
                confirmed: r.try_get(3)?,
            })
        })
        .transpose()
}

async fn store_mail_token(
    c: &mut Conn,
    app_id: &str,
    email: &str,
    t: &MailToken,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO userpass_tokens (token_id, app_id, email, kind, token_hash, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&t.token_id)
    .bind(app_id)
    .bind(email)
    .bind(t.kind)
    .bind(tokens::sha256_hex(&t.token))
    .bind(t.expires_at)
    .execute(&mut *c)
    .await?;
    sqlx::query(
        "INSERT INTO outbox (app_id, kind, email, token, token_id, created_at, next_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
    )
    .bind(app_id)
    .bind(t.kind)
    .bind(email)
    .bind(&t.token)
    .bind(&t.token_id)
    .bind(t.created_at)
    .bind(t.expires_at)
    .execute(&mut *c)
    .await?;
    Ok(())
}

/// The session's tokens of generation `generation + 1`: a rotated-out token's successor (and,
/// from rotations before successors were derived, its siblings'). A token of generation
/// `generation` rotated out past the grace window still passes when one of them is current and
/// was never presented: its client never received it (a crash or a lost answer after the
/// rotation was committed), and the parent is still the client's latest token. Anything older,
/// or a parent whose successor was used, is reuse.
async fn successors(
    c: &mut Conn,
    session_id: &str,
    generation: i64,
) -> Result<Vec<Successor>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT token_hash, issued_at, superseded_at IS NULL AND used_at IS NULL
         FROM refresh_tokens WHERE session_id = $1 AND generation = $2 + 1",
    )
    .bind(session_id)
    .bind(generation)
    .fetch_all(&mut *c)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Successor {
                token_hash: r.try_get(0)?,
                issued_at: r.try_get(1)?,
                current_unused: r.try_get(2)?,
            })
        })
        .collect()
}

/// The writes of a refresh, in one statement (a refresh is a few round trips to the database:
/// each one counts): the presented token is marked as seen by its client (from now on its
/// parent counts as reused) and the session as used; with `next` (the new token), the current
/// token (a retried parent's old successor too) is superseded by it, and the tokens older than
/// the presented one and past the grace window are pruned (store/mod.rs; rows no other part of
/// the statement touches). The current token is the presented one or a later generation.
/// Pruned tokens are a prefix of the chain, from `prune_from` on (migration 0002), which moves to
/// the newest generation pruned. With `only_if_first`, nothing rotates when the presented token
/// already has a successor (in this statement's snapshot, taken after the session's lock).
/// Whether `next` was stored.
async fn refresh_statement(
    c: &mut Conn,
    p: &PresentedRefresh,
    session_id: &str,
    generation: i64,
    prune_from: i64,
    next: Option<&str>,
    only_if_first: bool,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "WITH go AS (
           SELECT $4::text IS NOT NULL AND NOT ($9 AND EXISTS (
             SELECT 1 FROM refresh_tokens WHERE session_id = $3 AND generation = $5)) AS rotate
         ), pruned AS (
           DELETE FROM refresh_tokens
           WHERE (SELECT rotate FROM go) AND session_id = $3
             AND generation >= $8 AND generation < $7 AND superseded_at <= $6
           RETURNING generation
         ), tokens AS (
           UPDATE refresh_tokens SET
             used_at = CASE WHEN token_hash = $2 THEN COALESCE(used_at, $1)
                            ELSE used_at END,
             superseded_at = CASE WHEN (SELECT rotate FROM go) AND superseded_at IS NULL
                                  THEN $1 ELSE superseded_at END
           WHERE token_hash = $2
              OR ((SELECT rotate FROM go) AND session_id = $3 AND generation >= $7
                  AND superseded_at IS NULL)
         ), used AS (
           UPDATE sessions SET last_used_at = $1,
             prune_from = COALESCE((SELECT max(generation) FROM pruned), prune_from)
           WHERE id = $3
         )
         INSERT INTO refresh_tokens (token_hash, session_id, issued_at, generation)
         SELECT $4, $3, $1, $5 WHERE (SELECT rotate FROM go)",
    )
    .bind(p.now)
    .bind(&p.token_hash)
    .bind(session_id)
    .bind(next.map(tokens::sha256_hex))
    .bind(generation + 1)
    .bind(p.now - super::ROTATION_GRACE_SECS)
    .bind(generation)
    .bind(prune_from)
    .bind(only_if_first)
    .execute(&mut *c)
    .await?
    .rows_affected();
    Ok(inserted > 0)
}

/// A PostgreSQL transaction as a [`Transaction`]: the flows of `login.rs`, `refresh.rs`,
/// `import.rs` and `users.rs` over PostgreSQL, with the row and advisory locks that keep
/// other instances from coming between their reads and writes.
struct PgTx<'c>(&'c mut Conn);

impl Transaction for PgTx<'_> {
    async fn user(&mut self, app_id: &str, user_id: &str) -> StoreResult<Option<UserRow>> {
        Ok(user(self.0, app_id, user_id).await?)
    }

    async fn user_any_app(&mut self, user_id: &str) -> StoreResult<Option<UserRow>> {
        Ok(sqlx::query(
            "SELECT id, app_id, created_at, last_login_at, disabled, anonymous, custom_data \
             FROM users WHERE id = $1 FOR UPDATE",
        )
        .bind(user_id)
        .fetch_optional(&mut *self.0)
        .await?
        .map(|r| user_row(&r))
        .transpose()?)
    }

    async fn lock_user(
        &mut self,
        app_id: &str,
        user_id: &str,
        lock: UserLock,
    ) -> StoreResult<bool> {
        let sql = match lock {
            UserLock::Login => {
                "SELECT id FROM users WHERE id = $1 AND app_id = $2 FOR NO KEY UPDATE"
            }
            UserLock::Change => "SELECT id FROM users WHERE id = $1 AND app_id = $2 FOR UPDATE",
        };
        let found: Option<String> = sqlx::query_scalar(sql)
            .bind(user_id)
            .bind(app_id)
            .fetch_optional(&mut *self.0)
            .await?;
        Ok(found.is_some())
    }

    async fn create_user(
        &mut self,
        app_id: &str,
        now: i64,
        anonymous: bool,
    ) -> StoreResult<String> {
        Ok(create_user(self.0, app_id, now, anonymous).await?)
    }

    async fn set_not_anonymous(&mut self, user_id: &str) -> StoreResult<()> {
        sqlx::query("UPDATE users SET anonymous = FALSE WHERE id = $1")
            .bind(user_id)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn drop_created_user(&mut self, user_id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn record_login(
        &mut self,
        app_id: &str,
        user_id: &str,
        now: i64,
    ) -> StoreResult<Option<UserRow>> {
        Ok(sqlx::query(
            "UPDATE users SET last_login_at = $3 WHERE id = $1 AND app_id = $2 \
             RETURNING id, app_id, created_at, last_login_at, disabled, anonymous, custom_data",
        )
        .bind(user_id)
        .bind(app_id)
        .bind(now)
        .fetch_optional(&mut *self.0)
        .await?
        .map(|r| user_row(&r))
        .transpose()?)
    }

    async fn set_disabled(&mut self, user_id: &str, disabled: bool) -> StoreResult<()> {
        sqlx::query("UPDATE users SET disabled = $2 WHERE id = $1")
            .bind(user_id)
            .bind(disabled)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn set_custom_data(&mut self, user_id: &str, doc: &str) -> StoreResult<()> {
        sqlx::query("UPDATE users SET custom_data = $2 WHERE id = $1")
            .bind(user_id)
            .bind(doc)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn revoke_user_sessions(&mut self, user_id: &str) -> StoreResult<u64> {
        Ok(revoke_user_sessions(self.0, user_id).await?)
    }

    async fn delete_user(&mut self, app_id: &str, user_id: &str) -> StoreResult<bool> {
        // Email accounts are keyed by email, not user; drop those linked to this user so the
        // address can register again and an old password no longer logs in.
        sqlx::query(
            "DELETE FROM userpass_tokens WHERE app_id = $1 AND email IN (
                SELECT email FROM userpass WHERE app_id = $1 AND identity_id IN (
                    SELECT external_id FROM identities WHERE user_id = $2 AND provider_type = 'local-userpass'))",
        )
        .bind(app_id)
        .bind(user_id)
        .execute(&mut *self.0)
        .await?;
        sqlx::query(
            "DELETE FROM userpass WHERE app_id = $1 AND identity_id IN (
                SELECT external_id FROM identities WHERE user_id = $2 AND provider_type = 'local-userpass')",
        )
        .bind(app_id)
        .bind(user_id)
        .execute(&mut *self.0)
        .await?;
        let n = sqlx::query("DELETE FROM users WHERE id = $1 AND app_id = $2")
            .bind(user_id)
            .bind(app_id)
            .execute(&mut *self.0)
            .await?
            .rows_affected();
        Ok(n > 0)
    }

    async fn identity_owner(
        &mut self,
        app_id: &str,
        provider_type: &str,
        external_id: &str,
    ) -> StoreResult<Option<String>> {
        Ok(identity_owner(self.0, app_id, provider_type, external_id).await?)
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
        )
        .await?)
    }

    async fn identities(&mut self, user_id: &str) -> StoreResult<Vec<IdentityRow>> {
        Ok(identities(self.0, user_id).await?)
    }

    async fn account(
        &mut self,
        app_id: &str,
        email: &str,
        lock: RowLock,
    ) -> StoreResult<Option<UserpassRow>> {
        Ok(userpass(self.0, app_id, email, lock).await?)
    }

    async fn api_key_disabled(
        &mut self,
        app_id: &str,
        key_id: &str,
        user_id: &str,
    ) -> StoreResult<Option<bool>> {
        Ok(sqlx::query_scalar(
            "SELECT disabled FROM api_keys WHERE id = $1 AND user_id = $2 AND app_id = $3 FOR SHARE",
        )
        .bind(key_id)
        .bind(user_id)
        .bind(app_id)
        .fetch_optional(&mut *self.0)
        .await?)
    }

    async fn email_code(&mut self, app_id: &str, email: &str) -> StoreResult<Option<StoredCode>> {
        Ok(sqlx::query(
            "SELECT code_mac, expires_at, attempts_left FROM email_otp_codes
             WHERE app_id = $1 AND email = $2 FOR UPDATE",
        )
        .bind(app_id)
        .bind(email)
        .fetch_optional(&mut *self.0)
        .await?
        .map(|r| {
            Ok::<_, sqlx::Error>(StoredCode {
                mac: r.try_get(0)?,
                expires_at: r.try_get(1)?,
                attempts_left: r.try_get(2)?,
            })
        })
        .transpose()?)
    }

    async fn set_code_attempts(&mut self, app_id: &str, email: &str, left: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE email_otp_codes SET attempts_left = $3 WHERE app_id = $1 AND email = $2",
        )
        .bind(app_id)
        .bind(email)
        .bind(left)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn delete_code(&mut self, app_id: &str, email: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM email_otp_codes WHERE app_id = $1 AND email = $2")
            .bind(app_id)
            .bind(email)
            .execute(&mut *self.0)
            .await?;
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
        let n = sqlx::query(
            "INSERT INTO userpass (app_id, email, identity_id, password_hash, confirmed, created_at)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (app_id, email) DO NOTHING",
        )
        .bind(app_id)
        .bind(email)
        .bind(identity_id)
        .bind(password_hash)
        .bind(confirmed)
        .bind(now)
        .execute(&mut *self.0)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn set_confirmed(&mut self, app_id: &str, email: &str) -> StoreResult<()> {
        sqlx::query("UPDATE userpass SET confirmed = TRUE WHERE app_id = $1 AND email = $2")
            .bind(app_id)
            .bind(email)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn set_account_password(
        &mut self,
        app_id: &str,
        email: &str,
        password_hash: &str,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE userpass SET password_hash = $1 WHERE app_id = $2 AND email = $3")
            .bind(password_hash)
            .bind(app_id)
            .bind(email)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn store_mail_token(
        &mut self,
        app_id: &str,
        email: &str,
        token: &MailToken,
    ) -> StoreResult<()> {
        Ok(store_mail_token(self.0, app_id, email, token).await?)
    }

    async fn take_mail_token(
        &mut self,
        app_id: &str,
        kind: &str,
        token: &str,
        token_id: &str,
        now: i64,
    ) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "DELETE FROM userpass_tokens
             WHERE token_id = $1 AND app_id = $2 AND kind = $3 AND token_hash = $4 AND expires_at > $5
             RETURNING email",
        )
        .bind(token_id)
        .bind(app_id)
        .bind(kind)
        .bind(tokens::sha256_hex(token))
        .bind(now)
        .fetch_optional(&mut *self.0)
        .await?)
    }

    async fn delete_mail_tokens(
        &mut self,
        app_id: &str,
        email: &str,
        kind: &str,
    ) -> StoreResult<()> {
        sqlx::query("DELETE FROM userpass_tokens WHERE app_id = $1 AND email = $2 AND kind = $3")
            .bind(app_id)
            .bind(email)
            .bind(kind)
            .execute(&mut *self.0)
            .await?;
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
        let n = sqlx::query(
            "INSERT INTO api_keys (id, app_id, user_id, name, key_hash, created_at) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (user_id, name) DO NOTHING",
        )
        .bind(&key.id)
        .bind(app_id)
        .bind(user_id)
        .bind(&key.name)
        .bind(key_hash)
        .bind(now)
        .execute(&mut *self.0)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn delete_api_key(&mut self, user_id: &str, id: &str) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "DELETE FROM api_keys WHERE id = $1 AND user_id = $2 RETURNING app_id",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(&mut *self.0)
        .await?)
    }

    async fn set_api_key_disabled(
        &mut self,
        user_id: &str,
        id: &str,
        disabled: bool,
    ) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "UPDATE api_keys SET disabled = $1 WHERE id = $2 AND user_id = $3 RETURNING app_id",
        )
        .bind(disabled)
        .bind(id)
        .bind(user_id)
        .fetch_optional(&mut *self.0)
        .await?)
    }

    async fn revoke_api_key_sessions(&mut self, id: &str) -> StoreResult<u64> {
        Ok(
            sqlx::query("UPDATE sessions SET revoked = TRUE WHERE api_key_id = $1 AND NOT revoked")
                .bind(id)
                .execute(&mut *self.0)
                .await?
                .rows_affected(),
        )
    }

    async fn delete_identity(
        &mut self,
        user_id: &str,
        provider_type: &str,
        external_id: &str,
    ) -> StoreResult<()> {
        sqlx::query(
            "DELETE FROM identities WHERE provider_type = $1 AND external_id = $2 AND user_id = $3",
        )
        .bind(provider_type)
        .bind(external_id)
        .bind(user_id)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn insert_session(
        &mut self,
        app_id: &str,
        user_id: &str,
        s: &NewSession,
        now: i64,
    ) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id, app_id, user_id, device_id, created_at, last_used_at, expires_at, api_key_id, provider_type, device, ip, jkt)
             VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&s.id)
        .bind(app_id)
        .bind(user_id)
        .bind(&s.device_id)
        .bind(now)
        .bind(s.expires_at)
        .bind(&s.api_key_id)
        .bind(&s.provider_type)
        .bind(&s.device)
        .bind(&s.ip)
        .bind(&s.jkt)
        .execute(&mut *self.0)
        .await?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES ($1, $2, $3)",
        )
        .bind(tokens::sha256_hex(&s.refresh_token))
        .bind(&s.id)
        .bind(now)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn token_session(&mut self, token_hash: &str) -> StoreResult<Option<TokenSession>> {
        // One statement finds the session and locks it (a refresh is a few round trips to the
        // database: each one counts).
        let row = sqlx::query(
            "SELECT s.id, s.user_id, s.device_id, s.last_used_at, s.expires_at, s.revoked,
                    s.api_key_id, t.superseded_at, t.generation, s.prune_from, s.jkt
             FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id
             WHERE t.token_hash = $1 FOR UPDATE OF s",
        )
        .bind(token_hash)
        .fetch_optional(&mut *self.0)
        .await?;
        let Some(r) = row else {
            return Ok(None);
        };
        Ok(Some(TokenSession {
            session: SessionRow {
                id: r.try_get(0)?,
                user_id: r.try_get(1)?,
                device_id: r.try_get(2)?,
                last_used_at: r.try_get(3)?,
                expires_at: r.try_get(4)?,
                revoked: r.try_get(5)?,
                api_key_id: r.try_get(6)?,
                jkt: r.try_get(10)?,
            },
            token: PresentedToken {
                superseded_at: r.try_get(7)?,
                generation: r.try_get(8)?,
            },
            prune_from: r.try_get(9)?,
        }))
    }

    async fn successors(
        &mut self,
        session_id: &str,
        generation: i64,
    ) -> StoreResult<Vec<Successor>> {
        Ok(successors(self.0, session_id, generation).await?)
    }

    async fn revoke_live_session(
        &mut self,
        app_id: &str,
        user_id: &str,
        session_id: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let n = sqlx::query(
            "UPDATE sessions SET revoked = TRUE
             WHERE id = $1 AND app_id = $2 AND user_id = $3 AND NOT revoked AND expires_at > $4",
        )
        .bind(session_id)
        .bind(app_id)
        .bind(user_id)
        .bind(now)
        .execute(&mut *self.0)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn revoke_sessions_but(
        &mut self,
        app_id: &str,
        user_id: &str,
        keep: Option<&str>,
    ) -> StoreResult<u64> {
        Ok(sqlx::query(
            "UPDATE sessions SET revoked = TRUE
             WHERE app_id = $1 AND user_id = $2 AND NOT revoked AND id IS DISTINCT FROM $3",
        )
        .bind(app_id)
        .bind(user_id)
        .bind(keep)
        .execute(&mut *self.0)
        .await?
        .rows_affected())
    }

    async fn session_jkt(&mut self, session_id: &str) -> StoreResult<Option<Option<String>>> {
        Ok(sqlx::query_scalar("SELECT jkt FROM sessions WHERE id = $1")
            .bind(session_id)
            .fetch_optional(&mut *self.0)
            .await?)
    }

    async fn bind_session(&mut self, session_id: &str, jkt: &str) -> StoreResult<()> {
        sqlx::query("UPDATE sessions SET jkt = $2 WHERE id = $1")
            .bind(session_id)
            .bind(jkt)
            .execute(&mut *self.0)
            .await?;
        Ok(())
    }

    async fn revoke_session(&mut self, session_id: &str, user_id: &str) -> StoreResult<bool> {
        let n = sqlx::query(
            "UPDATE sessions SET revoked = TRUE WHERE id = $1 AND user_id = $2 AND NOT revoked",
        )
        .bind(session_id)
        .bind(user_id)
        .execute(&mut *self.0)
        .await?
        .rows_affected();
        Ok(n > 0)
    }

    async fn mark_used(&mut self, token_hash: &str, now: i64) -> StoreResult<()> {
        sqlx::query(
            "UPDATE refresh_tokens SET used_at = $1 WHERE token_hash = $2 AND used_at IS NULL",
        )
        .bind(now)
        .bind(token_hash)
        .execute(&mut *self.0)
        .await?;
        Ok(())
    }

    async fn refresh(
        &mut self,
        p: &PresentedRefresh,
        session_id: &str,
        generation: i64,
        prune_from: i64,
        next: Option<&str>,
        only_if_first: bool,
    ) -> StoreResult<bool> {
        Ok(refresh_statement(
            self.0,
            p,
            session_id,
            generation,
            prune_from,
            next,
            only_if_first,
        )
        .await?)
    }

    async fn insert_event(&mut self, event: &Event) -> StoreResult<()> {
        Ok(insert_event(self.0, event).await?)
    }

    async fn lock_import(&mut self, names: &[String]) -> StoreResult<()> {
        let mut keys: Vec<i64> = names
            .iter()
            .map(|name| {
                let h = tokens::sha256_hex(name);
                i64::from_str_radix(&h[..15], 16).unwrap_or(0)
            })
            .collect();
        keys.sort_unstable();
        keys.dedup();
        for k in keys {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(k)
                .execute(&mut *self.0)
                .await?;
        }
        Ok(())
    }

    async fn import_write(
        &mut self,
        app_id: &str,
        user_id: &str,
        write: &Write,
        now: i64,
    ) -> StoreResult<bool> {
        let c = &mut *self.0;
        let n = match write {
            Write::DeleteAccount { email } => {
                sqlx::query("DELETE FROM userpass WHERE app_id = $1 AND email = $2")
                    .bind(app_id)
                    .bind(email)
                    .execute(&mut *c)
                    .await?;
                sqlx::query("DELETE FROM userpass_tokens WHERE app_id = $1 AND email = $2")
                    .bind(app_id)
                    .bind(email)
                    .execute(&mut *c)
                    .await?;
                1
            }
            Write::InsertUser {
                created_at,
                disabled,
                custom_data,
            } => sqlx::query(
                "INSERT INTO users (id, app_id, created_at, last_login_at, disabled, anonymous, custom_data)
                 VALUES ($1, $2, $3, $3, $4, FALSE, $5) ON CONFLICT (id) DO NOTHING",
            )
            .bind(user_id)
            .bind(app_id)
            .bind(created_at)
            .bind(disabled)
            .bind(custom_data)
            .execute(&mut *c)
            .await?
            .rows_affected(),
            Write::UpdateUser {
                created_at,
                disabled,
                custom_data,
            } => {
                sqlx::query(
                    "UPDATE users SET created_at = $2, disabled = $3, custom_data = $4, anonymous = FALSE WHERE id = $1",
                )
                .bind(user_id)
                .bind(created_at)
                .bind(disabled)
                .bind(custom_data)
                .execute(&mut *c)
                .await?;
                1
            }
            Write::RevokeSessions => {
                revoke_user_sessions(c, user_id).await?;
                1
            }
            Write::InsertIdentity {
                provider_type,
                external_id,
                data,
            } => sqlx::query(
                "INSERT INTO identities (app_id, provider_type, external_id, user_id, data, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
            )
            .bind(app_id)
            .bind(provider_type)
            .bind(external_id)
            .bind(user_id)
            .bind(Value::Object(data.clone()).to_string())
            .bind(now)
            .execute(&mut *c)
            .await?
            .rows_affected(),
            Write::UpdateIdentity {
                provider_type,
                external_id,
                data,
            } => {
                sqlx::query(
                    "UPDATE identities SET data = $4 WHERE app_id = $1 AND provider_type = $2 AND external_id = $3",
                )
                .bind(app_id)
                .bind(provider_type)
                .bind(external_id)
                .bind(Value::Object(data.clone()).to_string())
                .execute(&mut *c)
                .await?;
                1
            }
            Write::InsertAccount {
                email,
                identity_id,
                password,
            } => sqlx::query(
                "INSERT INTO userpass (app_id, email, identity_id, password_hash, confirmed, created_at)
                 VALUES ($1, $2, $3, $4, TRUE, $5) ON CONFLICT DO NOTHING",
            )
            .bind(app_id)
            .bind(email)
            .bind(identity_id)
            .bind(password)
            .bind(now)
            .execute(&mut *c)
            .await?
            .rows_affected(),
            Write::UpdateAccount { email, password } => {
                sqlx::query(
                    "UPDATE userpass SET password_hash = $3, confirmed = TRUE WHERE app_id = $1 AND email = $2",
                )
                .bind(app_id)
                .bind(email)
                .bind(password)
                .execute(&mut *c)
                .await?;
                1
            }
        };
        Ok(n > 0)
    }
}

impl PostgresStore {
    /// Deletes the user (`None`) or applies `change` to it ([`users`]), in one transaction;
    /// whether it exists.
    async fn change(
        &self,
        app_id: &str,
        user_id: &str,
        change: Option<UserChange>,
    ) -> StoreResult<bool> {
        let audit = audit::context();
        let mut tx = self.begin().await?;
        let t = &mut PgTx(&mut tx);
        let found = match change {
            None => users::delete_user(t, app_id, user_id, audit).await?,
            Some(c) => users::change_user(t, app_id, user_id, c, audit).await?,
        };
        tx.commit().await?;
        Ok(found)
    }

    async fn begin(&self) -> Result<sqlx::Transaction<'static, Postgres>, sqlx::Error> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.pool.begin().await
    }
}

/// A key for `pg_advisory_xact_lock` that serializes the signing-key changes of one app.
fn key_lock(app_id: &str) -> i64 {
    let h = tokens::sha256_hex(&format!("signing_keys/{app_id}"));
    i64::from_str_radix(&h[..15], 16).unwrap_or(0)
}

#[async_trait::async_trait]
impl Store for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn stats(&self) -> StoreStats {
        use std::sync::atomic::Ordering::Relaxed;
        let writes = self.writes.load(Relaxed);
        let open = u64::from(self.pool.size());
        let idle = self.pool.num_idle() as u64;
        StoreStats {
            backend: "postgres",
            writes,
            commits: writes,
            connections_in_use: open.saturating_sub(idle),
            connections_idle: idle,
            connections_max: u64::from(self.max_connections),
        }
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn meta_get_or_insert(&self, key: &str, value: String) -> StoreResult<String> {
        // The first insert wins; everyone (this instance included) reads the winner.
        sqlx::query("INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
            .bind(key)
            .bind(&value)
            .execute(&self.pool)
            .await?;
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn meta_get(&self, key: &str) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn meta_set(&self, key: &str, value: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn meta_with_prefix(&self, prefix: &str) -> StoreResult<Vec<(String, String)>> {
        let rows = sqlx::query(
            "SELECT key, value FROM meta WHERE left(key, length($1)) = $1 ORDER BY key",
        )
        .bind(prefix)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }

    async fn signing_keys(&self, app_id: &str) -> StoreResult<Vec<SigningKeyRow>> {
        let rows = sqlx::query(
            "SELECT kid, alg, private_pem, public_jwk, created_at, retired_at FROM signing_keys
             WHERE app_id = $1 ORDER BY created_at DESC, seq DESC",
        )
        .bind(app_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(SigningKeyRow {
                    kid: r.try_get(0)?,
                    alg: r.try_get(1)?,
                    private_pem: r.try_get(2)?,
                    public_jwk: r.try_get(3)?,
                    created_at: r.try_get(4)?,
                    retired_at: r.try_get(5)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?)
    }

    async fn add_signing_key(
        &self,
        app_id: &str,
        only_if_alg_differs: Option<&'static str>,
        make: Box<dyn FnOnce() -> Result<SigningKeyRow, String> + Send>,
        now: i64,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        // Two instances starting together on an empty database make one key: the second
        // waits here, then sees the first one's key.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(key_lock(app_id))
            .execute(&mut *tx)
            .await?;
        if let Some(alg) = only_if_alg_differs {
            let active: Option<String> = sqlx::query_scalar(
                "SELECT alg FROM signing_keys WHERE app_id = $1 AND retired_at IS NULL",
            )
            .bind(app_id)
            .fetch_optional(&mut *tx)
            .await?;
            if active.as_deref() == Some(alg) {
                return Ok(false);
            }
        }
        let key = make().map_err(|e| {
            tracing::error!("cannot make a signing key: {e}");
            ApiError::internal()
        })?;
        sqlx::query(
            "UPDATE signing_keys SET retired_at = $2 WHERE app_id = $1 AND retired_at IS NULL",
        )
        .bind(app_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, app_id, alg, private_pem, public_jwk, created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.kid)
        .bind(app_id)
        .bind(&key.alg)
        .bind(&key.private_pem)
        .bind(&key.public_jwk)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let event = Event::new(app_id, kind::SIGNING_KEY_ADDED)
            .at(now)
            .detail(json!({"kid": key.kid, "alg": key.alg}));
        insert_event(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn login(&self, login: Login, start: StartSession) -> StoreResult<(UserRow, NewSession)> {
        let audit = audit::context();
        let mut tx = self.begin().await?;
        let out = login::login(&mut PgTx(&mut tx), login, start, audit).await?;
        // A refused code's spent attempt (or the removal of an expired code) is kept.
        tx.commit().await?;
        out
    }

    async fn import_users(
        &self,
        app_id: &str,
        users: Vec<ImportUser>,
        dry_run: bool,
        now: i64,
    ) -> StoreResult<Vec<Result<Imported, String>>> {
        let mut out = Vec::with_capacity(users.len());
        if dry_run {
            // One transaction, a savepoint a line, never committed.
            let mut outer = self.begin().await?;
            for u in &users {
                let mut line = sqlx::Connection::begin(&mut *outer).await?;
                let result = import::import_line(&mut PgTx(&mut line), app_id, u, now).await?;
                if result.is_ok() {
                    line.commit().await?;
                }
                out.push(result);
            }
            return Ok(out);
        }
        for u in &users {
            let mut tx = self.begin().await?;
            // A line's commit need not wait for its WAL to reach the disk (the cost of most of
            // a line): an import is idempotent, so lines a crash loses are imported again by
            // running the file again, and what was committed is never half there. Only this
            // transaction is affected (LOCAL); logins keep synchronous commits.
            sqlx::query("SET LOCAL synchronous_commit TO OFF")
                .execute(&mut *tx)
                .await?;
            let result = import::import_line(&mut PgTx(&mut tx), app_id, u, now).await?;
            if result.is_ok() {
                tx.commit().await?;
            }
            out.push(result);
        }
        Ok(out)
    }

    async fn upgrade_password(
        &self,
        app_id: &str,
        email: &str,
        old: &str,
        new: &str,
    ) -> StoreResult<bool> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let n = sqlx::query(
            "UPDATE userpass SET password_hash = $4 WHERE app_id = $1 AND email = $2 AND password_hash = $3",
        )
        .bind(app_id)
        .bind(email)
        .bind(old)
        .bind(new)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    async fn user(&self, app_id: &str, user_id: &str) -> StoreResult<Option<UserRow>> {
        let mut c = self.pool.acquire().await?;
        Ok(user(&mut c, app_id, user_id).await?)
    }

    async fn identities(&self, user_id: &str) -> StoreResult<Vec<IdentityRow>> {
        let mut c = self.pool.acquire().await?;
        Ok(identities(&mut c, user_id).await?)
    }

    async fn users(&self, app_id: &str) -> StoreResult<Vec<(UserRow, Vec<IdentityRow>)>> {
        let mut c = self.pool.acquire().await?;
        let rows = sqlx::query(
            "SELECT id, app_id, created_at, last_login_at, disabled, anonymous, custom_data \
             FROM users WHERE app_id = $1 ORDER BY created_at, seq",
        )
        .bind(app_id)
        .fetch_all(&mut *c)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let u = user_row(r)?;
            let ids = identities(&mut c, &u.id).await?;
            out.push((u, ids));
        }
        Ok(out)
    }

    async fn export_users(
        &self,
        app_id: &str,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<ExportUser>> {
        // One snapshot per page: a user and its identities and account as of one moment.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        // `>` and ORDER BY use one collation (the column's), so the pages follow each other
        // whatever it is; every id sorts after "" (ids are never empty).
        let rows = sqlx::query(
            "SELECT id, app_id, created_at, last_login_at, disabled, anonymous, custom_data \
             FROM users WHERE app_id = $1 AND id > $2 ORDER BY id LIMIT $3",
        )
        .bind(app_id)
        .bind(after.unwrap_or(""))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?;
        let users = rows.iter().map(user_row).collect::<Result<Vec<_>, _>>()?;
        // The page's identities and accounts in one query each, not one round trip per user
        // (300,000 users: 23 s that way).
        let ids: Vec<&str> = users.iter().map(|u| u.id.as_str()).collect();
        let mut by_user: std::collections::HashMap<String, Vec<IdentityRow>> =
            std::collections::HashMap::with_capacity(users.len());
        for r in sqlx::query(
            "SELECT user_id, provider_type, external_id, data FROM identities \
             WHERE user_id = ANY($1) ORDER BY created_at, seq",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?
        {
            let data: String = r.try_get(3)?;
            by_user.entry(r.try_get(0)?).or_default().push(IdentityRow {
                provider_type: r.try_get(1)?,
                external_id: r.try_get(2)?,
                data: match serde_json::from_str(&data) {
                    Ok(Value::Object(m)) => m,
                    _ => Map::new(),
                },
            });
        }
        let mut out: Vec<ExportUser> = users
            .into_iter()
            .map(|user| ExportUser {
                identities: by_user.remove(&user.id).unwrap_or_default(),
                user,
                account: None,
            })
            .collect();
        let emails: Vec<&str> = out
            .iter()
            .filter_map(|u| super::userpass_identity(&u.identities).map(|(_, e)| e))
            .collect();
        if !emails.is_empty() {
            let mut accounts: std::collections::HashMap<String, UserpassRow> = sqlx::query(
                "SELECT email, identity_id, password_hash, confirmed FROM userpass \
                 WHERE app_id = $1 AND email = ANY($2)",
            )
            .bind(app_id)
            .bind(&emails)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(|r| {
                Ok(UserpassRow {
                    email: r.try_get(0)?,
                    identity_id: r.try_get(1)?,
                    password_hash: r.try_get(2)?,
                    confirmed: r.try_get(3)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?
            .into_iter()
            .map(|a| (a.email.clone(), a))
            .collect();
            for u in &mut out {
                if let Some((id, email)) = super::userpass_identity(&u.identities) {
                    u.account = accounts.remove(email).filter(|a| a.identity_id == id);
                }
            }
        }
        tx.commit().await?;
        Ok(out)
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
        let rows = sqlx::query(
            "SELECT s.id, s.created_at, s.last_used_at, s.provider_type, s.device, s.ip, k.id, k.name
             FROM sessions s LEFT JOIN api_keys k ON k.id = s.api_key_id
             WHERE s.app_id = $1 AND s.user_id = $2 AND NOT s.revoked AND s.expires_at > $3
             ORDER BY s.created_at, s.id",
        )
        .bind(app_id)
        .bind(user_id)
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(SessionInfo {
                id: r.try_get(0)?,
                created_at: r.try_get(1)?,
                last_used_at: r.try_get(2)?,
                provider_type: r.try_get(3)?,
                device: r.try_get(4)?,
                ip: r.try_get(5)?,
                api_key: match (r.try_get::<Option<String>, _>(6)?, r.try_get(7)?) {
                    (Some(id), Some(name)) => Some((id, name)),
                    _ => None,
                },
            });
        }
        Ok(out)
    }

    async fn revoke_user_session(
        &self,
        app_id: &str,
        user_id: &str,
        session_id: &str,
        now: i64,
    ) -> StoreResult<bool> {
        let audit = audit::context();
        let mut tx = self.begin().await?;
        let t = &mut PgTx(&mut tx);
        let revoked =
            users::revoke_user_session(t, app_id, user_id, session_id, now, audit).await?;
        tx.commit().await?;
        Ok(revoked)
    }

    async fn revoke_sessions_but(
        &self,
        app_id: &str,
        user_id: &str,
        keep: Option<&str>,
    ) -> StoreResult<usize> {
        let audit = audit::context();
        let mut tx = self.begin().await?;
        let n =
            users::revoke_sessions_but(&mut PgTx(&mut tx), app_id, user_id, keep, audit).await?;
        tx.commit().await?;
        Ok(n as usize)
    }

    async fn session_live(&self, session_id: &str, now: i64) -> StoreResult<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sessions WHERE id = $1 AND NOT revoked AND expires_at > $2)",
        )
        .bind(session_id)
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    async fn remember_proof(&self, replay_key: &str, until: i64) -> StoreResult<bool> {
        let n = sqlx::query(
            "INSERT INTO dpop_proofs (replay_key, expires_at) VALUES ($1, $2) ON CONFLICT DO NOTHING",
        )
        .bind(replay_key)
        .bind(until)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(n == 1)
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
        let mut tx = self.begin().await?;
        let out =
            refresh::use_refresh_token(&mut PgTx(&mut tx), &presented, purpose, audit).await?;
        // A reuse revokes the session, kept though the call fails.
        tx.commit().await?;
        out
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
        let mut tx = self.begin().await?;
        let out = api_keys::create_api_key(
            &mut PgTx(&mut tx),
            app_id,
            user_id,
            key,
            key_hash,
            now,
            audit,
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn api_keys(&self, user_id: &str) -> StoreResult<Vec<ApiKeyRow>> {
        let rows = sqlx::query(
            "SELECT id, user_id, name, disabled FROM api_keys WHERE user_id = $1 ORDER BY created_at, seq",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(api_key_row)
            .collect::<Result<_, sqlx::Error>>()?)
    }

    async fn api_key(&self, user_id: &str, id: &str) -> StoreResult<Option<ApiKeyRow>> {
        Ok(sqlx::query(
            "SELECT id, user_id, name, disabled FROM api_keys WHERE id = $1 AND user_id = $2",
        )
        .bind(id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| api_key_row(&r))
        .transpose()?)
    }

    async fn api_key_by_hash(
        &self,
        app_id: &str,
        key_hash: &str,
    ) -> StoreResult<Option<ApiKeyRow>> {
        Ok(sqlx::query(
            "SELECT id, user_id, name, disabled FROM api_keys WHERE key_hash = $1 AND app_id = $2",
        )
        .bind(key_hash)
        .bind(app_id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| api_key_row(&r))
        .transpose()?)
    }

    async fn delete_api_key(&self, user_id: &str, id: &str) -> StoreResult<bool> {
        let audit = audit::context();
        let mut tx = self.begin().await?;
        let out = api_keys::delete_api_key(&mut PgTx(&mut tx), user_id, id, audit).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn set_api_key_disabled(
        &self,
        user_id: &str,
        id: &str,
        disabled: bool,
    ) -> StoreResult<bool> {
        let audit = audit::context();
        let mut tx = self.begin().await?;
        let out = api_keys::set_api_key_disabled(&mut PgTx(&mut tx), user_id, id, disabled, audit)
            .await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn userpass(&self, app_id: &str, email: &str) -> StoreResult<Option<UserpassRow>> {
        let mut c = self.pool.acquire().await?;
        Ok(userpass(&mut c, app_id, email, RowLock::None).await?)
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
        let mut tx = self.begin().await?;
        let out = accounts::register(
            &mut PgTx(&mut tx),
            app_id,
            email,
            password_hash,
            confirm.as_ref(),
            now,
            audit,
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn create_confirmed_user(
        &self,
        app_id: &str,
        email: &str,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<(UserRow, Vec<IdentityRow>)> {
        let audit = audit::context();
        let mut tx = self.begin().await?;
        let out = accounts::create_confirmed_user(
            &mut PgTx(&mut tx),
            app_id,
            email,
            password_hash,
            now,
            audit,
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn issue_mail_token(
        &self,
        app_id: &str,
        email: &str,
        token: MailToken,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        accounts::issue_mail_token(&mut PgTx(&mut tx), app_id, email, &token).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn reset_token_hash(
        &self,
        app_id: &str,
        token_id: &str,
        now: i64,
    ) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT token_hash FROM userpass_tokens WHERE token_id = $1 AND app_id = $2 AND kind = 'reset' AND expires_at > $3",
        )
        .bind(token_id)
        .bind(app_id)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn confirm(
        &self,
        app_id: &str,
        token: &str,
        token_id: &str,
        now: i64,
    ) -> StoreResult<()> {
        let audit = audit::context();
        let mut tx = self.begin().await?;
        let out =
            accounts::confirm(&mut PgTx(&mut tx), app_id, token, token_id, now, audit).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn set_password(
        &self,
        app_id: &str,
        account: PasswordAccount<'_>,
        password_hash: &str,
        now: i64,
    ) -> StoreResult<()> {
        let audit = audit::context();
        let mut tx = self.begin().await?;
        let out = accounts::set_password(
            &mut PgTx(&mut tx),
            app_id,
            account,
            password_hash,
            now,
            audit,
        )
        .await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn issue_email_otp(
        &self,
        app_id: &str,
        email: &str,
        code: EmailOtpCode,
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        // Waits for a login holding the address's code (FOR UPDATE), then replaces it.
        sqlx::query(
            "INSERT INTO email_otp_codes (app_id, email, code_mac, created_at, expires_at, attempts_left)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (app_id, email) DO UPDATE SET code_mac = excluded.code_mac,
               created_at = excluded.created_at, expires_at = excluded.expires_at,
               attempts_left = excluded.attempts_left",
        )
        .bind(app_id)
        .bind(email)
        .bind(&code.mac)
        .bind(code.created_at)
        .bind(code.expires_at)
        .bind(code.attempts)
        .execute(&mut *tx)
        .await?;
        // The older codes' mails: a dead code is not sent, nor kept in clear.
        sqlx::query(
            "UPDATE outbox SET token = '',
               error = CASE WHEN status = 'pending' THEN $3 ELSE error END,
               status = CASE WHEN status = 'pending' THEN 'failed' ELSE status END
             WHERE app_id = $1 AND email = $2 AND kind = 'email-otp' AND token <> ''",
        )
        .bind(app_id)
        .bind(email)
        .bind(CODE_REPLACED)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO outbox (app_id, kind, email, token, token_id, created_at, next_at, expires_at)
             VALUES ($1, 'email-otp', $2, $3, $4, $5, $5, $6)",
        )
        .bind(app_id)
        .bind(email)
        .bind(&code.code)
        .bind(&code.mail_id)
        .bind(code.created_at)
        .bind(code.expires_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn outbox(&self, app_id: &str, email: Option<&str>) -> StoreResult<Vec<OutboxRow>> {
        let rows = sqlx::query(
            "SELECT kind, email, token, token_id FROM outbox
             WHERE app_id = $1 AND ($2::text IS NULL OR email = $2) ORDER BY seq",
        )
        .bind(app_id)
        .bind(email)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(OutboxRow {
                    kind: r.try_get(0)?,
                    email: r.try_get(1)?,
                    token: r.try_get(2)?,
                    token_id: r.try_get(3)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?)
    }

    async fn claim_mail(
        &self,
        now: i64,
        lease_secs: i64,
        limit: i64,
    ) -> StoreResult<Vec<QueuedMail>> {
        // SKIP LOCKED: instances claiming at the same time take different mails; the lease
        // (next_at) keeps a claimed mail from the others after this transaction commits.
        let rows = sqlx::query(
            "UPDATE outbox SET next_at = $1 + $2, attempts = attempts + 1
             WHERE seq IN (SELECT seq FROM outbox WHERE status = 'pending' AND next_at <= $1
                           ORDER BY next_at, seq LIMIT $3 FOR UPDATE SKIP LOCKED)
             RETURNING seq, app_id, kind, email, token, token_id, created_at, expires_at, attempts",
        )
        .bind(now)
        .bind(lease_secs)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(QueuedMail {
                    seq: r.try_get(0)?,
                    app_id: r.try_get(1)?,
                    kind: r.try_get(2)?,
                    email: r.try_get(3)?,
                    token: r.try_get(4)?,
                    token_id: r.try_get(5)?,
                    created_at: r.try_get(6)?,
                    expires_at: r.try_get(7)?,
                    attempts: r.try_get(8)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        out.sort_by_key(|m| m.seq);
        Ok(out)
    }

    async fn mail_outcome(&self, seq: i64, outcome: MailOutcome) -> StoreResult<()> {
        let q = match &outcome {
            MailOutcome::Sent(at) => sqlx::query(
                "UPDATE outbox SET status = 'sent', sent_at = $2, token = '', error = NULL WHERE seq = $1",
            )
            .bind(seq)
            .bind(*at),
            MailOutcome::RetryAt(at, why) => sqlx::query(
                "UPDATE outbox SET next_at = $2, error = $3 WHERE seq = $1 AND status = 'pending'",
            )
            .bind(seq)
            .bind(*at)
            .bind(why),
            MailOutcome::Failed(why) => {
                sqlx::query("UPDATE outbox SET status = 'failed', error = $2 WHERE seq = $1")
                    .bind(seq)
                    .bind(why)
            }
        };
        let done = match &outcome {
            MailOutcome::Sent(at) => Some((kind::MAIL_SENT, Some(*at))),
            MailOutcome::Failed(_) => Some((kind::MAIL_FAILED, None)),
            MailOutcome::RetryAt(..) => None,
        };
        let Some((event_kind, at)) = done else {
            q.execute(&self.pool).await?;
            return Ok(());
        };
        let mut tx = self.begin().await?;
        let mail = sqlx::query(
            "SELECT app_id, kind, attempts FROM outbox WHERE seq = $1 AND status = 'pending' FOR UPDATE",
        )
        .bind(seq)
        .fetch_optional(&mut *tx)
        .await?;
        q.execute(&mut *tx).await?;
        if let Some(r) = mail {
            let (app_id, mail_kind, attempts): (String, String, i64) =
                (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            let mut event = Event::new(&app_id, event_kind)
                .detail(json!({"mail": mail_kind, "seq": seq, "attempts": attempts}));
            if let Some(at) = at {
                event = event.at(at);
            }
            insert_event(&mut tx, &event).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn record_events(&self, events: Vec<Event>) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for e in &events {
            insert_event(&mut tx, e).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn audit_events(&self, filter: audit::Filter) -> StoreResult<Vec<Event>> {
        // Two statements, so that a generic plan still reads the (app_id, user_id, seq)
        // index for a user's events, and the (app_id, seq) one otherwise.
        let rows = sqlx::query(if filter.user_id.is_some() {
            "SELECT seq, at, app_id, kind, user_id, session_id, ip, user_agent, actor, detail
             FROM audit_events
             WHERE app_id = $1 AND user_id = $3 AND seq > $2
               AND ($4::bigint IS NULL OR at >= $4) AND ($5::bigint IS NULL OR at < $5)
               AND (cardinality($6::text[]) = 0 OR kind = ANY($6))
             ORDER BY seq LIMIT $7"
        } else {
            "SELECT seq, at, app_id, kind, user_id, session_id, ip, user_agent, actor, detail
             FROM audit_events
             WHERE app_id = $1 AND seq > $2 AND $3::text IS NULL
               AND ($4::bigint IS NULL OR at >= $4) AND ($5::bigint IS NULL OR at < $5)
               AND (cardinality($6::text[]) = 0 OR kind = ANY($6))
             ORDER BY seq LIMIT $7"
        })
        .bind(&filter.app_id)
        .bind(filter.after.unwrap_or(0))
        .bind(&filter.user_id)
        .bind(filter.since)
        .bind(filter.until)
        .bind(&filter.kinds)
        .bind(filter.limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let detail: Option<String> = r.try_get(9)?;
            out.push(Event {
                seq: r.try_get(0)?,
                at: r.try_get(1)?,
                app_id: r.try_get(2)?,
                kind: r.try_get(3)?,
                user_id: r.try_get(4)?,
                session_id: r.try_get(5)?,
                ip: r.try_get(6)?,
                user_agent: r.try_get(7)?,
                actor: r.try_get(8)?,
                detail: detail
                    .and_then(|d| serde_json::from_str(&d).ok())
                    .unwrap_or(Value::Null),
                outbox: Default::default(),
            });
        }
        Ok(out)
    }

    async fn prune_events(&self, before: i64, limit: i64) -> StoreResult<u64> {
        Ok(sqlx::query(
            "DELETE FROM audit_events WHERE seq IN (
               SELECT seq FROM audit_events WHERE at < $1 ORDER BY seq LIMIT $2)",
        )
        .bind(before)
        .bind(limit)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    async fn mail_queue_depth(&self) -> StoreResult<(u64, u64)> {
        let row = sqlx::query(
            "SELECT COUNT(*) FILTER (WHERE status = 'pending'), COUNT(*) FILTER (WHERE status = 'failed') FROM outbox",
        )
        .fetch_one(&self.pool)
        .await?;
        let (pending, failed): (i64, i64) = (row.try_get(0)?, row.try_get(1)?);
        Ok((pending as u64, failed as u64))
    }

    async fn mail_queue(&self, app_id: &str) -> StoreResult<Vec<MailRow>> {
        let rows = sqlx::query("SELECT seq, kind, email, status, attempts, created_at, next_at, sent_at, error FROM outbox WHERE app_id = $1 ORDER BY seq")
            .bind(app_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| {
                Ok(MailRow {
                    seq: r.try_get(0)?,
                    kind: r.try_get(1)?,
                    email: r.try_get(2)?,
                    status: r.try_get(3)?,
                    attempts: r.try_get(4)?,
                    created_at: r.try_get(5)?,
                    next_at: r.try_get(6)?,
                    sent_at: r.try_get(7)?,
                    error: r.try_get(8)?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()?)
    }

    async fn retry_mail(&self, app_id: &str, now: i64) -> StoreResult<usize> {
        let mut tx = self.begin().await?;
        // Mails queued before expiries were kept (0) carry a token of the usual lifetime.
        let failed = sqlx::query(
            "UPDATE outbox SET status = 'pending', attempts = 0, next_at = $1, error = NULL
             WHERE app_id = $2 AND status = 'failed' AND token <> ''
               AND (CASE WHEN expires_at = 0 THEN created_at + $3 ELSE expires_at END) > $1",
        )
        .bind(now)
        .bind(app_id)
        .bind(super::MAIL_TOKEN_LIFETIME_SECS)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let pending = sqlx::query(
            "UPDATE outbox SET next_at = $1 WHERE app_id = $2 AND status = 'pending' AND next_at > $1",
        )
        .bind(now)
        .bind(app_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok((failed + pending) as usize)
    }

    async fn sweep(&self, anon_cutoff: i64, session_cutoff: i64, now: i64) -> StoreResult<usize> {
        let mut tx = self.begin().await?;
        let n = sqlx::query("DELETE FROM users WHERE anonymous AND created_at < $1")
            .bind(anon_cutoff)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM sessions WHERE expires_at < $1")
            .bind(session_cutoff)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM outbox WHERE status = 'sent' AND sent_at < $1")
            .bind(now - super::SENT_MAIL_KEPT_SECS)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM userpass_tokens WHERE expires_at < $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM email_otp_codes WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM dpop_proofs WHERE expires_at <= $1")
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n as usize)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use sqlx::error::{DatabaseError, ErrorKind};

    use super::ApiError;

    /// A database error with only a SQLSTATE, as PostgreSQL sends one.
    #[derive(Debug)]
    struct State(&'static str);

    impl std::fmt::Display for State {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "SQLSTATE {}", self.0)
        }
    }

    impl std::error::Error for State {}

    impl DatabaseError for State {
        fn message(&self) -> &str {
            "test"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            ErrorKind::Other
        }
    }

    fn status(code: &'static str) -> u16 {
        ApiError::from(sqlx::Error::Database(Box::new(State(code))))
            .status
            .as_u16()
    }

    /// A concurrent change the database breaks (deadlock, serialization failure, a row a
    /// foreign key needs deleted meanwhile) is a retry (503), not a 500 (#22); other database
    /// errors stay 500.
    #[test]
    fn concurrent_changes_are_retried_not_internal_errors() {
        for code in ["40P01", "40001", "23503"] {
            assert_eq!(status(code), 503, "SQLSTATE {code}");
        }
        assert_eq!(status("42601"), 500);
    }
}
