//! Shared helpers: a real server on 127.0.0.1:0 with a fresh data dir, and a small JSON client.
#![allow(dead_code)]

pub mod relay;

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};

use reqwest::Method;
use serde_json::{Value, json};
use sessionkit_server::{Config, RunningServer};

/// Spawns the server binary with stdout piped and reads its first line, which must be
/// `listening on http://127.0.0.1:PORT` (SERVER.md). Returns the child, its base URL and the
/// rest of its stdout.
pub fn spawn_listening(
    cmd: &mut std::process::Command,
) -> (
    std::process::Child,
    String,
    std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
) {
    use std::io::BufRead;
    // On the PostgreSQL pass, the database goes with the --data-dir: a restart on the same
    // directory finds the same data.
    let dir = cmd
        .get_args()
        .skip_while(|a| *a != "--data-dir")
        .nth(1)
        .map(|d| d.to_string_lossy().into_owned());
    if let Some(url) = test_database_blocking(dir) {
        cmd.env("SESSIONKIT_DATABASE_URL", url);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("binary starts");
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().expect("a first line").unwrap();
    let base = first
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line: {first}"))
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"), "{base}");
    (child, base, lines)
}

/// The standard test configuration (one app per concern).
pub const CONFIG: &str = r#"
listen = "127.0.0.1:0"
test_clock = true
rate_limits = { enabled = false }

[admin]
public_key = "admin-pub"
private_key = "admin-priv"

[[app]]
id = "test-app"
refresh_token_lifetime_secs = 3600
dpop = "optional"
[app.providers.anon-user]
[app.providers.local-userpass]
auto_confirm = false
[app.providers.api-key]
[app.providers.custom-token]
key = "custom-secret"
audience = "test-app"
[app.providers.custom-function]
id_field = "username"

[[app]]
id = "auto-app"
[app.providers.local-userpass]
reset_function = "success"
allow_insecure_reset_function = true
[app.providers.custom-token]
key = "custom-secret"
metadata_fields = ["name", "team"]

[[app]]
id = "fail-app"
[app.providers.local-userpass]
reset_function = "fail"

[[app]]
id = "rot-app"
refresh_token_rotation = true
dpop = "optional"
inactivity_timeout_secs = 600
anon_refresh_token_lifetime_secs = 7200
[app.providers.anon-user]

[[app]]
id = "bare-app"
"#;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A unique, empty data directory.
pub fn temp_dir(tag: &str) -> PathBuf {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let dir = std::env::temp_dir().join(format!(
        "sessionkit-server-test-{tag}-{}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A server under test and a client.
pub struct T {
    pub srv: RunningServer,
    pub http: reqwest::Client,
    pub base: String,
}

/// A response: status and parsed JSON body (Null when empty).
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub content_type: Option<String>,
}

impl Resp {
    /// Asserts an error answer with this status and code, JSON typed, with an error message and
    /// no `link` (this server has no log viewer to point at).
    #[track_caller]
    pub fn err(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status, status, "status, body: {}", self.body);
        assert_eq!(self.body["error_code"], code, "body: {}", self.body);
        assert!(self.body["error"].is_string(), "body: {}", self.body);
        assert!(self.body.get("link").is_none(), "body: {}", self.body);
        assert_eq!(self.content_type.as_deref(), Some("application/json"));
        self
    }
    /// Asserts a refresh-token 401 with this reason.
    #[track_caller]
    pub fn reason(&self, code: &str, reason: &str) -> &Self {
        self.err(401, code);
        assert_eq!(self.body["reason"], reason, "body: {}", self.body);
        self
    }
    /// Asserts a success status.
    #[track_caller]
    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        &self.body
    }
    /// A string field.
    #[track_caller]
    pub fn s(&self, key: &str) -> String {
        self.body[key]
            .as_str()
            .unwrap_or_else(|| panic!("no string {key} in {}", self.body))
            .to_string()
    }
}

/// Starts a server on a fresh data dir.
pub async fn start_with(toml: &str) -> T {
    let mut config = Config::from_toml_str(toml).expect("test config");
    config.data_dir = temp_dir("srv");
    start_config(config).await
}

/// Starts a server with the standard config.
pub async fn start() -> T {
    start_with(CONFIG).await
}

/// With `SESSIONKIT_TEST_POSTGRES` (scripts/test-all's second pass), a fresh PostgreSQL
/// database for one server; `None` on the SQLite pass.
pub async fn test_database(same_as: Option<String>) -> Option<String> {
    let cluster = std::env::var("SESSIONKIT_TEST_POSTGRES").ok()?;
    Some(
        sessionkit_server::store::postgres::create_test_database(&cluster, same_as.as_deref())
            .await
            .expect("a fresh PostgreSQL database for the test server"),
    )
}

/// [`test_database`] from synchronous code (a thread of its own, so any caller may use it).
pub fn test_database_blocking(same_as: Option<String>) -> Option<String> {
    std::env::var("SESSIONKIT_TEST_POSTGRES").ok()?;
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(test_database(same_as))
    })
    .join()
    .unwrap()
}

