//! DPoP, proof of possession (RFC 9449, #29): a client binds its session to a key pair it
//! holds, and every request of that session carries a proof, a short JWT signed with the key,
//! for that request's method and URL. A token copied off the device is useless without the
//! key. PROTOCOL.md, "DPoP", is the contract; this module checks proofs (section 4.3 of the
//! RFC) and makes the server's nonces (section 8).
//!
//! What is checked, in order: one `DPoP` header; a compact JWS whose header has `typ`
//! `dpop+jwt`, `alg` `ES256` and a public P-256 `jwk` (a private key in it is refused); the
//! signature, by that key (jsonwebtoken); `htm` the request's method, `htu` its URL without
//! query and fragment (scheme and host compared case-insensitively, a default port dropped);
//! `iat` within [`PROOF_MAX_AGE_SECS`] in the past and [`PROOF_FUTURE_SECS`] in the future,
//! unless the proof carries a nonce of ours still valid, which proves its freshness instead
//! (a device whose clock is off answers the nonce challenge and goes on, RFC 9449 section
//! 11.1); `ath` the SHA-256 of the access token when one is presented; and, by the caller, its
//! `jti` not seen before ([`Proof::replay_key`], remembered by the store until
//! [`Proof::remember_until`]).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// A proof's `iat` may be this old (seconds).
pub const PROOF_MAX_AGE_SECS: i64 = 60;
/// A proof's `iat` may be this far in the server's future (seconds): clock skew.
pub const PROOF_FUTURE_SECS: i64 = 5;
/// A nonce of the server is good for this long (seconds): the epoch it was made in and the
/// one after. Proofs are remembered for as long, so a replay is caught however it is fresh.
pub const NONCE_EPOCH_SECS: i64 = 300;
/// The longest a proof is accepted, and so remembered (seconds).
pub const PROOF_REMEMBERED_SECS: i64 = 2 * NONCE_EPOCH_SECS;
/// Longest `DPoP` header read: an ES256 proof is about 500 bytes.
const MAX_PROOF_LEN: usize = 4096;

/// A checked proof: the key it was made with, and what the caller must remember.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The JWK SHA-256 thumbprint of the proof's key (RFC 7638), base64url: what a bound
    /// session and its access tokens (`cnf.jkt`) carry.
    pub jkt: String,
    /// Identifies the proof among all of this key's (SHA-256 of the thumbprint and `jti`,
    /// hex): the store refuses a second use.
    pub replay_key: String,
    /// Until when (Unix seconds) the proof must be remembered.
    pub remember_until: i64,
}

/// The method and URL of the request being served, as a proof must name them: the URL is the
/// server's public address (`routes::base_url`) and the path, without the query. An extractor
/// (routes/mod.rs).
#[derive(Debug, Clone)]
pub struct Target {
    /// `GET`, `POST`, ...
    pub method: String,
    /// `https://host/path`.
    pub url: String,
}

/// What the request was, for the proof to match.
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The URL the client sent it to, as the server knows its own public address
    /// (`routes::base_url`) plus the path; any query is ignored.
    pub url: &'a str,
    /// The access token presented with it (`Authorization: DPoP ...`), which the proof's
    /// `ath` must hash; `None` for logins and refresh-token calls.
    pub access_token: Option<&'a str>,
    /// Server time, Unix seconds.
    pub now: i64,
}

/// The value of the request's `DPoP` header, if it has one. Two are refused (RFC 9449 section
/// 4.3, check 1).
pub fn header(headers: &axum::http::HeaderMap) -> Result<Option<&str>, ApiError> {
    let mut values = headers.get_all("dpop").iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid("more than one DPoP header"));
    }
    let text = first
        .to_str()
        .map_err(|_| invalid("the DPoP header is not ASCII text"))?;
    Ok(Some(text.trim()))
}

