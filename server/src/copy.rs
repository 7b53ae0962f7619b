//! Moving a SQLite deployment to PostgreSQL (#24; SERVER.md, "Moving to PostgreSQL"):
//! `sessionkit-server copy --to postgres://…` copies every table of the SQLite database
//! (every app's users, identities, email accounts and their tokens, API keys, sessions with
//! their refresh-token chains, signing keys, the mail queue, sign-in codes, and the server's
//! own secrets in `meta`) into an empty PostgreSQL database, so that devices logged in before
//! the move keep refreshing after it: a refresh token is checked against its stored hash with
//! the app secret, both copied as they are.
//!
//! How:
//! - The SQLite database is brought to the current schema ([`sqlite::Db::open`]), then held in
//!   SQLite's exclusive locking mode for the whole copy: a running server (or any process with
//!   the database open) makes the copy refuse at once, and no server can start on it and take
//!   writes the copy would miss. Everything is read in that one transaction.
//! - The PostgreSQL database is created when missing and migrated, then the copy is one
//!   transaction that first locks every table (`ACCESS EXCLUSIVE`: an instance started on the
//!   target meanwhile waits) and refuses a target that has any row in any of them.
//! - Each table is copied in the order its foreign keys need, [`BATCH`] rows at a time in
//!   insertion order (rowid), each batch one `INSERT … SELECT FROM UNNEST(arrays)`. The types
//!   that differ are mapped by [`TABLES`]: SQLite's 0/1 integers become booleans; times are Unix
//!   seconds (`INTEGER` and `BIGINT`) in both; there are no blobs. The mail queue keeps its
//!   `seq` (its identity sequence is moved past it); the other PostgreSQL `seq` columns (order of
//!   insertion) are made in rowid order; `sessions.prune_from` starts at 0 (a lower bound the
//!   first pruning of each session moves up).
//! - Before the commit, every table is counted in PostgreSQL and compared with SQLite's count:
//!   any difference rolls the whole copy back. The counts are returned ([`Copied`]). After the
//!   commit the tables are analyzed, so that a server started at once plans with statistics.
//! - Both schemas are checked against [`TABLES`] first: a SQLite table or column the copy does
//!   not know, or a PostgreSQL column without a default that it does not fill, stops the copy
//!   before anything is written (so a later migration cannot be forgotten here silently).

use std::path::Path;

use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags};
use sqlx::Connection as _;
use sqlx::postgres::PgConnection;

use crate::config::DatabaseUrl;
use crate::store::postgres::PostgresStore;
use crate::store::sqlite::{self, DB_FILE, SCHEMA_VERSION};

/// Rows per INSERT.
pub const BATCH: usize = 5_000;

/// A column's type, as PostgreSQL has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    /// TEXT.
    Text,
    /// BIGINT (SQLite INTEGER).
    Int,
    /// BOOLEAN (SQLite INTEGER 0 or 1).
    Bool,
}

/// A table of both schemas.
struct Table {
    name: &'static str,
    /// Every column of the SQLite table, as PostgreSQL types them.
    columns: &'static [(&'static str, Ty)],
    /// PostgreSQL columns left to their defaults (generated `seq`, `prune_from`).
    pg_only: &'static [&'static str],
    /// The first column is an identity PostgreSQL generates, copied as it is (the mail queue's
    /// `seq`): inserted with `OVERRIDING SYSTEM VALUE`, its sequence moved past it after.
    keeps_identity: bool,
}

use Ty::{Bool, Int, Text};

