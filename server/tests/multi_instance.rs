//! Several `sessionkit-server` processes on one database (#16): every guarantee of the protocol
//! that the store promises "on every instance" (store/mod.rs) is checked here with TWO real
//! server processes, through the public HTTP API only.
//!
//! - refresh token rotation: a client alternating between the instances, each rotated token
//!   used on the other one, is never logged out;
//! - an admin revoke or disable through one instance ends the session on the other at once,
//!   and the other refuses the disabled user's access token;
//! - reuse of a rotated-out token presented to both instances at once revokes the session,
//!   and neither instance hands out a new token for it, whether the client's newer token was
//!   only presented or also rotated on the other instance (a token two rotations old);
//! - confirmation and password-reset tokens are single-use across instances;
//! - API key names are unique per user across instances;
//! - two instances starting together on an empty database agree on the app secret (HS256),
//!   the signing key (ES256) and the admin secret: a token minted by one verifies on the other;
//! - SIGKILL of one instance in the middle of a burst loses nothing either acknowledged, and
//!   the other keeps serving.
//!
//! Each test starts both processes with `--config FILE` (`listen = "127.0.0.1:0"`) and the same
//! `--data-dir DIR`. On the default pass they share the SQLite file `DIR/sessionkit.db` (WAL
//! mode: several processes on one machine). With `SESSIONKIT_TEST_POSTGRES` set to a cluster
//! URL (scripts/test-all's second pass, or `scripts/pg-cluster start DIR`), the test database
//! is named after `DIR` ([`common::same_database`]), so both processes get the same PostgreSQL
//! database. Each process's stderr goes to a log file next to the data dir; a failing test
//! prints the tail of both logs. The processes are killed when a test ends, panics included.
//!
//! The test clock (`test_clock = true`) is per process: a test that moves time moves it on both
//! instances by the same amount.
//!
//! Run: `cargo test -p sessionkit-server --test multi_instance` (SQLite), then the same with
//! `SESSIONKIT_TEST_POSTGRES=$(cat target/pg/url)` (PostgreSQL).
#![cfg(unix)]

mod common;

use std::collections::{HashMap, HashSet};
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{BR, CONFIG, Resp, adm, ar, temp_dir};
use reqwest::Method;
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_sessionkit-server");

/// The standard test apps, plus a rotating app with API keys (a refresh token can be presented
/// without rotating it) and an ES256 app.
const EXTRA_APPS: &str = r#"
[[app]]
id = "mi-rot"
refresh_token_rotation = true
access_token_lifetime_secs = 60
[app.providers.anon-user]
[app.providers.api-key]

[[app]]
id = "mi-es"
access_token_algorithm = "ES256"
[app.providers.anon-user]
"#;

fn config() -> String {
    format!("{CONFIG}{EXTRA_APPS}")
}

