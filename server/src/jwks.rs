//! ID tokens signed by an outside issuer (Google, Apple, any OpenID Connect issuer, or a custom
//! JWT issuer with a JWK URI), verified against the issuer's published JWKS.
//!
//! Keys are cached per source (a JWKS URL, or an OpenID Connect issuer whose discovery document
//! names the JWKS) for [`MAX_AGE_SECS`]. A token that the cached keys cannot verify (a `kid` not
//! in them, no key fitting its `alg`, or a signature that fails on the cached key: the issuer
//! may have rotated or regenerated it) makes one refetch, at most once per
//! [`REFETCH_FLOOR_SECS`] per source, so a flood of made-up tokens cannot make this server hammer
//! the issuer. Only keys fetched during the login itself can prove a token bad (401); when they
//! could not be fetched (issuer down, or the floor holds the refetch back) the answer is 503 with
//! `Retry-After`: the token may be perfectly good.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::error::ApiError;

/// The least time between two fetches of one source's keys, in seconds (server clock).
pub const REFETCH_FLOOR_SECS: i64 = 30;
/// How long fetched keys (and the discovery document that named them) are used before they are
/// fetched again, in seconds.
pub const MAX_AGE_SECS: i64 = 3600;
/// Timeout of one request to an issuer (JWKS, discovery, token or Graph endpoint).
pub const ISSUER_TIMEOUT: Duration = Duration::from_secs(10);
/// How far ahead of the server clock `nbf` and `iat` may be, and how long after `exp` a token is
/// still taken, in seconds: clocks differ a little.
pub const CLOCK_LEEWAY_SECS: i64 = 60;
/// The longest an ID token may be valid, `exp` minus `iat`, in seconds: a day, as Google's own
/// verifiers require (ID tokens live minutes to hours; a far `exp` is a forged or broken one).
pub const MAX_ID_TOKEN_LIFETIME_SECS: i64 = 86_400;
/// The largest JWKS or discovery document read, in bytes.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// Where an issuer publishes its keys.
#[derive(Debug, Clone, Copy)]
pub enum KeySource<'a> {
    /// A JWKS URL from the config.
    Url(&'a str),
    /// The `jwks_uri` of this OpenID Connect issuer's discovery document
    /// (`<issuer>/.well-known/openid-configuration`, OpenID Connect Discovery 1.0 section 4),
    /// fetched again with the keys.
    Discovery(&'a str),
}

impl KeySource<'_> {
    fn cache_key(&self) -> String {
        match self {
            KeySource::Url(url) => format!("url {url}"),
            KeySource::Discovery(issuer) => format!("discovery {issuer}"),
        }
    }
}

/// What a token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct Rules<'a> {
    /// Names the token in error messages ("Google ID token").
    pub label: &'a str,
    /// Where the issuer publishes its keys.
    pub keys: KeySource<'a>,
    /// Accepted `iss` values (Google uses two spellings); empty: `iss` is not checked.
    pub issuers: &'a [String],
    /// Accepted `aud` values: the app's client ids (iOS, Android and web ones differ).
    pub audiences: &'a [String],
    /// An OpenID Connect ID token (Google, Apple, `oidc-<name>`), not a custom JWT: every `aud`
    /// must be trusted, `azp` is checked when there are several (OpenID Connect Core 1.0
    /// section 3.1.3.7), and `exp` may be at most [`MAX_ID_TOKEN_LIFETIME_SECS`] after `iat`.
    pub id_token: bool,
}

/// A key of an issuer's JWKS that this server can verify tokens with.
struct UsableKey {
    kid: Option<String>,
    /// RS256 for an RSA key, ES256 for a P-256 key (and the JWK's `alg`, when given, agrees).
    alg: Algorithm,
    key: DecodingKey,
}

#[derive(Default)]
struct Entry {
    keys: Option<Vec<UsableKey>>,
    /// Server-clock second of the last fetch attempt, successful or not (the floor counts
    /// from it).
    tried_at: Option<i64>,
    /// Server-clock second of the last successful fetch (the keys' age counts from it).
    fetched_at: Option<i64>,
    /// When the last successful fetch ended, in real time: keys fetched after a login began
    /// are fresh enough to call its token bad.
    fetched: Option<Instant>,
    /// What went wrong with the last attempt, when it failed.
    trouble: Option<String>,
}

