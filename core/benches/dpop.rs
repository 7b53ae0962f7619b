//! DPoP figures for BENCHMARKS.md (#29): what one proof costs the SDK (one ES256 signature, the
//! JSON and base64 around it, a random `jti`), with and without an access token's `ath`.
//! Run: `cargo bench -p sessionkit --bench dpop`.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use sessionkit::DpopKey;

fn proofs(c: &mut Criterion) {
    let key = DpopKey::generate().expect("a key");
    let url = "https://sessionkit.example.com/api/client/v2.0/auth/session";
    let token = "e".repeat(600);
    c.bench_function("dpop/proof (refresh: no ath)", |b| {
        b.iter(|| key.proof("POST", black_box(url), None, None, 1_700_000_000))
    });
    c.bench_function("dpop/proof (a call: ath of a 600-byte access token)", |b| {
        b.iter(|| key.proof("GET", black_box(url), Some(&token), None, 1_700_000_000))
    });
    c.bench_function("dpop/key generation", |b| b.iter(DpopKey::generate));
}

criterion_group!(benches, proofs);
criterion_main!(benches);
