//! Mail (#23): confirmation, reset and sign-in code mails, one seam (STYLE.md lesson 8, after
//! GoTrue's `internal/mailer`).
//!
//! A mail is queued in the database in the transaction that makes its token (the outbox table,
//! [`crate::store::Store::register`], [`crate::store::Store::issue_mail_token`]), so a request
//! never waits for SMTP and nothing queued is lost across a restart. With `[mail]` configured,
//! a background [`worker`] claims due mails ([`crate::store::Store::claim_mail`]: one instance
//! per mail, `FOR UPDATE SKIP LOCKED` on PostgreSQL), renders them from the app's templates
//! ([`Templates`]) and hands them to a [`Mailer`] ([`SmtpMailer`], lettre over rustls), several
//! at once ([`drain`]). A connection failure or a 4xx answer is retried with exponential
//! backoff until the link or code it carries is about to expire (a confirmation or reset link
//! lives 30 minutes, a sign-in code as `code_lifetime_secs` says), with a last try
//! [`LAST_TRY_SECS`] before the expiry; a dead link or code is not sent, the mail fails saying
//! so ([`GIVE_UP_SECS`] bounds mails without an expiry); a 5xx answer fails the mail at once, reason kept. A
//! sent mail's token or code is erased from the queue (its hash stays in the token or code table
//! until it is used or expires); so is the code of a mail whose code a newer one replaced.
//!
//! Without `[mail]` no worker runs: the queue is the development outbox that the admin API
//! reads (`GET .../outbox`), exactly as before; `--dev` also prints each link (and code) on the
//! console.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

pub use crate::config::smtp::{PASSWORD_ENV, SmtpSettings, TlsMode, USERNAME_ENV};
use crate::config::{AppConfig, ConfigError, EmailOtpConfig, MailConfig, UserpassConfig, invalid};
use crate::email_otp::PROVIDER as EMAIL_OTP;
use crate::state::AppState;
use crate::store::{CODE_REPLACED, CONFIRM, MAIL_TOKEN_LIFETIME_SECS, MailOutcome, QueuedMail};
pub use crate::template::{CODE_PLACEHOLDERS, LINK_PLACEHOLDERS, check_template, placeholders};

/// How long a claimed mail is kept from other instances (server-clock seconds): longer than
/// one SMTP exchange ([`SMTP_TIMEOUT`] per step).
pub const LEASE_SECS: i64 = 300;
/// How long a mail the relay does not take (down, 4xx) is retried, from its queuing (seconds).
pub const GIVE_UP_SECS: i64 = 12 * 3600;
/// The last try of a mail whose relay is down or answers 4xx is made this long before its link
/// or code expires (seconds), so that the reader still has a minute to use it.
pub const LAST_TRY_SECS: i64 = 60;
/// Longest wait between two tries (seconds).
pub const MAX_BACKOFF_SECS: i64 = 3600;
/// Timeout of each SMTP step.
pub const SMTP_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the worker looks for due mails when nothing wakes it (real time).
const POLL: Duration = Duration::from_secs(1);
/// Mails claimed at a time.
const BATCH: i64 = 20;
/// Mails of a batch sent at once, each on its own connection. lettre 0.11.23 opens a connection
/// per mail and leaves Nagle's algorithm on: it writes the closing `.` of DATA on its own, which
/// waits for the relay's delayed ACK (40 ms on Linux) before it leaves. One mail at a time, that
/// made 17 mails/s to a relay on loopback (BENCHMARKS.md, "Mail"); the waits overlap.
const SENDERS: usize = 8;

/// A rendered mail, ready for a [`Mailer`].
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Recipient address (canonical form, email.rs).
    pub to: String,
    /// Subject.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body.
    pub html: String,
}

/// Why a mail was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Try again later: no connection, a timeout, a 4xx answer.
    Transient(String),
    /// Never: a 5xx answer, an address the relay or the message builder refuses.
    Permanent(String),
}

/// Something that sends mail: the SMTP relay in production; tests use the real relay too.
#[async_trait]
pub trait Mailer: Send + Sync + 'static {
    /// Sends one mail; `Ok` once the relay has accepted it.
    async fn send(&self, mail: &Outgoing) -> Result<(), SendError>;
}

/// The SMTP relay, through lettre (rustls, tokio).
pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    /// `host:port`, named in every failure: an operator with several relays sees which.
    relay: String,
}

