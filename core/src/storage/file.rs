//! One file per app: written to a temporary file, flushed, renamed over the old one, and the
//! directory flushed, so a crash leaves either the old or the new document. Mode 0600.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use super::{SessionStore, StoreError};

/// Keeps the session document in `<dir>/<app_id>.sessions.json`.
#[derive(Debug)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store for `app_id` under `dir` (created if missing, mode 0700).
    pub fn new(dir: &Path, app_id: &str) -> Result<Self, StoreError> {
        create_private_dir(dir).map_err(|e| StoreError::Unavailable {
            message: format!("cannot create session directory {}: {e}", dir.display()),
        })?;
        let name: String = app_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Ok(Self {
            path: dir.join(format!("{name}.sessions.json")),
        })
    }

    /// The file this store writes.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

fn unavailable(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Unavailable {
        message: format!("{what} {}: {e}", path.display()),
    }
}

impl SessionStore for FileStore {
    fn load(&self) -> Result<Option<Vec<u8>>, StoreError> {
        match fs::read(&self.path) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable("cannot read", &self.path, e)),
        }
    }

    fn save(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut options = OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            let mut file = options.open(&tmp)?;
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
}
