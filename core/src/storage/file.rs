//! One file per app, safe against crashes and shared by processes.
//!
//! A save writes a temporary file, flushes it, renames it over the old one and flushes the
//! directory, so a crash at any point leaves either the old or the new document. Files are
//! 0600 in a 0700 directory. Advisory locks (`<file>.lock` for a read-merge-write, one
//! `<file>.refresh-<user>.lock` per user for a refresh) let an app and its extension, or two
//! scripts, share the directory.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{SessionStore, StoreError, StoreGuard, encryption};

/// Keeps the session document in `<dir>/<app_id>.sessions`, optionally encrypted.
///
/// ```
/// use sessionkit::{FileStore, SessionStore};
/// let dir = std::env::temp_dir().join(format!("sk-doc-{}", std::process::id()));
/// let store = FileStore::new(&dir, "myapp", None).unwrap();
/// store.save(b"{}").unwrap();
/// assert_eq!(store.load().unwrap().as_deref(), Some(&b"{}"[..]));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
pub struct FileStore {
    path: PathBuf,
    app_id: String,
    key: Option<[u8; 32]>,
}

impl std::fmt::Debug for FileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStore")
            .field("path", &self.path)
            .field("encrypted", &self.key.is_some())
            .finish()
    }
}

/// Temporary files older than this are leftovers of a crashed writer.
const STALE_TMP: Duration = Duration::from_secs(600);

impl FileStore {
    /// A store for `app_id` under `dir` (created if missing, mode 0700). With `key`, the file
    /// is encrypted with AES-256-GCM.
    pub fn new(dir: &Path, app_id: &str, key: Option<[u8; 32]>) -> Result<Self, StoreError> {
        create_private_dir(dir).map_err(|e| StoreError::Unavailable {
            message: format!("cannot create session directory {}: {e}", dir.display()),
        })?;
        let store = Self {
            path: dir.join(format!("{}.sessions", sanitize(app_id))),
            app_id: app_id.to_string(),
            key,
        };
        store.remove_stale_temporaries(dir);
        Ok(store)
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        self.path.with_file_name(name)
    }

    fn remove_stale_temporaries(&self, dir: &Path) {
        let prefix = format!(
            "{}.tmp",
            self.path.file_name().unwrap_or_default().to_string_lossy()
        );
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .is_ok_and(|t| t.elapsed().is_ok_and(|age| age > STALE_TMP));
            if stale && entry.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(entry.path());
            }
        }
    }

    fn lock_file(&self, path: PathBuf) -> Result<Option<StoreGuard>, StoreError> {
        let file = open_private(&path, false)
            .map_err(|e| unavailable("cannot open lock file", &path, e))?;
        file.lock()
            .map_err(|e| unavailable("cannot lock", &path, e))?;
        // Closing the file releases the lock.
        Ok(Some(Box::new(file)))
    }
}

fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn open_private(path: &Path, truncate: bool) -> std::io::Result<File> {
    let mut options = OpenOptions::new();
    options
        .read(true)
        .write(true)
        .create(true)
        .truncate(truncate);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

fn unavailable(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Unavailable {
        message: format!("{what} {}: {e}", path.display()),
    }
}

impl SessionStore for FileStore {
    fn load(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let bytes = match fs::read(&self.path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unavailable("cannot read", &self.path, e)),
        };
        match (&self.key, encryption::is_encrypted(&bytes)) {
            (Some(key), true) => encryption::open(key, &self.app_id, &bytes).map(Some),
            (None, true) => Err(StoreError::Corrupt {
                message: format!(
                    "{} is encrypted, but no encryption key was given",
                    self.path.display()
                ),
            }),
            // A plain file is read as is; with a key, the next save encrypts it.
            (_, false) => Ok(Some(bytes)),
        }
    }

    fn save(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let sealed;
        let bytes = match &self.key {
            Some(key) => {
                sealed = encryption::seal(key, &self.app_id, bytes)?;
                &sealed
            }
            None => bytes,
        };
        let tmp = self.sibling(&format!(".tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = open_private(&tmp, true)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)?;
            if let Some(dir) = self.path.parent() {
                File::open(dir)?.sync_all()?;
            }
            Ok(())
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            unavailable("cannot write", &self.path, e)
        })
    }

    fn lock_exclusive(&self) -> Result<Option<StoreGuard>, StoreError> {
        self.lock_file(self.sibling(".lock"))
    }

    fn lock_refresh(&self, user_id: &str) -> Result<Option<StoreGuard>, StoreError> {
        self.lock_file(self.sibling(&format!(".refresh-{}.lock", sanitize(user_id))))
    }

    fn set_aside(&self) -> Result<Option<String>, StoreError> {
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let kept = self.sibling(&format!(".unreadable-{stamp}"));
        fs::rename(&self.path, &kept)
            .map_err(|e| unavailable("cannot move aside", &self.path, e))?;
        Ok(Some(kept.display().to_string()))
    }
}