/// A relay's failure as an operator can act on it: the relay named, and for the failures whose
/// library wording says little (TLS certificate checks, a relay without STARTTLS) what to do.
pub fn explain(relay: &str, error: &str) -> String {
    let hint = if error.contains("CaUsedAsEndEntity") {
        " (the relay presents a CA certificate (basicConstraints CA:TRUE) as its own server \
         certificate, which TLS refuses: give the relay a server certificate signed by a CA, and \
         that CA as mail.ca_file; docs/SERVER.md, Mail)"
    } else if error.contains("UnknownIssuer") {
        " (the relay's certificate is not signed by a CA this server trusts: set mail.ca_file to \
         the PEM of the CA that signed it)"
    } else if error.contains("NotValidForName") {
        " (the relay's certificate is not for the host name of mail.smtp_url: use the name on \
         the certificate in the URL)"
    } else if error.contains("STARTTLS is not supported") {
        " (smtp:// requires STARTTLS off loopback: use smtps:// if the relay speaks TLS from the \
         start, usually port 465, or a relay that offers STARTTLS)"
    } else {
        ""
    };
    format!("relay {relay}: {error}{hint}")
}

impl SmtpMailer {
    /// A mailer for `[mail]`, with its password (the binary sets it from [`PASSWORD_ENV`]).
    pub fn new(c: &MailConfig) -> Result<SmtpMailer, ConfigError> {
        let s = SmtpSettings::from_config(c)?;
        let mut params = TlsParameters::builder(s.host.clone());
        if let Some(pem) = &s.ca_pem {
            let cert = Certificate::from_pem(pem)
                .map_err(|e| invalid("mail.ca_file", format!("not a PEM certificate: {e}")))?;
            params = params.add_root_certificate(cert);
        }
        let params = params
            .build()
            .map_err(|e| invalid("mail.smtp_url", format!("TLS setup: {e}")))?;
        let tls = match s.tls {
            TlsMode::Wrapper => Tls::Wrapper(params),
            TlsMode::StartTls => Tls::Required(params),
            TlsMode::Opportunistic => Tls::Opportunistic(params),
        };
        let relay = format!("{}:{}", s.host, s.port);
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(s.host)
            .port(s.port)
            .tls(tls)
            .timeout(Some(SMTP_TIMEOUT));
        let password = c.password.as_ref().map(|p| p.0.clone());
        match (s.username, password) {
            (Some(u), Some(p)) => b = b.credentials(Credentials::new(u, p)),
            (Some(_), None) => {
                return Err(invalid(
                    "mail.smtp_url",
                    format!("a user name is set but {PASSWORD_ENV} is not"),
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "mail.smtp_url",
                    format!(
                        "{PASSWORD_ENV} is set but no user name: write smtp://user@host or \
                         set {USERNAME_ENV}"
                    ),
                ));
            }
            (None, None) => {}
        }
        Ok(SmtpMailer {
            transport: b.build(),
            from: s.from,
            relay,
        })
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: &Outgoing) -> Result<(), SendError> {
        // lettre's address type refuses CR/LF and anything else that could break out of the
        // header (email.rs refused it before it was stored; this is the second line).
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|e| SendError::Permanent(format!("bad recipient address: {e}")))?;
        let message = Message::builder()
            .message_id(Some(message_id(&self.from)))
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject.clone())
            .multipart(MultiPart::alternative_plain_html(
                mail.text.clone(),
                mail.html.clone(),
            ))
            .map_err(|e| SendError::Permanent(format!("cannot build the message: {e}")))?;
        match self.transport.send(message).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_permanent() => {
                Err(SendError::Permanent(explain(&self.relay, &e.to_string())))
            }
            Err(e) => Err(SendError::Transient(explain(&self.relay, &e.to_string()))),
        }
    }
}

/// A fresh `Message-ID` (RFC 5322 3.6.4): `<32 hex digits@domain of the sender>`, random
/// from the operating system's RNG. Large providers junk or refuse mail without one; lettre's
/// own default is neither cryptographically random nor on the sender's domain. (`Date` lettre
/// adds itself when the message is built.)
pub fn message_id(from: &Mailbox) -> String {
    use rand::TryRngCore;
    let mut id = [0u8; 16];
    rand::rngs::OsRng
        .try_fill_bytes(&mut id)
        .expect("the operating system's RNG");
    format!("<{}@{}>", hex::encode(id), from.email.domain())
}

