//! HTTP routing, body extraction and error rendering.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod email_otp;
pub mod metrics;
pub mod userpass;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::state::AppState;

/// Largest accepted request body.
pub const MAX_BODY: usize = 1 << 20;

/// The raw request body, at most [`MAX_BODY`] bytes (413 with a protocol error body otherwise),
/// read within `body_read_timeout_secs` (408 otherwise: a client trickling its body must not
/// hold a connection and a task for as long as it likes).
pub struct RawBody(pub Bytes);

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, st: &AppState) -> Result<Self, ApiError> {
        let too_large = || {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "BadRequest",
                format!("request body larger than {MAX_BODY} bytes"),
            )
        };
        if let Some(len) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
            && len > MAX_BODY as u64
        {
            return Err(too_large());
        }
        let deadline = std::time::Duration::from_secs(st.config.limits.body_read_timeout_secs);
        match tokio::time::timeout(deadline, axum::body::to_bytes(req.into_body(), MAX_BODY)).await
        {
            Ok(body) => body.map(RawBody).map_err(|_| too_large()),
            Err(_) => Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "BadRequest",
                format!(
                    "the request body did not arrive within {} s",
                    deadline.as_secs()
                ),
            )),
        }
    }
}

/// Parses a body that must be a JSON object; an empty body counts as `{}`.
pub fn json_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::bad_request("request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(format!("malformed JSON body: {e}"))),
    }
}

/// Maps a path extraction failure to a protocol error.
pub fn path_error(e: axum::extract::rejection::PathRejection) -> ApiError {
    ApiError::bad_request(format!("bad path: {e}"))
}

/// A JSON response with a status.
pub fn json_response(status: StatusCode, v: &Value) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        v.to_string(),
    )
        .into_response()
}

/// The base URL clients reach us at: `public_url`; else the request's Host header where it can
/// be trusted (listed in `allowed_hosts`, a loopback host while listening on loopback, or
/// `--dev`); else the address listened on. An arbitrary Host is never echoed: a cache could
/// keep `location`'s answer and send every client's tokens to that host.
pub fn base_url(st: &AppState, headers: &axum::http::HeaderMap) -> String {
    let config = &st.config;
    if let Some(u) = &config.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_graphic()));
    let trusted = |h: &str| {
        config.dev
            || config
                .allowed_hosts
                .iter()
                .any(|a| a.eq_ignore_ascii_case(h))
            || (config.listen.ip().is_loopback() && is_loopback_host(h))
    };
    match host.filter(|h| trusted(h)) {
        Some(h) => format!("http://{h}"),
        None => format!("http://{}", st.local_addr),
    }
}

/// The request's method and URL for its DPoP proof (dpop.rs): the URL as [`base_url`] knows
/// the server's public address, and the request's path.
impl axum::extract::FromRequestParts<AppState> for crate::dpop::Target {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        st: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(crate::dpop::Target {
            method: parts.method.as_str().to_string(),
            url: format!("{}{}", base_url(st, &parts.headers), parts.uri.path()),
        })
    }
}

