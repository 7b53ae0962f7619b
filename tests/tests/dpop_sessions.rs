//! The SDK's DPoP-bound sessions (#29, `AppConfig::dpop`) against the real server: the key made
//! at login and kept with the session, proofs on every request, nonce challenges answered, a
//! stolen token useless, and the device never logged out by an attacker's attempt.

use serde_json::{Value, json};
use sessionkit::{App, AppConfig, AppError, Credentials, StorageConfig, UserState};
use sessionkit_tests::{
    APP_ID, ServerOptions, TestServer, email_user, jwt_payload, temp_dir, unique_email,
};

/// The claims of an access token.
fn claims(token: &str) -> Value {
    jwt_payload(token).expect("a JWT")
}

async fn server(dpop: &str) -> TestServer {
    TestServer::with(ServerOptions {
        dpop: dpop.into(),
        refresh_token_rotation: true,
        ..Default::default()
    })
    .await
}

fn app(server: &TestServer, dpop: bool) -> App {
    let (mut config, _clock) = server.config();
    config.dpop = dpop;
    App::new(config).unwrap()
}

#[tokio::test]
async fn on_a_required_app_every_sdk_request_carries_a_proof_and_stolen_tokens_are_useless() {
    let server = server("required").await;
    let base = server.base_url();
    let app = app(&server, true);
    let user = email_user(&app, "dpop").await;

    // Bound: the access token's cnf.jkt is the key's thumbprint.
    let thumbprint = user.dpop_thumbprint().expect("a bound session");
    let access = user.access_token().unwrap();
    assert_eq!(claims(&access)["cnf"]["jkt"], thumbprint.as_str());

    // Refresh (with rotation), a function call, a request, the profile, sessions, API keys.
    user.refresh_access_token().await.unwrap();
    assert_ne!(user.access_token().unwrap(), access);
    let sum: Value = serde_json::from_str(
        &user
            .call_function("sum", &json!([2, 3]).to_string())
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(sum, json!(5));
    let r = user
        .request("GET", "/api/client/v2.0/auth/profile", None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    user.refresh_profile().await.unwrap();
    assert_eq!(user.sessions().await.unwrap().len(), 1);
    let key = user.api_keys().create("k").await.unwrap();
    user.api_keys().delete(&key.id).await.unwrap();

    // The tokens alone, replayed by raw HTTP: refused, with the error of its own.
    let refresh = user.refresh_token().unwrap();
    let (status, body) = server
        .post_raw("/api/client/v2.0/auth/session", Some(&refresh), None)
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error_code"], "InvalidDPoPProof", "{body}");
    let http = reqwest::Client::new();
    let r = http
        .delete(format!("{base}/api/client/v2.0/auth/session"))
        .bearer_auth(&refresh)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "an attacker cannot log the device out");
    let access = user.access_token().unwrap();
    for scheme in ["Bearer", "DPoP"] {
        let status = server
            .profile_status(&format!("{scheme} {access}"), None)
            .await;
        assert_eq!(status, 401, "{scheme}");
    }

    // The device goes on: same session, refreshes, calls.
    assert_eq!(user.state(), UserState::LoggedIn);
    assert_eq!(user.refresh_token().unwrap(), refresh);
    user.refresh_access_token().await.unwrap();
    user.call_function("sum", "[1]").await.unwrap();

    // A proof for the app's own API (the hooks' path), checked here by the server's profile
    // route as an app's backend would check it.
    let access = user.valid_access_token(None).await.unwrap();
    let url = format!("{base}/api/client/v2.0/auth/profile");
    let proof = user
        .dpop_proof("GET", &url, &access, None)
        .unwrap()
        .expect("bound");
    let status = server
        .profile_status(&format!("DPoP {access}"), Some(&proof))
        .await;
    assert_eq!(status, 200);

    // The logout's revocation carries a proof too: the other device's list shrinks.
    let other = app
        .log_in(Credentials::Anonymous { reuse: false })
        .await
        .unwrap();
    other.log_out().await.unwrap();
    let email_second_device = {
        let second = self::app(&server, true);
        let profile = user.profile();
        let email = profile.email.clone().unwrap();
        second
            .log_in(Credentials::email_password(&email, "password-123"))
            .await
            .unwrap()
    };
    assert_eq!(user.sessions().await.unwrap().len(), 2);
    email_second_device.log_out().await.unwrap();
    assert_eq!(user.sessions().await.unwrap().len(), 1);
    user.log_out().await.unwrap();
    assert!(
        user.dpop_thumbprint().is_none(),
        "the key goes with the session"
    );
    server.stop().await;
}

#[tokio::test]
async fn a_required_app_refuses_a_client_without_dpop_with_an_error_that_says_so() {
    let server = server("required").await;
    let app = app(&server, false);
    let err = app
        .log_in(Credentials::Anonymous { reuse: false })
        .await
        .unwrap_err();
    assert_eq!(err.server_code(), Some("InvalidDPoPProof"), "{err:?}");
    server.stop().await;
}

#[tokio::test]
async fn optional_binds_the_clients_that_ask_beside_bearer_clients_and_off_binds_nothing() {
    let server = server("optional").await;
    let bound = app(&server, true);
    let plain = app(&server, false);
    let b = email_user(&bound, "dpop").await;
    let p = email_user(&plain, "dpop").await;
    assert!(b.dpop_thumbprint().is_some());
    assert!(p.dpop_thumbprint().is_none());
    assert!(claims(&p.access_token().unwrap()).get("cnf").is_none());
    let access = p.access_token().unwrap();
    assert_eq!(
        p.dpop_proof("GET", "https://api.example/", &access, None),
        Ok(None)
    );
    for user in [&b, &p] {
        user.refresh_access_token().await.unwrap();
        user.call_function("sum", "[1, 2]").await.unwrap();
        user.refresh_profile().await.unwrap();
    }
    server.stop().await;

    let server = TestServer::with(ServerOptions {
        dpop: "off".into(),
        ..Default::default()
    })
    .await;
    let asked = app(&server, true);
    let user = email_user(&asked, "dpop").await;
    assert!(
        user.dpop_thumbprint().is_none(),
        "the server answered bearer tokens"
    );
    user.refresh_access_token().await.unwrap();
    user.call_function("sum", "[1]").await.unwrap();
    server.stop().await;
}

#[tokio::test]
async fn a_clock_the_server_refuses_is_answered_with_its_nonce_in_one_retry() {
    let server = server("required").await;
    let app = app(&server, true);
    let user = email_user(&app, "dpop").await;
    // The server's clock jumps 10 minutes ahead: every proof's iat is now too old for it, and
    // it asks for its nonce; the SDK sends each request once more with it.
    server.advance_server_clock(600);
    let before = server.refresh_count();
    user.refresh_access_token().await.unwrap();
    assert_eq!(
        server.refresh_count() - before,
        2,
        "one challenge, one retry"
    );
    user.call_function("sum", "[1]").await.unwrap();
    // The nonce is kept for the next proofs: no challenge this time.
    let before = server.refresh_count();
    user.refresh_access_token().await.unwrap();
    assert_eq!(server.refresh_count() - before, 1);
    assert_eq!(user.state(), UserState::LoggedIn);
    server.stop().await;
}

#[tokio::test]
async fn the_key_is_kept_with_the_session_encrypted_and_survives_a_restart() {
    let server = server("required").await;
    let dir = temp_dir("dpop-store");
    let file_app = |key: Option<Vec<u8>>| {
        let mut config = AppConfig::new(APP_ID, server.base_url());
        config.storage = StorageConfig::File {
            dir: dir.clone(),
            encryption_key: key,
        };
        config.dpop = true;
        App::new(config).unwrap()
    };
    let key = vec![7u8; 32];
    let (id, thumbprint) = {
        let app = file_app(Some(key.clone()));
        let user = email_user(&app, "dpop").await;
        (user.id(), user.dpop_thumbprint().unwrap())
    };
    // Encrypted with the store: the document's bytes do not hold the key's JWK or PKCS#8.
    let file = sessionkit::FileStore::new(&dir, APP_ID, None)
        .unwrap()
        .path()
        .to_path_buf();
    let bytes = std::fs::read(&file).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains("dpop_key"));

    let app = file_app(Some(key.clone()));
    let user = app.current_user().unwrap();
    assert_eq!(user.id(), id);
    assert_eq!(user.dpop_thumbprint().unwrap(), thumbprint);
    user.refresh_access_token().await.unwrap();
    user.call_function("sum", "[1]").await.unwrap();
    user.log_out().await.unwrap();
    drop(app);
    let app = file_app(Some(key));
    assert!(app.all_users()[0].dpop_thumbprint().is_none());
    server.stop().await;
}

