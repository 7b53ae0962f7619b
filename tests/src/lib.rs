//! Test harness: a real `sessionkit-server` on a loopback port, admin helpers, and an event
//! recorder. Every integration test (and the demo) goes through here; nothing mocks HTTP.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use sessionkit::{
    App, AppConfig, AuthEvent, AuthEventKind, AuthEventListener, ManualClock, StorageConfig,
};
use sessionkit_server::{Config, RunningServer};

pub mod conformance;
pub mod issuer;
pub mod proxy;
pub mod relay;
pub mod rig;

pub const APP_ID: &str = "sk-test";
pub const ADMIN_PUBLIC: &str = "test-admin-public";
pub const ADMIN_PRIVATE: &str = "test-admin-private";
/// The custom-token provider's HS256 key in test servers.
pub const JWT_KEY: &str = "test-jwt-signing-key-0123456789";

/// How to configure the test app on the server.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    pub access_token_lifetime_secs: u64,
    pub refresh_token_lifetime_secs: u64,
    pub refresh_token_rotation: bool,
    pub auto_confirm: bool,
    /// What `reset/call` does: "success", "pending" or "fail".
    pub reset_function: String,
    /// The custom-function provider's TOML body (`id_field` or `webhook_url`); `None`: off.
    pub custom_function: Option<String>,
    /// The custom-token provider's TOML body; the default verifies HS256 with [`JWT_KEY`].
    pub custom_token: String,
    /// More provider tables, appended to the app's TOML as given (social sign-in tests).
    pub extra_providers: String,
    /// Real mail (`[mail]` and the app's pages); `None`: no mail, the development outbox (test
    /// servers run the test clock, which allows that).
    pub mail: Option<TestMail>,
    /// The app's `dpop` setting: `off`, `optional` (the default here) or `required`.
    pub dpop: String,
}

/// A test server's `[mail]` table and the pages its mails link to (`confirm_url`, `reset_url`
/// of `local-userpass`), e.g. for a loopback SMTP relay ([`relay::Relay`]).
#[derive(Clone, Debug)]
pub struct TestMail {
    /// `smtp://127.0.0.1:PORT`.
    pub smtp_url: String,
    /// The sender, `Name <address>`.
    pub from: String,
    pub confirm_url: String,
    pub reset_url: String,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            access_token_lifetime_secs: 1800,
            refresh_token_lifetime_secs: 3600,
            refresh_token_rotation: false,
            auto_confirm: true,
            reset_function: "pending".into(),
            custom_function: Some("id_field = \"username\"".into()),
            extra_providers: String::new(),
            mail: None,
            custom_token: format!("algorithm = \"HS256\"\nkey = \"{JWT_KEY}\""),
            dpop: "optional".into(),
        }
    }
}

/// A server running in this process on 127.0.0.1:<free port>, with its own data directory.
pub struct TestServer {
    pub server: RunningServer,
    pub data_dir: PathBuf,
    pub app_id: String,
    admin_keys: (String, String),
    http: reqwest::Client,
    admin_token: tokio::sync::Mutex<Option<String>>,
}

static NEXT_DIR: AtomicU64 = AtomicU64::new(0);

