//! `AppError` as each language's exception type, and the session-end values.

use sessionkit as sk;

/// Why a session ended for good: the refresh token can no longer be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum SessionErrorKind {
    TokenExpired,
    SessionRevoked,
    UserDisabled,
    UserDeleted,
}

impl From<sk::SessionErrorKind> for SessionErrorKind {
    fn from(k: sk::SessionErrorKind) -> Self {
        match k {
            sk::SessionErrorKind::TokenExpired => Self::TokenExpired,
            sk::SessionErrorKind::SessionRevoked => Self::SessionRevoked,
            sk::SessionErrorKind::UserDisabled => Self::UserDisabled,
            sk::SessionErrorKind::UserDeleted => Self::UserDeleted,
        }
    }
}

/// Handed to the `SessionErrorHandler` when a user's session ended: they must log in again.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SessionError {
    pub user_id: String,
    pub kind: SessionErrorKind,
    pub message: String,
    /// The server's `error_code` as sent.
    pub server_code: Option<String>,
}

impl From<sk::SessionError> for SessionError {
    fn from(e: sk::SessionError) -> Self {
        Self {
            user_id: e.user_id,
            kind: e.kind.into(),
            message: e.message,
            server_code: e.server_code,
        }
    }
}

/// What went wrong in an SDK call. The variants mirror the core's; each says what to do next and
/// none carries a token. `Internal` is the bindings' own: an SDK bug or a failed runtime.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum AppError {
    #[error("network error: {message} (check the connection and retry)")]
    Network { message: String },
    #[error("request timed out: {message} (retry, or raise request_timeout_ms)")]
    Timeout { message: String },
    /// The server answered with an error. `retry_after_secs`: its `Retry-After` in seconds
    /// (RFC 9110 section 10.2.3; an HTTP-date is turned into seconds), how long it asks the
    /// app to wait (a login lockout, a busy server); null when it sent none or an unreadable
    /// one. Signed, as `http_status`, so that Kotlin gets a `Long` rather than a `ULong`.
    #[error("{message} (server error {code}, HTTP {http_status})")]
    Service {
        code: String,
        message: String,
        http_status: i32,
        link: Option<String>,
        retry_after_secs: Option<i64>,
    },
    #[error("{message}; the user must log in again")]
    SessionExpired {
        kind: SessionErrorKind,
        message: String,
    },
    #[error("user not found: {message}")]
    ClientUserNotFound { message: String },
    #[error("user not logged in: {message}")]
    ClientUserNotLoggedIn { message: String },
    #[error("{message}")]
    ClientUserAlreadyNamed { message: String },
    #[error("malformed token: {message}")]
    BadToken { message: String },
    #[error("malformed response from the server: {message}")]
    MalformedResponse { message: String },
    #[error("session storage error: {message}")]
    Storage { message: String },
    #[error("invalid argument: {message}")]
    InvalidArgument { message: String },
    #[error("refusing plain http to {url}: use https, or set allow_insecure_http")]
    InsecureUrl { url: String },
    /// The App was closed (`close()`); create a new App to go on: it restores the sessions.
    #[error("the App was closed: {message}")]
    AppClosed { message: String },
    /// Not a core error: the SDK itself failed (a panic, a runtime that would not start, a
    /// callback that raised). Report it.
    #[error("internal SDK error: {message}")]
    Internal { message: String },
}

impl From<sk::AppError> for AppError {
    fn from(e: sk::AppError) -> Self {
        use sk::AppError as E;
        match e {
            E::Network { message } => Self::Network { message },
            E::Timeout { message } => Self::Timeout { message },
            E::Service {
                code,
                message,
                http_status,
                link,
                retry_after_secs,
            } => Self::Service {
                code,
                message,
                http_status: i32::from(http_status),
                link,
                // At most 2^31 (the core caps it), so it always fits.
                retry_after_secs: retry_after_secs.map(|s| i64::try_from(s).unwrap_or(i64::MAX)),
            },
            E::SessionExpired { kind, message } => Self::SessionExpired {
                kind: kind.into(),
                message,
            },
            E::ClientUserNotFound { message } => Self::ClientUserNotFound { message },
            E::ClientUserNotLoggedIn { message } => Self::ClientUserNotLoggedIn { message },
            E::ClientUserAlreadyNamed { message } => Self::ClientUserAlreadyNamed { message },
            E::BadToken { message } => Self::BadToken { message },
            E::MalformedResponse { message } => Self::MalformedResponse { message },
            E::Storage { message } => Self::Storage { message },
            E::InvalidArgument { message } => Self::InvalidArgument { message },
            E::InsecureUrl { url } => Self::InsecureUrl { url },
            E::AppClosed { message } => Self::AppClosed { message },
            // The core enum is non_exhaustive: a variant added there arrives as text until
            // the bindings learn it.
            other => Self::Internal {
                message: other.to_string(),
            },
        }
    }
}

#[uniffi::export]
impl AppError {
    /// The error as a sentence a person can read: what went wrong, then what to do; the
    /// variant's fields stay available as properties. Each binding uses it as the error's
    /// message (Kotlin `message`, Swift `description`/`errorDescription`, Python `str()`).
    pub fn describe(&self) -> String {
        self.to_string()
    }
}

/// A foreign callback (listener, handler, logger) raised something other than an `AppError`.
impl From<uniffi::UnexpectedUniFFICallbackError> for AppError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Internal {
            message: format!("a callback raised: {}", e.reason),
        }
    }
}