#[tokio::test]
async fn a_damaged_stored_key_leaves_the_user_logged_out_not_stuck() {
    let server = server("required").await;
    let dir = temp_dir("dpop-damaged");
    let file_app = || {
        let mut config = AppConfig::new(APP_ID, server.base_url());
        config.storage = StorageConfig::File {
            dir: dir.clone(),
            encryption_key: None,
        };
        config.dpop = true;
        App::new(config).unwrap()
    };
    {
        let app = file_app();
        email_user(&app, "dpop").await;
    }
    let file = sessionkit::FileStore::new(&dir, APP_ID, None)
        .unwrap()
        .path()
        .to_path_buf();
    let mut doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert!(
        doc["users"][0]["dpop_key"].is_string(),
        "kept with the session"
    );
    doc["users"][0]["dpop_key"] = json!("AAAA");
    std::fs::write(&file, doc.to_string()).unwrap();
    let app = file_app();
    let user = &app.all_users()[0];
    assert_eq!(user.state(), UserState::LoggedOut);
    assert!(user.refresh_token().is_none());
    server.stop().await;
}

/// A key store as the platforms' are: keys by alias, SPKI public keys, DER signatures (here
/// p256's, a third ECDSA implementation beside ring and jsonwebtoken). `locked` makes it refuse
/// to sign, as a keystore does while the device is locked.
#[derive(Default)]
struct Keystore {
    keys: std::sync::Mutex<Vec<(String, p256::ecdsa::SigningKey)>>,
    locked: std::sync::atomic::AtomicBool,
}

