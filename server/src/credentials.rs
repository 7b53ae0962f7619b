//! What a login's credentials prove: the identity a provider vouches for ([`Identity`]), what
//! it was checked against ([`Proof`], checked again by the store in the login's transaction),
//! and reading the credentials' fields ([`req_str`]). Below the providers that make them
//! (providers.rs, social.rs, email_otp.rs) and the store that takes them.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// A proven external identity.
#[derive(Debug, Clone)]
pub struct Identity {
    /// Provider type (`oidc-<name>` for a named OpenID Connect issuer).
    pub provider_type: String,
    /// Id within the provider.
    pub external_id: String,
    /// Profile data contributed by this identity.
    pub data: Map<String, Value>,
    /// What the credentials proved that is stored here, for the login's transaction to find
    /// again: they are checked before it, and a deletion may come between.
    pub proof: Proof,
}

/// What a login's credentials were checked against, before the login's transaction: the
/// store checks it again in the transaction that writes the session (PROTOCOL.md,
/// "Credentials"; store/mod.rs, "A login that races a deletion"). Its `Debug` leaves the
/// password hash out.
#[derive(Clone)]
pub enum Proof {
    /// An identity kept by an outside issuer (Google, a custom JWT, a custom function...):
    /// nothing stored here to check; a deleted user's identity logs in as a new user.
    Outside,
    /// An email account (`email`, canonical) whose password was checked against
    /// `password_hash`: the account must still be there with that hash (a deleted account or
    /// a changed password fails as a wrong password).
    Userpass {
        /// The account's email.
        email: String,
        /// The argon2 PHC string the password was checked against.
        password_hash: String,
    },
    /// An API key (the identity's `external_id`) of `owner`: the key must still be there,
    /// enabled, and its owner too.
    ApiKey {
        /// The user owning the key.
        owner: String,
    },
    /// A one-time code for the address `email` (canonical), as its MAC (email_otp.rs): the
    /// login's transaction judges it against the address's live code, spends an attempt when
    /// it is wrong, and consumes the code when it is right.
    EmailOtp {
        /// The address the code was sent to.
        email: String,
        /// [`crate::email_otp::code_mac`] of the code presented.
        mac: String,
    },
}

impl std::fmt::Debug for Proof {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Proof::Outside => f.write_str("Outside"),
            Proof::Userpass { email, .. } => f
                .debug_struct("Userpass")
                .field("email", email)
                .finish_non_exhaustive(),
            Proof::ApiKey { owner } => f.debug_struct("ApiKey").field("owner", owner).finish(),
            Proof::EmailOtp { email, .. } => f
                .debug_struct("EmailOtp")
                .field("email", email)
                .finish_non_exhaustive(),
        }
    }
}

/// A required string field of a JSON object (400 BadRequest naming the field otherwise).
pub fn req_str<'a>(body: &'a Map<String, Value>, field: &str) -> Result<&'a str, ApiError> {
    match body.get(field) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(ApiError::bad_request(format!(
            "field '{field}' must be a string"
        ))),
        None => Err(ApiError::bad_request(format!("missing field '{field}'"))),
    }
}
