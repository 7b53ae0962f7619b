//! Social and OpenID Connect sign-in end to end: the core client against sessionkit-server,
//! which verifies what it is given against a test issuer on loopback (no internet).

use jsonwebtoken::Algorithm;
use serde_json::{Value, json};
use sessionkit::{AppError, Credentials, UserState};
use sessionkit_tests::issuer::{FacebookUser, TestIssuer};
use sessionkit_tests::{ServerOptions, TestServer};

const GOOGLE_ISS: &str = "https://accounts.google.com";
const GOOGLE_WEB: &str = "web-client.apps.googleusercontent.com";
const GOOGLE_IOS: &str = "ios-client.apps.googleusercontent.com";
const APPLE_ISS: &str = "https://appleid.apple.com";
const APPLE_CLIENT: &str = "com.example.app";

fn providers(issuer: &TestIssuer) -> String {
    let url = &issuer.url;
    format!(
        r#"
[app.providers.oauth2-google]
client_ids = ["{GOOGLE_WEB}", "{GOOGLE_IOS}"]
client_secret = "google-client-secret"
jwks_url = "{url}/jwks"
token_url = "{url}/token"
[app.providers.oauth2-apple]
client_ids = ["{APPLE_CLIENT}"]
jwks_url = "{url}/jwks"
[app.providers.oauth2-facebook]
app_id = "fb-app"
app_secret = "fb-secret"
graph_url = "{url}"
[app.providers.oidc.corp]
issuer = "{url}"
audiences = ["corp-client"]
"#
    )
}

