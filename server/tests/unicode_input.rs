//! Unicode in emails and passwords (#22, item 11): invisible format characters are refused in
//! addresses, and a password is one password whatever its Unicode spelling (RFC 8265
//! OpaqueString). Runs on both back ends (SESSIONKIT_TEST_POSTGRES).

mod common;

use common::{T, adm, ar, start};
use serde_json::json;

const APP: &str = "auto-app"; // auto_confirm: a registration can log in at once

async fn register(t: &T, email: &str, password: &str) -> common::Resp {
    t.post(
        &format!("{}/auth/providers/local-userpass/register", ar(APP)),
        json!({"email": email, "password": password}),
        None,
    )
    .await
}

async fn login(t: &T, email: &str, password: &str) -> common::Resp {
    t.post(
        &format!("{}/auth/providers/local-userpass/login", ar(APP)),
        json!({"username": email, "password": password}),
        None,
    )
    .await
}

/// An address carrying a right-to-left override (or any other format character: isolates,
/// zero-width space and joiner, soft hyphen, BOM) looks like another address; it is refused at
/// registration and by the admin API, saying which characters and what to do.
#[tokio::test]
async fn an_email_with_format_characters_is_refused() {
    let t = start().await;
    let admin = t.admin().await;
    for email in [
        "ada\u{202E}moc.elpmaxe@example.com",
        "ada\u{2067}@example.com",
        "a\u{200B}da@example.com",
        "a\u{200D}da@example.com",
        "a\u{AD}da@example.com",
        "\u{FEFF}ada@example.com",
    ] {
        let r = register(&t, email, "correct-horse").await;
        r.err(400, "BadRequest");
        let msg = r.body["error"].as_str().unwrap();
        assert!(msg.contains("format characters"), "{email:?}: {msg}");
        t.post(
            &format!("{}/users", adm(APP)),
            json!({"email": email, "password": "correct-horse"}),
            Some(&admin),
        )
        .await
        .err(400, "BadRequest");
    }
    // Nothing was created under any of them, and the plain address is still free.
    register(&t, "ada@example.com", "correct-horse")
        .await
        .ok(201);
}

/// `café` typed as NFC (U+00E9) on one device and as NFD (e + U+0301) on another is one
/// password, both ways round; a no-break space is a space.
#[tokio::test]
async fn a_password_is_the_same_in_every_unicode_spelling() {
    let t = start().await;
    let nfc = "caf\u{e9}-au-lait";
    let nfd = "cafe\u{301}-au-lait";
    register(&t, "nfc@example.com", nfc).await.ok(201);
    login(&t, "nfc@example.com", nfd).await.ok(200);
    login(&t, "nfc@example.com", nfc).await.ok(200);
    register(&t, "nfd@example.com", nfd).await.ok(201);
    login(&t, "nfd@example.com", nfc).await.ok(200);
    login(&t, "nfd@example.com", nfd).await.ok(200);
    // A space is still part of the password, in either spelling; case is not folded.
    register(&t, "space@example.com", "open\u{A0}sesame")
        .await
        .ok(201);
    login(&t, "space@example.com", "open sesame").await.ok(200);
    login(&t, "space@example.com", "opensesame")
        .await
        .err(401, "InvalidPassword");
    login(&t, "nfc@example.com", "CAF\u{c9}-AU-LAIT")
        .await
        .err(401, "InvalidPassword");
}

/// A new password with a control character is refused (OpaqueString disallows them), and its
/// length is counted after preparation: `café!` is 5 characters in NFC, though 6 code points
/// in NFD, and too short.
#[tokio::test]
async fn new_passwords_are_checked_after_preparation() {
    let t = start().await;
    let r = register(&t, "ctl@example.com", "pass\nword").await;
    r.err(400, "BadRequest");
    assert!(
        r.body["error"]
            .as_str()
            .unwrap()
            .contains("control characters")
    );
    register(&t, "short@example.com", "cafe\u{301}!")
        .await
        .err(400, "BadRequest");
    register(&t, "six@example.com", "cafe\u{301}!!")
        .await
        .ok(201);
    login(&t, "six@example.com", "caf\u{e9}!!").await.ok(200);
}

/// A user the admin API creates has the address's canonical form, like a registration, so it
/// logs in with the address as typed (it was stored as given, and `Ada@Example.com` could not
/// log in at all).
#[tokio::test]
async fn an_admin_created_user_logs_in_like_a_registered_one() {
    let t = start().await;
    let admin = t.admin().await;
    t.post(
        &format!("{}/users", adm(APP)),
        json!({"email": "Ada@Example.com", "password": "cafe\u{301}-au-lait"}),
        Some(&admin),
    )
    .await
    .ok(201);
    login(&t, "ada@example.com", "caf\u{e9}-au-lait")
        .await
        .ok(200);
    login(&t, " ADA@example.com", "cafe\u{301}-au-lait")
        .await
        .ok(200);
    register(&t, "ada@example.com", "another-one")
        .await
        .err(409, "AccountNameInUse");
}
