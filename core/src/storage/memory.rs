//! A store that forgets everything with the process: tests and throwaway scripts.

use std::sync::Mutex;

use super::{SessionStore, StoreError};

/// Keeps the session document in memory.
#[derive(Debug, Default)]
pub struct InMemoryStore {
    bytes: Mutex<Option<Vec<u8>>>,
}

impl InMemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

impl SessionStore for InMemoryStore {
    fn load(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.bytes.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }
    fn save(&self, bytes: &[u8]) -> Result<(), StoreError> {
        *self.bytes.lock().unwrap_or_else(|e| e.into_inner()) = Some(bytes.to_vec());
        Ok(())
    }
}
