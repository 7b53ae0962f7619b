//! Authentication providers: turning a login body into an external identity.

use std::collections::HashSet;
use std::time::Duration;

use axum::http::StatusCode;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::config::{
    AppConfig, CustomFunctionConfig, CustomTokenConfig, DEFAULT_METADATA_FIELDS, JwtAlgorithm,
    OIDC_PREFIX,
};
pub use crate::credentials::{Identity, Proof, req_str};
use crate::error::ApiError;
use crate::passwords::StoredPassword;
use crate::state::Inner;
use crate::tokens;

/// Timeout of a custom-function webhook call.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Proves the credentials of a non-anonymous login.
pub async fn authenticate(
    st: &Inner,
    app: &AppConfig,
    provider: &str,
    body: &Map<String, Value>,
) -> Result<Identity, ApiError> {
    match provider {
        "local-userpass" => userpass(st, app, body).await,
        "api-key" => api_key(st, app, body).await,
        crate::email_otp::PROVIDER if app.providers.email_otp.is_some() => {
            crate::email_otp::authenticate(st, &app.id, body)
        }
        "custom-token" => {
            let cfg = app
                .providers
                .custom_token
                .as_ref()
                .ok_or_else(|| ApiError::provider_not_found(provider))?;
            let token = req_str(body, "token")?;
            match &cfg.jwks_url {
                Some(url) => custom_token_jwks(st, cfg, url, token).await,
                None => custom_token(cfg, token, st.now()),
            }
        }
        "oauth2-google" => match &app.providers.google {
            Some(cfg) => crate::social::google(st, cfg, body).await,
            None => Err(ApiError::provider_not_found(provider)),
        },
        "oauth2-apple" => match &app.providers.apple {
            Some(cfg) => crate::social::apple(st, cfg, body).await,
            None => Err(ApiError::provider_not_found(provider)),
        },
        "oauth2-facebook" => match &app.providers.facebook {
            Some(cfg) => crate::social::facebook(st, cfg, body).await,
            None => Err(ApiError::provider_not_found(provider)),
        },
        other if other.starts_with(OIDC_PREFIX) => {
            let name = &other[OIDC_PREFIX.len()..];
            match app.providers.oidc.get(name) {
                Some(cfg) => crate::social::oidc(st, name, cfg, body).await,
                None => Err(ApiError::provider_not_found(provider)),
            }
        }
        "custom-function" => {
            let cfg = app
                .providers
                .custom_function
                .as_ref()
                .ok_or_else(|| ApiError::provider_not_found(provider))?;
            custom_function(st, cfg, body).await
        }
        _ => Err(ApiError::provider_not_found(provider)),
    }
}

/// A custom JWT verified against the "JWK URI" (`jwks_url`): as for the social providers,
/// with `audience` and `issuer` when configured, then the configured metadata fields.
async fn custom_token_jwks(
    st: &Inner,
    cfg: &CustomTokenConfig,
    jwks_url: &str,
    token: &str,
) -> Result<Identity, ApiError> {
    let audiences: Vec<String> = cfg.audience.iter().cloned().collect();
    let issuers: Vec<String> = cfg.issuer.iter().cloned().collect();
    let rules = crate::jwks::Rules {
        label: "custom auth token",
        keys: crate::jwks::KeySource::Url(jwks_url),
        issuers: &issuers,
        audiences: &audiences,
        // A custom JWT is not an ID token: RFC 7519's audience rule (one of them is ours) and
        // whatever lifetime its issuer gives it.
        id_token: false,
    };
    let claims = st.jwks.verify(token, &rules, st.now()).await?;
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(Identity {
        provider_type: "custom-token".into(),
        external_id: sub,
        data: metadata(cfg, &claims),
        proof: Proof::Outside,
    })
}

/// The configured metadata claims of a custom JWT, for the profile.
fn metadata(cfg: &CustomTokenConfig, claims: &Map<String, Value>) -> Map<String, Value> {
    let mut profile = Map::new();
    let fields: Vec<&str> = match &cfg.metadata_fields {
        Some(f) => f.iter().map(String::as_str).collect(),
        None => DEFAULT_METADATA_FIELDS.to_vec(),
    };
    for f in fields {
        if let Some(v) = claims.get(f) {
            profile.insert(f.to_string(), v.clone());
        }
    }
    profile
}

