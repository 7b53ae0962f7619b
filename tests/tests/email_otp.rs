//! Email one-time codes (#23) through the public API: what the SDK sends (path, body) and how it
//! reads the answers, against a stub that records the requests; then the flow against the real
//! server, with the code taken from its dev outbox as the email/password tests take their
//! confirmation tokens.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sessionkit::{App, AppConfig, AppError, Credentials, StorageConfig, User};
use sessionkit_tests::{APP_ID, ServerOptions, TestServer, unique_email};

/// One request the stub received: its path and JSON body.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// A server error answer as sessionkit-server words them.
fn error(status: StatusCode, code: &str) -> (StatusCode, HeaderMap, String) {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    if status == StatusCode::TOO_MANY_REQUESTS {
        headers.insert("retry-after", "60".parse().unwrap());
    }
    let body = json!({"error": format!("{code} from the stub"), "error_code": code});
    (status, headers, body.to_string())
}

/// A stub of the email-otp endpoints; `send` answers by address (`busy@`: 429, `malformed`:
/// 400, else 204), `login` refuses every code (`000000`: InvalidCode, else CodeExpired).
async fn stub() -> (App, Seen) {
    let seen: Seen = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let host = base.clone();
    let otp = "/api/client/v2.0/app/{id}/auth/providers/email-otp";
    let (on_send, on_login) = (Arc::clone(&seen), Arc::clone(&seen));
    let router = axum::Router::new()
        .route(
            "/api/client/v2.0/app/{id}/location",
            get(move || {
                let doc = json!({"deployment_model": "GLOBAL", "location": "local",
                    "hostname": host, "ws_hostname": host.replace("http", "ws")});
                async move { axum::Json(doc) }
            }),
        )
        .route(
            &format!("{otp}/send"),
            post(
                move |uri: axum::http::Uri, axum::Json(body): axum::Json<Value>| {
                    let email = body["email"].as_str().unwrap_or_default().to_string();
                    on_send.lock().unwrap().push((uri.to_string(), body));
                    async move {
                        if email.starts_with("busy@") {
                            error(StatusCode::TOO_MANY_REQUESTS, "TooManyRequests")
                        } else if email == "malformed" {
                            error(StatusCode::BAD_REQUEST, "BadRequest")
                        } else {
                            (StatusCode::NO_CONTENT, HeaderMap::new(), String::new())
                        }
                    }
                },
            ),
        )
        .route(
            &format!("{otp}/login"),
            post(
                move |uri: axum::http::Uri, axum::Json(body): axum::Json<Value>| {
                    let code = body["code"].as_str().unwrap_or_default().to_string();
                    on_login.lock().unwrap().push((uri.to_string(), body));
                    async move {
                        let code = if code == "000000" {
                            "InvalidCode"
                        } else {
                            "CodeExpired"
                        };
                        error(StatusCode::UNAUTHORIZED, code)
                    }
                },
            ),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });
    let mut config = AppConfig::new(APP_ID, &base);
    config.storage = StorageConfig::InMemory;
    (App::new(config).unwrap(), seen)
}

