//! The stored session document, as read back from disk or a custom store: plain (JSON, every
//! schema version) and encrypted (magic, nonce, AES-256-GCM with the app id as AAD).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    sessionkit::fuzzing::session_document(data);
    sessionkit::fuzzing::encrypted_session_document(data);
});
