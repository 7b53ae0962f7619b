//! Account features through the public API against the real server: email/password flows with
//! tokens taken from the outbox, user API keys, functions, authenticated requests, custom data,
//! and the custom-function provider behind a webhook served by the test itself.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use reqwest::Method;
use serde_json::{Value, json};
use sessionkit::{App, AppError, Credentials, SessionErrorKind, User, UserState};
use sessionkit_tests::{APP_ID, ServerOptions, TestServer, custom_jwt, unique_email};

const PASSWORD: &str = "password-123";

/// Asserts a server error with this code and status, as `AppError::Service` carries it.
#[track_caller]
fn assert_service<T: std::fmt::Debug>(result: Result<T, AppError>, code: &str, status: u16) {
    match result {
        Err(AppError::Service {
            code: c,
            http_status,
            message,
            ..
        }) => {
            assert_eq!(
                (c.as_str(), http_status),
                (code, status),
                "message: {message}"
            );
            assert!(!message.is_empty(), "the server's message is kept");
        }
        other => panic!("expected Service {{ {code}, {status} }}, got {other:?}"),
    }
}

#[track_caller]
fn assert_invalid<T: std::fmt::Debug>(result: Result<T, AppError>) {
    assert!(
        matches!(result, Err(AppError::InvalidArgument { .. })),
        "expected InvalidArgument, got {result:?}"
    );
}

fn unconfirmed() -> ServerOptions {
    ServerOptions {
        auto_confirm: false,
        ..Default::default()
    }
}

/// The newest `kind` ("confirm" / "reset") mail of `email`: (token, tokenId).
async fn latest_mail(server: &TestServer, email: &str, kind: &str) -> (String, String) {
    let mail = server
        .outbox(email)
        .await
        .into_iter()
        .rfind(|m| m["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} mail for {email}"));
    (
        mail["token"].as_str().unwrap().to_string(),
        mail["tokenId"].as_str().unwrap().to_string(),
    )
}

async fn mail_count(server: &TestServer, email: &str, kind: &str) -> usize {
    server
        .outbox(email)
        .await
        .iter()
        .filter(|m| m["kind"] == kind)
        .count()
}

/// Registers `email` and confirms it with the token from the outbox.
async fn confirmed(server: &TestServer, app: &App, email: &str) {
    let auth = app.email_password_auth();
    auth.register_user(email, PASSWORD).await.unwrap();
    let (token, token_id) = latest_mail(server, email, "confirm").await;
    auth.confirm_user(&token, &token_id).await.unwrap();
}

async fn log_in(app: &App, email: &str, password: &str) -> Result<User, AppError> {
    app.log_in(Credentials::email_password(email, password))
        .await
}

/// A registered, logged-in email user on a server that confirms at once.
async fn email_user(app: &App, tag: &str) -> User {
    let email = unique_email(tag);
    app.email_password_auth()
        .register_user(&email, PASSWORD)
        .await
        .unwrap();
    log_in(app, &email, PASSWORD).await.unwrap()
}

async fn server_user_count(server: &TestServer) -> usize {
    let (status, body) = server.admin(Method::GET, "/users", None).await;
    assert_eq!(status, 200, "admin users: {body}");
    body.as_array().expect("users array").len()
}

