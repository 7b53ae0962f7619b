//! `App::close`: what it waits for, what it saves, and what fails afterwards.

use std::sync::{Arc, Mutex};

use sessionkit::{App, AppConfig, AppError, AuthEvent, AuthEventKind, Credentials, StorageConfig};
use sessionkit_tests::{APP_ID, Recorder, TestServer, temp_dir};

fn file_config(server: &TestServer, dir: &std::path::Path) -> AppConfig {
    let mut config = AppConfig::new(APP_ID, server.base_url());
    config.storage = StorageConfig::File {
        dir: dir.to_path_buf(),
        encryption_key: None,
    };
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_saves_what_operations_in_flight_bring_then_refuses_new_ones() {
    let server = TestServer::start().await;
    let dir = temp_dir("close");
    let app = App::new(file_config(&server, &dir)).unwrap();
    let events = Recorder::new();
    let _sub = app.subscribe(events.clone());
    let user = app.log_in(Credentials::anonymous()).await.unwrap();
    // Refreshes in flight when close starts: each either finishes (and is saved) or is refused.
    let refreshes: Vec<_> = (0..3)
        .map(|_| {
            let user = user.clone();
            tokio::spawn(async move { user.refresh_access_token().await })
        })
        .collect();
    tokio::task::yield_now().await;
    app.close().await;
    assert!(app.is_closed());
    for r in refreshes {
        match r.await.unwrap() {
            Ok(()) | Err(AppError::AppClosed { .. }) => {}
            Err(e) => panic!("unexpected refresh error: {e}"),
        }
    }
    let seen = events.events().len();
    assert!(matches!(
        app.log_in(Credentials::anonymous()).await,
        Err(AppError::AppClosed { .. })
    ));
    assert!(matches!(
        user.refresh_access_token().await,
        Err(AppError::AppClosed { .. })
    ));
    assert!(matches!(
        app.switch_user(&user),
        Err(AppError::AppClosed { .. })
    ));
    app.set_auto_refresh(true); // does nothing once closed
    assert_eq!(events.events().len(), seen, "no event after close");
    app.close().await; // again: nothing more happens

    // What is in memory is what was saved: the last refresh's token included.
    let reopened = App::new(file_config(&server, &dir)).unwrap();
    let restored = reopened.current_user().expect("the session was kept");
    assert_eq!(restored.id(), user.id());
    assert_eq!(restored.access_token(), user.access_token());
    assert_eq!(restored.refresh_token(), user.refresh_token());
    restored.refresh_access_token().await.unwrap();
    reopened.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_may_close_the_app_without_waiting_for_itself() {
    let server = TestServer::start().await;
    let (app, _clock) = server.app();
    let slot: Arc<Mutex<Option<App>>> = Arc::new(Mutex::new(Some(app.clone())));
    let closer = {
        let slot = Arc::clone(&slot);
        move |event: AuthEvent| {
            if event.kind == AuthEventKind::SignedIn
                && let Some(app) = slot.lock().unwrap().take()
            {
                // The closing steps that matter run at once; the rest needs no awaiting here.
                drop(app.close());
            }
        }
    };
    let _sub = app.subscribe(Arc::new(closer));
    let logged_in = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        app.log_in(Credentials::anonymous()),
    )
    .await
    .expect("closing from a listener must not hang the login");
    assert!(
        logged_in.is_ok(),
        "the login in flight completes: {logged_in:?}"
    );
    assert!(app.is_closed());
    assert!(matches!(
        app.log_in(Credentials::anonymous()).await,
        Err(AppError::AppClosed { .. })
    ));
}
