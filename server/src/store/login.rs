//! What a login writes, decided once for both back ends (#28): the sign-in code it spends, the
//! user it logs into (or creates, or links an identity to), the checks that what its
//! credentials proved is still there ("A login that races a deletion", store/mod.rs), and the
//! session. The back ends run [`login`] over their [`Transaction`].

use super::transaction::{RowLock, Transaction, UserLock};
use super::{CodeVerdict, Login, NewSession, StartSession, StoreResult, UserRow, judge_code};
use crate::audit::{self, Event, kind};
use crate::credentials::Proof;
use crate::error::ApiError;
use crate::tokens;

/// Runs `login` in `t`. `Ok(Err(e))`: the login's code was refused, and its spent attempt (or
/// the removal of an expired code) is to be committed; `Err(e)`: refused or failed, nothing is
/// to be kept. `Ok(Ok(..))`: the user (its last login now) and the new session, with the
/// login's audit event written, in `audit` (the request's context, [`audit::context`]).
pub(crate) async fn login<T: Transaction>(
    t: &mut T,
    login: Login,
    start: StartSession,
    audit: audit::Context,
) -> StoreResult<Result<(UserRow, NewSession), ApiError>> {
    let event = login_event(&login, audit);
    if let Some(refused) = spend_code(t, &login).await? {
        return Ok(Err(refused));
    }
    let (user, session) = match &login.identity {
        None => anonymous(t, &login.app_id, login.now, start).await?,
        Some(_) => with_identity(t, login, start).await?,
    };
    t.insert_event(&event.user(&user.id).session(&session.id))
        .await?;
    Ok(Ok((user, session)))
}

/// The audit event of `login` (kind `login`, with `link` in its detail), its user and session
/// to be added once known.
fn login_event(login: &Login, audit: audit::Context) -> Event {
    let provider = login
        .identity
        .as_ref()
        .map_or("anon-user", |i| i.provider_type.as_str());
    Event::in_context(&login.app_id, kind::LOGIN, audit)
        .at(login.now)
        .detail(serde_json::json!({"provider": provider, "link": login.link_to.is_some()}))
}

/// An anonymous login: a new user with an identity of its own, and its session. What was just
/// written is the user: nothing to read back, nothing another transaction can see yet.
async fn anonymous<T: Transaction>(
    t: &mut T,
    app_id: &str,
    now: i64,
    start: StartSession,
) -> StoreResult<(UserRow, NewSession)> {
    let id = t.create_user(app_id, now, true).await?;
    let external_id = tokens::new_object_id();
    t.upsert_identity(
        app_id,
        "anon-user",
        &external_id,
        &id,
        &Default::default(),
        now,
    )
    .await?;
    let user = UserRow {
        id,
        app_id: app_id.to_string(),
        created_at: now,
        last_login_at: now,
        disabled: false,
        anonymous: true,
        custom_data: None,
    };
    let session = start(&user);
    t.insert_session(app_id, &user.id, &session, now).await?;
    Ok((user, session))
}

