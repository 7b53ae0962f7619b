//! The audit context of every request, and the events that record no change (crate::audit;
//! SERVER.md, "Audit log"): a refused login and a rate-limited request are written here, after
//! the answer is made, on their own; every change's event is written by the store in the
//! change's transaction.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::json;

use crate::audit::{self, Actor, Context, Event, kind};
use crate::error::ApiError;
use crate::rate_limit::ClientAddr;
use crate::state::AppState;

/// Runs the request in its audit context (address, user agent, actor, server time), then
/// writes the event of a refused login or a rate limit. A failure to write it is logged and
/// changes nothing of the answer: the audit log never fails a request that made no change.
pub async fn context(State(st): State<AppState>, req: Request, next: Next) -> Response {
    // Clones of shared buffers, not copies: read only when an event is written.
    let uri = req.uri().clone();
    let path = uri.path();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let context = Context {
        ip: req.extensions().get::<ClientAddr>().map(|ClientAddr(a)| *a),
        user_agent: req.headers().get(header::USER_AGENT).cloned(),
        actor: if path.starts_with("/api/admin/") {
            Actor::Admin
        } else {
            Actor::User
        },
        now: st.now(),
        outbox: Default::default(),
    };
    // A 5xx answer may be a change that did not commit: its events are not shipped (the
    // database, which has every committed one, stays the record).
    let resp = audit::ship(
        context.clone(),
        st.audit_log.as_deref(),
        next.run(req),
        |r: &Response| !r.status().is_server_error(),
    )
    .await;
    let status = resp.status();
    if status.is_success() {
        return resp;
    }
    let Some(route) = route else { return resp };
    // Only an app this server serves: a made-up id in a path is no app of the log.
    let Some(app_id) = app_of(path).filter(|a| st.apps.contains_key(*a)) else {
        return resp;
    };
    let error = resp.extensions().get::<ApiError>();
    let code = error.map_or("Error", |e| e.code);
    let about_user = error.and_then(|e| e.user_id.clone());
    let event = if status == StatusCode::TOO_MANY_REQUESTS {
        Some((kind::RATE_LIMITED, json!({"route": route.as_str()})))
    } else if route.as_str().ends_with("/auth/providers/{provider}/login") {
        let provider = crate::metrics::login_provider(path);
        Some((
            kind::LOGIN_FAILED,
            json!({"provider": provider, "error": code}),
        ))
    } else {
        None
    };
    if let Some((kind, detail)) = event {
        let written = audit::ship(
            context,
            st.audit_log.as_deref(),
            async {
                let mut event = Event::new(app_id, kind).detail(detail);
                if let Some(user_id) = &about_user {
                    event = event.user(user_id);
                }
                st.store.record_events(vec![event]).await
            },
            Result::is_ok,
        )
        .await;
        if let Err(e) = written {
            tracing::warn!("cannot write an audit event: {}", e.message);
        }
    }
    resp
}

/// The app id of a client API path (`/api/client/v2.0/app/<id>/...`) or an admin one
/// (`/api/admin/v3.0/groups/<g>/apps/<id>/...`).
fn app_of(path: &str) -> Option<&str> {
    let rest = path
        .strip_prefix("/api/client/v2.0/app/")
        .or_else(|| path.split_once("/apps/").map(|(_, r)| r))?;
    rest.split('/').next().filter(|s| !s.is_empty())
}
