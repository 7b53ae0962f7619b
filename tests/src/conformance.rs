//! The Rust runner of the cross-language conformance suite (tests/conformance/README.md).
//!
//! A scenario is a JSON file: server options and a list of steps, each an SDK operation with
//! its expected outcome. The runner executes every step through the public API, checks it
//! against the expectation, and records a transcript of normalised outcomes (users as labels,
//! errors as type/code/kind) that the report lines up against the other languages'.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use sessionkit::{
    App, AppConfig, AppError, AuthEvent, Credentials, DeviceInfo, LogOutScope, SessionError,
    StorageConfig, User,
};

use crate::relay::{Relay, link_token, mail_code, mail_link};
use crate::{JWT_KEY, ServerOptions, TestMail, TestServer, temp_dir};

/// Scenarios with `"server": {"mail": true}`: the server sends its mail through a loopback SMTP
/// relay (crate::relay) as this sender, linking to these pages; `read_mail` knows the links by
/// them.
const MAIL_FROM: &str = "SessionKit Conformance <no-reply@example.com>";
const CONFIRM_URL: &str = "https://app.example/confirm";
const RESET_URL: &str = "https://app.example/reset";
/// The device `open_process` names its App (README).
const PROCESS_DEVICE: &str = "process";
/// The device the scenario's first App is (README "open_device").
const MAIN_DEVICE: &str = "main";
/// `revoke_session` with `"session": "unknown"`: an id no session has.
const UNKNOWN_SESSION_ID: &str = "000000000000000000000000";
/// How long `read_mail` waits for a mail.
const MAIL_WAIT: std::time::Duration = std::time::Duration::from_secs(15);

/// Where the scenarios run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Run against this server instead of a fresh local one per scenario.
    pub base_url: Option<String>,
    pub app_id: Option<String>,
    /// Admin key pair of that server (`public:private`), for the steps that need the admin API.
    pub admin: Option<(String, String)>,
    /// HS256 key of the server's custom-token provider.
    pub jwt_key: Option<String>,
    /// Only scenarios whose file name contains this.
    pub filter: Option<String>,
}

/// One scenario's result.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub name: String,
    /// `None` when it ran; else why it was skipped.
    pub skipped: Option<String>,
    pub failures: Vec<String>,
    pub transcript: Vec<Value>,
}

/// Reads every `*.json` scenario in `dir`, in name order.
pub fn scenario_files(dir: &Path, filter: Option<&str>) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| filter.is_none_or(|f| p.file_name().unwrap().to_string_lossy().contains(f)))
        .collect();
    files.sort();
    files
}

/// Runs one scenario file.
pub async fn run_file(path: &Path, options: &Options) -> Outcome {
    let name = path.file_stem().unwrap().to_string_lossy().into_owned();
    let scenario: Value = match std::fs::read_to_string(path)
        .map_err(|e| e.to_string())
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            return Outcome {
                name,
                skipped: None,
                failures: vec![format!("unreadable: {e}")],
                transcript: vec![],
            };
        }
    };
    let server_opts = scenario.get("server").cloned().unwrap_or(json!({}));
    if options.base_url.is_some() && server_opts.as_object().is_some_and(|o| !o.is_empty()) {
        return Outcome {
            name,
            skipped: Some("needs its own server configuration".into()),
            failures: vec![],
            transcript: vec![],
        };
    }
    let file_storage = scenario["client"]["storage"].as_str() == Some("file");
    let dpop = scenario["client"]["dpop"].as_bool() == Some(true);
    let mut runner = match Runner::start(&server_opts, file_storage, dpop, options).await {
        Ok(r) => r,
        Err(e) => {
            return Outcome {
                name,
                skipped: None,
                failures: vec![e],
                transcript: vec![],
            };
        }
    };
    let mut failures = Vec::new();
    let mut transcript = Vec::new();
    for (i, step) in scenario["steps"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        let op = step["do"].as_str().unwrap_or("?").to_string();
        let outcome = match runner.step(step).await {
            Ok(value) => json!({ "ok": runner.placeholders(value) }),
            Err(Failure::App(e)) => json!({ "error": normalise_error(&e) }),
            Err(Failure::Script(message)) => {
                failures.push(format!("step {i} ({op}): {message}"));
                break;
            }
        };
        if let Some(problem) = check(step.get("expect"), &outcome) {
            failures.push(format!("step {i} ({op}): {problem}"));
        }
        transcript.push(json!({ "step": i, "do": op, "outcome": outcome }));
    }
    runner.stop().await;
    Outcome {
        name,
        skipped: None,
        failures,
        transcript,
    }
}

/// Compares an outcome with a step's `expect`: absent means "succeeds".
fn check(expect: Option<&Value>, outcome: &Value) -> Option<String> {
    let Some(expect) = expect else {
        return outcome
            .get("error")
            .map(|e| format!("expected success, got error {e}"));
    };
    if let Some(kind) = expect.get("error") {
        let Some(got) = outcome.get("error") else {
            return Some(format!("expected error {expect}, got {outcome}"));
        };
        let mismatch = got["type"] != *kind
            || ["code", "kind"]
                .iter()
                .any(|k| expect.get(*k).is_some_and(|v| got.get(*k) != Some(v)));
        return mismatch.then(|| format!("expected error {expect}, got {got}"));
    }
    if let Some(value) = expect.get("value") {
        return match outcome.get("ok") {
            Some(got) if got == value => None,
            _ => Some(format!("expected value {value}, got {outcome}")),
        };
    }
    outcome
        .get("error")
        .map(|e| format!("expected success, got error {e}"))
}

