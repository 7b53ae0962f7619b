//! Server configuration: the TOML file of SERVER.md plus the documented extensions.

pub mod smtp;

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The fixed, documented HS256 key of the dev app's custom-token provider. Not a secret.
pub const DEV_CUSTOM_TOKEN_KEY: &str = "sessionkit-dev-custom-token-key";
/// The id of the single app served by `--dev`.
pub const DEV_APP_ID: &str = "sessionkit-dev";
/// Default listen address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9090";
/// Default data directory.
pub const DEFAULT_DATA_DIR: &str = "sessionkit-data";
/// How long a stopping server waits for in-flight requests, in seconds, by default.
pub const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 10;

const DAY: u64 = 24 * 3600;

/// A configuration problem: which key, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A key has a bad or missing value.
    #[error("{key}: {problem}")]
    Invalid {
        /// Dotted path of the key, e.g. `app[0].providers.custom-token.key`.
        key: String,
        /// What is wrong.
        problem: String,
    },
    /// The file is not valid TOML or has unknown keys / wrong types (the parser's message names the key).
    #[error("{0}")]
    Parse(String),
    /// The file could not be read.
    #[error("cannot read {path}: {problem}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        problem: String,
    },
}

/// A `ConfigError::Invalid` for `key` (as the file writes it) and what is wrong with it.
pub(crate) fn invalid(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        problem: problem.into(),
    }
}

/// The whole server configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to bind (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Directory of the SQLite database.
    pub data_dir: PathBuf,
    /// Hostname returned by location and used in error links. Without it, a request's Host
    /// header is used only if it is in `allowed_hosts`, or a loopback host while the server
    /// listens on loopback, or in `--dev`; otherwise the listen address.
    pub public_url: Option<String>,
    /// Host header values (`host` or `host:port`) that may stand for `public_url` when it is
    /// not set.
    pub allowed_hosts: Vec<String>,
    /// Serving `--dev`: any Host header is trusted (a development machine).
    pub dev: bool,
    /// Admin key pair; `None` disables the admin API unless `dev_admin` is set.
    pub admin: Option<AdminConfig>,
    /// Generate (once, persisted in the database) an admin key pair: what `--dev` does.
    pub dev_admin: bool,
    /// Enables `POST /api/admin/v3.0/test/clock`.
    pub test_clock: bool,
    /// On SIGINT/SIGTERM, how long (seconds) in-flight requests may take to finish before the
    /// server closes their connections and exits anyway (SERVER.md, "Stopping").
    pub shutdown_timeout_secs: u64,
    /// Where users and sessions live (`[database]`): PostgreSQL with a URL, else SQLite in
    /// `data_dir`.
    pub database: DatabaseConfig,
    /// Connection limits and timeouts (`[limits]`).
    pub limits: Limits,
    /// Request rate limits (`[rate_limits]`).
    pub rate_limits: RateLimitConfig,
    /// The SMTP relay (`[mail]`); without it, mails stay in the development outbox.
    pub mail: Option<MailConfig>,
    /// Prometheus metrics (`[metrics]`, #26): off unless enabled.
    pub metrics: MetricsConfig,
    /// The audit log (`[audit]`, #26): how long its events are kept.
    pub audit: AuditConfig,
    /// The apps served.
    pub apps: Vec<AppConfig>,
}

/// `[audit]`: the audit log of security events (audit.rs; SERVER.md, "Audit log").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditConfig {
    /// Days an event is kept (default 90); 0 keeps every event. Older ones are deleted by the
    /// background sweeper, a batch at a time.
    pub retention_days: u32,
    /// Also write each event, once its change has committed, as one JSON line to `stdout`,
    /// `stderr` or a file (appended, created with mode 0600); none by default.
    pub log: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        Self {
            retention_days: 90,
            log: None,
        }
    }
}

