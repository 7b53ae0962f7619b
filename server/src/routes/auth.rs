//! Client API: location, login and link, profile, sessions, user deletion, API keys, functions.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{RawBody, base_url, json_object, json_response, path_error};
use crate::config::DpopMode;
use crate::dpop::{self, Target};
use crate::error::ApiError;
use crate::functions;
use crate::providers::{self, req_str};
use crate::rate_limit::ClientAddr;
use crate::sessions::{self, Purpose, access_user, use_refresh_token, verify_bearer};
use crate::state::{AppRuntime, AppState};
use crate::store::{self, ApiKeyRow, Login, UserRow};
use crate::tokens::{self, TYP_REFRESH};

/// GET location.
pub async fn location(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(app_id) = path.map_err(path_error)?;
    let app = st.app(&app_id);
    st.counters
        .bump(app.as_ref().ok().map(|_| app_id.as_str()), "location");
    app?;
    let host = base_url(&st, &headers);
    let ws = if let Some(rest) = host.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = host.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        host.clone()
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "deployment_model": "GLOBAL",
            "location": "US-VA",
            "hostname": host,
            "ws_hostname": ws,
        }),
    ))
}

/// GET `.well-known/jwks.json`: the public keys access tokens of this app are signed with (the
/// active key, and retired ones while tokens they signed may live); empty for HS256 apps.
pub async fn jwks(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let Path(app_id) = path.map_err(path_error)?;
    let app = st.app(&app_id)?;
    let keys = app
        .keys()
        .published(st.now(), app.config.access_token_lifetime_secs as i64);
    let mut resp = json_response(StatusCode::OK, &json!({ "keys": keys }));
    // Verifiers may cache it a while; a new key shows up within KEY_RELOAD_INTERVAL anyway.
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("public, max-age=300"),
    );
    Ok(resp)
}

/// GET `.well-known/openid-configuration`: where the app's keys are, for JWT libraries that
/// discover them (OpenID Connect Discovery 1.0, the fields a token verifier reads). `issuer`
/// is the app id, as in the tokens' `iss` (the hosted service's choice, kept).
pub async fn openid_configuration(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let Path(app_id) = path.map_err(path_error)?;
    let app = st.app(&app_id)?;
    let base = base_url(&st, &headers);
    let alg = match app.keys().active() {
        Some(k) => format!("{:?}", k.alg),
        None => "HS256".to_string(),
    };
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "issuer": app_id,
            "jwks_uri": format!("{base}/api/client/v2.0/app/{app_id}/.well-known/jwks.json"),
            "id_token_signing_alg_values_supported": [alg],
            "token_endpoint_auth_methods_supported": ["none"],
            "subject_types_supported": ["public"],
            "response_types_supported": ["token"],
        }),
    ))
}

/// The device id of a login: the client's `options.device.deviceId` when it is an ObjectId
/// (plain or EJSON `{"$oid"}`) other than all zeros, else a fresh one.
fn device_id(body: &Map<String, Value>) -> String {
    let given = body
        .get("options")
        .and_then(|o| o.get("device"))
        .and_then(|d| d.get("deviceId"))
        .and_then(|v| match v {
            Value::String(s) => Some(s.as_str()),
            Value::Object(o) => o.get("$oid").and_then(Value::as_str),
            _ => None,
        });
    match given {
        Some(s) if tokens::is_object_id(s) && s.bytes().any(|b| b != b'0') => {
            s.to_ascii_lowercase()
        }
        _ => tokens::new_object_id(),
    }
}

fn is_link(query: Option<&str>) -> bool {
    query.is_some_and(|q| q.split('&').any(|p| p == "link=true"))
}

