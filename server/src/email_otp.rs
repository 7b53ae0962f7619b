//! The `email-otp` provider (#23): the app asks for a code to be mailed to an address, the user
//! types it, and that is the login (PROTOCOL.md, "Email one-time codes").
//!
//! A code is uniformly random decimal digits from the OS RNG. Only its MAC is stored
//! ([`code_mac`]: HMAC-SHA256 of app id, canonical address and code under the app's secret),
//! one live code per (app, address), with its expiry and the wrong attempts it has left; the
//! code itself goes to the mail queue in the same transaction and is erased from it once sent
//! (mail.rs). The login body's code is turned into a MAC here ([`authenticate`]) and carried as
//! [`Proof::EmailOtp`] into [`crate::store::Store::login`], which compares it in constant time
//! ([`crate::store::judge_code`]), spends an attempt or consumes the code, and writes the session, all in one
//! transaction.

use rand::{Rng, TryRngCore};
use serde_json::{Map, Value};

use crate::credentials::{Identity, Proof, req_str};
use crate::error::ApiError;
use crate::state::Inner;

/// The provider's name, its identities' `provider_type`, and the kind of its mails.
pub const PROVIDER: &str = "email-otp";

/// A fresh code of `length` decimal digits, each uniformly random (rejection sampling, no
/// modulo bias) from the operating system's RNG.
pub fn new_code(length: u32) -> String {
    let mut rng = rand::rngs::OsRng.unwrap_err();
    (0..length)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

/// The MAC a code is stored as: HMAC-SHA256 under the app's secret (the one its tokens are
/// signed with, shared by every instance on the database) of the app id, the canonical address
/// and the code, base64url (43 characters). App ids and codes contain no `/`, so the input
/// names one (app, code, address) only.
pub fn code_mac(secret: &[u8], app_id: &str, email: &str, code: &str) -> String {
    crate::tokens::derived_id(secret, &format!("{PROVIDER}/{app_id}/{code}/{email}"))
}

/// The canonical form of a request's `email` field (400 naming the field when it is not an
/// address: that says nothing of any account).
pub fn address(body: &Map<String, Value>) -> Result<String, ApiError> {
    crate::email::canonical(req_str(body, "email")?)
        .map_err(|e| ApiError::bad_request(format!("field 'email': {}", e.0)))
}

/// The identity of an `email-otp` login body `{"email", "code"}`: the canonical address, with
/// the code's MAC as what the login's transaction must find (the code is judged there).
pub fn authenticate(
    st: &Inner,
    app_id: &str,
    body: &Map<String, Value>,
) -> Result<Identity, ApiError> {
    let email = address(body)?;
    // What the user typed, without the spaces a copy and paste may bring along.
    let code = req_str(body, "code")?.trim();
    let secret = &st.app(app_id)?.secret;
    let mac = code_mac(secret, app_id, &email, code);
    let mut data = Map::new();
    data.insert("email".into(), Value::String(email.clone()));
    Ok(Identity {
        provider_type: PROVIDER.into(),
        external_id: email.clone(),
        data,
        proof: Proof::EmailOtp { email, mac },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::same_mac;

    #[test]
    fn codes_are_digits_of_the_length_asked_and_vary() {
        for n in 6..=10 {
            let c = new_code(n);
            assert_eq!(c.len(), n as usize);
            assert!(c.bytes().all(|b| b.is_ascii_digit()), "{c}");
        }
        // Every digit turns up in every place (20 000 codes: a missing one is ~1e-900 likely).
        let codes: Vec<String> = (0..20_000).map(|_| new_code(6)).collect();
        for place in 0..6 {
            let mut seen = [0u32; 10];
            for c in &codes {
                seen[(c.as_bytes()[place] - b'0') as usize] += 1;
            }
            // Uniform: each digit about 2000 times (bounds are over 10 standard deviations).
            assert!(seen.iter().all(|n| (1500..2500).contains(n)), "{seen:?}");
        }
    }

    #[test]
    fn a_mac_binds_app_address_and_code() {
        let m = code_mac(b"secret", "app", "a@example.com", "123456");
        assert!(same_mac(
            &m,
            &code_mac(b"secret", "app", "a@example.com", "123456")
        ));
        for other in [
            code_mac(b"other", "app", "a@example.com", "123456"),
            code_mac(b"secret", "app2", "a@example.com", "123456"),
            code_mac(b"secret", "app", "b@example.com", "123456"),
            code_mac(b"secret", "app", "a@example.com", "123457"),
        ] {
            assert!(!same_mac(&m, &other));
        }
        assert!(!same_mac(&m, &m[..42]));
        assert!(!m.contains("123456"));
    }
}