/// The code and status of a `Service` error.
#[track_caller]
fn service<T: std::fmt::Debug>(result: Result<T, AppError>) -> (String, u16) {
    match result {
        Err(AppError::Service {
            code, http_status, ..
        }) => (code, http_status),
        other => panic!("expected a Service error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_posts_the_address_and_reads_a_204_as_done() {
    let (app, seen) = stub().await;
    app.email_otp().send("ada@example.com").await.unwrap();
    let sent = seen.lock().unwrap().clone();
    assert_eq!(
        sent,
        vec![(
            format!("/api/client/v2.0/app/{APP_ID}/auth/providers/email-otp/send"),
            json!({"email": "ada@example.com"}),
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_errors_are_service_errors_and_an_empty_address_sends_nothing() {
    let (app, seen) = stub().await;
    let otp = app.email_otp();
    let busy = otp.send("busy@example.com").await;
    assert_eq!(
        busy.as_ref().unwrap_err().retry_after(),
        Some(std::time::Duration::from_secs(60))
    );
    assert_eq!(service(busy), ("TooManyRequests".into(), 429));
    assert_eq!(
        service(otp.send("malformed").await),
        ("BadRequest".into(), 400)
    );
    let before = seen.lock().unwrap().len();
    for empty in ["", "  "] {
        let err = otp.send(empty).await.unwrap_err();
        assert!(
            matches!(err, AppError::InvalidArgument { .. }) && err.to_string().contains("email"),
            "{err}"
        );
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        before,
        "no request for an empty address"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_logs_in_through_the_email_otp_provider_and_refusals_keep_their_codes() {
    let (app, seen) = stub().await;
    let wrong = app
        .log_in(Credentials::email_otp("ada@example.com", "000000"))
        .await;
    assert_eq!(service(wrong), ("InvalidCode".into(), 401));
    let stale = app
        .log_in(Credentials::email_otp("ada@example.com", "123456"))
        .await;
    assert_eq!(service(stale), ("CodeExpired".into(), 401));
    assert!(app.all_users().is_empty(), "a refused code logs nobody in");

    let sent = seen.lock().unwrap().clone();
    assert_eq!(sent.len(), 2);
    let (path, body) = &sent[1];
    assert_eq!(
        path,
        &format!("/api/client/v2.0/app/{APP_ID}/auth/providers/email-otp/login")
    );
    assert_eq!(body["email"], "ada@example.com");
    assert_eq!(body["code"], "123456");
    assert!(
        body["options"]["device"].is_object(),
        "the usual options: {body}"
    );
    assert_eq!(
        body.as_object().unwrap().len(),
        3,
        "email, code, options: {body}"
    );

    // Empty fields are refused before any request.
    for (email, code) in [("", "123456"), ("ada@example.com", "")] {
        let err = app
            .log_in(Credentials::email_otp(email, code))
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::InvalidArgument { .. }), "{err}");
    }
    assert_eq!(seen.lock().unwrap().len(), 2);
}

// ---------------------------------------------------------------------------------------------
// Against the real server (its `[app.providers.email-otp]`, codes read from the dev outbox)

/// Every test server's app has `[app.providers.email-otp]` (codes live 300 s).
async fn otp_server() -> TestServer {
    TestServer::with(ServerOptions::default()).await
}

/// The newest one-time code the server mailed to `email` (outbox kind `email-otp`).
async fn mailed_code(server: &TestServer, email: &str) -> String {
    let mail = server
        .outbox(email)
        .await
        .into_iter()
        .rfind(|m| m["kind"] == "email-otp")
        .unwrap_or_else(|| panic!("no email-otp mail for {email}"));
    mail["token"]
        .as_str()
        .expect("the code in the token field")
        .to_string()
}

/// Another code of the same length: wrong for sure.
fn wrong(code: &str) -> String {
    let last = code.chars().last().and_then(|c| c.to_digit(10)).unwrap();
    format!("{}{}", &code[..code.len() - 1], (last + 1) % 10)
}

fn providers(user: &User) -> Vec<String> {
    let mut types: Vec<String> = user
        .identities()
        .into_iter()
        .map(|i| i.provider_type)
        .collect();
    types.sort();
    types
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mailed_code_logs_in_once_as_a_user_with_an_email_otp_identity() {
    let server = otp_server().await;
    let (app, _) = server.app();
    let email = unique_email("otp");
    app.email_otp().send(&email).await.unwrap();
    let code = mailed_code(&server, &email).await;
    assert!(
        code.len() >= 6 && code.chars().all(|c| c.is_ascii_digit()),
        "{code}"
    );

    let refused = app
        .log_in(Credentials::email_otp(&email, wrong(&code)))
        .await;
    assert_eq!(service(refused), ("InvalidCode".into(), 401));

    let user = app
        .log_in(Credentials::email_otp(&email, &code))
        .await
        .unwrap();
    assert_eq!(user.provider_type(), "email-otp");
    assert_eq!(providers(&user), ["email-otp"]);
    assert_eq!(user.profile().email.as_deref(), Some(email.as_str()));
    assert_eq!(app.current_user().map(|u| u.id()), Some(user.id()));

    // Single use: the same code again finds no live code.
    let again = app.log_in(Credentials::email_otp(&email, &code)).await;
    assert_eq!(service(again), ("CodeExpired".into(), 401));

    // A new code for the same address is the same user.
    app.email_otp().send(&email).await.unwrap();
    let next = mailed_code(&server, &email).await;
    let same = app
        .log_in(Credentials::email_otp(&email, &next))
        .await
        .unwrap();
    assert_eq!(same.id(), user.id());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_linked_to_an_anonymous_user_later_logs_into_that_user() {
    let server = otp_server().await;
    let (app, _) = server.app();
    let anon = app.log_in(Credentials::anonymous()).await.unwrap();
    let email = unique_email("otp-link");
    app.email_otp().send(&email).await.unwrap();
    let code = mailed_code(&server, &email).await;
    anon.link_credentials(Credentials::email_otp(&email, &code))
        .await
        .unwrap();
    assert_eq!(providers(&anon), ["anon-user", "email-otp"]);

    let (other, _) = server.app();
    other.email_otp().send(&email).await.unwrap();
    let code = mailed_code(&server, &email).await;
    let user = other
        .log_in(Credentials::email_otp(&email, &code))
        .await
        .unwrap();
    assert_eq!(user.id(), anon.id());
    server.stop().await;
}