/// Starts a server with a ready config as it is: on SQLite whatever the pass unless the config
/// names a database (tests of SQLite's files).
pub async fn start_config_sqlite(mut config: Config) -> T {
    sessionkit_server::testing::prepare_for_scan(&mut config);
    let srv = RunningServer::start(config).await.expect("server starts");
    let base = srv.base_url();
    T {
        srv,
        http: reqwest::Client::new(),
        base,
    }
}

/// Points a command of the server binary at the database a test server on `dir` uses (the
/// PostgreSQL pass; nothing on the SQLite pass, where `--data-dir` or the config says it).
pub fn same_database(cmd: &mut std::process::Command, dir: &std::path::Path) {
    if let Some(url) = test_database_blocking(Some(dir.display().to_string())) {
        cmd.env("SESSIONKIT_DATABASE_URL", url);
    }
}

/// Starts a server with a ready config (on a fresh PostgreSQL database on the PostgreSQL pass,
/// unless the config names one).
pub async fn start_config(mut config: Config) -> T {
    if config.database.url.is_none()
        && let Some(url) = test_database(Some(config.data_dir.display().to_string())).await
    {
        config.database.url = Some(sessionkit_server::config::DatabaseUrl::new(url));
    }
    start_config_sqlite(config).await
}

pub const BR: &str = "/api/client/v2.0";

/// `AR` of an app.
pub fn ar(app: &str) -> String {
    format!("/api/client/v2.0/app/{app}")
}

/// The admin path prefix of an app.
pub fn adm(app: &str) -> String {
    format!("/api/admin/v3.0/groups/g1/apps/{app}")
}

