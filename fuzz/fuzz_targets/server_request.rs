//! What the server reads from a request before anything else: the JSON body, the bearer token
//! (issuer peeked before the signature is checked, then verified), and its config file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use sessionkit_server::{Config, routes, tokens};

fuzz_target!(|data: &[u8]| {
    let _ = routes::json_object(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tokens::peek_issuer(text);
        let _ = tokens::verify(text, b"fuzz-secret-fuzz-secret-fuzz-secret", 1_800_000_000);
        let _ = Config::from_toml_str(text);
    }
});
