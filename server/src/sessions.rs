//! Login sessions: issuing access and refresh tokens, and judging presented tokens.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::http::HeaderMap;
use rusqlite::{Connection, Transaction, params};

use crate::db::{self, SessionRow, UserRow};
use crate::error::{ApiError, Reason};
use crate::state::{AppRuntime, Inner};
use crate::tokens::{self, Claims, TYP_ACCESS, TYP_REFRESH, VerifyError};

/// How long a rotated-out refresh token keeps working (a retry after a lost response).
pub const ROTATION_GRACE_SECS: i64 = 10;

/// Signs an access token for `user`.
pub fn access_token(app: &AppRuntime, user: &UserRow, device_id: &str, now: i64) -> String {
    let claims = Claims {
        exp: now + app.config.access_token_lifetime_secs as i64,
        iat: now,
        sub: user.id.clone(),
        typ: TYP_ACCESS.to_string(),
        baas_device_id: device_id.to_string(),
        domain_id: Some(app.domain_id.clone()),
        iss: app.config.id.clone(),
        aud: None,
        user_data: user.custom_data.clone(),
        sid: None,
        // Unique per token: two tokens issued in the same second must still differ, so a
        // client can tell a refreshed token from the one it had.
        jti: Some(tokens::new_object_id()),
    };
    let active = app.keys().active().cloned();
    match active {
        Some(key) => crate::signing::sign(
            &key,
            &Claims {
                aud: Some(app.config.id.clone()),
                ..claims
            },
        ),
        None => tokens::sign(&claims, &app.secret),
    }
}

fn refresh_token(
    app: &AppRuntime,
    user_id: &str,
    device_id: &str,
    sid: &str,
    exp: i64,
    now: i64,
) -> String {
    let claims = Claims {
        exp,
        iat: now,
        sub: user_id.to_string(),
        typ: TYP_REFRESH.to_string(),
        baas_device_id: device_id.to_string(),
        domain_id: None,
        iss: app.config.id.clone(),
        aud: None,
        user_data: None,
        sid: Some(sid.to_string()),
        jti: Some(tokens::new_object_id()),
    };
    tokens::sign(&claims, &app.secret)
}

/// Starts a session for `user` and returns its first refresh token. `api_key_id`: the API key
/// it logs in with, whose deletion or disabling ends it.
pub fn start_session(
    tx: &Transaction,
    app: &AppRuntime,
    user: &UserRow,
    device_id: &str,
    api_key_id: Option<&str>,
    now: i64,
) -> rusqlite::Result<String> {
    let lifetime = if user.anonymous {
        app.config.anon_refresh_token_lifetime_secs as i64
    } else {
        app.refresh_lifetime.load(Ordering::SeqCst)
    };
    let expires_at = now.saturating_add(lifetime);
    let sid = tokens::new_object_id();
    let token = refresh_token(app, &user.id, device_id, &sid, expires_at, now);
    db::create_session(
        tx,
        &sid,
        &app.config.id,
        &user.id,
        device_id,
        now,
        expires_at,
        &tokens::sha256_hex(&token),
        api_key_id,
    )?;
    Ok(token)
}

/// The bearer token of a request.
pub fn bearer(headers: &HeaderMap) -> Result<String, ApiError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::invalid_session("must authenticate first: missing Authorization header")
        })?
        .to_str()
        .map_err(|_| ApiError::invalid_session("invalid Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::invalid_session("invalid Authorization header"))?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(ApiError::invalid_session("invalid Authorization header"));
    }
    Ok(token.trim().to_string())
}

/// Verifies a token of ours of type `typ`, finding its app from the (then verified) `iss`.
/// Counts the request as `op` for that app (not at all when `op` is empty).
pub fn verify_bearer(
    st: &Inner,
    headers: &HeaderMap,
    typ: &str,
    op: &str,
) -> Result<(Arc<AppRuntime>, Claims, String), ApiError> {
    let token = match bearer(headers) {
        Ok(t) => t,
        Err(e) => {
            st.counters.bump(None, op);
            return Err(e);
        }
    };
    let app = tokens::peek_issuer(&token).and_then(|iss| st.apps.get(&iss).cloned());
    st.counters
        .bump(app.as_ref().map(|a| a.config.id.as_str()), op);
    let app = app.ok_or_else(|| ApiError::invalid_session("invalid session: malformed token"))?;
    let claims = match app.verify(&token, st.now()) {
        Ok(c) => c,
        Err(VerifyError::UnknownKey) => {
            // Perhaps a key another instance made since our last reload: look again.
            st.reload_keys_soon();
            return Err(ApiError::invalid_session(
                "invalid session: signature is invalid",
            ));
        }
        Err(VerifyError::Invalid) => {
            return Err(ApiError::invalid_session(
                "invalid session: signature is invalid",
            ));
        }
        Err(VerifyError::Expired) if typ == TYP_REFRESH => {
            return Err(ApiError::session_ended(Reason::Expired));
        }
        Err(VerifyError::Expired) => {
            return Err(ApiError::invalid_session(
                "invalid session: access token expired",
            ));
        }
    };
    if claims.typ != typ {
        return Err(ApiError::invalid_session(format!(
            "invalid session: wrong token type (expected {typ})",
        )));
    }
    Ok((app, claims, token))
}