impl Entry {
    /// Seconds until the floor lets the keys be fetched again (0: now).
    fn floor_left(&self, now: i64) -> i64 {
        match self.tried_at {
            // A clock set back (tests) does not hold fetches back.
            Some(at) if now >= at => (at + REFETCH_FLOOR_SECS - now).max(0),
            _ => 0,
        }
    }
}

/// Why the keys at hand did not verify a token.
enum Failure {
    /// About the key (unknown `kid`, no fitting key, signature fails): newer keys may verify it.
    Key(String),
    /// About the token whatever the keys: refused.
    Refused(String),
}

/// The JWKS of every issuer this server trusts, fetched on demand.
pub struct JwksCache {
    http: reqwest::Client,
    /// One lock per source: concurrent logins wait for one fetch instead of each making their
    /// own.
    entries: std::sync::Mutex<HashMap<String, Arc<Mutex<Entry>>>>,
    /// Counts each fetch and its outcome, when metrics are on.
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// The issuer could not be asked: a transient failure, never the caller's credentials.
pub fn issuer_unavailable(what: &str) -> ApiError {
    unavailable_for(what, 5)
}

fn unavailable_for(what: &str, retry_after_secs: i64) -> ApiError {
    ApiError::unavailable(
        format!("identity provider unavailable: {what}; try again later"),
        retry_after_secs.max(1) as u64,
    )
}

impl JwksCache {
    /// An empty cache using `http` for its fetches, counting them in `metrics` when given.
    pub fn new(http: reqwest::Client, metrics: Option<Arc<crate::metrics::Metrics>>) -> Self {
        Self {
            http,
            entries: Default::default(),
            metrics,
        }
    }

