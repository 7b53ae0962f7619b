//! What email/password accounts write, decided once for both back ends (#28): a registration
//! (with its confirmation mail, or confirmed at once), an account an admin creates with its
//! user, a new confirmation or reset mail, a confirmation, and a new password (which voids the
//! account's reset tokens and ends its user's sessions). The back ends run these over their
//! [`Transaction`].

use serde_json::{Map, Value, json};

use super::transaction::{RowLock, Transaction};
use super::{
    CONFIRM, IdentityRow, MailToken, PasswordAccount, RESET, StoreResult, UserRow, import::USERPASS,
};
use crate::audit::{self, Event, kind};
use crate::error::ApiError;
use crate::tokens;

/// Registers `email` with `password_hash`: unconfirmed with the `confirm` mail queued, or
/// confirmed at once without one. 409 AccountNameInUse when the address has an account.
pub(crate) async fn register<T: Transaction>(
    t: &mut T,
    app_id: &str,
    email: &str,
    password_hash: &str,
    confirm: Option<&MailToken>,
    now: i64,
    audit: audit::Context,
) -> StoreResult<()> {
    // The account's unique (app, email) key decides, so of two registrations at once one wins.
    let identity = tokens::new_object_id();
    let confirmed = confirm.is_none();
    if !t
        .insert_account(app_id, email, &identity, password_hash, confirmed, now)
        .await?
    {
        return Err(super::account_name_in_use());
    }
    if let Some(token) = confirm {
        t.store_mail_token(app_id, email, token).await?;
    }
    let event = Event::in_context(app_id, kind::REGISTERED, audit)
        .at(now)
        .detail(json!({"confirmed": confirmed}));
    t.insert_event(&event).await
}

/// An admin's account: `email` registered and confirmed, with its user and `local-userpass`
/// identity made at once; the user and its identities. 409 AccountNameInUse when the address
/// has an account.
pub(crate) async fn create_confirmed_user<T: Transaction>(
    t: &mut T,
    app_id: &str,
    email: &str,
    password_hash: &str,
    now: i64,
    audit: audit::Context,
) -> StoreResult<(UserRow, Vec<IdentityRow>)> {
    let identity = tokens::new_object_id();
    if !t
        .insert_account(app_id, email, &identity, password_hash, true, now)
        .await?
    {
        return Err(super::account_name_in_use());
    }
    let user_id = t.create_user(app_id, now, false).await?;
    let mut data = Map::new();
    data.insert("email".into(), Value::String(email.to_string()));
    t.upsert_identity(app_id, USERPASS, &identity, &user_id, &data, now)
        .await?;
    // The actor comes from the request: the admin.
    let event = Event::in_context(app_id, kind::REGISTERED, audit)
        .at(now)
        .user(&user_id)
        .detail(json!({"confirmed": true}));
    t.insert_event(&event).await?;
    let user = t
        .user(app_id, &user_id)
        .await?
        .ok_or_else(ApiError::internal)?;
    let identities = t.identities(&user_id).await?;
    Ok((user, identities))
}

/// Queues a confirmation or reset mail for the account of `email`, its row locked. 404 when
/// there is no account; 400 when a confirmation is asked for a confirmed one.
pub(crate) async fn issue_mail_token<T: Transaction>(
    t: &mut T,
    app_id: &str,
    email: &str,
    token: &MailToken,
) -> StoreResult<()> {
    let account = t
        .account(app_id, email, RowLock::Update)
        .await?
        .ok_or_else(ApiError::user_not_found)?;
    if token.kind == CONFIRM && account.confirmed {
        return Err(super::already_confirmed());
    }
    t.store_mail_token(app_id, email, token).await
}

/// Confirms the account a confirmation token was issued for, consuming the token (exactly
/// once, whichever instance gets it). 400 UserpassTokenInvalid for a token that does not match
/// or has expired.
pub(crate) async fn confirm<T: Transaction>(
    t: &mut T,
    app_id: &str,
    token: &str,
    token_id: &str,
    now: i64,
    audit: audit::Context,
) -> StoreResult<()> {
    let email = t
        .take_mail_token(app_id, CONFIRM, token, token_id, now)
        .await?
        .ok_or_else(super::invalid_mail_token)?;
    t.set_confirmed(app_id, &email).await?;
    let mut event = Event::in_context(app_id, kind::CONFIRMED, audit).at(now);
    if let Some(row) = t.account(app_id, &email, RowLock::None).await?
        && let Some(user) = t.identity_owner(app_id, USERPASS, &row.identity_id).await?
    {
        event = event.user(&user);
    }
    t.insert_event(&event).await
}

/// Sets the password of `account` (its row locked; a reset token is consumed): the account's
/// other reset tokens are void, and its user's sessions end (PROTOCOL.md: a new password logs
/// out every device). 404 when there is no account; 400 for a reset token that does not match.
pub(crate) async fn set_password<T: Transaction>(
    t: &mut T,
    app_id: &str,
    account: PasswordAccount<'_>,
    password_hash: &str,
    now: i64,
    audit: audit::Context,
) -> StoreResult<()> {
    let email = match account {
        PasswordAccount::Email(e) => e.to_string(),
        PasswordAccount::ResetToken(token, token_id) => t
            .take_mail_token(app_id, RESET, token, token_id, now)
            .await?
            .ok_or_else(super::invalid_mail_token)?,
    };
    let row = t
        .account(app_id, &email, RowLock::Update)
        .await?
        .ok_or_else(ApiError::user_not_found)?;
    t.set_account_password(app_id, &email, password_hash)
        .await?;
    t.delete_mail_tokens(app_id, &email, RESET).await?;
    let mut event = Event::in_context(app_id, kind::PASSWORD_RESET, audit).at(now);
    if let Some(user) = t.identity_owner(app_id, USERPASS, &row.identity_id).await? {
        let n = t.revoke_user_sessions(&user).await?;
        event = event.user(&user).detail(json!({"sessions_revoked": n}));
    }
    t.insert_event(&event).await
}
