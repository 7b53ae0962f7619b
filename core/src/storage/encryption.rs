//! AES-256-GCM for the session file: a fresh random nonce per save, the app id as associated
//! data (a file cannot be swapped in from another app), and a magic prefix so an encrypted file
//! is recognised as such.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use super::StoreError;

const MAGIC: &[u8] = b"SKENC1\n";
const TAG_LEN: usize = 16;

pub(crate) fn is_encrypted(bytes: &[u8]) -> bool {
    bytes.starts_with(MAGIC)
}

// ring, not a separate AES crate: TLS already links ring's AES-GCM (hardware-accelerated,
// constant-time), so the session file uses the same code. The format is plain AES-256-GCM:
// MAGIC, a 12-byte nonce, then the ciphertext with its 16-byte tag.
fn cipher(key: &[u8; 32]) -> LessSafeKey {
    // A 32-byte key is exactly what AES-256 takes: `new` cannot fail here.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key"))
}

pub(crate) fn seal(key: &[u8; 32], app_id: &str, plain: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| StoreError::Unavailable {
            message: "encryption failed: the system's random number generator is unavailable"
                .into(),
        })?;
    let mut sealed = plain.to_vec();
    cipher(key)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(app_id.as_bytes()),
            &mut sealed,
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
    // Callers check `is_encrypted` first, but this must hold for any bytes (found by fuzzing:
    // the empty input sliced past its end).
    let body = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| StoreError::Corrupt {
            message: "not an encrypted session file (no header)".into(),
        })?;
    if body.len() < NONCE_LEN + TAG_LEN {
        return Err(StoreError::Corrupt {
            message: "encrypted session file is truncated".into(),
        });
    }
    let (nonce, sealed) = body.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().expect("split at NONCE_LEN");
    let mut buf = sealed.to_vec();
    let plain_len = cipher(key)
        .open_in_place(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(app_id.as_bytes()),
            &mut buf,
        )
        .map_err(|_| StoreError::Corrupt {
            message:
                "cannot decrypt the session file: wrong encryption key, or the file is damaged"
                    .into(),
        })?
        .len();
    buf.truncate(plain_len);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fuzz target session_document's first find: bytes without the header, the empty
    /// input included, are an error, not a panic.
    #[test]
    fn bytes_without_the_header_are_corrupt_not_a_panic() {
        for bytes in [&b""[..], b"SKENC", b"{}", &MAGIC[..MAGIC.len() - 1]] {
            assert!(matches!(
                open(&[7; 32], "app", bytes),
                Err(StoreError::Corrupt { .. })
            ));
        }
    }

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