/// Verifies an access token and loads its user, who must still exist and not be disabled: a
/// disabled user's unexpired access tokens are refused for every call (deleting the account
/// included, or disabling could be escaped by deleting and registering again).
pub async fn access_user(
    st: &Inner,
    headers: &HeaderMap,
    op: &str,
) -> Result<(Arc<AppRuntime>, Claims, UserRow), ApiError> {
    let (app, claims, _) = verify_bearer(st, headers, TYP_ACCESS, op)?;
    let app_id = app.config.id.clone();
    let sub = claims.sub.clone();
    let user = st
        .db
        .call(move |conn| Ok(db::user(conn, &app_id, &sub)?))
        .await?
        .ok_or_else(|| ApiError::invalid_session("invalid session: user not found"))?;
    if user.disabled {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "UserDisabled",
            "user disabled",
        ));
    }
    Ok((app, claims, user))
}

/// What a refresh token is presented for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshUse {
    /// POST session: mint an access token (and rotate).
    Refresh,
    /// DELETE session.
    Logout,
    /// Authenticate another call (API keys).
    Authenticate,
}

/// The outcome of a successful refresh-token check.
pub struct CheckedSession {
    /// The session.
    pub session: SessionRow,
    /// Its user.
    pub user: UserRow,
}

/// Judges a verified refresh token against the database. Reuse of a rotated-out token after
/// the grace window revokes the whole session (that write is committed even though the call fails).
pub fn check_refresh(
    conn: &Connection,
    app: &AppRuntime,
    claims: &Claims,
    token: &str,
    now: i64,
) -> Result<CheckedSession, ApiError> {
    let user = db::user(conn, &app.config.id, &claims.sub)?
        .ok_or_else(|| ApiError::session_ended(Reason::Deleted))?;
    if user.disabled {
        return Err(ApiError::session_ended(Reason::Disabled));
    }
    let (session, superseded) = db::session_by_token(conn, &tokens::sha256_hex(token))?
        .ok_or_else(|| ApiError::session_ended(Reason::Revoked))?;
    if session.revoked || session.user_id != user.id {
        return Err(ApiError::session_ended(Reason::Revoked));
    }
    if session.expires_at <= now {
        return Err(ApiError::session_ended(Reason::Expired));
    }
    let idle = app.config.inactivity_timeout_secs as i64;
    if idle > 0 && now - session.last_used_at > idle {
        return Err(ApiError::session_ended(Reason::Expired));
    }
    let token_hash = tokens::sha256_hex(token);
    if let Some(at) = superseded
        && now > at + ROTATION_GRACE_SECS
        && !answer_was_lost(conn, &session.id, at)?
    {
        tracing::warn!(session = %session.id, "rotated refresh token reused: revoking the session");
        conn.execute(
            "UPDATE sessions SET revoked = 1 WHERE id = ?1",
            [&session.id],
        )?;
        return Err(ApiError::session_ended(Reason::Revoked));
    }
    // Marks the token as seen by its client: from now on its parent counts as reused.
    conn.execute(
        "UPDATE refresh_tokens SET used_at = ?1 WHERE token_hash = ?2 AND used_at IS NULL",
        params![now, token_hash],
    )?;
    Ok(CheckedSession { session, user })
}

/// Whether a rotated-out token superseded at `superseded_at` is the immediate parent of the
/// session's current token, and that current token has never been presented: its client then
/// never received it (a crash or a lost answer after the rotation was committed), and the
/// parent is still the client's latest token. Anything older, or a parent whose successor was
/// used, is reuse.
fn answer_was_lost(
    conn: &Connection,
    session_id: &str,
    superseded_at: i64,
) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT
           (SELECT MAX(superseded_at) FROM refresh_tokens WHERE session_id = ?1) = ?2
           AND EXISTS (SELECT 1 FROM refresh_tokens
                       WHERE session_id = ?1 AND superseded_at IS NULL AND used_at IS NULL)",
        params![session_id, superseded_at],
        |r| r.get(0),
    )
}

/// Records a refresh: marks the session used and, with rotation, issues its next refresh token.
pub fn record_refresh(
    conn: &mut Connection,
    app: &AppRuntime,
    checked: &CheckedSession,
    now: i64,
) -> Result<Option<String>, ApiError> {
    let tx = conn.transaction()?;
    tx.execute(
        "UPDATE sessions SET last_used_at = ?1 WHERE id = ?2",
        params![now, checked.session.id],
    )?;
    let rotated = if app.config.refresh_token_rotation {
        let s = &checked.session;
        let token = refresh_token(app, &s.user_id, &s.device_id, &s.id, s.expires_at, now);
        // A retried parent supersedes the successor its client never got, too.
        tx.execute(
            "UPDATE refresh_tokens SET superseded_at = ?1 WHERE session_id = ?2 AND superseded_at IS NULL",
            params![now, s.id],
        )?;
        tx.execute(
            "INSERT INTO refresh_tokens (token_hash, session_id, issued_at) VALUES (?1, ?2, ?3)",
            params![tokens::sha256_hex(&token), s.id, now],
        )?;
        Some(token)
    } else {
        None
    };
    tx.commit()?;
    Ok(rotated)
}