/// POST login (and `?link=true`).
pub async fn login(
    State(st): State<AppState>,
    ClientAddr(addr): ClientAddr,
    path: Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    target: Target,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let Path((app_id, provider)) = path.map_err(path_error)?;
    let link = is_link(query.as_deref());
    let op = if link { "link" } else { "login" };
    let app = st.app(&app_id);
    st.counters
        .bump(app.as_ref().ok().map(|_| app_id.as_str()), op);
    let app = app?;
    if !app.config.providers.enabled(&provider) {
        return Err(ApiError::provider_not_found(&provider));
    }
    let body = json_object(&body)?;
    // Counted before any work: a guess that is refused costs no password hash.
    if provider == "anon-user" {
        st.rate_limits.signup(addr)?;
    } else {
        // The account a guess is aimed at: an email account, or an address's sign-in code
        // (keyed apart: one budget per provider).
        let account = match provider.as_str() {
            "local-userpass" => body
                .get("username")
                .and_then(Value::as_str)
                .map(|email| format!("{app_id}/{}", crate::email::lookup(email))),
            crate::email_otp::PROVIDER => body
                .get("email")
                .and_then(Value::as_str)
                .map(|email| format!("{app_id}/email-otp/{}", crate::email::lookup(email))),
            _ => None,
        };
        st.rate_limits.login(addr, account.as_deref())?;
    }
    let mut caller_jkt = None;
    let caller = if link {
        let (tok_app, claims, user) = access_user(&st, &headers, &target, "").await?;
        // A bound caller's proof was checked (and remembered) with its token: its key binds
        // the new session too.
        caller_jkt = claims.cnf.map(|c| c.jkt);
        if tok_app.config.id != app.config.id {
            return Err(ApiError::invalid_session(
                "invalid session: token of another app",
            ));
        }
        if provider == "anon-user" {
            return Err(ApiError::bad_request(
                "cannot link an anonymous identity to an existing user",
            ));
        }
        Some(user.id)
    } else {
        None
    };
    // The key the new session is bound to (dpop.rs): the proof's, unless the app binds none.
    let jkt = match (app.config.dpop, caller_jkt) {
        (DpopMode::Off, _) => None,
        (_, Some(jkt)) => Some(jkt),
        (_, None) => {
            let token = if link {
                Some(sessions::bearer(&headers)?)
            } else {
                None
            };
            sessions::proof(&st, &app, &headers, &target, token.as_deref())
                .await
                .map_err(dpop::for_token_endpoint)?
        }
    };
    if app.config.dpop == DpopMode::Required && jkt.is_none() {
        return Err(dpop::for_token_endpoint(dpop::invalid(
            "this app binds every session to a key: log in with a DPoP proof",
        )));
    }
    let device = device_id(&body);
    let identity = if provider == "anon-user" {
        None
    } else {
        Some(providers::authenticate(&st, &app.config, &provider, &body).await?)
    };
    let now = st.now();
    let api_key_id = identity
        .as_ref()
        .filter(|i| i.provider_type == "api-key")
        .map(|i| i.external_id.clone());
    let origin = sessions::LoginOrigin {
        device_id: device.clone(),
        provider_type: identity
            .as_ref()
            .map_or_else(|| "anon-user".to_string(), |i| i.provider_type.clone()),
        device: sessions::device_document(&body),
        ip: Some(addr.to_string()),
        jkt: jkt.clone(),
    };
    let app2 = app.clone();
    let (user, session) = st
        .store
        .login(
            Login {
                app_id: app.config.id.clone(),
                identity,
                link_to: caller,
                now,
            },
            Box::new(move |user| sessions::new_session(&app2, user, origin, api_key_id, now)),
        )
        .await?;
    let refresh = session.refresh_token;
    let access = sessions::access_token(&app, &user, &device, &session.id, jkt.as_deref(), now);
    let user_id = user.id;
    let mut out = json!({
        "access_token": access,
        "refresh_token": refresh,
        "user_id": user_id,
        "device_id": device,
    });
    if jkt.is_some() {
        // The session is bound: its tokens go with proofs (RFC 9449 section 5).
        out["token_type"] = Value::from("DPoP");
    }
    Ok(json_response(StatusCode::OK, &out))
}

