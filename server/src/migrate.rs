//! Lazy migration (#24, SERVER.md "Lazy migration"): users an export did not bring are moved
//! one by one as they log in. With `[app.providers.local-userpass] migrate_webhook`, a login
//! for an email that has no account here asks the old system (POST `{"email", "password"}`,
//! `Authorization: Bearer <shared secret>`); when it vouches for the password (200 with the
//! user's id), the user is created here as an import line would create it, with the server's
//! own argon2 hash of that password, and the login goes on. The account exists from then on,
//! so the old system is never asked about that email again.
//!
//! The old system is slow or down at times: the call is bounded by `migrate_webhook_timeout_ms`
//! and any failure that is not a refusal answers 503 with `Retry-After`, never a wrong-password
//! error (the user's password may be right). Redirects are not followed (the password must go
//! to the configured URL only), and the URL is https (http on loopback only), checked when the
//! config is read.

use std::sync::LazyLock;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::UserpassConfig;
use crate::error::ApiError;
use crate::import::{ImportAccount, ImportIdentity, ImportUser, USERPASS};

/// Seconds a caller is told to wait when the old system did not answer.
pub const RETRY_AFTER_SECS: u64 = 5;

/// The largest answer read, in bytes.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A client that follows no redirect: the password goes to the configured URL only.
static CLIENT: LazyLock<reqwest::Client> = LazyLock::new(|| {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_default()
});

/// What the old system answers for a password it vouches for (other fields are ignored).
#[derive(Deserialize)]
struct Answer {
    id: String,
    #[serde(default)]
    custom_data: Option<Map<String, Value>>,
    #[serde(default)]
    created_at: Option<Value>,
}

fn unavailable(why: &str) -> ApiError {
    tracing::warn!("lazy migration: {why}");
    ApiError::unavailable(
        "the system this app is moving from did not answer; retry the login shortly",
        RETRY_AFTER_SECS,
    )
}

/// Asks the old system about `email` (canonical) and `password`: the user to create (an
/// import of one line whose `local-userpass` account has `password` as its column: the
/// caller's argon2 hash of the password), or `None` when it does not know the email or
/// refuses the password (401, 403 or 404). Errors: 503 with `Retry-After` when it does not
/// answer within the timeout, answers anything else, or answers a user that is not valid
/// (the reason logged, not shown to the caller).
pub async fn ask(
    cfg: &UserpassConfig,
    app_id: &str,
    email: &str,
    password: &str,
) -> Result<Option<ImportUser>, ApiError> {
    let (Some(url), Some(secret)) = (&cfg.migrate_webhook, &cfg.migrate_webhook_secret) else {
        return Err(unavailable("migrate_webhook is set but its secret is not"));
    };
    let timeout = Duration::from_millis(cfg.migrate_webhook_timeout_ms);
    let call = async {
        let resp = CLIENT
            .post(url)
            .bearer_auth(&secret.0)
            .json(&serde_json::json!({"email": email, "password": password}))
            .send()
            .await
            .map_err(|e| unavailable(&format!("unreachable: {}", e.without_url())))?;
        let status = resp.status().as_u16();
        if matches!(status, 401 | 403 | 404) {
            return Ok(None);
        }
        if status != 200 {
            return Err(unavailable(&format!("answered status {status}")));
        }
        let mut body = Vec::new();
        let mut resp = resp;
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|_| unavailable("its answer could not be read"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_ANSWER_BYTES {
                return Err(unavailable("its answer is too long"));
            }
        }
        Ok(Some(body))
    };
    let body = match tokio::time::timeout(timeout, call).await {
        Ok(r) => r?,
        Err(_) => return Err(unavailable("no answer within migrate_webhook_timeout_ms")),
    };
    let Some(body) = body else { return Ok(None) };
    let answer: Answer = serde_json::from_slice(&body)
        .map_err(|_| unavailable("its answer is not {\"id\", ...} JSON"))?;
    // The answer is read as an import line is, so that a migrated user is what an import of
    // it would have made.
    let mut line = serde_json::json!({"id": answer.id});
    if let Some(c) = answer.custom_data {
        line["custom_data"] = Value::Object(c);
    }
    if let Some(c) = answer.created_at {
        line["created_at"] = c;
    }
    let mut reader = crate::import::Reader::new();
    let mut user = match reader.value(1, line) {
        Some(crate::import::Line::User(_, u)) => u,
        Some(crate::import::Line::Refused(_, why)) => {
            return Err(unavailable(&format!(
                "its answer is not a valid user: {why}"
            )));
        }
        None => return Err(unavailable("its answer is not a user")),
    };
    // The profile of an email/password identity is its email (as an import's, and as each
    // login writes it); what else the user had goes in `custom_data`.
    let mut profile = Map::new();
    profile.insert("email".into(), Value::String(email.to_string()));
    user.identities.push(ImportIdentity {
        provider_type: USERPASS.into(),
        // Derived, not random: two first logins at once import the same line, and the second
        // finds the first's account as its own (unchanged) instead of a conflict.
        external_id: crate::tokens::sha256_hex(&format!("migrate/{app_id}/{}/{email}", user.id))
            [..24]
            .to_string(),
        data: Some(profile),
        account: Some(ImportAccount {
            email: email.to_string(),
            password: String::new(),
        }),
    });
    Ok(Some(user))
}

/// Sets the password column of the account [`ask`] answered.
pub fn set_password(user: &mut ImportUser, column: String) {
    if let Some(account) = user.identities.iter_mut().find_map(|i| i.account.as_mut()) {
        account.password = column;
    }
}
