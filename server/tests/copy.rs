//! Moving a SQLite deployment to PostgreSQL (#24, SERVER.md "Moving to PostgreSQL"): a SQLite
//! server with live sessions (rotating, with API keys, email accounts, ES256 and HS256 apps)
//! and queued mail is copied by `sessionkit-server copy --to`; a server started on PostgreSQL
//! then refreshes every session, still detects reuse of an already rotated token, verifies the
//! access tokens issued before the move with the same keys, and sends the queued mail, whose
//! link still confirms. The copy refuses a database in use and a non-empty target.
//!
//! Needs a PostgreSQL cluster (`SESSIONKIT_TEST_POSTGRES`, scripts/test-all's second pass); on
//! the SQLite pass it says so and does nothing (the source is SQLite on every pass).
#![cfg(unix)]

mod common;

use std::path::Path;

use common::relay::Relay;
use common::*;
use serde_json::{Value, json};
use sessionkit_server::Config;

const APPS: &str = r#"
[[app]]
id = "rot-app"
refresh_token_rotation = true
access_token_algorithm = "ES256"
[app.providers.anon-user]
[app.providers.api-key]
[app.providers.custom-token]
key = "custom-secret"
audience = "rot-app"

[[app]]
id = "mail-app"
[app.providers.local-userpass]
auto_confirm = false
confirm_url = "https://app.example/confirm"
reset_url = "https://app.example/reset"
"#;

const HEAD: &str = r#"
listen = "127.0.0.1:0"
test_clock = true
rate_limits = { enabled = false }

[admin]
public_key = "admin-pub"
private_key = "admin-priv"
"#;

/// The SQLite deployment's config: no mail relay (its mails wait in the queue).
fn sqlite_toml() -> String {
    format!("{HEAD}{APPS}")
}

/// The PostgreSQL deployment's config: the same apps, and a relay.
fn pg_config(relay: &Relay, url: &str) -> Config {
    let toml = format!(
        "{HEAD}\n[mail]\nsmtp_url = \"{}\"\nfrom = \"SessionKit <no-reply@sessionkit.test>\"\n{APPS}",
        relay.url()
    );
    let mut c = Config::from_toml_str(&toml).unwrap();
    c.data_dir = temp_dir("copy-pg-unused");
    c.database.url = Some(sessionkit_server::config::DatabaseUrl::new(url));
    c
}

/// `sessionkit-server --config FILE copy ARGS`, on the SQLite data dir `data`.
fn copy(root: &Path, data: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let config = root.join("config.toml");
    std::fs::write(&config, sqlite_toml()).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sessionkit-server"))
        .env_remove("SESSIONKIT_DATABASE_URL")
        .arg("--config")
        .arg(&config)
        .arg("--data-dir")
        .arg(data)
        .arg("copy")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("no {k} in {v}"))
        .to_string()
}

async fn mail_queue(t: &T) -> Vec<Value> {
    let admin = t.admin().await;
    t.get(&format!("{}/mail", adm("mail-app")), Some(&admin))
        .await
        .ok(200)
        .as_array()
        .unwrap()
        .clone()
}