/// GET profile.
pub async fn profile(
    State(st): State<AppState>,
    headers: HeaderMap,
    target: Target,
) -> Result<Response, ApiError> {
    let (app, _, user) = access_user(&st, &headers, &target, "profile").await?;
    let domain = app.domain_id.clone();
    let ids = st.store.identities(&user.id).await?;
    let doc = store::profile_json(&user, &ids, &domain);
    Ok(json_response(StatusCode::OK, &doc))
}

/// POST session: a new access token (and, with rotation, a new refresh token).
pub async fn refresh(
    State(st): State<AppState>,
    headers: HeaderMap,
    target: Target,
) -> Result<Response, ApiError> {
    let (app, claims, token) = verify_bearer(&st, &headers, TYP_REFRESH, "refresh")?;
    let checked = use_refresh_token(
        &st,
        &app,
        &claims,
        &token,
        Purpose::Refresh,
        &headers,
        &target,
    )
    .await?;
    let access = sessions::access_token(
        &app,
        &checked.user,
        &checked.session.device_id,
        &checked.session.id,
        checked.session.jkt.as_deref(),
        st.now(),
    );
    let mut out = json!({ "access_token": access });
    if checked.session.jkt.is_some() {
        out["token_type"] = Value::from("DPoP");
    }
    let rotated = checked.rotated.is_some();
    if let Some(r) = checked.rotated {
        out["refresh_token"] = Value::String(r);
    }
    let mut resp = json_response(StatusCode::CREATED, &out);
    resp.extensions_mut()
        .insert(crate::metrics::Rotated(rotated));
    Ok(resp)
}

/// DELETE session: log out this session.
pub async fn logout(
    State(st): State<AppState>,
    headers: HeaderMap,
    target: Target,
) -> Result<Response, ApiError> {
    let (app, claims, token) = verify_bearer(&st, &headers, TYP_REFRESH, "logout")?;
    use_refresh_token(
        &st,
        &app,
        &claims,
        &token,
        Purpose::Logout,
        &headers,
        &target,
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// DELETE auth/delete: the caller deletes their own account.
pub async fn delete_user(
    State(st): State<AppState>,
    headers: HeaderMap,
    target: Target,
) -> Result<Response, ApiError> {
    let (app, _, user) = access_user(&st, &headers, &target, "delete").await?;
    st.store.delete_user(&app.config.id, &user.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// POST functions/call.
pub async fn call_function(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    target: Target,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let Path(app_id) = path.map_err(path_error)?;
    st.app(&app_id)?;
    let (app, _, user) = access_user(&st, &headers, &target, "function").await?;
    if app.config.id != app_id {
        return Err(ApiError::invalid_session(
            "invalid session: token of another app",
        ));
    }
    let body = json_object(&body)?;
    let name = req_str(&body, "name")?;
    let args = match body.get("arguments") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return Err(ApiError::bad_request("field 'arguments' must be an array")),
    };
    let result = functions::call(name, &args, &user)?;
    Ok(json_response(StatusCode::OK, &result))
}

/// Authenticates a call on the user's sessions (Bearer refresh, like API keys: PROTOCOL.md
/// "Sessions of a user"); the app, the caller's session and its user.
async fn session_owner(
    st: &AppState,
    headers: &HeaderMap,
    target: &Target,
    op: &str,
) -> Result<(std::sync::Arc<AppRuntime>, store::CheckedSession), ApiError> {
    let (app, claims, token) = verify_bearer(st, headers, TYP_REFRESH, op)?;
    let checked = use_refresh_token(
        st,
        &app,
        &claims,
        &token,
        Purpose::Authenticate,
        headers,
        target,
    )
    .await?;
    Ok((app, checked))
}

/// A session logged in with an API key may list its user's sessions but end no other: a
/// leaked key must not be able to sign its owner out everywhere (as it cannot manage keys).
fn refuse_api_key_session(checked: &store::CheckedSession) -> Result<(), ApiError> {
    if checked.session.api_key_id.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "a session logged in with an API key cannot end other sessions; log in another way",
        ));
    }
    Ok(())
}