// ---------------------------------------------------------------------------------------------
// Email/password

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_confirmed_with_the_token_from_the_outbox() {
    let server = TestServer::with(unconfirmed()).await;
    let (app, _) = server.app();
    let auth = app.email_password_auth();
    let email = unique_email("confirm");
    auth.register_user(&email, PASSWORD).await.unwrap();

    assert_service(log_in(&app, &email, PASSWORD).await, "AuthError", 401);
    assert!(app.all_users().is_empty(), "a refused login leaves no user");

    let (token, token_id) = latest_mail(&server, &email, "confirm").await;
    assert_service(
        auth.confirm_user("not-the-token", &token_id).await,
        "UserpassTokenInvalid",
        400,
    );
    assert_service(
        auth.confirm_user(&token, "0123456789abcdef01234567").await,
        "UserpassTokenInvalid",
        400,
    );
    auth.confirm_user(&token, &token_id).await.unwrap();
    assert_service(
        auth.confirm_user(&token, &token_id).await,
        "UserpassTokenInvalid",
        400,
    );

    let user = log_in(&app, &email, PASSWORD).await.unwrap();
    assert_eq!(user.state(), UserState::LoggedIn);
    assert_eq!(user.profile().email.as_deref(), Some(email.as_str()));

    assert_service(
        auth.resend_confirmation_email(&email).await,
        "UserAlreadyConfirmed",
        409,
    );
    assert_service(
        auth.retry_custom_confirmation(&email).await,
        "UserAlreadyConfirmed",
        409,
    );
    assert_service(
        auth.register_user(&email, "another-password").await,
        "AccountNameInUse",
        409,
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resend_and_retry_custom_confirmation_mail_new_tokens() {
    let server = TestServer::with(unconfirmed()).await;
    let (app, _) = server.app();
    let auth = app.email_password_auth();
    let email = unique_email("resend");
    auth.register_user(&email, PASSWORD).await.unwrap();
    assert_eq!(mail_count(&server, &email, "confirm").await, 1);

    auth.resend_confirmation_email(&email).await.unwrap();
    assert_eq!(mail_count(&server, &email, "confirm").await, 2);
    auth.retry_custom_confirmation(&email).await.unwrap();
    assert_eq!(mail_count(&server, &email, "confirm").await, 3);

    // The newest token confirms.
    let (token, token_id) = latest_mail(&server, &email, "confirm").await;
    auth.confirm_user(&token, &token_id).await.unwrap();
    log_in(&app, &email, PASSWORD).await.unwrap();

    let nobody = unique_email("nobody");
    assert_service(
        auth.resend_confirmation_email(&nobody).await,
        "UserNotFound",
        404,
    );
    assert_service(
        auth.retry_custom_confirmation(&nobody).await,
        "UserNotFound",
        404,
    );
    assert!(server.outbox(&nobody).await.is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_email_token_sets_the_new_password_and_ends_old_sessions() {
    let server = TestServer::with(unconfirmed()).await;
    let (app, _) = server.app();
    let auth = app.email_password_auth();
    let email = unique_email("reset");
    confirmed(&server, &app, &email).await;
    let user = log_in(&app, &email, PASSWORD).await.unwrap();

    assert_service(
        auth.send_reset_password_email(&unique_email("nobody"))
            .await,
        "UserNotFound",
        404,
    );
    auth.send_reset_password_email(&email).await.unwrap();
    let (token, token_id) = latest_mail(&server, &email, "reset").await;

    assert_service(
        auth.reset_password("wrong-token", &token_id, "new-password-1")
            .await,
        "UserpassTokenInvalid",
        400,
    );
    assert_service(
        auth.reset_password(&token, &token_id, "short").await,
        "BadRequest",
        400,
    );
    auth.reset_password(&token, &token_id, "new-password-1")
        .await
        .unwrap();
    assert_service(
        auth.reset_password(&token, &token_id, "new-password-2")
            .await,
        "UserpassTokenInvalid",
        400,
    );

    assert_service(log_in(&app, &email, PASSWORD).await, "InvalidPassword", 401);
    // The reset revoked the session this device held.
    let err = user.refresh_access_token().await.unwrap_err();
    assert!(
        matches!(
            err,
            AppError::SessionExpired {
                kind: SessionErrorKind::SessionRevoked,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(user.state(), UserState::LoggedOut);
    let again = log_in(&app, &email, "new-password-1").await.unwrap();
    assert_eq!(again.id(), user.id());
    server.stop().await;
}

async fn reset_function_server(mode: &str) -> (TestServer, App, String) {
    let server = TestServer::with(ServerOptions {
        reset_function: mode.into(),
        ..Default::default()
    })
    .await;
    let (app, _) = server.app();
    let email = unique_email(mode);
    app.email_password_auth()
        .register_user(&email, PASSWORD)
        .await
        .unwrap();
    (server, app, email)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reset_function_success_sets_the_password_at_once() {
    let (server, app, email) = reset_function_server("success").await;
    let before = log_in(&app, &email, PASSWORD).await.unwrap();
    app.email_password_auth()
        .call_reset_password_function(&email, "new-password-1", r#"["a", 1]"#)
        .await
        .unwrap();
    assert_service(log_in(&app, &email, PASSWORD).await, "InvalidPassword", 401);
    // Like a reset by email, it ends the sessions that knew the old password.
    assert!(matches!(
        before.refresh_access_token().await,
        Err(AppError::SessionExpired {
            kind: SessionErrorKind::SessionRevoked,
            ..
        })
    ));
    log_in(&app, &email, "new-password-1").await.unwrap();
    assert!(server.outbox(&email).await.is_empty(), "no mail needed");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reset_function_pending_mails_a_token_and_keeps_the_password() {
    let (server, app, email) = reset_function_server("pending").await;
    let auth = app.email_password_auth();
    auth.call_reset_password_function(&email, "discarded-1", "[]")
        .await
        .unwrap();
    // Pending: the password in the call is discarded; the old one still works.
    log_in(&app, &email, PASSWORD).await.unwrap();
    assert_service(
        log_in(&app, &email, "discarded-1").await,
        "InvalidPassword",
        401,
    );
    let (token, token_id) = latest_mail(&server, &email, "reset").await;
    auth.reset_password(&token, &token_id, "new-password-1")
        .await
        .unwrap();
    log_in(&app, &email, "new-password-1").await.unwrap();

    assert_service(
        auth.call_reset_password_function(&unique_email("nobody"), "whatever-1", "[]")
            .await,
        "UserNotFound",
        404,
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_reset_function_fail_is_a_bad_request_and_bad_args_never_leave() {
    let (server, app, email) = reset_function_server("fail").await;
    let auth = app.email_password_auth();
    assert_service(
        auth.call_reset_password_function(&email, "new-password-1", "[]")
            .await,
        "BadRequest",
        400,
    );
    log_in(&app, &email, PASSWORD).await.unwrap();

    let calls = server.server.request_count("reset_call");
    assert_invalid(
        auth.call_reset_password_function(&email, "new-password-1", "{}")
            .await,
    );
    assert_invalid(
        auth.call_reset_password_function(&email, "new-password-1", "[1,")
            .await,
    );
    assert_invalid(
        auth.call_reset_password_function("", "new-password-1", "[]")
            .await,
    );
    assert_eq!(
        server.server.request_count("reset_call"),
        calls,
        "refused before sending"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_checks_the_password_and_the_email() {
    let server = TestServer::start().await;
    let (app, _) = server.app();
    let auth = app.email_password_auth();
    assert_service(
        auth.register_user(&unique_email("short"), "12345").await,
        "BadRequest",
        400,
    );
    let registers = server.server.request_count("register");
    assert_invalid(auth.register_user("  ", PASSWORD).await);
    assert_invalid(auth.resend_confirmation_email("").await);
    assert_invalid(auth.send_reset_password_email("").await);
    assert_eq!(server.server.request_count("register"), registers);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// API keys

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_key_lives_through_create_fetch_disable_enable_and_delete() {
    let server = TestServer::start().await;
    let (app, _) = server.app();
    let owner = email_user(&app, "keys").await;
    let keys = owner.api_keys();

    let created = keys.create("build-server").await.unwrap();
    let secret = created.key.clone().expect("the key comes back on create");
    assert_eq!(created.name, "build-server");
    assert!(!created.disabled);
    let debug = format!("{created:?}");
    assert!(!debug.contains(&secret), "Debug shows the key: {debug}");
    assert!(debug.contains(&created.id), "{debug}");

    let fetched = keys.fetch(&created.id).await.unwrap();
    assert_eq!(fetched.id, created.id);
    assert_eq!(fetched.name, "build-server");
    assert_eq!(fetched.key, None, "the secret is shown only once");
    let second = keys.create("laptop").await.unwrap();
    let all = keys.fetch_all().await.unwrap();
    assert_eq!(
        all.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
        vec![created.id.as_str(), second.id.as_str()]
    );
    assert!(all.iter().all(|k| k.key.is_none()));

    assert_service(
        keys.create("build-server").await,
        "APIKeyAlreadyExists",
        409,
    );

    // A script on another device logs in with the key as the same user.
    let (script, _) = server.app();
    let via_key = script.log_in(Credentials::api_key(&secret)).await.unwrap();
    assert_eq!(via_key.id(), owner.id());
    assert_eq!(via_key.provider_type(), "api-key");
    // A session from an API key cannot manage keys: refused here, nothing sent.
    let key_calls = server.server.request_count("api_keys");
    let err = via_key.api_keys().create("minted").await.unwrap_err();
    assert!(matches!(err, AppError::InvalidArgument { .. }), "{err:?}");
    assert!(err.to_string().contains("API key"), "{err}");
    assert_eq!(server.server.request_count("api_keys"), key_calls);

    keys.disable(&created.id).await.unwrap();
    assert!(keys.fetch(&created.id).await.unwrap().disabled);
    assert_service(
        script.log_in(Credentials::api_key(&secret)).await,
        "AuthError",
        401,
    );
    keys.enable(&created.id).await.unwrap();
    assert!(!keys.fetch(&created.id).await.unwrap().disabled);
    script.log_in(Credentials::api_key(&secret)).await.unwrap();

    keys.delete(&created.id).await.unwrap();
    // The sessions the key logged in end with it.
    assert!(matches!(
        via_key.refresh_access_token().await,
        Err(AppError::SessionExpired {
            kind: sessionkit::SessionErrorKind::SessionRevoked,
            ..
        })
    ));
    assert_service(keys.fetch(&created.id).await, "APIKeyNotFound", 404);
    assert_service(keys.delete(&created.id).await, "APIKeyNotFound", 404);
    assert_service(
        script.log_in(Credentials::api_key(&secret)).await,
        "AuthError",
        401,
    );
    assert_eq!(
        keys.fetch_all()
            .await
            .unwrap()
            .into_iter()
            .map(|k| k.id)
            .collect::<Vec<_>>(),
        vec![second.id.clone()]
    );

    // Key calls carry the refresh token: an access token the server considers expired
    // neither blocks them nor costs a refresh.
    let refreshes = server.refresh_count();
    server.advance_server_clock(1801);
    assert_eq!(keys.fetch(&second.id).await.unwrap().name, "laptop");
    assert_eq!(server.refresh_count(), refreshes);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_users_key_is_not_found_and_bad_ids_never_leave() {
    let server = TestServer::start().await;
    let (app, _) = server.app();
    let alice = email_user(&app, "alice").await;
    let bob = email_user(&app, "bob").await;
    let alice_key = alice.api_keys().create("alice-key").await.unwrap();

    let keys = bob.api_keys();
    assert_service(keys.fetch(&alice_key.id).await, "APIKeyNotFound", 404);
    assert_service(keys.disable(&alice_key.id).await, "APIKeyNotFound", 404);
    assert_service(keys.enable(&alice_key.id).await, "APIKeyNotFound", 404);
    assert_service(keys.delete(&alice_key.id).await, "APIKeyNotFound", 404);
    assert!(keys.fetch_all().await.unwrap().is_empty());
    // Bob's attempts changed nothing for Alice.
    assert!(
        !alice
            .api_keys()
            .fetch(&alice_key.id)
            .await
            .unwrap()
            .disabled
    );

    let calls = server.server.request_count("api_keys");
    assert_invalid(keys.fetch("../profile").await);
    assert_invalid(keys.delete("").await);
    assert_invalid(keys.create(" ").await);
    assert_eq!(server.server.request_count("api_keys"), calls);

    // API key management needs a logged-in user.
    bob.log_out().await.unwrap();
    assert!(matches!(
        keys.fetch_all().await,
        Err(AppError::ClientUserNotLoggedIn { .. })
    ));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Functions and authenticated requests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn functions_return_their_json_result() {
    let server = TestServer::start().await;
    let (app, _) = server.app();
    let user = email_user(&app, "functions").await;

    assert_eq!(user.call_function("sum", "[1, 2, 3]").await.unwrap(), "6");
    assert_eq!(user.call_function("sum", "[1, 0.5]").await.unwrap(), "1.5");
    let echoed: Value = serde_json::from_str(
        &user
            .call_function("echo", r#"[{"a": [1, "x"]}, null]"#)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(echoed, json!([{"a": [1, "x"]}, null]));
    let me: Value =
        serde_json::from_str(&user.call_function("whoami", "[]").await.unwrap()).unwrap();
    assert_eq!(me["user_id"], json!(user.id()));

    // The typed form: arguments serialized, the result decoded.
    let sum: f64 = user.call("sum", &(1, 0.5)).await.unwrap();
    assert_eq!(sum, 1.5);
    let echoed: (String, Vec<u8>) = user.call("echo", &("x", [1, 2])).await.unwrap();
    assert_eq!(echoed, ("x".to_string(), vec![1, 2]));
    // Not an array, or a result of another shape: InvalidArgument, the latter after the call.
    assert_invalid(user.call::<i64>("sum", &json!({"a": 1})).await);
    assert_invalid(user.call::<String>("sum", &[1, 2]).await);

    assert_service(
        user.call_function("no-such-function", "[]").await,
        "FunctionNotFound",
        404,
    );
    assert_service(
        user.call_function("sum", r#"["x"]"#).await,
        "BadRequest",
        400,
    );

    let calls = server.server.request_count("function");
    assert_invalid(user.call_function("sum", "{\"a\": 1}").await);
    assert_invalid(user.call_function("sum", "1, 2").await);
    assert_invalid(user.call_function("", "[]").await);
    assert_eq!(
        server.server.request_count("function"),
        calls,
        "refused before sending"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_function_call_refreshes_first_when_the_token_is_within_the_margin() {
    let server = TestServer::start().await;
    let (app, clock) = server.app();
    let user = email_user(&app, "margin").await;
    let (refreshes, calls) = (
        server.refresh_count(),
        server.server.request_count("function"),
    );
    // 30 s left of 1800: inside the 60 s margin, so the call refreshes before it is sent.
    clock.advance(Duration::from_secs(1770));
    assert_eq!(user.call_function("sum", "[2, 2]").await.unwrap(), "4");
    assert_eq!(server.refresh_count(), refreshes + 1);
    assert_eq!(
        server.server.request_count("function"),
        calls + 1,
        "sent once, with the fresh token"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_returns_status_and_body_as_they_came() {
    let server = TestServer::start().await;
    let (app, clock) = server.app();
    let user = email_user(&app, "request").await;
    let functions = format!("/api/client/v2.0/app/{APP_ID}/functions/call");

    let r = user
        .request(
            "POST",
            &functions,
            Some(r#"{"name": "sum", "arguments": [2, 3]}"#),
        )
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "5"));
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "content-type" && v.starts_with("application/json")),
        "{:?}",
        r.headers
    );

    let r = user
        .request("get", "/api/client/v2.0/auth/profile", None)
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let profile: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(profile["user_id"], json!(user.id()));

    // A non-2xx answer is not an error here: the caller gets it as it came.
    let r = user
        .request(
            "POST",
            &functions,
            Some(r#"{"name": "nope", "arguments": []}"#),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["error_code"], "FunctionNotFound");
    let r = user
        .request("GET", "/api/client/v2.0/no/such/route", None)
        .await
        .unwrap();
    assert_eq!(r.status, 404);

    // Within the margin the token is refreshed before the request is sent.
    let refreshes = server.refresh_count();
    clock.advance(Duration::from_secs(1770));
    let r = user
        .request("GET", "/api/client/v2.0/auth/profile", None)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(server.refresh_count(), refreshes + 1);

    // Refused locally: the token must never go to another host.
    let sent = server.server.request_count("profile");
    assert_invalid(
        user.request("GET", "api/client/v2.0/auth/profile", None)
            .await,
    );
    assert_invalid(
        user.request("GET", "//evil.example/auth/profile", None)
            .await,
    );
    assert_invalid(user.request("GET", "http://evil.example/x", None).await);
    assert_invalid(
        user.request("TRACE", "/api/client/v2.0/auth/profile", None)
            .await,
    );
    assert_invalid(user.request("POST", &functions, Some("{not json")).await);
    assert_eq!(server.server.request_count("profile"), sent);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_stays_401_is_replayed_once_and_returned() {
    let server = TestServer::start().await;
    let (app, _) = server.app();
    let user = email_user(&app, "replay").await;
    let refreshes = server.refresh_count();
    // An access token on the refresh endpoint is always 401: refresh once, replay once, stop.
    let r = user
        .request("POST", "/api/client/v2.0/auth/session", None)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["error_code"], "InvalidSession");
    // The server counts every POST to auth/session: the request, one refresh, one replay.
    assert_eq!(
        server.refresh_count(),
        refreshes + 3,
        "replayed exactly once"
    );
    assert_eq!(user.state(), UserState::LoggedIn, "the session is fine");
    user.refresh_profile().await.unwrap();
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Custom data and profile

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_data_set_by_the_admin_arrives_with_the_next_token() {
    let server = TestServer::start().await;
    let (app, _) = server.app();
    let user = email_user(&app, "custom").await;
    assert_eq!(user.custom_data_json(), None);

    server
        .set_custom_data(&user.id(), json!({"plan": "pro", "seats": 3}))
        .await;
    assert_eq!(
        user.custom_data_json(),
        None,
        "the current token predates it"
    );
    let data = user
        .refresh_custom_data()
        .await
        .unwrap()
        .expect("custom data");
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap(),
        json!({"plan": "pro", "seats": 3})
    );
    assert_eq!(user.custom_data_json(), Some(data));
    let me: Value =
        serde_json::from_str(&user.call_function("whoami", "[]").await.unwrap()).unwrap();
    assert_eq!(me["custom_data"], json!({"plan": "pro", "seats": 3}));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_token_profile_stays_as_at_login_while_custom_data_changes() {
    let server = TestServer::start().await;
    let (app, _) = server.app();
    let user = app
        .log_in(Credentials::jwt(custom_jwt(
            "ext-ada",
            json!({"name": "Ada", "email": "ada@example.com", "plan": "ignored"}),
        )))
        .await
        .unwrap();
    assert_eq!(user.profile().name.as_deref(), Some("Ada"));
    assert_eq!(user.profile().email.as_deref(), Some("ada@example.com"));

    server
        .set_custom_data(&user.id(), json!({"name": "Not Ada"}))
        .await;
    let data = user.refresh_custom_data().await.unwrap().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&data).unwrap(),
        json!({"name": "Not Ada"})
    );
    assert_eq!(user.profile().name.as_deref(), Some("Ada"));
    let profile = user.refresh_profile().await.unwrap();
    assert_eq!(
        profile.name.as_deref(),
        Some("Ada"),
        "{}",
        profile.data_json
    );
    assert_eq!(profile.email.as_deref(), Some("ada@example.com"));
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// Custom-function provider through a webhook

/// A webhook on loopback: `{"username": "ok-<x>"}` is user `ext-<x>`, "garbage" answers
/// non-JSON, "no-id" answers without an id, anything else is refused with 403.
async fn serve_webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let route = axum::routing::post(move |axum::Json(payload): axum::Json<Value>| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(payload.clone());
            let name = payload["username"].as_str().unwrap_or_default().to_string();
            if let Some(x) = name.strip_prefix("ok-") {
                (StatusCode::OK, format!(r#"{{"id": "ext-{x}"}}"#))
            } else if name == "garbage" {
                (StatusCode::OK, "<html>not json</html>".to_string())
            } else if name == "no-id" {
                (StatusCode::OK, "{}".to_string())
            } else {
                (StatusCode::FORBIDDEN, r#"{"error": "go away"}"#.to_string())
            }
        }
    });
    let router = axum::Router::new().route("/auth", route);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/auth", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, seen)
}

fn webhook_options(url: &str) -> ServerOptions {
    ServerOptions {
        custom_function: Some(format!("webhook_url = \"{url}\"")),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_accepts_and_rejects_custom_function_logins() {
    let (url, seen) = serve_webhook().await;
    let server = TestServer::with(webhook_options(&url)).await;
    let (app, _) = server.app();

    let user = app
        .log_in(Credentials::function(
            r#"{"username": "ok-grace", "pin": 7}"#,
        ))
        .await
        .unwrap();
    assert_eq!(user.provider_type(), "custom-function");
    assert_eq!(
        user.identities()
            .iter()
            .map(|i| i.id.as_str())
            .collect::<Vec<_>>(),
        vec!["ext-grace"]
    );
    let again = app
        .log_in(Credentials::function(r#"{"username": "ok-grace"}"#))
        .await
        .unwrap();
    assert_eq!(again.id(), user.id(), "same external id, same user");
    {
        let seen = seen.lock().unwrap();
        assert_eq!(seen[0]["username"], "ok-grace");
        assert_eq!(seen[0]["pin"], 7, "the payload goes to the webhook as is");
    }

    let users = server_user_count(&server).await;
    for refused in ["mallory", "no-id"] {
        let payload = json!({ "username": refused }).to_string();
        assert_service(
            app.log_in(Credentials::function(payload)).await,
            "AuthError",
            401,
        );
    }
    assert_service(
        app.log_in(Credentials::function(r#"{"username": "garbage"}"#))
            .await,
        "FunctionExecutionError",
        502,
    );
    assert_eq!(server_user_count(&server).await, users, "no user created");
    assert_eq!(app.all_users(), vec![user]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_that_is_down_is_a_function_execution_error_and_creates_nobody() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = TestServer::with(webhook_options(&format!("http://127.0.0.1:{port}/auth"))).await;
    let (app, _) = server.app();
    let users = server_user_count(&server).await;
    let err = app
        .log_in(Credentials::function(r#"{"username": "ok-grace"}"#))
        .await;
    assert_service(err, "FunctionExecutionError", 502);
    assert_eq!(server_user_count(&server).await, users, "no user created");
    assert!(app.all_users().is_empty());
    assert_eq!(app.current_user(), None);
    server.stop().await;
}

// ---------------------------------------------------------------------------------------------
// The app and its providers

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provider_that_is_off_is_not_found() {
    let server = TestServer::with(ServerOptions {
        custom_function: None,
        ..Default::default()
    })
    .await;
    let (app, _) = server.app();
    assert_service(
        app.log_in(Credentials::function(r#"{"username": "grace"}"#))
            .await,
        "AuthProviderNotFound",
        404,
    );
    assert!(app.all_users().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_app_fails_at_location_and_retries_it_next_time() {
    let server = TestServer::start().await;
    let (mut config, _) = server.config();
    config.app_id = "no-such-app".into();
    let app = App::new(config).unwrap();
    let before = server.server.request_count("location");
    let auth = app.email_password_auth();
    assert_service(
        auth.register_user(&unique_email("ghost"), PASSWORD).await,
        "InvalidParameter",
        404,
    );
    assert_service(
        app.log_in(Credentials::anonymous()).await,
        "InvalidParameter",
        404,
    );
    assert_eq!(
        server.server.request_count("location"),
        before + 2,
        "a failed location is not cached"
    );
    assert_eq!(
        server.server.request_count("register"),
        0,
        "nothing past location"
    );
    server.stop().await;
}
