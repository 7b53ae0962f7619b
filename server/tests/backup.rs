//! `sessionkit-server backup FILE` and `restore FILE` (SERVER.md, "Backups"): a copy taken from
//! a running server under load is consistent and restores into a server on which the devices
//! logged in before the copy keep working and the users log in with their passwords; the
//! commands' refusals (an existing file, a database in use, a newer or damaged backup, a
//! PostgreSQL config).
//!
//! The servers run on SQLite on every pass (the commands are SQLite's; PostgreSQL has pg_dump,
//! and the last test checks that the commands say so).
#![cfg(unix)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use common::{BR, CONFIG, ar, start_config_sqlite, temp_dir};
use serde_json::{Value, json};
use sessionkit_server::Config;
use sessionkit_server::store::sqlite::SCHEMA_VERSION;

const BIN: &str = env!("CARGO_BIN_EXE_sessionkit-server");

/// Runs the binary with `--config FILE --data-dir DIR ARGS...`, on SQLite whatever the
/// environment says.
fn run(config: &Path, data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .env_remove("SESSIONKIT_DATABASE_URL")
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("the binary runs")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The standard test config in a file under `root`, and its data dir.
fn setup(tag: &str) -> (PathBuf, PathBuf, PathBuf) {
    let root = temp_dir(tag);
    std::fs::create_dir_all(&root).unwrap();
    let config = root.join("config.toml");
    std::fs::write(&config, CONFIG).unwrap();
    (root.clone(), config, root.join("data"))
}

async fn server_on(data: &Path) -> common::T {
    let mut config = Config::from_toml_str(CONFIG).expect("test config");
    config.data_dir = data.to_path_buf();
    start_config_sqlite(config).await
}

/// What `PRAGMA integrity_check` and `PRAGMA user_version` say of a database file.
fn inspect(file: &Path) -> (Vec<String>, i64) {
    let conn =
        rusqlite::Connection::open_with_flags(file, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let check = conn
        .prepare("PRAGMA integrity_check")
        .unwrap()
        .query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let version = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    (check, version)
}

/// Anonymous logins on the rotating app, each refreshed twice (two rotations), until `stop`;
/// every answer must be a success. Counts the rounds in `rounds`.
async fn load(base: String, stop: Arc<AtomicBool>, rounds: Arc<AtomicUsize>) {
    let http = reqwest::Client::new();
    while !stop.load(Ordering::SeqCst) {
        let r = http
            .post(format!(
                "{base}{}/auth/providers/anon-user/login",
                ar("rot-app")
            ))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "a login during the backup");
        let body: Value = r.json().await.unwrap();
        let mut refresh = body["refresh_token"].as_str().unwrap().to_string();
        for _ in 0..2 {
            let r = http
                .post(format!("{base}{BR}/auth/session"))
                .bearer_auth(&refresh)
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201, "a refresh during the backup");
            let body: Value = r.json().await.unwrap();
            refresh = body["refresh_token"].as_str().unwrap().to_string();
        }
        rounds.fetch_add(1, Ordering::SeqCst);
    }
}

