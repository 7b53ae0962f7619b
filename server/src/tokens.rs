//! Ids, secrets, hashes and the server's own JWTs (HS256).

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// A new id as 24 lowercase hex digits, laid out as a BSON ObjectId (the ids of Atlas App
/// Services users look the same): 4 bytes of Unix time in seconds, 5 bytes random to this
/// process, and a 3-byte counter that starts at a random value.
///
/// Ids made by one process increase, so a row keyed or indexed by one is appended to its
/// B-tree's last page instead of dirtying a random page of it: at thousands of logins a second
/// that is most of what a commit writes (BENCHMARKS.md, anonymous logins). Ids are unique, not
/// secret: nothing is authorised by knowing one (refresh tokens, API keys and mail tokens are
/// `new_secret`/`random_alnum` values).
pub fn new_object_id() -> String {
    use std::sync::LazyLock;
    use std::sync::atomic::{AtomicU32, Ordering};
    static PROCESS: LazyLock<[u8; 5]> = LazyLock::new(|| rand::rng().random());
    static COUNTER: LazyLock<AtomicU32> = LazyLock::new(|| AtomicU32::new(rand::rng().random()));
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as u32;
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut id = [0u8; 12];
    id[..4].copy_from_slice(&secs.to_be_bytes());
    id[4..9].copy_from_slice(&*PROCESS);
    id[9..].copy_from_slice(&count.to_be_bytes()[1..]);
    hex::encode(id)
}

/// Whether `s` is a 24-hex-character id.
pub fn is_object_id(s: &str) -> bool {
    s.len() == 24 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `n` random alphanumeric characters.
pub fn random_alnum(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// A random 32-byte secret, hex encoded.
pub fn new_secret() -> String {
    hex::encode(rand::rng().random::<[u8; 32]>())
}

/// SHA-256 of a bearer secret (refresh tokens, API keys, userpass tokens), hex encoded.
/// A fast hash is enough: these are 256-bit random values, not passwords.
pub fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// An id derived from `input` with HMAC-SHA256 under `secret` (RFC 2104), base64url without
/// padding (43 characters): the same inputs always give the same id, and nobody without the
/// secret can compute it. Makes a rotated refresh token reproducible from its parent (the
/// successor's `jti`, sessions.rs), so the store need not keep tokens to answer a retry.
pub fn derived_id(secret: &[u8], input: &str) -> String {
    jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .expect("HMAC-SHA256 cannot fail")
}

/// Hashes a password with argon2id (default parameters). Slow: call from a blocking thread.
pub fn hash_password(password: &str) -> String {
    use argon2::PasswordHasher;
    let salt_bytes: [u8; 16] = rand::rng().random();
    let salt = argon2::password_hash::SaltString::encode_b64(&salt_bytes).expect("16-byte salt");
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default params")
        .to_string()
}

/// Checks a password against an argon2 PHC string. Slow: call from a blocking thread.
pub fn verify_password(password: &str, phc: &str) -> bool {
    use argon2::PasswordVerifier;
    match argon2::password_hash::PasswordHash::new(phc) {
        Ok(h) => argon2::Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok(),
        Err(_) => false,
    }
}

/// Token type claim values.
pub const TYP_ACCESS: &str = "access";
/// Token type claim values.
pub const TYP_REFRESH: &str = "refresh";

/// Claims of the tokens this server issues (app and admin tokens alike).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Expiry (unix seconds, server clock).
    pub exp: i64,
    /// Issued at.
    pub iat: i64,
    /// User id (or the admin public key).
    pub sub: String,
    /// "access" or "refresh".
    pub typ: String,
    /// Device id of the login.
    #[serde(default)]
    pub baas_device_id: String,
    /// The app's domain id (access tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_id: Option<String>,
    /// The app id.
    pub iss: String,
    /// The app id again, for verifiers that require an audience (access tokens signed with a
    /// key pair; HS256 tokens stay exactly as the hosted service made them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// Custom user data (access tokens, when set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_data: Option<Value>,
    /// Session id (refresh tokens).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// Unique token id: each token differs from every other, even within one second. A rotated
    /// refresh token's is derived from its parent ([`derived_id`]), so that a retry of the
    /// parent gets the same successor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// Confirmation (RFC 7800): the key a DPoP-bound session's access token is bound to,
    /// `{"jkt": <JWK SHA-256 thumbprint>}` (RFC 9449 section 6.1; dpop.rs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Confirmation>,
}

/// A token's `cnf` claim (RFC 7800 section 3.1) as DPoP uses it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The JWK SHA-256 thumbprint of the key (RFC 9449 section 6.1).
    pub jkt: String,
}

/// Signs claims with HS256.
pub fn sign(claims: &Claims, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .expect("HS256 signing cannot fail")
}

/// Why one of our tokens failed verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyError {
    /// Not a JWT, bad signature, wrong algorithm or claims missing.
    Invalid,
    /// Valid signature but past `exp`.
    Expired,
    /// Signed by a key this process has not loaded (yet): made by another instance, or forged.
    UnknownKey,
}

/// Verifies an HS256 token's signature and judges `exp` against `now` (the server clock, not
/// the system clock, so the test clock works).
pub fn verify(token: &str, secret: &[u8], now: i64) -> Result<Claims, VerifyError> {
    let mut v = Validation::new(Algorithm::HS256);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Claims>(token, &DecodingKey::from_secret(secret), &v)
        .map_err(|_| VerifyError::Invalid)?;
    if data.claims.exp <= now {
        return Err(VerifyError::Expired);
    }
    Ok(data.claims)
}

/// Reads the `iss` claim without verifying, to pick the app whose secret verifies the token.
pub fn peek_issuer(token: &str) -> Option<String> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: Value = serde_json::from_slice(&bytes).ok()?;
    v.get("iss")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_carry_their_time_and_increase() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let ids: Vec<String> = (0..1000).map(|_| new_object_id()).collect();
        for id in &ids {
            assert!(is_object_id(id), "{id}");
            let secs = u64::from_str_radix(&id[..8], 16).unwrap();
            assert!(secs.abs_diff(now) <= 2, "{id}: time {secs}, now {now}");
            assert_eq!(id[8..18], ids[0][8..18], "one process part per process");
        }
        // Increasing (B-tree appends) unless the 24-bit counter wrapped inside this run.
        let wrapped = ids.windows(2).filter(|w| w[0] >= w[1]).count();
        assert!(wrapped <= 1, "{wrapped} ids out of order");
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len());
    }
}
