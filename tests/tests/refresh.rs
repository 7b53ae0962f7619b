//! Token lifecycle against the real server: transparent refresh, 401 refresh-and-replay-once,
//! single flight, the end of a session (with exactly one callback), transient failures, clock
//! skew and the proactive scheduler. Time moves by the client's ManualClock and the server's test
//! clock; nothing sleeps.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessionkit::{
    App, AppError, AuthEventKind, Credentials, FileStore, SessionError, SessionErrorKind,
    StorageConfig, User, UserState,
};
use sessionkit_tests::{APP_ID, Recorder, ServerOptions, TestServer, email_user, temp_dir};

/// Counts session-error callbacks and keeps the last one.
fn handler(app: &App) -> Arc<Mutex<Vec<(String, SessionError)>>> {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let sink = calls.clone();
    app.set_session_error_handler(Some(Arc::new(move |user: User, error: SessionError| {
        sink.lock().unwrap().push((user.id(), error));
    })));
    calls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_near_expiry_is_refreshed_before_it_is_handed_out() {
    let server = TestServer::start().await;
    let (app, clock) = server.app();
    let user = email_user(&app, "refresh").await;
    let before = server.refresh_count();
    user.valid_access_token(None).await.unwrap();
    assert_eq!(
        server.refresh_count(),
        before,
        "a fresh token is handed out as is"
    );

    assert_eq!(
        user.fresh_access_token(None),
        user.access_token(),
        "fresh: no refresh due"
    );
    clock.advance(Duration::from_secs(1800 - 30)); // inside the 60 s margin
    assert_eq!(user.fresh_access_token(None), None, "a refresh is due");
    assert!(
        user.fresh_access_token(Some(10)).is_some(),
        "but 30 s are left"
    );
    let recorder = Recorder::new();
    let _sub = user.subscribe(recorder.clone());
    user.valid_access_token(None).await.unwrap();
    assert_eq!(server.refresh_count(), before + 1);
    let refreshed = recorder.wait_for(AuthEventKind::TokenRefreshed);
    assert!(!refreshed.user_initiated, "the SDK refreshed on its own");
    user.refresh_access_token().await.unwrap();
    let forced = recorder
        .events()
        .into_iter()
        .filter(|e| e.kind == AuthEventKind::TokenRefreshed)
        .nth(1);
    assert!(
        forced.expect("a second TokenRefreshed").user_initiated,
        "the app asked for this one"
    );
    let before = server.refresh_count();

    // A caller may ask for more time to live than the margin.
    user.valid_access_token(Some(1500)).await.unwrap();
    assert_eq!(
        server.refresh_count(),
        before,
        "a just-refreshed token has 1800 s"
    );
    clock.advance(Duration::from_secs(400));
    user.valid_access_token(Some(1500)).await.unwrap();
    assert_eq!(server.refresh_count(), before + 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_is_refreshed_and_replayed_once() {
    let server = TestServer::start().await;
    let (app, _) = server.app();
    let user = email_user(&app, "refresh").await;
    let before = server.refresh_count();
    // The server thinks the access token expired; the client does not know yet.
    server.advance_server_clock(1801);
    assert_eq!(
        user.call_function("sum", "[1, 2, 3.5]").await.unwrap(),
        "6.5"
    );
    assert_eq!(
        server.refresh_count(),
        before + 1,
        "one refresh, then the replay"
    );
    let profile = user.refresh_profile().await.unwrap();
    assert!(profile.email.is_some());
    assert_eq!(server.refresh_count(), before + 1, "the new token is good");
    server.stop().await;
}

/// Issue 22, item 1, through the SDK: two Apps holding copies of one stored session (an app and
/// its extension, each with its own copy of the session file) refresh at the same moment with
/// rotation on, then in turn, each time past the server's 10 s grace window: both stay logged
/// in, holding the same refresh token after each round (one chain), and no session error is
/// reported. Before the fix the refreshes at once got different successors: two chains, one
/// of which is reuse sooner or later (both copies were logged out within minutes).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_copies_of_one_session_refreshing_at_once_stay_logged_in() {
    let server = TestServer::with(ServerOptions {
        refresh_token_rotation: true,
        ..Default::default()
    })
    .await;
    let file_app = |dir: &Path| {
        let (mut config, _) = server.config();
        config.storage = StorageConfig::File {
            dir: dir.to_path_buf(),
            encryption_key: None,
        };
        App::new(config).unwrap()
    };
    let session_file = |dir: &Path| {
        FileStore::new(dir, APP_ID, None)
            .unwrap()
            .path()
            .to_path_buf()
    };
    let (dir_a, dir_b) = (temp_dir("copy-a"), temp_dir("copy-b"));
    let user_id = {
        let app = file_app(&dir_a);
        email_user(&app, "refresh").await.id()
    };
    std::fs::create_dir_all(&dir_b).unwrap();
    std::fs::copy(session_file(&dir_a), session_file(&dir_b)).unwrap();
    let (a, b) = (file_app(&dir_a), file_app(&dir_b));
    let (calls_a, calls_b) = (handler(&a), handler(&b));
    let (ua, ub) = (a.current_user().unwrap(), b.current_user().unwrap());
    assert_eq!((ua.id(), ub.id()), (user_id.clone(), user_id));
    assert!(
        ua.refresh_token() == ub.refresh_token(),
        "one session, two copies"
    );
    for round in 0..5 {
        let before = server.refresh_count();
        let (ra, rb) = tokio::join!(ua.refresh_access_token(), ub.refresh_access_token());
        ra.unwrap_or_else(|e| panic!("round {round}: A: {e}"));
        rb.unwrap_or_else(|e| panic!("round {round}: B: {e}"));
        assert_eq!(server.refresh_count(), before + 2, "each copy refreshed");
        // In turn, past the grace window: B's token is the one A rotated out, whose successor
        // was never presented (a lost answer): B gets that same successor.
        server.advance_server_clock(11);
        ua.refresh_access_token()
            .await
            .unwrap_or_else(|e| panic!("round {round}: A alone: {e}"));
        server.advance_server_clock(11);
        ub.refresh_access_token()
            .await
            .unwrap_or_else(|e| panic!("round {round}: B alone: {e}"));
        assert!(
            ua.refresh_token() == ub.refresh_token(),
            "round {round}: the copies hold different refresh tokens (two chains)"
        );
        server.advance_server_clock(11);
    }
    assert_eq!(
        (ua.state(), ub.state()),
        (UserState::LoggedIn, UserState::LoggedIn)
    );
    assert!(calls_a.lock().unwrap().is_empty() && calls_b.lock().unwrap().is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_callers_share_one_refresh() {
    let server = TestServer::start().await;
    let (app, clock) = server.app();
    let user = email_user(&app, "refresh").await;
    clock.advance(Duration::from_secs(3600));
    let before = server.refresh_count();
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let user = user.clone();
            tokio::spawn(async move { user.valid_access_token(None).await })
        })
        .collect();
    let mut tokens = std::collections::HashSet::new();
    for task in tasks {
        tokens.insert(task.await.unwrap().unwrap());
    }
    assert_eq!(
        server.refresh_count(),
        before + 1,
        "exactly one POST /auth/session"
    );
    assert_eq!(tokens.len(), 1, "every caller got the same token");
    server.stop().await;
}

async fn session_end(kind: SessionErrorKind, end: impl AsyncFnOnce(&TestServer, &User)) {
    let server = TestServer::start().await;
    let (app, clock) = server.app();
    let calls = handler(&app);
    let recorder = Recorder::new();
    let _sub = app.subscribe(recorder.clone());
    let user = email_user(&app, "refresh").await;
    end(&server, &user).await;
    clock.advance(Duration::from_secs(1800));
    let err = user.valid_access_token(None).await.unwrap_err();
    assert!(
        matches!(err, AppError::SessionExpired { kind: k, .. } if k == kind),
        "{err:?}"
    );
    assert_eq!(user.state(), UserState::LoggedOut);
    assert_eq!((user.access_token(), user.refresh_token()), (None, None));
    assert_eq!(app.current_user(), None);
    assert!(app.all_users().contains(&user), "logged out, not forgotten");
    recorder.wait_for(AuthEventKind::SessionExpired);
    // Further calls fail fast and do not call back again.
    assert!(matches!(
        user.valid_access_token(None).await,
        Err(AppError::ClientUserNotLoggedIn { .. })
    ));
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 1, "exactly one callback");
    assert_eq!(calls[0].0, user.id());
    assert_eq!(calls[0].1.kind, kind);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_refresh_token_ends_the_session_with_one_callback() {
    session_end(SessionErrorKind::TokenExpired, async |server, _| {
        server.advance_server_clock(3601)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_session_is_reported_as_revoked() {
    session_end(SessionErrorKind::SessionRevoked, async |server, user| {
        server.revoke_sessions(&user.id()).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_user_is_reported_as_disabled() {
    session_end(SessionErrorKind::UserDisabled, async |server, user| {
        server.disable_user(&user.id()).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_deleted_on_the_server_is_reported_as_deleted() {
    session_end(SessionErrorKind::UserDeleted, async |server, user| {
        server.delete_user_on_server(&user.id()).await
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_anonymous_user_whose_session_ends_is_removed() {
    let server = TestServer::start().await;
    let (app, clock) = server.app();
    let calls = handler(&app);
    let user = app.log_in(Credentials::anonymous()).await.unwrap();
    server.revoke_sessions(&user.id()).await;
    clock.advance(Duration::from_secs(1800));
    assert!(matches!(
        user.valid_access_token(None).await,
        Err(AppError::SessionExpired { .. })
    ));
    assert_eq!(user.state(), UserState::Removed);
    assert!(app.all_users().is_empty());
    assert_eq!(calls.lock().unwrap().len(), 1);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_that_loses_a_race_with_logout_is_discarded() {
    let server = TestServer::start().await;
    let (app, clock) = server.app();
    let calls = handler(&app);
    for _ in 0..20 {
        let user = email_user(&app, "refresh").await;
        clock.advance(Duration::from_secs(1800));
        let racing = {
            let user = user.clone();
            tokio::spawn(async move { user.valid_access_token(None).await })
        };
        tokio::task::yield_now().await;
        user.log_out().await.unwrap();
        let _ = racing.await.unwrap();
        assert_eq!(
            user.state(),
            UserState::LoggedOut,
            "never logged in again by a late refresh"
        );
        assert_eq!((user.access_token(), user.refresh_token()), (None, None));
    }
    assert!(
        calls.lock().unwrap().is_empty(),
        "a logout is not a session error"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_is_down_ends_nothing() {
    let server = TestServer::start().await;
    let (app, clock) = server.app();
    let calls = handler(&app);
    let recorder = Recorder::new();
    let _sub = app.subscribe(recorder.clone());
    let user = email_user(&app, "refresh").await;
    let token = user.access_token().unwrap();
    server.stop().await;

    clock.advance(Duration::from_secs(1800 - 30));
    // The refresh fails, but the current token still has 30 s: it is served.
    assert_eq!(user.valid_access_token(None).await.unwrap(), token);
    let failed = recorder.wait_for(AuthEventKind::RefreshFailed);
    assert!(failed.error.is_some());

    clock.advance(Duration::from_secs(60));
    let err = user.valid_access_token(None).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(
        user.state(),
        UserState::LoggedIn,
        "tokens kept for when the server is back"
    );
    assert!(user.refresh_token().is_some());
    assert_eq!(app.current_user(), Some(user));
    assert!(calls.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_clock_hours_off_causes_no_refresh() {
    let server = TestServer::start().await;
    for skew in [-6 * 3600, 6 * 3600] {
        let (app, clock) = server.app();
        clock.set_wall_offset(skew);
        let user = email_user(&app, "refresh").await;
        let before = server.refresh_count();
        for _ in 0..10 {
            user.valid_access_token(None).await.unwrap();
        }
        assert_eq!(
            server.refresh_count(),
            before,
            "skew {skew}: no refresh loop"
        );
        clock.advance(Duration::from_secs(1790));
        user.valid_access_token(None).await.unwrap();
        assert_eq!(
            server.refresh_count(),
            before + 1,
            "skew {skew}: refreshed when due"
        );
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_shorter_than_the_margin_do_not_refresh_on_every_call() {
    let server = TestServer::with(ServerOptions {
        access_token_lifetime_secs: 20,
        ..Default::default()
    })
    .await;
    let (app, _) = server.app();
    let user = email_user(&app, "refresh").await;
    let before = server.refresh_count();
    for _ in 0..5 {
        user.valid_access_token(None).await.unwrap();
    }
    assert_eq!(server.refresh_count(), before);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_refreshes_before_expiry_and_pauses_in_background() {
    let server = TestServer::start().await;
    let (app, clock) = server.app();
    let user = email_user(&app, "refresh").await;
    let recorder = Recorder::new();
    let _sub = user.subscribe(recorder.clone());
    app.set_auto_refresh(true);
    app.enter_background();
    clock.advance(Duration::from_secs(1800 - 30));
    app.enter_background(); // wakes the loop, which must stay idle
    tokio::task::yield_now().await;
    assert_eq!(recorder.count(AuthEventKind::TokenRefreshed), 0);
    app.enter_foreground();
    recorder.wait_for(AuthEventKind::TokenRefreshed);
    app.set_auto_refresh(false);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_users_each_get_their_own_single_refresh() {
    let server = TestServer::start().await;
    let (app, clock) = server.app();
    let mut users = Vec::new();
    for _ in 0..5 {
        users.push(email_user(&app, "refresh").await);
    }
    clock.advance(Duration::from_secs(3600));
    let before = server.refresh_count();
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for user in &users {
        for _ in 0..50 {
            let (user, done) = (user.clone(), done.clone());
            tasks.push(tokio::spawn(async move {
                user.valid_access_token(None).await.unwrap();
                done.fetch_add(1, Ordering::SeqCst);
            }));
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(done.load(Ordering::SeqCst), 250);
    assert_eq!(server.refresh_count(), before + 5);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_wakes_a_scheduler_that_is_already_running() {
    // Tokens of 2 s: the scheduler's lead is half of that, so it refreshes about 1 s after login.
    let server = TestServer::with(ServerOptions {
        access_token_lifetime_secs: 2,
        ..Default::default()
    })
    .await;
    let (mut config, _) = server.config();
    config.auto_refresh = true;
    config.clock = None; // real time: nothing in the test wakes the scheduler by hand
    let app = App::new(config).unwrap();
    let recorder = Recorder::new();
    let _sub = app.subscribe(recorder.clone());
    let user = email_user(&app, "refresh").await;
    let refreshed = recorder.wait_for(AuthEventKind::TokenRefreshed);
    assert_eq!(refreshed.user_id, Some(user.id()));
    assert!(!refreshed.user_initiated);
    app.set_auto_refresh(false);
    server.stop().await;
}
