//! Client API: location, login and link, profile, sessions, user deletion, API keys, functions.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use rusqlite::{OptionalExtension, params};
use serde_json::{Map, Value, json};

use super::{RawBody, base_url, json_object, json_response, path_error};
use crate::db::{self, UserRow};
use crate::error::ApiError;
use crate::functions;
use crate::providers::{self, req_str};
use crate::rate_limit::ClientAddr;
use crate::sessions::{self, access_user, check_refresh, record_refresh, verify_bearer};
use crate::state::{AppRuntime, AppState};
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
        let account = (provider == "local-userpass")
            .then(|| body.get("username").and_then(Value::as_str))
            .flatten()
            .map(|email| format!("{app_id}/{}", crate::email::lookup(email)));
        st.rate_limits.login(addr, account.as_deref())?;
    }
    let caller = if link {
        let (tok_app, _, user) = access_user(&st, &headers, "").await?;
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
    let device = device_id(&body);
    let identity = if provider == "anon-user" {
        None
    } else {
        Some(providers::authenticate(&st, &app.config, &provider, &body).await?)
    };
    let now = st.now();
    let app2 = app.clone();
    let dev = device.clone();
    let (user_id, access, refresh) = st
        .db
        .call(move |conn| {
            let app = app2;
            let app_id = app.config.id.as_str();
            let tx = conn.transaction()?;
            let user_id = match (&identity, &caller) {
                (None, _) => {
                    let id = db::create_user(&tx, app_id, now, true)?;
                    let ext = tokens::new_object_id();
                    db::upsert_identity(&tx, app_id, "anon-user", &ext, &id, &Map::new(), now)?;
                    id
                }
                (Some(ident), caller) => {
                    let owner = match &ident.owner {
                        Some(o) => Some(o.clone()),
                        None => db::identity_owner(
                            &tx,
                            app_id,
                            &ident.provider_type,
                            &ident.external_id,
                        )?,
                    };
                    let user_id = match (caller, owner) {
                        (Some(c), Some(o)) if *c != o => {
                            return Err(ApiError::new(
                                StatusCode::CONFLICT,
                                "AccountNameInUse",
                                "a user already exists with the specified provider identity",
                            ));
                        }
                        (Some(c), _) => {
                            // A linked anonymous user is a normal user from now on.
                            tx.execute("UPDATE users SET anonymous = 0 WHERE id = ?1", [c])?;
                            c.clone()
                        }
                        (None, Some(o)) => o,
                        (None, None) => db::create_user(&tx, app_id, now, false)?,
                    };
                    db::upsert_identity(
                        &tx,
                        app_id,
                        &ident.provider_type,
                        &ident.external_id,
                        &user_id,
                        &ident.data,
                        now,
                    )?;
                    user_id
                }
            };
            let user = db::user(&tx, app_id, &user_id)?.ok_or_else(ApiError::internal)?;
            if user.disabled {
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    "UserDisabled",
                    "user disabled",
                ));
            }
            tx.execute(
                "UPDATE users SET last_login_at = ?1 WHERE id = ?2",
                params![now, user_id],
            )?;
            let api_key_id = identity
                .as_ref()
                .filter(|i| i.provider_type == "api-key")
                .map(|i| i.external_id.as_str());
            let refresh = sessions::start_session(&tx, &app, &user, &dev, api_key_id, now)?;
            let access = sessions::access_token(&app, &user, &dev, now);
            tx.commit()?;
            Ok((user_id, access, refresh))
        })
        .await?;
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "access_token": access,
            "refresh_token": refresh,
            "user_id": user_id,
            "device_id": device,
        }),
    ))
}

/// GET profile.
pub async fn profile(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (app, _, user) = access_user(&st, &headers, "profile").await?;
    let domain = app.domain_id.clone();
    let doc = st
        .db
        .call(move |conn| Ok(db::profile_json(conn, &user, &domain)?))
        .await?;
    Ok(json_response(StatusCode::OK, &doc))
}

/// POST session: a new access token (and, with rotation, a new refresh token).
pub async fn refresh(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (app, claims, token) = verify_bearer(&st, &headers, TYP_REFRESH, "refresh")?;
    let now = st.now();
    let (access, rotated) = st
        .db
        .call(move |conn| {
            let checked = check_refresh(conn, &app, &claims, &token, now)?;
            let rotated = record_refresh(conn, &app, &checked, now)?;
            let access =
                sessions::access_token(&app, &checked.user, &checked.session.device_id, now);
            Ok((access, rotated))
        })
        .await?;
    let mut out = json!({ "access_token": access });
    if let Some(r) = rotated {
        out["refresh_token"] = Value::String(r);
    }
    Ok(json_response(StatusCode::CREATED, &out))
}

