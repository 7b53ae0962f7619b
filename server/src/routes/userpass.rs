//! The `local-userpass` flows: register, confirm, reset, and their resends.

use std::sync::Arc;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::{RawBody, json_object, path_error};
use crate::config::{ResetFunction, UserpassConfig};
use crate::email;
use crate::error::ApiError;
use crate::providers::req_str;
use crate::rate_limit::ClientAddr;
use crate::state::{AppRuntime, AppState};
use crate::store::{CONFIRM, MailToken, PasswordAccount, RESET, account_name_in_use};
use crate::tokens;

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
    let password = crate::passwords::new_password(req_str(&body, "password")?)?;
    let app_id = app.config.id.clone();
    // Refused before the slow hash when already taken; the insert decides in a race.
    if st.store.userpass(&app_id, &email).await?.is_some() {
        return Err(account_name_in_use());
    }
    let hash = st.passwords.hash(password).await?;
    let now = st.now();
    let confirm = (!cfg.auto_confirm).then(|| MailToken::new(CONFIRM, now));
    let mail = confirm
        .as_ref()
        .map(|t| (t.token.clone(), t.token_id.clone()));
    st.store
        .register(&app_id, &email, &hash, confirm, now)
        .await?;
    if let Some((token, token_id)) = mail {
        crate::mail::queued(&st, &app_id, CONFIRM, &email, &token, &token_id);
    }
    Ok(StatusCode::CREATED.into_response())
}

/// Stores a mail token and queues its mail (one transaction), then wakes the mail worker.
async fn issue(st: &AppState, app_id: &str, email: &str, t: MailToken) -> Result<(), ApiError> {
    if !st.config.sends_mail() {
        // Only an app that needs no mail starts without it (config.rs, needs_mail): a token
        // mailed nowhere would leave the user waiting for nothing.
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "MailNotConfigured",
            "this server sends no mail: its operator has to add [mail] (docs/SERVER.md, Mail)",
        ));
    }
    let (kind, token, token_id) = (t.kind, t.token.clone(), t.token_id.clone());
    st.store.issue_mail_token(app_id, email, t).await?;
    crate::mail::queued(st, app_id, kind, email, &token, &token_id);
    Ok(())
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
    st.store.confirm(&app_id, &token, &token_id, now).await?;
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
    issue(&st, &app_id, &email, MailToken::new(CONFIRM, now)).await?;
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
    issue(&st, &app_id, &email, MailToken::new(RESET, now)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// POST reset.
pub async fn reset(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let (app, _, body) = prologue(&st, path, "reset", &body)?;
    let password = crate::passwords::new_password(req_str(&body, "password")?)?;
    let token = req_str(&body, "token")?.to_string();
    let token_id = req_str(&body, "tokenId")?.to_string();
    let app_id = app.config.id.clone();
    let now = st.now();
    // Check (without consuming) before the slow hash, so bad tokens answer fast.
    let known = st.store.reset_token_hash(&app_id, &token_id, now).await?;
    if known.as_deref() != Some(tokens::sha256_hex(&token).as_str()) {
        return Err(crate::store::invalid_mail_token());
    }
    let hash = st.passwords.hash(password).await?;
    let account = PasswordAccount::ResetToken(&token, &token_id);
    st.store.set_password(&app_id, account, &hash, now).await?;
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
    let password = crate::passwords::new_password(req_str(&body, "password")?)?;
    match body.get("arguments") {
        None | Some(Value::Array(_)) => {}
        Some(_) => return Err(ApiError::bad_request("field 'arguments' must be an array")),
    }
    let app_id = app.config.id.clone();
    st.store
        .userpass(&app_id, &email)
        .await?
        .ok_or_else(ApiError::user_not_found)?;
    let now = st.now();
    match cfg.reset_function {
        ResetFunction::Fail => Err(ApiError::bad_request(format!(
            "failed to reset password for user \"{email}\""
        ))),
        ResetFunction::Pending => {
            issue(&st, &app_id, &email, MailToken::new(RESET, now)).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
        ResetFunction::Success => {
            let hash = st.passwords.hash(password).await?;
            let account = PasswordAccount::Email(&email);
            st.store.set_password(&app_id, account, &hash, now).await?;
            Ok(StatusCode::NO_CONTENT.into_response())
        }
    }
}