/// Waits (without a deadline: the test's own timeout is the bound) until `rounds` passes `n`.
async fn rounds_past(rounds: &AtomicUsize, n: usize) {
    while rounds.load(Ordering::SeqCst) <= n {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_under_load_restores_sessions_and_passwords() {
    let (root, config, data) = setup("backup");
    let t = server_on(&data).await;

    let users: Vec<(String, String)> = (0..3)
        .map(|i| (format!("user{i}@example.com"), format!("password-{i}")))
        .collect();
    for (email, password) in &users {
        t.confirmed_user(email, password).await;
    }
    // Devices logged in before the backup: rotating sessions, and an email user's session.
    let mut devices: Vec<Value> = Vec::new();
    for _ in 0..4 {
        devices.push(t.anon("rot-app").await);
    }
    devices.push(
        t.login(
            "test-app",
            "local-userpass",
            json!({"username": users[0].0, "password": users[0].1}),
        )
        .await,
    );

    // A device that will rotate its token after the backup.
    let late = t.anon("rot-app").await;

    // Logins and refreshes go on while the copy is made.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..4)
        .map(|_| tokio::spawn(load(t.base.clone(), stop.clone(), rounds.clone())))
        .collect();
    rounds_past(&rounds, 8).await;
    let file = root.join("backups").join("sessionkit-backup.db");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    let out = {
        let (config, data, file) = (config.clone(), data.clone(), file.clone());
        tokio::task::spawn_blocking(move || {
            run(&config, &data, &["backup", file.to_str().unwrap()])
        })
        .await
        .unwrap()
    };
    // The server kept answering after the copy too.
    let after = rounds.load(Ordering::SeqCst);
    rounds_past(&rounds, after + 8).await;
    stop.store(true, Ordering::SeqCst);
    for w in workers {
        w.await
            .expect("every login and refresh under load succeeded");
    }
    assert!(out.status.success(), "backup: {}", stderr(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!("schema version {SCHEMA_VERSION}")),
        "{said}"
    );

    // A checked, private, self-contained file, and nothing left beside it.
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        format!("{mode:o}"),
        "600",
        "the backup holds every secret of the database"
    );
    let beside: Vec<String> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        beside,
        ["sessionkit-backup.db"],
        "no -wal, -journal or temp file"
    );
    assert_eq!(inspect(&file), (vec!["ok".to_string()], SCHEMA_VERSION));
    let late_next = t
        .refresh(late["refresh_token"].as_str().unwrap())
        .await
        .s("refresh_token");

    // An existing file is kept unless --force.
    let first = std::fs::read(&file).unwrap();
    let out = run(&config, &data, &["backup", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&file).unwrap(),
        first,
        "the existing file untouched"
    );
    let forced = root.join("backups").join("forced.db");
    std::fs::write(&forced, b"an older backup").unwrap();
    let out = run(
        &config,
        &data,
        &["backup", "--force", forced.to_str().unwrap()],
    );
    assert!(out.status.success(), "backup --force: {}", stderr(&out));
    assert_eq!(inspect(&forced), (vec!["ok".to_string()], SCHEMA_VERSION));

    // The running server has its database open: restoring over it is refused.
    let out = run(&config, &data, &["restore", file.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("stop the server first"),
        "{}",
        stderr(&out)
    );
    t.anon("rot-app").await; // and it still serves

    // Restored into a new data dir, a server starts on it and every device keeps working.
    let restored = root.join("restored");
    let out = run(&config, &restored, &["restore", file.to_str().unwrap()]);
    assert!(out.status.success(), "restore: {}", stderr(&out));
    let t2 = server_on(&restored).await;
    for device in &devices {
        // The access token issued before the backup is still good (same app secret) ...
        t2.get(
            &format!("{BR}/auth/profile"),
            device["access_token"].as_str(),
        )
        .await
        .ok(200);
        // ... and its refresh token refreshes, and on a rotating app rotates on.
        let r = t2.refresh(device["refresh_token"].as_str().unwrap()).await;
        r.ok(201);
        if let Some(next) = r.body["refresh_token"].as_str() {
            t2.refresh(next).await.ok(201);
        }
    }
    // A token rotated after the backup was never issued by the restored database: taken for
    // a rotated-out one, its session ends (SERVER.md, "Backups").
    t2.refresh(&late_next)
        .await
        .reason("InvalidSession", "revoked");
    for (email, password) in &users {
        t2.login(
            "test-app",
            "local-userpass",
            json!({"username": email, "password": password}),
        )
        .await;
    }
    t2.srv.shutdown().await;
    t.srv.shutdown().await;
}

#[test]
fn restore_refuses_a_damaged_or_newer_backup() {
    let (root, config, data) = setup("restore-refusals");
    // A backup of a fresh database (no server running).
    assert!(run(&config, &data, &["migrate"]).status.success());
    let good = root.join("good.db");
    let out = run(&config, &data, &["backup", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let target = root.join("target");

    let damaged = root.join("damaged.db");
    let mut bytes = std::fs::read(&good).unwrap();
    bytes.truncate(bytes.len() / 2);
    bytes[4096..8192].fill(0xA5);
    std::fs::write(&damaged, &bytes).unwrap();
    let out = run(&config, &target, &["restore", damaged.to_str().unwrap()]);
    assert!(!out.status.success(), "a damaged backup is refused");
    assert!(!target.join("sessionkit.db").exists(), "nothing written");

    let newer = root.join("newer.db");
    std::fs::copy(&good, &newer).unwrap();
    rusqlite::Connection::open(&newer)
        .unwrap()
        .execute_batch(&format!("PRAGMA user_version = {};", SCHEMA_VERSION + 1))
        .unwrap();
    let out = run(&config, &target, &["restore", newer.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("newer than this server"),
        "{}",
        stderr(&out)
    );

    let out = run(&config, &target, &["restore", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        inspect(&target.join("sessionkit.db")),
        (vec!["ok".to_string()], SCHEMA_VERSION)
    );
}

#[test]
fn a_postgres_config_is_pointed_at_pg_dump() {
    let (root, _, data) = setup("backup-pg");
    let config = root.join("pg.toml");
    std::fs::write(
        &config,
        format!("{CONFIG}\n[database]\nurl = \"postgres://sessionkit@127.0.0.1:1/none\"\n"),
    )
    .unwrap();
    let file = root.join("pg-backup.db");
    for (args, tool) in [
        (vec!["backup", file.to_str().unwrap()], "pg_dump"),
        (vec!["restore", file.to_str().unwrap()], "pg_restore"),
    ] {
        let out = run(&config, &data, &args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        let said = stderr(&out);
        assert!(said.contains(tool), "{said}");
        assert!(said.contains("config file"), "{said}");
        assert!(said.contains("SESSIONKIT_SMTP_PASSWORD"), "{said}");
        assert!(
            !said.contains("127.0.0.1:1"),
            "no database URL echoed: {said}"
        );
    }
    assert!(!file.exists());
}