/// One server process; killed (SIGKILL) and reaped when dropped.
struct Instance {
    name: &'static str,
    child: Child,
    base: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Instance {
    /// Spawns the binary on `root`'s config and data dir without waiting for it; `ready` waits.
    fn spawn(root: &Path, name: &'static str) -> (Instance, std::sync::mpsc::Receiver<String>) {
        let data = root.join("data");
        let log = root.join(format!("{name}.log"));
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(root.join("server.toml"))
            .arg("--data-dir")
            .arg(&data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap());
        // The PostgreSQL pass: the database named after the data dir, the same for both.
        common::same_database(&mut cmd, &data);
        let mut child = cmd.spawn().expect("the server binary starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the first line, then drains stdout so that the server never blocks on it.
        std::thread::spawn(move || {
            let mut lines = std::io::BufReader::new(stdout).lines();
            if let Some(Ok(first)) = lines.next() {
                let _ = tx.send(first);
            }
            for _ in lines {}
        });
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let instance = Instance {
            name,
            child,
            base: String::new(),
            log,
            http,
        };
        (instance, rx)
    }

    /// Waits for the `listening on` line (SERVER.md).
    fn ready(&mut self, rx: std::sync::mpsc::Receiver<String>) {
        let first = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| {
                self.kill();
                panic!(
                    "instance {} did not print its listening line; its log:\n{}",
                    self.name,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                )
            });
        let base = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line of {}: {first}", self.name));
        assert!(base.starts_with("http://127.0.0.1:"), "{base}");
        self.base = base.to_string();
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// One request; `Err` when no complete answer came (connection refused or reset, a cut
    /// body, a body that is not JSON).
    async fn try_send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        bearer: Option<&str>,
    ) -> Result<Resp, String> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| format!("{e:?}"))?;
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap_or_default().to_string());
        let bytes = resp.bytes().await.map_err(|e| format!("{e:?}"))?;
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).map_err(|_| {
                format!(
                    "non-JSON body ({status}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })?
        };
        Ok(Resp {
            status,
            body,
            content_type,
        })
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        bearer: Option<&str>,
    ) -> Resp {
        self.try_send(method, path, body, bearer)
            .await
            .unwrap_or_else(|e| panic!("{} {path}: {e}", self.name))
    }

    async fn post(&self, path: &str, body: Value, bearer: Option<&str>) -> Resp {
        self.send(Method::POST, path, Some(&body), bearer).await
    }

    async fn get(&self, path: &str, bearer: Option<&str>) -> Resp {
        self.send(Method::GET, path, None, bearer).await
    }

    async fn put(&self, path: &str, bearer: Option<&str>) -> Resp {
        self.send(Method::PUT, path, None, bearer).await
    }

    /// POST session with a refresh token.
    async fn refresh(&self, refresh: &str) -> Resp {
        self.send(
            Method::POST,
            &format!("{BR}/auth/session"),
            None,
            Some(refresh),
        )
        .await
    }

    /// GET profile with an access token.
    async fn profile(&self, access: &str) -> Resp {
        self.get(&format!("{BR}/auth/profile"), Some(access)).await
    }

    /// Logs in; asserts 200 and returns the body.
    async fn login(&self, app: &str, provider: &str, body: Value) -> Value {
        let path = format!("{}/auth/providers/{provider}/login", ar(app));
        let r = self.post(&path, body, None).await;
        assert_eq!(r.status, 200, "login on {}: {}", self.name, r.body);
        r.body
    }

    async fn anon(&self, app: &str) -> Value {
        self.login(app, "anon-user", json!({})).await
    }

    /// An admin access token from this instance.
    async fn admin(&self) -> String {
        let r = self
            .post(
                "/api/admin/v3.0/auth/providers/mongodb-cloud/login",
                json!({"username": "admin-pub", "apiKey": "admin-priv"}),
                None,
            )
            .await;
        r.ok(200);
        r.s("access_token")
    }

    /// Moves the test clock forward (the database's: every instance on it moves).
    async fn advance_clock(&self, admin: &str, secs: i64) {
        self.post(
            "/api/admin/v3.0/test/clock",
            json!({"advance_secs": secs}),
            Some(admin),
        )
        .await
        .ok(200);
    }

    /// The newest mail of `kind` to `email` in the admin outbox.
    async fn last_mail(&self, admin: &str, app: &str, email: &str, kind: &str) -> Value {
        let path = format!("{}/outbox?email={}", adm(app), email.replace('@', "%40"));
        let r = self.get(&path, Some(admin)).await;
        let mail = r.ok(200).as_array().unwrap().clone();
        let last = mail
            .iter()
            .rev()
            .find(|m| m["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} mail for {email} in {mail:?}"));
        last.clone()
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Two instances, A and B, on one data dir (one database); both killed when dropped. The
/// directory is removed after a passing test and kept (with the logs' tails printed) after a
/// failing one.
struct Pair {
    root: PathBuf,
    a: Instance,
    b: Instance,
}

impl Pair {
    fn write_config(tag: &str) -> PathBuf {
        let root = temp_dir(tag);
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("server.toml"), config()).unwrap();
        root
    }

    /// Starts A, waits until it serves, then starts B.
    fn start(tag: &str) -> Pair {
        let root = Pair::write_config(tag);
        let (mut a, rx) = Instance::spawn(&root, "A");
        a.ready(rx);
        let (mut b, rx) = Instance::spawn(&root, "B");
        b.ready(rx);
        Pair { root, a, b }
    }

    /// Starts A and B back to back on an empty data dir (and an empty database), then waits
    /// for both.
    fn start_together(tag: &str) -> Pair {
        let root = Pair::write_config(tag);
        let (mut a, rx_a) = Instance::spawn(&root, "A");
        let (mut b, rx_b) = Instance::spawn(&root, "B");
        a.ready(rx_a);
        b.ready(rx_b);
        Pair { root, a, b }
    }
}

impl Drop for Pair {
    fn drop(&mut self) {
        self.a.kill();
        self.b.kill();
        if std::thread::panicking() {
            for i in [&self.a, &self.b] {
                let log = std::fs::read_to_string(&i.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(40).collect();
                eprintln!("--- tail of {} ({}):", i.name, i.log.display());
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key} in {v}"))
        .to_string()
}

/// The two answers of a race sorted by status, for "exactly one of each" checks.
fn by_status(x: Resp, y: Resp) -> (Resp, Resp) {
    if x.status <= y.status { (x, y) } else { (y, x) }
}

/// 1. A client alternating between the instances for 500 refreshes with rotation on: every
/// refresh succeeds, and each rotated token is presented next to the other instance.
#[tokio::test]
async fn rotation_alternating_between_instances_never_logs_out() {
    let p = Pair::start("mi-rotation");
    let login = p.a.anon("mi-rot").await;
    let user_id = s(&login, "user_id");
    let mut refresh = s(&login, "refresh_token");
    let mut seen = HashSet::from([refresh.clone()]);
    let started = Instant::now();
    for i in 0..500 {
        // The login was on A: refresh 0 goes to B, 1 to A, and so on.
        let (here, there) = if i % 2 == 0 {
            (&p.b, &p.a)
        } else {
            (&p.a, &p.b)
        };
        let r = here.refresh(&refresh).await;
        assert_eq!(
            r.status, 201,
            "refresh {i} on {} (token from {}) failed: {}",
            here.name, there.name, r.body
        );
        let next = r.s("refresh_token");
        assert!(seen.insert(next.clone()), "refresh {i}: a token came twice");
        refresh = next;
        if i % 50 == 0 {
            // The access token minted here verifies there.
            let prof = there.profile(&r.s("access_token")).await;
            assert_eq!(prof.ok(200)["user_id"], user_id.as_str());
        }
    }
    eprintln!("500 alternating refreshes in {:?}", started.elapsed());
    // Still logged in on both.
    p.a.refresh(&refresh).await.ok(201);
    let admin = p.b.admin().await;
    p.b.get(&format!("{}/users/{user_id}", adm("mi-rot")), Some(&admin))
        .await
        .ok(200);
}

/// 2. An admin revoke or disable through B ends the session at A's next refresh, and A refuses
/// the disabled user's access token; enabling through B is seen by A at once too.
#[tokio::test]
async fn revoke_and_disable_through_one_instance_take_effect_on_the_other() {
    let p = Pair::start("mi-revoke");
    let admin_b = p.b.admin().await;
    let users = adm("test-app");

    // Revoke.
    let u = p.a.anon("test-app").await;
    let (uid, rt) = (s(&u, "user_id"), s(&u, "refresh_token"));
    p.a.refresh(&rt).await.ok(201);
    p.b.put(&format!("{users}/users/{uid}/logout"), Some(&admin_b))
        .await
        .ok(204);
    p.a.refresh(&rt).await.reason("InvalidSession", "revoked");
    p.b.refresh(&rt).await.reason("InvalidSession", "revoked");

    // Disable.
    let u =
        p.a.login(
            "test-app",
            "custom-function",
            json!({"username": "mi-disabled"}),
        )
        .await;
    let (uid, rt, at) = (
        s(&u, "user_id"),
        s(&u, "refresh_token"),
        s(&u, "access_token"),
    );
    p.a.profile(&at).await.ok(200);
    p.b.put(&format!("{users}/users/{uid}/disable"), Some(&admin_b))
        .await
        .ok(204);
    p.a.refresh(&rt).await.reason("UserDisabled", "disabled");
    p.a.profile(&at).await.err(401, "UserDisabled");
    let login = format!("{}/auth/providers/custom-function/login", ar("test-app"));
    p.a.post(&login, json!({"username": "mi-disabled"}), None)
        .await
        .err(401, "UserDisabled");

    // Enable through B: the session that the disable ended stays ended, its access token
    // included (#25); a new login works.
    p.b.put(&format!("{users}/users/{uid}/enable"), Some(&admin_b))
        .await
        .ok(204);
    p.a.profile(&at).await.err(401, "InvalidSession");
    p.a.refresh(&rt).await.reason("InvalidSession", "revoked");
    p.a.post(&login, json!({"username": "mi-disabled"}), None)
        .await
        .ok(200);
}

/// #25: a user ends another device's session through one instance; the other instance refuses
/// that device's access token and refresh token at its next request, and `everywhere` through
/// it ends the rest.
#[tokio::test]
async fn a_users_revoke_through_one_instance_is_seen_by_the_next_request_on_the_other() {
    let p = Pair::start("mi-user-revoke");
    let who = json!({"username": "mi-devices"});
    let phone = p.a.login("test-app", "custom-function", who.clone()).await;
    let laptop = p.b.login("test-app", "custom-function", who.clone()).await;
    let listed =
        p.b.get(
            &format!("{BR}/auth/sessions"),
            Some(&s(&laptop, "refresh_token")),
        )
        .await;
    let listed = listed.ok(200).as_array().unwrap().clone();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let laptop_id = s(listed.iter().find(|x| x["current"] == true).unwrap(), "id");
    p.a.send(
        Method::DELETE,
        &format!("{BR}/auth/sessions/{laptop_id}"),
        None,
        Some(&s(&phone, "refresh_token")),
    )
    .await
    .ok(204);
    p.b.profile(&s(&laptop, "access_token"))
        .await
        .err(401, "InvalidSession");
    p.b.refresh(&s(&laptop, "refresh_token"))
        .await
        .reason("InvalidSession", "revoked");
    // Everywhere through B, asked by a third device: the phone on A is refused at once.
    let tablet = p.b.login("test-app", "custom-function", who).await;
    let r =
        p.b.send(
            Method::DELETE,
            &format!("{BR}/auth/sessions?scope=everywhere"),
            None,
            Some(&s(&tablet, "refresh_token")),
        )
        .await;
    assert_eq!(r.ok(200)["revoked"], 2);
    p.a.profile(&s(&phone, "access_token"))
        .await
        .err(401, "InvalidSession");
    p.a.refresh(&s(&phone, "refresh_token"))
        .await
        .reason("InvalidSession", "revoked");
}

/// 3. Reuse of a rotated-out token, past the grace window, presented to A and B at the same
/// time: both refuse it as revoked, neither hands out a new token, and the session's current
/// token is dead on both afterwards. Another session is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_presented_to_both_instances_at_once_revokes_the_session() {
    let p = Pair::start("mi-reuse");
    let (admin_a, admin_b) = (p.a.admin().await, p.b.admin().await);
    const SESSIONS: usize = 4;
    let mut sessions = Vec::new();
    for _ in 0..SESSIONS {
        // r0 rotated on A; r1 presented to B (the client moved on): r0 is superseded and its
        // successor was seen by the client, so r0 is no lost answer.
        let r0 = s(&p.a.anon("mi-rot").await, "refresh_token");
        let r1 = p.a.refresh(&r0).await.s("refresh_token");
        let keys = p.b.get(&format!("{BR}/auth/api_keys"), Some(&r1)).await;
        keys.ok(200);
        sessions.push((r0, r1));
    }
    let control = s(&p.b.anon("mi-rot").await, "refresh_token");
    // Past the 10 s grace window, on both clocks.
    p.a.advance_clock(&admin_a, 11).await;
    p.b.advance_clock(&admin_b, 11).await;
    for (i, (r0, r1)) in sessions.iter().enumerate() {
        let (x, y) = tokio::join!(p.a.refresh(r0), p.b.refresh(r0));
        for (name, r) in [("A", &x), ("B", &y)] {
            assert_eq!(
                r.status, 401,
                "session {i}: reused token accepted by {name}: {}",
                r.body
            );
            r.reason("InvalidSession", "revoked");
        }
        p.a.refresh(r1).await.reason("InvalidSession", "revoked");
        p.b.refresh(r1).await.reason("InvalidSession", "revoked");
    }
    p.a.refresh(&control).await.ok(201);
}

/// 3b. The same reuse when the client moved on by refreshing (not just presenting) its new
/// token on the other instance within the same second: r0 -> r1 on A, r1 -> r2 on B. r0 is then
/// two rotations old, not the parent of the current token, so presenting it past the grace
/// window is reuse (PROTOCOL.md, "refresh-token rotation").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reuse_of_a_token_two_rotations_old_revokes_the_session() {
    let p = Pair::start("mi-reuse2");
    let (admin_a, admin_b) = (p.a.admin().await, p.b.admin().await);
    let r0 = s(&p.a.anon("mi-rot").await, "refresh_token");
    let r1 = p.a.refresh(&r0).await.s("refresh_token");
    let r2 = p.b.refresh(&r1).await.s("refresh_token");
    p.a.advance_clock(&admin_a, 11).await;
    p.b.advance_clock(&admin_b, 11).await;
    let (x, y) = tokio::join!(p.a.refresh(&r0), p.b.refresh(&r0));
    for (name, r) in [("A", &x), ("B", &y)] {
        assert_eq!(r.status, 401, "reused token accepted by {name}: {}", r.body);
        r.reason("InvalidSession", "revoked");
    }
    p.a.refresh(&r2).await.reason("InvalidSession", "revoked");
    p.b.refresh(&r2).await.reason("InvalidSession", "revoked");
}

/// 3c. Issue 22, item 1: one refresh token presented 8 times at once, 4 to each instance (an
/// app and its extension sharing a session): every answer is 201 with the same new refresh
/// token, in each of several trials. The two copies then refresh in turn, each on its own
/// instance, within the grace window and long past it: never refused, one chain. Reuse of an
/// older token still revokes the session on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_token_refreshed_at_once_on_both_instances_gets_one_successor() {
    let p = Pair::start("mi-same-successor");
    let admin = p.a.admin().await;
    for trial in 0..6 {
        let rt0 = s(&p.a.anon("mi-rot").await, "refresh_token");
        let answers = common::refresh_at_once(&p.a.http, &[&p.a.base, &p.b.base], &rt0, 8).await;
        let rt1 = common::one_successor(trial, &answers);
        // Copy A refreshes on A, copy B (holding what A just rotated out) on B.
        let (mut a, mut b) = (rt1.clone(), rt1);
        let mut parent = rt0;
        for round in 0..6 {
            let r = p.a.refresh(&a).await;
            assert_eq!(
                r.status, 201,
                "trial {trial} round {round}: A refused: {}",
                r.body["reason"]
            );
            let next = r.s("refresh_token");
            // The test clock is the database's: moved through A, it moves on B.
            p.a.advance_clock(&admin, if round % 2 == 0 { 11 } else { 3 })
                .await;
            let r = p.b.refresh(&b).await;
            assert_eq!(
                r.status, 201,
                "trial {trial} round {round}: B refused: {}",
                r.body["reason"]
            );
            assert!(
                r.s("refresh_token") == next,
                "trial {trial} round {round}: B got another token"
            );
            parent = a;
            (a, b) = (next.clone(), next);
            p.a.advance_clock(&admin, 11).await;
        }
        p.b.refresh(&a).await.ok(201);
        p.a.advance_clock(&admin, 11).await;
        // `parent`'s successor was used: past the grace window, it is reuse.
        p.b.refresh(&parent)
            .await
            .reason("InvalidSession", "revoked");
        p.a.refresh(&a).await.reason("InvalidSession", "revoked");
    }
}

/// 4. A confirmation token, and then a password-reset token, presented to A and B at the same
/// time: exactly one is accepted, the other is 400 UserpassTokenInvalid; the reset that won is
/// the password that works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mail_tokens_are_single_use_across_instances() {
    let p = Pair::start("mi-mail");
    let admin = p.b.admin().await;
    let up = format!("{}/auth/providers/local-userpass", ar("test-app"));
    for k in 0..3 {
        let email = format!("mi-mail-{k}@x.io");
        p.a.post(
            &format!("{up}/register"),
            json!({"email": email, "password": "first-pw"}),
            None,
        )
        .await
        .ok(201);
        let mail = p.b.last_mail(&admin, "test-app", &email, "confirm").await;
        let body = json!({"token": mail["token"], "tokenId": mail["tokenId"]});
        let confirm = format!("{up}/confirm");
        let (x, y) = tokio::join!(
            p.a.post(&confirm, body.clone(), None),
            p.b.post(&confirm, body.clone(), None)
        );
        let (ok, refused) = by_status(x, y);
        ok.ok(204);
        refused.err(400, "UserpassTokenInvalid");
        p.b.login(
            "test-app",
            "local-userpass",
            json!({"username": email, "password": "first-pw"}),
        )
        .await;

        p.a.post(&format!("{up}/reset/send"), json!({"email": email}), None)
            .await
            .ok(204);
        let mail = p.b.last_mail(&admin, "test-app", &email, "reset").await;
        let reset = format!("{up}/reset");
        let with =
            |pw: &str| json!({"password": pw, "token": mail["token"], "tokenId": mail["tokenId"]});
        let (x, y) = tokio::join!(
            p.a.post(&reset, with("pw-via-a"), None),
            p.b.post(&reset, with("pw-via-b"), None)
        );
        let (winner, loser) = match (x.status, y.status) {
            (204, _) => {
                y.err(400, "UserpassTokenInvalid");
                ("pw-via-a", "pw-via-b")
            }
            (_, 204) => {
                x.err(400, "UserpassTokenInvalid");
                ("pw-via-b", "pw-via-a")
            }
            _ => panic!(
                "no reset accepted: A {} {}, B {} {}",
                x.status, x.body, y.status, y.body
            ),
        };
        let login = format!("{up}/login");
        for (i, pw) in [(&p.a, winner), (&p.b, winner)] {
            i.login(
                "test-app",
                "local-userpass",
                json!({"username": email, "password": pw}),
            )
            .await;
        }
        for pw in [loser, "first-pw"] {
            p.a.post(&login, json!({"username": email, "password": pw}), None)
                .await
                .err(401, "InvalidPassword");
        }
    }
}

