//! The admin API subset (`/api/admin/v3.0`) plus the outbox, metrics and test-clock extensions.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{RawBody, json_object, json_response, path_error};
use crate::error::ApiError;
use crate::providers::req_str;
use crate::sessions::bearer;
use crate::state::{AppRuntime, AppState};
use crate::store;
use crate::tokens::{self, Claims, TYP_ACCESS, TYP_REFRESH, VerifyError};

/// `iss` of admin tokens.
const ADMIN_ISSUER: &str = "sessionkit-admin";
/// Admin access token lifetime.
const ADMIN_ACCESS_SECS: i64 = 1800;
/// Admin refresh token lifetime (stateless: not revocable).
const ADMIN_REFRESH_SECS: i64 = 24 * 3600;

fn admin_off() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NotFound", "no such route")
}

fn admin_token(st: &AppState, typ: &str, lifetime: i64) -> String {
    let now = st.now();
    let claims = Claims {
        exp: now + lifetime,
        iat: now,
        sub: st
            .admin
            .as_ref()
            .map(|a| a.public_key.clone())
            .unwrap_or_default(),
        typ: typ.to_string(),
        baas_device_id: String::new(),
        domain_id: None,
        iss: ADMIN_ISSUER.to_string(),
        aud: None,
        user_data: None,
        sid: None,
        jti: Some(tokens::new_object_id()),
        cnf: None,
    };
    tokens::sign(&claims, &st.admin_secret)
}

/// Checks the admin bearer token of type `typ`.
fn check_admin(st: &AppState, headers: &HeaderMap, typ: &str) -> Result<(), ApiError> {
    if st.admin.is_none() {
        return Err(admin_off());
    }
    let token = bearer(headers)?;
    match tokens::verify(&token, &st.admin_secret, st.now()) {
        Ok(c) if c.typ == typ && c.iss == ADMIN_ISSUER => Ok(()),
        Ok(_) => Err(ApiError::invalid_session(
            "invalid session: not an admin token of that type",
        )),
        Err(VerifyError::Expired) => {
            Err(ApiError::invalid_session("invalid session: token expired"))
        }
        Err(VerifyError::Invalid | VerifyError::UnknownKey) => {
            Err(ApiError::invalid_session("invalid session"))
        }
    }
}

/// Admin auth plus the app of the path.
fn admin_app(
    st: &AppState,
    headers: &HeaderMap,
    app_id: &str,
) -> Result<Arc<AppRuntime>, ApiError> {
    check_admin(st, headers, TYP_ACCESS)?;
    st.app(app_id)
}

/// POST auth/providers/mongodb-cloud/login.
pub async fn login(
    State(st): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let Some(admin) = st.admin.clone() else {
        return Err(admin_off());
    };
    let body = json_object(&body)?;
    let user = req_str(&body, "username")?;
    let key = req_str(&body, "apiKey")?;
    // Compare digests so the comparison time does not depend on where the keys differ.
    let ok = tokens::sha256_hex(user) == tokens::sha256_hex(&admin.public_key)
        && tokens::sha256_hex(key) == tokens::sha256_hex(&admin.private_key);
    if !ok {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidPassword",
            "invalid username/password",
        ));
    }
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "access_token": admin_token(&st, TYP_ACCESS, ADMIN_ACCESS_SECS),
            "refresh_token": admin_token(&st, TYP_REFRESH, ADMIN_REFRESH_SECS),
            "user_id": admin.public_key,
        }),
    ))
}

/// POST auth/session (extension): a new admin access token from the admin refresh token.
pub async fn refresh(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    check_admin(&st, &headers, TYP_REFRESH)?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "access_token": admin_token(&st, TYP_ACCESS, ADMIN_ACCESS_SECS) }),
    ))
}

/// POST test/clock (extension, only with `test_clock = true`): moves the server clock forward.
pub async fn test_clock(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    if !st.config.test_clock {
        return Err(admin_off());
    }
    check_admin(&st, &headers, TYP_ACCESS)?;
    let body = json_object(&body)?;
    let secs = match body.get("advance_secs") {
        Some(v) => v
            .as_i64()
            .filter(|n| (0..=100 * 365 * 24 * 3600).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request("field 'advance_secs' must be a non-negative integer")
            })?,
        None => return Err(ApiError::bad_request("missing field 'advance_secs'")),
    };
    let offset = st.clock.advance(secs);
    // Every instance on this database moves with it (routes::shared_test_clock).
    st.store
        .meta_set(crate::state::TEST_CLOCK_KEY, &offset.to_string())
        .await?;
    st.sweep_now.notify_one();
    st.mail_now.notify_one();
    Ok(json_response(StatusCode::OK, &json!({ "now": st.now() })))
}

