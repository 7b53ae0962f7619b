//! ID tokens signed by an outside issuer (Google, Apple, any OpenID Connect issuer, or a custom
//! JWT issuer with a JWK URI), verified against the issuer's published JWKS.
//!
//! Keys are cached per JWKS URL. A token whose `kid` is not in the cache triggers one refetch
//! (the issuer rotated its keys), but at most once per [`REFETCH_FLOOR_SECS`] per URL, so a flood
//! of tokens with made-up `kid`s cannot make this server hammer the issuer.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};
use tokio::sync::Mutex;

use crate::error::ApiError;

/// The least time between two fetches of one JWKS URL, in seconds (server clock).
pub const REFETCH_FLOOR_SECS: i64 = 30;
/// How long fetched keys are used before they are fetched again, in seconds.
pub const MAX_AGE_SECS: i64 = 3600;
/// Timeout of one request to an issuer (JWKS, discovery, token or Graph endpoint).
pub const ISSUER_TIMEOUT: Duration = Duration::from_secs(10);
/// How far ahead of the server clock `nbf` and `iat` may be, and how long after `exp` a token is
/// still taken, in seconds: clocks differ a little.
pub const CLOCK_LEEWAY_SECS: i64 = 60;
/// The largest JWKS or discovery document read, in bytes.
const MAX_DOCUMENT_BYTES: usize = 256 * 1024;

/// What an ID token must satisfy besides its signature.
#[derive(Debug, Clone)]
pub struct Rules<'a> {
    /// Names the token in error messages ("Google ID token").
    pub label: &'a str,
    /// Where the issuer publishes its keys.
    pub jwks_url: &'a str,
    /// Accepted `iss` values (Google uses two spellings); empty: `iss` is not checked.
    pub issuers: &'a [String],
    /// Accepted `aud` values: the app's client ids (iOS, Android and web ones differ).
    pub audiences: &'a [String],
}

#[derive(Default)]
struct Entry {
    keys: Option<JwkSet>,
    /// Server-clock second of the last fetch attempt, successful or not.
    fetched_at: Option<i64>,
}

/// The JWKS of every issuer this server trusts, fetched on demand.
pub struct JwksCache {
    http: reqwest::Client,
    /// One lock per URL: concurrent logins wait for one fetch instead of each making their own.
    entries: std::sync::Mutex<HashMap<String, Arc<Mutex<Entry>>>>,
    /// `jwks_uri` of each OpenID Connect issuer, once discovered.
    discovered: std::sync::Mutex<HashMap<String, String>>,
}

/// The issuer could not be asked: a transient failure, never the caller's credentials.
pub fn issuer_unavailable(what: &str) -> ApiError {
    ApiError::unavailable(
        format!("identity provider unavailable: {what}; try again later"),
        5,
    )
}

impl JwksCache {
    /// An empty cache using `http` for its fetches.
    pub fn new(http: reqwest::Client) -> Self {
        Self {
            http,
            entries: Default::default(),
            discovered: Default::default(),
        }
    }

    /// The `jwks_uri` of an OpenID Connect issuer, from its discovery document
    /// (`<issuer>/.well-known/openid-configuration`, OpenID Connect Discovery 1.0 section 4),
    /// fetched once. 503 when it cannot be had.
    pub async fn discover(&self, issuer: &str) -> Result<String, ApiError> {
        if let Some(url) = self
            .discovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(issuer)
        {
            return Ok(url.clone());
        }
        #[derive(serde::Deserialize)]
        struct Discovery {
            jwks_uri: String,
        }
        let doc: Discovery = self
            .fetch_json(&format!(
                "{}/.well-known/openid-configuration",
                issuer.trim_end_matches('/')
            ))
            .await?;
        self.discovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(issuer.to_string(), doc.jwks_uri.clone());
        Ok(doc.jwks_uri)
    }