/// GET sessions (#25): the caller's live sessions, oldest first, `current` marking the
/// caller's; never a token or a hash.
pub async fn list_sessions(
    State(st): State<AppState>,
    headers: HeaderMap,
    target: Target,
) -> Result<Response, ApiError> {
    let (app, checked) = session_owner(&st, &headers, &target, "sessions").await?;
    let list = st
        .store
        .user_sessions(&app.config.id, &checked.user.id, st.now())
        .await?;
    let docs: Vec<Value> = list
        .iter()
        .map(|s| {
            let device = s
                .device
                .as_deref()
                .and_then(|d| serde_json::from_str::<Value>(d).ok())
                .unwrap_or_else(|| json!({}));
            let mut doc = json!({
                "id": s.id,
                "created": s.created_at,
                "last_used": s.last_used_at,
                "provider_type": s.provider_type,
                "device": device,
                "ip": s.ip,
                "current": s.id == checked.session.id,
            });
            if let Some((id, name)) = &s.api_key {
                doc["api_key"] = json!({ "_id": id, "name": name });
            }
            doc
        })
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(docs)))
}

/// DELETE sessions/{id} (#25): ends one of the caller's sessions (its own included, which is
/// a logout). 404 `SessionNotFound` for an id that is not a live session of the caller's,
/// another user's included: never 403, so that ids cannot be probed.
pub async fn revoke_session(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    target: Target,
) -> Result<Response, ApiError> {
    let Path(id) = path.map_err(path_error)?;
    let (app, checked) = session_owner(&st, &headers, &target, "revoke_session").await?;
    if id != checked.session.id {
        refuse_api_key_session(&checked)?;
    }
    let ended = st
        .store
        .revoke_user_session(&app.config.id, &checked.user.id, &id, st.now())
        .await?;
    if !ended {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "SessionNotFound",
            "session not found",
        ));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// DELETE sessions?scope=other_devices|everywhere (#25): ends every session of the caller's
/// user but the caller's (`other_devices`), or all of them (`everywhere`); `{"revoked": N}`.
pub async fn revoke_sessions(
    State(st): State<AppState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    target: Target,
) -> Result<Response, ApiError> {
    let scope = query
        .as_deref()
        .unwrap_or("")
        .split('&')
        .find_map(|p| p.strip_prefix("scope="))
        .unwrap_or("");
    let everywhere = match scope {
        "other_devices" => false,
        "everywhere" => true,
        _ => {
            return Err(ApiError::bad_request(
                "query 'scope' must be other_devices or everywhere (this device: DELETE auth/session)",
            ));
        }
    };
    let (app, checked) = session_owner(&st, &headers, &target, "revoke_sessions").await?;
    refuse_api_key_session(&checked)?;
    let keep = (!everywhere).then_some(checked.session.id.as_str());
    let n = st
        .store
        .revoke_sessions_but(&app.config.id, &checked.user.id, keep)
        .await?;
    Ok(json_response(StatusCode::OK, &json!({ "revoked": n })))
}

/// Authenticates an API-key call (Bearer refresh) and returns the app and the user.
async fn key_owner(
    st: &AppState,
    headers: &HeaderMap,
    target: &Target,
) -> Result<(std::sync::Arc<AppRuntime>, UserRow), ApiError> {
    let (app, claims, token) = verify_bearer(st, headers, TYP_REFRESH, "api_keys")?;
    if app.config.providers.api_key.is_none() {
        return Err(ApiError::provider_not_found("api-key"));
    }
    let checked = use_refresh_token(
        st,
        &app,
        &claims,
        &token,
        Purpose::Authenticate,
        headers,
        target,
    )
    .await?;
    // A session that came from an API key cannot manage API keys: a leaked key could
    // otherwise mint keys that outlive it (realm-core and realm-dart refuse it the same way).
    if checked.session.api_key_id.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Forbidden",
            "a session logged in with an API key cannot manage API keys; log in another way",
        ));
    }
    Ok((app, checked.user))
}