    /// The HTTP client the issuer calls go through.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Verifies `token` (signature with RS256 or ES256, `iss`, `aud`, `exp`, `nbf`, `iat`, and
    /// for ID tokens `azp` and the lifetime) and returns its claims, which include a non-empty
    /// `sub`.
    ///
    /// The key is the one named by the token's `kid`; a token without `kid` uses the one key of
    /// the set that fits its `alg`, and is refused when several do (OpenID Connect Core 1.0
    /// section 10.1 lets a single-key issuer leave `kid` out). Keys the server cannot use are
    /// skipped (RFC 7517 section 5).
    ///
    /// Errors: 401 `AuthError` for a token that is malformed, forged, expired, not yet valid,
    /// for another issuer or audience, or that keys fetched for this very login do not verify;
    /// 503 `ServiceUnavailable` with `Retry-After` (seconds until the keys may be fetched
    /// again) when the keys could not be fetched, or the cached ones do not verify the token
    /// and the refetch floor holds a new fetch back.
    pub async fn verify(
        &self,
        token: &str,
        rules: &Rules<'_>,
        now: i64,
    ) -> Result<Map<String, Value>, ApiError> {
        let began = Instant::now();
        let label = rules.label;
        let refused = |why: &str| ApiError::auth(format!("invalid {label}: {why}"));
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| refused("malformed or unsupported algorithm"))?;
        // Only the asymmetric algorithms issuers use: `none` and HS256 (an attacker "signing"
        // with the public key) are refused before any key is looked at.
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(refused("the algorithm must be RS256 or ES256"));
        }
        let entry = {
            let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(rules.keys.cache_key()).or_default().clone()
        };
        let mut entry = entry.lock().await;
        let stale = entry
            .fetched_at
            .is_none_or(|at| now - at >= MAX_AGE_SECS || now < at);
        if stale && entry.floor_left(now) == 0 {
            // On failure, keys fetched before are still used; without any, see below.
            let _ = self.refresh(&mut entry, rules.keys, now).await;
        }
        let first = match &entry.keys {
            Some(keys) => check(keys, token, &header, rules, now),
            None => {
                let why = entry.trouble.clone().unwrap_or_default();
                return Err(unavailable_for(
                    &format!("its keys could not be fetched ({why})"),
                    entry.floor_left(now),
                ));
            }
        };
        let why = match first {
            Ok(claims) => return Ok(claims),
            Err(Failure::Refused(why)) => return Err(refused(&why)),
            Err(Failure::Key(why)) => why,
        };
        // Keys fetched since this login began prove the token bad; older ones may predate a
        // rotation, so they are fetched again, if the floor allows.
        if entry.fetched.is_some_and(|at| at >= began) {
            return Err(refused(&why));
        }
        let left = entry.floor_left(now);
        if left > 0 {
            let trouble = match &entry.trouble {
                Some(t) => format!("its keys could not be fetched again ({t})"),
                None => format!(
                    "the keys fetched {}s ago do not verify the token ({why}), and may be \
                     fetched again in {left}s (the issuer may have rotated them)",
                    entry.fetched_at.map_or(0, |at| now - at)
                ),
            };
            return Err(unavailable_for(&trouble, left));
        }
        if let Err(t) = self.refresh(&mut entry, rules.keys, now).await {
            return Err(unavailable_for(
                &format!("its keys could not be fetched again ({t})"),
                REFETCH_FLOOR_SECS,
            ));
        }
        let keys = entry.keys.as_deref().unwrap_or_default();
        match check(keys, token, &header, rules, now) {
            Ok(claims) => Ok(claims),
            Err(Failure::Refused(why) | Failure::Key(why)) => Err(refused(&why)),
        }
    }

    /// Fetches the keys of `source` (first its discovery document, for an OpenID Connect
    /// issuer) into `entry`, keeping the usable ones. The trouble, when it fails; the keys
    /// fetched before are kept then.
    async fn refresh(
        &self,
        entry: &mut Entry,
        source: KeySource<'_>,
        now: i64,
    ) -> Result<(), String> {
        entry.tried_at = Some(now);
        let fetched = async {
            let url = match source {
                KeySource::Url(url) => url.to_string(),
                KeySource::Discovery(issuer) => self.discover(issuer).await?,
            };
            usable_keys(&self.get_json::<Value>(&url).await?)
        }
        .await;
        match fetched {
            Ok(keys) => {
                entry.keys = Some(keys);
                entry.fetched_at = Some(now);
                entry.fetched = Some(Instant::now());
                entry.trouble = None;
                Ok(())
            }
            Err(trouble) => {
                tracing::warn!(source = ?source, "issuer keys could not be fetched: {trouble}");
                entry.trouble = Some(trouble.clone());
                Err(trouble)
            }
        }
    }

    /// The `jwks_uri` of an OpenID Connect issuer, from its discovery document, whose `issuer`
    /// must be the configured one exactly (OpenID Connect Discovery 1.0 section 4.3). The
    /// trouble otherwise.
    async fn discover(&self, issuer: &str) -> Result<String, String> {
        #[derive(serde::Deserialize)]
        struct Discovery {
            issuer: Option<String>,
            jwks_uri: Option<String>,
        }
        let doc: Discovery = self
            .get_json(&format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            ))
            .await
            .map_err(|t| format!("discovery document: {t}"))?;
        match doc.issuer.as_deref() {
            Some(named) if named == issuer => {}
            named => {
                return Err(format!(
                    "its discovery document names the issuer {}, not the configured {issuer:?} \
                     (OpenID Connect Discovery 1.0 section 4.3: they must be identical; check \
                     the provider's `issuer` setting)",
                    named.map_or("(none)".to_string(), |n| format!("{n:?}"))
                ));
            }
        }
        doc.jwks_uri
            .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
            .ok_or_else(|| "its discovery document has no http(s) jwks_uri".to_string())
    }

    /// GETs a JSON document from an issuer; what went wrong otherwise.
    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, String> {
        let result = async {
            let resp = self
                .http
                .get(url)
                .timeout(ISSUER_TIMEOUT)
                .send()
                .await
                .map_err(http_trouble)?;
            read_json_or_trouble(resp).await
        }
        .await;
        if let Some(m) = &self.metrics {
            m.issuer_fetch(result.is_ok());
        }
        result
    }
}