fn normalise_error(e: &AppError) -> Value {
    let kind = match e {
        AppError::Network { .. } => "Network",
        AppError::Timeout { .. } => "Timeout",
        AppError::Service { .. } => "Service",
        AppError::SessionExpired { .. } => "SessionExpired",
        AppError::ClientUserNotFound { .. } => "ClientUserNotFound",
        AppError::ClientUserNotLoggedIn { .. } => "ClientUserNotLoggedIn",
        AppError::ClientUserAlreadyNamed { .. } => "ClientUserAlreadyNamed",
        AppError::BadToken { .. } => "BadToken",
        AppError::MalformedResponse { .. } => "MalformedResponse",
        AppError::Storage { .. } => "Storage",
        AppError::InvalidArgument { .. } => "InvalidArgument",
        AppError::InsecureUrl { .. } => "InsecureUrl",
        AppError::AppClosed { .. } => "AppClosed",
        _ => "Other",
    };
    let mut v = json!({ "type": kind });
    if let Some(code) = e.server_code() {
        v["code"] = json!(code);
    }
    if let AppError::SessionExpired { kind, .. } = e {
        v["kind"] = json!(format!("{kind:?}"));
    }
    v
}

enum Failure {
    /// The SDK said no: part of the outcome.
    App(AppError),
    /// The scenario is wrong (unknown label, bad step): the scenario fails.
    Script(String),
}

impl From<AppError> for Failure {
    fn from(e: AppError) -> Self {
        Failure::App(e)
    }
}

type StepResult = Result<Value, Failure>;

/// The session-error handlers' calls, every device's: (device, user id, kind).
type SessionErrors = Arc<Mutex<Vec<(String, String, String)>>>;

fn script(message: impl Into<String>) -> Failure {
    Failure::Script(message.into())
}

/// Events and session errors, recorded as `Kind:label` strings when read.
#[derive(Default)]
struct Recorded {
    events: Vec<AuthEvent>,
}

struct Runner {
    server: Option<TestServer>,
    /// The loopback identity provider, for scenarios with `"server": {"social": true}`.
    issuer: Option<crate::issuer::TestIssuer>,
    /// The loopback SMTP relay, for scenarios with `"server": {"mail": true}`.
    relay: Option<Relay>,
    /// Per address: how many of its mails `read_mail` has read, and the last one's text part.
    mails_read: HashMap<String, usize>,
    last_mail: HashMap<String, String>,
    base_url: String,
    app_id: String,
    admin: Option<(String, String)>,
    admin_token: Option<String>,
    jwt_key: String,
    http: reqwest::Client,
    storage_dir: Option<PathBuf>,
    /// The first App: device "main".
    app: App,
    /// The Apps `open_device` made, by device name: each its own in-memory store.
    devices: HashMap<String, App>,
    users: HashMap<String, User>,
    /// The label of each user id on each device: (device, user id) -> label.
    labels: HashMap<(String, String), String>,
    /// The device each label's user is on.
    label_devices: HashMap<String, String>,
    /// The session ids of each label's last `sessions` list, in its order.
    session_lists: HashMap<String, Vec<String>>,
    emails: HashMap<String, String>,
    keys: HashMap<String, (String, Option<String>)>,
    /// Each listener's events, its subscription and the device whose labels name its users.
    listeners: HashMap<String, (Arc<Mutex<Recorded>>, sessionkit::Subscription, String)>,
    session_errors: SessionErrors,
    refresh_base: u64,
    /// `client.dpop`: the main App (its restarts and processes) binds its sessions.
    dpop: bool,
}

impl Runner {
    async fn start(
        server_opts: &Value,
        file_storage: bool,
        dpop: bool,
        options: &Options,
    ) -> Result<Self, String> {
        let mut issuer = None;
        let mut relay = None;
        let (server, base_url, app_id, admin) = match &options.base_url {
            Some(url) => (
                None,
                url.clone(),
                options
                    .app_id
                    .clone()
                    .unwrap_or_else(|| crate::APP_ID.into()),
                options.admin.clone(),
            ),
            None => {
                let mut o = ServerOptions::default();
                let num = |k: &str| server_opts.get(k).and_then(Value::as_u64);
                if let Some(v) = num("access_token_lifetime_secs") {
                    o.access_token_lifetime_secs = v;
                }
                if let Some(v) = num("refresh_token_lifetime_secs") {
                    o.refresh_token_lifetime_secs = v;
                }
                if let Some(v) = server_opts
                    .get("refresh_token_rotation")
                    .and_then(Value::as_bool)
                {
                    o.refresh_token_rotation = v;
                }
                if let Some(v) = server_opts.get("auto_confirm").and_then(Value::as_bool) {
                    o.auto_confirm = v;
                }
                if let Some(v) = server_opts.get("reset_function").and_then(Value::as_str) {
                    o.reset_function = v.into();
                }
                o.dpop = server_opts
                    .get("dpop")
                    .and_then(Value::as_str)
                    .unwrap_or("optional")
                    .into();
                if server_opts.get("social").and_then(Value::as_bool) == Some(true) {
                    let started = crate::issuer::TestIssuer::start().await;
                    o.extra_providers = crate::issuer::providers_toml(&started.url);
                    issuer = Some(started);
                }
                // `"email_otp": true` needs nothing here: every TestServer app has
                // `[app.providers.email-otp]` with codes living 300 s (crate::TestServer).
                if server_opts.get("mail").and_then(Value::as_bool) == Some(true) {
                    let started = Relay::start().await?;
                    o.mail = Some(TestMail {
                        smtp_url: started.url(),
                        from: MAIL_FROM.into(),
                        confirm_url: CONFIRM_URL.into(),
                        reset_url: RESET_URL.into(),
                    });
                    relay = Some(started);
                }
                let server = TestServer::with(o).await;
                let url = server.base_url();
                let admin = Some((
                    crate::ADMIN_PUBLIC.to_string(),
                    crate::ADMIN_PRIVATE.to_string(),
                ));
                (Some(server), url, crate::APP_ID.to_string(), admin)
            }
        };
        let storage_dir = file_storage.then(|| temp_dir("conformance"));
        let session_errors = Arc::new(Mutex::new(Vec::new()));
        let app = new_app(
            &base_url,
            &app_id,
            storage_dir.as_deref(),
            &session_errors,
            MAIN_DEVICE,
            None,
            dpop,
        )?;
        let mut runner = Self {
            server,
            issuer,
            relay,
            mails_read: HashMap::new(),
            last_mail: HashMap::new(),
            base_url,
            app_id,
            admin,
            admin_token: None,
            jwt_key: options.jwt_key.clone().unwrap_or_else(|| JWT_KEY.into()),
            http: reqwest::Client::new(),
            storage_dir,
            app,
            devices: HashMap::new(),
            users: HashMap::new(),
            labels: HashMap::new(),
            label_devices: HashMap::new(),
            session_lists: HashMap::new(),
            emails: HashMap::new(),
            keys: HashMap::new(),
            listeners: HashMap::new(),
            session_errors,
            refresh_base: 0,
            dpop,
        };
        if runner.admin.is_some() {
            runner.refresh_base = runner.refresh_count().await.unwrap_or(0);
        }
        Ok(runner)
    }

