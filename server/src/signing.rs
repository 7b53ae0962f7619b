//! Access-token signing keys: ES256 or RS256 per app, so that any backend verifies access
//! tokens offline against the app's JWKS, without the server's secret. HS256 (the hosted
//! service's behaviour, the default) signs with the app secret and publishes nothing.
//!
//! Keys live in the database (`signing_keys`), one active key per app; rotation retires it
//! (`sessionkit-server keys rotate`), and a retired key stays published until the last access
//! token it signed has expired. A running server picks up keys made by another process when it
//! meets an unknown `kid` (at most every [`RELOAD_FLOOR_SECS`]) and once a minute.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

use crate::config::JwtAlgorithm;
use crate::store::{SigningKeyRow, Store, StoreResult};
use crate::tokens::{self, Claims, VerifyError};

/// The least time between two reloads caused by unknown `kid`s, in seconds.
pub const RELOAD_FLOOR_SECS: i64 = 10;

/// One signing key of an app.
pub struct SigningKey {
    /// Its key id (`kid`).
    pub kid: String,
    /// RS256 or ES256.
    pub alg: Algorithm,
    encoding: EncodingKey,
    /// ES256 keys parsed once: jsonwebtoken's RustCrypto backend parses the PKCS#8 key and
    /// makes a recoverable signature on every call, about 0.9 ms of CPU a token.
    es256: Option<p256::ecdsa::SigningKey>,
    decoding: DecodingKey,
    /// The public key as a JWK (RFC 7517).
    pub jwk: Value,
    /// When it was made (server clock, seconds).
    pub created_at: i64,
    /// When it stopped signing; `None` while it is the active key.
    pub retired_at: Option<i64>,
}

/// An app's keys, newest first.
#[derive(Default)]
pub struct KeyRing {
    keys: Vec<Arc<SigningKey>>,
    /// Server-clock second of the last reload.
    pub loaded_at: i64,
}

// Names the keys, never their private halves.
impl std::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.keys.iter().map(|k| (&k.kid, k.alg, k.retired_at)))
            .finish()
    }
}

impl KeyRing {
    /// The key that signs new tokens.
    pub fn active(&self) -> Option<&Arc<SigningKey>> {
        self.keys.iter().find(|k| k.retired_at.is_none())
    }

    /// The key with this `kid`.
    pub fn find(&self, kid: &str) -> Option<&Arc<SigningKey>> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The public keys to publish: the active one and every retired one that may still have
    /// signed an unexpired token (`access_lifetime_secs` after its retirement).
    pub fn published(&self, now: i64, access_lifetime_secs: i64) -> Vec<Value> {
        self.keys
            .iter()
            .filter(|k| {
                k.retired_at
                    .is_none_or(|at| at + access_lifetime_secs > now)
            })
            .map(|k| k.jwk.clone())
            .collect()
    }
}

fn alg_name(alg: JwtAlgorithm) -> &'static str {
    match alg {
        JwtAlgorithm::HS256 => "HS256",
        JwtAlgorithm::RS256 => "RS256",
        JwtAlgorithm::ES256 => "ES256",
    }
}

/// A new key pair: (private PEM, public JWK) for `alg` (ES256 or RS256).
fn generate(alg: JwtAlgorithm, kid: &str) -> Result<(String, Value), String> {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    match alg {
        JwtAlgorithm::ES256 => {
            use p256::pkcs8::{EncodePrivateKey, LineEnding};
            let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
            let pem = secret
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| e.to_string())?;
            let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
                &secret.public_key(),
                false,
            );
            let (Some(x), Some(y)) = (point.x(), point.y()) else {
                return Err("P-256 point without coordinates".into());
            };
            let jwk = json!({"kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256",
                "kid": kid, "x": b64(x), "y": b64(y)});
            Ok((pem.to_string(), jwk))
        }
        JwtAlgorithm::RS256 => {
            use rsa::pkcs8::{EncodePrivateKey, LineEnding};
            use rsa::traits::PublicKeyParts;
            let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048)
                .map_err(|e| e.to_string())?;
            let pem = private
                .to_pkcs8_pem(LineEnding::LF)
                .map_err(|e| e.to_string())?;
            let jwk = json!({"kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
                "n": b64(&private.n().to_bytes_be()), "e": b64(&private.e().to_bytes_be())});
            Ok((pem.to_string(), jwk))
        }
        JwtAlgorithm::HS256 => Err("HS256 has no key pair".into()),
    }
}