/// Subject and bodies of one kind of mail, with placeholders `{link}` (sign-in code mails:
/// `{code}` instead), `{email}`, `{app}`, `{expires_minutes}` (a number) and `{expires_in}`
/// (`30 minutes`, `1 minute`).
#[derive(Debug, Clone)]
pub struct Template {
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body (values are HTML-escaped).
    pub html: String,
}

const CONFIRM_SUBJECT: &str = "Confirm your email address for {app}";
const CONFIRM_TEXT: &str = "Hello,\n\nTo confirm {email} for {app}, open this link within \
{expires_in}:\n\n{link}\n\nIf you did not sign up, ignore this mail.\n";
const CONFIRM_HTML: &str = "<p>Hello,</p>\n<p>To confirm {email} for {app}, open \
<a href=\"{link}\">this link</a> within {expires_in}.</p>\n<p>If you did not sign \
up, ignore this mail.</p>\n";
const RESET_SUBJECT: &str = "Reset your password for {app}";
const RESET_TEXT: &str = "Hello,\n\nTo choose a new password for {email} on {app}, open this \
link within {expires_in}:\n\n{link}\n\nIf you did not ask for it, ignore this \
mail; your password stays as it is.\n";
const RESET_HTML: &str = "<p>Hello,</p>\n<p>To choose a new password for {email} on {app}, \
open <a href=\"{link}\">this link</a> within {expires_in}.</p>\n<p>If you did not \
ask for it, ignore this mail; your password stays as it is.</p>\n";

const CODE_SUBJECT: &str = "Your sign-in code for {app}";
const CODE_TEXT: &str = "Hello,\n\nYour code to sign in to {app} as {email} is:\n\n{code}\n\nIt \
is valid for {expires_in} and can be used once. Do not share it with anyone.\n\nIf \
you did not ask for it, ignore this mail.\n";
const CODE_HTML: &str = "<p>Hello,</p>\n<p>Your code to sign in to {app} as {email} is:</p>\n\
<p style=\"font-size: 1.5em; font-weight: bold; letter-spacing: 0.2em\">{code}</p>\n<p>It is \
valid for {expires_in} and can be used once. Do not share it with anyone.</p>\n\
<p>If you did not ask for it, ignore this mail.</p>\n";

/// The confirmation and reset mails of an app with `local-userpass`.
#[derive(Debug, Clone)]
struct UserpassMail {
    confirm_url: Option<String>,
    reset_url: Option<String>,
    confirm: Template,
    reset: Template,
}

/// The mails of one app: where they link to and what they say.
#[derive(Debug, Clone)]
pub struct AppMail {
    userpass: Option<UserpassMail>,
    email_otp: Option<Template>,
}

fn read(path: &Option<std::path::PathBuf>, default: &str) -> Result<String, ConfigError> {
    match path {
        None => Ok(default.to_string()),
        Some(p) => std::fs::read_to_string(p).map_err(|e| ConfigError::Io {
            path: p.display().to_string(),
            problem: e.to_string(),
        }),
    }
}

impl UserpassMail {
    fn load(up: &UserpassConfig) -> Result<UserpassMail, ConfigError> {
        Ok(UserpassMail {
            confirm_url: up.confirm_url.clone(),
            reset_url: up.reset_url.clone(),
            confirm: Template {
                subject: up
                    .confirm_subject
                    .clone()
                    .unwrap_or_else(|| CONFIRM_SUBJECT.into()),
                text: read(&up.confirm_template_text, CONFIRM_TEXT)?,
                html: read(&up.confirm_template_html, CONFIRM_HTML)?,
            },
            reset: Template {
                subject: up
                    .reset_subject
                    .clone()
                    .unwrap_or_else(|| RESET_SUBJECT.into()),
                text: read(&up.reset_template_text, RESET_TEXT)?,
                html: read(&up.reset_template_html, RESET_HTML)?,
            },
        })
    }
}

fn code_template(c: &EmailOtpConfig) -> Result<Template, ConfigError> {
    Ok(Template {
        subject: c.subject.clone().unwrap_or_else(|| CODE_SUBJECT.into()),
        text: read(&c.template_text, CODE_TEXT)?,
        html: read(&c.template_html, CODE_HTML)?,
    })
}