/// `[metrics]`: `GET /metrics` in the OpenMetrics text format (metrics.rs; SERVER.md,
/// "Metrics").
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` (default false).
    pub enabled: bool,
    /// Serve it on this address of its own, without credentials (bind it where only the
    /// scraper reaches it). Without it, `/metrics` is on the server's address behind HTTP Basic
    /// credentials of the admin key pair.
    pub listen: Option<SocketAddr>,
    /// Not a config key: a test harness's file for the exposition as it stands when the
    /// server stops (scripts/scan-secrets reads it; see [`crate::testing`]).
    #[serde(skip)]
    pub exposition_on_stop: Option<PathBuf>,
}

/// `[limits]`: what one client can hold of the server. Connections that are slow or idle are
/// closed, and the number open is capped, so a flood of sockets cannot starve everyone else.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// A request's headers must arrive within this many seconds of the connection becoming
    /// ready for one; an idle keep-alive connection is closed after as long.
    pub header_read_timeout_secs: u64,
    /// A request's body must arrive within this many seconds (408 otherwise).
    pub body_read_timeout_secs: u64,
    /// Connections open at once; 0: three quarters of the process's file-descriptor limit.
    /// Beyond it, new connections wait in the listen backlog.
    pub max_connections: usize,
}

/// `[rate_limits]`: per hour, refilled evenly; 0 turns one limit off. Over a limit: 429 with
/// `Retry-After` (see rate_limit.rs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// All limits on or off (off under `--dev`).
    pub enabled: bool,
    /// Login attempts on one email/password account, and apart on one address's sign-in codes
    /// (OWASP ASVS V2.2.1: 100).
    pub logins_per_account_per_hour: u32,
    /// Login attempts from one client address, any provider.
    pub logins_per_address_per_hour: u32,
    /// New accounts (anonymous logins, registrations) from one client address.
    pub signups_per_address_per_hour: u32,
    /// Confirmation, reset and sign-in code mails asked for from one client address.
    pub mails_per_address_per_hour: u32,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            enabled: true,
            logins_per_account_per_hour: 100,
            logins_per_address_per_hour: 1000,
            signups_per_address_per_hour: 100,
            mails_per_address_per_hour: 20,
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_read_timeout_secs: 10,
            body_read_timeout_secs: 30,
            max_connections: 0,
        }
    }
}

/// The admin API key pair.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Sent as `username` at admin login.
    pub public_key: String,
    /// Sent as `apiKey` at admin login.
    pub private_key: String,
}

/// One app.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// The client app id.
    pub id: String,
    /// Access token lifetime in seconds.
    #[serde(default = "default_access")]
    pub access_token_lifetime_secs: u64,
    /// Refresh token lifetime in seconds (non-anonymous users).
    #[serde(default = "default_refresh")]
    pub refresh_token_lifetime_secs: u64,
    /// Refresh token lifetime of anonymous users (extension).
    #[serde(default = "default_anon_refresh")]
    pub anon_refresh_token_lifetime_secs: u64,
    /// Rotate the refresh token on every refresh.
    #[serde(default)]
    pub refresh_token_rotation: bool,
    /// A refresh token unused this long expires; 0 = off.
    #[serde(default)]
    pub inactivity_timeout_secs: u64,
    /// How access tokens are signed: "HS256" (the hosted service's way, with the app secret;
    /// nothing to publish), or "ES256"/"RS256" with a key pair whose public half the app's
    /// JWKS serves, so backends verify tokens offline (signing.rs).
    #[serde(default)]
    pub access_token_algorithm: JwtAlgorithm,
    /// Whether sessions are bound to a key the client holds (DPoP, RFC 9449; dpop.rs,
    /// PROTOCOL.md "DPoP"): `off` (the default), `optional` or `required`.
    #[serde(default)]
    pub dpop: DpopMode,
    /// Enabled providers.
    #[serde(default)]
    pub providers: Providers,
}

/// Whether an app binds sessions to keys (`dpop` in the app's config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DpopMode {
    /// Proofs are ignored and no session is bound: every existing client works.
    #[default]
    Off,
    /// A client that sends proofs gets a bound session; one that sends none, a bearer one.
    Optional,
    /// Every login and refresh needs a proof, and every session is bound.
    Required,
}

fn default_shutdown_timeout() -> u64 {
    DEFAULT_SHUTDOWN_TIMEOUT_SECS
}
fn default_access() -> u64 {
    1800
}
fn default_refresh() -> u64 {
    60 * DAY
}
fn default_anon_refresh() -> u64 {
    90 * DAY
}

/// The provider tables; a provider is on when its table is present.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Providers {
    /// `anon-user`.
    #[serde(rename = "anon-user")]
    pub anon_user: Option<AnonConfig>,
    /// `local-userpass`.
    #[serde(rename = "local-userpass")]
    pub local_userpass: Option<UserpassConfig>,
    /// `api-key`.
    #[serde(rename = "api-key")]
    pub api_key: Option<ApiKeyConfig>,
    /// `custom-token`.
    #[serde(rename = "custom-token")]
    pub custom_token: Option<CustomTokenConfig>,
    /// `custom-function`.
    #[serde(rename = "custom-function")]
    pub custom_function: Option<CustomFunctionConfig>,
    /// `oauth2-google`: Google ID tokens and server auth codes.
    #[serde(rename = "oauth2-google")]
    pub google: Option<GoogleConfig>,
    /// `oauth2-apple`: Sign in with Apple ID tokens.
    #[serde(rename = "oauth2-apple")]
    pub apple: Option<AppleConfig>,
    /// `oauth2-facebook`: Facebook user access tokens.
    #[serde(rename = "oauth2-facebook")]
    pub facebook: Option<FacebookConfig>,
    /// OpenID Connect issuers by name: `[app.providers.oidc.<name>]` is the provider
    /// `oidc-<name>`.
    #[serde(default)]
    pub oidc: BTreeMap<String, OidcConfig>,
    /// `email-otp`: a one-time code mailed to an address is the login (#23, email_otp.rs).
    #[serde(rename = "email-otp")]
    pub email_otp: Option<EmailOtpConfig>,
}

/// The provider types of the protocol (PROTOCOL.md, "Providers"), besides `oidc-<name>`:
/// what [`Providers::enabled`] knows, and the values a metrics label may take.
pub const PROVIDER_TYPES: &[&str] = &[
    "anon-user",
    "local-userpass",
    "api-key",
    "custom-token",
    "custom-function",
    "oauth2-google",
    "oauth2-apple",
    "oauth2-facebook",
    "email-otp",
];

impl Providers {
    /// Whether the named provider is enabled.
    pub fn enabled(&self, provider: &str) -> bool {
        match provider {
            "anon-user" => self.anon_user.is_some(),
            "local-userpass" => self.local_userpass.is_some(),
            "api-key" => self.api_key.is_some(),
            "custom-token" => self.custom_token.is_some(),
            "custom-function" => self.custom_function.is_some(),
            "oauth2-google" => self.google.is_some(),
            "oauth2-apple" => self.apple.is_some(),
            "oauth2-facebook" => self.facebook.is_some(),
            "email-otp" => self.email_otp.is_some(),
            other => other
                .strip_prefix(OIDC_PREFIX)
                .is_some_and(|name| self.oidc.contains_key(name)),
        }
    }
}

/// `anon-user` has no settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnonConfig {}

/// `api-key` has no settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {}

/// What `local-userpass/reset/call` does (extension: there is no function runtime).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum ResetFunction {
    /// A reset token goes to the outbox; the password in the call is discarded.
    #[default]
    Pending,
    /// The password is reset at once.
    Success,
    /// The call is refused with 400 BadRequest.
    Fail,
}

/// The mail settings of `local-userpass`: links must be http(s) URLs without a query of their
/// own named like ours, templates readable files; with `[mail]`, the pages mails link to are
/// required.
fn validate_userpass_mail(i: usize, up: &UserpassConfig, mail: bool) -> Result<(), ConfigError> {
    let k = |name: &str| format!("app[{i}].providers.local-userpass.{name}");
    for (name, url) in [
        ("confirm_url", &up.confirm_url),
        ("reset_url", &up.reset_url),
    ] {
        if let Some(u) = url
            && reqwest::Url::parse(u)
                .ok()
                .filter(|p| p.scheme() == "https" || p.scheme() == "http")
                .is_none_or(|p| p.query_pairs().any(|(k, _)| k == "token" || k == "tokenId"))
        {
            return Err(invalid(
                k(name),
                "must be an http:// or https:// URL (the mail links to it with \
                 ?token=...&tokenId=... added)",
            ));
        }
    }
    if mail && up.reset_url.is_none() {
        return Err(invalid(
            k("reset_url"),
            "required with [mail]: the page of your app that reset mails link to",
        ));
    }
    if mail && !up.auto_confirm && up.confirm_url.is_none() {
        return Err(invalid(
            k("confirm_url"),
            "required with [mail] and auto_confirm = false: the page of your app that \
             confirmation mails link to",
        ));
    }
    for (name, file) in [
        ("confirm_template_text", &up.confirm_template_text),
        ("confirm_template_html", &up.confirm_template_html),
        ("reset_template_text", &up.reset_template_text),
        ("reset_template_html", &up.reset_template_html),
    ] {
        let Some(f) = file else { continue };
        let text = std::fs::read_to_string(f)
            .map_err(|e| invalid(k(name), format!("cannot read {}: {e}", f.display())))?;
        // A confirmation or reset mail without its link is useless.
        crate::template::check_template(
            &f.display().to_string(),
            &text,
            Some("link"),
            crate::template::LINK_PLACEHOLDERS,
        )
        .map_err(|e| invalid(k(name), e))?;
    }
    for (name, subject) in [
        ("confirm_subject", &up.confirm_subject),
        ("reset_subject", &up.reset_subject),
    ] {
        if let Some(s) = subject {
            crate::template::check_template(
                "the subject",
                s,
                None,
                crate::template::LINK_PLACEHOLDERS,
            )
            .map_err(|e| invalid(k(name), e))?;
        }
    }
    Ok(())
}

/// Checks the lazy-migration settings of `app[i]`: an https URL (http only to a loopback
/// host: the server must not be made to send passwords in clear text, or to other hosts of its
/// network by a typo), a secret variable, a timeout within bounds.
fn validate_migrate_webhook(i: usize, up: &UserpassConfig) -> Result<(), ConfigError> {
    let k = |name: &str| format!("app[{i}].providers.local-userpass.{name}");
    let Some(url) = &up.migrate_webhook else {
        return Ok(());
    };
    let parsed =
        reqwest::Url::parse(url).map_err(|e| invalid(k("migrate_webhook"), format!("{e}")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(a)) => a.is_loopback(),
        Some(url::Host::Ipv6(a)) => a.is_loopback(),
        None => false,
    };
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        _ => {
            return Err(invalid(
                k("migrate_webhook"),
                "must be an https:// URL (http:// only to 127.0.0.1, [::1] or localhost): the \
                 server sends it passwords",
            ));
        }
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(invalid(
            k("migrate_webhook"),
            "must not hold credentials: the secret goes in migrate_webhook_secret_env",
        ));
    }
    match &up.migrate_webhook_secret_env {
        Some(v) if !v.is_empty() => {}
        _ => {
            return Err(invalid(
                k("migrate_webhook_secret_env"),
                "required with migrate_webhook: the name of the environment variable that \
                 holds the secret shared with the old system",
            ));
        }
    }
    if !(100..=10_000).contains(&up.migrate_webhook_timeout_ms) {
        return Err(invalid(
            k("migrate_webhook_timeout_ms"),
            "must be 100 to 10000 milliseconds",
        ));
    }
    Ok(())
}

/// `local-userpass` settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserpassConfig {
    /// Confirm new users at once; otherwise confirmation tokens go to the outbox.
    #[serde(default = "yes")]
    pub auto_confirm: bool,
    /// Behaviour of `reset/call`.
    #[serde(default)]
    pub reset_function: ResetFunction,
    /// Must be true for `reset_function = "success"`, which lets anyone who knows an email set
    /// that account's password: for tests and demos only.
    #[serde(default)]
    pub allow_insecure_reset_function: bool,
    /// The page a confirmation mail links to, with `?token=...&tokenId=...` (required with
    /// `[mail]` when `auto_confirm` is off).
    pub confirm_url: Option<String>,
    /// The page a reset mail links to, with `?token=...&tokenId=...` (required with `[mail]`).
    pub reset_url: Option<String>,
    /// Subject of confirmation mails (placeholders as in the templates).
    pub confirm_subject: Option<String>,
    /// Subject of reset mails.
    pub reset_subject: Option<String>,
    /// Text body of confirmation mails, a file with placeholders `{link}`, `{email}`, `{app}`,
    /// `{expires_minutes}` (mail.rs has the built-in default).
    pub confirm_template_text: Option<PathBuf>,
    /// HTML body of confirmation mails (placeholders HTML-escaped).
    pub confirm_template_html: Option<PathBuf>,
    /// Text body of reset mails.
    pub reset_template_text: Option<PathBuf>,
    /// HTML body of reset mails.
    pub reset_template_html: Option<PathBuf>,
    /// Lazy migration (#24, SERVER.md "Lazy migration"): a login for an email with no account
    /// asks this endpoint of the old system (POST, https; http on loopback only), and creates
    /// the user it answers. `None`: off.
    pub migrate_webhook: Option<String>,
    /// The environment variable that holds the secret shared with `migrate_webhook` (sent as
    /// `Authorization: Bearer <secret>`); required with it. The binary reads it at start.
    pub migrate_webhook_secret_env: Option<String>,
    /// The secret itself: filled from `migrate_webhook_secret_env` by the binary, or set by an
    /// embedding program; never in the file.
    #[serde(skip)]
    pub migrate_webhook_secret: Option<Secret>,
    /// How long a login waits for `migrate_webhook`, in milliseconds (100 to 10000, default
    /// 3000); then it answers 503 with `Retry-After`.
    #[serde(default = "default_migrate_timeout_ms")]
    pub migrate_webhook_timeout_ms: u64,
}

fn default_migrate_timeout_ms() -> u64 {
    3000
}

impl Default for UserpassConfig {
    fn default() -> Self {
        UserpassConfig {
            auto_confirm: true,
            reset_function: ResetFunction::Pending,
            allow_insecure_reset_function: false,
            confirm_url: None,
            reset_url: None,
            confirm_subject: None,
            reset_subject: None,
            confirm_template_text: None,
            confirm_template_html: None,
            reset_template_text: None,
            reset_template_html: None,
            migrate_webhook: None,
            migrate_webhook_secret_env: None,
            migrate_webhook_secret: None,
            migrate_webhook_timeout_ms: default_migrate_timeout_ms(),
        }
    }
}

impl UserpassConfig {
    /// Whether this provider cannot work without mail: confirmation on (`auto_confirm = false`)
    /// or resets by mail (`reset_function = "pending"`, the default). Issue #23: such a provider
    /// refuses to start without `[mail]` outside `--dev` and test servers.
    pub fn needs_mail(&self) -> bool {
        !self.auto_confirm || self.reset_function == ResetFunction::Pending
    }
}

fn yes() -> bool {
    true
}

/// `email-otp` settings (#23): the codes mailed and how long and how often they may be tried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailOtpConfig {
    /// Digits of a code ([`EMAIL_OTP_CODE_LENGTH`], default 6).
    #[serde(default = "default_code_length")]
    pub code_length: u32,
    /// How long a code is valid after it was sent, in seconds
    /// ([`EMAIL_OTP_LIFETIME_SECS`], default 600).
    #[serde(default = "default_code_lifetime")]
    pub code_lifetime_secs: u64,
    /// Wrong codes tried before the live code is void ([`EMAIL_OTP_ATTEMPTS`], default 5).
    #[serde(default = "default_code_attempts")]
    pub max_attempts: u32,
    /// Subject of code mails (placeholders as in the templates; mail.rs has the default).
    pub subject: Option<String>,
    /// Text body of code mails, a file with placeholders `{code}`, `{email}`, `{app}`,
    /// `{expires_minutes}` (mail.rs has the built-in default).
    pub template_text: Option<PathBuf>,
    /// HTML body of code mails (placeholders HTML-escaped).
    pub template_html: Option<PathBuf>,
}

/// Allowed `code_length` of `email-otp`: 6 digits at least (a million codes against a few
/// attempts), 10 at most (what a person types).
pub const EMAIL_OTP_CODE_LENGTH: std::ops::RangeInclusive<u32> = 6..=10;
/// Allowed `code_lifetime_secs` of `email-otp`: a minute to an hour.
pub const EMAIL_OTP_LIFETIME_SECS: std::ops::RangeInclusive<u64> = 60..=3600;
/// Allowed `max_attempts` of `email-otp`.
pub const EMAIL_OTP_ATTEMPTS: std::ops::RangeInclusive<u32> = 1..=10;

fn default_code_length() -> u32 {
    6
}
fn default_code_lifetime() -> u64 {
    600
}
fn default_code_attempts() -> u32 {
    5
}

impl Default for EmailOtpConfig {
    fn default() -> Self {
        EmailOtpConfig {
            code_length: default_code_length(),
            code_lifetime_secs: default_code_lifetime(),
            max_attempts: default_code_attempts(),
            subject: None,
            template_text: None,
            template_html: None,
        }
    }
}

/// The checks of `email-otp` the parser cannot make: bounds, and templates that are readable
/// and state the code (a mail without it is useless; there is no link to put in it).
fn validate_email_otp(i: usize, c: &EmailOtpConfig) -> Result<(), ConfigError> {
    let k = |name: &str| format!("app[{i}].providers.email-otp.{name}");
    let (lo, hi) = EMAIL_OTP_CODE_LENGTH.into_inner();
    if !EMAIL_OTP_CODE_LENGTH.contains(&c.code_length) {
        return Err(invalid(
            k("code_length"),
            format!("must be {lo} to {hi} digits (default 6)"),
        ));
    }
    let (lo, hi) = EMAIL_OTP_LIFETIME_SECS.into_inner();
    if !EMAIL_OTP_LIFETIME_SECS.contains(&c.code_lifetime_secs) {
        return Err(invalid(
            k("code_lifetime_secs"),
            format!("must be {lo} to {hi} seconds (default 600)"),
        ));
    }
    let (lo, hi) = EMAIL_OTP_ATTEMPTS.into_inner();
    if !EMAIL_OTP_ATTEMPTS.contains(&c.max_attempts) {
        return Err(invalid(
            k("max_attempts"),
            format!("must be {lo} to {hi} (default 5)"),
        ));
    }
    for (name, file) in [
        ("template_text", &c.template_text),
        ("template_html", &c.template_html),
    ] {
        let Some(f) = file else { continue };
        let text = std::fs::read_to_string(f)
            .map_err(|e| invalid(k(name), format!("cannot read {}: {e}", f.display())))?;
        if text.contains("{link}") {
            return Err(invalid(
                k(name),
                format!(
                    "{} has a {{link}} placeholder: a code mail carries no link, use {{code}}",
                    f.display()
                ),
            ));
        }
        crate::template::check_template(
            &f.display().to_string(),
            &text,
            Some("code"),
            crate::template::CODE_PLACEHOLDERS,
        )
        .map_err(|e| invalid(k(name), e))?;
    }
    if let Some(s) = &c.subject {
        crate::template::check_template("the subject", s, None, crate::template::CODE_PLACEHOLDERS)
            .map_err(|e| invalid(k("subject"), e))?;
    }
    Ok(())
}

/// Signature algorithm of custom JWTs.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// HMAC-SHA256 with `key`.
    #[default]
    HS256,
    /// RSA with `public_key_pem`.
    RS256,
    /// ECDSA P-256 with `public_key_pem`.
    ES256,
}

/// `custom-token` settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomTokenConfig {
    /// Signature algorithm.
    #[serde(default)]
    pub algorithm: JwtAlgorithm,
    /// Shared secret (HS256).
    pub key: Option<String>,
    /// Public key (RS256 / ES256).
    pub public_key_pem: Option<String>,
    /// Required `aud` claim.
    pub audience: Option<String>,
    /// Claims copied into the profile `data` at login (extension).
    pub metadata_fields: Option<Vec<String>>,
    /// The hosted service's "JWK URI": verify against this JWKS (RS256 or ES256, keys picked
    /// by `kid`) instead of `key`/`public_key_pem`; `algorithm` is then not used.
    pub jwks_url: Option<String>,
    /// Required `iss` claim (optional; with `jwks_url` it is recommended).
    pub issuer: Option<String>,
}

fn http_url(key: String, url: &str) -> Result<(), ConfigError> {
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(())
    } else {
        Err(invalid(key, "must start with http:// or https://"))
    }
}

fn non_empty_list(key: String, list: &[String]) -> Result<(), ConfigError> {
    if list.is_empty() || list.iter().any(String::is_empty) {
        return Err(invalid(key, "list at least one, none empty"));
    }
    Ok(())
}

/// The social and OpenID Connect providers' rules.
fn validate_social(i: usize, p: &Providers) -> Result<(), ConfigError> {
    if let Some(g) = &p.google {
        let k = |n: &str| format!("app[{i}].providers.oauth2-google.{n}");
        non_empty_list(k("client_ids"), &g.client_ids)?;
        non_empty_list(k("issuers"), &g.issuers)?;
        http_url(k("jwks_url"), &g.jwks_url)?;
        http_url(k("token_url"), &g.token_url)?;
    }
    if let Some(a) = &p.apple {
        let k = |n: &str| format!("app[{i}].providers.oauth2-apple.{n}");
        non_empty_list(k("client_ids"), &a.client_ids)?;
        http_url(k("jwks_url"), &a.jwks_url)?;
        if a.issuer.is_empty() {
            return Err(invalid(k("issuer"), "must not be empty"));
        }
    }
    if let Some(f) = &p.facebook {
        let k = |n: &str| format!("app[{i}].providers.oauth2-facebook.{n}");
        if f.app_id.is_empty() {
            return Err(invalid(k("app_id"), "must not be empty"));
        }
        if f.app_secret.0.is_empty() {
            return Err(invalid(k("app_secret"), "must not be empty"));
        }
        http_url(k("graph_url"), &f.graph_url)?;
    }
    for (name, o) in &p.oidc {
        let k = |n: &str| format!("app[{i}].providers.oidc.{name}.{n}");
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(invalid(
                format!("app[{i}].providers.oidc.{name}"),
                "a name of letters, digits, '-' and '_'",
            ));
        }
        http_url(k("issuer"), &o.issuer)?;
        non_empty_list(k("audiences"), &o.audiences)?;
        if let Some(u) = &o.jwks_url {
            http_url(k("jwks_url"), u)?;
        }
    }
    if let Some(ct) = &p.custom_token
        && let Some(u) = &ct.jwks_url
    {
        http_url(format!("app[{i}].providers.custom-token.jwks_url"), u)?;
    }
    Ok(())
}

/// The provider-name prefix of OpenID Connect issuers configured by name.
pub const OIDC_PREFIX: &str = "oidc-";

/// A secret from the config file: kept out of `Debug` output.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// `oauth2-google`. The defaults are Google's published endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GoogleConfig {
    /// Accepted `aud` values: the OAuth client ids of the app (web, iOS, Android).
    pub client_ids: Vec<String>,
    /// The web client's secret: needed to exchange server auth codes only.
    pub client_secret: Option<Secret>,
    /// `redirect_uri` sent with an auth code; empty for codes from the mobile sign-in SDKs.
    #[serde(default)]
    pub redirect_uri: String,
    /// Accepted `iss` values.
    #[serde(default = "google_issuers")]
    pub issuers: Vec<String>,
    /// Google's JWKS.
    #[serde(default = "google_jwks")]
    pub jwks_url: String,
    /// Google's OAuth token endpoint (auth-code exchange).
    #[serde(default = "google_token")]
    pub token_url: String,
}

fn google_issuers() -> Vec<String> {
    vec![
        "https://accounts.google.com".into(),
        "accounts.google.com".into(),
    ]
}
fn google_jwks() -> String {
    "https://www.googleapis.com/oauth2/v3/certs".into()
}
fn google_token() -> String {
    "https://oauth2.googleapis.com/token".into()
}

/// `oauth2-apple`. The defaults are Apple's published endpoints.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppleConfig {
    /// Accepted `aud` values: the app's bundle id and Services ids.
    pub client_ids: Vec<String>,
    /// The accepted `iss`.
    #[serde(default = "apple_issuer")]
    pub issuer: String,
    /// Apple's JWKS.
    #[serde(default = "apple_jwks")]
    pub jwks_url: String,
}

fn apple_issuer() -> String {
    "https://appleid.apple.com".into()
}
fn apple_jwks() -> String {
    "https://appleid.apple.com/auth/keys".into()
}

/// `oauth2-facebook`: tokens are checked with the Graph API's `debug_token`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FacebookConfig {
    /// The Facebook app id a token must have been issued to.
    pub app_id: String,
    /// The Facebook app secret (the app access token is `app_id|app_secret`).
    pub app_secret: Secret,
    /// The Graph API base URL, version included.
    #[serde(default = "facebook_graph")]
    pub graph_url: String,
}

fn facebook_graph() -> String {
    "https://graph.facebook.com/v19.0".into()
}

/// An OpenID Connect issuer: ID tokens verified against its JWKS.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The `iss` its tokens carry, e.g. `https://login.example.com`.
    pub issuer: String,
    /// Accepted `aud` values (client ids).
    pub audiences: Vec<String>,
    /// Its JWKS; when absent, `jwks_uri` from `<issuer>/.well-known/openid-configuration`.
    pub jwks_url: Option<String>,
}

