//! The `local-userpass` flows: register, confirm, reset, and their resends.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::{Map, Value};

use super::{RawBody, json_object, path_error};
use crate::config::{ResetFunction, UserpassConfig};
use crate::db;
use crate::email;
use crate::error::ApiError;
use crate::providers::req_str;
use crate::rate_limit::ClientAddr;
use crate::state::{AppRuntime, AppState};
use crate::tokens;

/// How long a confirmation or reset token stays valid.
pub const TOKEN_LIFETIME_SECS: i64 = 30 * 60;

const CONFIRM: &str = "confirm";
const RESET: &str = "reset";

/// What every flow starts from: the app, its userpass settings and the JSON body.
type Prologue = (Arc<AppRuntime>, UserpassConfig, Map<String, Value>);

/// Common prologue: the app, its userpass settings and the JSON body.
fn prologue(
    st: &AppState,
    path: Result<Path<String>, PathRejection>,
    op: &str,
    body: &[u8],
) -> Result<Prologue, ApiError> {
    let Path(app_id) = path.map_err(path_error)?;
    let app = st.app(&app_id);
    st.counters
        .bump(app.as_ref().ok().map(|_| app_id.as_str()), op);
    let app = app?;
    let cfg = app
        .config
        .providers
        .local_userpass
        .clone()
        .ok_or_else(|| ApiError::provider_not_found("local-userpass"))?;
    let body = json_object(body)?;
    Ok((app, cfg, body))
}

fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if !(6..=128).contains(&n) {
        return Err(ApiError::bad_request(
            "password must be between 6 and 128 characters",
        ));
    }
    Ok(())
}

fn invalid_token() -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "UserpassTokenInvalid",
        "invalid token data",
    )
}

/// Creates a single-use token (stored hashed) and puts it in the outbox.
fn issue_token(
    conn: &Connection,
    app_id: &str,
    email: &str,
    kind: &str,
    now: i64,
) -> rusqlite::Result<()> {
    let token = tokens::random_alnum(64);
    let token_id = tokens::new_object_id();
    conn.execute(
        "INSERT INTO userpass_tokens (token_id, app_id, email, kind, token_hash, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![token_id, app_id, email, kind, tokens::sha256_hex(&token), now + TOKEN_LIFETIME_SECS],
    )?;
    conn.execute(
        "INSERT INTO outbox (app_id, kind, email, token, token_id, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![app_id, kind, email, token, token_id, now],
    )?;
    Ok(())
}

/// Consumes a token: returns its email when `token`/`tokenId` match an unexpired token of `kind`.
fn take_token(
    conn: &Connection,
    app_id: &str,
    kind: &str,
    token: &str,
    token_id: &str,
    now: i64,
) -> Result<String, ApiError> {
    let row: Option<(String, String, i64)> = conn
        .query_row(
            "SELECT email, token_hash, expires_at FROM userpass_tokens WHERE token_id = ?1 AND app_id = ?2 AND kind = ?3",
            params![token_id, app_id, kind],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    match row {
        Some((email, hash, exp)) if hash == tokens::sha256_hex(token) && exp > now => {
            conn.execute(
                "DELETE FROM userpass_tokens WHERE token_id = ?1",
                [token_id],
            )?;
            Ok(email)
        }
        _ => Err(invalid_token()),
    }
}

/// Sets a new password and ends the user's sessions (like Firebase: a password reset signs
/// out every device, since the old password may have been compromised).
fn set_password(
    conn: &mut Connection,
    app_id: &str,
    email: &str,
    hash: &str,
) -> Result<(), ApiError> {
    let tx = conn.transaction()?;
    let row = db::userpass(&tx, app_id, email)?.ok_or_else(ApiError::user_not_found)?;
    tx.execute(
        "UPDATE userpass SET password_hash = ?1 WHERE app_id = ?2 AND email = ?3",
        params![hash, app_id, email],
    )?;
    tx.execute(
        "DELETE FROM userpass_tokens WHERE app_id = ?1 AND email = ?2 AND kind = 'reset'",
        params![app_id, email],
    )?;
    if let Some(user) = db::identity_owner(&tx, app_id, "local-userpass", &row.identity_id)? {
        db::revoke_user_sessions(&tx, &user)?;
    }
    tx.commit()?;
    Ok(())
}

/// POST register.
pub async fn register(
    State(st): State<AppState>,
    ClientAddr(addr): ClientAddr,
    path: Result<Path<String>, PathRejection>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    st.rate_limits.signup(addr)?;
    let (app, cfg, body) = prologue(&st, path, "register", &body)?;
    let email = email::canonical(req_str(&body, "email")?)
        .map_err(|e| ApiError::bad_request(format!("field 'email': {}", e.0)))?;
    let password = req_str(&body, "password")?.to_string();
    check_password(&password)?;
    let app_id = app.config.id.clone();
    let (a, e) = (app_id.clone(), email.clone());
    let taken = st
        .db
        .call(move |conn| Ok(db::userpass(conn, &a, &e)?.is_some()))
        .await?;
    let in_use = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "AccountNameInUse",
            "name already in use",
        )
    };
    if taken {
        return Err(in_use());
    }
    let hash = st.passwords.hash(password).await?;
    let now = st.now();
    st.db
        .call(move |conn| {
            let tx = conn.transaction()?;
            if db::userpass(&tx, &app_id, &email)?.is_some() {
                return Err(in_use());
            }
            tx.execute(
                "INSERT INTO userpass (app_id, email, identity_id, password_hash, confirmed, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![app_id, email, tokens::new_object_id(), hash, cfg.auto_confirm, now],
            )?;
            if !cfg.auto_confirm {
                issue_token(&tx, &app_id, &email, CONFIRM, now)?;
            }
            tx.commit()?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::CREATED.into_response())
}