impl sessionkit::DpopSigner for Keystore {
    fn create_key(&self) -> Result<String, sessionkit::DpopKeyError> {
        let mut keys = self.keys.lock().unwrap();
        let alias = format!("sessionkit-{}", keys.len());
        let key = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        keys.push((alias.clone(), key));
        Ok(alias)
    }
    fn public_key(&self, handle: &str) -> Result<Vec<u8>, sessionkit::DpopKeyError> {
        use p256::pkcs8::EncodePublicKey as _;
        let keys = self.keys.lock().unwrap();
        let (_, key) = keys.iter().find(|(a, _)| a == handle).unwrap();
        Ok(key
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .as_bytes()
            .to_vec())
    }
    fn sign(&self, handle: &str, message: &[u8]) -> Result<Vec<u8>, sessionkit::DpopKeyError> {
        use p256::ecdsa::signature::Signer as _;
        if self.locked.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(sessionkit::DpopKeyError::Signer {
                message: "the device is locked".into(),
            });
        }
        let keys = self.keys.lock().unwrap();
        let (_, key) = keys.iter().find(|(a, _)| a == handle).ok_or_else(|| {
            sessionkit::DpopKeyError::Signer {
                message: format!("no key {handle}"),
            }
        })?;
        let signature: p256::ecdsa::Signature = key.sign(message);
        Ok(signature.to_der().as_bytes().to_vec())
    }
    fn delete_key(&self, handle: &str) -> Result<(), sessionkit::DpopKeyError> {
        self.keys.lock().unwrap().retain(|(a, _)| a != handle);
        Ok(())
    }
}

#[tokio::test]
async fn a_signer_holds_the_key_and_the_session_keeps_only_its_handle() {
    let server = server("required").await;
    let dir = temp_dir("dpop-signer");
    let keystore = std::sync::Arc::new(Keystore::default());
    let file_app = |signer: Option<std::sync::Arc<Keystore>>| {
        let mut config = AppConfig::new(APP_ID, server.base_url());
        config.storage = StorageConfig::File {
            dir: dir.clone(),
            encryption_key: None,
        };
        config.dpop = true;
        config.dpop_signer = signer.map(|s| s as std::sync::Arc<dyn sessionkit::DpopSigner>);
        App::new(config).unwrap()
    };
    let thumbprint = {
        let app = file_app(Some(keystore.clone()));
        let user = email_user(&app, "dpop").await;
        let thumbprint = user.dpop_thumbprint().unwrap();
        assert_eq!(
            claims(&user.access_token().unwrap())["cnf"]["jkt"],
            thumbprint.as_str()
        );
        user.refresh_access_token().await.unwrap();
        user.call_function("sum", "[1]").await.unwrap();
        thumbprint
    };
    // The document has the handle and the public key, no private key.
    let file = sessionkit::FileStore::new(&dir, APP_ID, None)
        .unwrap()
        .path()
        .to_path_buf();
    let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    let stored = &doc["users"][0];
    assert!(stored.get("dpop_key").is_none(), "{stored}");
    assert_eq!(stored["dpop_signer_key"]["handle"], "sessionkit-0");

    // Restored with the signer: the same key. A locked keystore fails the request and keeps
    // the session; unlocked, it goes on.
    let app = file_app(Some(keystore.clone()));
    let user = app.current_user().unwrap();
    assert_eq!(user.dpop_thumbprint().unwrap(), thumbprint);
    keystore
        .locked
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let err = user.refresh_access_token().await.unwrap_err();
    assert!(
        matches!(&err, AppError::Storage { message } if message.contains("locked")),
        "{err:?}"
    );
    assert_eq!(user.state(), UserState::LoggedIn);
    keystore
        .locked
        .store(false, std::sync::atomic::Ordering::SeqCst);
    user.refresh_access_token().await.unwrap();

    // An App without the signer keeps the session as it is: its requests fail saying what to
    // do, and nothing in the shared document changes (found by a fresh user's trial, #29).
    drop(app);
    let without = file_app(None);
    let user = without.current_user().unwrap();
    assert_eq!(user.state(), UserState::LoggedIn);
    let err = user.refresh_access_token().await.unwrap_err();
    assert!(
        matches!(&err, AppError::Storage { message } if message.contains("dpop_signer")),
        "{err:?}"
    );
    drop(without);
    let doc: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
    assert_eq!(doc["users"][0]["dpop_signer_key"]["handle"], "sessionkit-0");

    // Opened with the signer again, the same session goes on, and a logout revokes it with a
    // proof, then deletes the key from the keystore.
    let app = file_app(Some(keystore.clone()));
    let user = app.current_user().unwrap();
    assert_eq!(user.dpop_thumbprint().unwrap(), thumbprint);
    user.refresh_access_token().await.unwrap();
    user.log_out().await.unwrap();
    assert!(keystore.keys.lock().unwrap().is_empty());
    server.stop().await;
}

