//! The custom-JWT provider's verifier: header, algorithm pinning (HS256 with a shared key,
//! ES256 with a public key), signature, audience, exp/nbf/iat, sub and metadata fields.
#![no_main]
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use sessionkit_server::config::{CustomTokenConfig, JwtAlgorithm};
use sessionkit_server::providers::custom_token;

/// A public key only (its private half was thrown away): tokens can never verify with it, but
/// every step before the signature check runs.
const ES256_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEsnJCKexcS2BQdN22iu5y9lmZGG8y\nZ9Bhki6bhMpKlVvaV18CaHl2rBX4XeJbInr1KMxQQFV/1ovehImHBaYJvA==\n-----END PUBLIC KEY-----";

static CONFIGS: LazyLock<[CustomTokenConfig; 2]> = LazyLock::new(|| {
    [
        CustomTokenConfig {
            algorithm: JwtAlgorithm::HS256,
            key: Some("fuzz-shared-key".into()),
            audience: Some("fuzz-app".into()),
            ..Default::default()
        },
        CustomTokenConfig {
            algorithm: JwtAlgorithm::ES256,
            public_key_pem: Some(ES256_PUBLIC_KEY.into()),
            ..Default::default()
        },
    ]
});

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        for cfg in CONFIGS.iter() {
            let _ = custom_token(cfg, token, 1_800_000_000);
        }
    }
});