async fn userpass(
    st: &Inner,
    app: &AppConfig,
    body: &Map<String, Value>,
) -> Result<Identity, ApiError> {
    let email = crate::email::lookup(req_str(body, "username")?);
    let password = req_str(body, "password")?.to_string();
    let app_id = app.id.clone();
    let mut row = st.store.userpass(&app_id, &email).await?;
    if row.is_none()
        && let Some(up) = app.providers.local_userpass.as_ref()
        && up.migrate_webhook.is_some()
        && migrate(st, up, &app_id, &email, &password).await?
    {
        row = st.store.userpass(&app_id, &email).await?;
    }
    // An imported hash is upgraded at its first successful login (#24). When another login
    // upgraded it first (or the password changed) between the check and the upgrade, the
    // password is checked again against what is stored now: once, as the stored column is then
    // the server's own hash or a reset's.
    for _ in 0..2 {
        let stored = row.as_ref().map(|r| r.password_hash.as_str());
        match stored.map(StoredPassword::of) {
            Some(StoredPassword::Legacy(hash)) => {
                let Some(r) = row.as_mut() else { break };
                if !st.passwords.verify_legacy(password.clone(), hash).await? {
                    return Err(crate::store::invalid_password());
                }
                let new = st.passwords.hash(password.clone()).await?;
                if st
                    .store
                    .upgrade_password(&app_id, &r.email, &r.password_hash, &new)
                    .await?
                {
                    r.password_hash = new;
                    return userpass_identity(r.clone());
                }
                row = st.store.userpass(&app_id, &email).await?;
            }
            Some(StoredPassword::MustReset) => {
                // The same work as a wrong password, then the answer that says what to do.
                st.passwords.verify(password, None).await?;
                return Err(password_reset_required());
            }
            Some(StoredPassword::Own(_)) | None => break,
        }
    }
    // The same hashing work whether or not the account exists (see passwords.rs).
    let phc = row.as_ref().map(|r| r.password_hash.clone());
    let ok = st.passwords.verify(password, phc).await?;
    let Some(row) = row.filter(|_| ok) else {
        return Err(crate::store::invalid_password());
    };
    userpass_identity(row)
}

/// Lazy migration (migrate.rs) of an email with no account: whether the old system vouched
/// for the password and the user is now here (its account holds the server's hash of the
/// password, checked again by the caller as any).
async fn migrate(
    st: &Inner,
    up: &crate::config::UserpassConfig,
    app_id: &str,
    email: &str,
    password: &str,
) -> Result<bool, ApiError> {
    // Only an address can have come from the old system's accounts.
    if crate::email::canonical(email).as_deref() != Ok(email) {
        return Ok(false);
    }
    let Some(mut user) = crate::migrate::ask(up, app_id, email, password).await? else {
        return Ok(false);
    };
    let hash = st.passwords.hash(password.to_string()).await?;
    crate::migrate::set_password(&mut user, hash);
    let now = st.now();
    match st
        .store
        .import_users(app_id, vec![user], false, now)
        .await?
        .pop()
    {
        Some(Ok(_)) => Ok(true),
        Some(Err(why)) => {
            tracing::warn!("lazy migration: the user the old system answered is refused: {why}");
            Err(ApiError::auth(
                "this account could not be moved from the app's previous system; contact the \
                 app's support",
            ))
        }
        None => Err(ApiError::internal()),
    }
}

/// 401 PasswordResetRequired: an imported account with no password (#24, `must_reset`); a
/// reset (reset/send, then reset) sets one.
pub fn password_reset_required() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "PasswordResetRequired",
        "this account has no password yet: reset the password (a reset mail sets one)",
    )
}

/// The identity of an email account whose password was just checked against its column.
fn userpass_identity(row: crate::store::UserpassRow) -> Result<Identity, ApiError> {
    if !row.confirmed {
        return Err(ApiError::auth("confirmation required"));
    }
    let mut data = Map::new();
    data.insert("email".into(), Value::String(row.email.clone()));
    Ok(Identity {
        provider_type: "local-userpass".into(),
        external_id: row.identity_id,
        data,
        proof: Proof::Userpass {
            email: row.email,
            password_hash: row.password_hash,
        },
    })
}

async fn api_key(
    st: &Inner,
    app: &AppConfig,
    body: &Map<String, Value>,
) -> Result<Identity, ApiError> {
    let hash = tokens::sha256_hex(req_str(body, "key")?);
    let app_id = app.id.clone();
    match st.store.api_key_by_hash(&app_id, &hash).await? {
        Some(key) if !key.disabled => {
            let mut data = Map::new();
            data.insert("name".into(), Value::String(key.name));
            Ok(Identity {
                provider_type: "api-key".into(),
                external_id: key.id,
                data,
                proof: Proof::ApiKey { owner: key.user_id },
            })
        }
        Some(_) => Err(crate::store::api_key_disabled()),
        None => Err(crate::store::invalid_api_key()),
    }
}

/// How far ahead of the server clock a custom JWT's `nbf` and `iat` may be, in seconds.
pub const CLOCK_LEEWAY_SECS: i64 = 60;