    /// The HTTP client the issuer calls go through.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// Verifies `token` (signature with RS256 or ES256, `iss`, `aud`, `exp`, `nbf`, `iat`) and
    /// returns its claims, which include a non-empty `sub`.
    ///
    /// Errors: 401 `AuthError` for a token that is malformed, forged, expired, not yet valid,
    /// or for another issuer or audience; 503 `ServiceUnavailable` when the issuer's keys
    /// cannot be fetched.
    pub async fn verify(
        &self,
        token: &str,
        rules: &Rules<'_>,
        now: i64,
    ) -> Result<Map<String, Value>, ApiError> {
        let label = rules.label;
        let refused = |why: &str| ApiError::auth(format!("invalid {label}: {why}"));
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| refused("malformed or unsupported algorithm"))?;
        // Only the asymmetric algorithms issuers use: `none` and HS256 (an attacker "signing"
        // with the public key) are refused before any key is looked at.
        if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
            return Err(refused("the algorithm must be RS256 or ES256"));
        }
        let kid = header
            .kid
            .as_deref()
            .ok_or_else(|| refused("no key id (kid)"))?;
        let key = self.key(rules, kid, now).await?;
        let key = key.ok_or_else(|| refused("signed with an unknown key"))?;
        let mut v = Validation::new(header.alg);
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
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &v).map_err(|e| {
            use jsonwebtoken::errors::ErrorKind as K;
            refused(match e.kind() {
                K::InvalidAudience | K::MissingRequiredClaim(_) => {
                    "wrong or missing audience or issuer"
                }
                K::InvalidIssuer => "wrong issuer",
                K::InvalidAlgorithm => "the algorithm does not match the key",
                _ => "signature is invalid",
            })
        })?;
        let claims = data.claims;
        check_times(&claims, now).map_err(|why| refused(&why))?;
        match claims.get("sub") {
            Some(Value::String(s)) if !s.is_empty() => Ok(claims),
            _ => Err(refused("missing sub claim")),
        }
    }

    /// The key `kid` of the JWKS at `rules.jwks_url`, fetching the set when it is missing,
    /// old, or lacks `kid` (at most once per floor).
    async fn key(
        &self,
        rules: &Rules<'_>,
        kid: &str,
        now: i64,
    ) -> Result<Option<DecodingKey>, ApiError> {
        let entry = {
            let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
            map.entry(rules.jwks_url.to_string()).or_default().clone()
        };
        let mut entry = entry.lock().await;
        let find = |set: &JwkSet| {
            set.find(kid)
                .and_then(|jwk| DecodingKey::from_jwk(jwk).ok())
        };
        let stale = entry
            .fetched_at
            .is_none_or(|at| now - at >= MAX_AGE_SECS || now < at);
        if !stale && let Some(key) = entry.keys.as_ref().and_then(find) {
            return Ok(Some(key));
        }
        let may_fetch = entry
            .fetched_at
            .is_none_or(|at| now - at >= REFETCH_FLOOR_SECS || now < at);
        if may_fetch {
            entry.fetched_at = Some(now);
            match self.fetch_json::<JwkSet>(rules.jwks_url).await {
                Ok(set) => entry.keys = Some(set),
                // Keys fetched before are still used; without any, the login cannot be judged.
                Err(e) if entry.keys.is_none() => return Err(e),
                Err(e) => {
                    tracing::warn!(url = rules.jwks_url, "JWKS refetch failed: {}", e.message)
                }
            }
        }
        match &entry.keys {
            Some(set) => Ok(find(set)),
            // The last fetch failed, within the floor: still the issuer's trouble.
            None => Err(issuer_unavailable("its keys could not be fetched")),
        }
    }

    /// GETs a JSON document from an issuer: 503 when it cannot be had.
    pub async fn fetch_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
    ) -> Result<T, ApiError> {
        let resp = self
            .http
            .get(url)
            .timeout(ISSUER_TIMEOUT)
            .send()
            .await
            .map_err(|e| issuer_unavailable(&format!("{}", e.without_url())))?;
        read_json(resp).await
    }
}

/// Reads an issuer's JSON answer (bounded): 503 for a failure status or garbage.
pub async fn read_json<T: serde::de::DeserializeOwned>(
    resp: reqwest::Response,
) -> Result<T, ApiError> {
    let status = resp.status();
    if !status.is_success() {
        return Err(issuer_unavailable(&format!(
            "it answered HTTP {}",
            status.as_u16()
        )));
    }
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
    {
        return Err(issuer_unavailable("its answer is too large"));
    }
    let bytes = resp
        .bytes()
        .await
        .map_err(|e| issuer_unavailable(&format!("{}", e.without_url())))?;
    if bytes.len() > MAX_DOCUMENT_BYTES {
        return Err(issuer_unavailable("its answer is too large"));
    }
    serde_json::from_slice(&bytes)
        .map_err(|_| issuer_unavailable("its answer is not the expected JSON"))
}

/// RFC 7519 4.1.4 to 4.1.6 against the server clock with [`CLOCK_LEEWAY_SECS`]: `exp` required
/// and not passed, `nbf` and `iat` (when present) not in the future. The problem otherwise.
pub fn check_times(claims: &Map<String, Value>, now: i64) -> Result<(), String> {
    match claims.get("exp").map(Value::as_f64) {
        None => return Err("missing exp claim".into()),
        Some(None) => return Err("bad exp claim".into()),
        Some(Some(exp)) if exp + (CLOCK_LEEWAY_SECS as f64) <= now as f64 => {
            return Err("token expired".into());
        }
        Some(Some(_)) => {}
    }
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
    Ok(())
}
