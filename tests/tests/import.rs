//! Users imported from another system (#24, SERVER.md "Importing users") logging in through the
//! core client: an App Services-shaped export (ObjectId ids, email/password with an argon2 hash
//! another implementation made, custom JWT, Google and Apple identities, custom data) imported
//! through the admin API; every login lands on the exported id, Google's and Apple's through
//! the test issuer on loopback; an account imported with `must_reset` is refused with
//! PasswordResetRequired.

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
