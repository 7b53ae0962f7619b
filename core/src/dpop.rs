//! DPoP proofs (RFC 9449, #29): the key pair a session is bound to, and the proofs the SDK
//! makes with it, one per request. PROTOCOL.md, "DPoP", is the contract.
//!
//! This is the software key, the default signer: a P-256 key made with `ring` at each login of
//! an App with `AppConfig::dpop`, kept as PKCS#8 with the session it is bound to (the session
//! document, encrypted with the store when it is). Making a proof is one ES256 signature.
//! `transport` puts one on every request of a bound session; `User::dpop_proof` makes them for
//! the bindings' HTTP client hooks.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _,
};
use serde_json::{Value, json};

/// Why a key could not be made, read or used.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone)]
pub enum DpopKeyError {
    /// The system's random source failed (`ring`'s `SystemRandom`).
    #[error("the system's random number generator failed: no DPoP key was made")]
    Random,
    /// Stored key bytes that are not a P-256 PKCS#8 private key (a damaged or foreign
    /// session file): log in again to get a new key.
    #[error("the stored DPoP key is not a P-256 PKCS#8 key: log in again for a new one")]
    Unreadable,
    /// The app's [`DpopSigner`] failed or answered something unusable; the message says which.
    /// The session is kept: the request can be tried again.
    #[error("DPoP signer: {message}")]
    Signer { message: String },
}

/// Keeps DPoP keys where the SDK cannot read them, and signs with them: the iOS Secure
/// Enclave, the Android Keystore (`AppConfig::dpop_signer`; #29). The SDK keeps only each key's
/// handle and public key with the session, and asks for one signature per request. Without
/// one, keys are software keys kept in the session store ([`DpopKey::generate`]).
///
/// Called from the SDK's threads, one call at a time per request; keep them short. An error
/// fails the request in hand (`AppError::Storage`) and keeps the session.
pub trait DpopSigner: Send + Sync {
    /// Makes a new P-256 key for a login and returns its handle (an alias or tag naming it in
    /// the key store; not key material): what the SDK stores with the session.
    fn create_key(&self) -> Result<String, DpopKeyError>;
    /// The public key of `handle`: the 65-byte uncompressed point (`0x04 || x || y`, what
    /// `SecKeyCopyExternalRepresentation` gives) or its X.509 SubjectPublicKeyInfo DER (91
    /// bytes, Java's `PublicKey.getEncoded()`).
    fn public_key(&self, handle: &str) -> Result<Vec<u8>, DpopKeyError>;
    /// An ECDSA P-256 signature over SHA-256 of `message` (ES256) by `handle`: 64 bytes
    /// `r || s`, or DER (what `SecKeyCreateSignature` with
    /// `ecdsaSignatureMessageX962SHA256` and Java's `SHA256withECDSA` make).
    fn sign(&self, handle: &str, message: &[u8]) -> Result<Vec<u8>, DpopKeyError>;
    /// Deletes the key of a session that ended (after its revocation was sent). An error is
    /// logged and otherwise ignored.
    fn delete_key(&self, handle: &str) -> Result<(), DpopKeyError>;
}

/// The signer of a session whose key a `DpopSigner` holds, in an App given none: the session is
/// kept as it is (another process of the app may have the signer) and each request fails saying
/// what to do, instead of the session being dropped for a configuration.
pub(crate) struct MissingSigner;

impl DpopSigner for MissingSigner {
    fn create_key(&self) -> Result<String, DpopKeyError> {
        Err(Self::error())
    }
    fn public_key(&self, _: &str) -> Result<Vec<u8>, DpopKeyError> {
        Err(Self::error())
    }
    fn sign(&self, _: &str, _: &[u8]) -> Result<Vec<u8>, DpopKeyError> {
        Err(Self::error())
    }
    fn delete_key(&self, _: &str) -> Result<(), DpopKeyError> {
        Err(Self::error())
    }
}

impl MissingSigner {
    fn error() -> DpopKeyError {
        signer_error(
            "this session's key is held by a DpopSigner and this App was given none: open the \
             App with AppConfig::dpop_signer set",
        )
    }
}