/// Every table, in the order the foreign keys need (users before what they own).
const TABLES: &[Table] = &[
    Table {
        name: "meta",
        columns: &[("key", Text), ("value", Text)],
        pg_only: &[],
        keeps_identity: false,
    },
    Table {
        name: "users",
        columns: &[
            ("id", Text),
            ("app_id", Text),
            ("created_at", Int),
            ("last_login_at", Int),
            ("disabled", Bool),
            ("anonymous", Bool),
            ("custom_data", Text),
        ],
        pg_only: &["seq"],
        keeps_identity: false,
    },
    Table {
        name: "identities",
        columns: &[
            ("app_id", Text),
            ("provider_type", Text),
            ("external_id", Text),
            ("user_id", Text),
            ("data", Text),
            ("created_at", Int),
        ],
        pg_only: &["seq"],
        keeps_identity: false,
    },
    Table {
        name: "userpass",
        columns: &[
            ("app_id", Text),
            ("email", Text),
            ("identity_id", Text),
            ("password_hash", Text),
            ("confirmed", Bool),
            ("created_at", Int),
        ],
        pg_only: &[],
        keeps_identity: false,
    },
    Table {
        name: "userpass_tokens",
        columns: &[
            ("token_id", Text),
            ("app_id", Text),
            ("email", Text),
            ("kind", Text),
            ("token_hash", Text),
            ("expires_at", Int),
        ],
        pg_only: &[],
        keeps_identity: false,
    },
    Table {
        name: "outbox",
        columns: &[
            ("seq", Int),
            ("app_id", Text),
            ("kind", Text),
            ("email", Text),
            ("token", Text),
            ("token_id", Text),
            ("created_at", Int),
            ("status", Text),
            ("attempts", Int),
            ("next_at", Int),
            ("expires_at", Int),
            ("error", Text),
            ("sent_at", Int),
        ],
        pg_only: &[],
        keeps_identity: true,
    },
    Table {
        name: "api_keys",
        columns: &[
            ("id", Text),
            ("app_id", Text),
            ("user_id", Text),
            ("name", Text),
            ("key_hash", Text),
            ("disabled", Bool),
            ("created_at", Int),
        ],
        pg_only: &["seq"],
        keeps_identity: false,
    },
    Table {
        name: "sessions",
        columns: &[
            ("id", Text),
            ("app_id", Text),
            ("user_id", Text),
            ("device_id", Text),
            ("created_at", Int),
            ("last_used_at", Int),
            ("expires_at", Int),
            ("revoked", Bool),
            ("api_key_id", Text),
            ("provider_type", Text),
            ("device", Text),
            ("ip", Text),
            ("jkt", Text),
        ],
        pg_only: &["prune_from"],
        keeps_identity: false,
    },
    Table {
        name: "refresh_tokens",
        columns: &[
            ("token_hash", Text),
            ("session_id", Text),
            ("issued_at", Int),
            ("superseded_at", Int),
            ("used_at", Int),
            ("generation", Int),
        ],
        pg_only: &[],
        keeps_identity: false,
    },
    Table {
        name: "signing_keys",
        columns: &[
            ("kid", Text),
            ("app_id", Text),
            ("alg", Text),
            ("private_pem", Text),
            ("public_jwk", Text),
            ("created_at", Int),
            ("retired_at", Int),
        ],
        pg_only: &["seq"],
        keeps_identity: false,
    },
    Table {
        name: "email_otp_codes",
        columns: &[
            ("app_id", Text),
            ("email", Text),
            ("code_mac", Text),
            ("created_at", Int),
            ("expires_at", Int),
            ("attempts_left", Int),
        ],
        pg_only: &[],
        keeps_identity: false,
    },
    Table {
        name: "audit_events",
        columns: &[
            ("seq", Int),
            ("at", Int),
            ("app_id", Text),
            ("kind", Text),
            ("user_id", Text),
            ("session_id", Text),
            ("ip", Text),
            ("user_agent", Text),
            ("actor", Text),
            ("detail", Text),
        ],
        pg_only: &[],
        keeps_identity: true,
    },
    Table {
        name: "dpop_proofs",
        columns: &[("replay_key", Text), ("expires_at", Int)],
        pg_only: &[],
        keeps_identity: false,
    },
];

/// What a copy moved: each table's name and row count, in copy order (the same in SQLite and,
/// checked before the commit, in PostgreSQL).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// `(table, rows)`.
    pub tables: Vec<(&'static str, u64)>,
}

impl Copied {
    /// One line a table, `  users  12345`, for the command's output.
    pub fn text(&self) -> String {
        let width = self.tables.iter().map(|(t, _)| t.len()).max().unwrap_or(0);
        self.tables
            .iter()
            .map(|(t, n)| format!("  {t:<width$}  {n:>10}\n"))
            .collect()
    }
}

/// A statement made from [`TABLES`]: its table and column names are this file's constants, never
/// input, and every value is bound.
fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}

/// One batch of one column, typed for its PostgreSQL array.
enum Column {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
    Bool(Vec<Option<bool>>),
}

