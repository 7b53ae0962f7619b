//! Users imported from another system (#24, SERVER.md "Importing users") logging in through the
//! core client: an App Services-shaped export (ObjectId ids, email/password with an argon2 hash
//! another implementation made, custom JWT, Google and Apple identities, custom data) imported
//! through the admin API; every login lands on the exported id, Google's and Apple's through
//! the test issuer on loopback; an account imported with `must_reset` is refused with
//! PasswordResetRequired. Every legacy hash scheme, with hashes other implementations made
//! (server/tests/fixtures/legacy-hashes), logs in through `App::log_in`, is upgraded to the
//! server's argon2 in the store, and a wrong password is refused exactly as an unknown email is.

use serde_json::{Value, json};
use sessionkit::{AppError, Credentials};
use sessionkit_tests::issuer::TestIssuer;
use sessionkit_tests::{ServerOptions, TestServer, custom_jwt};

const GOOGLE_ISS: &str = "https://accounts.google.com";
const GOOGLE_CLIENT: &str = "ios-client.apps.googleusercontent.com";
const APPLE_ISS: &str = "https://appleid.apple.com";
const APPLE_CLIENT: &str = "com.example.app";

// argon2-cffi's PasswordHasher() (server/tests/fixtures/legacy-hashes/vectors.json).
const ARGON2_PASSWORD: &str = "correct horse battery staple";
const ARGON2_HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$jBN4emKrU7ZFsqrx10K8Gg$r3eFJN0Qm7YpLdVMVYUU3+6T1cnAgaAXQeOhklFU+44";

const ADA: &str = "5f1b2c3d4e5f60718293a4b5";
const BOB: &str = "5f1b2c3d4e5f60718293a4c0";