/// A fresh, unique directory under the system temp dir.
pub fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sessionkit-{tag}-{}-{}",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(ServerOptions::default()).await
    }

    pub async fn with(o: ServerOptions) -> Self {
        Self::with_dir(o, temp_dir("server")).await
    }

    /// Stops this server and starts it again with options `o` on the same data (a new port:
    /// clients need the new base URL), as an operator changing the config would.
    pub async fn restart_with(self, o: ServerOptions) -> Self {
        let data_dir = self.data_dir.clone();
        self.server.shutdown().await;
        Self::with_dir(o, data_dir).await
    }

    async fn with_dir(o: ServerOptions, data_dir: PathBuf) -> Self {
        let toml = format!(
            r#"
listen = "127.0.0.1:0"
data_dir = "{dir}"
test_clock = true
rate_limits = {{ enabled = false }}

[admin]
public_key = "{ADMIN_PUBLIC}"
private_key = "{ADMIN_PRIVATE}"

[[app]]
id = "{APP_ID}"
access_token_lifetime_secs = {access}
refresh_token_lifetime_secs = {refresh}
refresh_token_rotation = {rotation}
# Sessions of clients that send DPoP proofs are bound; every other client works as before
# (#29: all suites pass on an optional app).
dpop = "{dpop}"

[app.providers.anon-user]
[app.providers.local-userpass]
auto_confirm = {confirm}
reset_function = "{reset}"
allow_insecure_reset_function = true
{mail_links}
[app.providers.api-key]
[app.providers.email-otp]
code_lifetime_secs = 300
[app.providers.custom-token]
{custom_token}
{function}
{extra}
{mail}
"#,
            dir = data_dir.display(),
            access = o.access_token_lifetime_secs,
            refresh = o.refresh_token_lifetime_secs,
            rotation = o.refresh_token_rotation,
            confirm = o.auto_confirm,
            reset = o.reset_function,
            function = o
                .custom_function
                .map(|body| format!("[app.providers.custom-function]\n{body}"))
                .unwrap_or_default(),
            extra = o.extra_providers,
            mail_links = o
                .mail
                .as_ref()
                .map(|m| format!(
                    "confirm_url = \"{}\"\nreset_url = \"{}\"",
                    m.confirm_url, m.reset_url
                ))
                .unwrap_or_default(),
            mail = o
                .mail
                .as_ref()
                .map(|m| format!(
                    "[mail]\nsmtp_url = \"{}\"\nfrom = \"{}\"",
                    m.smtp_url, m.from
                ))
                .unwrap_or_default(),
            custom_token = o.custom_token,
            dpop = o.dpop,
        );
        let config = Config::from_toml_str(&toml).expect("test server config");
        Self::from_config(config, data_dir).await
    }

    /// What `sessionkit-server --dev` serves, on a free loopback port with a fresh data dir,
    /// plus the test clock so the demo can show an expired session without waiting 60 days.
    pub async fn dev() -> Self {
        let data_dir = temp_dir("dev");
        let mut config = Config::dev();
        config.listen = "127.0.0.1:0".parse().expect("loopback address");
        config.data_dir = data_dir.clone();
        config.test_clock = true;
        Self::from_config(config, data_dir).await
    }

    async fn from_config(mut config: Config, data_dir: PathBuf) -> Self {
        // scripts/test-all's second pass: every test server on a PostgreSQL database of its own.
        if let Ok(cluster) = std::env::var("SESSIONKIT_TEST_POSTGRES") {
            let url = sessionkit_server::store::postgres::create_test_database(
                &cluster,
                Some(&data_dir.display().to_string()),
            )
            .await
            .expect("a fresh PostgreSQL database for the test server");
            config.database.url = Some(sessionkit_server::config::DatabaseUrl::new(url));
        }
        sessionkit_server::testing::prepare_for_scan(&mut config);
        let app_id = config.apps[0].id.clone();
        let server = RunningServer::start(config)
            .await
            .expect("start test server");
        let admin = server.admin_keys().expect("the test server has admin keys");
        Self {
            server,
            data_dir,
            app_id,
            admin_keys: (admin.public_key, admin.private_key),
            http: reqwest::Client::new(),
            admin_token: tokio::sync::Mutex::new(None),
        }
    }

    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// A client config for this server: in-memory sessions, a manual clock.
    pub fn config(&self) -> (AppConfig, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::new());
        let mut config = AppConfig::new(&self.app_id, self.base_url());
        config.storage = StorageConfig::InMemory;
        config.request_timeout_ms = 10_000;
        config.clock = Some(clock.clone());
        (config, clock)
    }

    /// A client App for this server (and its clock, to move time).
    pub fn app(&self) -> (App, Arc<ManualClock>) {
        let (config, clock) = self.config();
        (App::new(config).expect("App::new"), clock)
    }

    /// How many refresh requests (POST /auth/session) the server has served.
    pub fn refresh_count(&self) -> u64 {
        self.server.request_count("refresh")
    }

    /// Moves the server's clock forward: its tokens expire without anyone sleeping.
    pub fn advance_server_clock(&self, secs: i64) {
        self.server.advance_clock(secs);
    }

    async fn admin_token(&self) -> String {
        let mut cached = self.admin_token.lock().await;
        if let Some(t) = cached.as_ref() {
            return t.clone();
        }
        let url = format!(
            "{}/api/admin/v3.0/auth/providers/mongodb-cloud/login",
            self.base_url()
        );
        let doc: Value = self
            .http
            .post(url)
            .json(&json!({"username": self.admin_keys.0, "apiKey": self.admin_keys.1}))
            .send()
            .await
            .expect("admin login")
            .json()
            .await
            .expect("admin login body");
        let token = doc["access_token"]
            .as_str()
            .expect("admin access token")
            .to_string();
        *cached = Some(token.clone());
        token
    }

    /// An admin API call under `/groups/g/apps/<APP_ID>`; returns status and JSON body.
    pub async fn admin(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!(
            "{}/api/admin/v3.0/groups/test-group/apps/{}{path}",
            self.base_url(),
            self.app_id
        );
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(self.admin_token().await);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("admin request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Revokes every session of the user (admin "log out").
    pub async fn revoke_sessions(&self, user_id: &str) {
        let (status, body) = self
            .admin(
                reqwest::Method::PUT,
                &format!("/users/{user_id}/logout"),
                None,
            )
            .await;
        assert_eq!(status, 204, "admin logout: {body}");
    }

    pub async fn disable_user(&self, user_id: &str) {
        let (status, body) = self
            .admin(
                reqwest::Method::PUT,
                &format!("/users/{user_id}/disable"),
                None,
            )
            .await;
        assert_eq!(status, 204, "admin disable: {body}");
    }

    pub async fn delete_user_on_server(&self, user_id: &str) {
        let (status, body) = self
            .admin(reqwest::Method::DELETE, &format!("/users/{user_id}"), None)
            .await;
        assert!(
            status == 204 || status == 200,
            "admin delete: {status} {body}"
        );
    }

    pub async fn set_custom_data(&self, user_id: &str, data: Value) {
        let (status, body) = self
            .admin(
                reqwest::Method::PUT,
                &format!("/users/{user_id}/custom_data"),
                Some(data),
            )
            .await;
        assert_eq!(status, 204, "admin custom_data: {body}");
    }

    /// The confirmation/reset tokens the server would have mailed to `email`.
    pub async fn outbox(&self, email: &str) -> Vec<Value> {
        let (status, body) = self
            .admin(
                reqwest::Method::GET,
                &format!("/outbox?email={email}"),
                None,
            )
            .await;
        assert_eq!(status, 200, "outbox: {body}");
        body.as_array().cloned().unwrap_or_default()
    }

    /// Raw POST to a client endpoint (for checks the SDK would refuse to make).
    pub async fn post_raw(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut request = self.http.post(format!("{}{path}", self.base_url()));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("raw request");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Raw GET of the profile with this `Authorization` header (`Bearer <token>` or
    /// `DPoP <token>`) and, when given, a `DPoP` proof header; the status. For the checks of
    /// bound tokens (#29) that the SDK would never send that way.
    pub async fn profile_status(&self, authorization: &str, proof: Option<&str>) -> u16 {
        let url = format!("{}/api/client/v2.0/auth/profile", self.base_url());
        let mut request = self.http.get(url).header("authorization", authorization);
        if let Some(proof) = proof {
            request = request.header("dpop", proof);
        }
        request.send().await.expect("raw request").status().as_u16()
    }

    pub async fn stop(self) {
        self.server.shutdown().await;
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A custom JWT signed with [`JWT_KEY`], valid for an hour, for user `sub`.
pub fn custom_jwt(sub: &str, extra: Value) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let mut claims = json!({"sub": sub, "iat": now, "exp": now + 3600, "aud": APP_ID});
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_KEY.as_bytes()),
    )
    .expect("sign custom JWT")
}

/// A unique email address for a test.
pub fn unique_email(tag: &str) -> String {
    format!(
        "{tag}-{}-{}@example.com",
        std::process::id(),
        NEXT_DIR.fetch_add(1, Ordering::SeqCst)
    )
}

/// Records events; tests wait for the ones they expect.
#[derive(Default)]
pub struct Recorder {
    events: Mutex<Vec<AuthEvent>>,
    changed: Condvar,
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn events(&self) -> Vec<AuthEvent> {
        self.events.lock().unwrap().clone()
    }

    pub fn kinds(&self) -> Vec<AuthEventKind> {
        self.events().into_iter().map(|e| e.kind).collect()
    }

    pub fn count(&self, kind: AuthEventKind) -> usize {
        self.events().iter().filter(|e| e.kind == kind).count()
    }

    /// Waits up to five seconds for an event of `kind`; panics with what arrived otherwise.
    pub fn wait_for(&self, kind: AuthEventKind) -> AuthEvent {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let mut events = self.events.lock().unwrap();
        loop {
            if let Some(e) = events.iter().find(|e| e.kind == kind) {
                return e.clone();
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            assert!(
                !left.is_zero(),
                "no {kind:?} event; got {:?}",
                events.iter().map(|e| e.kind).collect::<Vec<_>>()
            );
            events = self.changed.wait_timeout(events, left).unwrap().0;
        }
    }
}

impl AuthEventListener for Recorder {
    fn on_event(&self, event: AuthEvent) {
        self.events.lock().unwrap().push(event);
        self.changed.notify_all();
    }
}

/// The payload of a JWT as JSON, unverified (to look at claims the SDK does not expose, such as
/// an access token's `cnf`); `None` for text that is not a JWT.
pub fn jwt_payload(token: &str) -> Option<Value> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// A new email/password user (a unique address tagged `tag`, password `password-123`),
/// registered and logged in on `app`.
pub async fn email_user(app: &App, tag: &str) -> sessionkit::User {
    let email = unique_email(tag);
    app.email_password_auth()
        .register_user(&email, "password-123")
        .await
        .expect("register");
    app.log_in(sessionkit::Credentials::email_password(
        &email,
        "password-123",
    ))
    .await
    .expect("log in")
}