/// The keys of a JWKS (`{"keys": [...]}`) this server can verify RS256 or ES256 tokens with.
/// Keys of other types, curves or algorithms, encryption keys, and keys that do not parse are
/// skipped, as RFC 7517 section 5 asks; a set with none left is the issuer's trouble.
fn usable_keys(set: &Value) -> Result<Vec<UsableKey>, String> {
    let Some(listed) = set.get("keys").and_then(Value::as_array) else {
        return Err("its key set is not a JWKS (no \"keys\" array)".into());
    };
    let usable: Vec<UsableKey> = listed.iter().filter_map(usable_key).collect();
    if usable.is_empty() {
        return Err(format!(
            "none of the {} keys of its key set is an RS256 (RSA) or ES256 (P-256) signing key",
            listed.len()
        ));
    }
    Ok(usable)
}

fn usable_key(jwk: &Value) -> Option<UsableKey> {
    let jwk: Jwk = serde_json::from_value(jwk.clone()).ok()?;
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    let alg = match &jwk.algorithm {
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        _ => return None,
    };
    let stated = jwk.common.key_algorithm;
    let agrees = match stated {
        None => true,
        Some(KeyAlgorithm::RS256) => alg == Algorithm::RS256,
        Some(KeyAlgorithm::ES256) => alg == Algorithm::ES256,
        Some(_) => false,
    };
    if !agrees {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some(UsableKey {
        kid: jwk.common.key_id,
        alg,
        key,
    })
}

/// Verifies `token` with `keys`.
fn check(
    keys: &[UsableKey],
    token: &str,
    header: &Header,
    rules: &Rules<'_>,
    now: i64,
) -> Result<Map<String, Value>, Failure> {
    let alg = header.alg;
    let key = match header.kid.as_deref() {
        Some(kid) => {
            let named: Vec<&UsableKey> = keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect();
            match named.iter().find(|k| k.alg == alg) {
                Some(k) => *k,
                None if named.is_empty() => {
                    return Err(Failure::Key("signed with an unknown key (kid)".into()));
                }
                None => {
                    return Err(Failure::Key("the algorithm does not match the key".into()));
                }
            }
        }
        None => {
            let fitting: Vec<&UsableKey> = keys.iter().filter(|k| k.alg == alg).collect();
            match fitting.as_slice() {
                [only] => *only,
                [] => {
                    return Err(Failure::Key(format!(
                        "no key id (kid), and the issuer publishes no {alg:?} key"
                    )));
                }
                several => {
                    return Err(Failure::Refused(format!(
                        "no key id (kid), and the issuer publishes {} {alg:?} keys: a token \
                         must name its key when there are several (OpenID Connect Core 1.0 \
                         section 10.1)",
                        several.len()
                    )));
                }
            }
        }
    };
    let mut v = Validation::new(alg);
    // Times are judged below against the server clock, so the test clock applies.
    v.validate_exp = false;
    v.required_spec_claims = HashSet::new();
    // Social issuers always have client ids; a custom JWT issuer may have no audience set.
    if rules.audiences.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(rules.audiences);
        v.required_spec_claims.insert("aud".to_string());
    }
    if !rules.issuers.is_empty() {
        v.set_issuer(rules.issuers);
        v.required_spec_claims.insert("iss".to_string());
    }
    let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &v).map_err(|e| {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::InvalidSignature => Failure::Key("signature is invalid".into()),
            K::InvalidAudience | K::MissingRequiredClaim(_) => {
                Failure::Refused("wrong or missing audience or issuer".into())
            }
            K::InvalidIssuer => Failure::Refused("wrong issuer".into()),
            K::InvalidAlgorithm => Failure::Key("the algorithm does not match the key".into()),
            _ => Failure::Refused("malformed token".into()),
        }
    })?;
    let claims = data.claims;
    if rules.id_token {
        check_audiences(&claims, rules.audiences).map_err(Failure::Refused)?;
    }
    let max_lifetime = rules.id_token.then_some(MAX_ID_TOKEN_LIFETIME_SECS);
    check_times(&claims, now, max_lifetime).map_err(Failure::Refused)?;
    match claims.get("sub") {
        Some(Value::String(s)) if !s.is_empty() => Ok(claims),
        _ => Err(Failure::Refused("missing sub claim".into())),
    }
}

