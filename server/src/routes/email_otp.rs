//! The `email-otp` provider's send route (#23); its login is the generic provider login
//! (routes/auth.rs, email_otp.rs).

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::{RawBody, json_object, path_error};
use crate::email_otp::{self, PROVIDER};
use crate::error::ApiError;
use crate::rate_limit::ClientAddr;
use crate::state::AppState;
use crate::store::EmailOtpCode;
use crate::tokens;

/// POST `email-otp/send` `{"email"}`: mails a new code to the address, replacing its live code
/// (attempts reset). 204 for every well-formed address, whether or not it has an account (no
/// enumeration); 400 for a malformed one; 429 over the mails-per-client-address limit.
pub async fn send(
    State(st): State<AppState>,
    ClientAddr(addr): ClientAddr,
    path: Result<Path<String>, PathRejection>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    st.rate_limits.mail(addr)?;
    let Path(app_id) = path.map_err(path_error)?;
    let app = st.app(&app_id);
    st.counters
        .bump(app.as_ref().ok().map(|_| app_id.as_str()), "email_otp_send");
    let app = app?;
    let cfg = app
        .config
        .providers
        .email_otp
        .as_ref()
        .ok_or_else(|| ApiError::provider_not_found(PROVIDER))?;
    let email = email_otp::address(&json_object(&body)?)?;
    let now = st.now();
    let code = email_otp::new_code(cfg.code_length);
    let issued = EmailOtpCode {
        mac: email_otp::code_mac(&app.secret, &app.config.id, &email, &code),
        code,
        mail_id: tokens::new_object_id(),
        created_at: now,
        expires_at: now + cfg.code_lifetime_secs as i64,
        attempts: i64::from(cfg.max_attempts),
    };
    let (code, mail_id) = (issued.code.clone(), issued.mail_id.clone());
    st.store
        .issue_email_otp(&app.config.id, &email, issued)
        .await?;
    crate::mail::queued(&st, &app.config.id, PROVIDER, &email, &code, &mail_id);
    Ok(StatusCode::NO_CONTENT.into_response())
}
