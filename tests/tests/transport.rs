//! What the client does with bad configuration and bad servers: insecure URLs, unreachable and
//! silent servers, malformed answers, the lazy location lookup and its retry, redirects, and
//! that no token or password reaches a log line, an error or a Debug output.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::{get, post};
use serde_json::json;
use sessionkit::{App, AppConfig, AppError, Credentials, LogLevel, Logger, StorageConfig};
use sessionkit_tests::{APP_ID, TestServer, unique_email};

/// Serves `router` on a free loopback port; returns its base URL.
async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

fn app_for(base_url: &str) -> App {
    let mut config = AppConfig::new(APP_ID, base_url);
    config.request_timeout_ms = 2_000;
    App::new(config).unwrap()
}

/// A server whose location answer points at `hostname` and whose login answers `login`.
async fn fake_server(hostname: Option<&str>, login: serde_json::Value) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let host = hostname.map_or_else(|| format!("http://{addr}"), str::to_string);
    let location = json!({"deployment_model": "GLOBAL", "location": "US-VA", "hostname": host, "ws_hostname": "ws://x"});
    let router = Router::new()
        .route(
            &format!("/api/client/v2.0/app/{APP_ID}/location"),
            get(move || async move { axum::Json(location) }),
        )
        .route(
            &format!("/api/client/v2.0/app/{APP_ID}/auth/providers/anon-user/login"),
            post(move || async move { axum::Json(login) }),
        );
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

