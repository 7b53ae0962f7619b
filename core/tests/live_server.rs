//! A user's whole session against a running sessionkit-server, with file storage: the check a
//! platform the server cannot run on (Windows under wine, #27) gets, since core cannot start
//! the server itself (it does not depend on it; tests/ does, for every other platform).
//!
//! Ignored unless asked for: `scripts/test-windows` starts the server natively, names it in
//! `SESSIONKIT_TEST_SERVER_URL` (an app `live-app` with the email/password provider and
//! `auto_confirm`) and runs this binary with `--include-ignored`. Without the variable the test
//! fails, saying so, rather than passing without having run.

use sessionkit::{App, AppConfig, Credentials, StorageConfig, UserState};

fn server_url() -> String {
    std::env::var("SESSIONKIT_TEST_SERVER_URL").expect(
        "SESSIONKIT_TEST_SERVER_URL is not set: run this test through scripts/test-windows, \
         which starts a sessionkit-server for it",
    )
}

fn app(dir: &std::path::Path) -> App {
    let mut config = AppConfig::new("live-app", server_url());
    config.storage = StorageConfig::File {
        dir: dir.to_path_buf(),
        encryption_key: None,
    };
    App::new(config).expect("a valid config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a running sessionkit-server: scripts/test-windows starts one"]
async fn logs_in_refreshes_and_logs_out_with_file_storage() {
    let dir = std::env::temp_dir().join(format!("sessionkit-live-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let email = format!("live-{}@example.com", std::process::id());
    let password = "a long enough password";

    let app = app(&dir);
    app.email_password_auth()
        .register_user(&email, password)
        .await
        .expect("register");
    let user = app
        .log_in(Credentials::email_password(&email, password))
        .await
        .expect("log in");
    assert_eq!(user.state(), UserState::LoggedIn);
    let first = user.access_token().expect("an access token after login");

    // A refresh replaces the access token and writes the session through the file store
    // (atomic replace: on Windows a rename over an existing file).
    user.refresh_access_token().await.expect("refresh");
    let second = user.access_token().expect("an access token after refresh");
    assert_ne!(first, second, "the refresh brought a new access token");

    // Another App on the same directory reads the session back: what an app restart sees.
    let reopened = app_user(&dir, &user.id());
    assert_eq!(reopened.state(), UserState::LoggedIn);
    assert_eq!(reopened.access_token().as_deref(), Some(second.as_str()));
    drop(reopened);

    // The refreshed access token is one the server takes: the profile endpoint accepts it.
    user.refresh_profile()
        .await
        .expect("profile with the refreshed token");

    user.log_out().await.expect("log out");
    assert_eq!(user.state(), UserState::LoggedOut);
    assert!(
        user.refresh_token().is_none(),
        "logout drops the refresh token"
    );
    let after = app_user(&dir, &user.id());
    assert_eq!(after.state(), UserState::LoggedOut, "the logout was saved");
    assert!(
        after.refresh_access_token().await.is_err(),
        "a logged-out user cannot refresh"
    );

    let _ = std::fs::remove_dir_all(&dir);
}

/// The user `id` as a second App on `dir` loads it.
fn app_user(dir: &std::path::Path, id: &str) -> sessionkit::User {
    app(dir)
        .all_users()
        .into_iter()
        .find(|u| u.id() == id)
        .expect("the user is in the file store")
}