impl AppMail {
    /// The app's mail settings (`local-userpass`, `email-otp`), template files read.
    pub fn load(app: &AppConfig) -> Result<AppMail, ConfigError> {
        Ok(AppMail {
            userpass: app
                .providers
                .local_userpass
                .as_ref()
                .map(UserpassMail::load)
                .transpose()?,
            email_otp: app
                .providers
                .email_otp
                .as_ref()
                .map(code_template)
                .transpose()?,
        })
    }
}

/// Every app's mails.
pub type Templates = HashMap<String, AppMail>;

/// Loads the mail settings of every app that sends mail (`local-userpass`, `email-otp`).
pub fn templates(apps: &[AppConfig]) -> Result<Templates, ConfigError> {
    apps.iter()
        .filter(|a| a.providers.local_userpass.is_some() || a.providers.email_otp.is_some())
        .map(|a| Ok((a.id.clone(), AppMail::load(a)?)))
        .collect()
}

/// `base` with `token` and `tokenId` added to its query: the link a mail carries.
pub fn link(base: &str, token: &str, token_id: &str) -> Option<String> {
    let mut url = reqwest::Url::parse(base).ok()?;
    url.query_pairs_mut()
        .append_pair("token", token)
        .append_pair("tokenId", token_id);
    Some(url.into())
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn fill(template: &str, values: &[(&str, &str)], escape: bool) -> String {
    let mut out = template.to_string();
    for (name, value) in values {
        let value = if escape {
            html_escape(value)
        } else {
            (*value).to_string()
        };
        out = out.replace(&format!("{{{name}}}"), &value);
    }
    out
}

/// Renders a queued mail at server-clock second `now` (the time left on its link or code is
/// counted from then); `Err` (a reason to keep) when its app no longer has a page to link to
/// (the config changed since it was queued).
pub fn render(templates: &Templates, m: &QueuedMail, now: i64) -> Result<Outgoing, String> {
    if m.kind == EMAIL_OTP {
        return render_code(templates, m, now);
    }
    let app = templates
        .get(&m.app_id)
        .and_then(|a| a.userpass.as_ref())
        .ok_or_else(|| format!("app {} no longer has local-userpass", m.app_id))?;
    let (base, template, key) = if m.kind == CONFIRM {
        (&app.confirm_url, &app.confirm, "confirm_url")
    } else {
        (&app.reset_url, &app.reset, "reset_url")
    };
    let base = base
        .as_deref()
        .ok_or_else(|| format!("app {}: local-userpass.{key} is not set", m.app_id))?;
    let link = link(base, &m.token, &m.token_id).ok_or_else(|| format!("bad {key}"))?;
    // Mails queued before expiries were kept (0) carry a token of the usual lifetime.
    let left = if m.expires_at == 0 {
        MAIL_TOKEN_LIFETIME_SECS
    } else {
        m.expires_at - now
    };
    let (minutes, expires_in) = time_left(left);
    let values = [
        ("link", link.as_str()),
        ("email", m.email.as_str()),
        ("app", m.app_id.as_str()),
        ("expires_minutes", minutes.as_str()),
        ("expires_in", expires_in.as_str()),
    ];
    Ok(fill_template(template, &m.email, &values))
}

/// `{expires_minutes}` and `{expires_in}` of `secs` left: whole minutes to the nearest (a
/// mail sent a second after its 30-minute link was made says 30, not 29), at least 1; and the
/// same in words, `1 minute` or `N minutes`.
pub fn time_left(secs: i64) -> (String, String) {
    let minutes = ((secs.max(0) + 30) / 60).max(1);
    let words = if minutes == 1 {
        "1 minute".to_string()
    } else {
        format!("{minutes} minutes")
    };
    (minutes.to_string(), words)
}

fn fill_template(template: &Template, to: &str, values: &[(&str, &str)]) -> Outgoing {
    Outgoing {
        to: to.to_string(),
        // A subject is one header line: no line breaks from a template.
        subject: fill(&template.subject, values, false).replace(['\r', '\n'], " "),
        text: fill(&template.text, values, false),
        html: fill(&template.html, values, true),
    }
}

/// A sign-in code mail (`email-otp`): the code, never a link.
fn render_code(templates: &Templates, m: &QueuedMail, now: i64) -> Result<Outgoing, String> {
    let template = templates
        .get(&m.app_id)
        .and_then(|a| a.email_otp.as_ref())
        .ok_or_else(|| format!("app {} no longer has email-otp", m.app_id))?;
    if m.token.is_empty() {
        // An operator's retry of a mail whose code a newer one replaced.
        return Err(CODE_REPLACED.to_string());
    }
    let (minutes, expires_in) = time_left(m.expires_at - now);
    let values = [
        ("code", m.token.as_str()),
        ("email", m.email.as_str()),
        ("app", m.app_id.as_str()),
        ("expires_minutes", minutes.as_str()),
        ("expires_in", expires_in.as_str()),
    ];
    Ok(fill_template(template, &m.email, &values))
}

/// Seconds to wait before try `attempts + 1`: 30 s, doubling, at most [`MAX_BACKOFF_SECS`].
pub fn backoff_secs(attempts: i64) -> i64 {
    let doublings = (attempts - 1).clamp(0, 20) as u32;
    (30i64 << doublings).min(MAX_BACKOFF_SECS)
}

/// What to record after a try of `m` at `now`.
pub fn outcome(m: &QueuedMail, result: Result<(), SendError>, now: i64) -> MailOutcome {
    match result {
        Ok(()) => MailOutcome::Sent(now),
        Err(SendError::Permanent(why)) => MailOutcome::Failed(why),
        Err(SendError::Transient(why)) => {
            let next = now + backoff_secs(m.attempts);
            // What the mail carries, for the reason of a give-up.
            let what = if m.kind == EMAIL_OTP { "code" } else { "link" };
            if m.expires_at > 0 && next > m.expires_at - LAST_TRY_SECS {
                // The backoff would skip past the expiry: one last try shortly before it (a
                // link that is dead when it arrives only confuses its reader), then give up.
                let last = m.expires_at - LAST_TRY_SECS;
                if last > now {
                    MailOutcome::RetryAt(last, why)
                } else {
                    MailOutcome::Failed(format!(
                        "gave up after {} tries: its {what} expires before another one could \
                         arrive (the user can ask for a new mail); last: {why}",
                        m.attempts
                    ))
                }
            } else if next - m.created_at > GIVE_UP_SECS {
                MailOutcome::Failed(format!(
                    "gave up after {} tries over {} hours; last: {why}",
                    m.attempts,
                    GIVE_UP_SECS / 3600
                ))
            } else {
                MailOutcome::RetryAt(next, why)
            }
        }
    }
}

/// Sends every due mail now, [`SENDERS`] at a time; the number of tries made.
pub async fn drain(st: &AppState, mailer: &Arc<dyn Mailer>, templates: &Arc<Templates>) -> usize {
    let mut tries = 0;
    loop {
        let batch = match st.store.claim_mail(st.now(), LEASE_SECS, BATCH).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("mail queue: cannot claim mails: {}", e.message);
                return tries;
            }
        };
        if batch.is_empty() {
            return tries;
        }
        // Dropping the set (the worker aborted) aborts the sends in flight: their mails stay
        // claimed until the lease runs out, as one mail did before.
        let mut sending = tokio::task::JoinSet::new();
        for m in batch {
            tries += 1;
            if sending.len() >= SENDERS {
                sending.join_next().await;
            }
            sending.spawn(try_one(st.clone(), mailer.clone(), templates.clone(), m));
        }
        while sending.join_next().await.is_some() {}
    }
}