/// 5. The same API key name created through A and B at the same time: one 201, one 409
/// APIKeyAlreadyExists, and one key of that name listed on both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_names_are_unique_across_instances() {
    let p = Pair::start("mi-keys");
    let u =
        p.a.login(
            "test-app",
            "custom-function",
            json!({"username": "mi-keyowner"}),
        )
        .await;
    let rt = s(&u, "refresh_token");
    let keys = format!("{BR}/auth/api_keys");
    let mut made = HashMap::new();
    for k in 0..10 {
        let name = format!("key-{k}");
        let (x, y) = tokio::join!(
            p.a.post(&keys, json!({"name": name}), Some(&rt)),
            p.b.post(&keys, json!({"name": name}), Some(&rt))
        );
        let (created, refused) = by_status(x, y);
        let doc = created.ok(201).clone();
        refused.err(409, "APIKeyAlreadyExists");
        assert_eq!(doc["name"], name.as_str());
        made.insert(name, doc);
    }
    for i in [&p.a, &p.b] {
        let list = i.get(&keys, Some(&rt)).await;
        let list = list.ok(200).as_array().unwrap().clone();
        assert_eq!(list.len(), made.len(), "{} lists {list:?}", i.name);
        for doc in &list {
            let name = doc["name"].as_str().unwrap();
            assert_eq!(doc["_id"], made[name]["_id"], "{} lists {list:?}", i.name);
        }
    }
    // A key made by either instance logs in on the other.
    for doc in made.values() {
        let k =
            p.b.login("test-app", "api-key", json!({"key": doc["key"]}))
                .await;
        assert_eq!(k["user_id"], u["user_id"]);
    }
}

