//! The error-code table of PROTOCOL.md, code by code: what each becomes in the SDK when it comes
//! back from an account call against the real server. The two codes the real server cannot be
//! made to send on demand are served by a stub, to pin the client's side of the mapping.

use axum::http::StatusCode;
use reqwest::Method;
use serde_json::{Value, json};
use sessionkit::{App, AppError, Credentials, SessionErrorKind, User};
use sessionkit_tests::{APP_ID, ServerOptions, TestServer, unique_email};

const PASSWORD: &str = "password-123";

/// The code and status of a server error, or a panic naming what came instead.
#[track_caller]
fn service<T: std::fmt::Debug>(result: Result<T, AppError>) -> (String, u16) {
    match result {
        Err(AppError::Service {
            code, http_status, ..
        }) => (code, http_status),
        other => panic!("expected AppError::Service, got {other:?}"),
    }
}

async fn email_user(app: &App, tag: &str) -> (User, String) {
    let email = unique_email(tag);
    app.email_password_auth()
        .register_user(&email, PASSWORD)
        .await
        .unwrap();
    let user = app
        .log_in(Credentials::email_password(&email, PASSWORD))
        .await
        .unwrap();
    (user, email)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_reachable_code_becomes_a_service_error_with_its_status() {
    let server = TestServer::with(ServerOptions {
        auto_confirm: false,
        reset_function: "fail".into(),
        custom_function: None,
        ..Default::default()
    })
    .await;
    let (app, _) = server.app();
    let auth = app.email_password_auth();
    let login =
        |email: &str, password: &str| app.log_in(Credentials::email_password(email, password));

    // A confirmed user, and one that never confirms.
    let email = unique_email("codes");
    auth.register_user(&email, PASSWORD).await.unwrap();
    let mail = server.outbox(&email).await.pop().expect("confirm mail");
    let (token, token_id) = (
        mail["token"].as_str().unwrap().to_string(),
        mail["tokenId"].as_str().unwrap().to_string(),
    );
    auth.confirm_user(&token, &token_id).await.unwrap();
    let user = login(&email, PASSWORD).await.unwrap();
    let pending = unique_email("pending");
    auth.register_user(&pending, PASSWORD).await.unwrap();
    let disabled = unique_email("disabled");
    let (status, body) = server
        .admin(
            Method::POST,
            "/users",
            Some(json!({"email": disabled, "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    server
        .disable_user(body["_id"].as_str().expect("admin user id"))
        .await;
    let key = user.api_keys().create("k").await.unwrap();
    let nobody = unique_email("nobody");

    let table: Vec<(&str, u16, Result<(), AppError>)> = vec![
        (
            "InvalidPassword",
            401,
            login(&email, "wrong-password").await.map(drop),
        ),
        (
            "InvalidPassword",
            401,
            login(&nobody, PASSWORD).await.map(drop),
        ),
        (
            "UserDisabled",
            401,
            login(&disabled, PASSWORD).await.map(drop),
        ),
        ("AuthError", 401, login(&pending, PASSWORD).await.map(drop)),
        (
            "AuthError",
            401,
            app.log_in(Credentials::api_key("not-a-key"))
                .await
                .map(drop),
        ),
        (
            "AccountNameInUse",
            409,
            auth.register_user(&email, PASSWORD).await,
        ),
        (
            "UserNotFound",
            404,
            auth.send_reset_password_email(&nobody).await,
        ),
        (
            "UserNotFound",
            404,
            auth.resend_confirmation_email(&nobody).await,
        ),
        (
            "UserAlreadyConfirmed",
            409,
            auth.resend_confirmation_email(&email).await,
        ),
        (
            "UserpassTokenInvalid",
            400,
            auth.confirm_user(&token, &token_id).await,
        ),
        (
            "UserpassTokenInvalid",
            400,
            auth.reset_password("bad", "0123456789abcdef01234567", "new-password-1")
                .await,
        ),
        (
            "APIKeyNotFound",
            404,
            user.api_keys()
                .fetch("0123456789abcdef01234567")
                .await
                .map(drop),
        ),
        (
            "APIKeyAlreadyExists",
            409,
            user.api_keys().create("k").await.map(drop),
        ),
        (
            "AuthProviderNotFound",
            404,
            app.log_in(Credentials::function(r#"{"username": "x"}"#))
                .await
                .map(drop),
        ),
        (
            "BadRequest",
            400,
            auth.register_user(&nobody, "short").await,
        ),
        (
            "BadRequest",
            400,
            auth.call_reset_password_function(&email, "new-password-1", "[]")
                .await,
        ),
        (
            "BadRequest",
            400,
            user.call_function("sum", r#"[1, "two"]"#).await.map(drop),
        ),
        (
            "FunctionNotFound",
            404,
            user.call_function("missing", "[]").await.map(drop),
        ),
    ];
    for (i, (code, status, result)) in table.into_iter().enumerate() {
        assert_eq!(service(result), (code.to_string(), status), "row {i}");
    }
    assert!(key.key.is_some());
    server.stop().await;
}

/// `InvalidSession` and `UserDisabled` on a refresh token end the session: the SDK turns them
/// into `SessionExpired` with the reason, not a `Service` error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_refresh_token_on_an_account_call_is_session_expired() {
    let server = TestServer::start().await;
    let (app, _) = server.app();

    let (revoked, _) = email_user(&app, "revoked").await;
    server.revoke_sessions(&revoked.id()).await;
    let err = revoked.api_keys().fetch_all().await.unwrap_err();
    assert!(
        matches!(
            err,
            AppError::SessionExpired {
                kind: SessionErrorKind::SessionRevoked,
                ..
            }
        ),
        "InvalidSession on api_keys: {err:?}"
    );

    let (disabled, _) = email_user(&app, "disabled").await;
    server.disable_user(&disabled.id()).await;
    let err = disabled.api_keys().create("k").await.unwrap_err();
    assert!(
        matches!(
            err,
            AppError::SessionExpired {
                kind: SessionErrorKind::UserDisabled,
                ..
            }
        ),
        "UserDisabled on api_keys: {err:?}"
    );

    // A deleted user's access token is refused (InvalidSession), and so is the refresh.
    let (deleted, _) = email_user(&app, "deleted").await;
    server.delete_user_on_server(&deleted.id()).await;
    let err = deleted.call_function("sum", "[1]").await.unwrap_err();
    assert!(
        matches!(
            err,
            AppError::SessionExpired {
                kind: SessionErrorKind::UserDeleted,
                ..
            }
        ),
        "InvalidSession on functions/call: {err:?}"
    );
    server.stop().await;
}

/// Through `User::request` an `InvalidSession` answer is returned as it came, not as an error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_hands_back_invalid_session_as_a_response() {
    let server = TestServer::start().await;
    let (app, _) = server.app();
    let (user, _) = email_user(&app, "request").await;
    let r = user
        .request("DELETE", "/api/client/v2.0/auth/session", None)
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let body: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(body["error_code"], "InvalidSession");
    server.stop().await;
}

/// The webhook code: a custom-function provider whose webhook cannot be reached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_webhook_is_function_execution_error() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let server = TestServer::with(ServerOptions {
        custom_function: Some(format!("webhook_url = \"http://127.0.0.1:{port}/\"")),
        ..Default::default()
    })
    .await;
    let (app, _) = server.app();
    let err = app
        .log_in(Credentials::function(r#"{"username": "x"}"#))
        .await;
    assert_eq!(service(err), ("FunctionExecutionError".into(), 502));
    server.stop().await;
}

/// `MaintenanceInProgress` (only while the real server shuts down) and `InternalServerError`
/// (only on a server fault) cannot be provoked on demand, so a stub answers them; an unknown
/// code is kept as sent. All of them leave the session alone (transient or not a 401).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codes_the_real_server_cannot_send_on_demand_are_kept_as_sent() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let host = base.clone();
    let error = |status: StatusCode, code: &str| {
        let body = json!({"error": format!("{code} from the stub"), "error_code": code});
        (
            status,
            [("content-type", "application/json")],
            body.to_string(),
        )
    };
    let up = "/api/client/v2.0/app/{id}/auth/providers/local-userpass";
    let router = axum::Router::new()
        .route(
            "/api/client/v2.0/app/{id}/location",
            axum::routing::get(move || {
                let doc = json!({"deployment_model": "GLOBAL", "location": "local",
                    "hostname": host, "ws_hostname": host.replace("http", "ws")});
                async move { axum::Json(doc) }
            }),
        )
        .route(
            &format!("{up}/register"),
            axum::routing::post(move || async move {
                error(StatusCode::SERVICE_UNAVAILABLE, "MaintenanceInProgress")
            }),
        )
        .route(
            &format!("{up}/reset/send"),
            axum::routing::post(move || async move {
                error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError")
            }),
        )
        .route(
            &format!("{up}/confirm/send"),
            axum::routing::post(
                move || async move { error(StatusCode::CONFLICT, "SomeFutureCode") },
            ),
        );
    tokio::spawn(async move { axum::serve(listener, router).await });

    let mut config = sessionkit::AppConfig::new(APP_ID, &base);
    config.storage = sessionkit::StorageConfig::InMemory;
    let app = App::new(config).unwrap();
    let auth = app.email_password_auth();

    let err = auth.register_user("a@example.com", PASSWORD).await;
    assert!(err.as_ref().unwrap_err().is_transient());
    assert_eq!(service(err), ("MaintenanceInProgress".into(), 503));
    let err = auth.send_reset_password_email("a@example.com").await;
    assert!(err.as_ref().unwrap_err().is_transient());
    assert_eq!(service(err), ("InternalServerError".into(), 500));
    let err = auth.resend_confirmation_email("a@example.com").await;
    assert!(!err.as_ref().unwrap_err().is_transient());
    assert_eq!(service(err), ("SomeFutureCode".into(), 409));
}

/// Refusals that never reach the server: the SDK names the bad argument.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_arguments_are_refused_before_sending() {
    let server = TestServer::start().await;
    let (app, _) = server.app();
    let (user, email) = email_user(&app, "local").await;
    let auth = app.email_password_auth();
    let results: Vec<Result<(), AppError>> = vec![
        auth.register_user("", PASSWORD).await,
        auth.retry_custom_confirmation(" ").await,
        auth.call_reset_password_function(&email, PASSWORD, "not json")
            .await,
        auth.call_reset_password_function(&email, PASSWORD, r#"{"a": 1}"#)
            .await,
        user.call_function("sum", "[1,").await.map(drop),
        user.call_function("sum", "3").await.map(drop),
        user.call_function("", "[]").await.map(drop),
        user.api_keys().create("").await.map(drop),
        user.api_keys().fetch("a/b").await.map(drop),
        user.api_keys().enable("").await,
        user.request("GET", "relative", None).await.map(drop),
        user.request("GET", "//elsewhere.example/", None)
            .await
            .map(drop),
        user.request("CONNECT", "/", None).await.map(drop),
        user.request("POST", "/", Some("{")).await.map(drop),
    ];
    for (i, r) in results.into_iter().enumerate() {
        assert!(
            matches!(r, Err(AppError::InvalidArgument { .. })),
            "row {i}: {r:?}"
        );
    }
    server.stop().await;
}
