//! What a user's API keys write, decided once for both back ends (#28): a new key (its name
//! unique for the user), and a deletion or a disable, which end the sessions that logged in
//! with the key (enabling it again does not revive them). The back ends run these over their
//! [`Transaction`].

use serde_json::json;

use super::transaction::Transaction;
use super::{ApiKeyRow, StoreResult};
use crate::audit::{self, Event, kind};

/// The provider type of the identity an API key login gives its user.
const API_KEY_PROVIDER: &str = "api-key";

/// Stores `key` (its hash only) for `user_id`. 409 when the user has a key of that name: the
/// unique (user, name) key decides, so two creations of one name at once make one key.
pub(crate) async fn create_api_key<T: Transaction>(
    t: &mut T,
    app_id: &str,
    user_id: &str,
    key: &ApiKeyRow,
    key_hash: &str,
    now: i64,
    audit: audit::Context,
) -> StoreResult<()> {
    if !t
        .insert_api_key(app_id, user_id, key, key_hash, now)
        .await?
    {
        return Err(super::api_key_name_taken());
    }
    let event = Event::in_context(app_id, kind::API_KEY_CREATED, audit)
        .at(now)
        .user(user_id)
        .detail(json!({"key_id": key.id, "name": key.name}));
    t.insert_event(&event).await
}

/// Deletes API key `id` of `user_id` with the identity its logins made, and ends the sessions
/// that logged in with it; whether the key existed.
pub(crate) async fn delete_api_key<T: Transaction>(
    t: &mut T,
    user_id: &str,
    id: &str,
    audit: audit::Context,
) -> StoreResult<bool> {
    let Some(app_id) = t.delete_api_key(user_id, id).await? else {
        return Ok(false);
    };
    t.delete_identity(user_id, API_KEY_PROVIDER, id).await?;
    let n = t.revoke_api_key_sessions(id).await?;
    let event = Event::in_context(&app_id, kind::API_KEY_DELETED, audit)
        .user(user_id)
        .detail(json!({"key_id": id, "sessions_revoked": n}));
    t.insert_event(&event).await?;
    Ok(true)
}

/// Disables (ending the sessions that logged in with it) or enables API key `id` of
/// `user_id`; whether the key exists.
pub(crate) async fn set_api_key_disabled<T: Transaction>(
    t: &mut T,
    user_id: &str,
    id: &str,
    disabled: bool,
    audit: audit::Context,
) -> StoreResult<bool> {
    let Some(app_id) = t.set_api_key_disabled(user_id, id, disabled).await? else {
        return Ok(false);
    };
    let n = if disabled {
        t.revoke_api_key_sessions(id).await?
    } else {
        0
    };
    let kind = if disabled {
        kind::API_KEY_DISABLED
    } else {
        kind::API_KEY_ENABLED
    };
    let event = Event::in_context(&app_id, kind, audit)
        .user(user_id)
        .detail(json!({"key_id": id, "sessions_revoked": n}));
    t.insert_event(&event).await?;
    Ok(true)
}
