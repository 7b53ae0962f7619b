//! Where sessions live between runs: the [`SessionStore`] interface, the document the App keeps
//! in it, and the built-in stores.

mod file;
mod memory;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use file::FileStore;
pub use memory::InMemoryStore;

/// Why a store could not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Not now (a locked device, a busy file): try later; nobody is logged out for it.
    #[error("session store unavailable: {message}")]
    Unavailable { message: String },
    /// The stored bytes cannot be read back.
    #[error("session store corrupt: {message}")]
    Corrupt { message: String },
}

/// Keeps the App's session document. An app implements it to use the Keychain or
/// Keystore-backed storage; `save` must replace the whole document atomically.
pub trait SessionStore: Send + Sync {
    /// The last saved document, or `None` if nothing was ever saved.
    fn load(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Replaces the document atomically.
    fn save(&self, bytes: &[u8]) -> Result<(), StoreError>;
}

/// The version of [`StoredState`] this build writes.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// Everything persisted for one App.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct StoredState {
    pub schema_version: u32,
    pub current_user_id: Option<String>,
    /// Most recently used first; the current user is re-picked from here.
    #[serde(default)]
    pub recent_user_ids: Vec<String>,
    pub users: Vec<StoredUser>,
}

/// One user as persisted.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct StoredUser {
    pub id: String,
    pub state: String,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    pub device_id: String,
    pub provider_type: String,
    pub identities: Vec<StoredIdentity>,
    /// The profile's `data` document.
    pub profile: serde_json::Value,
}

impl fmt::Debug for StoredUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredUser")
            .field("id", &self.id)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct StoredIdentity {
    pub id: String,
    pub provider_type: String,
}

impl StoredState {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a StoredState always serialises")
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        #[derive(Deserialize)]
        struct Version {
            schema_version: u32,
        }
        let corrupt = |m: String| StoreError::Corrupt { message: m };
        let v: Version = serde_json::from_slice(bytes)
            .map_err(|e| corrupt(format!("not a session document ({e})")))?;
        if v.schema_version != SCHEMA_VERSION {
            return Err(corrupt(format!(
                "schema_version {} is not one this SDK reads (it reads {SCHEMA_VERSION}); \
                 was it written by a newer version?",
                v.schema_version
            )));
        }
        serde_json::from_slice(bytes)
            .map_err(|e| corrupt(format!("unreadable session document ({e})")))
    }
}