/// One try of `m`: sent, or its failure and next try recorded.
async fn try_one(st: AppState, mailer: Arc<dyn Mailer>, templates: Arc<Templates>, m: QueuedMail) {
    let result = if m.expires_at > 0 && m.expires_at <= st.now() {
        // An operator's retry of a mail whose link has expired meanwhile: not sent.
        let what = if m.kind == EMAIL_OTP { "code" } else { "link" };
        Err(SendError::Permanent(format!(
            "its {what} expired before the relay took it (the user can ask for a new mail)"
        )))
    } else {
        match render(&templates, &m, st.now()) {
            Ok(mail) => mailer.send(&mail).await,
            Err(why) => Err(SendError::Permanent(why)),
        }
    };
    let out = outcome(&m, result, st.now());
    if let Some(metrics) = &st.metrics {
        metrics.mail_try(match &out {
            MailOutcome::Sent(_) => "sent",
            MailOutcome::RetryAt(..) => "retry",
            MailOutcome::Failed(_) => "failed",
        });
    }
    // The address and the reason, never the token.
    match &out {
        MailOutcome::Sent(_) => tracing::info!(app = m.app_id, seq = m.seq, "mail sent"),
        MailOutcome::RetryAt(at, why) => tracing::warn!(
            app = m.app_id,
            seq = m.seq,
            "mail not sent, retrying in {}s: {why}",
            at - st.now()
        ),
        MailOutcome::Failed(why) => {
            tracing::warn!(app = m.app_id, seq = m.seq, "mail failed: {why}")
        }
    }
    let recorded = crate::audit::ship(
        crate::audit::server_context(st.now()),
        st.audit_log.as_deref(),
        st.store.mail_outcome(m.seq, out),
        Result::is_ok,
    )
    .await;
    if let Err(e) = recorded {
        // The lease runs out and the mail is tried again.
        tracing::warn!("mail queue: cannot record a try: {}", e.message);
    }
}