/// `localhost`, `127.x.y.z` or `[::1]`, with or without a port.
fn is_loopback_host(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map_or(host, |(n, _)| n),
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Builds the router.
pub fn router(state: AppState) -> Router {
    const AR: &str = "/api/client/v2.0/app/{app_id}";
    const UP: &str = "/api/client/v2.0/app/{app_id}/auth/providers/local-userpass";
    const ADM: &str = "/api/admin/v3.0/groups/{group_id}/apps/{app_id}";
    let r = |p: &str, s: &str| format!("{p}{s}");
    let routes = Router::new()
        .route("/health", get(health))
        .route(&r(AR, "/location"), get(auth::location))
        .route(&r(AR, "/.well-known/jwks.json"), get(auth::jwks))
        .route(
            &r(AR, "/.well-known/openid-configuration"),
            get(auth::openid_configuration),
        )
        .route(
            &r(AR, "/auth/providers/{provider}/login"),
            post(auth::login),
        )
        .route(
            &r(AR, "/auth/providers/email-otp/send"),
            post(email_otp::send),
        )
        .route(&r(AR, "/functions/call"), post(auth::call_function))
        .route(&r(UP, "/register"), post(userpass::register))
        .route(&r(UP, "/confirm"), post(userpass::confirm))
        .route(&r(UP, "/confirm/send"), post(userpass::confirm_send))
        .route(&r(UP, "/confirm/call"), post(userpass::confirm_call))
        .route(&r(UP, "/reset/send"), post(userpass::reset_send))
        .route(&r(UP, "/reset"), post(userpass::reset))
        .route(&r(UP, "/reset/call"), post(userpass::reset_call))
        .route("/api/client/v2.0/auth/profile", get(auth::profile))
        .route(
            "/api/client/v2.0/auth/session",
            post(auth::refresh).delete(auth::logout),
        )
        .route("/api/client/v2.0/auth/delete", delete(auth::delete_user))
        .route(
            "/api/client/v2.0/auth/sessions",
            get(auth::list_sessions).delete(auth::revoke_sessions),
        )
        .route(
            "/api/client/v2.0/auth/sessions/{id}",
            delete(auth::revoke_session),
        )
        .route(
            "/api/client/v2.0/auth/api_keys",
            post(auth::create_api_key).get(auth::list_api_keys),
        )
        .route(
            "/api/client/v2.0/auth/api_keys/{key_id}",
            get(auth::fetch_api_key).delete(auth::delete_api_key),
        )
        .route(
            "/api/client/v2.0/auth/api_keys/{key_id}/enable",
            put(auth::enable_api_key),
        )
        .route(
            "/api/client/v2.0/auth/api_keys/{key_id}/disable",
            put(auth::disable_api_key),
        )
        .route(
            "/api/admin/v3.0/auth/providers/mongodb-cloud/login",
            post(admin::login),
        )
        .route("/api/admin/v3.0/auth/session", post(admin::refresh))
        .route("/api/admin/v3.0/test/clock", post(admin::test_clock))
        .route(
            &r(ADM, "/security/refresh_token_expiration"),
            put(admin::refresh_token_expiration),
        )
        .route(&r(ADM, "/users/verify_token"), post(admin::verify_token))
        .route(
            &r(ADM, "/users"),
            get(admin::list_users).post(admin::create_user),
        )
        .route(&r(ADM, "/users/import"), post(admin::import_users))
        .route(
            &r(ADM, "/users/{user_id}"),
            get(admin::get_user).delete(admin::delete_user),
        )
        .route(&r(ADM, "/users/{user_id}/logout"), put(admin::logout_user))
        .route(
            &r(ADM, "/users/{user_id}/disable"),
            put(admin::disable_user),
        )
        .route(&r(ADM, "/users/{user_id}/enable"), put(admin::enable_user))
        .route(
            &r(ADM, "/users/{user_id}/custom_data"),
            put(admin::set_custom_data),
        )
        .route(&r(ADM, "/outbox"), get(admin::outbox))
        .route(&r(ADM, "/mail"), get(admin::mail_queue))
        .route(&r(ADM, "/mail/retry"), post(admin::retry_mail))
        .route(&r(ADM, "/events"), get(admin::events))
        .route(&r(ADM, "/metrics"), get(admin::metrics))
        .route("/metrics", get(metrics::scrape_authenticated))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Inside shared_test_clock: an event's time is the caught-up clock's.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            audit::context,
        ));
    // Each layer is a boxed future and a service clone on every request: the test clock's and
    // the metrics' are added only where they are on.
    let routes = if state.config.test_clock {
        routes.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            shared_test_clock,
        ))
    } else {
        routes
    };
    let routes = if state.metrics.is_some() {
        // Inside render_errors, which takes the ApiError (and its code) out of the answer.
        routes.layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::observe,
        ))
    } else {
        routes
    };
    routes
        .layer(axum::middleware::from_fn(render_errors))
        .with_state(state)
}

/// With `test_clock = true`: before each request, the clock takes the offset stored in the
/// database, so several instances on one database share one test clock (as they share one
/// real clock); after it, this instance's request counters are stored there before the answer
/// leaves, so metrics read through any instance count every instance's requests. Off
/// otherwise: a production server neither reads nor writes them.
async fn shared_test_clock(
    axum::extract::State(st): axum::extract::State<AppState>,
    req: axum::extract::Request,
    next: Next,
) -> Response {
    // Layered only with `test_clock = true` (router): no check of it here.
    if let Ok(Some(v)) = st.store.meta_get(crate::state::TEST_CLOCK_KEY).await
        && let Ok(offset) = v.parse::<i64>()
    {
        st.clock.catch_up(offset);
    }
    let response = next.run(req).await;
    let key = format!("{}{}", crate::state::TEST_COUNTERS_PREFIX, st.instance_id);
    if let Err(e) = st
        .store
        .meta_set(&key, &st.counters.all_apps().to_string())
        .await
    {
        tracing::warn!("cannot store the test counters: {}", e.message);
    }
    response
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NotFound", "no such route")
}

/// GET /health (extension): 200 `{"status":"ok"}` when the database answers, else 503; for
/// load balancers and orchestrators. Counts as no app's request and needs no token.
async fn health(
    axum::extract::State(st): axum::extract::State<AppState>,
) -> Result<Response, ApiError> {
    st.store
        .ping()
        .await
        .map_err(|_| ApiError::unavailable("the database does not answer", 5))?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({"status": "ok"}),
    ))
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "BadRequest",
        "method not allowed on this route",
    )
}

/// Logs each request (method, path without the query, status) and writes error bodies.
async fn render_errors(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut resp = next.run(req).await;
    tracing::info!(%method, %path, status = resp.status().as_u16(), "request");
    if let Some(err) = resp.extensions_mut().remove::<ApiError>() {
        let body = err.body();
        let mut out = json_response(err.status, &body);
        for (k, v) in resp.headers() {
            if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
                out.headers_mut().insert(k.clone(), v.clone());
            }
        }
        return out;
    }
    // Rejections from axum itself (there should be none left) must not leak plain-text bodies.
    if resp.status().is_client_error() || resp.status().is_server_error() {
        let is_json = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
        if !is_json {
            let status = resp.status();
            let code = if status.is_server_error() {
                "InternalServerError"
            } else {
                "BadRequest"
            };
            let err = ApiError::new(status, code, status.canonical_reason().unwrap_or("error"));
            return json_response(status, &err.body());
        }
    }
    resp
}