type AppPath = Result<Path<(String, String)>, PathRejection>;
type UserPath = Result<Path<(String, String, String)>, PathRejection>;

/// PUT security/refresh_token_expiration.
pub async fn refresh_token_expiration(
    State(st): State<AppState>,
    path: AppPath,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let Path((_, app_id)) = path.map_err(path_error)?;
    let app = admin_app(&st, &headers, &app_id)?;
    let body = json_object(&body)?;
    let secs = match body.get("expiration_time_seconds") {
        Some(v) => v
            .as_i64()
            .filter(|n| *n > 0 && *n <= i64::MAX / 4)
            .ok_or_else(|| {
                ApiError::bad_request("field 'expiration_time_seconds' must be a positive integer")
            })?,
        None => {
            return Err(ApiError::bad_request(
                "missing field 'expiration_time_seconds'",
            ));
        }
    };
    st.store
        .meta_set(&format!("refresh_lifetime:{app_id}"), &secs.to_string())
        .await?;
    app.refresh_lifetime.store(secs, Ordering::SeqCst);
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// POST users/verify_token.
pub async fn verify_token(
    State(st): State<AppState>,
    path: AppPath,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let Path((_, app_id)) = path.map_err(path_error)?;
    let app = admin_app(&st, &headers, &app_id)?;
    let body = json_object(&body)?;
    let token = req_str(&body, "token")?;
    match app.verify(token, st.now()) {
        Ok(c) => Ok(json_response(
            StatusCode::OK,
            &json!({
                "sub": c.sub,
                "exp": c.exp,
                "iat": c.iat,
                "iss": c.iss,
                "domain_id": app.domain_id,
                "device_id": c.baas_device_id,
            }),
        )),
        Err(VerifyError::Expired) => Ok(json_response(StatusCode::OK, &json!("token expired"))),
        Err(VerifyError::Invalid | VerifyError::UnknownKey) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidSession",
            "signature is invalid",
        )),
    }
}

/// GET users.
pub async fn list_users(
    State(st): State<AppState>,
    path: AppPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path((_, app_id)) = path.map_err(path_error)?;
    admin_app(&st, &headers, &app_id)?;
    let list = st
        .store
        .users(&app_id)
        .await?
        .iter()
        .map(|(u, ids)| store::admin_user_json(u, ids))
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(list)))
}

/// POST users: creates a confirmed email/password user.
pub async fn create_user(
    State(st): State<AppState>,
    path: AppPath,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let Path((_, app_id)) = path.map_err(path_error)?;
    admin_app(&st, &headers, &app_id)?;
    let body = json_object(&body)?;
    // The same rules as a registration (#22): the address's canonical form, so that the user
    // can log in with it as typed, and a prepared password.
    let email = crate::email::canonical(req_str(&body, "email")?)
        .map_err(|e| ApiError::bad_request(format!("field 'email': {}", e.0)))?;
    let password = crate::passwords::new_password(req_str(&body, "password")?)?;
    let hash = st.passwords.hash(password).await?;
    let now = st.now();
    let (user, ids) = st
        .store
        .create_confirmed_user(&app_id, &email, &hash, now)
        .await?;
    let doc = store::admin_user_json(&user, &ids);
    Ok(json_response(StatusCode::CREATED, &doc))
}

/// GET users/{id}.
pub async fn get_user(
    State(st): State<AppState>,
    path: UserPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path((_, app_id, user_id)) = path.map_err(path_error)?;
    admin_app(&st, &headers, &app_id)?;
    let user = st
        .store
        .user(&app_id, &user_id)
        .await?
        .ok_or_else(ApiError::user_not_found)?;
    let ids = st.store.identities(&user.id).await?;
    let doc = store::admin_user_json(&user, &ids);
    Ok(json_response(StatusCode::OK, &doc))
}