/// Who holds the private key.
enum Signing {
    /// A software key, kept as PKCS#8 with the session.
    Software { pair: EcdsaKeyPair, pkcs8: Vec<u8> },
    /// The app's signer holds it; `point` is the public key, to check its signatures.
    Foreign {
        signer: Arc<dyn DpopSigner>,
        handle: String,
        point: Vec<u8>,
    },
}

/// A P-256 key pair for DPoP proofs: a software key, or one the app's [`DpopSigner`] holds.
/// `Debug` shows its thumbprint only, never the private key.
pub struct DpopKey {
    signing: Signing,
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

/// The fixed start of a P-256 public key's SubjectPublicKeyInfo DER (RFC 5480): the algorithm
/// (id-ecPublicKey, prime256v1) and the BIT STRING header; the 65-byte point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Whether `point` is an uncompressed point on P-256, by `ring`'s own check of an ECDH peer key.
fn on_p256(point: &[u8]) -> bool {
    use ring::agreement;
    let Ok(mine) =
        agreement::EphemeralPrivateKey::generate(&agreement::ECDH_P256, &SystemRandom::new())
    else {
        return false;
    };
    let peer = agreement::UnparsedPublicKey::new(&agreement::ECDH_P256, point);
    agreement::agree_ephemeral(mine, &peer, |_| ()).is_ok()
}

fn signer_error(message: impl Into<String>) -> DpopKeyError {
    DpopKeyError::Signer {
        message: message.into(),
    }
}

impl DpopKey {
    /// A new random software key. Error: [`DpopKeyError::Random`] when the system's random
    /// source fails.
    pub fn generate() -> Result<Self, DpopKeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| DpopKeyError::Random)?;
        Self::from_pkcs8(pkcs8.as_ref())
    }

    /// The software key stored as [`DpopKey::pkcs8`]. Error: [`DpopKeyError::Unreadable`] for
    /// bytes that are not a P-256 PKCS#8 key.
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<Self, DpopKeyError> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|_| DpopKeyError::Unreadable)?;
        let point = pair.public_key().as_ref().to_vec();
        let signing = Signing::Software {
            pair,
            pkcs8: pkcs8.to_vec(),
        };
        Self::with_point(signing, &point).ok_or(DpopKeyError::Unreadable)
    }

    /// A new key made by `signer` ([`DpopSigner::create_key`], then its public key). Errors:
    /// [`DpopKeyError::Signer`] when the signer fails or its public key is not a P-256 one.
    pub fn create(signer: Arc<dyn DpopSigner>) -> Result<Self, DpopKeyError> {
        let handle = signer.create_key()?;
        let made = signer.public_key(&handle).and_then(|public| {
            let point = match public.len() {
                65 => public,
                91 if public[..26] == P256_SPKI_PREFIX => public[26..].to_vec(),
                n => {
                    return Err(signer_error(format!(
                        "public_key gave {n} bytes: expected a P-256 key as its 65-byte \
                         uncompressed point or its 91-byte SubjectPublicKeyInfo DER"
                    )));
                }
            };
            Self::foreign(Arc::clone(&signer), handle.clone(), &point)
        });
        if made.is_err() {
            // A key nobody will use: not left behind in the app's key store.
            let _ = signer.delete_key(&handle);
        }
        made
    }

    /// A key of `signer` kept with a session: its handle and public point
    /// ([`DpopKey::handle`], [`DpopKey::public_point`]). Error: [`DpopKeyError::Unreadable`] for
    /// a point that is not an uncompressed P-256 point.
    pub fn foreign(
        signer: Arc<dyn DpopSigner>,
        handle: String,
        point: &[u8],
    ) -> Result<Self, DpopKeyError> {
        // ring checks a public key only when it is used: an ECDH with a throwaway key tells a
        // point off the curve apart from a bad signature later (one agreement, at login and at
        // restore).
        if !on_p256(point) {
            return Err(signer_error(
                "the public key is not a point on P-256 (expected 0x04 || x || y of the key)",
            ));
        }
        let signing = Signing::Foreign {
            signer,
            handle,
            point: point.to_vec(),
        };
        Self::with_point(signing, point).ok_or_else(|| {
            signer_error("the public key is not an uncompressed P-256 point (0x04 || x || y)")
        })
    }

    fn with_point(signing: Signing, point: &[u8]) -> Option<Self> {
        // The uncompressed point: 0x04, then 32 bytes of x and 32 of y.
        if point.len() != 65 || point[0] != 4 {
            return None;
        }
        let x = URL_SAFE_NO_PAD.encode(&point[1..33]);
        let y = URL_SAFE_NO_PAD.encode(&point[33..65]);
        // RFC 7638 section 3: the required members in lexicographic order, no white space.
        let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
        let thumbprint = URL_SAFE_NO_PAD.encode(ring::digest::digest(
            &ring::digest::SHA256,
            canonical.as_bytes(),
        ));
        Some(Self {
            signing,
            jwk: json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
            thumbprint,
        })
    }

    /// A software key's private key as PKCS#8 (DER), to keep with the session; `None` for a
    /// key the app's signer holds. A secret: store it as the tokens are stored, never log it.
    pub fn pkcs8(&self) -> Option<&[u8]> {
        match &self.signing {
            Signing::Software { pkcs8, .. } => Some(pkcs8),
            Signing::Foreign { .. } => None,
        }
    }

    /// The handle of a key the app's signer holds; `None` for a software key.
    pub fn handle(&self) -> Option<&str> {
        match &self.signing {
            Signing::Software { .. } => None,
            Signing::Foreign { handle, .. } => Some(handle),
        }
    }

    /// The public key as its 65-byte uncompressed point.
    pub fn public_point(&self) -> Vec<u8> {
        match &self.signing {
            Signing::Software { pair, .. } => pair.public_key().as_ref().to_vec(),
            Signing::Foreign { point, .. } => point.clone(),
        }
    }

    /// The public key's JWK SHA-256 thumbprint (RFC 7638), base64url: what the server binds
    /// the session to (`cnf.jkt` in its access tokens).
    pub fn thumbprint(&self) -> &str {
        &self.thumbprint
    }

    /// Deletes a signer's key ([`DpopSigner::delete_key`]); nothing for a software key, which
    /// goes with the session document. Error: the signer's.
    pub fn delete(&self) -> Result<(), DpopKeyError> {
        match &self.signing {
            Signing::Software { .. } => Ok(()),
            Signing::Foreign { signer, handle, .. } => signer.delete_key(handle),
        }
    }

    /// A proof for one request (RFC 9449 section 4.2): `method` and `url` (its query and
    /// fragment are left out of `htu`), `iat` = `now` (Unix seconds), `ath` for
    /// `access_token`, `nonce` when the server gave one. A fresh random `jti` each time.
    /// Errors: [`DpopKeyError::Random`] when the random source fails,
    /// [`DpopKeyError::Signer`] when the app's signer fails or its signature does not verify.
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
        let signature = self.sign(&rng, input.as_bytes())?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// The JWS signature of `input`: 64 bytes `r || s` (RFC 7518 section 3.4).
    fn sign(&self, rng: &SystemRandom, input: &[u8]) -> Result<Vec<u8>, DpopKeyError> {
        match &self.signing {
            Signing::Software { pair, .. } => pair
                .sign(rng, input)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| DpopKeyError::Random),
            Signing::Foreign {
                signer,
                handle,
                point,
            } => {
                let given = signer.sign(handle, input)?;
                let raw = if given.len() == 64 {
                    given
                } else {
                    der_signature_to_raw(&given).ok_or_else(|| {
                        signer_error(format!(
                            "sign gave {} bytes that are neither r || s (64 bytes) nor a DER \
                             ECDSA signature",
                            given.len()
                        ))
                    })?
                };
                // A signer that hashes twice or signs with another key would be refused by the
                // server as a bad proof; say what is wrong here instead.
                ring::signature::UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(input, &raw)
                    .map_err(|_| {
                        signer_error(
                            "the signature does not verify with the key's public key: sign must \
                             make an ECDSA P-256 signature over SHA-256 of the message, with \
                             the key of that handle",
                        )
                    })?;
                Ok(raw)
            }
        }
    }
}

