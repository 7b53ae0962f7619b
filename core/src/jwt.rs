//! Reads the claims of the server's JWTs. Clients never verify signatures (the server does);
//! they only need `exp`, `iat`, `sub`, `user_data`, `baas_device_id` and `sid`.

use base64::Engine;
use base64::engine::DecodePaddingMode;
#[cfg(test)]
use base64::engine::general_purpose;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use serde_json::Value;

use crate::error::{AppError, Result};

/// The claims clients read.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Claims {
    pub exp: i64,
    pub iat: Option<i64>,
    pub sub: Option<String>,
    pub user_data: Option<Value>,
    /// The server session a token belongs to (sessionkit-server: refresh tokens, and access
    /// tokens since #25).
    pub sid: Option<String>,
}

// realm-core accepts both alphabets and optional padding; so do we.
const LENIENT: GeneralPurposeConfig = GeneralPurposeConfig::new()
    .with_decode_padding_mode(DecodePaddingMode::Indifferent)
    .with_decode_allow_trailing_bits(true);
const URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, LENIENT);
const STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, LENIENT);

/// Decodes a JWT's payload without verifying it.
pub(crate) fn decode(token: &str) -> Result<Claims> {
    let bad = |why: &str| AppError::BadToken {
        message: format!("malformed JWT: {why}"),
    };
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("expected three dot-separated parts"));
    };
    if header.is_empty() || signature.is_empty() {
        return Err(bad("empty header or signature"));
    }
    let bytes = URL_SAFE
        .decode(payload)
        .or_else(|_| STANDARD.decode(payload))
        .map_err(|_| bad("payload is not base64"))?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| bad("payload is not JSON"))?;
    let number = |key: &str| value.get(key).and_then(|v| v.as_f64()).map(|f| f as i64);
    let exp = number("exp").ok_or_else(|| bad("no numeric exp claim"))?;
    Ok(Claims {
        exp,
        iat: number("iat"),
        sub: value.get("sub").and_then(Value::as_str).map(str::to_string),
        user_data: value.get("user_data").filter(|v| !v.is_null()).cloned(),
        sid: value.get("sid").and_then(Value::as_str).map(str::to_string),
    })
}

/// Builds an unsigned-looking token for tests of this module and others.
#[cfg(test)]
pub(crate) fn encode_for_test(claims: &Value) -> String {
    let e = general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.{}",
        e.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        e.encode(claims.to_string()),
        e.encode(b"sig")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_claims() {
        let t =
            encode_for_test(&json!({"exp": 200, "iat": 100, "sub": "u1", "user_data": {"a": 1}}));
        let c = decode(&t).unwrap();
        assert_eq!(
            (c.exp, c.iat, c.sub.as_deref()),
            (200, Some(100), Some("u1"))
        );
        assert_eq!(c.user_data, Some(json!({"a": 1})));
    }

    #[test]
    fn accepts_standard_alphabet_and_padding() {
        let payload = general_purpose::STANDARD.encode(json!({"exp": 1, "n": "??>>"}).to_string());
        let c = decode(&format!("aGVhZA.{payload}.c2ln")).unwrap();
        assert_eq!(c.exp, 1);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "a.b",
            "a.b.c.d",
            ".eyJleHAiOjF9.c",
            "a.!!!.c",
            "a.bm90IGpzb24.c",
        ] {
            assert!(
                matches!(decode(bad), Err(AppError::BadToken { .. })),
                "{bad}"
            );
        }
        let no_exp = encode_for_test(&json!({"iat": 1}));
        assert!(decode(&no_exp).is_err());
    }
}
