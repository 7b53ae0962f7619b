//! The loopback test issuer (Google, Apple, Facebook, OpenID Connect stand-in) as a process, for
//! the conformance runners of every language: prints `listening on <url>`, then serves until
//! its stdin closes or it is killed. See `sessionkit_tests::issuer` for its routes.

use std::io::{Read, Write};

#[tokio::main]
async fn main() {
    let issuer = sessionkit_tests::issuer::TestIssuer::start().await;
    println!("listening on {}", issuer.url);
    let _ = std::io::stdout().flush();
    // A runner that dies closes our stdin: we go with it instead of lingering.
    let _ = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
    })
    .await;
}
