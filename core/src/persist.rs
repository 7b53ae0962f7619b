//! Keeping the App's users and the session store in step: restore at start, and a
//! read-merge-write on every change, so processes sharing a store adopt each other's changes
//! (a rotated refresh token, a logout, a new user) instead of overwriting them.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::context::{Context, Registry};
use crate::dpop::{DpopKey, MissingSigner};
use crate::error::{AppError, Result};
use crate::hub::Event;
use crate::log::LogLevel;
use crate::session::{Change, Refused, Released, UserData, UserIdentity, UserInner, UserState};
use crate::storage::{
    SCHEMA_VERSION, StoreError, StoredIdentity, StoredSignerKey, StoredState, StoredUser, Synced,
};
use crate::token::AccessToken;

/// Equal documents, whatever the order of their users.
fn same_document(a: &StoredState, b: &StoredState) -> bool {
    fn users(s: &StoredState) -> HashMap<&str, &StoredUser> {
        s.users.iter().map(|u| (u.id.as_str(), u)).collect()
    }
    a.schema_version == b.schema_version
        && a.app_id == b.app_id
        && a.rev == b.rev
        && a.current_user_id == b.current_user_id
        && a.recent_user_ids == b.recent_user_ids
        && users(a) == users(b)
}

fn snapshot(id: &str, d: &UserData) -> StoredUser {
    StoredUser {
        id: id.to_string(),
        rev: 0,
        state: d.state().as_str().into(),
        access_token: d.access().map(|t| t.raw.clone()),
        refresh_token: d.refresh_token().map(str::to_string),
        dpop_key: d
            .dpop_key()
            .and_then(|k| k.pkcs8())
            .map(|der| URL_SAFE_NO_PAD.encode(der)),
        dpop_signer_key: d.dpop_key().and_then(|k| {
            Some(StoredSignerKey {
                handle: k.handle()?.to_string(),
                public_key: URL_SAFE_NO_PAD.encode(k.public_point()),
            })
        }),
        device_id: d.device_id().to_string(),
        provider_type: d.provider_type().to_string(),
        identities: d
            .identities()
            .iter()
            .map(|i| StoredIdentity {
                id: i.id.clone(),
                provider_type: i.provider_type.clone(),
            })
            .collect(),
        profile: d.profile().clone(),
    }
}

impl Context {
    /// A user as stored, or `None` if it is removed. Tokens that cannot be read leave the user
    /// logged out rather than lost.
    fn user_from_store(&self, stored: &StoredUser) -> Option<UserData> {
        let state = UserState::parse(&stored.state)?;
        if state == UserState::Removed {
            return None;
        }
        let mut access = stored
            .access_token
            .clone()
            .and_then(|t| AccessToken::restored(t, self.clock.as_ref()).ok());
        // A bound session is no use without its key: one that cannot be read leaves the user
        // logged out (to log in again), like an unreadable token.
        let dpop = match (&stored.dpop_key, &stored.dpop_signer_key) {
            (None, None) => None,
            (software, signer) => {
                let key = self.stored_key(software.as_deref(), signer.as_ref());
                if let Err(why) = &key {
                    self.log.log(LogLevel::Warn, "sessionkit::storage", || {
                        format!(
                            "user {}: {why}; the user is logged out and must log in again",
                            stored.id
                        )
                    });
                    access = None;
                }
                key.ok().map(Arc::new)
            }
        };
        Some(UserData::restored(
            state,
            access,
            stored.refresh_token.clone(),
            dpop,
            stored.device_id.clone(),
            stored.provider_type.clone(),
            stored
                .identities
                .iter()
                .map(|i| UserIdentity {
                    id: i.id.clone(),
                    provider_type: i.provider_type.clone(),
                })
                .collect(),
            stored.profile.clone(),
        ))
    }

    /// The DPoP key of a stored session, or why it cannot be had.
    fn stored_key(
        &self,
        software: Option<&str>,
        signer_key: Option<&StoredSignerKey>,
    ) -> std::result::Result<DpopKey, String> {
        if let Some(k) = signer_key {
            // Without the signer the session is kept as it is (requests fail saying why): the
            // app's other processes, or this one opened again with the signer, go on with it.
            let signer = self
                .dpop_signer
                .clone()
                .unwrap_or_else(|| Arc::new(MissingSigner));
            let point = URL_SAFE_NO_PAD
                .decode(&k.public_key)
                .map_err(|_| "the stored DPoP public key is not base64url")?;
            return DpopKey::foreign(signer, k.handle.clone(), &point).map_err(|e| e.to_string());
        }
        let der = URL_SAFE_NO_PAD
            .decode(software.unwrap_or_default())
            .map_err(|_| "the stored DPoP key is not base64url")?;
        DpopKey::from_pkcs8(&der).map_err(|e| e.to_string())
    }