/// 6. Two instances spawned back to back on an empty database both come up and agree on every
/// secret: HS256 and ES256 access tokens minted by one verify on the other, both publish the
/// same ES256 key, and an admin token of one works on the other. Three times over.
#[tokio::test]
async fn two_instances_starting_together_on_an_empty_database_agree() {
    for round in 0..3 {
        let p = Pair::start_together("mi-fresh");
        for app in ["test-app", "mi-es"] {
            for (from, to) in [(&p.a, &p.b), (&p.b, &p.a)] {
                let u = from.anon(app).await;
                let at = s(&u, "access_token");
                let prof = to.profile(&at).await;
                assert_eq!(
                    prof.status, 200,
                    "round {round}: {app} access token from {} refused by {}: {}",
                    from.name, to.name, prof.body
                );
                assert_eq!(prof.body["user_id"], u["user_id"]);
                let rt = s(&u, "refresh_token");
                to.refresh(&rt).await.ok(201);
            }
        }
        let jwks = format!("{}/.well-known/jwks.json", ar("mi-es"));
        let (ja, jb) = (p.a.get(&jwks, None).await, p.b.get(&jwks, None).await);
        assert_eq!(
            ja.ok(200)["keys"].as_array().unwrap().len(),
            1,
            "{}",
            ja.body
        );
        assert_eq!(ja.body, *jb.ok(200), "round {round}: JWKS differ");
        let at = s(&p.a.anon("mi-es").await, "access_token");
        let header = jsonwebtoken::decode_header(&at).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
        assert_eq!(ja.body["keys"][0]["kid"], header.kid.unwrap().as_str());
        // One admin secret.
        let admin_a = p.a.admin().await;
        p.b.get(&format!("{}/users", adm("test-app")), Some(&admin_a))
            .await
            .ok(200);
    }
}