/// OpenID Connect Core 1.0 section 3.1.3.7, items 3 to 5: every `aud` value must be one of
/// `trusted` (a token also meant for a client this server does not trust is refused), and with
/// several audiences `azp` must be present and trusted. With one audience `azp` is not checked:
/// Google's Android tokens carry the Android client id there. The problem otherwise.
fn check_audiences(claims: &Map<String, Value>, trusted: &[String]) -> Result<(), String> {
    if trusted.is_empty() {
        return Ok(());
    }
    let Some(Value::Array(auds)) = claims.get("aud") else {
        // A single audience was checked by the signature step.
        return Ok(());
    };
    let is_trusted = |v: &Value| v.as_str().is_some_and(|a| trusted.iter().any(|t| t == a));
    if !auds.iter().all(is_trusted) {
        return Err(
            "aud lists an audience this server does not trust (OpenID Connect Core 1.0 \
             section 3.1.3.7)"
                .into(),
        );
    }
    if auds.len() > 1 && !claims.get("azp").is_some_and(is_trusted) {
        return Err(
            "azp must name a trusted client when aud lists several (OpenID Connect Core 1.0 \
             section 3.1.3.7)"
                .into(),
        );
    }
    Ok(())
}

/// Reads an issuer's JSON answer (bounded): 503 for a failure status or garbage.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
) -> Result<T, ApiError> {
    read_json_or_trouble(resp)
        .await
        .map_err(|t| issuer_unavailable(&t))
}

/// What went wrong asking an issuer, for the log and the 503's message: a time-out says so
/// (reqwest's own text, "error sending request", does not), other errors without their URL.
fn http_trouble(e: reqwest::Error) -> String {
    if e.is_timeout() {
        format!("no answer within {}s", ISSUER_TIMEOUT.as_secs())
    } else {
        e.without_url().to_string()
    }
}

async fn read_json_or_trouble<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
) -> Result<T, String> {
    let status = resp.status();
    if !status.is_success() {
        return Err(format!("it answered HTTP {}", status.as_u16()));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err("its answer is too large".into());
    }
    let bytes = resp.bytes().await.map_err(http_trouble)?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err("its answer is too large".into());
    }
    serde_json::from_slice(&bytes).map_err(|_| "its answer is not the expected JSON".into())
}