#[test]
fn bad_configuration_is_refused_with_the_key_named() {
    let err = App::new(AppConfig::new(APP_ID, "http://example.com")).unwrap_err();
    assert!(matches!(err, AppError::InsecureUrl { .. }), "{err}");
    assert!(
        err.to_string().contains("allow_insecure_http"),
        "the error says what to do: {err}"
    );
    let mut allowed = AppConfig::new(APP_ID, "http://example.com");
    allowed.allow_insecure_http = true;
    assert!(App::new(allowed).is_ok());

    let cases: Vec<(AppConfig, &str)> = vec![
        (AppConfig::new("", "https://example.com"), "app_id"),
        (AppConfig::new("a/b", "https://example.com"), "app_id"),
        (AppConfig::new(APP_ID, "not a url"), "base_url"),
        (AppConfig::new(APP_ID, "ftp://example.com"), "base_url"),
        (
            {
                let mut c = AppConfig::new(APP_ID, "https://example.com");
                c.request_timeout_ms = 0;
                c
            },
            "request_timeout_ms",
        ),
        (
            {
                let mut c = AppConfig::new(APP_ID, "https://example.com");
                c.device.sdk_version.clear();
                c
            },
            "device.sdk_version",
        ),
        (
            {
                let mut c = AppConfig::new(APP_ID, "https://example.com");
                c.storage = StorageConfig::File {
                    dir: std::env::temp_dir(),
                    encryption_key: Some(vec![0; 16]),
                };
                c
            },
            "encryption_key",
        ),
    ];
    for (config, key) in cases {
        let err = App::new(config).unwrap_err();
        assert!(
            matches!(err, AppError::InvalidArgument { .. }),
            "{key}: {err}"
        );
        assert!(err.to_string().contains(key), "{key} not named in: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_silent_servers() {
    // Nothing listens on a port we bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = app_for(&format!("http://127.0.0.1:{port}"))
        .log_in(Credentials::anonymous())
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Network { .. }), "{err:?}");

    // A server that accepts and never answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = held.clone();
    tokio::spawn(async move {
        while let Ok((socket, _)) = silent.accept().await {
            keep.lock().unwrap().push(socket);
        }
    });
    let mut config = AppConfig::new(APP_ID, format!("http://{addr}"));
    config.request_timeout_ms = 300;
    let err = App::new(config)
        .unwrap()
        .log_in(Credentials::anonymous())
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Timeout { .. }), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_answers_are_reported_not_trusted() {
    let good = json!({"access_token": "x", "refresh_token": "y", "user_id": "u", "device_id": "d"});
    let base = fake_server(None, good.clone()).await;
    let err = app_for(&base)
        .log_in(Credentials::anonymous())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppError::BadToken { .. }),
        "a non-JWT access token: {err:?}"
    );

    let mut missing = good.clone();
    missing.as_object_mut().unwrap().remove("user_id");
    let base = fake_server(None, missing).await;
    let err = app_for(&base)
        .log_in(Credentials::anonymous())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, AppError::MalformedResponse { message } if message.contains("user_id")),
        "{err:?}"
    );

    // Location may not send the client to plain http elsewhere.
    let base = fake_server(Some("http://example.com"), good).await;
    let err = app_for(&base)
        .log_in(Credentials::anonymous())
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::InsecureUrl { .. }), "{err:?}");

    // A JSON error body is an error whatever the status (realm-core's rule).
    let base = fake_server(None, json!({"error": "nope", "error_code": "SomethingNew"})).await;
    let err = app_for(&base)
        .log_in(Credentials::anonymous())
        .await
        .unwrap_err();
    assert_eq!(
        err.server_code(),
        Some("SomethingNew"),
        "unknown codes are kept as sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn location_is_fetched_once_and_retried_after_a_failure() {
    let server = TestServer::start().await;
    let real = server.base_url();
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    let router = Router::new().route(
        &format!("/api/client/v2.0/app/{APP_ID}/location"),
        get(move || {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let real = real.clone();
            async move {
                if n == 0 {
                    (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response()
                } else {
                    axum::Json(json!({"deployment_model": "GLOBAL", "location": "US-VA", "hostname": real, "ws_hostname": "ws://x"}))
                        .into_response()
                }
            }
        }),
    );
    let locator = serve(router).await;
    let app = app_for(&locator);
    let err = app.log_in(Credentials::anonymous()).await.unwrap_err();
    assert_eq!(err.http_status(), Some(503), "{err:?}");
    // The next request looks location up again, then talks to the host it names.
    let user = app.log_in(Credentials::anonymous()).await.unwrap();
    user.refresh_access_token().await.unwrap();
    user.call_function("sum", "[1]").await.unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "once more after the failure, then cached"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_app_and_update_base_url() {
    let server = TestServer::start().await;
    let app = App::new(AppConfig::new("no-such-app", server.base_url())).unwrap();
    let err = app.log_in(Credentials::anonymous()).await.unwrap_err();
    assert_eq!(
        (err.http_status(), err.server_code()),
        (Some(404), Some("InvalidParameter")),
        "{err:?}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = app_for(&format!("http://127.0.0.1:{port}"));
    let dead = app.base_url();
    assert!(
        app.update_base_url(&format!("http://127.0.0.1:{port}/"))
            .await
            .is_err()
    );
    assert_eq!(app.base_url(), dead, "a failed update keeps the old URL");
    assert!(matches!(
        app.update_base_url("http://example.com").await,
        Err(AppError::InsecureUrl { .. })
    ));
    app.update_base_url(&format!("{}/", server.base_url()))
        .await
        .unwrap();
    assert_eq!(app.base_url(), server.base_url(), "trailing slash trimmed");
    app.log_in(Credentials::anonymous()).await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_are_followed_but_never_to_plain_http_elsewhere() {
    let server = TestServer::start().await;
    let real = server.base_url();
    let router = Router::new().fallback(move |uri: axum::http::Uri| {
        let real = real.clone();
        async move { Redirect::permanent(&format!("{real}{uri}")) }
    });
    let app = app_for(&serve(router).await);
    app.log_in(Credentials::anonymous()).await.unwrap();

    let router = Router::new().fallback(|uri: axum::http::Uri| async move {
        Redirect::permanent(&format!("http://example.com{uri}"))
    });
    let err = app_for(&serve(router).await)
        .log_in(Credentials::anonymous())
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Network { .. }), "{err:?}");
    server.stop().await;
}

#[derive(Default)]
struct Captured(Mutex<Vec<String>>);

impl Logger for Captured {
    fn log(&self, level: LogLevel, target: &str, message: &str) {
        self.0
            .lock()
            .unwrap()
            .push(format!("{level} {target} {message}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_reach_logs_errors_or_debug_output() {
    let server = TestServer::start().await;
    let logs = Arc::new(Captured::default());
    let (mut config, _) = server.config();
    config.logger = Some(logs.clone());
    let app = App::new(config).unwrap();
    let email = unique_email("secret");
    let password = "pw-that-must-not-leak";
    app.email_password_auth()
        .register_user(&email, password)
        .await
        .unwrap();
    let credentials = Credentials::email_password(&email, password);
    let user = app.log_in(credentials.clone()).await.unwrap();
    user.refresh_access_token().await.unwrap();
    let key = user.api_keys().create("k").await.unwrap();
    let wrong = app
        .log_in(Credentials::email_password(&email, "wrong-password"))
        .await
        .unwrap_err();
    server.revoke_sessions(&user.id()).await;
    let expired = user.refresh_access_token().await.unwrap_err();

    let secrets = [
        password.to_string(),
        "wrong-password".to_string(),
        key.key.clone().unwrap(),
    ];
    let lines = logs.0.lock().unwrap().clone();
    assert!(!lines.is_empty(), "the logger received the SDK's lines");
    let texts = [
        format!("{credentials:?}"),
        format!("{key:?}"),
        format!("{user:?}"),
        format!("{app:?}"),
        format!("{wrong} {wrong:?} {expired} {expired:?}"),
        lines.join("\n"),
    ];
    for text in &texts {
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "a secret leaked into: {text}"
            );
        }
        // Any JWT (header.payload.signature) would start with the header's base64 "eyJ".
        assert!(!text.contains("eyJ"), "a token leaked into: {text}");
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_follow_a_redirect_to_another_origin() {
    // Another origin, counting what reaches it.
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let elsewhere = serve(Router::new().fallback(move || {
        counter.fetch_add(1, Ordering::SeqCst);
        async { StatusCode::OK }
    }))
    .await;
    // The app's server answers location itself, then sends the login (with its body) on.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let location = json!({"hostname": format!("http://{addr}"), "ws_hostname": "ws://x"});
    let target = elsewhere.clone();
    let router = Router::new()
        .route(
            &format!("/api/client/v2.0/app/{APP_ID}/location"),
            get(move || async move { axum::Json(location) }),
        )
        .fallback(move |uri: axum::http::Uri| {
            let target = target.clone();
            async move { Redirect::temporary(&format!("{target}{uri}")) }
        });
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let app = app_for(&format!("http://{addr}"));
    let err = app
        .log_in(Credentials::email_password(
            "ada@example.com",
            "not-for-elsewhere",
        ))
        .await
        .unwrap_err();
    assert!(matches!(err, AppError::Network { .. }), "{err:?}");
    assert!(err.to_string().contains("another origin"), "{err}");
    assert_eq!(
        seen.load(Ordering::SeqCst),
        0,
        "the password went elsewhere"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_over_max_response_bytes_is_refused_unread() {
    // One declares its length, one streams without it: both are cut off at the limit.
    let declared = get(|| async { "x".repeat(64 * 1024) });
    let streamed = get(|| async {
        let chunks = (0..64).map(|_| Ok::<_, std::io::Error>(vec![b'y'; 1024]));
        axum::body::Body::from_stream(futures_util::stream::iter(chunks))
    });
    let mut base = String::new();
    for location in [declared, streamed] {
        let router =
            Router::new().route(&format!("/api/client/v2.0/app/{APP_ID}/location"), location);
        base = serve(router).await;
        let mut config = AppConfig::new(APP_ID, base.as_str());
        config.max_response_bytes = 16 * 1024;
        let err = App::new(config)
            .unwrap()
            .log_in(Credentials::anonymous())
            .await
            .unwrap_err();
        assert!(matches!(err, AppError::MalformedResponse { .. }), "{err:?}");
        assert!(err.to_string().contains("max_response_bytes"), "{err}");
    }

    let mut config = AppConfig::new(APP_ID, base.as_str());
    config.max_response_bytes = 0;
    assert!(matches!(
        App::new(config),
        Err(AppError::InvalidArgument { .. })
    ));
}