/// Copies the SQLite database of `data_dir` into the PostgreSQL database at `url` (created
/// when missing, migrated, and required empty); the counts.
///
/// # Errors
/// A message saying what to do, never the URL's password: no SQLite database there; it is in
/// use (stop the server); its schema is newer than this build; the target is not empty (which
/// table); PostgreSQL cannot be reached or refused a row (the copy is rolled back: no
/// row is left in the target); counts differ after the copy (rolled back too).
pub async fn run(data_dir: &Path, url: &DatabaseUrl) -> Result<Copied, String> {
    let db_file = data_dir.join(DB_FILE);
    if !db_file.exists() {
        return Err(format!(
            "no SQLite database at {}: give the config (or --data-dir) of the SQLite deployment \
             to move",
            db_file.display()
        ));
    }
    let src = open_source(data_dir, &db_file)?;
    check_sqlite_schema(&src)?;

    let redact = |e: String| crate::store::postgres::redact(&e, url.expose());
    if PostgresStore::create_database(url.expose()).await? {
        tracing::info!("created the target database {url:?}");
    }
    let config = crate::config::DatabaseConfig {
        url: None,
        max_connections: 1,
        connect_timeout_secs: 30,
        migrate: true,
    };
    let store = PostgresStore::open(url.expose(), &config).await?;
    crate::store::Store::close(&store).await;

    let mut pg = PgConnection::connect(url.expose())
        .await
        .map_err(|e| redact(format!("cannot connect to PostgreSQL: {e}")))?;
    let result = copy_all(&src, &mut pg).await;
    let _ = pg.close().await;
    result.map_err(redact)
}

/// Opens the SQLite database for the copy: migrated to the current schema, then locked for as
/// long as the connection lives (exclusive locking mode), or refused when something has it
/// open.
fn open_source(data_dir: &Path, db_file: &Path) -> Result<Connection, String> {
    // Brings an older schema up to date, as the server would at start.
    sqlite::Db::open(data_dir)?.close();
    let conn = Connection::open_with_flags(
        db_file,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| format!("cannot open {}: {e}", db_file.display()))?;
    // No busy timeout: a lock held by someone else means "in use", not "wait". In exclusive
    // locking mode the lock taken by BEGIN EXCLUSIVE stays after its COMMIT until the
    // connection closes: the server cannot write (or start) while the copy reads.
    conn.execute_batch(
        "PRAGMA busy_timeout=0; PRAGMA locking_mode=EXCLUSIVE; BEGIN EXCLUSIVE; COMMIT;",
    )
    .map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            format!(
                "{} is in use (a running server, or another sessionkit-server command, has it \
                 open): stop the server first, then copy (writes made during a copy would not \
                 be moved)",
                db_file.display()
            )
        }
        e => format!("cannot lock {}: {e}", db_file.display()),
    })?;
    Ok(conn)
}

/// Refuses a SQLite schema that is not the one [`TABLES`] describes.
fn check_sqlite_schema(src: &Connection) -> Result<(), String> {
    let version: i64 = src
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| format!("cannot read the schema version: {e}"))?;
    if version != SCHEMA_VERSION {
        return Err(format!(
            "the SQLite database has schema version {version}, this build copies version \
             {SCHEMA_VERSION}: run the sessionkit-server that matches it"
        ));
    }
    let tables: Vec<String> = src
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY name",
        )
        .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
        .map_err(|e| format!("cannot read the SQLite schema: {e}"))?;
    for name in &tables {
        let Some(table) = TABLES.iter().find(|t| t.name == name) else {
            return Err(format!(
                "the SQLite table {name} is not one this build knows how to copy: nothing was \
                 copied (a copy must move every table)"
            ));
        };
        let columns: Vec<String> = src
            .prepare(&format!("SELECT name FROM pragma_table_info('{name}')"))
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| format!("cannot read the SQLite schema: {e}"))?;
        let known: Vec<&str> = table.columns.iter().map(|(c, _)| *c).collect();
        let mut sorted = columns.clone();
        sorted.sort();
        let mut expected: Vec<String> = known.iter().map(|c| c.to_string()).collect();
        expected.sort();
        if sorted != expected {
            return Err(format!(
                "the SQLite table {name} has columns {columns:?}, this build copies {known:?}: \
                 nothing was copied"
            ));
        }
    }
    Ok(())
}

