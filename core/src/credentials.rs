//! The ways to log in (six providers, plus social and OpenID Connect sign-in), and the login
//! body each one sends.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value, json};

use crate::error::AppError;

/// Why credentials cannot be sent, with the JSON error of a function payload kept as its
/// `source()` (STYLE.md lesson 1). `From<Error> for AppError` makes each an
/// `AppError::InvalidArgument` whose message is this text: the app fixes its arguments.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A value the provider needs is empty; `what` names it as the app knows it, `hint` (empty
    /// or starting with a space) says where it comes from.
    #[error("{what}: must not be empty{hint}")]
    Empty {
        what: &'static str,
        hint: &'static str,
    },
    /// An OpenID Connect provider name that cannot be the server's (it goes into the URL path).
    #[error(
        "OpenID Connect provider: a name of letters, digits, '-' and '_', as configured on the \
         server"
    )]
    ProviderName,
    /// A custom function's payload that is not JSON.
    #[error("function payload: not valid JSON ({0})")]
    PayloadNotJson(#[source] serde_json::Error),
    /// A custom function's payload that is JSON but not an object.
    #[error("function payload: must be a JSON object")]
    PayloadNotObject,
}

impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        AppError::InvalidArgument {
            message: e.to_string(),
        }
    }
}

type Result<T, E = Error> = std::result::Result<T, E>;

fn empty(what: &'static str) -> Error {
    Error::Empty { what, hint: "" }
}

