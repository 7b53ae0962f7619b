//! Backup and restore of the SQLite database (SERVER.md, "Backups"): `sessionkit-server backup
//! FILE` copies the database of a running server consistently; `sessionkit-server restore FILE`
//! puts such a copy back while no server has the database open.
//!
//! The copy is made with SQLite's online backup API from a read transaction of its own. The
//! server runs in WAL mode, where a reader never blocks a writer: logins and refreshes go on
//! during the copy, which sees the database as it was when it began (one snapshot, so it never
//! restarts however busy the server is). While it lasts the server's WAL cannot be checkpointed
//! past that snapshot and grows by the writes made meanwhile; it is checkpointed as usual after.
//!
//! PostgreSQL has pg_dump for this; [`postgres_refusal`] says so.

use std::path::{Path, PathBuf};

use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};

use crate::store::sqlite::{DB_FILE, SCHEMA_VERSION, restrict_permissions};

/// Pages copied per backup step (4 MiB at SQLite's default 4 KiB page). The steps run in one
/// read transaction, so their size changes nothing for the server; it only bounds the work
/// between two looks at a transient busy answer.
const STEP_PAGES: i32 = 1024;

/// What a backup or restore did, for the command's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copied {
    /// The schema version of the copy (`PRAGMA user_version`).
    pub schema_version: i64,
    /// The copy's size in bytes.
    pub bytes: u64,
}

/// The message of `backup` and `restore` on a PostgreSQL config: what to use instead, and what
/// else to keep (the dump holds the app secrets and signing keys; the config and the
/// environment hold the rest).
pub fn postgres_refusal(command: &str) -> String {
    format!(
        "{command} is for the SQLite database; this config uses PostgreSQL ([database] url, \
         --database-url or SESSIONKIT_DATABASE_URL). Back it up with pg_dump, e.g. \
         `pg_dump --format=custom --file=sessionkit.dump postgres://USER@HOST/DB` (consistent \
         while servers run), and restore with `pg_restore --clean --if-exists --dbname=... \
         sessionkit.dump` while they are stopped. The dump holds the app secrets, the admin \
         secret and the signing keys: keep it as private as the database. Keep the config file \
         too ([admin] keys, provider keys and client secrets) and the secrets of the \
         environment (SESSIONKIT_SMTP_PASSWORD, SESSIONKIT_ADMIN_PRIVATE_KEY). See SERVER.md, \
         \"Backups\"."
    )
}

