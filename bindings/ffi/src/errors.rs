//! `AppError` as each language's exception type, and the session-end values.

use sessionkit as sk;
use sk::{SessionError, SessionErrorKind};

// The core's session-end values, as they are (sessionkit's `shared_type!`).
sessionkit::__session_error_kind!(uniffi::remote(Enum));
sessionkit::__session_error!(uniffi::remote(Record));

/// What went wrong in an SDK call. The variants mirror the core's; each says what to do next and
/// none carries a token. A twin of `sessionkit::AppError` because the shapes must differ: signed
/// integers for Kotlin, and `Internal`, the bindings' own (an SDK bug or a failed runtime). Its
/// text is the core's `Display`, so the two never drift.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Error)]
pub enum AppError {
    Network {
        message: String,
    },
    Timeout {
        message: String,
    },
    /// The server answered with an error. `retry_after_secs`: its `Retry-After` in seconds
    /// (RFC 9110 section 10.2.3; an HTTP-date is turned into seconds), how long it asks the
    /// app to wait (a login lockout, a busy server); null when it sent none or an unreadable
    /// one. Signed, as `http_status`, so that Kotlin gets a `Long` rather than a `ULong`.
    Service {
        code: String,
        message: String,
        http_status: i32,
        link: Option<String>,
        retry_after_secs: Option<i64>,
    },
    SessionExpired {
        kind: SessionErrorKind,
        message: String,
    },
    ClientUserNotFound {
        message: String,
    },
    ClientUserNotLoggedIn {
        message: String,
    },
    ClientUserAlreadyNamed {
        message: String,
    },
    BadToken {
        message: String,
    },
    MalformedResponse {
        message: String,
    },
    Storage {
        message: String,
    },
    InvalidArgument {
        message: String,
    },
    InsecureUrl {
        url: String,
    },
    /// The App was closed (`close()`); create a new App to go on: it restores the sessions.
    AppClosed {
        message: String,
    },
    /// Not a core error: the SDK itself failed (a panic, a runtime that would not start, a
    /// callback that raised). Report it.
    Internal {
        message: String,
    },
}

impl AppError {
    /// The core error this one came from, to print with the core's own words; for `Internal`,
    /// which has no core counterpart, its message.
    fn core(&self) -> Result<sk::AppError, &str> {
        use sk::AppError as E;
        let m = String::clone;
        Ok(match self {
            Self::Network { message } => E::Network {
                message: m(message),
            },
            Self::Timeout { message } => E::Timeout {
                message: m(message),
            },
            Self::Service {
                code,
                message,
                http_status,
                link,
                retry_after_secs,
            } => E::Service {
                code: m(code),
                message: m(message),
                // Both came from the core's u16 and u64 (capped at 2^31), so they fit.
                http_status: u16::try_from(*http_status).unwrap_or(0),
                link: link.clone(),
                retry_after_secs: retry_after_secs.and_then(|s| u64::try_from(s).ok()),
            },
            Self::SessionExpired { kind, message } => E::SessionExpired {
                kind: *kind,
                message: m(message),
            },
            Self::ClientUserNotFound { message } => E::ClientUserNotFound {
                message: m(message),
            },
            Self::ClientUserNotLoggedIn { message } => E::ClientUserNotLoggedIn {
                message: m(message),
            },
            Self::ClientUserAlreadyNamed { message } => E::ClientUserAlreadyNamed {
                message: m(message),
            },
            Self::BadToken { message } => E::BadToken {
                message: m(message),
            },
            Self::MalformedResponse { message } => E::MalformedResponse {
                message: m(message),
            },
            Self::Storage { message } => E::Storage {
                message: m(message),
            },
            Self::InvalidArgument { message } => E::InvalidArgument {
                message: m(message),
            },
            Self::InsecureUrl { url } => E::InsecureUrl { url: m(url) },
            Self::AppClosed { message } => E::AppClosed {
                message: m(message),
            },
            Self::Internal { message } => return Err(message),
        })
    }
}

impl std::fmt::Display for AppError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.core() {
            Ok(core) => core.fmt(f),
            Err(message) => write!(f, "internal SDK error: {message}"),
        }
    }
}

impl std::error::Error for AppError {}

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
            E::SessionExpired { kind, message } => Self::SessionExpired { kind, message },
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