/// RFC 7519 4.1.4 to 4.1.6 against the server clock with [`CLOCK_LEEWAY_SECS`]: `exp` required
/// and not passed, `nbf` and `iat` (when present) not in the future; with `max_lifetime`
/// (seconds), `exp` at most that long after `iat` (or now, without `iat`). The problem, naming
/// the claim, otherwise.
pub fn check_times(
    claims: &Map<String, Value>,
    now: i64,
    max_lifetime: Option<i64>,
) -> Result<(), String> {
    let exp = match claims.get("exp").map(Value::as_f64) {
        None => return Err("missing exp claim".into()),
        Some(None) => return Err("bad exp claim".into()),
        Some(Some(exp)) if exp + (CLOCK_LEEWAY_SECS as f64) <= now as f64 => {
            return Err("token expired".into());
        }
        Some(Some(exp)) => exp,
    };
    for (claim, problem) in [
        ("nbf", "not valid yet (nbf)"),
        ("iat", "issued in the future (iat)"),
    ] {
        match claims.get(claim).map(Value::as_f64) {
            None => {}
            Some(Some(t)) if t <= (now + CLOCK_LEEWAY_SECS) as f64 => {}
            Some(Some(_)) => return Err(problem.into()),
            Some(None) => return Err(format!("bad {claim} claim")),
        }
    }
    if let Some(max) = max_lifetime {
        let (issued, from) = match claims.get("iat").and_then(Value::as_f64) {
            Some(iat) => (iat, "iat"),
            None => (now as f64, "now (the token has no iat)"),
        };
        if exp - issued > max as f64 {
            return Err(format!(
                "exp is more than {max} seconds after {from} (an ID token is valid for a day at most)"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The modulus of RFC 7517's example RSA key (appendix A.1).
    const N: &str = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhD\
        R1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-\
        65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdk\
        t-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
    const X: &str = "WfbGsWV8jzjL2ut7nr1pySJi9Cd4dO6ZNLcpXqz3DBM";
    const Y: &str = "NOk6KwqvFZ3KG8OMD1ftj7J1r4eBTEtbaN0fcuCfYAs";

    #[test]
    fn only_rs256_and_es256_signing_keys_are_kept() {
        let set = json!({"keys": [
            {"kty": "RSA", "kid": "rsa", "n": N, "e": "AQAB"},
            {"kty": "EC", "crv": "P-256", "kid": "ec", "x": X, "y": Y, "alg": "ES256"},
            {"kty": "RSA", "kid": "enc", "use": "enc", "n": N, "e": "AQAB"},
            {"kty": "RSA", "kid": "rs512", "alg": "RS512", "n": N, "e": "AQAB"},
            {"kty": "EC", "crv": "P-384", "kid": "p384", "x": X, "y": Y},
            {"kty": "EC", "crv": "secp256k1", "kid": "k1", "x": X, "y": Y},
            {"kty": "OKP", "crv": "X25519", "kid": "x25519", "x": X},
            {"kty": "OKP", "crv": "Ed25519", "kid": "ed", "x": X},
            {"kty": "AKP", "alg": "ML-DSA-44", "kid": "mldsa", "pub": X},
            {"kty": "RSA", "kid": "no-e", "n": N},
            {"kty": "oct", "kid": "hmac", "k": X},
            "not an object",
        ]});
        let kept: Vec<(Option<String>, Algorithm)> = usable_keys(&set)
            .unwrap()
            .into_iter()
            .map(|k| (k.kid, k.alg))
            .collect();
        assert_eq!(
            kept,
            [
                (Some("rsa".into()), Algorithm::RS256),
                (Some("ec".into()), Algorithm::ES256)
            ]
        );
        let err = usable_keys(&json!({"keys": [{"kty": "AKP", "pub": X}]}))
            .err()
            .unwrap();
        assert!(err.contains("none of the 1 keys"), "{err}");
        assert!(usable_keys(&json!({"no": "keys"})).is_err());
    }

    #[test]
    fn an_id_token_lives_a_day_at_most() {
        let now = 1_800_000_000;
        let claims = |v: Value| v.as_object().cloned().unwrap();
        let day = Some(MAX_ID_TOKEN_LIFETIME_SECS);
        let ok = claims(json!({"iat": now, "exp": now + 86_400}));
        assert_eq!(check_times(&ok, now, day), Ok(()));
        for exp in [
            json!(now + 86_401),
            json!(2_147_483_649_i64 + now),
            json!(1e20),
        ] {
            let c = claims(json!({"iat": now, "exp": exp}));
            assert!(check_times(&c, now, day).unwrap_err().contains("exp"));
            // A custom JWT has no such bound.
            assert_eq!(check_times(&c, now, None), Ok(()));
        }
        // Without iat, the bound counts from now.
        let c = claims(json!({"exp": now + 86_401}));
        let err = check_times(&c, now, day).unwrap_err();
        assert!(err.contains("after now (the token has no iat)"), "{err}");
        let c = claims(json!({"iat": now, "exp": now + 86_401}));
        let err = check_times(&c, now, day).unwrap_err();
        assert!(err.contains("seconds after iat "), "{err}");
    }

    #[test]
    fn every_audience_must_be_trusted_and_azp_named_with_several() {
        let trusted = ["a".to_string(), "b".to_string()];
        let check = |v: Value| check_audiences(v.as_object().unwrap(), &trusted);
        assert!(check(json!({"aud": "a"})).is_ok());
        assert!(check(json!({"aud": "a", "azp": "android"})).is_ok());
        assert!(check(json!({"aud": ["a"]})).is_ok());
        assert!(check(json!({"aud": ["a", "b"], "azp": "b"})).is_ok());
        assert!(
            check(json!({"aud": ["a", "evil"], "azp": "a"}))
                .unwrap_err()
                .contains("aud")
        );
        assert!(
            check(json!({"aud": ["a", "b"]}))
                .unwrap_err()
                .contains("azp")
        );
        assert!(
            check(json!({"aud": ["a", "b"], "azp": "evil"}))
                .unwrap_err()
                .contains("azp")
        );
    }
}