/// The copy itself, in one PostgreSQL transaction.
async fn copy_all(src: &Connection, pg: &mut PgConnection) -> Result<Copied, String> {
    let pg_err = |what: &str, e: sqlx::Error| format!("{what}: {e}");
    check_pg_schema(pg).await?;
    let mut tx = pg
        .begin()
        .await
        .map_err(|e| pg_err("cannot begin the copy", e))?;
    let names: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
    // An instance started on the target meanwhile waits for the commit instead of writing its
    // own app secrets beside the copied ones.
    sqlx::query(sql(format!(
        "LOCK TABLE {} IN ACCESS EXCLUSIVE MODE",
        names.join(", ")
    )))
    .execute(&mut *tx)
    .await
    .map_err(|e| pg_err("cannot lock the target's tables", e))?;
    for t in TABLES {
        let any: bool =
            sqlx::query_scalar(sql(format!("SELECT EXISTS (SELECT 1 FROM {})", t.name)))
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| pg_err("cannot read the target", e))?;
        if any {
            return Err(format!(
                "the target database is not empty (table {} has rows): copy only into an empty \
                 database. Name a new database in --to (copy creates it), or drop this one and \
                 copy again; a server started on the target before the copy writes its own \
                 secrets there, so copy before the first start",
                t.name
            ));
        }
    }
    let mut copied = Vec::with_capacity(TABLES.len());
    for t in TABLES {
        let expected: i64 = src
            .query_row(&format!("SELECT COUNT(*) FROM {}", t.name), [], |r| {
                r.get(0)
            })
            .map_err(|e| format!("cannot count the SQLite table {}: {e}", t.name))?;
        let mut after = 0i64;
        let mut rows = 0u64;
        loop {
            let (batch, last, n) = read_batch(src, t, after)?;
            if n == 0 {
                break;
            }
            after = last;
            rows += n as u64;
            insert_batch(&mut tx, t, batch)
                .await
                .map_err(|e| format!("copying table {}: {e}", t.name))?;
            if n < BATCH {
                break;
            }
        }
        if t.keeps_identity && rows > 0 {
            // The next mail queued on PostgreSQL gets a seq after every copied one (and after
            // any SQLite handed out and deleted since: AUTOINCREMENT never reuses them).
            let used: i64 = src
                .query_row(
                    &format!(
                        "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{0}'), 0),
                                COALESCE((SELECT MAX(rowid) FROM {0}), 0))",
                        t.name
                    ),
                    [],
                    |r| r.get(0),
                )
                .map_err(|e| format!("cannot read the {} sequence: {e}", t.name))?;
            let column = t.columns[0].0;
            sqlx::query(sql(format!(
                "SELECT setval(pg_get_serial_sequence('{}', '{column}'), $1)",
                t.name
            )))
            .bind(used)
            .execute(&mut *tx)
            .await
            .map_err(|e| pg_err("cannot move the mail queue's sequence", e))?;
        }
        let found: i64 = sqlx::query_scalar(sql(format!("SELECT COUNT(*) FROM {}", t.name)))
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| pg_err("cannot count the copy", e))?;
        if found != expected || rows as i64 != expected {
            return Err(format!(
                "table {}: SQLite has {expected} rows, {rows} were read and PostgreSQL has \
                 {found}: the copy was rolled back, no row is left in the target",
                t.name
            ));
        }
        copied.push((t.name, rows));
    }
    tx.commit()
        .await
        .map_err(|e| pg_err("cannot commit the copy", e))?;
    // Statistics now, not at autovacuum's next look: until then the planner takes the copied
    // tables for empty, and a server started at once would plan its queries on that.
    sqlx::query(sql(format!("ANALYZE {}", names.join(", "))))
        .execute(&mut *pg)
        .await
        .map_err(|e| {
            pg_err(
                "copied, but cannot ANALYZE the copy (run ANALYZE by hand)",
                e,
            )
        })?;
    Ok(Copied { tables: copied })
}

/// Refuses a PostgreSQL schema with a column [`TABLES`] neither fills nor leaves to a default.
async fn check_pg_schema(pg: &mut PgConnection) -> Result<(), String> {
    let rows: Vec<(String, String, bool)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text,
                (column_default IS NOT NULL OR is_identity = 'YES' OR is_nullable = 'YES')
         FROM information_schema.columns
         WHERE table_schema = current_schema() AND table_name <> '_sqlx_migrations'",
    )
    .fetch_all(&mut *pg)
    .await
    .map_err(|e| format!("cannot read the PostgreSQL schema: {e}"))?;
    for (table, column, optional) in rows {
        let Some(t) = TABLES.iter().find(|t| t.name == table) else {
            return Err(format!(
                "the PostgreSQL table {table} is not one this build knows how to fill: nothing \
                 was copied"
            ));
        };
        let filled = t.columns.iter().any(|(c, _)| *c == column);
        let left = t.pg_only.contains(&column.as_str());
        if !(filled || (left && optional)) {
            return Err(format!(
                "the PostgreSQL column {table}.{column} is not one this build knows how to fill: \
                 nothing was copied"
            ));
        }
    }
    Ok(())
}