/// `r || s`, 32 bytes each, of a DER ECDSA-Sig-Value (`SEQUENCE { INTEGER r, INTEGER s }`,
/// RFC 3279 section 2.2.3); `None` for anything else.
fn der_signature_to_raw(der: &[u8]) -> Option<Vec<u8>> {
    // SEQUENCE with a short length (a P-256 signature is at most 72 bytes).
    let (&tag, rest) = der.split_first()?;
    let (&len, body) = rest.split_first()?;
    if tag != 0x30 || len as usize != body.len() || len >= 0x80 {
        return None;
    }
    let mut raw = Vec::with_capacity(64);
    let mut body = body;
    for _ in 0..2 {
        let (&tag, rest) = body.split_first()?;
        let (&len, rest) = rest.split_first()?;
        let len = len as usize;
        if tag != 0x02 || len == 0 || len > 33 || rest.len() < len {
            return None;
        }
        let (int, after) = rest.split_at(len);
        // A positive INTEGER: one leading zero only before a byte with its high bit set.
        let int = match int {
            [0, second, ..] if second & 0x80 != 0 => &int[1..],
            [first, ..] if first & 0x80 != 0 => return None,
            _ => int,
        };
        if int.len() > 32 {
            return None;
        }
        raw.extend(std::iter::repeat_n(0, 32 - int.len()));
        raw.extend_from_slice(int);
        body = after;
    }
    body.is_empty().then_some(raw)
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

    /// A signer as a platform key store is one: DER signatures, SPKI public keys, keys by
    /// alias. `flaw` makes it misbehave.
    struct Keystore {
        keys: std::sync::Mutex<Vec<(String, EcdsaKeyPair)>>,
        flaw: Option<&'static str>,
    }

    impl Keystore {
        fn new(flaw: Option<&'static str>) -> Arc<Self> {
            Arc::new(Self {
                keys: std::sync::Mutex::new(Vec::new()),
                flaw,
            })
        }
    }

    impl DpopSigner for Keystore {
        fn create_key(&self) -> Result<String, DpopKeyError> {
            let rng = SystemRandom::new();
            let alg = &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING;
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng).unwrap();
            let mut keys = self.keys.lock().unwrap();
            let alias = format!("key-{}", keys.len());
            keys.push((alias.clone(), pair));
            Ok(alias)
        }
        fn public_key(&self, handle: &str) -> Result<Vec<u8>, DpopKeyError> {
            let keys = self.keys.lock().unwrap();
            let (_, pair) = keys.iter().find(|(a, _)| a == handle).unwrap();
            let point = pair.public_key().as_ref();
            Ok(match self.flaw {
                Some("short key") => point[..33].to_vec(),
                _ => [&P256_SPKI_PREFIX[..], point].concat(),
            })
        }
        fn sign(&self, handle: &str, message: &[u8]) -> Result<Vec<u8>, DpopKeyError> {
            if self.flaw == Some("locked") {
                return Err(signer_error("the device is locked"));
            }
            let keys = self.keys.lock().unwrap();
            let (_, pair) = keys.iter().find(|(a, _)| a == handle).unwrap();
            let message = match self.flaw {
                Some("hashes twice") => ring::digest::digest(&ring::digest::SHA256, message)
                    .as_ref()
                    .to_vec(),
                _ => message.to_vec(),
            };
            Ok(pair
                .sign(&SystemRandom::new(), &message)
                .unwrap()
                .as_ref()
                .to_vec())
        }
        fn delete_key(&self, handle: &str) -> Result<(), DpopKeyError> {
            self.keys.lock().unwrap().retain(|(a, _)| a != handle);
            Ok(())
        }
    }

    #[test]
    fn a_signers_key_makes_the_same_proofs_with_its_der_signatures() {
        let store = Keystore::new(None);
        let key = DpopKey::create(store.clone()).unwrap();
        assert_eq!(key.handle(), Some("key-0"));
        assert!(key.pkcs8().is_none());
        let proof = key
            .proof("GET", "https://api.example/x", Some("t"), None, 5)
            .unwrap();
        // The JWS signature is r || s, and verifies with the key in the header.
        let (input, sig) = proof.rsplit_once('.').unwrap();
        let sig = URL_SAFE_NO_PAD.decode(sig).unwrap();
        assert_eq!(sig.len(), 64);
        ring::signature::UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key.public_point())
            .verify(input.as_bytes(), &sig)
            .unwrap();
        // Kept as handle and point, it comes back the same.
        let again = DpopKey::foreign(store.clone(), "key-0".into(), &key.public_point()).unwrap();
        assert_eq!(again.thumbprint(), key.thumbprint());
        again.delete().unwrap();
        assert!(store.keys.lock().unwrap().is_empty());
    }

    #[test]
    fn a_signer_that_misbehaves_gets_an_error_that_says_how() {
        let store = Keystore::new(Some("short key"));
        let short = DpopKey::create(store.clone()).unwrap_err();
        assert!(short.to_string().contains("65-byte"), "{short}");
        assert!(
            store.keys.lock().unwrap().is_empty(),
            "the unusable key is deleted"
        );
        for (flaw, says) in [("locked", "locked"), ("hashes twice", "SHA-256")] {
            let key = DpopKey::create(Keystore::new(Some(flaw))).unwrap();
            let e = key
                .proof("GET", "https://a.example/", None, None, 0)
                .unwrap_err();
            assert!(
                matches!(&e, DpopKeyError::Signer { message } if message.contains(says)),
                "{e}"
            );
        }
    }

    #[test]
    fn a_public_key_off_the_curve_is_named_as_such() {
        let mut off = vec![4u8];
        off.extend([1u8; 64]);
        let e = DpopKey::foreign(Keystore::new(None), "h".into(), &off).unwrap_err();
        assert!(e.to_string().contains("not a point on P-256"), "{e}");
        let real = DpopKey::generate().unwrap().public_point();
        assert!(DpopKey::foreign(Keystore::new(None), "h".into(), &real).is_ok());
    }

    #[test]
    fn der_signatures_become_r_and_s() {
        // Short integers are padded; a leading zero before a high bit is dropped.
        let mut der = vec![0x30, 0x26, 0x02, 0x01, 0x05, 0x02, 0x21, 0x00];
        der.extend([0x80; 32]);
        let raw = der_signature_to_raw(&der).unwrap();
        assert_eq!(raw[..32], [[0u8; 31].as_slice(), &[5]].concat()[..]);
        assert_eq!(raw[32..], [0x80; 32]);
        for bad in [
            &[][..],
            &[0x30, 0x00],
            &[0x30, 0x03, 0x02, 0x01, 0x05], // one integer
            &[0x31, 0x06, 0x02, 0x01, 0x05, 0x02, 0x01, 0x05], // not a SEQUENCE
            &[0x30, 0x06, 0x02, 0x01, 0x85, 0x02, 0x01, 0x05], // negative r
            &[0x30, 0x07, 0x02, 0x01, 0x05, 0x02, 0x01, 0x05, 0x00], // trailing byte
        ] {
            assert!(der_signature_to_raw(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn a_stored_key_comes_back_the_same_and_damage_is_refused() {
        let key = DpopKey::generate().unwrap();
        let back = DpopKey::from_pkcs8(key.pkcs8().unwrap()).unwrap();
        assert_eq!(back.thumbprint(), key.thumbprint());
        assert_eq!(
            DpopKey::from_pkcs8(b"not a key").unwrap_err(),
            DpopKeyError::Unreadable
        );
        assert!(!format!("{key:?}").contains(&URL_SAFE_NO_PAD.encode(key.pkcs8().unwrap())));
    }
}