shared_type! {
    $ __credentials;
    #[derive(Clone, PartialEq, Eq)]
    =>
    /// How a user proves who they are. `Debug` never shows a secret.
    // Non-exhaustive: more providers come (STYLE.md 2); a match in an app keeps a fallback arm.
    #[non_exhaustive]
    pub enum Credentials {
        /// `reuse`: hand back the logged-in anonymous user if there is one, without a network call.
        Anonymous {
            reuse: bool,
        },
        EmailPassword {
            email: String,
            password: String,
        },
        /// A one-time code the server mailed to `email` (ask for one with
        /// `EmailOtpAuth::send`): provider `email-otp`, body
        /// `{"email", "code"}` (#23). `Debug` shows the address, never the code.
        EmailOtp {
            email: String,
            code: String,
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
        /// A Google ID token (from Google Sign-In / Credential Manager): `oauth2-google`,
        /// body `{"id_token"}` as the Realm SDKs' `GoogleCredentials(idToken)` sent it.
        GoogleIdToken {
            id_token: String,
        },
        /// A Google server auth code, which the server exchanges for an ID token: `oauth2-google`,
        /// body `{"authCode"}` as the Realm SDKs' `GoogleCredentials(authCode)` sent it.
        GoogleAuthCode {
            auth_code: String,
        },
        /// A Sign in with Apple ID token: `oauth2-apple`, body `{"id_token"}`.
        AppleIdToken {
            id_token: String,
        },
        /// A Facebook user access token: `oauth2-facebook`, body `{"accessToken"}`.
        FacebookAccessToken {
            access_token: String,
        },
        /// An ID token of an OpenID Connect issuer the server knows as `provider` (its
        /// `[app.providers.oidc.<provider>]` table): provider `oidc-<provider>`, body `{"id_token"}`.
        OidcIdToken {
            provider: String,
            id_token: String,
        },
    }
}

impl Credentials {
    /// Anonymous credentials that reuse a logged-in anonymous user.
    pub fn anonymous() -> Self {
        Self::Anonymous { reuse: true }
    }
    /// An email and password: provider `local-userpass`. `Debug` shows the address only.
    ///
    /// ```
    /// use sessionkit::Credentials;
    /// let email = Credentials::email_password("ada@example.com", "correct horse");
    /// assert_eq!(email.provider(), "local-userpass");
    /// assert!(!format!("{email:?}").contains("horse"));
    /// ```
    pub fn email_password(email: impl Into<String>, password: impl Into<String>) -> Self {
        Self::EmailPassword {
            email: email.into(),
            password: password.into(),
        }
    }
    /// The one-time code mailed to `email` by [`EmailOtpAuth::send`](crate::EmailOtpAuth::send),
    /// as the user typed it. Logs into the user with that address (or a new one); a wrong code
    /// fails with `Service` code `InvalidCode`, none live (expired, used, voided, never sent)
    /// with `CodeExpired`, both HTTP 401 (PROTOCOL.md).
    pub fn email_otp(email: impl Into<String>, code: impl Into<String>) -> Self {
        Self::EmailOtp {
            email: email.into(),
            code: code.into(),
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

    /// A Google ID token.
    pub fn google_id_token(id_token: impl Into<String>) -> Self {
        Self::GoogleIdToken {
            id_token: id_token.into(),
        }
    }
    /// A Google server auth code.
    pub fn google_auth_code(auth_code: impl Into<String>) -> Self {
        Self::GoogleAuthCode {
            auth_code: auth_code.into(),
        }
    }
    /// A Sign in with Apple ID token.
    pub fn apple(id_token: impl Into<String>) -> Self {
        Self::AppleIdToken {
            id_token: id_token.into(),
        }
    }
    /// A Facebook user access token.
    pub fn facebook(access_token: impl Into<String>) -> Self {
        Self::FacebookAccessToken {
            access_token: access_token.into(),
        }
    }
    /// An ID token of the OpenID Connect issuer the server calls `provider`.
    pub fn oidc(provider: impl Into<String>, id_token: impl Into<String>) -> Self {
        Self::OidcIdToken {
            provider: provider.into(),
            id_token: id_token.into(),
        }
    }

    /// The provider name in the login URL (`oidc-<provider>` for an OpenID Connect issuer).
    pub fn provider(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Self::Anonymous { .. } => "anon-user",
            Self::EmailPassword { .. } => "local-userpass",
            Self::EmailOtp { .. } => "email-otp",
            Self::ApiKey { .. } => "api-key",
            Self::Jwt { .. } => "custom-token",
            Self::Function { .. } => "custom-function",
            Self::GoogleIdToken { .. } | Self::GoogleAuthCode { .. } => "oauth2-google",
            Self::AppleIdToken { .. } => "oauth2-apple",
            Self::FacebookAccessToken { .. } => "oauth2-facebook",
            Self::OidcIdToken { provider, .. } => return Cow::Owned(format!("oidc-{provider}")),
        })
    }

    /// The login body without `options`; custom-function payloads go as they are.
    pub(crate) fn body(&self) -> Result<Map<String, Value>> {
        let value = match self {
            Self::Anonymous { .. } => json!({}),
            Self::EmailPassword { email, password } => {
                if email.trim().is_empty() {
                    return Err(empty("email"));
                }
                json!({ "username": email, "password": password })
            }
            Self::EmailOtp { email, code } => {
                if email.trim().is_empty() {
                    return Err(empty("email"));
                }
                if code.trim().is_empty() {
                    return Err(Error::Empty {
                        what: "one-time code",
                        hint: " (the code from the mail)",
                    });
                }
                json!({ "email": email, "code": code })
            }
            Self::ApiKey { key } => {
                if key.is_empty() {
                    return Err(empty("api key"));
                }
                json!({ "key": key })
            }
            Self::Jwt { token } => {
                if token.is_empty() {
                    return Err(empty("jwt"));
                }
                json!({ "token": token })
            }
            Self::GoogleIdToken { id_token } => non_empty("Google ID token", "id_token", id_token)?,
            Self::GoogleAuthCode { auth_code } => {
                non_empty("Google auth code", "authCode", auth_code)?
            }
            Self::AppleIdToken { id_token } => non_empty("Apple ID token", "id_token", id_token)?,
            Self::FacebookAccessToken { access_token } => {
                non_empty("Facebook access token", "accessToken", access_token)?
            }
            Self::OidcIdToken { provider, id_token } => {
                // The name goes into the URL path: the server's own rule for it.
                if provider.is_empty()
                    || !provider
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(Error::ProviderName);
                }
                non_empty("OpenID Connect ID token", "id_token", id_token)?
            }
            Self::Function { payload_json } => {
                let value: Value =
                    serde_json::from_str(payload_json).map_err(Error::PayloadNotJson)?;
                if !value.is_object() {
                    return Err(Error::PayloadNotObject);
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

/// `{field: value}`, or `Error::Empty` naming `what` when the value is empty.
fn non_empty(what: &'static str, field: &str, value: &str) -> Result<Value> {
    if value.is_empty() {
        return Err(empty(what));
    }
    let mut body = Map::new();
    body.insert(field.to_string(), Value::String(value.to_string()));
    Ok(Value::Object(body))
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
            Self::EmailOtp { email, .. } => f
                .debug_struct("EmailOtp")
                .field("email", email)
                .field("code", &"<redacted>")
                .finish(),
            Self::ApiKey { .. } => f.write_str("ApiKey { key: <redacted> }"),
            Self::Jwt { .. } => f.write_str("Jwt { token: <redacted> }"),
            Self::Function { .. } => f.write_str("Function { payload_json: <redacted> }"),
            Self::GoogleIdToken { .. } => f.write_str("GoogleIdToken { id_token: <redacted> }"),
            Self::GoogleAuthCode { .. } => f.write_str("GoogleAuthCode { auth_code: <redacted> }"),
            Self::AppleIdToken { .. } => f.write_str("AppleIdToken { id_token: <redacted> }"),
            Self::FacebookAccessToken { .. } => {
                f.write_str("FacebookAccessToken { access_token: <redacted> }")
            }
            Self::OidcIdToken { provider, .. } => f
                .debug_struct("OidcIdToken")
                .field("provider", provider)
                .field("id_token", &"<redacted>")
                .finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_otp_logs_in_with_email_and_code() {
        let c = Credentials::email_otp("ada@example.com", "042137");
        assert_eq!(c.provider(), "email-otp");
        assert_eq!(
            Value::Object(c.body().unwrap()),
            json!({ "email": "ada@example.com", "code": "042137" })
        );
    }

    #[test]
    fn email_otp_needs_an_address_and_a_code() {
        for (email, code, named) in [
            ("", "042137", "email"),
            ("  ", "042137", "email"),
            ("ada@example.com", "", "one-time code"),
            ("ada@example.com", " ", "one-time code"),
        ] {
            let err = AppError::from(Credentials::email_otp(email, code).body().unwrap_err());
            assert!(
                matches!(err, AppError::InvalidArgument { .. }) && err.to_string().contains(named),
                "{email:?}/{code:?}: {err}"
            );
        }
    }

    #[test]
    fn a_function_payload_error_keeps_the_json_error() {
        use std::error::Error as _;
        let e = Credentials::Function {
            payload_json: "{".into(),
        }
        .body()
        .unwrap_err();
        assert!(e.source().is_some_and(|s| s.is::<serde_json::Error>()));
        assert!(matches!(
            AppError::from(e),
            AppError::InvalidArgument { message }
                if message.starts_with("function payload: not valid JSON (")
        ));
        let e = Credentials::Function {
            payload_json: "[1]".into(),
        }
        .body()
        .unwrap_err();
        assert_eq!(
            AppError::from(e),
            AppError::invalid("function payload: must be a JSON object")
        );
    }

    #[test]
    fn email_otp_debug_shows_the_address_not_the_code() {
        let c = Credentials::email_otp("ada@example.com", "042137");
        for text in [
            format!("{c:?}"),
            format!("{c:#?}"),
            format!("{:?}", vec![&c]),
        ] {
            assert!(!text.contains("042137"), "the code shows: {text}");
            assert!(
                text.contains("<redacted>") && text.contains("ada@example.com"),
                "{text}"
            );
        }
        assert_eq!(
            format!("{c:?}"),
            r#"EmailOtp { email: "ada@example.com", code: "<redacted>" }"#
        );
    }
}