/// Claims copied into the profile when `metadata_fields` is not set.
pub const DEFAULT_METADATA_FIELDS: &[&str] = &[
    "name",
    "email",
    "picture_url",
    "first_name",
    "last_name",
    "gender",
    "birthday",
    "min_age",
    "max_age",
];

/// `custom-function` settings: exactly one of `id_field` and `webhook_url`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomFunctionConfig {
    /// Payload field naming the external user.
    pub id_field: Option<String>,
    /// URL the payload is POSTed to; it answers `{"id": "..."}`.
    pub webhook_url: Option<String>,
}

/// A database URL, which may hold a password: never shown by `Debug`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Wraps a URL.
    pub fn new(url: impl Into<String>) -> DatabaseUrl {
        DatabaseUrl(url.into())
    }
    /// The URL itself, password included: for the driver only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self
            .0
            .split_once("://")
            .and_then(|(_, rest)| rest.rsplit_once('@'))
        {
            Some((_, host)) => write!(f, "postgres://***@{host}"),
            None => f.write_str(&self.0),
        }
    }
}

/// `[database]` (SERVER.md, "Database"): SQLite in `data_dir` when `url` is absent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`: the PostgreSQL backend, shared by
    /// every instance. Also `--database-url` or the environment variable
    /// `SESSIONKIT_DATABASE_URL` (which keep the password out of the file).
    pub url: Option<DatabaseUrl>,
    /// PostgreSQL connections per instance (default 16).
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
    /// Seconds to wait for a free connection before answering 503 (default 5).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Apply pending migrations at start (default true); with false, start refuses a
    /// database whose schema is not current (`sessionkit-server migrate` applies them).
    #[serde(default = "default_true")]
    pub migrate: bool,
}