    async fn stop(self) {
        drop(self.listeners);
        if let Some(server) = self.server {
            server.stop().await;
        }
        drop(self.relay);
    }

    fn user(&self, step: &Value, key: &str) -> Result<User, Failure> {
        let label = step[key]
            .as_str()
            .ok_or_else(|| script(format!("missing \"{key}\"")))?;
        self.users
            .get(label)
            .cloned()
            .ok_or_else(|| script(format!("unknown user label {label:?}")))
    }

    /// The label of a user the SDK returned on `device`: the one it already has there, else
    /// `as`, else a new one. The same user id on two devices gets two labels.
    fn label(&mut self, device: &str, user: &User, as_name: Option<&str>) -> String {
        let key = (device.to_string(), user.id());
        let label = match self.labels.get(&key) {
            Some(existing) => existing.clone(),
            None => {
                let label = as_name
                    .map(str::to_string)
                    .unwrap_or_else(|| format!("user{}", self.labels.len() + 1));
                self.labels.insert(key, label.clone());
                label
            }
        };
        for name in std::iter::once(label.as_str()).chain(as_name) {
            self.users.insert(name.to_string(), user.clone());
            self.label_devices
                .insert(name.to_string(), device.to_string());
        }
        label
    }

    /// The device of a user label ("main" unless `log_in` named another).
    fn device_of(&self, label: &str) -> String {
        self.label_devices
            .get(label)
            .cloned()
            .unwrap_or_else(|| MAIN_DEVICE.into())
    }

    /// The App of a device: "main", or one `open_device` made.
    fn app_of(&self, device: &str) -> Result<App, Failure> {
        if device == MAIN_DEVICE {
            return Ok(self.app.clone());
        }
        self.devices
            .get(device)
            .cloned()
            .ok_or_else(|| script(format!("unknown device {device:?} (open_device first)")))
    }

    /// Generated email addresses go back to their `$email:name` placeholders, so transcripts
    /// compare across runs and languages.
    fn placeholders(&self, value: Value) -> Value {
        match value {
            Value::String(s) => {
                let name = self
                    .emails
                    .iter()
                    .find(|(_, email)| **email == s)
                    .map(|(name, _)| name);
                Value::String(name.map_or(s, |n| format!("$email:{n}")))
            }
            Value::Array(items) => {
                Value::Array(items.into_iter().map(|v| self.placeholders(v)).collect())
            }
            Value::Object(map) => Value::Object(
                map.into_iter()
                    .map(|(k, v)| (k, self.placeholders(v)))
                    .collect(),
            ),
            other => other,
        }
    }

    /// The label of a user id on the main device, `null` for none.
    fn label_of_id(&self, id: Option<&str>) -> Value {
        self.label_on(MAIN_DEVICE, id)
    }

    /// The label of a user id on `device`, `null` for none, `"?"` for an unlabelled one.
    fn label_on(&self, device: &str, id: Option<&str>) -> Value {
        match id {
            None => Value::Null,
            Some(id) => json!(
                self.labels
                    .get(&(device.to_string(), id.to_string()))
                    .cloned()
                    .unwrap_or_else(|| "?".into())
            ),
        }
    }

    /// `$email:name` stands for one address, unique to this run.
    fn email(&mut self, name: &str) -> String {
        self.emails
            .entry(name.to_string())
            .or_insert_with(|| crate::unique_email(name))
            .clone()
    }

    fn text(&mut self, v: &Value) -> String {
        let s = v.as_str().unwrap_or_default();
        match s.strip_prefix("$email:") {
            Some(name) => self.email(name),
            None => s.to_string(),
        }
    }

    fn credentials(&mut self, c: &Value) -> Result<Credentials, Failure> {
        if let Some(a) = c.get("anonymous") {
            return Ok(Credentials::Anonymous {
                reuse: a.get("reuse").and_then(Value::as_bool).unwrap_or(true),
            });
        }
        if let Some(e) = c.get("email_password") {
            return Ok(Credentials::email_password(
                self.text(&e["email"]),
                self.text(&e["password"]),
            ));
        }
        if let Some(k) = c.get("api_key") {
            let label = k.as_str().unwrap_or_default();
            let key = self.keys.get(label).and_then(|(_, secret)| secret.clone());
            return Ok(Credentials::api_key(
                key.unwrap_or_else(|| label.to_string()),
            ));
        }
        if let Some(j) = c.get("jwt") {
            return Ok(Credentials::jwt(sign_jwt(j, &self.jwt_key, &self.app_id)));
        }
        if let Some(f) = c.get("function") {
            return Ok(Credentials::function(f.to_string()));
        }
        if let Some(e) = c.get("email_otp") {
            let email = self.text(&e["email"]);
            let code = self.mailed_code(&email, &e["code"])?;
            return Ok(Credentials::email_otp(email, code));
        }
        for kind in [
            "google_id_token",
            "google_auth_code",
            "apple_id_token",
            "facebook_access_token",
            "oidc_id_token",
        ] {
            let Some(spec) = c.get(kind) else { continue };
            let issuer = self
                .issuer
                .as_ref()
                .ok_or_else(|| script("social credentials need \"server\": {\"social\": true}"))?;
            let token = issuer.credential(kind, spec).map_err(script)?;
            return Ok(match kind {
                "google_id_token" => Credentials::google_id_token(token),
                "google_auth_code" => Credentials::google_auth_code(token),
                "apple_id_token" => Credentials::apple(token),
                "facebook_access_token" => Credentials::facebook(token),
                _ => Credentials::oidc(crate::issuer::OIDC_NAME, token),
            });
        }
        Err(script(format!("unknown credentials {c}")))
    }