/// DELETE users/{id}.
pub async fn delete_user(
    State(st): State<AppState>,
    path: UserPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path((_, app_id, user_id)) = path.map_err(path_error)?;
    admin_app(&st, &headers, &app_id)?;
    if !st.store.delete_user(&app_id, &user_id).await? {
        return Err(ApiError::user_not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// What the admin does to an existing user.
enum UserChange {
    Logout,
    Disabled(bool),
    CustomData(String),
}

/// Applies `change` to an existing user of the path's app; 204 on success, 404 UserNotFound.
async fn change_user(
    st: AppState,
    path: UserPath,
    headers: HeaderMap,
    change: UserChange,
) -> Result<Response, ApiError> {
    let Path((_, app_id, user_id)) = path.map_err(path_error)?;
    admin_app(&st, &headers, &app_id)?;
    let found = match change {
        UserChange::Logout => st.store.revoke_sessions(&app_id, &user_id).await?,
        UserChange::Disabled(d) => st.store.set_user_disabled(&app_id, &user_id, d).await?,
        UserChange::CustomData(doc) => st.store.set_custom_data(&app_id, &user_id, &doc).await?,
    };
    if !found {
        return Err(ApiError::user_not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// PUT users/{id}/logout: revokes every session of the user.
pub async fn logout_user(
    State(st): State<AppState>,
    path: UserPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    change_user(st, path, headers, UserChange::Logout).await
}

/// PUT users/{id}/disable: disables the user and ends its sessions.
pub async fn disable_user(
    State(st): State<AppState>,
    path: UserPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    change_user(st, path, headers, UserChange::Disabled(true)).await
}

/// PUT users/{id}/enable.
pub async fn enable_user(
    State(st): State<AppState>,
    path: UserPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    change_user(st, path, headers, UserChange::Disabled(false)).await
}

/// PUT users/{id}/custom_data: the `user_data` claim of the user's next access tokens.
pub async fn set_custom_data(
    State(st): State<AppState>,
    path: UserPath,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let doc = match serde_json::from_slice::<Value>(&body) {
        Ok(v @ Value::Object(_)) => v.to_string(),
        Ok(_) => return Err(ApiError::bad_request("custom data must be a JSON object")),
        Err(e) => return Err(ApiError::bad_request(format!("malformed JSON body: {e}"))),
    };
    change_user(st, path, headers, UserChange::CustomData(doc)).await
}

/// POST users/import (#24): imports a batch of users (a JSON array of import lines, or
/// newline-delimited JSON; at most [`crate::import::MAX_BATCH`] lines and the body limit);
/// `?dry_run=true` writes nothing and answers the same report. 200 with the report
/// (`created`, `updated`, `unchanged`, `refused`, `dry_run`, `refusals: [{line, reason}]`);
/// refused lines are in the report, not an error status (docs/SERVER.md, "Importing users").
pub async fn import_users(
    State(st): State<AppState>,
    path: AppPath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let Path((_, app_id)) = path.map_err(path_error)?;
    admin_app(&st, &headers, &app_id)?;
    let mut dry_run = false;
    for (k, v) in query
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter_map(|p| p.split_once('='))
    {
        if k == "dry_run" {
            dry_run = match v {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => return Err(ApiError::bad_request("dry_run must be true or false")),
            };
        }
    }
    let lines = crate::import::request_lines(&body)?;
    let mut report = crate::import::Report {
        dry_run,
        ..Default::default()
    };
    crate::import::run_batch(
        st.store.as_ref(),
        &app_id,
        lines,
        dry_run,
        st.now(),
        &mut report,
    )
    .await?;
    Ok(json_response(StatusCode::OK, &json!(report)))
}

/// GET outbox?email=...: confirmation and reset tokens that would have been mailed.
pub async fn outbox(
    State(st): State<AppState>,
    path: AppPath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path((_, app_id)) = path.map_err(path_error)?;
    admin_app(&st, &headers, &app_id)?;
    let email = query.as_deref().and_then(|q| {
        q.split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(k, _)| *k == "email")
            .map(|(_, v)| crate::email::lookup(&crate::percent::decode_query(v)))
    });
    let list = st
        .store
        .outbox(&app_id, email.as_deref())
        .await?
        .into_iter()
        .map(|m| json!({"kind": m.kind, "email": m.email, "token": m.token, "tokenId": m.token_id}))
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(list)))
}

/// GET mail (extension, #23): the app's mail queue, oldest first: each mail's kind, address,
/// status (`pending`, `sent`, `failed`), tries and the reason of the last failure; never a
/// token (SERVER.md, "Mail").
pub async fn mail_queue(
    State(st): State<AppState>,
    path: AppPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path((_, app_id)) = path.map_err(path_error)?;
    admin_app(&st, &headers, &app_id)?;
    let list = st.store.mail_queue(&app_id).await?;
    Ok(json_response(StatusCode::OK, &json!(list)))
}

/// GET events (extension, #26; SERVER.md "Audit log"): the app's audit events in the order
/// they were written, filtered by the query: `user_id`, `kind` (comma-separated kinds),
/// `since` and `until` (Unix seconds, `since` inclusive), `after` (the `seq` of the previous
/// page's last event) and `limit` (1 to 1000, default 100). Answers
/// `{"events": [...], "next_after": seq}`, `next_after` null on the last page. 400 for a
/// parameter that is not one of these, an unknown kind, or a number that is not one.
pub async fn events(
    State(st): State<AppState>,
    path: AppPath,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path((_, app_id)) = path.map_err(path_error)?;
    admin_app(&st, &headers, &app_id)?;
    let mut filter = crate::audit::Filter {
        app_id: app_id.clone(),
        user_id: None,
        kinds: Vec::new(),
        since: None,
        until: None,
        after: None,
        limit: 100,
    };
    let number = |key: &str, v: &str| {
        v.parse::<i64>()
            .map_err(|_| ApiError::bad_request(format!("{key} must be an integer, not {v:?}")))
    };
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
        match key.as_ref() {
            "user_id" => filter.user_id = Some(value.into_owned()),
            "kind" => {
                for k in value.split(',').filter(|k| !k.is_empty()) {
                    if !crate::audit::kind::ALL.contains(&k) {
                        return Err(ApiError::bad_request(format!(
                            "unknown event kind {k:?}; the kinds are {}",
                            crate::audit::kind::ALL.join(", ")
                        )));
                    }
                    filter.kinds.push(k.to_string());
                }
            }
            "since" => filter.since = Some(number("since", &value)?),
            "until" => filter.until = Some(number("until", &value)?),
            "after" => filter.after = Some(number("after", &value)?),
            "limit" => {
                filter.limit = number("limit", &value)?;
                if !(1..=crate::audit::PAGE_MAX).contains(&filter.limit) {
                    return Err(ApiError::bad_request(format!(
                        "limit must be 1 to {}",
                        crate::audit::PAGE_MAX
                    )));
                }
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown parameter {other:?}: user_id, kind, since, until, after, limit"
                )));
            }
        }
    }
    let limit = filter.limit;
    let events = st.store.audit_events(filter).await?;
    let next_after = (events.len() as i64 == limit)
        .then(|| events.last().map(|e| e.seq))
        .flatten();
    Ok(json_response(
        StatusCode::OK,
        &json!({"events": events, "next_after": next_after}),
    ))
}