fn default_max_connections() -> u32 {
    16
}
fn default_connect_timeout() -> u64 {
    5
}
fn default_true() -> bool {
    true
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        DatabaseConfig {
            url: None,
            max_connections: default_max_connections(),
            connect_timeout_secs: default_connect_timeout(),
            migrate: true,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    public_url: Option<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
    admin: Option<AdminConfig>,
    #[serde(default)]
    test_clock: bool,
    #[serde(default = "default_shutdown_timeout")]
    shutdown_timeout_secs: u64,
    #[serde(default)]
    database: DatabaseConfig,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    rate_limits: RateLimitConfig,
    mail: Option<MailConfig>,
    #[serde(default)]
    metrics: MetricsConfig,
    #[serde(default)]
    audit: AuditConfig,
    #[serde(default)]
    app: Vec<AppConfig>,
}

/// `[mail]`: the SMTP relay that confirmation and reset mails go through (mail.rs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailConfig {
    /// `smtp://host[:port]` (STARTTLS, required unless the host is loopback; port 587) or
    /// `smtps://host[:port]` (TLS from the start; port 465). A user name may be given in the
    /// URL (`smtp://user@host`), never a password (SESSIONKIT_SMTP_PASSWORD).
    pub smtp_url: String,
    /// The sender, e.g. `Example <no-reply@example.com>`.
    pub from: String,
    /// A PEM file of an extra CA that the relay's certificate may chain to (a private relay).
    pub ca_file: Option<PathBuf>,
    /// The SMTP password: never from the file (a config file is read by more people than its
    /// secrets should be); the binary takes it from SESSIONKIT_SMTP_PASSWORD.
    #[serde(skip)]
    pub password: Option<Secret>,
}

