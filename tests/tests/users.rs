//! Users on the device: login with every provider, current-user rules, anonymous reuse, linking,
//! and log out vs remove vs delete. Core against a real server.

use serde_json::json;
use sessionkit::{AppError, AuthEventKind, Credentials, UserState};
use sessionkit_tests::{Recorder, TestServer, custom_jwt, unique_email};

async fn email_user(app: &sessionkit::App, tag: &str) -> (sessionkit::User, String) {
    let email = unique_email(tag);
    app.email_password_auth()
        .register_user(&email, "password-123")
        .await
        .unwrap();
    let user = app
        .log_in(Credentials::email_password(&email, "password-123"))
        .await
        .unwrap();
    (user, email)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_provider_logs_in_and_becomes_current() {
    let server = TestServer::start().await;
    let (app, _) = server.app();

    let anon = app
        .log_in(Credentials::Anonymous { reuse: false })
        .await
        .unwrap();
    assert_eq!(anon.state(), UserState::LoggedIn);
    assert_eq!(anon.provider_type(), "anon-user");
    assert_eq!(app.current_user(), Some(anon.clone()));

    let (email, address) = email_user(&app, "every").await;
    assert_eq!(email.provider_type(), "local-userpass");
    assert_eq!(email.profile().email.as_deref(), Some(address.as_str()));
    assert_eq!(app.current_user(), Some(email.clone()));

    let key = email.api_keys().create("laptop").await.unwrap();
    let via_key = app
        .log_in(Credentials::api_key(key.key.clone().unwrap()))
        .await
        .unwrap();
    assert_eq!(via_key.id(), email.id(), "an API key logs in as its owner");

    let jwt = app
        .log_in(Credentials::jwt(custom_jwt(
            "ext-42",
            json!({"name": "Ada"}),
        )))
        .await
        .unwrap();
    assert_eq!(jwt.provider_type(), "custom-token");
    assert_eq!(jwt.profile().name.as_deref(), Some("Ada"));

    let func = app
        .log_in(Credentials::function(r#"{"username": "grace"}"#))
        .await
        .unwrap();
    assert_eq!(func.provider_type(), "custom-function");
    let again = app
        .log_in(Credentials::function(r#"{"username": "grace"}"#))
        .await
        .unwrap();
    assert_eq!(func.id(), again.id(), "same external id, same user");

    let ids: Vec<String> = app.all_users().iter().map(|u| u.id()).collect();
    assert_eq!(
        ids.len(),
        4,
        "anon, email (also via key), jwt, function: {ids:?}"
    );
    for user in app.all_users() {
        assert!(!user.device_id().is_empty());
        assert!(!user.identities().is_empty());
        assert!(user.access_token().is_some() && user.refresh_token().is_some());
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_reuse_returns_the_logged_in_anonymous_user_without_a_request() {
    let server = TestServer::start().await;
    let (app, _) = server.app();
    let first = app.log_in(Credentials::anonymous()).await.unwrap();
    let logins = server.server.request_count("login");
    let reused = app.log_in(Credentials::anonymous()).await.unwrap();
    assert_eq!(first, reused);
    assert_eq!(
        server.server.request_count("login"),
        logins,
        "reuse makes no request"
    );

    let fresh = app
        .log_in(Credentials::Anonymous { reuse: false })
        .await
        .unwrap();
    assert_ne!(fresh.id(), first.id());
    assert_eq!(app.current_user(), Some(fresh.clone()));

    // Reuse picks a logged-in anonymous user and makes it current.
    let (email, _) = email_user(&app, "reuse").await;
    assert_eq!(app.current_user(), Some(email));
    let reused = app.log_in(Credentials::anonymous()).await.unwrap();
    assert!(reused == first || reused == fresh);
    assert_eq!(app.current_user(), Some(reused));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_user_follows_the_most_recently_used_logged_in_user() {
    let server = TestServer::start().await;
    let (app, _) = server.app();
    let (a, _) = email_user(&app, "a").await;
    let (b, _) = email_user(&app, "b").await;
    let (c, _) = email_user(&app, "c").await;
    assert_eq!(app.current_user(), Some(c.clone()));

    app.switch_user(&a).unwrap();
    assert_eq!(app.current_user(), Some(a.clone()));

    a.log_out().await.unwrap();
    assert_eq!(a.state(), UserState::LoggedOut);
    assert_eq!(
        app.current_user(),
        Some(c.clone()),
        "the last used user before a"
    );
    assert!(matches!(
        app.switch_user(&a),
        Err(AppError::ClientUserNotLoggedIn { .. })
    ));

    c.log_out().await.unwrap();
    assert_eq!(app.current_user(), Some(b.clone()));
    b.log_out().await.unwrap();
    assert_eq!(app.current_user(), None, "never a logged-out user");
    assert_eq!(
        app.all_users().len(),
        3,
        "logged-out users are still listed"
    );

    // Logging out twice is a no-op.
    b.log_out().await.unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_out_revokes_on_the_server_and_anonymous_users_are_removed() {
    let server = TestServer::start().await;
    let (app, _) = server.app();
    let (user, email) = email_user(&app, "logout").await;
    let refresh = user.refresh_token().unwrap();
    user.log_out().await.unwrap();
    assert_eq!((user.access_token(), user.refresh_token()), (None, None));
    let (status, body) = server
        .post_raw("/api/client/v2.0/auth/session", Some(&refresh), None)
        .await;
    assert_eq!(status, 401, "the old refresh token is dead: {body}");
    assert_eq!(body["error_code"], "InvalidSession");

    // The same user comes back on the next login.
    let again = app
        .log_in(Credentials::email_password(&email, "password-123"))
        .await
        .unwrap();
    assert_eq!(again, user);
    assert_eq!(user.state(), UserState::LoggedIn);

    let anon = app
        .log_in(Credentials::Anonymous { reuse: false })
        .await
        .unwrap();
    anon.log_out().await.unwrap();
    assert_eq!(anon.state(), UserState::Removed);
    assert!(!app.all_users().contains(&anon));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remove_forgets_locally_and_delete_removes_the_account() {
    let server = TestServer::start().await;
    let (app, _) = server.app();
    let (kept, _) = email_user(&app, "kept").await;
    let (removed, _) = email_user(&app, "removed").await;
    let refresh = removed.refresh_token().unwrap();
    app.remove_user(&removed).await.unwrap();
    assert_eq!(removed.state(), UserState::Removed);
    assert!(!app.all_users().contains(&removed));
    assert_eq!(app.current_user(), Some(kept.clone()));
    assert_eq!(
        server
            .post_raw("/api/client/v2.0/auth/session", Some(&refresh), None)
            .await
            .0,
        401
    );
    assert!(matches!(
        app.remove_user(&removed).await,
        Err(AppError::ClientUserNotFound { .. })
    ));

    // A logged-out user can be removed without a request.
    kept.log_out().await.unwrap();
    app.remove_user(&kept).await.unwrap();
    assert!(app.all_users().is_empty());

    let (doomed, email) = email_user(&app, "doomed").await;
    app.delete_user(&doomed).await.unwrap();
    assert_eq!(doomed.state(), UserState::Removed);
    assert_eq!(app.current_user(), None);
    let err = app
        .log_in(Credentials::email_password(&email, "password-123"))
        .await
        .unwrap_err();
    assert_eq!(err.server_code(), Some("InvalidPassword"), "{err}");

    let (out, _) = email_user(&app, "out").await;
    out.log_out().await.unwrap();
    assert!(matches!(
        app.delete_user(&out).await,
        Err(AppError::ClientUserNotLoggedIn { .. })
    ));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn linking_adds_an_identity_to_the_same_user() {
    let server = TestServer::start().await;
    let (app, _) = server.app();
    let anon = app.log_in(Credentials::anonymous()).await.unwrap();
    let email = unique_email("link");
    app.email_password_auth()
        .register_user(&email, "password-123")
        .await
        .unwrap();
    anon.link_credentials(Credentials::email_password(&email, "password-123"))
        .await
        .unwrap();
    let providers: Vec<String> = anon
        .identities()
        .into_iter()
        .map(|i| i.provider_type)
        .collect();
    assert!(
        providers.contains(&"anon-user".into()) && providers.contains(&"local-userpass".into()),
        "{providers:?}"
    );

    // The linked user is no longer anonymous: logging out keeps it, and the email logs into it.
    anon.log_out().await.unwrap();
    assert_eq!(anon.state(), UserState::LoggedOut);
    let same = app
        .log_in(Credentials::email_password(&email, "password-123"))
        .await
        .unwrap();
    assert_eq!(same.id(), anon.id());

    let err = same
        .link_credentials(Credentials::anonymous())
        .await
        .unwrap_err();
    assert!(
        matches!(err, AppError::ClientUserAlreadyNamed { .. }),
        "{err}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_in_order_and_listeners_may_call_back() {
    let server = TestServer::start().await;
    let (app, _) = server.app();
    let recorder = Recorder::new();
    let _sub = app.subscribe(recorder.clone());
    // A listener that reads the SDK from inside the callback must not deadlock.
    let app2 = app.clone();
    let seen_current = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = seen_current.clone();
    let _reentrant = app.subscribe(std::sync::Arc::new(move |e: sessionkit::AuthEvent| {
        if e.kind == AuthEventKind::CurrentUserChanged {
            seen.lock()
                .unwrap()
                .push(app2.current_user().map(|u| u.id()));
        }
    }));
    let (user, _) = email_user(&app, "events").await;
    user.log_out().await.unwrap();
    let kinds = recorder.kinds();
    assert_eq!(kinds[0], AuthEventKind::InitialState);
    let signed_in = kinds
        .iter()
        .position(|k| *k == AuthEventKind::SignedIn)
        .expect("SignedIn");
    let signed_out = kinds
        .iter()
        .position(|k| *k == AuthEventKind::SignedOut)
        .expect("SignedOut");
    assert!(signed_in < signed_out, "{kinds:?}");
    assert_eq!(*seen_current.lock().unwrap(), vec![Some(user.id()), None]);

    let user_rec = Recorder::new();
    let sub = user.subscribe(user_rec.clone());
    assert_eq!(user_rec.kinds(), vec![AuthEventKind::InitialState]);
    drop(sub);
    let _other = app
        .log_in(sessionkit::Credentials::Anonymous { reuse: false })
        .await
        .unwrap();
    assert_eq!(
        user_rec.kinds(),
        vec![AuthEventKind::InitialState],
        "dropped, and another user's events anyway"
    );
    server.stop().await;
}

/// Reuse means one anonymous user per app on the device, however many log in at once (#12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_anonymous_logins_with_reuse_make_one_user() {
    let server = TestServer::start().await;
    let (app, _clock) = server.app();
    let logins: Vec<_> = (0..8)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { app.log_in(Credentials::anonymous()).await })
        })
        .collect();
    let mut ids = std::collections::HashSet::new();
    for login in logins {
        ids.insert(login.await.unwrap().unwrap().id());
    }
    assert_eq!(ids.len(), 1, "one anonymous user: {ids:?}");
    assert_eq!(app.all_users().len(), 1);
}

/// Events carry the user they are about, also once that user is gone from `all_users()`
/// (realm-kotlin's `AuthenticationChange` does the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_carry_the_user_handle_even_after_removal() {
    let server = TestServer::start().await;
    let (app, _) = server.app();
    let recorder = Recorder::new();
    let _sub = app.subscribe(recorder.clone());
    let initial = recorder.wait_for(AuthEventKind::InitialState);
    assert_eq!((initial.user_id, initial.user), (None, None));

    let (user, _) = email_user(&app, "handle").await;
    let signed_in = recorder.wait_for(AuthEventKind::SignedIn);
    assert_eq!(signed_in.user.as_ref(), Some(&user));

    app.remove_user(&user).await.unwrap();
    let removed = recorder.wait_for(AuthEventKind::UserRemoved);
    let handle = removed
        .user
        .expect("a UserRemoved event carries the removed user");
    assert_eq!(handle, user);
    assert_eq!(handle.state(), UserState::Removed);
    assert_eq!(handle.id(), removed.user_id.unwrap());

    // A late subscriber's InitialState carries the current user.
    let (other, _) = email_user(&app, "late").await;
    let late = Recorder::new();
    let _late_sub = app.subscribe(late.clone());
    let initial = late.wait_for(AuthEventKind::InitialState);
    assert_eq!(initial.user, Some(other));
    app.close().await;
    server.stop().await;
}