async fn start() -> (TestIssuer, TestServer) {
    let issuer = TestIssuer::start().await;
    let server = TestServer::with(ServerOptions {
        extra_providers: providers(&issuer),
        ..ServerOptions::default()
    })
    .await;
    (issuer, server)
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// ID-token claims valid for an hour, plus `extra`.
fn claims(iss: &str, aud: &str, sub: &str, extra: Value) -> Value {
    let t = now();
    let mut c = json!({"iss": iss, "aud": aud, "sub": sub, "iat": t, "exp": t + 3600});
    c.as_object_mut()
        .unwrap()
        .extend(extra.as_object().cloned().unwrap_or_default());
    c
}

fn google(sub: &str, extra: Value) -> Value {
    claims(GOOGLE_ISS, GOOGLE_IOS, sub, extra)
}

/// The server's error code and HTTP status, or a panic naming what came instead.
fn refusal(r: Result<sessionkit::User, AppError>) -> (String, u16) {
    match r {
        Err(AppError::Service {
            code, http_status, ..
        }) => (code, http_status),
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_id_token_logs_in_and_a_returning_user_is_the_same_user() {
    let (issuer, server) = start().await;
    let (app, _) = server.app();
    let token = issuer.mint(&google(
        "g-123",
        json!({"email": "ada@example.com", "name": "Ada", "given_name": "Ada"}),
    ));
    let user = app
        .log_in(Credentials::google_id_token(token))
        .await
        .unwrap();
    let ids = user.identities();
    assert_eq!(ids.len(), 1);
    assert_eq!(
        (ids[0].provider_type.as_str(), ids[0].id.as_str()),
        ("oauth2-google", "g-123")
    );
    assert_eq!(user.profile().email.as_deref(), Some("ada@example.com"));
    assert_eq!(user.profile().first_name.as_deref(), Some("Ada"));
    user.log_out().await.unwrap();

    // Another client id of the same app (the web one) and an ES256 key: the same user.
    let again = issuer.mint_with(
        Algorithm::ES256,
        &claims(GOOGLE_ISS, GOOGLE_WEB, "g-123", json!({})),
    );
    let back = app
        .log_in(Credentials::google_id_token(again))
        .await
        .unwrap();
    assert_eq!(back.id(), user.id());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_auth_code_is_exchanged_once() {
    let (issuer, server) = start().await;
    let (app, _) = server.app();
    issuer.add_code(
        "code-1",
        &claims(GOOGLE_ISS, GOOGLE_WEB, "g-code", json!({})),
    );
    let user = app
        .log_in(Credentials::google_auth_code("code-1"))
        .await
        .unwrap();
    assert_eq!(user.identities()[0].id, "g-code");
    // The issuer answers invalid_grant for a used code: bad credentials, not an outage.
    let (code, status) = refusal(app.log_in(Credentials::google_auth_code("code-1")).await);
    assert_eq!((code.as_str(), status), ("AuthError", 401));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apple_login_without_email_later_resolves_to_the_same_user() {
    let (issuer, server) = start().await;
    let (app, _) = server.app();
    let first = issuer.mint(&claims(
        APPLE_ISS,
        APPLE_CLIENT,
        "apple-001",
        json!({"email": "x7@privaterelay.appleid.com", "is_private_email": true}),
    ));
    let user = app.log_in(Credentials::apple(first)).await.unwrap();
    assert_eq!(
        user.profile().email.as_deref(),
        Some("x7@privaterelay.appleid.com")
    );
    user.log_out().await.unwrap();
    let later = issuer.mint(&claims(APPLE_ISS, APPLE_CLIENT, "apple-001", json!({})));
    let back = app.log_in(Credentials::apple(later)).await.unwrap();
    assert_eq!(back.id(), user.id());
    // What Apple sent once is kept.
    assert_eq!(
        back.profile().email.as_deref(),
        Some("x7@privaterelay.appleid.com")
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openid_connect_issuer_by_name_is_found_by_discovery() {
    let (issuer, server) = start().await;
    let (app, _) = server.app();
    let token = issuer.mint_with(
        Algorithm::ES256,
        &claims(
            &issuer.url,
            "corp-client",
            "emp-42",
            json!({"name": "Grace"}),
        ),
    );
    let user = app.log_in(Credentials::oidc("corp", token)).await.unwrap();
    assert_eq!(user.identities()[0].provider_type, "oidc-corp");
    assert_eq!(user.profile().name.as_deref(), Some("Grace"));
    // An issuer the server does not know.
    let other = issuer.mint(&claims(&issuer.url, "corp-client", "emp-42", json!({})));
    let (code, status) = refusal(app.log_in(Credentials::oidc("nope", other)).await);
    assert_eq!((code.as_str(), status), ("AuthProviderNotFound", 404));
    assert!(matches!(
        app.log_in(Credentials::oidc("../x", "t")).await,
        Err(AppError::InvalidArgument { .. })
    ));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn facebook_tokens_are_checked_with_the_graph_api() {
    let (issuer, server) = start().await;
    let (app, _) = server.app();
    issuer.add_facebook_token(
        "fb-token",
        FacebookUser {
            app_id: "fb-app".into(),
            user_id: "fb-77".into(),
            name: "Linus".into(),
            email: Some("linus@example.com".into()),
        },
    );
    issuer.add_facebook_token(
        "other-app-token",
        FacebookUser {
            app_id: "someone-elses-app".into(),
            user_id: "fb-78".into(),
            name: "Eve".into(),
            email: None,
        },
    );
    let user = app.log_in(Credentials::facebook("fb-token")).await.unwrap();
    assert_eq!(user.identities()[0].id, "fb-77");
    assert_eq!(user.profile().name.as_deref(), Some("Linus"));
    assert_eq!(user.profile().email.as_deref(), Some("linus@example.com"));
    for bad in ["unknown-token", "other-app-token"] {
        let (code, status) = refusal(app.log_in(Credentials::facebook(bad)).await);
        assert_eq!((code.as_str(), status), ("AuthError", 401), "{bad}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_misaddressed_id_tokens_are_refused() {
    let (issuer, server) = start().await;
    let (app, _) = server.app();
    let t = now();
    let good = issuer.mint(&google("g-1", json!({})));
    let mut tampered = good.clone();
    // Flip a character of the signature.
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'A' { 'B' } else { 'A' });
    let cases: Vec<(&str, String)> = vec![
        (
            "wrong aud",
            issuer.mint(&claims(GOOGLE_ISS, "someone-else", "g-1", json!({}))),
        ),
        (
            "wrong iss",
            issuer.mint(&claims(
                "https://evil.example",
                GOOGLE_IOS,
                "g-1",
                json!({}),
            )),
        ),
        (
            "expired",
            issuer.mint(&google("g-1", json!({"iat": t - 7200, "exp": t - 3600}))),
        ),
        (
            "nbf in the future",
            issuer.mint(&google("g-1", json!({"nbf": t + 3600}))),
        ),
        (
            "iat in the future",
            issuer.mint(&google("g-1", json!({"iat": t + 3600}))),
        ),
        (
            "no sub",
            issuer.mint(&claims(GOOGLE_ISS, GOOGLE_IOS, "", json!({}))),
        ),
        ("bad signature", tampered),
        (
            "alg none",
            issuer.mint_forged("none", &google("g-1", json!({}))),
        ),
        (
            "HS256 signed with the public key",
            issuer.mint_forged("HS256", &google("g-1", json!({}))),
        ),
        ("not a JWT", "garbage".to_string()),
    ];
    for (what, token) in cases {
        let (code, status) = refusal(app.log_in(Credentials::google_id_token(token)).await);
        assert_eq!((code.as_str(), status), ("AuthError", 401), "{what}");
    }
    assert!(app.all_users().is_empty());
    // The untouched token still works: the refusals above were about the tokens.
    app.log_in(Credentials::google_id_token(good))
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_kid_refetches_at_most_once_per_floor_then_a_rotated_key_works() {
    let (issuer, server) = start().await;
    let (app, _) = server.app();
    app.log_in(Credentials::google_id_token(
        issuer.mint(&google("g-1", json!({}))),
    ))
    .await
    .unwrap();
    let fetches = issuer.jwks_fetches();
    assert_eq!(fetches, 1);

    issuer.new_unpublished_key();
    for _ in 0..20 {
        let token = issuer.mint_unpublished(&google("g-2", json!({})));
        let (code, _) = refusal(app.log_in(Credentials::google_id_token(token)).await);
        assert_eq!(code, "AuthError");
    }
    // A flood of unknown kids made no request to the issuer within the floor.
    assert_eq!(issuer.jwks_fetches(), fetches);

    issuer.publish();
    server
        .server
        .advance_clock(sessionkit_server::jwks::REFETCH_FLOOR_SECS);
    // Signed with the key just published (the old RSA key was withdrawn).
    let token = issuer.mint(&google("g-2", json!({})));
    let user = app
        .log_in(Credentials::google_id_token(token))
        .await
        .unwrap();
    assert_eq!(user.identities()[0].id, "g-2");
    assert_eq!(issuer.jwks_fetches(), fetches + 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_issuer_is_a_transient_error_and_nobody_is_logged_out() {
    let (issuer, server) = start().await;
    let (app, _) = server.app();
    let anon = app.log_in(Credentials::anonymous()).await.unwrap();
    issuer.set_down(true);
    let token = issuer.mint(&google("g-1", json!({})));
    let (code, status) = refusal(
        app.log_in(Credentials::google_id_token(token.clone()))
            .await,
    );
    assert_eq!((code.as_str(), status), ("ServiceUnavailable", 503));
    let (code, status) = refusal(app.log_in(Credentials::facebook("fb")).await);
    assert_eq!((code.as_str(), status), ("ServiceUnavailable", 503));
    assert_eq!(anon.state(), UserState::LoggedIn);
    assert_eq!(app.current_user(), Some(anon.clone()));

    // Still 503 within the refetch floor, then the issuer is asked again.
    issuer.set_down(false);
    let (code, _) = refusal(
        app.log_in(Credentials::google_id_token(token.clone()))
            .await,
    );
    assert_eq!(code, "ServiceUnavailable");
    server
        .server
        .advance_clock(sessionkit_server::jwks::REFETCH_FLOOR_SECS);
    app.log_in(Credentials::google_id_token(token))
        .await
        .unwrap();
    assert_eq!(anon.state(), UserState::LoggedIn);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_social_identity_linked_to_an_anonymous_user_logs_in_as_that_user() {
    let (issuer, server) = start().await;
    let (app, _) = server.app();
    let anon = app
        .log_in(Credentials::Anonymous { reuse: false })
        .await
        .unwrap();
    anon.link_credentials(Credentials::apple(issuer.mint(&claims(
        APPLE_ISS,
        APPLE_CLIENT,
        "apple-link",
        json!({}),
    ))))
    .await
    .unwrap();
    let providers: Vec<String> = anon
        .identities()
        .into_iter()
        .map(|i| i.provider_type)
        .collect();
    assert_eq!(providers, ["anon-user", "oauth2-apple"]);
    let again = app
        .log_in(Credentials::apple(issuer.mint(&claims(
            APPLE_ISS,
            APPLE_CLIENT,
            "apple-link",
            json!({}),
        ))))
        .await
        .unwrap();
    assert_eq!(again.id(), anon.id());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_jwt_with_a_jwk_uri_is_verified_against_the_jwks() {
    let issuer = TestIssuer::start().await;
    let server = TestServer::with(ServerOptions {
        custom_token: format!(
            "jwks_url = \"{}\"\naudience = \"my-app\"\nissuer = \"{}\"",
            issuer.jwks_url(),
            issuer.url
        ),
        ..ServerOptions::default()
    })
    .await;
    let (app, _) = server.app();
    let token = issuer.mint(&claims(
        &issuer.url,
        "my-app",
        "ext-1",
        json!({"name": "Kim"}),
    ));
    let user = app.log_in(Credentials::jwt(token)).await.unwrap();
    assert_eq!(user.identities()[0].provider_type, "custom-token");
    assert_eq!(user.profile().name.as_deref(), Some("Kim"));
    let wrong = issuer.mint(&claims(&issuer.url, "other-app", "ext-1", json!({})));
    let (code, status) = refusal(app.log_in(Credentials::jwt(wrong)).await);
    assert_eq!((code.as_str(), status), ("AuthError", 401));
    server.stop().await;

    // Without `audience` configured, `aud` is not required (as with a shared key).
    let server = TestServer::with(ServerOptions {
        custom_token: format!("jwks_url = \"{}\"", issuer.jwks_url()),
        ..ServerOptions::default()
    })
    .await;
    let (app, _) = server.app();
    let t = now();
    let no_aud = issuer.mint(&json!({"sub": "ext-2", "iat": t, "exp": t + 600}));
    let user = app.log_in(Credentials::jwt(no_aud)).await.unwrap();
    assert_eq!(user.identities()[0].id, "ext-2");
    server.stop().await;
}
