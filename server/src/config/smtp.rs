//! The `[mail]` section checked into what the SMTP sender connects with (docs/SERVER.md,
//! "Mail"): the relay's host, port and TLS from the URL, the user name, the sender address and
//! the extra CA. Read when the config is validated, so a wrong `[mail]` stops the server at
//! start; the sender itself is mail.rs's.

use lettre::message::Mailbox;
use lettre::transport::smtp::client::Certificate;

use super::{ConfigError, MailConfig, invalid};

/// Environment variable of the SMTP user name (when the URL has none).
pub const USERNAME_ENV: &str = "SESSIONKIT_SMTP_USERNAME";
/// Environment variable of the SMTP password (never in the config file).
pub const PASSWORD_ENV: &str = "SESSIONKIT_SMTP_PASSWORD";

/// TLS of the relay connection, from the URL's scheme and host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// `smtps://`: TLS from the start.
    Wrapper,
    /// `smtp://` to a non-loopback host: STARTTLS, refused without it.
    StartTls,
    /// `smtp://` to a loopback host: STARTTLS when the relay offers it.
    Opportunistic,
}

/// `[mail]` checked: what `crate::mail::SmtpMailer` connects with (the password is not kept here).
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    /// Relay host.
    pub host: String,
    /// Relay port (587 for smtp://, 465 for smtps:// by default).
    pub port: u16,
    /// TLS mode.
    pub tls: TlsMode,
    /// User name from the URL, else [`USERNAME_ENV`].
    pub username: Option<String>,
    /// The sender.
    pub from: Mailbox,
    /// PEM of the extra CA (`ca_file`).
    pub ca_pem: Option<Vec<u8>>,
}

impl SmtpSettings {
    /// Checks `[mail]`: the URL's scheme, host and absence of a password, the sender address,
    /// the CA file. The errors name the key and what to write.
    pub fn from_config(c: &MailConfig) -> Result<SmtpSettings, ConfigError> {
        let url = reqwest::Url::parse(&c.smtp_url).map_err(|e| {
            invalid(
                "mail.smtp_url",
                format!("not a URL ({e}); write smtp://host:587 or smtps://host:465"),
            )
        })?;
        let (default_port, tls) = match url.scheme() {
            "smtps" => (465, TlsMode::Wrapper),
            "smtp" => (587, TlsMode::StartTls),
            other => {
                return Err(invalid(
                    "mail.smtp_url",
                    format!("scheme {other:?}: use smtp:// (STARTTLS) or smtps:// (TLS)"),
                ));
            }
        };
        let host = match url.host_str() {
            Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']').to_string(),
            _ => return Err(invalid("mail.smtp_url", "no host")),
        };
        let loopback = host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let tls = if tls == TlsMode::StartTls && loopback {
            TlsMode::Opportunistic
        } else {
            tls
        };
        if url.password().is_some() {
            return Err(invalid(
                "mail.smtp_url",
                format!("must not contain a password: set {PASSWORD_ENV} instead"),
            ));
        }
        if url.path() != "" && url.path() != "/" || url.query().is_some() {
            return Err(invalid(
                "mail.smtp_url",
                "only smtp://[user@]host[:port] (no path or query)",
            ));
        }
        let username = match url.username() {
            "" => std::env::var(USERNAME_ENV).ok().filter(|u| !u.is_empty()),
            u => Some(crate::percent::decode(u)),
        };
        let from: Mailbox = c.from.parse().map_err(|e| {
            invalid(
                "mail.from",
                format!("not an address ({e}); write e.g. \"Example <no-reply@example.com>\""),
            )
        })?;
        let ca_pem = match &c.ca_file {
            None => None,
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| {
                    invalid(
                        "mail.ca_file",
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                // lettre reads a file without any PEM block as no certificate at all, silently.
                let blocks = pem
                    .windows(CERT_PEM.len())
                    .filter(|w| *w == CERT_PEM)
                    .count();
                if blocks == 0 {
                    return Err(invalid(
                        "mail.ca_file",
                        format!(
                            "{} has no PEM certificate ({}): give the CA's certificate in PEM \
                             (from DER: openssl x509 -inform der -in ca.der -out ca.pem)",
                            path.display(),
                            String::from_utf8_lossy(CERT_PEM)
                        ),
                    ));
                }
                Certificate::from_pem(&pem).map_err(|e| {
                    invalid(
                        "mail.ca_file",
                        format!("{} is not a PEM certificate: {e}", path.display()),
                    )
                })?;
                Some(pem)
            }
        };
        Ok(SmtpSettings {
            port: url.port().unwrap_or(default_port),
            host,
            tls,
            username,
            from,
            ca_pem,
        })
    }
}

/// The first line of a PEM certificate.
const CERT_PEM: &[u8] = b"-----BEGIN CERTIFICATE-----";
