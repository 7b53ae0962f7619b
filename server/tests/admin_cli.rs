//! `sessionkit-server admin ...` against a running server: keys from the environment or the
//! config file, never from arguments.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::start;

fn admin(base: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessionkit-server"))
        .args(["admin", "--url", base])
        .args(args)
        .env("SESSIONKIT_ADMIN_PUBLIC_KEY", "admin-pub")
        .env("SESSIONKIT_ADMIN_PRIVATE_KEY", "admin-priv")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoke_disable_list_and_verify_from_the_shell() {
    let t = start().await;
    let base = t.base.clone();
    let a = t.anon("test-app").await;
    let b = t.anon("test-app").await;
    let (a_id, b_id) = (
        a["user_id"].as_str().unwrap(),
        b["user_id"].as_str().unwrap(),
    );

    let out = admin(&base, &["users", "list", "--app", "test-app"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed = text(&out.stdout);
    assert!(listed.contains(a_id) && listed.contains(b_id), "{listed}");

    // Both users' sessions in one command: each refresh token is refused at once.
    let both = format!("{a_id},{b_id}");
    let out = admin(
        &base,
        &["users", "revoke", "--app", "test-app", "--user", &both],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    for login in [&a, &b] {
        t.refresh(login["refresh_token"].as_str().unwrap())
            .await
            .reason("InvalidSession", "revoked");
    }

    let c = t.anon("test-app").await;
    let c_id = c["user_id"].as_str().unwrap();
    let out = admin(
        &base,
        &["users", "disable", "--app", "test-app", "--user", c_id],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    t.refresh(c["refresh_token"].as_str().unwrap())
        .await
        .err(401, "UserDisabled");

    // The token comes on stdin: a token is a secret, not an argument.
    let fresh = t.anon("test-app").await;
    let access = fresh["access_token"].as_str().unwrap();
    let out = admin(
        &base,
        &["tokens", "verify", "--app", "test-app"],
        Some(access),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(fresh["user_id"].as_str().unwrap()));
    let out = admin(
        &base,
        &["tokens", "verify", "--app", "test-app"],
        Some("forged.token.x"),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("InvalidSession"),
        "{}",
        text(&out.stderr)
    );

    // An unknown user: a clear error and a failing exit, the others still done.
    let out = admin(
        &base,
        &[
            "users",
            "revoke",
            "--app",
            "test-app",
            "--user",
            "000000000000000000000000",
        ],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("UserNotFound"),
        "{}",
        text(&out.stderr)
    );
    t.srv.shutdown().await;
}

#[test]
fn without_keys_or_url_it_says_what_to_set() {
    let out = Command::new(env!("CARGO_BIN_EXE_sessionkit-server"))
        .args([
            "admin",
            "--url",
            "http://127.0.0.1:9",
            "users",
            "list",
            "--app",
            "x",
        ])
        .env_remove("SESSIONKIT_ADMIN_PUBLIC_KEY")
        .env_remove("SESSIONKIT_ADMIN_PRIVATE_KEY")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("SESSIONKIT_ADMIN_PUBLIC_KEY"));
    let out = Command::new(env!("CARGO_BIN_EXE_sessionkit-server"))
        .args(["admin", "users", "list", "--app", "x"])
        .env_remove("SESSIONKIT_URL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--url"), "{}", text(&out.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_list_prints_every_page_as_json_lines_filtered() {
    let t = start().await;
    let base = t.base.clone();
    // 1,003 logins: more than one page of the admin API (1,000).
    let mut ids = Vec::new();
    for _ in 0..1003 {
        ids.push(
            t.anon("test-app").await["user_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    let out = admin(&base, &["events", "list", "--app", "test-app"], None);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let lines: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1003);
    assert!(lines.iter().all(|e| e["kind"] == "login"));
    assert_eq!(lines[1002]["user_id"], ids[1002].as_str());

    let out = admin(
        &base,
        &[
            "events", "list", "--app", "test-app", "--user", &ids[7], "--kind", "login",
        ],
        None,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout).lines().count(), 1);
    let out = admin(
        &base,
        &["events", "list", "--app", "test-app", "--limit", "5"],
        None,
    );
    assert_eq!(text(&out.stdout).lines().count(), 5);
    // --after continues from an event: the rest, in order.
    let seq_1000 = lines[999]["seq"].as_i64().unwrap().to_string();
    let out = admin(
        &base,
        &["events", "list", "--app", "test-app", "--after", &seq_1000],
        None,
    );
    let rest: Vec<serde_json::Value> = text(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rest, lines[1000..].to_vec());
    // A limit of 0 lists nothing on purpose: refused, as the API refuses it.
    let out = admin(
        &base,
        &["events", "list", "--app", "test-app", "--limit", "0"],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--limit"),
        "{}",
        text(&out.stderr)
    );
    let out = admin(
        &base,
        &["events", "list", "--app", "test-app", "--kind", "logn"],
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown event kind"),
        "{}",
        text(&out.stderr)
    );
    t.srv.shutdown().await;
}
