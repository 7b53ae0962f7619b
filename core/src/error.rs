//! The public error type. Every variant tells the app what to do next, and none carries a token.

use std::fmt;
use std::time::Duration;

shared_type! {
    $ __session_error_kind;
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    =>
    /// Why a session ended for good: the refresh token can no longer be used.
    pub enum SessionErrorKind {
        /// The refresh token's lifetime (or the inactivity timeout) ran out.
        TokenExpired,
        /// The session was revoked: logout elsewhere, an admin revoke, or refresh-token reuse.
        SessionRevoked,
        /// The user was disabled on the server.
        UserDisabled,
        /// The user was deleted on the server.
        UserDeleted,
    }
}

impl SessionErrorKind {
    /// Reads the `reason` sessionkit-server adds to a 401 on a refresh token. A server that does
    /// not send one (the hosted service did not) means the session expired.
    pub(crate) fn from_reason(reason: Option<&str>, error_code: Option<&str>) -> Self {
        match (reason, error_code) {
            (Some("revoked"), _) => Self::SessionRevoked,
            (Some("disabled"), _) | (_, Some("UserDisabled")) => Self::UserDisabled,
            (Some("deleted"), _) => Self::UserDeleted,
            _ => Self::TokenExpired,
        }
    }
}

impl fmt::Display for SessionErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::TokenExpired => "the session expired",
            Self::SessionRevoked => "the session was revoked",
            Self::UserDisabled => "the user was disabled",
            Self::UserDeleted => "the user was deleted",
        })
    }
}

/// What went wrong in an SDK call.
///
/// ```
/// # use sessionkit::AppError;
/// fn advice(e: &AppError) -> &'static str {
///     match e {
///         AppError::SessionExpired { .. } => "show the login screen",
///         AppError::Network { .. } | AppError::Timeout { .. } => "retry later",
///         _ => "report it",
///     }
/// }
/// ```
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The server could not be reached (DNS, connection refused or reset, TLS).
    #[error("network error: {message} (check the connection and retry)")]
    Network { message: String },
    /// The server did not answer within `request_timeout_ms`.
    #[error("request timed out: {message} (retry, or raise request_timeout_ms)")]
    Timeout { message: String },
    /// The server answered with an error; `code` is its `error_code` as sent.
    ///
    /// `retry_after_secs` is the answer's `Retry-After` (RFC 9110 section 10.2.3: seconds, or
    /// an HTTP-date counted from the answer's `Date`), in whole seconds from when the answer
    /// arrived: how long the server asks the app to wait (a 429 rate limit such as a login
    /// lockout, a busy 503). `None` when the answer had none or an unreadable one. Values
    /// above 2^31 s read as 2^31 (RFC 9111 section 1.2.2). See [`AppError::retry_after`].
    #[error("{message} (server error {code}, HTTP {http_status})")]
    Service {
        code: String,
        message: String,
        http_status: u16,
        link: Option<String>,
        retry_after_secs: Option<u64>,
    },
    /// The refresh token was rejected: the user must log in again. `message` starts with the
    /// kind's sentence and goes on with the server's words.
    #[error("{message}; the user must log in again")]
    SessionExpired {
        kind: SessionErrorKind,
        message: String,
    },
    /// The user is unknown to this App (removed, deleted, or from another App).
    #[error("user not found: {message}")]
    ClientUserNotFound { message: String },
    /// The operation needs a logged-in user; log in again first.
    #[error("user not logged in: {message}")]
    ClientUserNotLoggedIn { message: String },
    /// Anonymous credentials cannot be linked to an existing user.
    #[error("{message}")]
    ClientUserAlreadyNamed { message: String },
    /// A token from the server (or from storage) is not a readable JWT.
    #[error("malformed token: {message}")]
    BadToken { message: String },
    /// The server's answer could not be understood.
    #[error("malformed response from the server: {message}")]
    MalformedResponse { message: String },
    /// The session store failed; sessions in memory are kept.
    #[error("session storage error: {message}")]
    Storage { message: String },
    /// An argument or config value is invalid; the message names it.
    #[error("invalid argument: {message}")]
    InvalidArgument { message: String },
    /// The App was closed ([`App::close`](crate::App::close)): create a new App to go on. The
    /// sessions it saved are kept and a new App restores them.
    #[error("the App was closed: {message}")]
    AppClosed { message: String },
    /// Plain http to a non-loopback host without `allow_insecure_http`.
    #[error(
        "refusing plain http to {url}: use https, or set allow_insecure_http for a trusted network"
    )]
    InsecureUrl { url: String },
}

impl AppError {
    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument {
            message: message.into(),
        }
    }
    pub(crate) fn malformed(message: impl Into<String>) -> Self {
        Self::MalformedResponse {
            message: message.into(),
        }
    }
    pub(crate) fn not_logged_in(message: impl Into<String>) -> Self {
        Self::ClientUserNotLoggedIn {
            message: message.into(),
        }
    }
    pub(crate) fn closed() -> Self {
        Self::AppClosed {
            message: "create a new App (it restores the saved sessions) to go on".into(),
        }
    }
    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::ClientUserNotFound {
            message: message.into(),
        }
    }

    /// The HTTP status of a server error, if this is one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            Self::Service { http_status, .. } => Some(*http_status),
            _ => None,
        }
    }

    /// The server's `error_code`, if this is a server error.
    pub fn server_code(&self) -> Option<&str> {
        match self {
            Self::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// How long the server asked to wait before this request is sent again: the `Retry-After`
    /// of its answer (RFC 9110 section 10.2.3), as the server sent it; `None` if it sent none
    /// (or this is not a server error). Logins, refreshes, function calls and every other
    /// request report it alike. The automatic refresh never retries sooner (it waits at most
    /// an hour, whatever the server asks: PROTOCOL.md, "Client refresh rules").
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Service {
                retry_after_secs, ..
            } => retry_after_secs.map(Duration::from_secs),
            _ => None,
        }
    }

    /// True for failures that say nothing about the session: network, timeout, 5xx, 429.
    /// A refresh failing this way keeps the tokens and is retried.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Network { .. } | Self::Timeout { .. } | Self::MalformedResponse { .. } => true,
            Self::BadToken { .. } => true,
            Self::Service { http_status, .. } => *http_status >= 500 || *http_status == 429,
            _ => false,
        }
    }
}

shared_type! {
    $ __session_error;
    #[derive(Clone, Debug, PartialEq, Eq)]
    =>
    /// The error handed to the app's `SessionErrorHandler` when a
    /// user's session ended for good.
    pub struct SessionError {
        pub user_id: String,
        pub kind: SessionErrorKind,
        pub message: String,
        /// The server's `error_code` (`InvalidSession`, `UserDisabled`), as sent.
        pub server_code: Option<String>,
    }
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "user {}: {} ({})", self.user_id, self.kind, self.message)
    }
}

/// Shorthand for results of SDK calls.
pub type Result<T, E = AppError> = std::result::Result<T, E>;