#[tokio::test]
async fn a_link_by_a_bound_user_keeps_the_session_bound_to_its_key() {
    let server = server("required").await;
    let app = app(&server, true);
    let user = app
        .log_in(Credentials::Anonymous { reuse: false })
        .await
        .unwrap();
    let thumbprint = user.dpop_thumbprint().unwrap();
    let email = unique_email("dpop-link");
    app.email_password_auth()
        .register_user(&email, "password-123")
        .await
        .unwrap();
    user.link_credentials(Credentials::email_password(&email, "password-123"))
        .await
        .unwrap();
    // The link's new access token carries the same key's thumbprint, and works with its proofs.
    assert_eq!(
        claims(&user.access_token().unwrap())["cnf"]["jkt"],
        thumbprint.as_str()
    );
    assert_eq!(user.dpop_thumbprint().unwrap(), thumbprint);
    user.call_function("sum", "[1]").await.unwrap();
    user.refresh_access_token().await.unwrap();
    server.stop().await;
}

/// An app that turns `required` on while bearer sessions are out there: a client with DPoP on
/// binds each of them at its next refresh (to a new key) instead of losing it; one without
/// keeps its session but is refused, with the error of its own.
#[tokio::test]
async fn turning_required_on_binds_an_existing_bearer_session_at_its_next_refresh() {
    let server = server("optional").await;
    let dir = temp_dir("dpop-upgrade");
    let file_app = |base: String, dpop: bool| {
        let mut config = AppConfig::new(APP_ID, base);
        config.storage = StorageConfig::File {
            dir: dir.clone(),
            encryption_key: None,
        };
        config.dpop = dpop;
        App::new(config).unwrap()
    };
    let id = {
        let before = file_app(server.base_url(), false);
        let user = email_user(&before, "dpop-upgrade").await;
        assert!(user.dpop_thumbprint().is_none());
        user.id()
    };
    let server = server
        .restart_with(ServerOptions {
            dpop: "required".into(),
            refresh_token_rotation: true,
            ..Default::default()
        })
        .await;

    // Without DPoP: refused, session kept.
    {
        let plain = file_app(server.base_url(), false);
        let user = plain.current_user().unwrap();
        let err = user.refresh_access_token().await.unwrap_err();
        assert_eq!(err.server_code(), Some("InvalidDPoPProof"), "{err:?}");
        assert_eq!(user.state(), UserState::LoggedIn);
    }
    // With DPoP on: a call is refused for its old token, the refresh binds the session to a new
    // key, and the call goes through with the new token and a proof.
    let app = file_app(server.base_url(), true);
    let user = app.current_user().unwrap();
    assert_eq!(user.id(), id);
    let sum: Value =
        serde_json::from_str(&user.call_function("sum", "[2, 5]").await.unwrap()).unwrap();
    assert_eq!(sum, json!(7));
    let thumbprint = user.dpop_thumbprint().expect("bound at the refresh");
    assert_eq!(
        claims(&user.access_token().unwrap())["cnf"]["jkt"],
        thumbprint.as_str()
    );
    user.refresh_access_token().await.unwrap();
    drop(app);
    // Kept with the session: the next App (DPoP config or not) signs with it.
    let again = file_app(server.base_url(), false);
    let user = again.current_user().unwrap();
    assert_eq!(user.dpop_thumbprint().unwrap(), thumbprint);
    user.refresh_access_token().await.unwrap();
    server.stop().await;
}
