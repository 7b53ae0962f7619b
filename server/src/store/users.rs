//! What a change to a user writes, decided once for both back ends (#28): a deletion (with its
//! email accounts and everything the user owns), a disable (which ends its sessions), new
//! custom data, the revocation of all its sessions (an operator's), and a user ending one or
//! all but one of its own sessions (#25), each with its audit event. The back ends run these
//! over their [`Transaction`].

use serde_json::json;

use super::StoreResult;
use super::transaction::{Transaction, UserLock};
use crate::audit::{self, Event, kind};

/// A change to an existing user ([`change_user`]).
pub enum UserChange {
    /// Revoke all its sessions (admin API, `POST .../logout`).
    Revoke,
    /// Disable (its sessions end) or enable it.
    Disabled(bool),
    /// Replace its custom data (a JSON document).
    CustomData(String),
}

/// Deletes user `user_id` of `app_id` with what it owns ([`Transaction::delete_user`]) and
/// records `user_deleted` in `audit` (the request's context, [`audit::context`]); whether it
/// existed.
pub(crate) async fn delete_user<T: Transaction>(
    t: &mut T,
    app_id: &str,
    user_id: &str,
    audit: audit::Context,
) -> StoreResult<bool> {
    let deleted = t.delete_user(app_id, user_id).await?;
    if deleted {
        t.insert_event(&Event::in_context(app_id, kind::USER_DELETED, audit).user(user_id))
            .await?;
    }
    Ok(deleted)
}

/// Applies `change` to user `user_id` of `app_id`, its row locked; whether the user exists
/// (nothing is written when it does not). Its audit event is in `audit` (the request's
/// context).
pub(crate) async fn change_user<T: Transaction>(
    t: &mut T,
    app_id: &str,
    user_id: &str,
    change: UserChange,
    audit: audit::Context,
) -> StoreResult<bool> {
    if !t.lock_user(app_id, user_id, UserLock::Change).await? {
        return Ok(false);
    }
    match change {
        UserChange::Revoke => {
            let n = t.revoke_user_sessions(user_id).await?;
            let event = Event::in_context(app_id, kind::SESSIONS_REVOKED, audit)
                .user(user_id)
                .detail(json!({"scope": "all", "count": n}));
            t.insert_event(&event).await?;
        }
        UserChange::Disabled(disabled) => {
            t.set_disabled(user_id, disabled).await?;
            if disabled {
                t.revoke_user_sessions(user_id).await?;
            }
            let kind = if disabled {
                kind::USER_DISABLED
            } else {
                kind::USER_ENABLED
            };
            t.insert_event(&Event::in_context(app_id, kind, audit).user(user_id))
                .await?;
        }
        UserChange::CustomData(doc) => t.set_custom_data(user_id, &doc).await?,
    }
    Ok(true)
}

/// Revokes session `session_id` of user `user_id` if it is live at `now` (a user ending one of
/// its own sessions, #25), with a `sessions_revoked` event of scope `one`; whether it was.
pub(crate) async fn revoke_user_session<T: Transaction>(
    t: &mut T,
    app_id: &str,
    user_id: &str,
    session_id: &str,
    now: i64,
    audit: audit::Context,
) -> StoreResult<bool> {
    if !t
        .revoke_live_session(app_id, user_id, session_id, now)
        .await?
    {
        return Ok(false);
    }
    let event = Event::in_context(app_id, kind::SESSIONS_REVOKED, audit)
        .user(user_id)
        .session(session_id)
        .detail(json!({"scope": "one", "count": 1}));
    t.insert_event(&event).await?;
    Ok(true)
}

/// Revokes every live session of user `user_id` but `keep` (the caller's own: "log out my
/// other devices"; `None`: everywhere), with a `sessions_revoked` event that says which and
/// how many; how many.
pub(crate) async fn revoke_sessions_but<T: Transaction>(
    t: &mut T,
    app_id: &str,
    user_id: &str,
    keep: Option<&str>,
    audit: audit::Context,
) -> StoreResult<u64> {
    let n = t.revoke_sessions_but(app_id, user_id, keep).await?;
    let scope = if keep.is_some() {
        "other_devices"
    } else {
        "everywhere"
    };
    let mut event = Event::in_context(app_id, kind::SESSIONS_REVOKED, audit)
        .user(user_id)
        .detail(json!({"scope": scope, "count": n}));
    if let Some(k) = keep {
        event = event.session(k);
    }
    t.insert_event(&event).await?;
    Ok(n)
}