/// POST mail/retry (extension, #23): the app's failed mails that can still be sent back in the
/// queue, and its pending ones, due now (`Store::retry_mail`); `{"retried": N}`, the mails now
/// due.
pub async fn retry_mail(
    State(st): State<AppState>,
    path: AppPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path((_, app_id)) = path.map_err(path_error)?;
    admin_app(&st, &headers, &app_id)?;
    let n = st.store.retry_mail(&app_id, st.now()).await?;
    st.mail_now.notify_one();
    Ok(json_response(StatusCode::OK, &json!({ "retried": n })))
}

/// GET metrics (extension): request counters of this app, and this instance's database
/// writes (`database`: backend, writes, commits; SQLite commits several writes at once).
pub async fn metrics(
    State(st): State<AppState>,
    path: AppPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path((_, app_id)) = path.map_err(path_error)?;
    admin_app(&st, &headers, &app_id)?;
    let requests = if st.config.test_clock {
        // Test mode: every instance's counts, as stored after each of their requests.
        let mut sum = serde_json::Map::new();
        for (_, doc) in st
            .store
            .meta_with_prefix(crate::state::TEST_COUNTERS_PREFIX)
            .await?
        {
            let doc: Value = serde_json::from_str(&doc).unwrap_or(Value::Null);
            if let Some(ops) = doc.get(&app_id).and_then(Value::as_object) {
                for (op, n) in ops {
                    let total = sum.get(op).and_then(Value::as_u64).unwrap_or(0);
                    sum.insert(op.clone(), json!(total + n.as_u64().unwrap_or(0)));
                }
            }
        }
        sum
    } else {
        st.counters.for_app(&app_id)
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "requests": requests,
            "database": st.store.stats(),
        }),
    ))
}
