//! The client's decoding of tokens from the server (access and refresh JWTs: base64url parts,
//! JSON claims, `exp`/`iat`): any bytes must give a token or an error, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(token) = std::str::from_utf8(data) {
        sessionkit::fuzzing::access_token(token);
    }
});