/// The rows per table `copy` printed.
fn counts(out: &str) -> std::collections::BTreeMap<String, u64> {
    out.lines()
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let (name, n) = (parts.next()?, parts.next()?);
            Some((name.to_string(), n.parse().ok()?))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_deployment_moves_to_postgres_and_every_device_keeps_refreshing() {
    let Some(cluster) = std::env::var("SESSIONKIT_TEST_POSTGRES").ok() else {
        eprintln!("not run on the SQLite pass: it needs SESSIONKIT_TEST_POSTGRES (a cluster)");
        return;
    };
    let root = temp_dir("copy");
    let data = root.join("data");
    let mut config = Config::from_toml_str(&sqlite_toml()).unwrap();
    config.data_dir = data.clone();
    let t = start_config_sqlite(config).await;

    // Devices on the ES256 app with rotation: anonymous ones and custom-JWT users, each
    // rotated a few times (the chain and its generations must come along).
    struct Device {
        access: String,
        /// Every refresh token it had, oldest first; the last is current.
        chain: Vec<String>,
    }
    let mut devices = Vec::new();
    for i in 0..6 {
        let login = if i % 2 == 0 {
            t.anon("rot-app").await
        } else {
            let jwt = custom_jwt(
                "custom-secret",
                json!({"sub": format!("sub-{i}"), "aud": "rot-app", "exp": t.srv.now() + 600}),
            );
            t.login("rot-app", "custom-token", json!({"token": jwt}))
                .await
        };
        let mut chain = vec![s(&login, "refresh_token")];
        for _ in 0..(i % 3 + 1) {
            t.srv.advance_clock(20); // past the grace window: each rotation is a new token
            let next = t.refresh(chain.last().unwrap()).await.s("refresh_token");
            chain.push(next);
        }
        devices.push(Device {
            access: s(&login, "access_token"),
            chain,
        });
    }
    // A session that logged in with an API key (its session names the key).
    let owner = s(&t.anon("rot-app").await, "refresh_token");
    let key = t
        .post(
            &format!("{BR}/auth/api_keys"),
            json!({"name": "ci"}),
            Some(&owner),
        )
        .await;
    let key = s(key.ok(201), "key");
    let by_key = t.login("rot-app", "api-key", json!({"key": key})).await;
    // Email accounts with confirmation mails waiting in the queue (no relay here).
    for i in 0..3 {
        t.post(
            &format!("{}/auth/providers/local-userpass/register", ar("mail-app")),
            json!({"email": format!("user{i}@example.com"), "password": "password1"}),
            None,
        )
        .await
        .ok(201);
    }
    let queued = mail_queue(&t).await;
    assert_eq!(queued.len(), 3);
    assert!(
        queued.iter().all(|m| m["status"] == "pending"),
        "{queued:?}"
    );
    let jwks_before = t
        .get(&format!("{}/.well-known/jwks.json", ar("rot-app")), None)
        .await
        .ok(200)
        .clone();

    // Without a target, or with a config that already uses PostgreSQL: usage errors.
    let (code, _, err) = copy(&root, &data, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--to postgres://"), "{err}");
    let config = root.join("config.toml");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sessionkit-server"))
        .env(
            "SESSIONKIT_DATABASE_URL",
            "postgres://u:secret-pw@127.0.0.1:1/x",
        )
        .arg("--config")
        .arg(&config)
        .args(["copy", "--to", "postgres://u@127.0.0.1:1/y"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("already uses PostgreSQL"), "{err}");
    assert!(!err.contains("secret-pw"), "{err}");

    // A copy while the server runs is refused: it would miss the writes made meanwhile.
    let target = sessionkit_server::store::postgres::create_test_database(&cluster, None)
        .await
        .unwrap();
    let (code, _, err) = copy(&root, &data, &["--to", &target]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("stop the server first"), "{err}");
    t.srv.shutdown().await;
    // A live sign-in code (this deployment has no email-otp provider: the row is put there by
    // hand, so that every table has rows to copy).
    rusqlite::Connection::open(data.join("sessionkit.db"))
        .unwrap()
        .execute(
            "INSERT INTO email_otp_codes VALUES ('mail-app', 'otp@example.com', 'mac', ?1, ?2, 5)",
            [0, i64::MAX / 2],
        )
        .unwrap();
    // A remembered DPoP proof, likewise (no client here sends proofs).
    rusqlite::Connection::open(data.join("sessionkit.db"))
        .unwrap()
        .execute(
            "INSERT INTO dpop_proofs VALUES ('replay-key', ?1)",
            [i64::MAX / 2],
        )
        .unwrap();

    // The copy: counts printed, as many as SQLite has.
    let (code, out, err) = copy(&root, &data, &["--to", &target]);
    assert_eq!(code, Some(0), "{out}{err}");
    let copied = counts(&out);
    let sqlite = rusqlite::Connection::open(data.join("sessionkit.db")).unwrap();
    for table in [
        "meta",
        "users",
        "identities",
        "userpass",
        "userpass_tokens",
        "outbox",
        "api_keys",
        "sessions",
        "refresh_tokens",
        "signing_keys",
        "email_otp_codes",
        "dpop_proofs",
    ] {
        let n: i64 = sqlite
            .query_row(&format!("SELECT COUNT(*) FROM {table}"), [], |r| r.get(0))
            .unwrap();
        assert_eq!(copied.get(table), Some(&(n as u64)), "{table}: {out}");
    }
    drop(sqlite);
    assert!(copied["refresh_tokens"] > copied["sessions"], "{out}");
    for (table, n) in &copied {
        assert!(*n > 0, "{table} has rows to copy: {out}");
    }

    // A second copy into the same database is refused: it is not empty.
    let (code, _, err) = copy(&root, &data, &["--to", &target]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("not empty") && err.contains("empty database"),
        "{err}"
    );

    // The server on PostgreSQL.
    let relay = Relay::up(&[]).await;
    let t = start_config_sqlite(pg_config(&relay, &target)).await;
    // Same signing keys: the access tokens issued on SQLite verify.
    let jwks_after = t
        .get(&format!("{}/.well-known/jwks.json", ar("rot-app")), None)
        .await
        .ok(200)
        .clone();
    assert_eq!(jwks_after, jwks_before);
    for d in &devices {
        t.get(&format!("{BR}/auth/profile"), Some(&d.access))
            .await
            .ok(200);
    }
    // Every session refreshes, and rotates on.
    t.srv.advance_clock(20);
    let mut next = Vec::new();
    for d in &devices {
        next.push(t.refresh(d.chain.last().unwrap()).await.s("refresh_token"));
    }
    t.refresh(&s(&by_key, "refresh_token")).await.ok(201);
    t.refresh(&owner).await.ok(201);
    // An old token, rotated out on SQLite before the move, is reuse: the session ends.
    t.srv.advance_clock(300);
    let d = &devices[2]; // three rotations before the move
    assert!(d.chain.len() >= 3);
    t.refresh(&d.chain[0])
        .await
        .reason("InvalidSession", "revoked");
    t.refresh(&next[2])
        .await
        .reason("InvalidSession", "revoked");
    // The others go on.
    t.refresh(&next[1]).await.ok(201);

    // The queued mails are sent now, and their links confirm (their tokens came along).
    let mails = relay.wait_mails(3).await;
    let text = mails[0]["text"].as_str().unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("https://app.example/confirm"))
        .unwrap_or_else(|| panic!("no link in {text}"));
    let url = reqwest::Url::parse(line.trim()).unwrap();
    let q = |k: &str| {
        url.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
            .unwrap()
    };
    t.post(
        &format!("{}/auth/providers/local-userpass/confirm", ar("mail-app")),
        json!({"token": q("token"), "tokenId": q("tokenId")}),
        None,
    )
    .await
    .ok(204);
    // A new mail is queued after the copied ones (the queue's sequence moved past them).
    t.post(
        &format!("{}/auth/providers/local-userpass/register", ar("mail-app")),
        json!({"email": "late@example.com", "password": "password1"}),
        None,
    )
    .await
    .ok(201);
    let queue = mail_queue(&t).await;
    let seqs: Vec<i64> = queue.iter().map(|m| m["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs.len(), 4, "{queue:?}");
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    relay.wait_mails(4).await;
    t.srv.shutdown().await;
}