/// DELETE session: log out this session.
pub async fn logout(State(st): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let (app, claims, token) = verify_bearer(&st, &headers, TYP_REFRESH, "logout")?;
    let now = st.now();
    st.db
        .call(move |conn| {
            let checked = check_refresh(conn, &app, &claims, &token, now)?;
            conn.execute(
                "UPDATE sessions SET revoked = 1 WHERE id = ?1",
                [&checked.session.id],
            )?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// DELETE auth/delete: the caller deletes their own account.
pub async fn delete_user(
    State(st): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (app, _, user) = access_user(&st, &headers, "delete").await?;
    let app_id = app.config.id.clone();
    st.db
        .call(move |conn| {
            let tx = conn.transaction()?;
            db::delete_user(&tx, &app_id, &user.id)?;
            tx.commit()?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// POST functions/call.
pub async fn call_function(
    State(st): State<AppState>,
    path: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let Path(app_id) = path.map_err(path_error)?;
    st.app(&app_id)?;
    let (app, _, user) = access_user(&st, &headers, "function").await?;
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

/// Authenticates an API-key call (Bearer refresh) and returns the app and the user.
async fn key_owner(
    st: &AppState,
    headers: &HeaderMap,
) -> Result<(std::sync::Arc<AppRuntime>, UserRow), ApiError> {
    let (app, claims, token) = verify_bearer(st, headers, TYP_REFRESH, "api_keys")?;
    if app.config.providers.api_key.is_none() {
        return Err(ApiError::provider_not_found("api-key"));
    }
    let now = st.now();
    let app2 = app.clone();
    let checked = st
        .db
        .call(move |conn| check_refresh(conn, &app2, &claims, &token, now))
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

fn key_doc(id: String, name: String, disabled: bool) -> Value {
    json!({ "_id": id, "name": name, "disabled": disabled })
}

/// POST api_keys.
pub async fn create_api_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    let (app, user) = key_owner(&st, &headers).await?;
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
    let app_id = app.config.id.clone();
    let (id2, name2) = (id.clone(), name.clone());
    st.db
        .call(move |conn| {
            let exists: Option<i64> = conn
                .query_row(
                    "SELECT 1 FROM api_keys WHERE user_id = ?1 AND name = ?2",
                    params![user.id, name2],
                    |r| r.get(0),
                )
                .optional()?;
            if exists.is_some() {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "APIKeyAlreadyExists",
                    "API key with that name already exists",
                ));
            }
            conn.execute(
                "INSERT INTO api_keys (id, app_id, user_id, name, key_hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![id2, app_id, user.id, name2, hash, now],
            )?;
            Ok(())
        })
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
) -> Result<Response, ApiError> {
    let (_, user) = key_owner(&st, &headers).await?;
    let list = st
        .db
        .call(move |conn| {
            let mut stmt = conn.prepare(
                "SELECT id, name, disabled FROM api_keys WHERE user_id = ?1 ORDER BY created_at, rowid",
            )?;
            let rows = stmt.query_map([&user.id], |r| Ok(key_doc(r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
        .await?;
    Ok(json_response(StatusCode::OK, &Value::Array(list)))
}

async fn key_id(
    st: &AppState,
    headers: &HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<(UserRow, String), ApiError> {
    let (_, user) = key_owner(st, headers).await?;
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
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let (user, id) = key_id(&st, &headers, path).await?;
    let doc = st
        .db
        .call(move |conn| {
            Ok(conn
                .query_row(
                    "SELECT id, name, disabled FROM api_keys WHERE id = ?1 AND user_id = ?2",
                    params![id, user.id],
                    |r| Ok(key_doc(r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?)
        })
        .await?
        .ok_or_else(ApiError::api_key_not_found)?;
    Ok(json_response(StatusCode::OK, &doc))
}

/// DELETE api_keys/{id}.
pub async fn delete_api_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    let (user, id) = key_id(&st, &headers, path).await?;
    st.db
        .call(move |conn| {
            let tx = conn.transaction()?;
            let n = tx.execute(
                "DELETE FROM api_keys WHERE id = ?1 AND user_id = ?2",
                params![id, user.id],
            )?;
            if n == 0 {
                return Err(ApiError::api_key_not_found());
            }
            tx.execute(
                "DELETE FROM identities WHERE provider_type = 'api-key' AND external_id = ?1 AND user_id = ?2",
                params![id, user.id],
            )?;
            // The sessions that logged in with the key end with it.
            tx.execute(
                "UPDATE sessions SET revoked = 1 WHERE api_key_id = ?1",
                [&id],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_key_disabled(
    st: AppState,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
    disabled: bool,
) -> Result<Response, ApiError> {
    let (user, id) = key_id(&st, &headers, path).await?;
    st.db
        .call(move |conn| {
            let tx = conn.transaction()?;
            let n = tx.execute(
                "UPDATE api_keys SET disabled = ?1 WHERE id = ?2 AND user_id = ?3",
                params![disabled, id, user.id],
            )?;
            if n == 0 {
                return Err(ApiError::api_key_not_found());
            }
            if disabled {
                // Disabling ends the key's sessions; enabling it again does not revive them.
                tx.execute(
                    "UPDATE sessions SET revoked = 1 WHERE api_key_id = ?1",
                    [&id],
                )?;
            }
            tx.commit()?;
            Ok(())
        })
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// PUT api_keys/{id}/enable.
pub async fn enable_api_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    set_key_disabled(st, headers, path, false).await
}

/// PUT api_keys/{id}/disable.
pub async fn disable_api_key(
    State(st): State<AppState>,
    headers: HeaderMap,
    path: Result<Path<String>, PathRejection>,
) -> Result<Response, ApiError> {
    set_key_disabled(st, headers, path, true).await
}