fn row_to_key(
    kid: String,
    alg: String,
    pem: String,
    jwk: String,
    created_at: i64,
    retired_at: Option<i64>,
) -> Option<SigningKey> {
    let jwk: Value = serde_json::from_str(&jwk).ok()?;
    let (alg, encoding) = match alg.as_str() {
        "ES256" => (
            Algorithm::ES256,
            EncodingKey::from_ec_pem(pem.as_bytes()).ok()?,
        ),
        "RS256" => (
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(pem.as_bytes()).ok()?,
        ),
        _ => return None,
    };
    let es256 = if alg == Algorithm::ES256 {
        use p256::pkcs8::DecodePrivateKey;
        Some(p256::ecdsa::SigningKey::from_pkcs8_pem(&pem).ok()?)
    } else {
        None
    };
    let parsed: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk.clone()).ok()?;
    let decoding = DecodingKey::from_jwk(&parsed).ok()?;
    Some(SigningKey {
        kid,
        alg,
        encoding,
        es256,
        decoding,
        jwk,
        created_at,
        retired_at,
    })
}

/// Reads an app's keys, newest first. A row that no longer parses is skipped with a warning.
pub async fn load(store: &dyn Store, app_id: &str, now: i64) -> StoreResult<KeyRing> {
    let mut keys = Vec::new();
    for row in store.signing_keys(app_id).await? {
        let kid = row.kid.clone();
        match row_to_key(
            row.kid,
            row.alg,
            row.private_pem,
            row.public_jwk,
            row.created_at,
            row.retired_at,
        ) {
            Some(k) => keys.push(Arc::new(k)),
            None => tracing::warn!(app = app_id, kid, "signing key does not parse; skipped"),
        }
    }
    Ok(KeyRing {
        keys,
        loaded_at: now,
    })
}

/// A new key pair of `alg` as a row to store.
fn new_row(alg: JwtAlgorithm, now: i64) -> Result<SigningKeyRow, String> {
    let kid = tokens::new_object_id();
    let (pem, jwk) = generate(alg, &kid)?;
    Ok(SigningKeyRow {
        kid,
        alg: alg_name(alg).to_string(),
        private_pem: pem,
        public_jwk: jwk.to_string(),
        created_at: now,
        retired_at: None,
    })
}

/// Makes sure the app has an active key of `alg` (none for HS256): the first start makes one,
/// and a changed algorithm retires the old key and makes a new one. In one transaction that
/// excludes other key changes, so two instances starting together make one key.
pub async fn ensure_active(
    store: &dyn Store,
    app_id: &str,
    alg: JwtAlgorithm,
    now: i64,
) -> StoreResult<()> {
    if alg == JwtAlgorithm::HS256 {
        return Ok(());
    }
    store
        .add_signing_key(
            app_id,
            Some(alg_name(alg)),
            Box::new(move || new_row(alg, now)),
            now,
        )
        .await?;
    Ok(())
}

/// Retires the active key and makes a new one of `alg`; the new key's `kid`.
pub async fn rotate(
    store: &dyn Store,
    app_id: &str,
    alg: JwtAlgorithm,
    now: i64,
) -> StoreResult<String> {
    let row = new_row(alg, now).map_err(|e| {
        crate::error::ApiError::bad_request(format!("cannot make a signing key: {e}"))
    })?;
    let kid = row.kid.clone();
    store
        .add_signing_key(app_id, None, Box::new(move || Ok(row)), now)
        .await?;
    Ok(kid)
}

/// Signs claims with the active key, `kid` in the header.
pub fn sign(key: &SigningKey, claims: &Claims) -> String {
    let header = Header {
        kid: Some(key.kid.clone()),
        ..Header::new(key.alg)
    };
    if let Some(es256) = &key.es256 {
        // RFC 7515 compact form with RFC 7518 3.4's ES256 signature (r || s, 64 bytes), made
        // with the key parsed once; jsonwebtoken verifies it like its own.
        use base64::Engine;
        use p256::ecdsa::signature::Signer;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header = serde_json::to_vec(&header).expect("a header serializes");
        let claims = serde_json::to_vec(claims).expect("claims serialize");
        let input = format!("{}.{}", b64.encode(header), b64.encode(claims));
        let signature: p256::ecdsa::Signature = es256.sign(input.as_bytes());
        return format!("{input}.{}", b64.encode(signature.to_bytes()));
    }
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("signing with a parsed key")
}

/// Verifies a token signed by `key` and judges `exp` against `now`.
pub fn verify(token: &str, key: &SigningKey, now: i64) -> Result<Claims, VerifyError> {
    let mut v = Validation::new(key.alg);
    v.validate_exp = false;
    v.validate_aud = false;
    v.required_spec_claims.clear();
    let data = jsonwebtoken::decode::<Claims>(token, &key.decoding, &v)
        .map_err(|_| VerifyError::Invalid)?;
    if data.claims.exp <= now {
        return Err(VerifyError::Expired);
    }
    Ok(data.claims)
}