/// Verifies a custom JWT (signature, audience, `exp`, `nbf`, `iat`) and returns its identity
/// (`sub`) with the configured metadata fields.
pub fn custom_token(cfg: &CustomTokenConfig, token: &str, now: i64) -> Result<Identity, ApiError> {
    let header = jsonwebtoken::decode_header(token).map_err(|_| {
        ApiError::auth("invalid custom auth token: malformed or unsupported algorithm")
    })?;
    let (alg, key) = match cfg.algorithm {
        JwtAlgorithm::HS256 => (
            Algorithm::HS256,
            DecodingKey::from_secret(cfg.key.as_deref().unwrap_or_default().as_bytes()),
        ),
        JwtAlgorithm::RS256 => (
            Algorithm::RS256,
            DecodingKey::from_rsa_pem(cfg.public_key_pem.as_deref().unwrap_or_default().as_bytes())
                .map_err(|_| ApiError::internal())?,
        ),
        JwtAlgorithm::ES256 => (
            Algorithm::ES256,
            DecodingKey::from_ec_pem(cfg.public_key_pem.as_deref().unwrap_or_default().as_bytes())
                .map_err(|_| ApiError::internal())?,
        ),
    };
    if header.alg != alg {
        return Err(ApiError::auth(format!(
            "invalid custom auth token: expected algorithm {alg:?}"
        )));
    }
    let mut v = Validation::new(alg);
    // Expiry is judged below against the server clock (so the test clock applies).
    v.validate_exp = false;
    v.required_spec_claims = HashSet::new();
    match &cfg.audience {
        Some(aud) => {
            v.set_audience(&[aud]);
            v.required_spec_claims.insert("aud".to_string());
        }
        None => v.validate_aud = false,
    }
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v).map_err(|e| {
        ApiError::auth(match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidAudience
            | jsonwebtoken::errors::ErrorKind::MissingRequiredClaim(_) => {
                "invalid custom auth token: wrong or missing audience".to_string()
            }
            _ => "invalid custom auth token: signature is invalid".to_string(),
        })
    })?;
    let claims = data.claims;
    match claims.get("exp") {
        Some(exp) => match exp.as_f64() {
            Some(exp) if exp > now as f64 => {}
            Some(_) => return Err(ApiError::auth("invalid custom auth token: token expired")),
            None => return Err(ApiError::auth("invalid custom auth token: bad exp claim")),
        },
        None => {
            return Err(ApiError::auth(
                "invalid custom auth token: missing exp claim",
            ));
        }
    }
    // RFC 7519 4.1.5 and 4.1.6: not before `nbf`, and not issued in the future, against the
    // server clock with a small leeway for clocks that differ a little.
    for (claim, problem) in [
        ("nbf", "not valid yet (nbf)"),
        ("iat", "issued in the future (iat)"),
    ] {
        match claims.get(claim) {
            None => {}
            Some(v) => match v.as_f64() {
                Some(t) if t <= (now + CLOCK_LEEWAY_SECS) as f64 => {}
                Some(_) => {
                    return Err(ApiError::auth(format!(
                        "invalid custom auth token: {problem}"
                    )));
                }
                None => {
                    return Err(ApiError::auth(format!(
                        "invalid custom auth token: bad {claim} claim"
                    )));
                }
            },
        }
    }
    let sub = match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        _ => {
            return Err(ApiError::auth(
                "invalid custom auth token: missing sub claim",
            ));
        }
    };
    Ok(Identity {
        provider_type: "custom-token".into(),
        external_id: sub,
        data: metadata(cfg, &claims),
        proof: Proof::Outside,
    })
}

async fn custom_function(
    st: &Inner,
    cfg: &CustomFunctionConfig,
    body: &Map<String, Value>,
) -> Result<Identity, ApiError> {
    // The function sees the caller's document, without what SDKs add.
    let mut payload = body.clone();
    payload.remove("options");
    let id = if let Some(field) = &cfg.id_field {
        match payload.get(field) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => {
                return Err(ApiError::auth(format!(
                    "custom function refused: payload field '{field}' must be a non-empty string"
                )));
            }
        }
    } else {
        let url = cfg.webhook_url.as_deref().unwrap_or_default();
        let exec_err =
            |m: String| ApiError::new(StatusCode::BAD_GATEWAY, "FunctionExecutionError", m);
        let resp = st
            .http
            .post(url)
            .timeout(WEBHOOK_TIMEOUT)
            .json(&Value::Object(payload))
            .send()
            .await
            .map_err(|e| {
                exec_err(format!(
                    "custom function webhook unreachable: {}",
                    e.without_url()
                ))
            })?;
        let status = resp.status();
        let bytes = resp
            .bytes()
            .await
            .map_err(|_| exec_err("custom function webhook answer could not be read".into()))?;
        if !status.is_success() {
            return Err(ApiError::auth(format!(
                "custom function refused the login (status {})",
                status.as_u16()
            )));
        }
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|_| exec_err("custom function webhook answered garbage".into()))?;
        match v.get("id") {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return Err(ApiError::auth("custom function refused the login (no id)")),
        }
    };
    Ok(Identity {
        provider_type: "custom-function".into(),
        external_id: id,
        data: Map::new(),
        proof: Proof::Outside,
    })
}
