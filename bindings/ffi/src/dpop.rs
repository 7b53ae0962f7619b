//! The foreign-implementable DPoP signer (#29): keys in the iOS Secure Enclave or the Android
//! Keystore, the SDK handed signatures only. The core's `sessionkit::DpopSigner` is the
//! contract; this is its foreign face.

use std::sync::Arc;

use sessionkit as sk;

use crate::foreign::{self, Foreign};

/// Why the app's signer could not do what was asked. The request in hand fails with
/// `AppError.Storage`; the session is kept.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum DpopSignerError {
    /// The key store failed (a locked device, a missing key); the message says how.
    #[error("{message}")]
    Failed { message: String },
}

/// A signer that raised something else failed in the same way.
impl From<uniffi::UnexpectedUniFFICallbackError> for DpopSignerError {
    fn from(e: uniffi::UnexpectedUniFFICallbackError) -> Self {
        Self::Failed {
            message: format!("the signer raised: {}", e.reason),
        }
    }
}

/// Makes and holds DPoP keys in the app's key store and signs with them
/// (`AppConfig.dpop_signer`). The session keeps each key's handle and public key only.
#[uniffi::export(foreign)]
pub trait DpopSigner: Send + Sync {
    /// Makes a new P-256 key for a login; returns its handle (an alias or tag, not key material).
    fn create_key(&self) -> Result<String, DpopSignerError>;
    /// The public key of `handle`: the 65-byte uncompressed point or its 91-byte
    /// SubjectPublicKeyInfo DER (Java's `PublicKey.getEncoded()`).
    fn public_key(&self, handle: String) -> Result<Vec<u8>, DpopSignerError>;
    /// An ES256 signature (ECDSA P-256 over SHA-256) of `message` by `handle`: 64 bytes
    /// `r || s`, or DER (`SecKeyCreateSignature`, Java's `SHA256withECDSA`).
    fn sign(&self, handle: String, message: Vec<u8>) -> Result<Vec<u8>, DpopSignerError>;
    /// Deletes the key of a session that ended.
    fn delete_key(&self, handle: String) -> Result<(), DpopSignerError>;
}

/// The core's view of a foreign signer.
pub(crate) struct SignerAdapter(pub(crate) Foreign<Arc<dyn DpopSigner>>);

fn to_core<T>(r: Option<Result<T, DpopSignerError>>) -> Result<T, sk::DpopKeyError> {
    match r {
        Some(Ok(v)) => Ok(v),
        Some(Err(DpopSignerError::Failed { message })) => Err(sk::DpopKeyError::Signer { message }),
        None => Err(sk::DpopKeyError::Signer {
            message: "the app's runtime is shutting down".into(),
        }),
    }
}

impl sk::DpopSigner for SignerAdapter {
    fn create_key(&self) -> Result<String, sk::DpopKeyError> {
        to_core(foreign::call(|| self.0.create_key()))
    }
    fn public_key(&self, handle: &str) -> Result<Vec<u8>, sk::DpopKeyError> {
        to_core(foreign::call(|| self.0.public_key(handle.to_string())))
    }
    fn sign(&self, handle: &str, message: &[u8]) -> Result<Vec<u8>, sk::DpopKeyError> {
        to_core(foreign::call(|| {
            self.0.sign(handle.to_string(), message.to_vec())
        }))
    }
    fn delete_key(&self, handle: &str) -> Result<(), sk::DpopKeyError> {
        to_core(foreign::call(|| self.0.delete_key(handle.to_string())))
    }
}