/// Checks `proof` for `request` (see the module doc). `nonce_secret`: the app's secret, which
/// makes and checks its nonces. Errors: 401 `InvalidDPoPProof`, or `UseDPoPNonce` with a fresh
/// nonce when only the proof's freshness is in doubt ([`ApiError::with_dpop_nonce`]); the
/// status is the caller's to choose ([`for_token_endpoint`]).
pub fn verify(
    proof: &str,
    request: &Request<'_>,
    app_id: &str,
    nonce_secret: &[u8],
) -> Result<Proof, ApiError> {
    if proof.len() > MAX_PROOF_LEN {
        return Err(invalid("the DPoP proof is too long"));
    }
    let mut parts = proof.split('.');
    let (Some(h), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("the DPoP proof is not a compact JWS"));
    };
    let header: Value = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| invalid("the DPoP proof's header is not base64url JSON"))?;
    if header.get("typ").and_then(Value::as_str) != Some("dpop+jwt") {
        return Err(invalid("the DPoP proof's typ must be dpop+jwt"));
    }
    if header.get("alg").and_then(Value::as_str) != Some("ES256") {
        return Err(invalid("the DPoP proof must be signed with ES256"));
    }
    let jwk = header
        .get("jwk")
        .and_then(Value::as_object)
        .ok_or_else(|| invalid("the DPoP proof's header has no jwk"))?;
    if jwk.contains_key("d") {
        return Err(invalid("the DPoP proof's jwk holds a private key"));
    }
    let (x, y) = match (
        jwk.get("kty").and_then(Value::as_str),
        jwk.get("crv").and_then(Value::as_str),
        jwk.get("x").and_then(Value::as_str),
        jwk.get("y").and_then(Value::as_str),
    ) {
        (Some("EC"), Some("P-256"), Some(x), Some(y)) if coordinate(x) && coordinate(y) => (x, y),
        _ => return Err(invalid("the DPoP proof's jwk is not a P-256 public key")),
    };
    let key = jsonwebtoken::DecodingKey::from_ec_components(x, y)
        .map_err(|_| invalid("the DPoP proof's jwk is not a P-256 public key"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    // A proof has no exp, nbf or aud: its iat is judged below.
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<Value>(proof, &key, &validation)
        .map_err(|_| invalid("the DPoP proof's signature does not verify with its jwk"))?
        .claims;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    let jti = text("jti")
        .filter(|j| !j.is_empty() && j.len() <= 256)
        .ok_or_else(|| invalid("the DPoP proof has no jti"))?;
    if text("htm") != Some(request.method) {
        return Err(invalid("the DPoP proof is for another HTTP method"));
    }
    match text("htu") {
        Some(htu) if same_target(htu, request.url) => {}
        _ => return Err(invalid("the DPoP proof is for another URL")),
    }
    if let Some(token) = request.access_token
        && text("ath") != Some(access_token_hash(token).as_str())
    {
        return Err(invalid(
            "the DPoP proof's ath is not the hash of the access token",
        ));
    }
    let iat = claims
        .get("iat")
        .and_then(Value::as_i64)
        .ok_or_else(|| invalid("the DPoP proof has no iat"))?;
    let fresh_by_time =
        iat >= request.now - PROOF_MAX_AGE_SECS && iat <= request.now + PROOF_FUTURE_SECS;
    let fresh_by_nonce = match text("nonce") {
        Some(n) => nonce_valid(n, app_id, nonce_secret, request.now),
        None => false,
    };
    if text("nonce").is_some() && !fresh_by_nonce {
        // A nonce of ours that expired, or one we never made: the client asks for a new one.
        return Err(use_nonce(app_id, nonce_secret, request.now));
    }
    if !fresh_by_time && !fresh_by_nonce {
        // Too old or from the future by the device's clock: a nonce proves freshness instead.
        return Err(use_nonce(app_id, nonce_secret, request.now));
    }
    let jkt = thumbprint(x, y);
    let replay_key = hex::encode(Sha256::digest(format!("{jkt}:{jti}").as_bytes()));
    Ok(Proof {
        jkt,
        replay_key,
        remember_until: request.now + PROOF_REMEMBERED_SECS,
    })
}

/// The JWK SHA-256 thumbprint (RFC 7638 section 3) of the P-256 key (`x`, `y`), base64url: the
/// hash of its required members in lexicographic order, without white space.
pub fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
}

/// The `ath` of an access token (RFC 9449 section 4.2): its SHA-256, base64url.
pub fn access_token_hash(token: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(token.as_bytes()))
}

/// A P-256 coordinate: 32 bytes, base64url without padding (43 characters).
fn coordinate(c: &str) -> bool {
    c.len() == 43 && URL_SAFE_NO_PAD.decode(c).is_ok_and(|b| b.len() == 32)
}

