//! Where sessions live between runs: the [`SessionStore`] interface, the versioned document the
//! App keeps in it, and the built-in stores.

pub(crate) mod encryption;
mod file;
mod memory;

use std::collections::HashMap;
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

/// Held while a store is locked; dropping it unlocks.
pub type StoreGuard = Box<dyn Send>;

/// Keeps the App's session document. An app implements `load` and `save` to use the Keychain
/// or Keystore-backed storage; `save` must replace the whole document atomically.
///
/// The other methods have defaults that suit a store used by one App at a time. A store shared
/// by several processes (like [`FileStore`]) implements the locks, and the App then merges its
/// changes with theirs instead of overwriting them.
pub trait SessionStore: Send + Sync {
    /// The last saved document, or `None` if nothing was ever saved.
    fn load(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Replaces the document atomically.
    fn save(&self, bytes: &[u8]) -> Result<(), StoreError>;
    /// Locks the document against other processes for one read-merge-write. Short.
    fn lock_exclusive(&self) -> Result<Option<StoreGuard>, StoreError> {
        Ok(None)
    }
    /// Locks one user's refresh against other processes; may wait while another process
    /// refreshes that user. Called off the async runtime.
    fn lock_refresh(&self, _user_id: &str) -> Result<Option<StoreGuard>, StoreError> {
        Ok(None)
    }
    /// Moves an unreadable document out of the way and says where it went (`None`: it stays
    /// where it is and will be replaced by the next save).
    fn set_aside(&self) -> Result<Option<String>, StoreError> {
        Ok(None)
    }
}

/// The version of [`StoredState`] this build writes. Version 1 (no app id, no revisions) is
/// migrated on read.
pub(crate) const SCHEMA_VERSION: u32 = 2;

/// Everything persisted for one App.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct StoredState {
    pub schema_version: u32,
    /// The app the document belongs to: a document copied from another app is refused.
    pub app_id: String,
    /// Revision of the app-level fields below; bumped by whichever process changes them.
    pub rev: u64,
    pub current_user_id: Option<String>,
    /// Most recently used first; the current user is re-picked from here.
    pub recent_user_ids: Vec<String>,
    pub users: Vec<StoredUser>,
}

/// One user as persisted.
#[derive(Clone, Default, Serialize, Deserialize, PartialEq)]
pub(crate) struct StoredUser {
    pub id: String,
    /// Bumped by whichever process changes this user; the higher one wins a merge.
    #[serde(default)]
    pub rev: u64,
    pub state: String,
    pub access_token: Option<String>,
    pub refresh_token: Option<String>,
    /// The DPoP key of a bound session (#29), PKCS#8 in base64url: a secret like the tokens,
    /// encrypted with them when the store is. Absent for bearer sessions, so documents without
    /// DPoP are byte for byte what they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_key: Option<String>,
    /// The key of a bound session that the app's `DpopSigner` holds: its handle and public key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dpop_signer_key: Option<StoredSignerKey>,
    pub device_id: String,
    pub provider_type: String,
    pub identities: Vec<StoredIdentity>,
    /// The profile's `data` document.
    pub profile: serde_json::Value,
}

impl StoredUser {
    /// Equal apart from the revision: did anything the user sees change?
    pub(crate) fn same_content(&self, other: &StoredUser) -> bool {
        StoredUser {
            rev: 0,
            ..self.clone()
        } == StoredUser {
            rev: 0,
            ..other.clone()
        }
    }
}

impl fmt::Debug for StoredUser {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredUser")
            .field("id", &self.id)
            .field("rev", &self.rev)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// A key the app's `DpopSigner` holds, as the session remembers it.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct StoredSignerKey {
    /// What the signer named it.
    pub handle: String,
    /// The uncompressed public point, base64url: the session is restored without asking the
    /// signer (which may be unavailable while the device is locked).
    pub public_key: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub(crate) struct StoredIdentity {
    pub id: String,
    pub provider_type: String,
}

/// Version 1: what the first release wrote.
#[derive(Deserialize)]
struct StoredStateV1 {
    current_user_id: Option<String>,
    users: Vec<StoredUser>,
}

impl StoredState {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a StoredState always serialises")
    }

    /// Reads a document of any known version for `app_id`.
    pub(crate) fn decode(bytes: &[u8], app_id: &str) -> Result<Self, StoreError> {
        #[derive(Deserialize)]
        struct Version {
            schema_version: u32,
        }
        let corrupt = |m: String| StoreError::Corrupt { message: m };
        let v: Version = serde_json::from_slice(bytes)
            .map_err(|e| corrupt(format!("not a session document ({e})")))?;
        let state = match v.schema_version {
            1 => {
                let old: StoredStateV1 = serde_json::from_slice(bytes)
                    .map_err(|e| corrupt(format!("unreadable version 1 document ({e})")))?;
                StoredState {
                    schema_version: SCHEMA_VERSION,
                    app_id: app_id.to_string(),
                    rev: 0,
                    recent_user_ids: old.current_user_id.iter().cloned().collect(),
                    current_user_id: old.current_user_id,
                    users: old.users,
                }
            }
            SCHEMA_VERSION => serde_json::from_slice(bytes)
                .map_err(|e| corrupt(format!("unreadable session document ({e})")))?,
            other => {
                return Err(corrupt(format!(
                    "schema_version {other} is not one this SDK reads (it reads 1 to \
                     {SCHEMA_VERSION}); was it written by a newer version?"
                )));
            }
        };
        if state.app_id != app_id {
            return Err(corrupt(format!(
                "the document belongs to app {:?}, not {app_id:?}",
                state.app_id
            )));
        }
        Ok(state)
    }
}

/// What this App last wrote to (or read from) the store: the base a merge compares against.
#[derive(Default)]
pub(crate) struct Synced {
    pub users: HashMap<String, StoredUser>,
    pub rev: u64,
    pub current: Option<String>,
    pub recent: Vec<String>,
}

impl Synced {
    pub(crate) fn remember(&mut self, state: StoredState) {
        self.users = state.users.into_iter().map(|u| (u.id.clone(), u)).collect();
        self.rev = state.rev;
        self.current = state.current_user_id;
        self.recent = state.recent_user_ids;
    }

    /// The document as last written.
    pub(crate) fn as_state(&self, app_id: &str) -> StoredState {
        StoredState {
            schema_version: SCHEMA_VERSION,
            app_id: app_id.to_string(),
            rev: self.rev,
            current_user_id: self.current.clone(),
            recent_user_ids: self.recent.clone(),
            users: self.users.values().cloned().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_version_1_and_refuses_unknown_versions_and_other_apps() {
        let v1 =
            br#"{"schema_version":1,"current_user_id":"u1","users":[{"id":"u1","state":"LoggedIn",
            "access_token":null,"refresh_token":null,"device_id":"d","provider_type":"anon-user",
            "identities":[],"profile":{}}]}"#;
        let state = StoredState::decode(v1, "app").unwrap();
        assert_eq!(state.schema_version, SCHEMA_VERSION);
        assert_eq!(state.recent_user_ids, vec!["u1".to_string()]);
        assert_eq!(state.users[0].rev, 0);

        let again = StoredState::decode(&state.encode(), "app").unwrap();
        assert_eq!(again, state);
        assert!(matches!(
            StoredState::decode(&state.encode(), "other"),
            Err(StoreError::Corrupt { .. })
        ));
        let future = br#"{"schema_version":99}"#;
        let err = StoredState::decode(future, "app").unwrap_err();
        assert!(err.to_string().contains("newer"), "{err}");
        assert!(StoredState::decode(b"\x00garbage", "app").is_err());
    }
}