    /// Takes another process's version of a user. A changed refresh token or state starts a new
    /// session, so a refresh of ours still in flight is discarded.
    fn adopt(&self, user: &UserInner, stored: &StoredUser) -> bool {
        let Some(theirs) = self.user_from_store(stored) else {
            return false;
        };
        // Never refused: another process's save is taken whatever state it finds here.
        let _ = user.apply(Change::Adopted(Box::new(theirs)));
        true
    }

    /// Reads the store once at start. An unreadable document is set aside (never deleted) and
    /// the app starts with no users; the returned warning says where the document was kept.
    pub(crate) fn restore(self: &Arc<Self>) -> Result<Option<String>> {
        let mut synced = self.synced();
        let (state, warning) = match self.load_state() {
            Ok(state) => (state, None),
            Err(StoreError::Unavailable { message }) => {
                return Err(AppError::Storage {
                    message: format!(
                        "{message}; nothing was changed, create the App again once the store is available"
                    ),
                });
            }
            Err(e @ StoreError::Corrupt { .. }) => (None, Some(self.set_aside(&e))),
        };
        let Some(state) = state else {
            return Ok(warning);
        };
        let mut reg = self.registry();
        for stored in &state.users {
            synced.users.insert(stored.id.clone(), stored.clone());
            if let Some(data) = self.user_from_store(stored) {
                reg.users
                    .push(Arc::new(UserInner::new(stored.id.clone(), data)));
            }
        }
        reg.recent = state.recent_user_ids.clone();
        reg.current = state.current_user_id.clone();
        reg.settle_current(None);
        synced.rev = state.rev;
        synced.current = state.current_user_id;
        synced.recent = state.recent_user_ids;
        Ok(warning)
    }

    fn load_state(&self) -> std::result::Result<Option<StoredState>, StoreError> {
        match self.store.load()? {
            Some(bytes) => StoredState::decode(&bytes, &self.app_id).map(Some),
            None => Ok(None),
        }
    }

    fn set_aside(&self, error: &StoreError) -> String {
        let warning = match self.store.set_aside() {
            Ok(Some(kept)) => {
                format!("{error}; it was kept as {kept} and the app starts with no users")
            }
            Ok(None) => {
                format!("{error}; the app starts with no users and the next save replaces it")
            }
            Err(e) => format!("{error}; it could not be moved aside ({e}) and stays where it is"),
        };
        self.log
            .log(LogLevel::Warn, "sessionkit::storage", || warning.clone());
        warning
    }

