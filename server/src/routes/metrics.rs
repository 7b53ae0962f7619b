//! `GET /metrics` and the middleware that counts every request (crate::metrics; SERVER.md,
//! "Metrics").

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::metrics::{CONTENT_TYPE, Metrics};
use crate::state::AppState;

/// Middleware recording every request of the client and admin APIs.
pub async fn observe(State(st): State<AppState>, req: Request, next: Next) -> Response {
    let Some(metrics) = st.metrics.clone() else {
        return next.run(req).await;
    };
    let started = Instant::now();
    // Clones of shared buffers, not copies.
    let route = req.extensions().get::<MatchedPath>().cloned();
    let method = req.method().clone();
    let uri = req.uri().clone();
    let resp = next.run(req).await;
    metrics.record(
        route.as_ref().map(MatchedPath::as_str),
        uri.path(),
        &method,
        &resp,
        started.elapsed().as_secs_f64(),
    );
    resp
}

/// GET /metrics on the server's own address: the exposition, for HTTP Basic credentials of
/// the admin key pair. 404 when metrics are off or on their own address; 401 with a
/// `WWW-Authenticate` challenge without the right credentials.
pub async fn scrape_authenticated(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let (Some(metrics), None) = (st.metrics.clone(), st.config.metrics.listen) else {
        return ApiError::new(StatusCode::NOT_FOUND, "NotFound", "no such route").into_response();
    };
    if !admin_basic_auth(&st, &headers) {
        let mut resp = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "AuthError",
            "metrics need HTTP Basic credentials: the admin public key as the user and the \
             admin private key as the password",
        )
        .into_response();
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"sessionkit metrics\""),
        );
        return resp;
    }
    exposition(&st, &metrics).await
}

/// GET /metrics on the metrics address: the exposition, no credentials (bind that address
/// where only the scraper reaches it).
pub async fn scrape_open(State(st): State<AppState>) -> Response {
    match st.metrics.clone() {
        Some(metrics) => exposition(&st, &metrics).await,
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn exposition(st: &crate::state::Inner, metrics: &Arc<Metrics>) -> Response {
    metrics.set_gauges(
        st.store.mail_queue_depth().await.ok(),
        st.passwords.admitted(),
        &st.store.stats(),
    );
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], metrics.encode()).into_response()
}

fn admin_basic_auth(st: &crate::state::Inner, headers: &HeaderMap) -> bool {
    use base64::Engine;
    use subtle::ConstantTimeEq;
    let Some(admin) = st.admin.as_ref() else {
        return false;
    };
    let Some(encoded) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let expected = format!("{}:{}", admin.public_key, admin.private_key);
    decoded.ct_eq(expected.as_bytes()).into()
}

/// The router of the metrics address (`[metrics] listen`): GET /metrics only.
pub fn router(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(scrape_open))
        .with_state(state)
}