    async fn admin_login(&mut self) -> Result<String, Failure> {
        let (public, private) = self
            .admin
            .clone()
            .ok_or_else(|| script("this step needs the admin API (--admin)"))?;
        let url = format!(
            "{}/api/admin/v3.0/auth/providers/mongodb-cloud/login",
            self.base_url
        );
        let doc: Value = self
            .http
            .post(url)
            .json(&json!({"username": public, "apiKey": private}))
            .send()
            .await
            .map_err(|e| script(format!("admin login: {e}")))?
            .json()
            .await
            .map_err(|e| script(format!("admin login: {e}")))?;
        let token = doc["access_token"]
            .as_str()
            .ok_or_else(|| script(format!("admin login: {doc}")))?;
        self.admin_token = Some(token.to_string());
        Ok(token.to_string())
    }

    async fn admin_call(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(u16, Value), Failure> {
        let url = if path.starts_with("/api/") {
            format!("{}{path}", self.base_url)
        } else {
            format!(
                "{}/api/admin/v3.0/groups/conformance/apps/{}{path}",
                self.base_url, self.app_id
            )
        };
        // A cached admin token expires when a scenario moves the server clock: log in again.
        for fresh in [false, true] {
            let token = match (&self.admin_token, fresh) {
                (Some(t), false) => t.clone(),
                _ => self.admin_login().await?,
            };
            let mut request = self.http.request(method.clone(), &url).bearer_auth(token);
            if let Some(body) = &body {
                request = request.json(body);
            }
            let response = request
                .send()
                .await
                .map_err(|e| script(format!("admin call: {e}")))?;
            let status = response.status().as_u16();
            let text = response.text().await.unwrap_or_default();
            if status != 401 || fresh {
                return Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)));
            }
        }
        unreachable!("the second attempt always returns")
    }

    async fn admin_ok(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> StepResult {
        let (status, doc) = self.admin_call(method, path, body).await?;
        if (200..300).contains(&status) {
            Ok(Value::Null)
        } else {
            Err(script(format!("admin {path}: {status} {doc}")))
        }
    }

    async fn refresh_count(&mut self) -> Result<u64, Failure> {
        let (_, doc) = self
            .admin_call(reqwest::Method::GET, "/metrics", None)
            .await?;
        Ok(doc["requests"]["refresh"].as_u64().unwrap_or(0))
    }

    async fn outbox_token(&mut self, email: &str, kind: &str) -> Result<(String, String), Failure> {
        let (_, doc) = self
            .admin_call(
                reqwest::Method::GET,
                &format!("/outbox?email={email}"),
                None,
            )
            .await?;
        let item = doc
            .as_array()
            .and_then(|items| items.iter().rev().find(|i| i["kind"] == kind))
            .ok_or_else(|| script(format!("no {kind} token in the outbox for {email}")))?;
        Ok((
            item["token"].as_str().unwrap_or_default().into(),
            item["tokenId"].as_str().unwrap_or_default().into(),
        ))
    }

    /// Waits for the next mail to `email` not read yet; remembers it as its last mail.
    async fn read_mail(&mut self, email: &str) -> StepResult {
        let relay = self
            .relay
            .as_ref()
            .ok_or_else(|| script("read_mail needs \"server\": {\"mail\": true}"))?;
        let n = self.mails_read.get(email).copied().unwrap_or(0);
        let deadline = std::time::Instant::now() + MAIL_WAIT;
        let mail = loop {
            if let Some(mail) = relay.mails_to(email).into_iter().nth(n) {
                break mail;
            }
            if std::time::Instant::now() > deadline {
                return Err(script(format!(
                    "no mail number {} to {email} within {} s ({n} read)",
                    n + 1,
                    MAIL_WAIT.as_secs()
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        let text = mail["text"].as_str().unwrap_or_default().to_string();
        let link = if mail_link(&text, CONFIRM_URL).is_some() {
            json!("confirm")
        } else if mail_link(&text, RESET_URL).is_some() {
            json!("reset")
        } else {
            Value::Null
        };
        let value = json!({ "link": link, "code": mail_code(&text).is_some() });
        self.mails_read.insert(email.to_string(), n + 1);
        self.last_mail.insert(email.to_string(), text);
        Ok(value)
    }

    /// The token and tokenId of the link to `page` in the last mail read for `email`.
    fn mailed_token(&self, email: &str, page: &str) -> Result<(String, String), Failure> {
        let link = self
            .last_mail
            .get(email)
            .and_then(|text| mail_link(text, page))
            .ok_or_else(|| {
                script(format!(
                    "the last mail read for {email} has no link to {page} (read_mail first)"
                ))
            })?;
        link_token(link)
            .ok_or_else(|| script(format!("the link to {page} has no token and tokenId")))
    }

    /// `"mailed"`: the code in the last mail read for `email`; `"wrong"`: that code with its
    /// last digit changed.
    fn mailed_code(&self, email: &str, which: &Value) -> Result<String, Failure> {
        let code = self
            .last_mail
            .get(email)
            .and_then(|text| mail_code(text))
            .ok_or_else(|| {
                script(format!(
                    "the last mail read for {email} has no code (read_mail first)"
                ))
            })?;
        match which.as_str() {
            Some("mailed") => Ok(code),
            Some("wrong") => {
                let (head, last) = code.split_at(code.len() - 1);
                let digit = last.parse::<u8>().unwrap_or(0);
                Ok(format!("{head}{}", (digit + 1) % 10))
            }
            _ => Err(script(format!(
                "email_otp \"code\" is \"mailed\" or \"wrong\", not {which}"
            ))),
        }
    }

    /// The session id a `revoke_session` step names: `{"of": LABEL, "index": N}` (index N of
    /// that label's last `sessions` list) or `"unknown"`.
    fn session_id(&self, spec: &Value) -> Result<String, Failure> {
        if spec.as_str() == Some("unknown") {
            return Ok(UNKNOWN_SESSION_ID.into());
        }
        let of = spec["of"].as_str().ok_or_else(|| {
            script(format!(
                "\"session\" is {{\"of\", \"index\"}} or \"unknown\", not {spec}"
            ))
        })?;
        let index = spec["index"]
            .as_u64()
            .ok_or_else(|| script("\"session\" needs an \"index\""))?;
        self.session_lists
            .get(of)
            .and_then(|ids| ids.get(index as usize))
            .cloned()
            .ok_or_else(|| script(format!("{of:?} listed no session {index} (sessions first)")))
    }

    fn take_events(&self, step: &Value) -> StepResult {
        let label = step["listener"]
            .as_str()
            .ok_or_else(|| script("missing \"listener\""))?;
        let (recorded, _, device) = self
            .listeners
            .get(label)
            .ok_or_else(|| script(format!("unknown listener {label:?}")))?;
        let events = std::mem::take(&mut recorded.lock().unwrap().events);
        Ok(json!(
            events
                .iter()
                .map(|e| format!(
                    "{:?}:{}",
                    e.kind,
                    self.label_on(device, e.user_id.as_deref())
                        .as_str()
                        .unwrap_or("-")
                ))
                .collect::<Vec<_>>()
        ))
    }

    async fn step(&mut self, step: &Value) -> StepResult {
        let op = step["do"]
            .as_str()
            .ok_or_else(|| script("a step needs \"do\""))?;
        let as_name = step.get("as").and_then(Value::as_str).map(str::to_string);
        match op {
            "log_in" => {
                let device = step["device"].as_str().unwrap_or(MAIN_DEVICE).to_string();
                let app = self.app_of(&device)?;
                let creds = self.credentials(&step["credentials"])?;
                let user = app.log_in(creds).await?;
                Ok(json!(self.label(&device, &user, as_name.as_deref())))
            }
            "open_device" => {
                let name = step["name"]
                    .as_str()
                    .ok_or_else(|| script("open_device needs \"name\""))?;
                let platform = step["platform"]
                    .as_str()
                    .ok_or_else(|| script("open_device needs \"platform\""))?;
                if name == MAIN_DEVICE || self.devices.contains_key(name) {
                    return Err(script(format!("device {name:?} is already open")));
                }
                let device = DeviceInfo {
                    platform: platform.into(),
                    platform_version: "1.0".into(),
                    device_name: Some(format!("{platform} test device")),
                    ..DeviceInfo::default()
                };
                let app = new_app(
                    &self.base_url,
                    &self.app_id,
                    None,
                    &self.session_errors,
                    name,
                    Some(device),
                    step["dpop"].as_bool() == Some(true),
                )
                .map_err(script)?;
                self.devices.insert(name.to_string(), app);
                Ok(Value::Null)
            }
            "sessions" => {
                let label = step["user"].as_str().unwrap_or_default().to_string();
                let sessions = self.user(step, "user")?.sessions().await?;
                self.session_lists
                    .insert(label, sessions.iter().map(|s| s.id.clone()).collect());
                Ok(json!(
                    sessions
                        .iter()
                        .map(|s| json!({
                            "platform": s.device.platform,
                            "current": s.current,
                            "provider_type": s.provider_type,
                        }))
                        .collect::<Vec<_>>()
                ))
            }
            "revoke_session" => {
                let user = self.user(step, "user")?;
                let id = self.session_id(&step["session"])?;
                user.revoke_session(&id).await?;
                Ok(Value::Null)
            }
            "register" => {
                let (email, password) = (self.text(&step["email"]), self.text(&step["password"]));
                self.app
                    .email_password_auth()
                    .register_user(&email, &password)
                    .await?;
                Ok(Value::Null)
            }
            "confirm_from_outbox" => {
                let email = self.text(&step["email"]);
                let (token, id) = self.outbox_token(&email, "confirm").await?;
                self.app
                    .email_password_auth()
                    .confirm_user(&token, &id)
                    .await?;
                Ok(Value::Null)
            }
            "confirm" => {
                let (token, id) = (self.text(&step["token"]), self.text(&step["token_id"]));
                self.app
                    .email_password_auth()
                    .confirm_user(&token, &id)
                    .await?;
                Ok(Value::Null)
            }
            "resend_confirmation" => {
                let email = self.text(&step["email"]);
                self.app
                    .email_password_auth()
                    .resend_confirmation_email(&email)
                    .await?;
                Ok(Value::Null)
            }
            "retry_custom_confirmation" => {
                let email = self.text(&step["email"]);
                self.app
                    .email_password_auth()
                    .retry_custom_confirmation(&email)
                    .await?;
                Ok(Value::Null)
            }
            "send_reset_email" => {
                let email = self.text(&step["email"]);
                self.app
                    .email_password_auth()
                    .send_reset_password_email(&email)
                    .await?;
                Ok(Value::Null)
            }
            "reset_from_outbox" => {
                let (email, password) = (self.text(&step["email"]), self.text(&step["password"]));
                let (token, id) = self.outbox_token(&email, "reset").await?;
                self.app
                    .email_password_auth()
                    .reset_password(&token, &id, &password)
                    .await?;
                Ok(Value::Null)
            }
            "read_mail" => {
                let email = self.text(&step["email"]);
                self.read_mail(&email).await
            }
            "confirm_from_mail" => {
                let email = self.text(&step["email"]);
                let (token, id) = self.mailed_token(&email, CONFIRM_URL)?;
                self.app
                    .email_password_auth()
                    .confirm_user(&token, &id)
                    .await?;
                Ok(Value::Null)
            }
            "reset_from_mail" => {
                let (email, password) = (self.text(&step["email"]), self.text(&step["password"]));
                let (token, id) = self.mailed_token(&email, RESET_URL)?;
                self.app
                    .email_password_auth()
                    .reset_password(&token, &id, &password)
                    .await?;
                Ok(Value::Null)
            }
            "email_otp_send" => {
                let email = self.text(&step["email"]);
                self.app.email_otp().send(&email).await?;
                Ok(Value::Null)
            }
            "call_reset_function" => {
                let (email, password) = (self.text(&step["email"]), self.text(&step["password"]));
                let args = step.get("args").cloned().unwrap_or(json!([])).to_string();
                self.app
                    .email_password_auth()
                    .call_reset_password_function(&email, &password, &args)
                    .await?;
                Ok(Value::Null)
            }
            "current_user" => {
                Ok(self.label_of_id(self.app.current_user().map(|u| u.id()).as_deref()))
            }
            "all_users" => {
                let ids: Vec<String> = self.app.all_users().iter().map(|u| u.id()).collect();
                Ok(json!(
                    ids.iter()
                        .map(|id| self.label_of_id(Some(id)))
                        .collect::<Vec<_>>()
                ))
            }
            "state" => Ok(json!(format!("{:?}", self.user(step, "user")?.state()))),
            "provider_type" => Ok(json!(self.user(step, "user")?.provider_type())),
            "identities" => {
                let mut providers: Vec<String> = self
                    .user(step, "user")?
                    .identities()
                    .into_iter()
                    .map(|i| i.provider_type)
                    .collect();
                providers.sort();
                Ok(json!(providers))
            }
            "profile" => {
                let p = self.user(step, "user")?.profile();
                Ok(json!({ "name": p.name, "email": p.email }))
            }
            "has_tokens" => {
                let u = self.user(step, "user")?;
                Ok(
                    json!({ "access": u.access_token().is_some(), "refresh": u.refresh_token().is_some() }),
                )
            }
            "switch_user" => {
                let user = self.user(step, "user")?;
                self.app.switch_user(&user)?;
                Ok(Value::Null)
            }
            "log_out" => {
                let user = self.user(step, "user")?;
                match step.get("scope") {
                    None => user.log_out().await?,
                    Some(scope) => user.log_out_scope(log_out_scope(scope)?).await?,
                }
                Ok(Value::Null)
            }
            "remove_user" => {
                let user = self.user(step, "user")?;
                self.app.remove_user(&user).await?;
                Ok(Value::Null)
            }
            "delete_user" => {
                let user = self.user(step, "user")?;
                self.app.delete_user(&user).await?;
                Ok(Value::Null)
            }
            "link" => {
                let user = self.user(step, "user")?;
                let creds = self.credentials(&step["credentials"])?;
                user.link_credentials(creds).await?;
                Ok(Value::Null)
            }
            "refresh" => {
                self.user(step, "user")?.refresh_access_token().await?;
                Ok(Value::Null)
            }
            "valid_access_token" => {
                let min_ttl = step
                    .get("min_ttl_secs")
                    .and_then(Value::as_u64)
                    .map(|v| v as u32);
                self.user(step, "user")?.valid_access_token(min_ttl).await?;
                Ok(Value::Null)
            }
            "custom_data" => Ok(parse_json_opt(self.user(step, "user")?.custom_data_json())),
            "refresh_custom_data" => Ok(parse_json_opt(
                self.user(step, "user")?.refresh_custom_data().await?,
            )),
            "refresh_profile" => {
                let p = self.user(step, "user")?.refresh_profile().await?;
                Ok(json!({ "name": p.name, "email": p.email }))
            }
            "call_function" => {
                let user = self.user(step, "user")?;
                let name = step["name"].as_str().unwrap_or_default();
                let args = match &step["args"] {
                    Value::String(raw) => raw.clone(),
                    other => other.to_string(),
                };
                let result = user.call_function(name, &args).await?;
                Ok(serde_json::from_str(&result).unwrap_or(json!(result)))
            }
            "request" => {
                let user = self.user(step, "user")?;
                let path = self.text(&step["path"]).replace("$app_id", &self.app_id);
                let body = step.get("body").map(Value::to_string);
                let response = user
                    .request(
                        step["method"].as_str().unwrap_or("GET"),
                        &path,
                        body.as_deref(),
                    )
                    .await?;
                Ok(json!({ "status": response.status }))
            }
            "api_key_create" => {
                let user = self.user(step, "user")?;
                let key = user
                    .api_keys()
                    .create(step["name"].as_str().unwrap_or_default())
                    .await?;
                let label = as_name.unwrap_or_else(|| key.name.clone());
                self.keys.insert(label, (key.id.clone(), key.key.clone()));
                Ok(
                    json!({ "name": key.name, "disabled": key.disabled, "has_key": key.key.is_some() }),
                )
            }
            "api_key_list" => {
                let user = self.user(step, "user")?;
                let mut keys: Vec<Value> = user
                    .api_keys()
                    .fetch_all()
                    .await?
                    .into_iter()
                    .map(|k| json!({ "name": k.name, "disabled": k.disabled, "has_key": k.key.is_some() }))
                    .collect();
                keys.sort_by_key(|k| k["name"].as_str().unwrap_or_default().to_string());
                Ok(json!(keys))
            }
            "api_key_fetch" | "api_key_enable" | "api_key_disable" | "api_key_delete" => {
                let user = self.user(step, "user")?;
                let label = step["key"].as_str().unwrap_or_default();
                // An unknown label is sent as a key id as is (for the not-found cases).
                let id = self
                    .keys
                    .get(label)
                    .map(|(id, _)| id.clone())
                    .unwrap_or_else(|| label.to_string());
                let keys = user.api_keys();
                match op {
                    "api_key_fetch" => {
                        let k = keys.fetch(&id).await?;
                        Ok(
                            json!({ "name": k.name, "disabled": k.disabled, "has_key": k.key.is_some() }),
                        )
                    }
                    "api_key_enable" => keys
                        .enable(&id)
                        .await
                        .map(|_| Value::Null)
                        .map_err(Failure::App),
                    "api_key_disable" => keys
                        .disable(&id)
                        .await
                        .map(|_| Value::Null)
                        .map_err(Failure::App),
                    _ => keys
                        .delete(&id)
                        .await
                        .map(|_| Value::Null)
                        .map_err(Failure::App),
                }
            }
            "subscribe" => {
                let label = as_name.ok_or_else(|| script("subscribe needs \"as\""))?;
                let recorded = Arc::new(Mutex::new(Recorded::default()));
                let sink = recorded.clone();
                let listener = Arc::new(move |e: AuthEvent| sink.lock().unwrap().events.push(e));
                let (sub, device) = match step.get("user") {
                    Some(user) => {
                        let device = self.device_of(user.as_str().unwrap_or_default());
                        (self.user(step, "user")?.subscribe(listener), device)
                    }
                    None => (self.app.subscribe(listener), MAIN_DEVICE.to_string()),
                };
                self.listeners.insert(label, (recorded, sub, device));
                Ok(Value::Null)
            }
            "unsubscribe" => {
                let label = step["listener"].as_str().unwrap_or_default();
                let (_, subscription, _) = self
                    .listeners
                    .remove(label)
                    .ok_or_else(|| script(format!("unknown listener {label:?}")))?;
                drop(subscription); // unsubscribes
                Ok(Value::Null)
            }
            "events" => self.take_events(step),
            "session_errors" => {
                let errors = std::mem::take(&mut *self.session_errors.lock().unwrap());
                Ok(json!(
                    errors
                        .iter()
                        .map(|(device, id, kind)| format!(
                            "{}:{kind}",
                            self.label_on(device, Some(id)).as_str().unwrap_or("?")
                        ))
                        .collect::<Vec<_>>()
                ))
            }
            "refresh_count" => {
                let count = self.refresh_count().await?;
                Ok(json!(count - self.refresh_base))
            }
            "restart_app" => {
                let dir = self.storage_dir.clone().ok_or_else(|| {
                    script("restart_app needs \"client\": {\"storage\": \"file\"}")
                })?;
                self.listeners.clear();
                self.app = new_app(
                    &self.base_url,
                    &self.app_id,
                    Some(&dir),
                    &self.session_errors,
                    MAIN_DEVICE,
                    None,
                    self.dpop,
                )
                .map_err(script)?;
                // The main device's users are looked up again by id; labels stay. Other
                // devices' users are not restarted.
                let fresh: Vec<User> = self.app.all_users();
                let devices = &self.label_devices;
                let on_main = |label: &str| {
                    devices
                        .get(label)
                        .is_none_or(|device| device == MAIN_DEVICE)
                };
                self.users
                    .retain(|label, u| !on_main(label) || fresh.iter().any(|f| f.id() == u.id()));
                for user in fresh {
                    for (_, u) in self
                        .users
                        .iter_mut()
                        .filter(|(label, u)| on_main(label) && u.id() == user.id())
                    {
                        *u = user.clone();
                    }
                }
                Ok(Value::Null)
            }
            "admin_revoke" => {
                let id = self.user(step, "user")?.id();
                self.admin_ok(reqwest::Method::PUT, &format!("/users/{id}/logout"), None)
                    .await
            }
            "admin_disable" | "admin_enable" => {
                let id = self.user(step, "user")?.id();
                let verb = if op == "admin_disable" {
                    "disable"
                } else {
                    "enable"
                };
                self.admin_ok(reqwest::Method::PUT, &format!("/users/{id}/{verb}"), None)
                    .await
            }
            "admin_delete" => {
                let id = self.user(step, "user")?.id();
                self.admin_ok(reqwest::Method::DELETE, &format!("/users/{id}"), None)
                    .await
            }
            "admin_set_custom_data" => {
                let id = self.user(step, "user")?.id();
                self.admin_ok(
                    reqwest::Method::PUT,
                    &format!("/users/{id}/custom_data"),
                    Some(step["data"].clone()),
                )
                .await
            }
            "advance_server_clock" => {
                let secs = step["secs"]
                    .as_i64()
                    .ok_or_else(|| script("advance_server_clock needs \"secs\""))?;
                self.admin_ok(
                    reqwest::Method::POST,
                    "/api/admin/v3.0/test/clock",
                    Some(json!({"advance_secs": secs})),
                )
                .await
            }
            "dpop_bound" => {
                let user = self.user(step, "user")?;
                let thumbprint = user.dpop_thumbprint();
                let jkt = user.access_token().and_then(|t| {
                    let claims = crate::jwt_payload(&t)?;
                    claims["cnf"]["jkt"].as_str().map(str::to_string)
                });
                let cnf_jkt = match (jkt, &thumbprint) {
                    (None, _) => Value::Null,
                    (Some(j), Some(t)) if j == *t => json!("thumbprint"),
                    (Some(_), _) => json!("other"),
                };
                Ok(json!({ "bound": thumbprint.is_some(), "cnf_jkt": cnf_jkt }))
            }
            "stolen_refresh" => {
                let token = self.user(step, "user")?.refresh_token().unwrap_or_default();
                let response = self
                    .http
                    .post(format!("{}/api/client/v2.0/auth/session", self.base_url))
                    .bearer_auth(token)
                    .send()
                    .await
                    .map_err(|e| script(format!("stolen_refresh: {e}")))?;
                let status = response.status().as_u16();
                let body: Value = response.json().await.unwrap_or(Value::Null);
                Ok(json!({ "status": status, "code": body.get("error_code") }))
            }
            "stolen_access" => {
                let token = self.user(step, "user")?.access_token().unwrap_or_default();
                let response = self
                    .http
                    .get(format!("{}/api/client/v2.0/auth/profile", self.base_url))
                    .bearer_auth(token)
                    .send()
                    .await
                    .map_err(|e| script(format!("stolen_access: {e}")))?;
                Ok(json!({ "status": response.status().as_u16() }))
            }
            "hook_request" => {
                // Rust has no HTTP client hook: what one does, by hand (README).
                let user = self.user(step, "user")?;
                let method = step["method"].as_str().unwrap_or("GET");
                let path = self.text(&step["path"]);
                let url = format!("{}{path}", self.base_url);
                let token = user.valid_access_token(None).await?;
                let method = reqwest::Method::from_bytes(method.as_bytes())
                    .map_err(|e| script(format!("hook_request: {e}")))?;
                let mut request = self.http.request(method.clone(), &url);
                request = match user.dpop_proof(method.as_str(), &url, &token, None)? {
                    Some(proof) => request
                        .header("authorization", format!("DPoP {token}"))
                        .header("dpop", proof),
                    None => request.bearer_auth(&token),
                };
                let response = request
                    .send()
                    .await
                    .map_err(|e| script(format!("hook_request: {e}")))?;
                Ok(json!({ "status": response.status().as_u16() }))
            }
            "open_process" => {
                let dir = self.storage_dir.clone().ok_or_else(|| {
                    script("open_process needs \"client\": {\"storage\": \"file\"}")
                })?;
                if self.devices.contains_key(PROCESS_DEVICE) {
                    return Err(script("a process is already open"));
                }
                let id = self.user(step, "user")?.id();
                let app = new_app(
                    &self.base_url,
                    &self.app_id,
                    Some(&dir),
                    &self.session_errors,
                    PROCESS_DEVICE,
                    None,
                    self.dpop,
                )
                .map_err(script)?;
                let theirs = app
                    .all_users()
                    .into_iter()
                    .find(|u| u.id() == id)
                    .ok_or_else(|| script("the other process does not have the user"))?;
                self.devices.insert(PROCESS_DEVICE.into(), app);
                self.label(PROCESS_DEVICE, &theirs, as_name.as_deref());
                Ok(Value::Null)
            }
            other => Err(script(format!("unknown operation {other:?}"))),
        }
    }
}

fn parse_json_opt(s: Option<String>) -> Value {
    s.and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null)
}

/// The `scope` of a `log_out` step.
fn log_out_scope(scope: &Value) -> Result<LogOutScope, Failure> {
    match scope.as_str() {
        Some("this_device") => Ok(LogOutScope::ThisDevice),
        Some("other_devices") => Ok(LogOutScope::OtherDevices),
        Some("everywhere") => Ok(LogOutScope::Everywhere),
        _ => Err(script(format!(
            "log_out \"scope\" is \"this_device\", \"other_devices\" or \"everywhere\", not {scope}"
        ))),
    }
}

/// An App of the scenario: device `device_name` (whose labels name the users its session-error
/// handler reports), described to the server by `device` (the SDK's default when `None`).
fn new_app(
    base_url: &str,
    app_id: &str,
    storage_dir: Option<&Path>,
    errors: &SessionErrors,
    device_name: &str,
    device: Option<DeviceInfo>,
    dpop: bool,
) -> Result<App, String> {
    let mut config = AppConfig::new(app_id, base_url);
    config.request_timeout_ms = 10_000;
    config.dpop = dpop;
    if let Some(device) = device {
        config.device = device;
    }
    if let Some(dir) = storage_dir {
        config.storage = StorageConfig::File {
            dir: dir.to_path_buf(),
            encryption_key: None,
        };
    }
    let app = App::new(config).map_err(|e| format!("App::new: {e}"))?;
    let sink = errors.clone();
    let device_name = device_name.to_string();
    app.set_session_error_handler(Some(Arc::new(move |user: User, e: SessionError| {
        sink.lock()
            .unwrap()
            .push((device_name.clone(), user.id(), format!("{:?}", e.kind)));
    })));
    Ok(app)
}

/// A custom-token JWT: `{"sub", "claims"?, "signature": "valid"|"wrong_key"|"none", "expired"?}`.
fn sign_jwt(spec: &Value, key: &str, app_id: &str) -> String {
    use base64::Engine;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let exp = if spec["expired"].as_bool() == Some(true) {
        now - 60
    } else {
        now + 3600
    };
    let mut claims = json!({ "sub": spec["sub"], "aud": app_id, "iat": now - 120, "exp": exp });
    if let (Some(c), Some(extra)) = (
        claims.as_object_mut(),
        spec.get("claims").and_then(Value::as_object),
    ) {
        c.extend(extra.clone());
    }
    match spec["signature"].as_str().unwrap_or("valid") {
        "none" => {
            let e = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            format!(
                "{}.{}.",
                e.encode(br#"{"alg":"none","typ":"JWT"}"#),
                e.encode(claims.to_string())
            )
        }
        which => {
            let key = if which == "wrong_key" {
                "not-the-server-key"
            } else {
                key
            };
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(key.as_bytes()),
            )
            .expect("sign JWT")
        }
    }
}

/// The transcript file other languages' are compared with.
pub fn transcript_json(language: &str, outcomes: &[Outcome]) -> Value {
    json!({
        "language": language,
        "scenarios": outcomes.iter().map(|o| json!({
            "name": o.name,
            "skipped": o.skipped,
            "passed": o.skipped.is_none() && o.failures.is_empty(),
            "failures": o.failures,
            "transcript": o.transcript,
        })).collect::<Vec<_>>(),
    })
}
