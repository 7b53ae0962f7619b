//! Protocol errors: `{"error","error_code","link"}` (+ `"reason"` on refresh-token 401s).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

/// Why a refresh token no longer works (sent as `"reason"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Past its expiry or inactivity timeout.
    Expired,
    /// Logged out, revoked by the admin, or reused after rotation.
    Revoked,
    /// The user is disabled.
    Disabled,
    /// The user was deleted.
    Deleted,
}

impl Reason {
    /// The wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Expired => "expired",
            Reason::Revoked => "revoked",
            Reason::Disabled => "disabled",
            Reason::Deleted => "deleted",
        }
    }
}

/// An error answer. Rendered to JSON by the response middleware, which knows the base URL for `link`.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// `error_code`.
    pub code: &'static str,
    /// `error`.
    pub message: String,
    /// `reason`, for refresh-token 401s.
    pub reason: Option<Reason>,
    /// Seconds, sent as `Retry-After` (503, 429).
    pub retry_after: Option<u64>,
    /// This answer revoked a session because a rotated-out refresh token was presented again
    /// (counted by the metrics; not sent: the client sees a plain revoked session).
    pub reuse_detected: bool,
    /// The user a refusal was about, when the server knows it (a disabled user's login): the
    /// audit log's `login_failed` event names it (not sent).
    pub user_id: Option<String>,
    /// A DPoP refusal (dpop.rs, RFC 9449 section 7.1): its RFC error code, sent in
    /// `WWW-Authenticate: DPoP error="..."` on a 401, and the nonce to use, sent as
    /// `DPoP-Nonce`. Boxed: every `Result` of the server carries an `ApiError`, and the
    /// challenge is rare.
    pub dpop: Option<Box<(&'static str, Option<String>)>>,
}

impl ApiError {
    /// A new error.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            reason: None,
            retry_after: None,
            reuse_detected: false,
            user_id: None,
            dpop: None,
        }
    }
    /// With a DPoP challenge: RFC 9449's error code and, to be used in the next proof, a nonce.
    pub fn with_dpop_challenge(mut self, error: &'static str, nonce: Option<String>) -> Self {
        self.dpop = Some(Box::new((error, nonce)));
        self
    }
    /// Names the user this refusal is about, for the audit log.
    pub fn about_user(mut self, user_id: &str) -> Self {
        self.user_id = Some(user_id.to_owned());
        self
    }
    /// 401 InvalidSession, reason `revoked`, for a session this request revoked because its
    /// rotated-out refresh token was presented again (PROTOCOL.md, "Refresh token rotation").
    pub fn reuse_detected() -> Self {
        let mut e = Self::session_ended(Reason::Revoked);
        e.reuse_detected = true;
        e
    }
    /// Adds a `reason`.
    pub fn with_reason(mut self, reason: Reason) -> Self {
        self.reason = Some(reason);
        self
    }
    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BadRequest", message)
    }
    /// 401 InvalidSession.
    pub fn invalid_session(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "InvalidSession", message)
    }
    /// 401 InvalidSession for a refresh token that no longer works, with its reason. A token
    /// whose session is gone (revoked, expired, its user deleted) reads "failed to find refresh
    /// token", as the hosted service's did: clients written for it (realm-web's `logOut`) take
    /// that text on a logout to mean "already logged out" (REALM-SEMANTICS.md).
    pub fn session_ended(reason: Reason) -> Self {
        let (code, msg) = match reason {
            Reason::Expired => (
                "InvalidSession",
                "invalid session: failed to find refresh token (expired)",
            ),
            Reason::Revoked => (
                "InvalidSession",
                "invalid session: failed to find refresh token (session revoked)",
            ),
            Reason::Disabled => ("UserDisabled", "user disabled"),
            Reason::Deleted => (
                "InvalidSession",
                "invalid session: failed to find refresh token (user deleted)",
            ),
        };
        Self::new(StatusCode::UNAUTHORIZED, code, msg).with_reason(reason)
    }
    /// 401 AuthError.
    pub fn auth(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "AuthError", message)
    }
    /// 404 AuthProviderNotFound.
    pub fn provider_not_found(provider: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "AuthProviderNotFound",
            format!("auth provider not found: '{provider}'"),
        )
    }
    /// 404 InvalidParameter for an unknown app id (the hosted service's wording).
    pub fn app_not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "InvalidParameter",
            format!("cannot find app using Client App ID '{id}'"),
        )
    }
    /// 404 UserNotFound.
    pub fn user_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "UserNotFound", "user not found")
    }
    /// 404 APIKeyNotFound.
    pub fn api_key_not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "APIKeyNotFound", "API key not found")
    }
    /// 503 ServiceUnavailable, with `Retry-After: retry_after_secs`: busy, not broken.
    pub fn unavailable(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            message,
        );
        e.retry_after = Some(retry_after_secs);
        e
    }
    /// 429 TooManyRequests, with `Retry-After: retry_after_secs`.
    pub fn too_many_requests(message: impl Into<String>, retry_after_secs: u64) -> Self {
        let mut e = Self::new(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests", message);
        e.retry_after = Some(retry_after_secs.max(1));
        e
    }
    /// 500 InternalServerError (details are logged, not sent).
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "internal server error",
        )
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        tracing::error!("database error: {e}");
        ApiError::internal()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // The body is written by `routes::render_errors`.
        let mut resp = self.status.into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        if let Some((error, nonce)) = self.dpop.as_deref() {
            if self.status == axum::http::StatusCode::UNAUTHORIZED
                && let Ok(v) = axum::http::HeaderValue::from_str(&format!(
                    "DPoP error=\"{error}\", algs=\"ES256\""
                ))
            {
                resp.headers_mut()
                    .insert(axum::http::header::WWW_AUTHENTICATE, v);
            }
            if let Some(n) = nonce
                && let Ok(v) = axum::http::HeaderValue::from_str(n)
            {
                resp.headers_mut().insert("dpop-nonce", v);
            }
        }
        resp.extensions_mut().insert(self);
        resp
    }
}

impl ApiError {
    /// The JSON body. Atlas added a `link` to its log viewer; this server has no log viewer,
    /// so it sends none rather than a link that answers 404 (PROTOCOL.md, Errors).
    pub fn body(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "error": self.message,
            "error_code": self.code,
        });
        if let Some(r) = self.reason {
            body["reason"] = serde_json::Value::from(r.as_str());
        }
        body
    }
}