/// Whether the proof's `htu` names the request's URL: scheme and host case-insensitively, the
/// default port of the scheme dropped, the path as is; query and fragment of either ignored
/// (RFC 9449 section 4.3, check 9; RFC 3986 sections 6.2.2 and 6.2.3).
fn same_target(htu: &str, request_url: &str) -> bool {
    match (normalized(htu), normalized(request_url)) {
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

fn normalized(u: &str) -> Option<String> {
    let url = url::Url::parse(u).ok()?;
    if !matches!(url.scheme(), "http" | "https") {
        return None;
    }
    // `url` lowercases scheme and host and drops a default port already.
    let host = url.host_str()?;
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    Some(format!("{}://{host}{port}{}", url.scheme(), url.path()))
}

/// A nonce for `now`: its epoch (`now` / [`NONCE_EPOCH_SECS`]) and a MAC of it under the
/// app's secret, so every instance of the server makes and checks the same nonces with no
/// shared state.
pub fn nonce(app_id: &str, secret: &[u8], now: i64) -> String {
    nonce_of_epoch(app_id, secret, now.div_euclid(NONCE_EPOCH_SECS))
}

fn nonce_of_epoch(app_id: &str, secret: &[u8], epoch: i64) -> String {
    let mac = crate::tokens::derived_id(secret, &format!("dpop-nonce:{app_id}:{epoch}"));
    format!("{epoch}.{}", &mac[..22])
}

/// Whether `n` is a nonce of this app made in this epoch or the one before.
fn nonce_valid(n: &str, app_id: &str, secret: &[u8], now: i64) -> bool {
    let Some(epoch) = n.split_once('.').and_then(|(e, _)| e.parse::<i64>().ok()) else {
        return false;
    };
    let current = now.div_euclid(NONCE_EPOCH_SECS);
    (epoch == current || epoch == current - 1)
        && bool::from(subtle::ConstantTimeEq::ct_eq(
            nonce_of_epoch(app_id, secret, epoch).as_bytes(),
            n.as_bytes(),
        ))
}

/// 401 `InvalidDPoPProof` (RFC 9449's `invalid_dpop_proof`): the proof is wrong. Never ends a
/// session: an attacker's attempt must not log the real device out.
pub fn invalid(message: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "InvalidDPoPProof",
        format!("invalid DPoP proof: {message}"),
    )
    .with_dpop_challenge("invalid_dpop_proof", None)
}

/// 401 `UseDPoPNonce` (RFC 9449's `use_dpop_nonce`) with a fresh nonce in `DPoP-Nonce`: send
/// the request again with a proof that carries it.
fn use_nonce(app_id: &str, secret: &[u8], now: i64) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "UseDPoPNonce",
        "the DPoP proof needs the server's nonce (DPoP-Nonce header): make a new proof with it",
    )
    .with_dpop_challenge("use_dpop_nonce", Some(nonce(app_id, secret, now)))
}

/// The same refusal as a token endpoint gives it (login, refresh, logout: 400, RFC 9449
/// section 5); resource calls keep 401 with `WWW-Authenticate`.
pub fn for_token_endpoint(mut e: ApiError) -> ApiError {
    if matches!(e.code, "InvalidDPoPProof" | "UseDPoPNonce") {
        e.status = axum::http::StatusCode::BAD_REQUEST;
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbprint_is_rfc_7638s() {
        // RFC 7638 has no P-256 example; this one is from RFC 9449 section 4.1's proof, whose
        // key's thumbprint section 6.1 gives.
        assert_eq!(
            thumbprint(
                "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
                "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"
            ),
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"
        );
    }

    #[test]
    fn targets_compare_as_rfc_3986_normalizes_them() {
        let base = "https://server.example.com/api/client/v2.0/auth/session";
        assert!(same_target(
            "HTTPS://Server.Example.com:443/api/client/v2.0/auth/session",
            base
        ));
        assert!(same_target(&format!("{base}?x=1#f"), base));
        assert!(!same_target(
            "http://server.example.com/api/client/v2.0/auth/session",
            base
        ));
        assert!(!same_target(
            "https://server.example.com/api/client/v2.0/auth/sessions",
            base
        ));
        assert!(!same_target(
            "https://server.example.com:8443/api/client/v2.0/auth/session",
            base
        ));
        assert!(!same_target("not a url", base));
    }

    #[test]
    fn nonces_last_two_epochs_and_belong_to_their_app() {
        let secret = b"secret";
        let n = nonce("app", secret, 1000);
        assert!(nonce_valid(&n, "app", secret, 1000));
        assert!(nonce_valid(&n, "app", secret, 1000 + NONCE_EPOCH_SECS));
        assert!(!nonce_valid(&n, "app", secret, 1000 + 2 * NONCE_EPOCH_SECS));
        assert!(!nonce_valid(&n, "other", secret, 1000));
        assert!(!nonce_valid(&n, "app", b"other secret", 1000));
        assert!(!nonce_valid("12.forged", "app", secret, 1000));
    }
}
