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
    let tampered = sessionkit_tests::issuer::tamper(&good);
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
    // A signature that fails on the cached key: the key may have been regenerated, so it
    // cannot be judged until the floor lets the keys be fetched again; then it is refused.
    let (code, status) = refusal(
        app.log_in(Credentials::google_id_token(tampered.clone()))
            .await,
    );
    assert_eq!((code.as_str(), status), ("ServiceUnavailable", 503));
    server
        .server
        .advance_clock(sessionkit_server::jwks::REFETCH_FLOOR_SECS);
    let (code, status) = refusal(app.log_in(Credentials::google_id_token(tampered)).await);
    assert_eq!((code.as_str(), status), ("AuthError", 401), "bad signature");
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
        // Keys fetched moments ago lack the kid: the token cannot be judged before the floor
        // lets them be fetched again (issue 22, item 3).
        assert_eq!(code, "ServiceUnavailable");
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

// ---- Outside issuers' habits (issue 22, items 3 to 8) ----

/// A login answer read over raw HTTP, with what the SDK does not show.
#[derive(Debug)]
struct Answer {
    status: u16,
    code: String,
    error: String,
    retry_after: Option<i64>,
}

/// POSTs a login to `provider` with `body` and reads the answer.
async fn raw_login(server: &TestServer, provider: &str, body: Value) -> Answer {
    let url = format!(
        "{}/api/client/v2.0/app/{}/auth/providers/{provider}/login",
        server.base_url(),
        server.app_id
    );
    let resp = reqwest::Client::new()
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("login request");
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let doc: Value = resp.json().await.unwrap_or(Value::Null);
    Answer {
        status,
        code: doc["error_code"].as_str().unwrap_or_default().to_string(),
        error: doc["error"].as_str().unwrap_or_default().to_string(),
        retry_after,
    }
}

async fn google_login(server: &TestServer, token: &str) -> Answer {
    raw_login(server, "oauth2-google", json!({ "id_token": token })).await
}

/// 503 `ServiceUnavailable` with a `Retry-After` within 1..=`max` seconds.
fn assert_unavailable(a: &Answer, max: i64, what: &str) {
    assert_eq!(
        (a.status, a.code.as_str()),
        (503, "ServiceUnavailable"),
        "{what}: {a:?}"
    );
    let secs = a
        .retry_after
        .unwrap_or_else(|| panic!("{what}: no Retry-After: {a:?}"));
    assert!((1..=max).contains(&secs), "{what}: Retry-After {secs}");
}

fn assert_refused(a: &Answer, mentions: &str, what: &str) {
    assert_eq!(
        (a.status, a.code.as_str()),
        (401, "AuthError"),
        "{what}: {a:?}"
    );
    assert!(a.error.contains(mentions), "{what}: {a:?}");
}

fn assert_ok(a: &Answer, what: &str) {
    assert_eq!(a.status, 200, "{what}: {a:?}");
}

const FLOOR: i64 = sessionkit_server::jwks::REFETCH_FLOOR_SECS;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kid_the_issuer_could_not_be_asked_about_is_unavailable_not_refused() {
    let (issuer, server) = start().await;
    assert_ok(
        &google_login(&server, &issuer.mint(&google("g-1", json!({})))).await,
        "first login",
    );
    let fetches = issuer.jwks_fetches();
    issuer.new_unpublished_key();
    let token = issuer.mint_unpublished(&google("g-2", json!({})));

    // The keys were fetched moments ago, the refetch is held back by the floor: the token
    // could not be checked, so 503 with the seconds left of the floor.
    server.server.advance_clock(10);
    let a = google_login(&server, &token).await;
    assert_unavailable(&a, FLOOR - 10, "held back by the floor");
    assert!(a.error.contains("unknown key"), "says why: {a:?}");
    assert_eq!(issuer.jwks_fetches(), fetches);

    // The issuer is down when the floor allows a refetch: 503, retry after a floor.
    issuer.set_down(true);
    server.server.advance_clock(FLOOR);
    let a = google_login(&server, &token).await;
    assert_unavailable(&a, FLOOR, "refetch failed");
    assert!(a.error.contains("503"), "the issuer's trouble: {a:?}");
    let a = google_login(&server, &token).await;
    assert_unavailable(&a, FLOOR, "refetch failed, then held back");
    assert!(a.error.contains("503"), "the issuer's trouble: {a:?}");

    // A fresh, successful fetch without the key: now it is the token's fault.
    issuer.set_down(false);
    server.server.advance_clock(FLOOR);
    let a = google_login(&server, &token).await;
    assert_refused(&a, "unknown key", "unknown to a fresh fetch");
    assert_eq!(issuer.jwks_fetches(), fetches + 1);

    issuer.publish();
    server.server.advance_clock(FLOOR);
    assert_ok(&google_login(&server, &token).await, "after the rotation");
    server.stop().await;
}

