//! DPoP proofs (RFC 9449, #29): the key pair a session is bound to, and the proofs the SDK
//! makes with it, one per request. PROTOCOL.md, "DPoP", is the contract.
//!
//! This is the software key, the default signer: a P-256 key made with `ring` at each login of
//! an App with `AppConfig::dpop`, kept as PKCS#8 with the session it is bound to (the session
//! document, encrypted with the store when it is). Making a proof is one ES256 signature.
//! `transport` puts one on every request of a bound session; `User::dpop_proof` makes them for
//! the bindings' HTTP client hooks.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

/// Why a key could not be made or read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DpopKeyError {
    /// The system's random source failed (`ring`'s `SystemRandom`).
    #[error("the system's random number generator failed: no DPoP key was made")]
    Random,
    /// Stored key bytes that are not a P-256 PKCS#8 private key (a damaged or foreign
    /// session file): log in again to get a new key.
    #[error("the stored DPoP key is not a P-256 PKCS#8 key: log in again for a new one")]
    Unreadable,
}

/// A P-256 key pair for DPoP proofs. `Debug` shows its thumbprint only, never the private key.
pub struct DpopKey {
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
    /// The public key's JWK (`kty`, `crv`, `x`, `y`), as proofs carry it.
    jwk: Value,
    /// RFC 7638 thumbprint of `jwk`, base64url.
    thumbprint: String,
}

impl std::fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpopKey")
            .field("thumbprint", &self.thumbprint)
            .finish_non_exhaustive()
    }
}

impl DpopKey {
    /// A new random key. Error: [`DpopKeyError::Random`] when the system's random source fails.
    pub fn generate() -> Result<Self, DpopKeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| DpopKeyError::Random)?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// The key stored as [`DpopKey::pkcs8`]. Error: [`DpopKeyError::Unreadable`] for bytes that
    /// are not a P-256 PKCS#8 key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, DpopKeyError> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|_| DpopKeyError::Unreadable)?;
        // The public key is the uncompressed point: 0x04, then 32 bytes of x and 32 of y.
        let point = pair.public_key().as_ref();
        if point.len() != 65 || point[0] != 4 {
            return Err(DpopKeyError::Unreadable);
        }
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
        // RFC 7638 section 3: the required members in lexicographic order, no white space.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let thumbprint = URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            canonical.as_bytes(),
        ));
        Ok(Self {
            pair,
            pkcs8: pkcs8.to_vec(),
            jwk: json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
            thumbprint,
        })
    }

    /// The private key as PKCS#8 (DER), to keep with the session. A secret: store it as the
    /// tokens are stored, never log it.
    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public key's JWK SHA-256 thumbprint (RFC 7638), base64url: what the server binds
    /// the session to (`cnf.jkt` in its access tokens).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// A proof for one request (RFC 9449 section 4.2): `method` and `url` (its query and
    /// fragment are left out of `htu`), `iat` = `now` (Unix seconds), `ath` for
    /// `access_token`, `nonce` when the server gave one. A fresh random `jti` each time.
    /// Error: [`DpopKeyError::Random`] when the random source fails.
    pub fn proof(
        &self,
        method: &str,
        url: &str,
        access_token: Option<&str>,
        nonce: Option<&str>,
        now: i64,
    ) -> Result<String, DpopKeyError> {
        let rng = SystemRandom::new();
        let mut jti = [0u8; 16];
        ring::rand::SecureRandom::fill(&rng, &mut jti).map_err(|_| DpopKeyError::Random)?;
        let htu = url.split(['?', '#']).next().unwrap_or(url);
        let mut claims = json!({
            "jti": URL_SAFE_NO_PAD.encode(jti),
            "htm": method,
            "htu": htu,
            "iat": now,
        });
        if let Some(token) = access_token {
            claims["ath"] = Value::from(URL_SAFE_NO_PAD.encode(ring::digest::digest(
                &ring::digest::SHA256,
                token.as_bytes(),
            )));
        }
        if let Some(n) = nonce {
            claims["nonce"] = Value::from(n);
        }
        let header = json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self
            .pair
            .sign(&rng, input.as_bytes())
            .map_err(|_| DpopKeyError::Random)?;
        Ok(format!(
            "{input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(proof: &str, i: usize) -> Value {
        let b = URL_SAFE_NO_PAD
            .decode(proof.split('.').nth(i).unwrap())
            .unwrap();
        serde_json::from_slice(&b).unwrap()
    }

    #[test]
    fn a_proof_names_its_request_and_its_public_key_only() {
        let key = DpopKey::generate().unwrap();
        let proof = key
            .proof(
                "POST",
                "https://h.example/api/client/v2.0/auth/session?x=1#f",
                Some("token"),
                Some("n1"),
                1_700_000_000,
            )
            .unwrap();
        let header = part(&proof, 0);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["jwk"]["crv"], "P-256");
        assert!(header["jwk"].get("d").is_none());
        let claims = part(&proof, 1);
        assert_eq!(claims["htm"], "POST");
        assert_eq!(
            claims["htu"],
            "https://h.example/api/client/v2.0/auth/session"
        );
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["nonce"], "n1");
        // RFC 9449 section 4.2: base64url of SHA-256 of the token's ASCII.
        assert_eq!(claims["ath"], "PEaenWxYddN6Q_NT1PiOYfz4EsZu7jRXRlpAsNpBU-A");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(proof.split('.').nth(2).unwrap())
                .unwrap()
                .len(),
            64
        );
        // Two proofs never share a jti.
        let again = key
            .proof("POST", "https://h.example/", None, None, 0)
            .unwrap();
        assert_ne!(part(&again, 1)["jti"], claims["jti"]);
        assert!(part(&again, 1).get("ath").is_none());
    }

    #[test]
    fn a_stored_key_comes_back_the_same_and_damage_is_refused() {
        let key = DpopKey::generate().unwrap();
        let back = DpopKey::from_pkcs8(key.pkcs8()).unwrap();
        assert_eq!(back.thumbprint(), key.thumbprint());
        assert_eq!(
            DpopKey::from_pkcs8(b"not a key").unwrap_err(),
            DpopKeyError::Unreadable
        );
        assert!(!format!("{key:?}").contains(&URL_SAFE_NO_PAD.encode(key.pkcs8())));
    }
}