/// One request of the burst that got a complete answer.
#[derive(Debug, Clone)]
struct Session {
    app: &'static str,
    user_id: String,
    /// The newest refresh token an answer carried (rotation) or the login's.
    refresh: String,
    via: &'static str,
}

/// 7. SIGKILL of A in the middle of a burst of logins and refreshes on both: B keeps answering
/// every request, and every user and refresh token that either instance acknowledged (A before
/// it died included) is there afterwards, through B.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_of_one_instance_mid_burst_loses_nothing_acknowledged() {
    const TASKS: usize = 8;
    const REQUESTS: usize = 50;
    const KILL_AFTER: usize = 40;
    const AFTER_KILL: usize = 10;
    let p = Arc::new(Pair::start("mi-kill"));
    let admin_b = p.b.admin().await;
    let acked_by_a = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let sessions = Arc::new(Mutex::new(Vec::<Session>::new()));
    let b_failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let b_after_kill = Arc::new(AtomicUsize::new(0));
    let a_errors = Arc::new(AtomicUsize::new(0));

    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let p = p.clone();
        let (acked_by_a, killed, sessions) = (acked_by_a.clone(), killed.clone(), sessions.clone());
        let (b_failures, b_after_kill, a_errors) =
            (b_failures.clone(), b_after_kill.clone(), a_errors.clone());
        tasks.push(tokio::spawn(async move {
            let on_a = t % 2 == 0;
            let i = if on_a { &p.a } else { &p.b };
            // Half the tasks on a rotating app.
            let app = if t % 4 < 2 { "test-app" } else { "mi-rot" };
            let mut current: Option<usize> = None;
            // A's tasks send REQUESTS; B's go on until they have had answers after the kill.
            let mut answered_after_kill = 0;
            for n in 0.. {
                let was_killed = killed.load(Ordering::SeqCst);
                let done = on_a || answered_after_kill >= AFTER_KILL || n >= 20 * REQUESTS;
                if n >= REQUESTS && done {
                    break;
                }
                let login = n % 2 == 0 || current.is_none();
                let r = if login {
                    let path = format!("{}/auth/providers/anon-user/login", ar(app));
                    i.try_send(Method::POST, &path, Some(&json!({})), None)
                        .await
                } else {
                    let rt = sessions.lock().unwrap()[current.unwrap()].refresh.clone();
                    let path = format!("{BR}/auth/session");
                    i.try_send(Method::POST, &path, None, Some(&rt)).await
                };
                let acked = match &r {
                    Ok(r) if (200..300).contains(&r.status) && r.body.is_object() => true,
                    Ok(r) => {
                        if !on_a {
                            b_failures
                                .lock()
                                .unwrap()
                                .push(format!("task {t} request {n}: {} {}", r.status, r.body));
                        }
                        false
                    }
                    Err(e) => {
                        if on_a {
                            a_errors.fetch_add(1, Ordering::SeqCst);
                        } else {
                            b_failures
                                .lock()
                                .unwrap()
                                .push(format!("task {t} request {n}: {e}"));
                        }
                        false
                    }
                };
                if !acked {
                    continue;
                }
                let body = &r.as_ref().unwrap().body;
                let mut list = sessions.lock().unwrap();
                if login {
                    list.push(Session {
                        app,
                        user_id: s(body, "user_id"),
                        refresh: s(body, "refresh_token"),
                        via: i.name,
                    });
                    current = Some(list.len() - 1);
                } else if let Some(next) = body["refresh_token"].as_str() {
                    list[current.unwrap()].refresh = next.to_string();
                }
                drop(list);
                if on_a {
                    acked_by_a.fetch_add(1, Ordering::SeqCst);
                } else if was_killed {
                    answered_after_kill += 1;
                    b_after_kill.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    // The killer: SIGKILL to A once it has acknowledged KILL_AFTER requests.
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked_by_a.load(Ordering::SeqCst) < KILL_AFTER {
        assert!(
            Instant::now() < deadline,
            "A never acknowledged {KILL_AFTER} requests"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // SAFETY: a plain kill(2) of our own child, not yet reaped (its pid cannot be reused).
    let rc = unsafe { libc::kill(p.a.child.id() as libc::pid_t, libc::SIGKILL) };
    assert_eq!(rc, 0, "kill A");
    killed.store(true, Ordering::SeqCst);
    let acked_before_kill = acked_by_a.load(Ordering::SeqCst);
    for task in tasks {
        task.await.unwrap();
    }
    let acked_a = acked_by_a.load(Ordering::SeqCst);
    eprintln!(
        "A acknowledged {acked_a} ({acked_before_kill} when killed), {} failed; B answered {} \
         after the kill",
        a_errors.load(Ordering::SeqCst),
        b_after_kill.load(Ordering::SeqCst)
    );
    let b_failures = b_failures.lock().unwrap().clone();
    assert!(b_failures.is_empty(), "B failed requests: {b_failures:#?}");
    assert!(
        acked_a < TASKS / 2 * REQUESTS,
        "A answered all its requests: it was killed too late"
    );
    assert!(
        a_errors.load(Ordering::SeqCst) > 0,
        "no request to A failed after the kill"
    );
    assert!(
        b_after_kill.load(Ordering::SeqCst) >= TASKS / 2 * AFTER_KILL,
        "B did not keep answering after A was killed"
    );

    // Everything acknowledged, through B.
    let sessions = sessions.lock().unwrap().clone();
    assert!(sessions.iter().any(|x| x.via == "A"));
    let mut lost = Vec::new();
    for x in &sessions {
        let user =
            p.b.get(
                &format!("{}/users/{}", adm(x.app), x.user_id),
                Some(&admin_b),
            )
            .await;
        if user.status != 200 {
            lost.push(format!(
                "user {} ({} via {}): {} {}",
                x.user_id, x.app, x.via, user.status, user.body
            ));
        }
        let r = p.b.refresh(&x.refresh).await;
        if r.status != 201 {
            lost.push(format!(
                "refresh token of {} ({} via {}): {} {}",
                x.user_id, x.app, x.via, r.status, r.body
            ));
        }
    }
    assert!(
        lost.is_empty(),
        "acknowledged but lost after the kill: {lost:#?}"
    );
}

/// 8. The test clock is the database's: moved through A, it has moved on B too (before B's
/// next request), so a suite can drive several instances like one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_clock_moved_through_one_instance_moves_on_the_other() {
    let p = Pair::start("mi-clock");
    let admin_a = p.a.admin().await;
    let login = p.b.anon("mi-rot").await;
    let access = s(&login, "access_token");
    p.b.profile(&access).await.ok(200);
    // mi-rot's access tokens live 60 s: past that on A's clock, B refuses the token.
    p.a.advance_clock(&admin_a, 61).await;
    let r = p.b.profile(&access).await;
    r.err(401, "InvalidSession");
    assert!(
        r.body["error"].as_str().unwrap().contains("expired"),
        "{}",
        r.body
    );
    // And B's refresh mints a token for B's (moved) now, which A accepts.
    let fresh =
        p.b.refresh(&s(&login, "refresh_token"))
            .await
            .s("access_token");
    p.a.profile(&fresh).await.ok(200);
}

/// 9. Metrics in test mode are the database's too: refreshes through A and through B are all
/// counted, whichever instance is asked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_the_requests_of_every_instance() {
    let p = Pair::start("mi-metrics");
    let (admin_a, admin_b) = (p.a.admin().await, p.b.admin().await);
    let mut refresh = s(&p.a.anon("mi-rot").await, "refresh_token");
    for i in 0..6 {
        let via = if i % 2 == 0 { &p.a } else { &p.b };
        refresh = via.refresh(&refresh).await.s("refresh_token");
    }
    let path = "/api/admin/v3.0/groups/g1/apps/mi-rot/metrics";
    for (name, inst, admin) in [("A", &p.a, &admin_a), ("B", &p.b, &admin_b)] {
        let m = inst.get(path, Some(admin)).await.ok(200).clone();
        assert_eq!(m["requests"]["refresh"], 6, "through {name}: {m}");
        assert_eq!(m["requests"]["login"], 1, "through {name}: {m}");
    }
}

/// 10. The first login of a new identity through both instances at once makes one user: both
/// answers carry the same user id, and the admin API lists one user for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_identity_logging_in_on_both_instances_at_once_is_one_user() {
    let p = Pair::start("mi-first-login");
    let admin = p.b.admin().await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    for round in 0..5 {
        let jwt = common::custom_jwt(
            "custom-secret",
            json!({"sub": format!("ext-{round}"), "aud": "test-app", "exp": exp}),
        );
        let path = "/api/client/v2.0/app/test-app/auth/providers/custom-token/login";
        let (x, y) = tokio::join!(
            p.a.post(path, json!({"token": jwt}), None),
            p.b.post(path, json!({"token": jwt}), None)
        );
        let (ux, uy) = (x.ok(200)["user_id"].clone(), y.ok(200)["user_id"].clone());
        assert_eq!(ux, uy, "round {round}: two users for one identity");
    }
    let users =
        p.b.get(
            "/api/admin/v3.0/groups/g1/apps/test-app/users",
            Some(&admin),
        )
        .await
        .ok(200)
        .clone();
    assert_eq!(users.as_array().unwrap().len(), 5, "{users}");
}

/// 11. The audit log (#26) is one log for every instance: a login on A, a rotation on B, the
/// reuse of the first token presented to both at once, and an admin's revocation through B
/// are all in it, in order, whichever instance is asked, and the reuse is recorded once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_holds_the_events_of_every_instance_once() {
    let p = Pair::start("mi-audit");
    let (admin_a, admin_b) = (p.a.admin().await, p.b.admin().await);
    let login = p.a.anon("mi-rot").await;
    let r0 = s(&login, "refresh_token");
    let r1 = p.b.refresh(&r0).await.s("refresh_token");
    p.a.refresh(&r1).await.ok(201);
    p.a.advance_clock(&admin_a, 11).await;
    p.b.advance_clock(&admin_b, 11).await;
    let (x, y) = tokio::join!(p.a.refresh(&r0), p.b.refresh(&r0));
    x.reason("InvalidSession", "revoked");
    y.reason("InvalidSession", "revoked");
    let user = s(&login, "user_id");
    p.b.put(
        &format!("/api/admin/v3.0/groups/g1/apps/mi-rot/users/{user}/logout"),
        Some(&admin_b),
    )
    .await
    .ok(204);
    let path = "/api/admin/v3.0/groups/g1/apps/mi-rot/events";
    let mut seen = Vec::new();
    for (inst, admin) in [(&p.a, &admin_a), (&p.b, &admin_b)] {
        let doc = inst.get(path, Some(admin)).await.ok(200).clone();
        let kinds: Vec<String> = doc["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            kinds,
            ["login", "refresh_token_reuse", "sessions_revoked"],
            "{doc}"
        );
        assert!(
            doc["events"]
                .as_array()
                .unwrap()
                .iter()
                .all(|e| e["user_id"] == user.as_str()),
            "{doc}"
        );
        seen.push(doc);
    }
    assert_eq!(seen[0], seen[1], "one log, whichever instance is asked");
    assert_eq!(seen[0]["events"][2]["actor"], "admin");
}
