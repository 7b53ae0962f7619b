//! The foreign-implementable session store (Keychain, Keystore, a Python dict...).

use std::sync::Arc;

use sessionkit as sk;

use crate::foreign::{self, Foreign};

/// Why a store could not do what was asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum StoreError {
    /// Not now (a locked device): try later; nobody is logged out for it.
    #[error("session store unavailable: {message}")]
    Unavailable { message: String },
    /// The stored bytes cannot be read back.
    #[error("session store corrupt: {message}")]
    Corrupt { message: String },
}

/// A store that raised something else is treated as unavailable: retried later, never a reason
/// to drop anyone's session.
impl From<uniffi::UnexpectedUniFFICallbackError> for StoreError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Unavailable {
            message: format!("the store raised: {}", e.reason),
        }
    }
}

impl From<StoreError> for sk::StoreError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable { message } => Self::Unavailable { message },
            StoreError::Corrupt { message } => Self::Corrupt { message },
        }
    }
}

/// Keeps the App's session document; `save` must replace it atomically.
#[uniffi::export(foreign)]
pub trait SessionStore: Send + Sync {
    /// The last saved document, or none if nothing was ever saved.
    fn load(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// Replaces the document atomically.
    fn save(&self, bytes: Vec<u8>) -> Result<(), StoreError>;
}

fn exiting() -> sk::StoreError {
    sk::StoreError::Unavailable {
        message: "the app's runtime is shutting down".into(),
    }
}

/// The core's view of a foreign store.
pub(crate) struct StoreAdapter(pub(crate) Foreign<Arc<dyn SessionStore>>);

impl sk::SessionStore for StoreAdapter {
    fn load(&self) -> Result<Option<Vec<u8>>, sk::StoreError> {
        foreign::call(|| self.0.load().map_err(Into::into)).unwrap_or_else(|| Err(exiting()))
    }
    fn save(&self, bytes: &[u8]) -> Result<(), sk::StoreError> {
        foreign::call(|| self.0.save(bytes.to_vec()).map_err(Into::into))
            .unwrap_or_else(|| Err(exiting()))
    }
}
