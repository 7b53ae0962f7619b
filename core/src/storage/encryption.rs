//! AES-256-GCM for the session file: a fresh random nonce per save, the app id as associated
//! data (a file cannot be swapped in from another app), and a magic prefix so an encrypted file
//! is recognised as such.

use aes_gcm::aead::{Aead, AeadCore, OsRng, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};

use super::StoreError;

const MAGIC: &[u8] = b"SKENC1\n";
const NONCE_LEN: usize = 12;

pub(crate) fn is_encrypted(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

pub(crate) fn seal(key: &[u8; 32], app_id: &str, plain: &[u8]) -> Result<Vec<u8>, StoreError> {
    let cipher = Aes256Gcm::new(key.into());
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plain,
                aad: app_id.as_bytes(),
            },
        )
        .map_err(|_| StoreError::Unavailable {
            message: "encryption failed".into(),
        })?;
    let mut out = Vec::with_capacity(MAGIC.len() + NONCE_LEN + sealed.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&sealed);
    Ok(out)
}

pub(crate) fn open(key: &[u8; 32], app_id: &str, bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let body = &bytes[MAGIC.len()..];
    if body.len() < NONCE_LEN + 16 {
        return Err(StoreError::Corrupt {
            message: "encrypted session file is truncated".into(),
        });
    }
    let (nonce, sealed) = body.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
    Aes256Gcm::new(key.into())
        .decrypt(
            &Nonce::from(nonce),
            Payload {
                msg: sealed,
                aad: app_id.as_bytes(),
            },
        )
        .map_err(|_| StoreError::Corrupt {
            message:
                "cannot decrypt the session file: wrong encryption key, or the file is damaged"
                    .into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_wrong_key_or_app() {
        let key = [9u8; 32];
        let sealed = seal(&key, "app", b"secret doc").unwrap();
        assert!(is_encrypted(&sealed));
        assert!(!sealed.windows(10).any(|w| w == b"secret doc"));
        assert_eq!(open(&key, "app", &sealed).unwrap(), b"secret doc");
        assert!(open(&[1u8; 32], "app", &sealed).is_err());
        assert!(open(&key, "other-app", &sealed).is_err());
        assert!(open(&key, "app", &sealed[..20]).is_err());
        assert_ne!(
            seal(&key, "app", b"x").unwrap(),
            seal(&key, "app", b"x").unwrap(),
            "fresh nonces"
        );
    }
}