/// A login (or a link) with a verified identity.
async fn with_identity<T: Transaction>(
    t: &mut T,
    login: Login,
    start: StartSession,
) -> StoreResult<(UserRow, NewSession)> {
    let gone = login.gone();
    let Login {
        app_id,
        identity: Some(ident),
        link_to,
        now,
    } = login
    else {
        return Err(ApiError::internal());
    };
    let app_id = app_id.as_str();
    // What the credentials proved is found again and locked before the session is written
    // (store/mod.rs, "A login that races a deletion"), in the order a deletion takes its rows:
    // the email account, then the user, then the API key. A deletion that committed first is
    // seen (PostgreSQL's READ COMMITTED: each statement sees what committed before it, a lock
    // waits for the deletion and then finds no row); one that comes later waits for this
    // login, then deletes its session.
    if let Proof::Userpass {
        email,
        password_hash,
    } = &ident.proof
    {
        // Deleted, or its password changed, since the password was checked: what a login a
        // moment later gets.
        let still = t
            .account(app_id, email, RowLock::Share)
            .await?
            .is_some_and(|r| {
                r.identity_id == ident.external_id && r.password_hash == *password_hash
            });
        if !still {
            return Err(super::invalid_password());
        }
    }
    let owner = match &ident.proof {
        Proof::ApiKey { owner } => Some(owner.clone()),
        proof => {
            let owner = t
                .identity_owner(app_id, &ident.provider_type, &ident.external_id)
                .await?;
            match (owner, proof) {
                // An address without a code user yet: its confirmed email account's user, if
                // any (store/mod.rs).
                (None, Proof::EmailOtp { email, .. }) => {
                    confirmed_account_owner(t, app_id, email).await?
                }
                (owner, _) => owner,
            }
        }
    };
    let linking = link_to.is_some();
    if let Some(c) = &link_to
        && !t.lock_user(app_id, c, UserLock::Login).await?
    {
        return Err(super::linking_user_gone());
    }
    let mut created = false;
    let user_id = match (link_to, owner) {
        (Some(c), Some(o)) if c != o => return Err(super::identity_of_another_user()),
        (Some(c), _) => {
            // A linked anonymous user is a normal user from now on.
            t.set_not_anonymous(&c).await?;
            c
        }
        (None, Some(o)) if t.lock_user(app_id, &o, UserLock::Login).await? => o,
        (None, owner) => {
            // The owner was deleted after it was read here: its identities went with it. An
            // email account or an API key went with it too. (An address proved by a code is
            // like an outside identity: its email account, if that was the owner, is locked
            // and cannot have gone.)
            if owner.is_some() && !matches!(ident.proof, Proof::Outside | Proof::EmailOtp { .. }) {
                return Err(gone);
            }
            created = true;
            t.create_user(app_id, now, false).await?
        }
    };
    if let Proof::ApiKey { .. } = &ident.proof {
        match t
            .api_key_disabled(app_id, &ident.external_id, &user_id)
            .await?
        {
            None => return Err(super::invalid_api_key()),
            Some(true) => return Err(super::api_key_disabled()),
            Some(false) => {}
        }
    }
    // Two first logins of one new identity at once (on two instances): both made a user, the
    // identity's primary key keeps the first; the second's insert waits for it, then only
    // updates the profile data. The second then logs in as the first's user and drops its own,
    // as if it had come a moment later. A link that lost the same race is refused like any
    // link of a taken identity.
    t.upsert_identity(
        app_id,
        &ident.provider_type,
        &ident.external_id,
        &user_id,
        &ident.data,
        now,
    )
    .await?;
    let owner = t
        .identity_owner(app_id, &ident.provider_type, &ident.external_id)
        .await?
        .ok_or_else(ApiError::internal)?;
    let user_id = if owner != user_id {
        if linking {
            return Err(super::identity_of_another_user());
        }
        if created {
            t.drop_created_user(&user_id).await?;
        }
        owner
    } else {
        user_id
    };
    let user = t.record_login(app_id, &user_id, now).await?.ok_or(gone)?;
    if user.disabled {
        return Err(super::user_disabled().about_user(&user.id));
    }
    let session = start(&user);
    t.insert_session(app_id, &user.id, &session, now).await?;
    Ok((user, session))
}

/// Judges a login's code, if it has one ([`judge_code`]), its row locked: the refusal to
/// answer (its spent attempt to be committed), or `None` to go on (a right code is deleted
/// here, with the login's other writes).
async fn spend_code<T: Transaction>(t: &mut T, login: &Login) -> StoreResult<Option<ApiError>> {
    let Some(Proof::EmailOtp { email, mac }) = login.identity.as_ref().map(|i| &i.proof) else {
        return Ok(None);
    };
    let app_id = login.app_id.as_str();
    let stored = t.email_code(app_id, email).await?;
    let verdict = judge_code(stored.as_ref(), mac, login.now);
    if stored.is_some() {
        match verdict {
            CodeVerdict::Wrong { left } if left > 0 => {
                t.set_code_attempts(app_id, email, left).await?;
            }
            // Used, void after its last wrong attempt, or expired.
            _ => t.delete_code(app_id, email).await?,
        }
    }
    Ok(verdict.error())
}

/// The user of the confirmed email account of `email`, the account locked `FOR SHARE` (a
/// deletion or a password change waits for the login): who a code for the address logs into
/// when no user has the address's `email-otp` identity yet.
async fn confirmed_account_owner<T: Transaction>(
    t: &mut T,
    app_id: &str,
    email: &str,
) -> StoreResult<Option<String>> {
    match t.account(app_id, email, RowLock::Share).await? {
        Some(row) if row.confirmed => {
            t.identity_owner(app_id, super::import::USERPASS, &row.identity_id)
                .await
        }
        _ => Ok(None),
    }
}