/// POST confirm.
pub async fn confirm(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let (app, _, body) = prologue(&st, path, "confirm", &body)?;
    let token = req_str(&body, "token")?.to_string();
    let token_id = req_str(&body, "tokenId")?.to_string();
    let app_id = app.config.id.clone();
    let now = st.now();
    st.db
        .call(move |conn| {
            let tx = conn.transaction()?;
            let email = take_token(&tx, &app_id, CONFIRM, &token, &token_id, now)?;
            tx.execute(
                "UPDATE userpass SET confirmed = 1 WHERE app_id = ?1 AND email = ?2",
                params![app_id, email],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn resend_confirmation(
    st: AppState,
    path: Result<Path<String>, PathRejection>,
    op: &str,
    body: &[u8],
) -> Result<Response, ApiError> {
    let (app, _, body) = prologue(&st, path, op, body)?;
    let email = email::lookup(req_str(&body, "email")?);
    let app_id = app.config.id.clone();
    let now = st.now();
    st.db
        .call(move |conn| {
            let row = db::userpass(conn, &app_id, &email)?.ok_or_else(ApiError::user_not_found)?;
            if row.confirmed {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "UserAlreadyConfirmed",
                    "already confirmed",
                ));
            }
            issue_token(conn, &app_id, &email, CONFIRM, now)?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// POST confirm/send.
pub async fn confirm_send(
    State(st): State<AppState>,
    ClientAddr(addr): ClientAddr,
    path: Result<Path<String>, PathRejection>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    st.rate_limits.mail(addr)?;
    resend_confirmation(st, path, "confirm_send", &body).await
}

/// POST confirm/call: there is no confirmation function runtime; behaves like confirm/send.
pub async fn confirm_call(
    State(st): State<AppState>,
    ClientAddr(addr): ClientAddr,
    path: Result<Path<String>, PathRejection>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    st.rate_limits.mail(addr)?;
    resend_confirmation(st, path, "confirm_call", &body).await
}

/// POST reset/send.
pub async fn reset_send(
    State(st): State<AppState>,
    ClientAddr(addr): ClientAddr,
    path: Result<Path<String>, PathRejection>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    st.rate_limits.mail(addr)?;
    let (app, _, body) = prologue(&st, path, "reset_send", &body)?;
    let email = email::lookup(req_str(&body, "email")?);
    let app_id = app.config.id.clone();
    let now = st.now();
    st.db
        .call(move |conn| {
            db::userpass(conn, &app_id, &email)?.ok_or_else(ApiError::user_not_found)?;
            issue_token(conn, &app_id, &email, RESET, now)?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// POST reset.
pub async fn reset(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let (app, _, body) = prologue(&st, path, "reset", &body)?;
    let password = req_str(&body, "password")?.to_string();
    let token = req_str(&body, "token")?.to_string();
    let token_id = req_str(&body, "tokenId")?.to_string();
    check_password(&password)?;
    let app_id = app.config.id.clone();
    let now = st.now();
    // Check (without consuming) before the slow hash, so bad tokens answer fast.
    let (a, tid) = (app_id.clone(), token_id.clone());
    let known = st
        .db
        .call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT token_hash FROM userpass_tokens WHERE token_id = ?1 AND app_id = ?2 AND kind = 'reset' AND expires_at > ?3",
                    params![tid, a, now],
                    |r| r.get::<_, String>(0),
                )
                .optional()?)
        })
        .await?;
    if known.as_deref() != Some(tokens::sha256_hex(&token).as_str()) {
        return Err(invalid_token());
    }
    let hash = st.passwords.hash(password).await?;
    st.db
        .call(move |conn| {
            let email = take_token(conn, &app_id, RESET, &token, &token_id, now)?;
            set_password(conn, &app_id, &email, &hash)
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// POST reset/call: the configured `reset_function` decides.
pub async fn reset_call(
    State(st): State<AppState>,
    ClientAddr(addr): ClientAddr,
    path: Result<Path<String>, PathRejection>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    st.rate_limits.mail(addr)?;
    let (app, cfg, body) = prologue(&st, path, "reset_call", &body)?;
    let email = email::lookup(req_str(&body, "email")?);
    let password = req_str(&body, "password")?.to_string();
    match body.get("arguments") {
        None | Some(Value::Array(_)) => {}
        Some(_) => return Err(ApiError::bad_request("field 'arguments' must be an array")),
    }
    check_password(&password)?;
    let app_id = app.config.id.clone();
    let (a, e) = (app_id.clone(), email.clone());
    st.db
        .call(move |conn| {
            db::userpass(conn, &a, &e)?.ok_or_else(ApiError::user_not_found)?;
            Ok(())
        })
        .await?;
    let now = st.now();
    match cfg.reset_function {
        ResetFunction::Fail => Err(ApiError::bad_request(format!(
            "failed to reset password for user \"{email}\""
        ))),
        ResetFunction::Pending => {
            st.db
                .call(move |conn| Ok(issue_token(conn, &app_id, &email, RESET, now)?))
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ResetFunction::Success => {
            let hash = st.passwords.hash(password).await?;
            st.db
                .call(move |conn| set_password(conn, &app_id, &email, &hash))
                .await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}