impl Config {
    /// Parses and validates a TOML configuration; relative file paths in it (templates,
    /// `ca_file`) are taken from the working directory.
    pub fn from_toml_str(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, None)
    }

    fn parse(s: &str, base: Option<&Path>) -> Result<Config, ConfigError> {
        let file: FileConfig =
            toml::from_str(s).map_err(|e| ConfigError::Parse(e.to_string().trim().to_string()))?;
        let listen = match file.listen {
            Some(l) => l
                .parse()
                .map_err(|_| invalid("listen", format!("not an IP:PORT address: {l:?}")))?,
            None => DEFAULT_LISTEN.parse().expect("valid default"),
        };
        let mut config = Config {
            listen,
            data_dir: file
                .data_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            public_url: file.public_url,
            allowed_hosts: file.allowed_hosts,
            dev: false,
            admin: file.admin,
            dev_admin: false,
            test_clock: file.test_clock,
            shutdown_timeout_secs: file.shutdown_timeout_secs,
            database: file.database,
            limits: file.limits,
            rate_limits: file.rate_limits,
            mail: file.mail,
            metrics: file.metrics,
            audit: file.audit,
            apps: file.app,
        };
        if let Some(base) = base {
            config.resolve_files(base);
        }
        config.validate()?;
        Ok(config)
    }

    /// Makes the relative paths of the files the config names (mail templates, `ca_file`)
    /// relative to `base`, the config file's directory, as nginx and Postfix read theirs: a
    /// server started from another directory (systemd, a container) finds them. `data_dir` stays
    /// relative to the working directory, as it always was.
    fn resolve_files(&mut self, base: &Path) {
        let fix = |p: &mut Option<PathBuf>| {
            if let Some(f) = p
                && f.is_relative()
            {
                *f = base.join(&*f);
            }
        };
        if let Some(m) = &mut self.mail {
            fix(&mut m.ca_file);
        }
        for app in &mut self.apps {
            if let Some(up) = &mut app.providers.local_userpass {
                fix(&mut up.confirm_template_text);
                fix(&mut up.confirm_template_html);
                fix(&mut up.reset_template_text);
                fix(&mut up.reset_template_html);
            }
            if let Some(otp) = &mut app.providers.email_otp {
                fix(&mut otp.template_text);
                fix(&mut otp.template_html);
            }
        }
    }

    /// Reads, parses and validates a TOML configuration file; relative file paths in it
    /// (templates, `ca_file`) are taken from the file's directory.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.display().to_string(),
            problem: e.to_string(),
        })?;
        Config::parse(&text, path.parent())
    }

    /// What `--dev` serves: app `sessionkit-dev` with every provider on.
    pub fn dev() -> Config {
        Config {
            listen: DEFAULT_LISTEN.parse().expect("valid default"),
            data_dir: PathBuf::from(DEFAULT_DATA_DIR),
            public_url: None,
            allowed_hosts: Vec::new(),
            dev: true,
            admin: None,
            dev_admin: true,
            test_clock: false,
            shutdown_timeout_secs: DEFAULT_SHUTDOWN_TIMEOUT_SECS,
            database: DatabaseConfig::default(),
            limits: Limits::default(),
            rate_limits: RateLimitConfig {
                enabled: false,
                ..RateLimitConfig::default()
            },
            mail: None,
            metrics: MetricsConfig::default(),
            audit: AuditConfig::default(),
            apps: vec![AppConfig {
                id: DEV_APP_ID.to_string(),
                access_token_lifetime_secs: default_access(),
                refresh_token_lifetime_secs: default_refresh(),
                anon_refresh_token_lifetime_secs: default_anon_refresh(),
                refresh_token_rotation: false,
                inactivity_timeout_secs: 0,
                // New apps sign with a key pair: tokens verifiable offline from the start.
                access_token_algorithm: JwtAlgorithm::ES256,
                // Clients that send proofs get bound sessions; others work as ever.
                dpop: DpopMode::Optional,
                providers: Providers {
                    anon_user: Some(AnonConfig {}),
                    local_userpass: Some(UserpassConfig::default()),
                    api_key: Some(ApiKeyConfig {}),
                    custom_token: Some(CustomTokenConfig {
                        algorithm: JwtAlgorithm::HS256,
                        key: Some(DEV_CUSTOM_TOKEN_KEY.to_string()),
                        ..Default::default()
                    }),
                    custom_function: Some(CustomFunctionConfig {
                        id_field: Some("username".to_string()),
                        webhook_url: None,
                    }),
                    // Social sign-in needs the app's client ids: off until configured.
                    google: None,
                    apple: None,
                    facebook: None,
                    oidc: BTreeMap::new(),
                    // Codes go to the outbox and the console, as links do.
                    email_otp: Some(EmailOtpConfig::default()),
                },
            }],
        }
    }

    /// Checks the semantic rules the TOML parser cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(url) = &self.database.url {
            let u = url.expose();
            if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) {
                return Err(invalid(
                    "database.url",
                    "must be a postgres:// URL (omit it to use SQLite in data_dir)",
                ));
            }
        }
        if self.database.max_connections == 0 {
            return Err(invalid("database.max_connections", "must be at least 1"));
        }
        if self
            .audit
            .log
            .as_deref()
            .is_some_and(|l| l.trim().is_empty())
        {
            return Err(invalid(
                "audit.log",
                "must be stdout, stderr or a file path (omit it for no log target)",
            ));
        }
        if let Some(listen) = self.metrics.listen {
            if !self.metrics.enabled {
                return Err(invalid(
                    "metrics.listen",
                    "serves nothing while [metrics] enabled is false: set enabled = true, or \
                     remove listen",
                ));
            }
            if listen.port() != 0 && listen == self.listen {
                return Err(invalid(
                    "metrics.listen",
                    "must be another address than listen (the server's own): another port",
                ));
            }
        }
        if let Some(url) = &self.public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(invalid("public_url", "must start with http:// or https://"));
        }
        if let Some(admin) = &self.admin {
            if admin.public_key.is_empty() {
                return Err(invalid("admin.public_key", "must not be empty"));
            }
            if admin.private_key.is_empty() {
                return Err(invalid("admin.private_key", "must not be empty"));
            }
        }
        if !self.dev
            && self.public_url.is_none()
            && self.allowed_hosts.is_empty()
            && !self.listen.ip().is_loopback()
        {
            // Else location would answer with whatever Host a request claims, which a shared
            // cache can keep and hand to every client: they would send their tokens there.
            return Err(invalid(
                "public_url",
                "required when listening on a non-loopback address (the URL clients reach \
                 this server at), or list the accepted Host values in allowed_hosts",
            ));
        }
        if self.limits.header_read_timeout_secs == 0 {
            return Err(invalid(
                "limits.header_read_timeout_secs",
                "must be at least 1",
            ));
        }
        if self.limits.body_read_timeout_secs == 0 {
            return Err(invalid(
                "limits.body_read_timeout_secs",
                "must be at least 1",
            ));
        }
        if self.apps.is_empty() {
            return Err(invalid("app", "at least one [[app]] table is required"));
        }
        let mut ids = HashSet::new();
        for (i, app) in self.apps.iter().enumerate() {
            let k = |name: &str| format!("app[{i}].{name}");
            if app.id.is_empty() {
                return Err(invalid(k("id"), "must not be empty"));
            }
            if !app
                .id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
            {
                return Err(invalid(k("id"), "only letters, digits, '-', '_' and '.'"));
            }
            if !ids.insert(app.id.clone()) {
                return Err(invalid(k("id"), format!("duplicate app id {:?}", app.id)));
            }
            for (name, v) in [
                ("access_token_lifetime_secs", app.access_token_lifetime_secs),
                (
                    "refresh_token_lifetime_secs",
                    app.refresh_token_lifetime_secs,
                ),
                (
                    "anon_refresh_token_lifetime_secs",
                    app.anon_refresh_token_lifetime_secs,
                ),
            ] {
                if v == 0 || v > i64::MAX as u64 / 4 {
                    return Err(invalid(k(name), "must be a positive number of seconds"));
                }
            }
            if app.inactivity_timeout_secs > i64::MAX as u64 / 4 {
                return Err(invalid(k("inactivity_timeout_secs"), "too large"));
            }
            if let Some(up) = &app.providers.local_userpass {
                validate_migrate_webhook(i, up)?;
            }
            if let Some(up) = &app.providers.local_userpass
                && up.reset_function == ResetFunction::Success
                && !up.allow_insecure_reset_function
            {
                return Err(invalid(
                    format!("app[{i}].providers.local-userpass.reset_function"),
                    "\"success\" lets anyone who knows an email set that account's password; \
                     for tests only, set allow_insecure_reset_function = true to acknowledge",
                ));
            }
            // With a JWK URI the keys come from there (checked in validate_social).
            if let Some(ct) = app
                .providers
                .custom_token
                .as_ref()
                .filter(|ct| ct.jwks_url.is_none())
            {
                let pk = |name: &str| format!("app[{i}].providers.custom-token.{name}");
                match ct.algorithm {
                    JwtAlgorithm::HS256 => match &ct.key {
                        None => return Err(invalid(pk("key"), "missing (required for HS256)")),
                        Some(key) if key.is_empty() => {
                            return Err(invalid(pk("key"), "must not be empty"));
                        }
                        Some(_) => {}
                    },
                    alg => {
                        let Some(pem) = &ct.public_key_pem else {
                            return Err(invalid(
                                pk("public_key_pem"),
                                format!("missing (required for {alg:?})"),
                            ));
                        };
                        let parsed = if alg == JwtAlgorithm::RS256 {
                            jsonwebtoken::DecodingKey::from_rsa_pem(pem.as_bytes())
                        } else {
                            jsonwebtoken::DecodingKey::from_ec_pem(pem.as_bytes())
                        };
                        if let Err(e) = parsed {
                            return Err(invalid(
                                pk("public_key_pem"),
                                format!("not a {alg:?} public key: {e}"),
                            ));
                        }
                    }
                }
                if let Some(aud) = &ct.audience
                    && aud.is_empty()
                {
                    return Err(invalid(pk("audience"), "must not be empty"));
                }
            }
            if let Some(cf) = &app.providers.custom_function {
                let pk = |name: &str| format!("app[{i}].providers.custom-function.{name}");
                match (&cf.id_field, &cf.webhook_url) {
                    (Some(_), Some(_)) => {
                        return Err(invalid(
                            pk("webhook_url"),
                            "set either id_field or webhook_url, not both",
                        ));
                    }
                    (None, None) => {
                        return Err(invalid(
                            pk("id_field"),
                            "missing (set id_field or webhook_url)",
                        ));
                    }
                    (Some(f), None) if f.is_empty() => {
                        return Err(invalid(pk("id_field"), "must not be empty"));
                    }
                    (None, Some(u)) if !(u.starts_with("http://") || u.starts_with("https://")) => {
                        return Err(invalid(
                            pk("webhook_url"),
                            "must start with http:// or https://",
                        ));
                    }
                    _ => {}
                }
            }
        }
        for (i, app) in self.apps.iter().enumerate() {
            validate_social(i, &app.providers)?;
            if let Some(up) = &app.providers.local_userpass {
                validate_userpass_mail(i, up, self.mail.is_some())?;
                // Confirmation, and a reset that goes by mail, need a relay: without one they
                // would go nowhere. The outbox stands in for it on development and test servers.
                // An app that needs neither (auto_confirm, a reset function that is not
                // "pending") runs without mail; its confirm/send and reset/send answer
                // MailNotConfigured.
                if !self.sends_mail() && up.needs_mail() {
                    let why = if up.auto_confirm {
                        "whose reset mails (reset_function = \"pending\", the default) need a relay"
                    } else {
                        "whose confirmation mails (auto_confirm = false) and reset mails need a relay"
                    };
                    return Err(invalid(
                        "mail",
                        format!(
                            "app {:?} has local-userpass, {why}: add [mail] with smtp_url and \
                             from, and set app[{i}].providers.local-userpass.reset_url \
                             (docs/SERVER.md, Mail); on a development machine, run with --dev \
                             to read mails from the console instead",
                            app.id
                        ),
                    ));
                }
            }
            if let Some(otp) = &app.providers.email_otp {
                validate_email_otp(i, otp)?;
                // The code travels by mail only: without a relay nobody could log in.
                if !self.sends_mail() {
                    return Err(invalid(
                        "mail",
                        format!(
                            "app {:?} has email-otp, whose sign-in codes are sent by mail and \
                             need a relay: add [mail] with smtp_url and from (docs/SERVER.md, \
                             Mail), or remove [app.providers.email-otp] from app[{i}]; on a \
                             development machine, run with --dev to read codes from the console",
                            app.id
                        ),
                    ));
                }
            }
        }
        if let Some(mail) = &self.mail {
            smtp::SmtpSettings::from_config(mail)?;
        }
        Ok(())
    }

    /// Whether mails go anywhere: to a relay (`[mail]`), or to the development outbox under
    /// `--dev` and on test servers (`test_clock`). Without, an app's confirm/send and reset/send
    /// answer 400 `MailNotConfigured`.
    pub fn sends_mail(&self) -> bool {
        self.mail.is_some() || self.dev || self.test_clock
    }

    /// The app with this id.
    pub fn app(&self, id: &str) -> Option<&AppConfig> {
        self.apps.iter().find(|a| a.id == id)
    }
}
