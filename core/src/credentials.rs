//! The five ways to log in, and the login body each one sends.

use std::fmt;

use serde_json::{Map, Value, json};

use crate::error::{AppError, Result};

/// How a user proves who they are. `Debug` never shows a secret.
///
/// ```
/// use sessionkit::Credentials;
/// let anon = Credentials::anonymous();
/// let email = Credentials::email_password("ada@example.com", "correct horse");
/// assert_eq!(email.provider(), "local-userpass");
/// assert!(!format!("{email:?}").contains("horse"));
/// # let _ = anon;
/// ```
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// `reuse`: hand back the logged-in anonymous user if there is one, without a network call.
    Anonymous {
        reuse: bool,
    },
    EmailPassword {
        email: String,
        password: String,
    },
    /// A user API key (or a server API key).
    ApiKey {
        key: String,
    },
    /// A JWT signed by the app's own identity provider.
    Jwt {
        token: String,
    },
    /// A JSON document handed as-is to the app's custom-function provider.
    Function {
        payload_json: String,
    },
}

impl Credentials {
    /// Anonymous credentials that reuse a logged-in anonymous user.
    pub fn anonymous() -> Self {
        Self::Anonymous { reuse: true }
    }
    pub fn email_password(email: impl Into<String>, password: impl Into<String>) -> Self {
        Self::EmailPassword {
            email: email.into(),
            password: password.into(),
        }
    }
    pub fn api_key(key: impl Into<String>) -> Self {
        Self::ApiKey { key: key.into() }
    }
    pub fn jwt(token: impl Into<String>) -> Self {
        Self::Jwt {
            token: token.into(),
        }
    }
    pub fn function(payload_json: impl Into<String>) -> Self {
        Self::Function {
            payload_json: payload_json.into(),
        }
    }

    /// The provider name in the login URL.
    pub fn provider(&self) -> &'static str {
        match self {
            Self::Anonymous { .. } => "anon-user",
            Self::EmailPassword { .. } => "local-userpass",
            Self::ApiKey { .. } => "api-key",
            Self::Jwt { .. } => "custom-token",
            Self::Function { .. } => "custom-function",
        }
    }

    /// The login body without `options`; custom-function payloads go as they are.
    pub(crate) fn body(&self) -> Result<Map<String, Value>> {
        let value = match self {
            Self::Anonymous { .. } => json!({}),
            Self::EmailPassword { email, password } => {
                if email.trim().is_empty() {
                    return Err(AppError::invalid("email: must not be empty"));
                }
                json!({ "username": email, "password": password })
            }
            Self::ApiKey { key } => {
                if key.is_empty() {
                    return Err(AppError::invalid("api key: must not be empty"));
                }
                json!({ "key": key })
            }
            Self::Jwt { token } => {
                if token.is_empty() {
                    return Err(AppError::invalid("jwt: must not be empty"));
                }
                json!({ "token": token })
            }
            Self::Function { payload_json } => {
                let value: Value = serde_json::from_str(payload_json).map_err(|e| {
                    AppError::invalid(format!("function payload: not valid JSON ({e})"))
                })?;
                if !value.is_object() {
                    return Err(AppError::invalid("function payload: must be a JSON object"));
                }
                value
            }
        };
        match value {
            Value::Object(map) => Ok(map),
            _ => unreachable!("every arm builds an object"),
        }
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Anonymous { reuse } => f.debug_struct("Anonymous").field("reuse", reuse).finish(),
            Self::EmailPassword { email, .. } => f
                .debug_struct("EmailPassword")
                .field("email", email)
                .field("password", &"<redacted>")
                .finish(),
            Self::ApiKey { .. } => f.write_str("ApiKey { key: <redacted> }"),
            Self::Jwt { .. } => f.write_str("Jwt { token: <redacted> }"),
            Self::Function { .. } => f.write_str("Function { payload_json: <redacted> }"),
        }
    }
}