    /// Saves the App's state, merged with whatever other processes saved since we last looked.
    /// A failing store is logged and retried with the next change; the sessions in memory are
    /// kept either way.
    pub(crate) fn persist(&self) {
        // A save blocks on the disk (fsync). On a multi-thread runtime the worker's other tasks
        // move elsewhere meanwhile; elsewhere (current-thread runtime, no runtime) it just runs.
        match tokio::runtime::Handle::try_current() {
            Ok(rt) if rt.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
                tokio::task::block_in_place(|| self.persist_now())
            }
            _ => self.persist_now(),
        }
    }

    fn persist_now(&self) {
        let mut synced = self.synced();
        let lock = match self.store.lock_exclusive() {
            Ok(lock) => lock,
            Err(e) => return self.save_failed(&e),
        };
        // Only a store other processes write to needs reading back; for the others, what we
        // last wrote is what is there.
        let disk = if lock.is_some() {
            match self.load_state() {
                Ok(state) => state.unwrap_or_default(),
                Err(e @ StoreError::Unavailable { .. }) => return self.save_failed(&e),
                Err(e @ StoreError::Corrupt { .. }) => {
                    self.set_aside(&e);
                    StoredState::default()
                }
            }
        } else {
            synced.as_state(&self.app_id)
        };
        let (state, events) = {
            let mut reg = self.registry();
            let before = reg.current().map(|u| u.id.clone());
            let state = self.merge(&mut reg, &synced, disk.clone());
            (state, reg.settle_current(before))
        };
        // Nothing changed on either side (a refresh checking for another process's token):
        // no write, no fsync.
        let unchanged = same_document(&state, &disk);
        match if unchanged {
            Ok(())
        } else {
            self.store.save(&state.encode())
        } {
            Ok(()) => synced.remember(state),
            Err(e) => self.save_failed(&e),
        }
        drop(lock);
        drop(synced);
        self.emit_all(events);
    }

    fn save_failed(&self, e: &StoreError) {
        self.log.log(LogLevel::Warn, "sessionkit::storage", || {
            format!("{e}; the change is kept in memory and saved with the next one")
        });
    }

    /// The document to write: our changes since the last sync win; other processes' newer
    /// changes are adopted into memory.
    fn merge(&self, reg: &mut Registry, synced: &Synced, disk: StoredState) -> StoredState {
        let mut on_disk: HashMap<String, StoredUser> =
            disk.users.into_iter().map(|u| (u.id.clone(), u)).collect();
        let mut users = Vec::new();
        let mut gone = Vec::new();
        for user in reg.users.clone() {
            let mine = snapshot(&user.id, &user.data());
            let last = synced.users.get(&user.id);
            let theirs = on_disk.remove(&user.id);
            let base_rev = last.map_or(0, |l| l.rev);
            match (last, theirs) {
                // Changed here: ours wins, above every revision seen.
                (last, theirs) if last.is_none_or(|l| !l.same_content(&mine)) => {
                    let rev = base_rev.max(theirs.map_or(0, |t| t.rev)) + 1;
                    users.push(StoredUser { rev, ..mine });
                }
                // Unchanged here, changed there: take theirs.
                (_, Some(theirs)) if theirs.rev > base_rev => {
                    if !self.adopt(&user, &theirs) {
                        gone.push(user.id.clone());
                    }
                    users.push(theirs);
                }
                (_, Some(theirs)) => users.push(theirs),
                // Unchanged here and gone from the store: another process removed it.
                (_, None) => gone.push(user.id.clone()),
            }
        }
        for id in &gone {
            if let Some(user) = reg.find(id).cloned() {
                let _ = user.apply(Change::RemovedElsewhere);
            }
            reg.forget(id);
        }
        // Users another process added; ones we removed since the last sync stay removed.
        let mut added: Vec<StoredUser> = on_disk
            .into_values()
            .filter(|u| !synced.users.contains_key(&u.id))
            .collect();
        added.sort_by(|a, b| a.id.cmp(&b.id));
        for stored in added {
            if let Some(data) = self.user_from_store(&stored) {
                reg.users
                    .push(Arc::new(UserInner::new(stored.id.clone(), data)));
                users.push(stored);
            }
        }
        let current = reg.current().map(|u| u.id.clone());
        let changed_here = current != synced.current || reg.recent != synced.recent;
        let rev = if changed_here {
            synced.rev.max(disk.rev) + 1
        } else {
            if disk.rev > synced.rev {
                reg.current = disk.current_user_id.clone();
                reg.recent = disk.recent_user_ids.clone();
            }
            disk.rev.max(synced.rev)
        };
        StoredState {
            schema_version: SCHEMA_VERSION,
            app_id: self.app_id.clone(),
            rev,
            current_user_id: reg.current().map(|u| u.id.clone()),
            recent_user_ids: reg.recent.clone(),
            users,
        }
    }

    /// Applies a change that ends a user's session (a logout, a removal, a deletion, a rejected
    /// refresh token) under the registry's lock: the record leaves the registry if it is now
    /// removed, the current user is re-picked, and the change is saved. Returns the events to
    /// send (the user's, then a change of the current user) and the refresh token the user
    /// held; `Refused` when the change does not apply (see `UserData::next`).
    pub(crate) fn end_session(
        &self,
        user: &Arc<UserInner>,
        change: Change,
    ) -> std::result::Result<Ended, Refused> {
        let mut reg = self.registry();
        let before = reg.current().map(|u| u.id.clone());
        let applied = user.apply(change)?;
        let mut events: Vec<Event> = applied
            .events
            .into_iter()
            .map(|a| Event::about(user, a))
            .collect();
        if applied.changed {
            if user.data().state() == UserState::Removed {
                reg.forget(&user.id);
            }
            events.extend(reg.settle_current(before));
            drop(reg);
            self.persist();
        }
        Ok(Ended {
            events,
            released: applied.released,
        })
    }
}

/// What ending a session did: the events to send and the refresh token to revoke.
pub(crate) struct Ended {
    pub events: Vec<Event>,
    pub released: Option<Released>,
}