fn id_token(issuer: &TestIssuer, iss: &str, aud: &str, sub: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    issuer.mint(&json!({"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + 3600}))
}

fn refusal(r: Result<sessionkit::User, AppError>) -> (String, u16) {
    match r {
        Err(AppError::Service {
            code, http_status, ..
        }) => (code, http_status),
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_imported_export_logs_in_to_the_exported_ids_with_every_provider() {
    let issuer = TestIssuer::start().await;
    let url = &issuer.url;
    let server = TestServer::with(ServerOptions {
        extra_providers: format!(
            r#"
[app.providers.oauth2-google]
client_ids = ["{GOOGLE_CLIENT}"]
jwks_url = "{url}/jwks"
[app.providers.oauth2-apple]
client_ids = ["{APPLE_CLIENT}"]
jwks_url = "{url}/jwks"
"#
        ),
        ..ServerOptions::default()
    })
    .await;
    let lines = json!([
        {
            "id": ADA,
            "created_at": "2021-06-01T12:00:00Z",
            "custom_data": {"plan": "pro"},
            "identities": [
                {"provider_type": "local-userpass", "id": "5f1b2c3d4e5f60718293a4b6",
                 "profile_data": {"email": "ada@example.com"}, "password_hash": ARGON2_HASH},
                {"provider_type": "custom-token", "id": "ada-sub"},
                {"provider_type": "oauth2-google", "id": "g-ada",
                 "profile_data": {"email": "ada@gmail.example", "name": "Ada"}}
            ]
        },
        {
            "id": BOB,
            "identities": [
                {"provider_type": "oauth2-apple", "id": "001234.bob"},
                {"provider_type": "local-userpass", "id": "5f1b2c3d4e5f60718293a4c1",
                 "profile_data": {"email": "bob@example.com"}, "must_reset": true}
            ]
        }
    ]);
    let (status, report) = server
        .admin(reqwest::Method::POST, "/users/import", Some(lines))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(
        (&report["created"], &report["refused"]),
        (&json!(2), &json!(0)),
        "{report}"
    );

    let (app, _) = server.app();
    let ada = app
        .log_in(Credentials::email_password(
            "ada@example.com",
            ARGON2_PASSWORD,
        ))
        .await
        .unwrap();
    assert_eq!(ada.id(), ADA);
    let custom: Value = serde_json::from_str(&ada.custom_data_json().unwrap()).unwrap();
    assert_eq!(custom, json!({"plan": "pro"}));
    let by_jwt = app
        .log_in(Credentials::jwt(custom_jwt("ada-sub", Value::Null)))
        .await
        .unwrap();
    assert_eq!(by_jwt.id(), ADA);
    let by_google = app
        .log_in(Credentials::google_id_token(id_token(
            &issuer,
            GOOGLE_ISS,
            GOOGLE_CLIENT,
            "g-ada",
        )))
        .await
        .unwrap();
    assert_eq!(by_google.id(), ADA);
    let by_apple = app
        .log_in(Credentials::apple(id_token(
            &issuer,
            APPLE_ISS,
            APPLE_CLIENT,
            "001234.bob",
        )))
        .await
        .unwrap();
    assert_eq!(by_apple.id(), BOB);
    let (code, status) = refusal(
        app.log_in(Credentials::email_password(
            "bob@example.com",
            "any-password",
        ))
        .await,
    );
    assert_eq!((code.as_str(), status), ("PasswordResetRequired", 401));
    // The upgraded argon2 hash keeps working.
    let again = app
        .log_in(Credentials::email_password(
            "ada@example.com",
            ARGON2_PASSWORD,
        ))
        .await
        .unwrap();
    assert_eq!(again.id(), ADA);
    server.stop().await;
}

fn vectors() -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../server/tests/fixtures/legacy-hashes/vectors.json"
    ))
    .unwrap();
    let doc: Value = serde_json::from_str(&text).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

/// The `password_hash` each imported user has in the store now, by email, read back through
/// the server's own export (a second handle on its SQLite file or PostgreSQL database).
async fn stored_hashes(server: &TestServer) -> std::collections::HashMap<String, String> {
    let store = sessionkit_server::store::open(server.server.config())
        .await
        .unwrap();
    let mut out = Vec::new();
    sessionkit_server::export::run(store.as_ref(), &server.app_id, &mut out)
        .await
        .unwrap();
    String::from_utf8(out)
        .unwrap()
        .lines()
        .filter_map(|l| {
            let line: Value = serde_json::from_str(l).unwrap();
            let identity = line["identities"]
                .as_array()?
                .iter()
                .find(|i| i["provider_type"] == "local-userpass")?
                .clone();
            Some((
                identity["profile_data"]["email"].as_str()?.to_owned(),
                identity["password_hash"].as_str()?.to_owned(),
            ))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_legacy_scheme_logs_in_through_the_sdk_then_is_upgraded() {
    let server = TestServer::with(ServerOptions::default()).await;
    let vectors = vectors();
    let mut lines = Vec::new();
    for (i, v) in vectors.iter().enumerate() {
        let mut identity = json!({
            "provider_type": "local-userpass",
            "id": format!("legacy-identity-{i}"),
            "profile_data": {"email": format!("legacy{i}@example.com")},
        });
        if v["scheme"] == "firebase-scrypt" {
            // A project's parameters hold for the lines after them (SERVER.md "Importing users").
            lines.push(json!({"firebase_params": v["project"]}));
            identity["firebase_scrypt"] = json!({"hash": v["hash"], "salt": v["salt"]});
        } else {
            identity["password_hash"] = v["hash"].clone();
        }
        lines.push(json!({"id": format!("legacy-user-{i}"), "identities": [identity]}));
    }
    let (status, report) = server
        .admin(reqwest::Method::POST, "/users/import", Some(json!(lines)))
        .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["created"], json!(vectors.len()), "{report}");
    let imported = stored_hashes(&server).await;
    assert_eq!(imported.len(), vectors.len(), "{imported:?}");

    let (app, _) = server.app();
    // What an email nobody has gets: every wrong password below must be refused the same way.
    let unknown = app
        .log_in(Credentials::email_password(
            "nobody@example.com",
            "any-password",
        ))
        .await
        .unwrap_err()
        .to_string();
    assert!(unknown.contains("InvalidPassword"), "{unknown}");

    for (i, v) in vectors.iter().enumerate() {
        let made_by = v["made_by"].as_str().unwrap();
        let email = format!("legacy{i}@example.com");
        let password = v["password"].as_str().unwrap();
        let legacy = &imported[&email];
        // Kept in its own scheme until the first login (a Firebase hash in its PHC-like form,
        // passlib's in standard PHC).
        let scheme_of = |hash: &str| hash.split('$').nth(1).unwrap_or_default().to_owned();
        let expected = match v["scheme"].as_str().unwrap() {
            "firebase-scrypt" => "firebase-scrypt".to_owned(),
            _ => scheme_of(v["hash"].as_str().unwrap()),
        };
        assert_eq!(scheme_of(legacy), expected, "{made_by}: {legacy}");

        // Changed in front, since bcrypt reads only the first 72 bytes.
        let wrong = app
            .log_in(Credentials::email_password(&email, format!("!x{password}")))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(wrong, unknown, "{made_by}: refused as an unknown email is");

        let user = app
            .log_in(Credentials::email_password(&email, password))
            .await
            .unwrap_or_else(|e| panic!("{made_by}: {e}"));
        assert_eq!(user.id(), format!("legacy-user-{i}"), "{made_by}");
        let upgraded = stored_hashes(&server).await[&email].clone();
        assert!(
            upgraded.starts_with("$argon2id$") && upgraded != *legacy,
            "{made_by}: the server's own hash after the first login, not {upgraded}"
        );
        user.log_out().await.unwrap();

        let again = app
            .log_in(Credentials::email_password(&email, password))
            .await
            .unwrap_or_else(|e| panic!("{made_by}, upgraded: {e}"));
        assert_eq!(again.id(), format!("legacy-user-{i}"), "{made_by}");
        assert_eq!(stored_hashes(&server).await[&email], upgraded, "{made_by}");
        let wrong = app
            .log_in(Credentials::email_password(&email, format!("!x{password}")))
            .await
            .unwrap_err()
            .to_string();
        assert_eq!(wrong, unknown, "{made_by}, upgraded: refused alike");
    }
    server.stop().await;
}