fn key_doc(key: &ApiKeyRow) -> Value {
    json!({ "_id": key.id, "name": key.name, "disabled": key.disabled })
}

/// POST api_keys.
pub async fn create_api_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    target: Target,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let (app, user) = key_owner(&st, &headers, &target).await?;
    let body = json_object(&body)?;
    let name = req_str(&body, "name")?.to_string();
    if name.trim().is_empty() || name.chars().count() > 256 {
        return Err(ApiError::bad_request(
            "field 'name' must be 1 to 256 characters",
        ));
    }
    let id = tokens::new_object_id();
    let key = tokens::random_alnum(64);
    let hash = tokens::sha256_hex(&key);
    let now = st.now();
    let row = ApiKeyRow {
        id: id.clone(),
        user_id: user.id.clone(),
        name: name.clone(),
        disabled: false,
    };
    st.store
        .create_api_key(&app.config.id, &user.id, &row, &hash, now)
        .await?;
    Ok(json_response(
        StatusCode::CREATED,
        &json!({ "_id": id, "key": key, "name": name, "disabled": false }),
    ))
}

/// GET api_keys.
pub async fn list_api_keys(
    State(st): State<AppState>,
    headers: HeaderMap,
    target: Target,
) -> Result<Response, ApiError> {
    let (_, user) = key_owner(&st, &headers, &target).await?;
    let list = st
        .store
        .api_keys(&user.id)
        .await?
        .iter()
        .map(key_doc)
        .collect();
    Ok(json_response(StatusCode::OK, &Value::Array(list)))
}

async fn key_id(
    st: &AppState,
    headers: &HeaderMap,
    target: &Target,
    path: Result<Path<String>, PathRejection>,
) -> Result<(UserRow, String), ApiError> {
    let (_, user) = key_owner(st, headers, target).await?;
    let Path(id) = path.map_err(|_| ApiError::api_key_not_found())?;
    if !tokens::is_object_id(&id) {
        return Err(ApiError::api_key_not_found());
    }
    Ok((user, id.to_ascii_lowercase()))
}

/// GET api_keys/{id}.
pub async fn fetch_api_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    target: Target,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let (user, id) = key_id(&st, &headers, &target, path).await?;
    let doc = st
        .store
        .api_key(&user.id, &id)
        .await?
        .map(|k| key_doc(&k))
        .ok_or_else(ApiError::api_key_not_found)?;
    Ok(json_response(StatusCode::OK, &doc))
}

/// DELETE api_keys/{id}.
pub async fn delete_api_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    target: Target,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let (user, id) = key_id(&st, &headers, &target, path).await?;
    if !st.store.delete_api_key(&user.id, &id).await? {
        return Err(ApiError::api_key_not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_key_disabled(
    st: AppState,
    headers: HeaderMap,
    target: Target,
    path: Result<Path<String>, PathRejection>,
    disabled: bool,
) -> Result<Response, ApiError> {
    let (user, id) = key_id(&st, &headers, &target, path).await?;
    if !st
        .store
        .set_api_key_disabled(&user.id, &id, disabled)
        .await?
    {
        return Err(ApiError::api_key_not_found());
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// PUT api_keys/{id}/enable.
pub async fn enable_api_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    target: Target,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    set_key_disabled(st, headers, target, path, false).await
}

/// PUT api_keys/{id}/disable.
pub async fn disable_api_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    target: Target,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    set_key_disabled(st, headers, target, path, true).await
}