impl T {
    /// Any request with a raw body.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        bearer: Option<&str>,
    ) -> Resp {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b);
        }
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let content_type = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = resp.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                panic!(
                    "non-JSON body ({status}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Resp {
            status,
            body,
            content_type,
        }
    }
    pub async fn post(&self, path: &str, body: Value, bearer: Option<&str>) -> Resp {
        self.raw(
            Method::POST,
            path,
            Some(body.to_string().into_bytes()),
            bearer,
        )
        .await
    }
    pub async fn put(&self, path: &str, body: Option<Value>, bearer: Option<&str>) -> Resp {
        self.raw(
            Method::PUT,
            path,
            body.map(|b| b.to_string().into_bytes()),
            bearer,
        )
        .await
    }
    pub async fn get(&self, path: &str, bearer: Option<&str>) -> Resp {
        self.raw(Method::GET, path, None, bearer).await
    }
    pub async fn delete(&self, path: &str, bearer: Option<&str>) -> Resp {
        self.raw(Method::DELETE, path, None, bearer).await
    }
    /// Logs in; asserts success and returns the response body.
    pub async fn login(&self, app: &str, provider: &str, body: Value) -> Value {
        let r = self
            .post(
                &format!("{}/auth/providers/{provider}/login", ar(app)),
                body,
                None,
            )
            .await;
        r.ok(200).clone()
    }
    pub async fn anon(&self, app: &str) -> Value {
        self.login(app, "anon-user", json!({})).await
    }
    /// POST session with a refresh token.
    pub async fn refresh(&self, refresh: &str) -> Resp {
        self.raw(
            Method::POST,
            &format!("{BR}/auth/session"),
            None,
            Some(refresh),
        )
        .await
    }
    /// An admin access token.
    pub async fn admin(&self) -> String {
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
    /// Registers and confirms (through the outbox) an email user of `test-app`.
    pub async fn confirmed_user(&self, email: &str, password: &str) {
        let app = "test-app";
        self.post(
            &format!("{}/auth/providers/local-userpass/register", ar(app)),
            json!({"email": email, "password": password}),
            None,
        )
        .await
        .ok(201);
        let admin = self.admin().await;
        let mail = self.outbox(&admin, app, email).await;
        let last = mail.last().expect("a confirmation mail").clone();
        assert_eq!(last["kind"], "confirm");
        self.post(
            &format!("{}/auth/providers/local-userpass/confirm", ar(app)),
            json!({"token": last["token"], "tokenId": last["tokenId"]}),
            None,
        )
        .await
        .ok(204);
    }
    pub async fn outbox(&self, admin: &str, app: &str, email: &str) -> Vec<Value> {
        let r = self
            .get(
                &format!(
                    "{}/outbox?email={}",
                    adm(app),
                    email.replace('+', "%2B").replace('@', "%40")
                ),
                Some(admin),
            )
            .await;
        r.ok(200).as_array().unwrap().clone()
    }
}

/// Decodes a JWT's claims without verifying.
pub fn claims(token: &str) -> Value {
    use base64::Engine;
    let part = token.split('.').nth(1).expect("a JWT");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Signs a custom JWT with HS256.
pub fn custom_jwt(key: &str, claims: Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
    )
    .unwrap()
}

/// Presents `token` to POST session `n` times at once (released together), through `bases`
/// in turn (one server, or several instances on one database). Each answer's status and new
/// refresh token.
pub async fn refresh_at_once(
    http: &reqwest::Client,
    bases: &[&str],
    token: &str,
    n: usize,
) -> Vec<(u16, Option<String>)> {
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(n));
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let req = http
                .post(format!("{}{BR}/auth/session", bases[i % bases.len()]))
                .bearer_auth(token);
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let r = req.send().await.expect("request sent");
                let status = r.status().as_u16();
                let body: Value = r.json().await.expect("a JSON answer");
                let next = body["refresh_token"].as_str().map(str::to_string);
                (status, next)
            })
        })
        .collect();
    let mut out = Vec::new();
    for c in calls {
        out.push(c.await.unwrap());
    }
    out
}

/// The token every answer of a burst carried: all 201, one and the same refresh token (no
/// token is printed: the count of distinct ones says what went wrong).
#[track_caller]
pub fn one_successor(trial: usize, answers: &[(u16, Option<String>)]) -> String {
    let statuses: Vec<u16> = answers.iter().map(|a| a.0).collect();
    assert!(
        statuses.iter().all(|s| *s == 201),
        "trial {trial}: {statuses:?}"
    );
    let mut tokens: Vec<&String> = answers.iter().filter_map(|a| a.1.as_ref()).collect();
    assert_eq!(
        tokens.len(),
        answers.len(),
        "trial {trial}: every answer rotates"
    );
    tokens.sort();
    tokens.dedup();
    assert_eq!(
        tokens.len(),
        1,
        "trial {trial}: one refresh token presented {} times at once got {} different successors",
        answers.len(),
        tokens.len()
    );
    tokens[0].clone()
}