/// Copies the database in `data_dir` to `file` while a server may be using it.
///
/// The copy is written to a temporary file next to `file` (mode 0600: it holds every secret
/// of the database), checked (`PRAGMA integrity_check`, and the schema version the database
/// had), made a self-contained file (journal mode DELETE, no -wal beside it), fsynced, and
/// only then moved to `file`, so that `file` is either absent or a complete, checked copy.
///
/// # Errors
/// A message saying what to do: no database in `data_dir`, `file` exists and `force` is
/// false, `file` is the live database, or SQLite or the file system failed.
pub fn backup(data_dir: &Path, file: &Path, force: bool) -> Result<Copied, String> {
    let db = data_dir.join(DB_FILE);
    if !db.is_file() {
        return Err(format!(
            "no database at {}: pass the server's --config (or --data-dir)",
            db.display()
        ));
    }
    if same_file(&db, file) {
        return Err(format!(
            "{} is the live database: name another file",
            file.display()
        ));
    }
    if file.exists() && !force {
        return Err(format!(
            "{} exists: name a new file, or pass --force to replace it",
            file.display()
        ));
    }
    // Read-only: the copy never creates, migrates or checkpoints the live database.
    let src = Connection::open_with_flags(&db, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open database {}: {e}", db.display()))?;
    src.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(|e| format!("cannot configure database: {e}"))?;
    // One read transaction for the version and every page: one snapshot.
    src.execute_batch("BEGIN; SELECT COUNT(*) FROM sqlite_schema;")
        .map_err(|e| format!("cannot read database {}: {e}", db.display()))?;
    let version = user_version(&src)?;
    if version == 0 {
        return Err(format!(
            "{} has no sessionkit schema (version 0): is it the server's database?",
            db.display()
        ));
    }
    let tmp = temp_name(file);
    let result = (|| {
        create_private(&tmp)?;
        let mut dst =
            Connection::open(&tmp).map_err(|e| format!("cannot open {}: {e}", tmp.display()))?;
        copy(&src, &mut dst)?;
        // The copy keeps the source's WAL flag in its header: make it one self-contained file.
        dst.execute_batch("PRAGMA journal_mode=DELETE;")
            .map_err(|e| format!("cannot finish the copy: {e}"))?;
        check(&dst, &tmp)?;
        let copied = user_version(&dst)?;
        if copied != version {
            return Err(format!(
                "the copy has schema version {copied}, the database {version}: not kept"
            ));
        }
        dst.close()
            .map_err(|(_, e)| format!("cannot close {}: {e}", tmp.display()))?;
        sync(&tmp)?;
        let bytes = std::fs::metadata(&tmp)
            .map_err(|e| format!("cannot read {}: {e}", tmp.display()))?
            .len();
        place(&tmp, file, force)?;
        Ok(Copied {
            schema_version: version,
            bytes,
        })
    })();
    let _ = src.execute_batch("COMMIT;");
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Replaces the database in `data_dir` (created if missing) with the backup `file`, while no
/// other process has it open.
///
/// The backup is checked first (`PRAGMA integrity_check`; a schema version from 1 to this
/// server's: an older one is migrated when the server starts). Then the database is opened in
/// SQLite's exclusive locking mode: a running server (or a `keys` command, or another restore)
/// holds a shared lock on it for as long as it has it open, so taking the lock fails at once
/// and the restore is refused; once taken, no server can open the database until the restore
/// is done. The pages are written through SQLite (the WAL of a server that crashed is rolled
/// in first and then superseded), so an interrupted restore leaves the old database.
///
/// # Errors
/// A message saying what to do: the backup is damaged, newer than this server or not a
/// sessionkit database; the database is in use (stop the server first); SQLite or the file
/// system failed.
pub fn restore(data_dir: &Path, file: &Path) -> Result<Copied, String> {
    let db = data_dir.join(DB_FILE);
    if same_file(&db, file) {
        return Err(format!(
            "{} is the live database: name a backup file",
            file.display()
        ));
    }
    let src = Connection::open_with_flags(file, OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(|e| format!("cannot open backup {}: {e}", file.display()))?;
    check(&src, file)?;
    let version = user_version(&src)?;
    if version == 0 {
        return Err(format!(
            "{} has no sessionkit schema (version 0): not a backup of this server",
            file.display()
        ));
    }
    if version > SCHEMA_VERSION {
        return Err(format!(
            "backup {} has schema version {version}, newer than this server \
             ({SCHEMA_VERSION}): restore it with the sessionkit-server that made it, or a newer one",
            file.display()
        ));
    }
    std::fs::create_dir_all(data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", data_dir.display()))?;
    restrict_permissions(data_dir, &db)?;
    let mut dst =
        Connection::open(&db).map_err(|e| format!("cannot open database {}: {e}", db.display()))?;
    let in_use = |e: rusqlite::Error| match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            format!(
                "{} is in use (a running server, or another sessionkit-server command, has it \
                 open): stop the server first, then restore",
                db.display()
            )
        }
        e => format!("cannot lock database {}: {e}", db.display()),
    };
    // No busy timeout: a lock held by someone else means "in use", not "wait".
    dst.execute_batch(
        "PRAGMA busy_timeout=0; PRAGMA locking_mode=EXCLUSIVE; PRAGMA journal_mode=WAL; \
         PRAGMA synchronous=FULL; BEGIN EXCLUSIVE; COMMIT;",
    )
    .map_err(in_use)?;
    // In exclusive locking mode the lock stays after that commit, until the connection closes.
    copy(&src, &mut dst)?;
    check(&dst, &db)?;
    let restored = user_version(&dst)?;
    if restored != version {
        return Err(format!(
            "the restored database has schema version {restored}, the backup {version}"
        ));
    }
    // Closing the last connection checkpoints the WAL into the file and removes it.
    dst.close()
        .map_err(|(_, e)| format!("cannot close database {}: {e}", db.display()))?;
    let bytes = std::fs::metadata(&db)
        .map_err(|e| format!("cannot read {}: {e}", db.display()))?
        .len();
    Ok(Copied {
        schema_version: version,
        bytes,
    })
}

/// Copies every page of `src` into `dst` (SQLite's online backup), in steps.
fn copy(src: &Connection, dst: &mut Connection) -> Result<(), String> {
    let backup = Backup::new(src, dst).map_err(|e| format!("cannot start the copy: {e}"))?;
    loop {
        match backup.step(STEP_PAGES) {
            Ok(StepResult::Done) => return Ok(()),
            Ok(StepResult::More) => {}
            // Transient (a lock held for a moment): SQLite says try again.
            Ok(StepResult::Busy | StepResult::Locked) => {
                std::thread::sleep(std::time::Duration::from_millis(10))
            }
            Ok(_) => {}
            Err(e) => return Err(format!("copy failed: {e}")),
        }
    }
}

/// `PRAGMA integrity_check` answers exactly `ok`.
fn check(conn: &Connection, path: &Path) -> Result<(), String> {
    let problems: Vec<String> = conn
        .prepare("PRAGMA integrity_check")
        .and_then(|mut s| {
            s.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<_>>()
        })
        .map_err(|e| format!("cannot check {}: {e}", path.display()))?;
    if problems != ["ok"] {
        return Err(format!(
            "{} fails SQLite's integrity check: {}",
            path.display(),
            problems.join("; ")
        ));
    }
    Ok(())
}

fn user_version(conn: &Connection) -> Result<i64, String> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| format!("cannot read the schema version: {e}"))
}

/// `.NAME.tmp-PID` next to `file`: on its file system, so that the final rename is atomic.
pub(crate) fn temp_name(file: &Path) -> PathBuf {
    let name = file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    file.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Creates `path` empty with mode 0600 before SQLite writes to it (its journal takes the same
/// mode), so that the copy is never readable by others.
pub(crate) fn create_private(path: &Path) -> Result<(), String> {
    let _ = std::fs::remove_file(path);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .map(drop)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))
}

/// fsyncs the file, so that the rename never publishes a file whose data is not on disk.
pub(crate) fn sync(path: &Path) -> Result<(), String> {
    std::fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| format!("cannot sync {}: {e}", path.display()))
}

/// Moves the finished copy to `file`: with `force`, replacing it (rename); without, only if
/// it still does not exist (a hard link fails on an existing name, atomically). Then fsyncs the
/// directory, which makes the new name durable.
pub(crate) fn place(tmp: &Path, file: &Path, force: bool) -> Result<(), String> {
    if force {
        std::fs::rename(tmp, file)
    } else {
        std::fs::hard_link(tmp, file).and_then(|()| std::fs::remove_file(tmp))
    }
    .map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => format!(
            "{} exists: name a new file, or pass --force to replace it",
            file.display()
        ),
        _ => format!("cannot write {}: {e}", file.display()),
    })?;
    #[cfg(unix)]
    {
        let dir = match file.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| format!("cannot sync directory {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Whether both paths name one existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