/// OpenID Connect issuers `oidc-<name>`, each trusting the issuer at its URL (discovery).
fn oidc_providers(issuers: &[(&str, &TestIssuer)]) -> String {
    issuers
        .iter()
        .map(|(name, i)| {
            format!(
                "[app.providers.oidc.{name}]\nissuer = \"{}\"\naudiences = [\"corp-client\"]\n",
                i.url
            )
        })
        .collect()
}

fn corp_claims(issuer: &TestIssuer, sub: &str) -> Value {
    claims(&issuer.url, "corp-client", sub, json!({}))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_the_server_cannot_use_are_skipped() {
    // Each set: the issuer's RS256 and ES256 keys plus one key this server cannot use.
    let unusable = [
        (
            "x25519",
            json!({"kty": "OKP", "crv": "X25519", "kid": "x25519-1",
                   "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"}),
        ),
        (
            "mldsa",
            json!({"kty": "AKP", "alg": "ML-DSA-44", "kid": "mldsa-1",
                   "pub": "unJ1Ezb0SuPAVvCKlQzWjuzLOxiT9bY2btJ1Wy3bFPg"}),
        ),
        (
            "secp256k1",
            json!({"kty": "EC", "crv": "secp256k1", "kid": "k1-1", "use": "sig",
                   "x": "WfbGsWV8jzjL2ut7nr1pySJi9Cd4dO6ZNLcpXqz3DBM",
                   "y": "NOk6KwqvFZ3KG8OMD1ftj7J1r4eBTEtbaN0fcuCfYAs"}),
        ),
        (
            "rsa_without_e",
            json!({"kty": "RSA", "alg": "RS256", "kid": "no-e", "use": "sig",
                   "n": "sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1Wl"}),
        ),
    ];
    let mut issuers = Vec::new();
    for (name, jwk) in &unusable {
        let issuer = TestIssuer::start().await;
        issuer.add_raw_jwks(vec![jwk.clone()]);
        issuers.push((*name, issuer));
    }
    // And one whose set holds nothing usable at all.
    let empty = TestIssuer::start().await;
    let orphan = empty.mint(&corp_claims(&empty, "u-0"));
    empty.withdraw_keys();
    empty.add_raw_jwks(unusable.iter().map(|(_, j)| j.clone()).collect());
    let mut named: Vec<(&str, &TestIssuer)> = issuers.iter().map(|(n, i)| (*n, i)).collect();
    named.push(("nothing_usable", &empty));
    let server = TestServer::with(ServerOptions {
        extra_providers: oidc_providers(&named),
        ..ServerOptions::default()
    })
    .await;
    // Every value is tried, and all that went wrong reported together.
    let mut wrong = Vec::new();
    for (name, issuer) in &issuers {
        for alg in [Algorithm::RS256, Algorithm::ES256] {
            let token = issuer.mint_with(alg, &corp_claims(issuer, "u-1"));
            let a = raw_login(
                &server,
                &format!("oidc-{name}"),
                json!({ "id_token": token }),
            )
            .await;
            if a.status != 200 {
                wrong.push(format!("{name} {alg:?}: {a:?}"));
            }
        }
    }
    assert!(wrong.is_empty(), "refused: {wrong:#?}");
    let a = raw_login(
        &server,
        "oidc-nothing_usable",
        json!({ "id_token": orphan }),
    )
    .await;
    assert_unavailable(&a, FLOOR, "nothing usable");
    assert!(a.error.contains("none of the 4 keys"), "{a:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_kid_uses_the_one_key_that_fits_its_alg() {
    let issuer = TestIssuer::start().await;
    issuer.omit_kids(true);
    let server = TestServer::with(ServerOptions {
        extra_providers: oidc_providers(&[("single", &issuer)]),
        custom_token: format!("jwks_url = \"{}\"", issuer.jwks_url()),
        ..ServerOptions::default()
    })
    .await;
    let login = |provider: &'static str, token: String| {
        let server = &server;
        async move {
            let field = if provider == "custom-token" {
                "token"
            } else {
                "id_token"
            };
            raw_login(server, provider, json!({ field: token })).await
        }
    };
    for alg in [Algorithm::RS256, Algorithm::ES256] {
        for provider in ["oidc-single", "custom-token"] {
            let token = issuer.mint_without_kid(alg, &corp_claims(&issuer, "u-1"));
            assert_ok(
                &login(provider, token).await,
                &format!("{provider} {alg:?}"),
            );
        }
    }
    // Two RSA keys: a token without kid cannot say which one signed it.
    issuer.add_rsa_key();
    server
        .server
        .advance_clock(sessionkit_server::jwks::MAX_AGE_SECS);
    for provider in ["oidc-single", "custom-token"] {
        let token = issuer.mint_without_kid(Algorithm::RS256, &corp_claims(&issuer, "u-1"));
        let a = login(provider, token).await;
        assert_refused(&a, "several", provider);
        assert!(a.error.contains("kid"), "{a:?}");
    }
    // The one ES256 key still fits an ES256 token without kid.
    let token = issuer.mint_without_kid(Algorithm::ES256, &corp_claims(&issuer, "u-1"));
    assert_ok(
        &login("oidc-single", token).await,
        "one ES256 key among RSA keys",
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_regenerated_under_the_same_kid_is_fetched_again_under_the_floor() {
    let (issuer, server) = start().await;
    assert_ok(
        &google_login(&server, &issuer.mint(&google("g-1", json!({})))).await,
        "first login",
    );
    let fetches = issuer.jwks_fetches();
    issuer.regenerate_key(Algorithm::RS256);
    let token = issuer.mint(&google("g-1", json!({})));
    // At once: the cached key fails, the floor holds the refetch back; not the token's fault.
    assert_unavailable(&google_login(&server, &token).await, FLOOR, "0 s");
    assert_eq!(issuer.jwks_fetches(), fetches);
    // 60 s later: one refetch, and the new key works.
    server.server.advance_clock(60);
    assert_ok(&google_login(&server, &token).await, "60 s");
    assert_eq!(issuer.jwks_fetches(), fetches + 1);
    // Again, 31 minutes later (long before the keys' hour is up).
    issuer.regenerate_key(Algorithm::RS256);
    server.server.advance_clock(31 * 60);
    let token = issuer.mint(&google("g-1", json!({})));
    assert_ok(&google_login(&server, &token).await, "31 min");
    assert_eq!(issuer.jwks_fetches(), fetches + 2);
    server.stop().await;
}

/// A login to `oidc-corp` with a token issued now by the server's clock (which tests move).
async fn oidc_login(server: &TestServer, issuer: &TestIssuer, sub: &str) -> Answer {
    let t = server.server.now();
    let claims = claims(
        &issuer.url,
        "corp-client",
        sub,
        json!({"iat": t, "exp": t + 3600}),
    );
    let token = issuer.mint(&claims);
    raw_login(server, "oidc-corp", json!({ "id_token": token })).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_is_fetched_again_with_the_keys_when_the_issuer_moves_them() {
    let (issuer, server) = start().await;
    assert_ok(&oidc_login(&server, &issuer, "e-1").await, "first login");
    assert_eq!(issuer.discovery_fetches(), 1);

    // The issuer moves its keys (the old place 404s) and rotates.
    issuer.move_jwks("v2");
    issuer.new_unpublished_key();
    issuer.publish();
    let a = oidc_login(&server, &issuer, "e-1").await;
    assert_unavailable(&a, FLOOR, "rotated, within the floor");
    server.server.advance_clock(FLOOR);
    assert_ok(
        &oidc_login(&server, &issuer, "e-1").await,
        "after the floor",
    );
    assert_eq!(issuer.discovery_fetches(), 2);

    // Moved again without rotating: the keys' lifetime ends, and a day later both are new.
    issuer.move_jwks("v3");
    assert_ok(&oidc_login(&server, &issuer, "e-1").await, "cached keys");
    assert_eq!(issuer.discovery_fetches(), 2);
    server.server.advance_clock(86_400);
    issuer.new_unpublished_key();
    issuer.publish();
    assert_ok(&oidc_login(&server, &issuer, "e-1").await, "a day later");
    assert_eq!(issuer.discovery_fetches(), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_discovery_is_asked_at_most_once_per_floor() {
    let (issuer, server) = start().await;
    issuer.set_discovery_status(Some(500));
    for i in 0..20 {
        let a = oidc_login(&server, &issuer, "e-1").await;
        assert_unavailable(&a, FLOOR, &format!("login {i}"));
        assert!(a.error.contains("500"), "{a:?}");
    }
    assert_eq!(issuer.discovery_fetches(), 1);
    server.server.advance_clock(FLOOR);
    assert_unavailable(
        &oidc_login(&server, &issuer, "e-1").await,
        FLOOR,
        "next floor",
    );
    assert_eq!(issuer.discovery_fetches(), 2);
    issuer.set_discovery_status(None);
    server.server.advance_clock(FLOOR);
    assert_ok(
        &oidc_login(&server, &issuer, "e-1").await,
        "answering again",
    );
    assert_eq!(issuer.discovery_fetches(), 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_discovery_document_naming_another_issuer_is_not_used() {
    let (issuer, server) = start().await;
    issuer.set_discovery_issuer(Some("https://impostor.example"));
    let a = oidc_login(&server, &issuer, "e-1").await;
    assert_unavailable(&a, FLOOR, "mismatched issuer");
    assert!(
        a.error.contains("impostor.example") && a.error.contains("4.3"),
        "{a:?}"
    );
    assert_eq!(issuer.jwks_fetches(), 0, "its jwks_uri was not used");
    issuer.set_discovery_issuer(None);
    server.server.advance_clock(FLOOR);
    assert_ok(&oidc_login(&server, &issuer, "e-1").await, "matching again");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn id_tokens_with_an_untrusted_audience_or_a_far_exp_are_refused() {
    let (issuer, server) = start().await;
    let t = now();
    let refused = [
        (
            "our client plus an untrusted one",
            google("g-1", json!({"aud": [GOOGLE_IOS, "untrusted-client"]})),
            "aud",
        ),
        (
            "two of our clients without azp",
            google("g-1", json!({"aud": [GOOGLE_IOS, GOOGLE_WEB]})),
            "azp",
        ),
        (
            "two of our clients, azp untrusted",
            google(
                "g-1",
                json!({"aud": [GOOGLE_IOS, GOOGLE_WEB], "azp": "untrusted-client"}),
            ),
            "azp",
        ),
        (
            "exp ten years ahead",
            google("g-1", json!({"exp": t + 10 * 365 * 86_400})),
            "exp",
        ),
        (
            "exp 2^31+1",
            google("g-1", json!({"exp": 2_147_483_649_i64})),
            "exp",
        ),
        ("exp 1e20", google("g-1", json!({"exp": 1e20})), "exp"),
        (
            "exp a day and a second after iat",
            google("g-1", json!({"exp": t + 86_401})),
            "exp",
        ),
    ];
    // Every value is tried, and all that went wrong reported together.
    let mut wrong = Vec::new();
    for (what, claims, claim) in refused {
        let a = google_login(&server, &issuer.mint(&claims)).await;
        if !(a.status == 401 && a.code == "AuthError" && a.error.contains(claim)) {
            wrong.push(format!("{what}: {a:?}"));
        }
    }
    assert!(wrong.is_empty(), "not refused naming the claim: {wrong:#?}");
    let accepted = [
        (
            "one trusted aud in a list",
            google("g-1", json!({"aud": [GOOGLE_IOS]})),
        ),
        (
            "two of our clients, azp ours",
            google(
                "g-1",
                json!({"aud": [GOOGLE_IOS, GOOGLE_WEB], "azp": GOOGLE_WEB}),
            ),
        ),
        (
            "exp a day after iat",
            google("g-1", json!({"exp": t + 86_400})),
        ),
    ];
    for (what, claims) in accepted {
        assert_ok(&google_login(&server, &issuer.mint(&claims)).await, what);
    }
    server.stop().await;
}

/// Runners in other languages set the same habits over HTTP (`test_issuer` binary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_issuers_habits_are_set_over_http_too() {
    let issuer = TestIssuer::start().await;
    let http = reqwest::Client::new();
    let habits = json!({
        "omit_kids": true,
        "extra_jwks": [{"kty": "AKP", "alg": "ML-DSA-44", "pub": "AAAA"}],
        "move_jwks": "v2",
        "discovery_status": 500,
    });
    let r = http
        .post(format!("{}/control/habits", issuer.url))
        .json(&habits)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let get = |path: &str| http.get(format!("{}{path}", issuer.url)).send();
    assert_eq!(get("/jwks").await.unwrap().status().as_u16(), 404);
    let set: Value = get("/keys/v2").await.unwrap().json().await.unwrap();
    let keys = set["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 3);
    assert!(keys.iter().all(|k| k.get("kid").is_none()));
    assert_eq!(keys[2]["kty"], "AKP");
    let discovery = get("/.well-known/openid-configuration").await.unwrap();
    assert_eq!(discovery.status().as_u16(), 500);
    let counts: Value = get("/control/counts").await.unwrap().json().await.unwrap();
    assert_eq!(counts, json!({"jwks_fetches": 2, "discovery_fetches": 1}));
    let r = http
        .post(format!("{}/control/habits", issuer.url))
        .json(&json!({"discovery_status": null, "discovery_issuer": "https://other.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 204);
    let doc: Value = get("/.well-known/openid-configuration")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["issuer"], "https://other.example");
    assert_eq!(doc["jwks_uri"], format!("{}/keys/v2", issuer.url));
}
