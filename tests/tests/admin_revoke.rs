//! A backend revoking a user's sessions with the admin client (what `sessionkit-server admin
//! users revoke` runs): the device learns it at its next refresh, and the session error
//! handler is called once.

use std::sync::{Arc, Mutex};

use sessionkit::{AppError, Credentials, SessionError, SessionErrorKind, User, UserState};
use sessionkit_server::admin_client::AdminClient;
use sessionkit_tests::{ADMIN_PRIVATE, ADMIN_PUBLIC, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_from_the_backend_ends_the_session_within_one_refresh() {
    let server = TestServer::start().await;
    let (app, _) = server.app();
    let calls: Arc<Mutex<Vec<(String, SessionErrorKind)>>> = Arc::default();
    let sink = calls.clone();
    app.set_session_error_handler(Some(Arc::new(move |user: User, error: SessionError| {
        sink.lock().unwrap().push((user.id(), error.kind));
    })));
    let user = app.log_in(Credentials::anonymous()).await.unwrap();

    let admin = AdminClient::log_in(&server.base_url(), ADMIN_PUBLIC, ADMIN_PRIVATE)
        .await
        .unwrap();
    admin
        .revoke_sessions(&server.app_id, &user.id())
        .await
        .unwrap();

    let err = user.refresh_access_token().await.unwrap_err();
    assert!(matches!(err, AppError::SessionExpired { .. }), "{err:?}");
    // An anonymous user whose session ended is gone for good (REALM-SEMANTICS.md).
    assert_eq!(user.state(), UserState::Removed);
    // Once, however often the app asks afterwards.
    let _ = user.refresh_access_token().await;
    let _ = user.valid_access_token(None).await;
    assert_eq!(
        *calls.lock().unwrap(),
        vec![(user.id(), SessionErrorKind::SessionRevoked)]
    );
    server.stop().await;
}