/// Up to [`BATCH`] rows of `t` after rowid `after`, as columns; the last rowid and the count.
fn read_batch(
    src: &Connection,
    t: &Table,
    after: i64,
) -> Result<(Vec<Column>, i64, usize), String> {
    let names: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
    let sql = format!(
        "SELECT rowid, {} FROM {} WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
        names.join(", "),
        t.name
    );
    let mut columns: Vec<Column> = t
        .columns
        .iter()
        .map(|(_, ty)| match ty {
            Text => Column::Text(Vec::with_capacity(BATCH)),
            Int => Column::Int(Vec::with_capacity(BATCH)),
            Bool => Column::Bool(Vec::with_capacity(BATCH)),
        })
        .collect();
    let read_err = |e: rusqlite::Error| format!("cannot read the SQLite table {}: {e}", t.name);
    let mut stmt = src.prepare_cached(&sql).map_err(read_err)?;
    let mut rows = stmt
        .query(rusqlite::params![after, BATCH as i64])
        .map_err(read_err)?;
    let (mut last, mut n) = (after, 0usize);
    while let Some(row) = rows.next().map_err(read_err)? {
        last = row.get(0).map_err(read_err)?;
        n += 1;
        for (i, column) in columns.iter_mut().enumerate() {
            let value = row.get_ref(i + 1).map_err(read_err)?;
            let bad = |found: &str| {
                format!(
                    "the SQLite table {} has {found} in column {} (rowid {last}), where this \
                     build expects {:?}: nothing was copied",
                    t.name, t.columns[i].0, t.columns[i].1
                )
            };
            match (column, value) {
                (Column::Text(v), ValueRef::Null) => v.push(None),
                (Column::Int(v), ValueRef::Null) => v.push(None),
                (Column::Bool(v), ValueRef::Null) => v.push(None),
                (Column::Text(v), ValueRef::Text(s)) => v.push(Some(
                    String::from_utf8(s.to_vec()).map_err(|_| bad("text that is not UTF-8"))?,
                )),
                (Column::Int(v), ValueRef::Integer(x)) => v.push(Some(x)),
                (Column::Bool(v), ValueRef::Integer(x @ (0 | 1))) => v.push(Some(x == 1)),
                (_, ValueRef::Integer(_)) => return Err(bad("an integer")),
                (_, ValueRef::Real(_)) => return Err(bad("a real number")),
                (_, ValueRef::Text(_)) => return Err(bad("text")),
                (_, ValueRef::Blob(_)) => return Err(bad("a blob")),
            }
        }
    }
    Ok((columns, last, n))
}

/// Inserts one batch: `INSERT INTO t (…) SELECT * FROM UNNEST($1::text[], …)`, which keeps
/// the batch's order.
async fn insert_batch(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    t: &Table,
    batch: Vec<Column>,
) -> Result<(), String> {
    let names: Vec<&str> = t.columns.iter().map(|(c, _)| *c).collect();
    let arrays: Vec<String> = t
        .columns
        .iter()
        .enumerate()
        .map(|(i, (_, ty))| {
            let pg = match ty {
                Text => "text",
                Int => "bigint",
                Bool => "boolean",
            };
            format!("${}::{pg}[]", i + 1)
        })
        .collect();
    let text = format!(
        "INSERT INTO {} ({}) {}SELECT * FROM UNNEST({})",
        t.name,
        names.join(", "),
        if t.keeps_identity {
            "OVERRIDING SYSTEM VALUE "
        } else {
            ""
        },
        arrays.join(", ")
    );
    let mut q = sqlx::query(sql(text));
    for c in batch {
        q = match c {
            Column::Text(v) => q.bind(v),
            Column::Int(v) => q.bind(v),
            Column::Bool(v) => q.bind(v),
        };
    }
    q.execute(&mut **tx).await.map(drop).map_err(|e| match e {
        sqlx::Error::Database(db) => match db.constraint() {
            Some(c) => format!(
                "PostgreSQL refused a row ({}; constraint {c}): the copy was rolled back, \
                 no row is left in the target",
                db.message()
            ),
            None => format!(
                "PostgreSQL refused a row ({}): the copy was rolled back, no row is left in \
                 the target",
                db.message()
            ),
        },
        e => format!("{e}: the copy was rolled back, no row is left in the target"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_sqlite_schema_is_the_one_the_copy_knows() {
        let dir = std::env::temp_dir().join(format!("sk-copy-schema-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        sqlite::Db::open(&dir).unwrap().close();
        let conn = Connection::open(dir.join(DB_FILE)).unwrap();
        check_sqlite_schema(&conn).unwrap();
        conn.execute_batch("ALTER TABLE users ADD COLUMN later TEXT")
            .unwrap();
        let e = check_sqlite_schema(&conn).unwrap_err();
        assert!(e.contains("users"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