/// The delivery worker: drains the queue when woken ([`queued`], the test clock) and every
/// second, until aborted. An abort while sending leaves the mail claimed until its lease runs
/// out, then it is sent again (at least once; exactly once when no process dies mid-send).
pub async fn worker(st: AppState, mailer: Arc<dyn Mailer>, templates: Templates) {
    let templates = Arc::new(templates);
    loop {
        drain(&st, &mailer, &templates).await;
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = st.mail_now.notified() => {}
        }
    }
}

/// Called by a handler once its mail is queued (committed): wakes the worker and, in `--dev`
/// only, prints the link (or, without a page configured, the token pair; for a sign-in code,
/// the code) on the console, never in any other mode: no token or code in logs.
pub fn queued(st: &AppState, app_id: &str, kind: &str, email: &str, token: &str, token_id: &str) {
    st.mail_now.notify_one();
    if st.config.dev {
        use std::io::Write;
        // Not println!: a closed stdout must not fail the request.
        let line = dev_line(st, app_id, kind, email, token, token_id);
        let _ = writeln!(std::io::stdout(), "{line}");
    }
}

fn dev_line(
    st: &AppState,
    app_id: &str,
    kind: &str,
    email: &str,
    token: &str,
    token_id: &str,
) -> String {
    if kind == EMAIL_OTP {
        return format!("[dev mail] {kind} for {email} (app {app_id}): code {token}");
    }
    let up = st
        .apps
        .get(app_id)
        .and_then(|a| a.config.providers.local_userpass.clone());
    let page = up.and_then(|u| {
        if kind == CONFIRM {
            u.confirm_url
        } else {
            u.reset_url
        }
    });
    match page.as_deref().and_then(|p| link(p, token, token_id)) {
        Some(l) => format!("[dev mail] {kind} for {email} (app {app_id}): {l}"),
        None => {
            let path = if kind == CONFIRM { "confirm" } else { "reset" };
            format!(
                "[dev mail] {kind} for {email} (app {app_id}): POST .../local-userpass/{path} \
                 {{\"token\": \"{token}\", \"tokenId\": \"{token_id}\"}}"
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: &str) -> Result<SmtpSettings, ConfigError> {
        SmtpSettings::from_config(&MailConfig {
            smtp_url: url.into(),
            from: "Example <no-reply@example.com>".into(),
            ca_file: None,
            password: None,
        })
    }

    #[test]
    fn starttls_is_required_on_smtp_except_to_loopback() {
        for (url, tls, port) in [
            ("smtp://mail.example", TlsMode::StartTls, 587),
            ("smtp://mail.example:2525", TlsMode::StartTls, 2525),
            ("smtp://10.0.0.5", TlsMode::StartTls, 587),
            ("smtp://127.0.0.1:2525", TlsMode::Opportunistic, 2525),
            ("smtp://localhost", TlsMode::Opportunistic, 587),
            ("smtp://[::1]:25", TlsMode::Opportunistic, 25),
            ("smtps://mail.example", TlsMode::Wrapper, 465),
            ("smtps://127.0.0.1", TlsMode::Wrapper, 465),
        ] {
            let s = settings(url).unwrap();
            assert_eq!((s.tls, s.port), (tls, port), "{url}");
        }
        assert_eq!(
            settings("smtp://user%40corp@mail.example")
                .unwrap()
                .username
                .as_deref(),
            Some("user@corp")
        );
        for bad in [
            "mail.example:587",
            "http://mail.example",
            "smtp://u:p@mail.example",
            "smtp://mail.example/path",
        ] {
            assert!(settings(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_relays_failures_name_it_and_say_what_to_do() {
        let e = explain("mail.example:587", "Connection refused (os error 111)");
        assert_eq!(
            e,
            "relay mail.example:587: Connection refused (os error 111)"
        );
        let e = explain(
            "mail.example:587",
            "Connection error: invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))",
        );
        assert!(
            e.contains("CaUsedAsEndEntity") && e.contains("signed by a CA"),
            "{e}"
        );
        let e = explain(
            "mail.example:25",
            "STARTTLS is not supported on this server",
        );
        assert!(e.contains("smtps://"), "{e}");
    }

    #[test]
    fn time_left_is_in_whole_minutes_to_the_nearest_and_in_words() {
        assert_eq!(time_left(1800), ("30".into(), "30 minutes".into()));
        assert_eq!(time_left(1799), ("30".into(), "30 minutes".into()));
        assert_eq!(time_left(89), ("1".into(), "1 minute".into()));
        assert_eq!(time_left(10), ("1".into(), "1 minute".into()));
        assert_eq!(time_left(-5), ("1".into(), "1 minute".into()));
        assert_eq!(time_left(90), ("2".into(), "2 minutes".into()));
    }

    #[test]
    fn backoff_doubles_to_an_hour_and_tries_last_before_the_expiry() {
        let secs: Vec<i64> = (1..=9).map(backoff_secs).collect();
        assert_eq!(secs, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        let mail_until = |attempts, created_at, expires_at| QueuedMail {
            seq: 1,
            app_id: "a".into(),
            kind: CONFIRM.into(),
            email: "a@example.com".into(),
            token: "t".into(),
            token_id: "i".into(),
            created_at,
            expires_at,
            attempts,
        };
        // A token that outlives the give-up time (one-time codes may; 0: none).
        let mail = |attempts, created_at| mail_until(attempts, created_at, 0);
        let down = || Err(SendError::Transient("down".into()));
        assert!(matches!(
            outcome(&mail(1, 0), down(), 10),
            MailOutcome::RetryAt(40, _)
        ));
        assert!(matches!(
            outcome(&mail(20, 0), down(), GIVE_UP_SECS - 3600),
            MailOutcome::RetryAt(..)
        ));
        let MailOutcome::Failed(why) = outcome(&mail(20, 0), down(), GIVE_UP_SECS) else {
            panic!("not given up");
        };
        assert!(
            why.contains("gave up after 20 tries") && why.ends_with("down"),
            "{why}"
        );
        // A confirmation link lives 30 minutes: the backoff (30 s, doubling) would skip past
        // its expiry after the 6th try, so the 7th is made a minute before it, then no more.
        assert!(matches!(
            outcome(&mail_until(5, 0, 1800), down(), 1000),
            MailOutcome::RetryAt(1480, _)
        ));
        assert!(matches!(
            outcome(&mail_until(6, 0, 1800), down(), 1500),
            MailOutcome::RetryAt(1740, _)
        ));
        let MailOutcome::Failed(why) = outcome(&mail_until(7, 0, 1800), down(), 1740) else {
            panic!("retried past the link's expiry");
        };
        assert!(
            why.contains("gave up after 7 tries: its link expires before another one"),
            "{why}"
        );
        // A code says so as a code.
        let mut code = mail_until(3, 0, 300);
        code.kind = EMAIL_OTP.into();
        let MailOutcome::Failed(why) = outcome(&code, down(), 250) else {
            panic!("retried past the code's expiry");
        };
        assert!(why.contains("its code expires"), "{why}");
        assert!(matches!(
            outcome(&mail(1, 0), Err(SendError::Permanent("550".into())), 10),
            MailOutcome::Failed(w) if w == "550"
        ));
        assert!(matches!(
            outcome(&mail(1, 0), Ok(()), 10),
            MailOutcome::Sent(10)
        ));
    }
}
