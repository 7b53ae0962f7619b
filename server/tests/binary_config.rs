//! The `sessionkit-server` binary (dev mode, signals, persistence, bad config) and config parsing.

mod common;

use std::process::{Child, Command, Stdio};

use common::temp_dir;
use serde_json::{Value, json};
use sessionkit_server::{Config, ConfigError};

const BIN: &str = env!("CARGO_BIN_EXE_sessionkit-server");

/// Spawns the dev server; returns the child, its base URL and the other stdout lines it printed.
fn spawn_dev(dir: &std::path::Path) -> (Child, String, Vec<String>) {
    let (child, base, lines) = common::spawn_listening(
        Command::new(BIN)
            .args(["--dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir)
            .stderr(Stdio::null()),
    );
    let rest: Vec<String> = lines.take(4).map(|l| l.unwrap()).collect();
    (child, base, rest)
}

fn sigterm_and_wait(mut child: Child) {
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "clean exit on SIGTERM");
}

fn key(lines: &[String], prefix: &str) -> String {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} in {lines:?}"))
        .to_string()
}

#[tokio::test]
async fn dev_binary_serves_stops_cleanly_and_keeps_data() {
    let dir = temp_dir("bin");
    let (child, base, lines) = spawn_dev(&dir);
    let public = key(&lines, "admin public key: ");
    let private = key(&lines, "admin private key: ");
    let dev_key = key(&lines, "custom-token HS256 key: ");
    assert_eq!(dev_key, sessionkit_server::config::DEV_CUSTOM_TOKEN_KEY);
    let http = reqwest::Client::new();
    let loc: Value = http
        .get(format!(
            "{base}/api/client/v2.0/app/sessionkit-dev/location"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(loc["hostname"], base);
    // Every provider is on: a custom JWT signed with the documented dev key logs in.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let jwt = common::custom_jwt(&dev_key, json!({"sub": "dev-user", "exp": now + 600}));
    let login: Value = http
        .post(format!(
            "{base}/api/client/v2.0/app/sessionkit-dev/auth/providers/custom-token/login"
        ))
        .json(&json!({"token": jwt}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = login["refresh_token"].as_str().unwrap().to_string();
    // Email users are confirmed automatically.
    let reg = http
        .post(format!(
            "{base}/api/client/v2.0/app/sessionkit-dev/auth/providers/local-userpass/register"
        ))
        .json(&json!({"email": "dev@x.io", "password": "secret1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reg.status(), 201);
    sigterm_and_wait(child);

    // Restart on the same data dir: same admin keys, the session still refreshes.
    let (child, base, lines) = spawn_dev(&dir);
    assert_eq!(key(&lines, "admin public key: "), public);
    assert_eq!(key(&lines, "admin private key: "), private);
    let r = http
        .post(format!("{base}/api/client/v2.0/auth/session"))
        .bearer_auth(&refresh)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = http
        .post(format!(
            "{base}/api/client/v2.0/app/sessionkit-dev/auth/providers/local-userpass/login"
        ))
        .json(&json!({"username": "dev@x.io", "password": "secret1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http
        .post(format!(
            "{base}/api/admin/v3.0/auth/providers/mongodb-cloud/login"
        ))
        .json(&json!({"username": public, "apiKey": private}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    sigterm_and_wait(child);
    let _ = std::fs::remove_dir_all(&dir);
}

fn run_with_config(toml: &str, extra: &[&str]) -> std::process::Output {
    let dir = temp_dir("cfg");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("server.toml");
    std::fs::write(&file, toml).unwrap();
    Command::new(BIN)
        .arg("--config")
        .arg(&file)
        .args(extra)
        .arg("--data-dir")
        .arg(dir.join("data"))
        .output()
        .unwrap()
}

#[test]
fn bad_config_and_arguments_exit_non_zero_naming_the_key() {
    let out = run_with_config(
        "[[app]]\nid = \"a\"\n[app.providers.custom-token]\nalgorithm = \"HS256\"\n",
        &[],
    );
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "config error: app[0].providers.custom-token.key: missing (required for HS256)"
        ),
        "{err}"
    );
    let out = run_with_config("[[app]]\nid = \"a\"\nacess_token_lifetime_secs = 5\n", &[]);
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("acess_token_lifetime_secs"), "{err}");
    let out = run_with_config("[[app]]\nid = \"a\"\n", &["--listen", "nowhere"]);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen"));
    let out = Command::new(BIN).output().unwrap();
    assert_ne!(out.status.code(), Some(0), "--config or --dev is required");
    let out = Command::new(BIN)
        .args(["--config", "/nonexistent/sessionkit.toml"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/sessionkit.toml"));
}

fn invalid_key(toml: &str) -> String {
    match Config::from_toml_str(toml) {
        Err(ConfigError::Invalid { key, .. }) => key,
        other => panic!("expected an invalid key, got {other:?}"),
    }
}

#[test]
fn config_parsing_defaults_and_errors() {
    let c = Config::from_toml_str(
        "listen = \"127.0.0.1:0\"\n[mail]\nsmtp_url = \"smtp://127.0.0.1:2525\"\nfrom = \"a@example.com\"\n\
         [[app]]\nid = \"a\"\n[app.providers.anon-user]\n[app.providers.local-userpass]\n\
         reset_url = \"https://a.example/reset\"\n",
    )
    .unwrap();
    let app = &c.apps[0];
    assert_eq!(app.access_token_lifetime_secs, 1800);
    assert_eq!(app.refresh_token_lifetime_secs, 60 * 24 * 3600);
    assert_eq!(app.anon_refresh_token_lifetime_secs, 90 * 24 * 3600);
    assert!(!app.refresh_token_rotation);
    assert_eq!(app.inactivity_timeout_secs, 0);
    assert!(app.providers.enabled("anon-user"));
    assert!(!app.providers.enabled("api-key"));
    let up = app.providers.local_userpass.as_ref().unwrap();
    assert!(up.auto_confirm);
    assert_eq!(
        up.reset_function,
        sessionkit_server::config::ResetFunction::Pending
    );
    assert!(!c.test_clock);
    assert!(c.admin.is_none());

    let dev = Config::dev();
    assert_eq!(dev.listen.to_string(), "127.0.0.1:9090");
    assert_eq!(dev.apps[0].id, "sessionkit-dev");
    for p in [
        "anon-user",
        "local-userpass",
        "api-key",
        "custom-token",
        "custom-function",
    ] {
        assert!(dev.apps[0].providers.enabled(p), "{p}");
    }
    dev.validate().unwrap();

    assert_eq!(
        invalid_key("listen = \"x\"\n[[app]]\nid = \"a\"\n"),
        "listen"
    );
    assert_eq!(invalid_key(""), "app");
    assert_eq!(
        invalid_key("[[app]]\nid = \"a\"\n[[app]]\nid = \"a\"\n"),
        "app[1].id"
    );
    assert_eq!(
        invalid_key("[[app]]\nid = \"a\"\naccess_token_lifetime_secs = 0\n"),
        "app[0].access_token_lifetime_secs"
    );
    assert_eq!(
        invalid_key("[[app]]\nid = \"a\"\n[app.providers.custom-token]\nalgorithm = \"RS256\"\n"),
        "app[0].providers.custom-token.public_key_pem"
    );
    assert_eq!(
        invalid_key(
            "[[app]]\nid = \"a\"\n[app.providers.custom-token]\nalgorithm = \"ES256\"\npublic_key_pem = \"junk\"\n"
        ),
        "app[0].providers.custom-token.public_key_pem"
    );
    assert_eq!(
        invalid_key("[[app]]\nid = \"a\"\n[app.providers.custom-function]\n"),
        "app[0].providers.custom-function.id_field"
    );
    assert_eq!(
        invalid_key(
            "[[app]]\nid = \"a\"\n[app.providers.custom-function]\nid_field = \"u\"\nwebhook_url = \"http://x\"\n"
        ),
        "app[0].providers.custom-function.webhook_url"
    );
    assert_eq!(
        invalid_key("public_url = \"ftp://x\"\n[[app]]\nid = \"a\"\n"),
        "public_url"
    );
    for bad in [
        "[[app]]\nid = \"a\"\n[app.providers.oauth2-google]\n",
        "[[app]]\nid = \"a\"\nrefresh_token_rotation = \"yes\"\n",
        "[[app]]\nid = \"a\"\n[app.providers.local-userpass]\nreset_function = \"maybe\"\n",
        "[admin]\npublic_key = \"p\"\n[[app]]\nid = \"a\"\n",
        "[[app]]\nid = \"a\"\nrefresh_token_lifetime_secs = -1\n",
    ] {
        assert!(
            matches!(Config::from_toml_str(bad), Err(ConfigError::Parse(_))),
            "{bad}"
        );
    }
    let e =
        Config::from_toml_str("[[app]]\nid = \"a\"\n[app.providers.custom-token]\n").unwrap_err();
    assert_eq!(
        e.to_string(),
        "app[0].providers.custom-token.key: missing (required for HS256)"
    );
}

/// Logs to a pipe or a file (journald, docker logs) are plain text: no colour escape codes in
/// front of each level.
#[test]
fn logs_that_are_not_on_a_terminal_have_no_colour_codes() {
    let dir = temp_dir("bin-log");
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("stderr.log");
    let (child, _, _) = common::spawn_listening(
        Command::new(BIN)
            .args(["--dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.join("data"))
            .env_remove("NO_COLOR")
            .stderr(std::fs::File::create(&log).unwrap()),
    );
    sigterm_and_wait(child);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("INFO"), "no log lines to check: {text:?}");
    assert!(
        !text.contains('\u{1b}'),
        "colour codes in a log file: {text:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
