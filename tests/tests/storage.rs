//! Durable sessions: what survives a restart, encryption, unreadable files (set aside, never
//! deleted), the checked-in version 1 document and encrypted version 2 file, a store that is
//! unavailable, several processes on one directory, and SIGKILL at random points during writes.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessionkit::{
    App, AppConfig, AppError, AuthEventKind, Credentials, FileStore, SessionStore, StorageConfig,
    StoreError, UserState,
};
use sessionkit_tests::{APP_ID, Recorder, ServerOptions, TestServer, email_user, temp_dir};

const KEY: [u8; 32] = [7; 32];

fn file_app(server_url: &str, dir: &Path, key: Option<[u8; 32]>) -> sessionkit::Result<App> {
    let mut config = AppConfig::new(APP_ID, server_url);
    config.storage = StorageConfig::File {
        dir: dir.to_path_buf(),
        encryption_key: key.map(|k| k.to_vec()),
    };
    App::new(config)
}

fn session_file(dir: &Path) -> std::path::PathBuf {
    FileStore::new(dir, APP_ID, None)
        .unwrap()
        .path()
        .to_path_buf()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_survive_a_restart_as_they_were() {
    let server = TestServer::start().await;
    // A directory the store creates itself, so its mode is the store's doing.
    let dir = temp_dir("restart").join("sessions");
    let (kept_id, anon_id, out_id, removed_id, token, profile) = {
        let app = file_app(&server.base_url(), &dir, None).unwrap();
        let kept = email_user(&app, "store").await;
        let anon = app.log_in(Credentials::anonymous()).await.unwrap();
        let out = email_user(&app, "store").await;
        out.log_out().await.unwrap();
        let removed = email_user(&app, "store").await;
        app.remove_user(&removed).await.unwrap();
        app.switch_user(&kept).unwrap();
        (
            kept.id(),
            anon.id(),
            out.id(),
            removed.id(),
            kept.access_token(),
            kept.profile(),
        )
    };

    let app = file_app(&server.base_url(), &dir, None).unwrap();
    let ids: Vec<String> = app.all_users().iter().map(|u| u.id()).collect();
    assert_eq!(
        ids,
        vec![kept_id.clone(), anon_id.clone(), out_id.clone()],
        "removed users are gone"
    );
    assert!(!ids.contains(&removed_id));
    let kept = app.current_user().expect("current user restored");
    assert_eq!(kept.id(), kept_id);
    assert_eq!(kept.access_token(), token);
    assert_eq!(kept.profile(), profile);
    assert_eq!(kept.provider_type(), "local-userpass");
    assert!(!kept.identities().is_empty() && !kept.device_id().is_empty());
    let out = app
        .all_users()
        .into_iter()
        .find(|u| u.id() == out_id)
        .unwrap();
    assert_eq!(out.state(), UserState::LoggedOut);
    // The restored session is a real one.
    kept.refresh_access_token().await.unwrap();
    kept.call_function("sum", "[2, 2]").await.unwrap();
    // Anonymous reuse finds the restored anonymous user.
    assert_eq!(
        app.log_in(Credentials::anonymous()).await.unwrap().id(),
        anon_id
    );

    let file = session_file(&dir);
    assert_eq!(
        std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(
        leftovers.is_empty(),
        "no temporary files left: {leftovers:?}"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_encrypted_store_hides_everything_and_a_wrong_key_loses_nothing() {
    let server = TestServer::start().await;
    let dir = temp_dir("encrypted");
    let (id, refresh) = {
        let app = file_app(&server.base_url(), &dir, Some(KEY)).unwrap();
        let user = email_user(&app, "store").await;
        (user.id(), user.refresh_token().unwrap())
    };
    let bytes = std::fs::read(session_file(&dir)).unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(!text.contains(&id) && !text.contains(&refresh) && !text.contains("example.com"));

    let app = file_app(&server.base_url(), &dir, Some(KEY)).unwrap();
    assert_eq!(app.current_user().map(|u| u.id()), Some(id.clone()));
    drop(app);

    // The wrong key: the app starts empty, says so, and keeps the file.
    let app = file_app(&server.base_url(), &dir, Some([8; 32])).unwrap();
    assert!(app.all_users().is_empty());
    let warning = app.storage_warning().expect("a storage warning");
    assert!(warning.contains("wrong encryption key"), "{warning}");
    let kept = warning
        .split(" kept as ")
        .nth(1)
        .and_then(|s| s.split(' ').next())
        .expect("names the kept file");
    assert_eq!(
        std::fs::read(kept).unwrap(),
        bytes,
        "the unreadable file is kept byte for byte"
    );
    let recorder = Recorder::new();
    let _sub = app.subscribe(recorder.clone());
    let initial = recorder.wait_for(AuthEventKind::InitialState);
    assert_eq!(initial.error.as_deref(), Some(warning.as_str()));

    // Put it back and open with the right key: nothing was lost.
    std::fs::rename(kept, session_file(&dir)).unwrap();
    let app = file_app(&server.base_url(), &dir, Some(KEY)).unwrap();
    assert_eq!(app.current_user().map(|u| u.id()), Some(id));
    server.stop().await;
}

#[test]
fn unreadable_documents_are_set_aside_with_a_clear_warning() {
    for (name, content) in [
        ("garbage", b"\x00\x01 not json".to_vec()),
        ("future version", br#"{"schema_version": 99, "users": []}"#.to_vec()),
        ("other app", br#"{"schema_version":2,"app_id":"someone-else","rev":1,"current_user_id":null,"recent_user_ids":[],"users":[]}"#.to_vec()),
        ("encrypted, no key", b"SKENC1\nxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx".to_vec()),
    ] {
        let dir = temp_dir("corrupt");
        std::fs::write(session_file(&dir), &content).unwrap();
        let app = file_app("http://127.0.0.1:9", &dir, None).unwrap();
        assert!(app.all_users().is_empty(), "{name}");
        let warning = app.storage_warning().unwrap_or_else(|| panic!("{name}: no warning"));
        let kept = warning.split(" kept as ").nth(1).and_then(|s| s.split(' ').next()).unwrap();
        assert_eq!(std::fs::read(kept).unwrap(), content, "{name}: kept as it was");
        assert!(!session_file(&dir).exists(), "{name}: moved, not copied");
    }
}

/// The users of the checked-in session documents, in order (the Removed one is purged).
const FIXTURE_USERS: [&str; 4] = [
    "65a000000000000000000001",
    "65a000000000000000000002",
    "65a000000000000000000003",
    "65a000000000000000000005",
];

#[test]
fn the_version_1_document_is_migrated() {
    let dir = temp_dir("v1");
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/sessions-v1.json"),
        session_file(&dir),
    )
    .unwrap();
    let app = file_app("http://127.0.0.1:9", &dir, None).unwrap();
    let users = app.all_users();
    let ids: Vec<String> = users.iter().map(|u| u.id()).collect();
    assert_eq!(ids, FIXTURE_USERS, "the Removed user is purged");
    let current = app.current_user().unwrap();
    assert_eq!(current.id(), "65a000000000000000000002");
    assert_eq!(
        current.profile().email.as_deref(),
        Some("fixture@example.com")
    );
    assert_eq!(current.device_id(), "65d000000000000000000002");
    assert_eq!(users[2].state(), UserState::LoggedOut);
    assert_eq!(
        users[3].state(),
        UserState::LoggedOut,
        "unreadable tokens log the user out, not lose them"
    );
    assert_eq!(users[3].profile().name.as_deref(), Some("Damaged Tokens"));

    // The next save writes version 2.
    app.switch_user(&users[0]).unwrap();
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(session_file(&dir)).unwrap()).unwrap();
    assert_eq!(doc["schema_version"], 2);
    assert_eq!(doc["app_id"], APP_ID);
    assert_eq!(doc["current_user_id"], "65a000000000000000000001");
    drop(app);
    let again = file_app("http://127.0.0.1:9", &dir, None).unwrap();
    assert_eq!(
        again.current_user().unwrap().id(),
        "65a000000000000000000001"
    );
    assert_eq!(again.all_users().len(), 4);
}

/// The encrypted format is a promise to every device that saved a file: this one was written by
/// an earlier build (the version 1 fixture, opened with `KEY` and saved), and must stay readable.
#[test]
fn an_encrypted_file_from_an_earlier_build_stays_readable() {
    let dir = temp_dir("v2enc");
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/fixtures/sessions-v2-encrypted.bin"
        ),
        session_file(&dir),
    )
    .unwrap();
    let app = file_app("http://127.0.0.1:9", &dir, Some(KEY)).unwrap();
    assert!(
        app.storage_warning().is_none(),
        "{:?}",
        app.storage_warning()
    );
    let users = app.all_users();
    let ids: Vec<String> = users.iter().map(|u| u.id()).collect();
    assert_eq!(ids, FIXTURE_USERS);
    assert_eq!(app.current_user().unwrap().id(), "65a000000000000000000001");
    assert_eq!(
        users[1].profile().email.as_deref(),
        Some("fixture@example.com")
    );
    assert_eq!(users[1].device_id(), "65d000000000000000000002");
    assert_eq!(users[0].state(), UserState::LoggedIn);
    assert!(users[0].refresh_token().is_some());
    assert_eq!(users[2].state(), UserState::LoggedOut);
}

/// A store that can be switched to "device locked".
#[derive(Default)]
struct Lockable {
    locked: Mutex<bool>,
    bytes: Mutex<Option<Vec<u8>>>,
}

impl SessionStore for Lockable {
    fn load(&self) -> Result<Option<Vec<u8>>, StoreError> {
        if *self.locked.lock().unwrap() {
            return Err(StoreError::Unavailable {
                message: "device locked".into(),
            });
        }
        Ok(self.bytes.lock().unwrap().clone())
    }
    fn save(&self, bytes: &[u8]) -> Result<(), StoreError> {
        if *self.locked.lock().unwrap() {
            return Err(StoreError::Unavailable {
                message: "device locked".into(),
            });
        }
        *self.bytes.lock().unwrap() = Some(bytes.to_vec());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unavailable_store_logs_nobody_out_and_catches_up_later() {
    let server = TestServer::start().await;
    let store = Arc::new(Lockable::default());
    let config = |store: &Arc<Lockable>| {
        let mut c = AppConfig::new(APP_ID, server.base_url());
        c.storage = StorageConfig::Custom(store.clone());
        c
    };
    let app = App::new(config(&store)).unwrap();
    *store.locked.lock().unwrap() = true;
    let user = email_user(&app, "store").await;
    user.refresh_access_token().await.unwrap();
    assert_eq!(
        user.state(),
        UserState::LoggedIn,
        "served from memory while the store is locked"
    );
    assert!(store.bytes.lock().unwrap().is_none());
    // Opening the App while the store is locked fails cleanly and changes nothing.
    let err = App::new(config(&store)).unwrap_err();
    assert!(
        matches!(&err, AppError::Storage { message } if message.contains("device locked")),
        "{err:?}"
    );

    *store.locked.lock().unwrap() = false;
    user.refresh_access_token().await.unwrap(); // the next change saves everything
    let restored = App::new(config(&store)).unwrap();
    assert_eq!(restored.current_user().map(|u| u.id()), Some(user.id()));
    assert_eq!(
        restored.current_user().unwrap().refresh_token(),
        user.refresh_token()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_apps_on_one_directory_see_each_others_changes() {
    let server = TestServer::start().await;
    let dir = temp_dir("shared");
    let first = file_app(&server.base_url(), &dir, None).unwrap();
    let user = email_user(&first, "store").await;
    let second = file_app(&server.base_url(), &dir, None).unwrap();
    let theirs = second
        .current_user()
        .expect("the second App reads the first one's user");
    assert_eq!(theirs.id(), user.id());

    // A refresh in one is adopted by the other instead of spending its own refresh token.
    let before = server.refresh_count();
    user.refresh_access_token().await.unwrap();
    theirs.refresh_access_token().await.unwrap();
    assert_eq!(
        server.refresh_count(),
        before + 1,
        "the second App adopted the first one's refresh"
    );
    assert_eq!(theirs.access_token(), user.access_token());

    // A logout in one is a logout in the other: a call there is refused for the revoked
    // session's token, and that is what it says (not the server's 401).
    user.log_out().await.unwrap();
    let err = theirs.call_function("sum", "[1]").await.unwrap_err();
    assert!(
        matches!(err, AppError::ClientUserNotLoggedIn { .. }),
        "{err:?}"
    );
    let err = theirs.refresh_access_token().await.unwrap_err();
    assert!(
        matches!(err, AppError::ClientUserNotLoggedIn { .. }),
        "{err:?}"
    );
    assert_eq!(theirs.state(), UserState::LoggedOut);

    // Each App's new users are kept when the other saves.
    let a = email_user(&first, "store").await;
    let b = email_user(&second, "store").await;
    let third = file_app(&server.base_url(), &dir, None).unwrap();
    let ids: Vec<String> = third.all_users().iter().map(|u| u.id()).collect();
    assert!(ids.contains(&a.id()) && ids.contains(&b.id()), "{ids:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_refreshing_one_user_with_rotation_never_log_it_out() {
    processes_refreshing_one_user(false).await;
}

/// The same with a DPoP-bound session on a `required` app (#29): the key is in the shared
/// document, so both processes sign with it (the worker does not even ask for DPoP: a stored
/// key is used whatever the config says).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_a_bound_sessions_key_through_the_store() {
    processes_refreshing_one_user(true).await;
}

async fn processes_refreshing_one_user(dpop: bool) {
    let server = TestServer::with(ServerOptions {
        refresh_token_rotation: true,
        dpop: if dpop { "required" } else { "optional" }.into(),
        ..Default::default()
    })
    .await;
    let dir = temp_dir("processes");
    let user_id = {
        let mut config = AppConfig::new(APP_ID, server.base_url());
        config.storage = StorageConfig::File {
            dir: dir.clone(),
            encryption_key: None,
        };
        config.dpop = dpop;
        let app = App::new(config).unwrap();
        let user = email_user(&app, "store").await;
        assert_eq!(user.dpop_thumbprint().is_some(), dpop);
        user.id()
    };
    let worker = env!("CARGO_BIN_EXE_store_worker");
    let spawn = || {
        Command::new(worker)
            .args([
                "refresh-loop",
                &server.base_url(),
                APP_ID,
                dir.to_str().unwrap(),
                "250",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn(), spawn());
    let (a, b) = tokio::task::spawn_blocking(move || {
        (a.wait_with_output().unwrap(), b.wait_with_output().unwrap())
    })
    .await
    .unwrap();
    for out in [&a, &b] {
        assert!(
            out.status.success(),
            "a worker was logged out: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let refreshes = server.refresh_count();
    assert!(
        (250..=500).contains(&refreshes),
        "500 cycles, {refreshes} network refreshes"
    );

    let app = file_app(&server.base_url(), &dir, None).unwrap();
    let user = app.current_user().expect("still logged in");
    assert_eq!(user.id(), user_id);
    user.refresh_access_token().await.unwrap(); // its rotated refresh token is the live one
    server.stop().await;
}

#[test]
fn a_writer_killed_at_random_points_leaves_the_old_or_the_new_document() {
    let worker = env!("CARGO_BIN_EXE_store_worker");
    let key_hex: String = KEY.iter().map(|b| format!("{b:02x}")).collect();
    for (round, key) in [(0, None), (1, Some(KEY))] {
        let dir = temp_dir("crash");
        let store = FileStore::new(&dir, APP_ID, key).unwrap();
        let mut last = None::<u64>;
        for kill in 0..100u64 {
            let mut child = Command::new(worker)
                .args([
                    "write-loop",
                    dir.to_str().unwrap(),
                    APP_ID,
                    if key.is_some() { &key_hex } else { "-" },
                ])
                .spawn()
                .unwrap();
            // Pseudo-random points in the write loop, different every kill.
            let delay = (kill * 7919 + round * 104_729) % 23 + 1;
            std::thread::sleep(Duration::from_millis(delay));
            child.kill().unwrap(); // SIGKILL
            child.wait().unwrap();
            let Some(bytes) = store
                .load()
                .unwrap_or_else(|e| panic!("kill {kill}: unreadable after SIGKILL: {e}"))
            else {
                assert!(last.is_none(), "kill {kill}: the document vanished");
                continue;
            };
            let doc: serde_json::Value =
                serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("kill {kill}: torn: {e}"));
            let counter = doc["counter"].as_u64().unwrap();
            last = Some(counter);
        }
        assert!(last.is_some(), "some writes completed");
    }
}

/// Saves on a current-thread runtime (no worker to hand tasks to) and from outside any runtime.
#[tokio::test(flavor = "current_thread")]
async fn saving_works_on_a_current_thread_runtime_and_outside_any() {
    let server = TestServer::start().await;
    let dir = temp_dir("current-thread");
    let app = file_app(&server.base_url(), &dir, None).unwrap();
    let user = email_user(&app, "store").await;
    user.refresh_access_token().await.unwrap();
    let (app2, user2) = (app.clone(), user.clone());
    // The synchronous API from a plain thread: no runtime there at all.
    std::thread::spawn(move || app2.switch_user(&user2).unwrap())
        .join()
        .unwrap();
    drop(app);
    let again = file_app(&server.base_url(), &dir, None).unwrap();
    assert_eq!(again.current_user().map(|u| u.id()), Some(user.id()));
    server.stop().await;
}
