//! A real SMTP relay on loopback for the conformance scenarios with `"server": {"mail": true}`:
//! tests/smtp/relay.py (aiosmtpd), run by the Python of `SESSIONKIT_TEST_SMTP_PYTHON`
//! (scripts/test-all makes it: `$target/smtp-venv`), in a fresh directory, on a port the kernel
//! picks (`--port 0`; the port is in `DIR/ready`). Each mail it takes is `DIR/mail-NNNN.json`:
//! `{"rcpt_tos", "subject", "from", "to", "text", "html", ...}`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::temp_dir;

/// What to do when the relay cannot run: the scenario fails saying this, it is never skipped.
pub const HOW_TO_GET_THE_RELAY: &str = "the mail scenarios need a Python with aiosmtpd for \
their SMTP relay: python3 -m venv target/smtp-venv && target/smtp-venv/bin/pip install aiosmtpd \
cryptography, then set SESSIONKIT_TEST_SMTP_PYTHON=$PWD/target/smtp-venv/bin/python \
(scripts/test-all does both)";

/// A running relay; dropping it stops the process and deletes its directory.
pub struct Relay {
    dir: PathBuf,
    child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
}

impl Relay {
    /// Starts the relay and waits (up to 30 s) until it accepts connections. `Err` says why it
    /// could not, and how to get a Python with aiosmtpd.
    pub async fn start() -> Result<Relay, String> {
        let python = std::env::var_os("SESSIONKIT_TEST_SMTP_PYTHON")
            .filter(|p| !p.is_empty())
            .ok_or_else(|| {
                format!("SESSIONKIT_TEST_SMTP_PYTHON is not set; {HOW_TO_GET_THE_RELAY}")
            })?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("smtp/relay.py");
        let dir = temp_dir("relay");
        // A file, not a pipe that nobody reads while the relay runs; a failed start quotes it.
        let stderr = std::fs::File::create(dir.join("relay.stderr")).map_err(|e| e.to_string())?;
        let child = Command::new(&python)
            .arg(script)
            .arg("--dir")
            .arg(&dir)
            .args(["--port", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot run the SMTP relay with {} ({e}); {HOW_TO_GET_THE_RELAY}",
                    Path::new(&python).display()
                )
            })?;
        let mut relay = Relay {
            dir,
            child,
            port: 0,
        };
        let ready = relay.dir.join("ready");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ready.exists() {
            if let Ok(Some(status)) = relay.child.try_wait() {
                let err =
                    std::fs::read_to_string(relay.dir.join("relay.stderr")).unwrap_or_default();
                let tail = &err[err.len().saturating_sub(500)..];
                return Err(format!(
                    "the SMTP relay exited ({status}): {}\n{HOW_TO_GET_THE_RELAY}",
                    tail.trim()
                ));
            }
            if Instant::now() > deadline {
                return Err("the SMTP relay did not start within 30 s".into());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let port = std::fs::read_to_string(&ready).unwrap_or_default();
        relay.port = port
            .trim()
            .parse()
            .map_err(|_| format!("the SMTP relay's ready file holds {port:?}, not a port"))?;
        Ok(relay)
    }

    /// `smtp://127.0.0.1:PORT`, for the server's `[mail] smtp_url`.
    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Every mail received for `address` so far (by envelope recipient), in order of arrival.
    pub fn mails_to(&self, address: &str) -> Vec<Value> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| n.starts_with("mail-") && n.ends_with(".json"))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
            .iter()
            .filter_map(|n| {
                serde_json::from_slice::<Value>(&std::fs::read(self.dir.join(n)).ok()?).ok()
            })
            .filter(|mail| {
                mail["rcpt_tos"].as_array().is_some_and(|to| {
                    to.iter()
                        .any(|r| r.as_str().is_some_and(|r| r.eq_ignore_ascii_case(address)))
                })
            })
            .collect()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The first link in a mail's text part to `page` (a `confirm_url` or `reset_url`) with a
/// query: from `page?` to the next white space.
pub fn mail_link<'a>(text: &'a str, page: &str) -> Option<&'a str> {
    let start = text.find(&format!("{page}?"))?;
    let rest = &text[start..];
    Some(rest.split(char::is_whitespace).next().unwrap_or(rest))
}

/// The `token` and `tokenId` of a mailed link, URL-decoded.
pub fn link_token(link: &str) -> Option<(String, String)> {
    let url = reqwest::Url::parse(link).ok()?;
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    Some((param("token")?, param("tokenId")?))
}

/// The one-time code a mail carries: the first run of 6 to 10 digits (no digit on either side)
/// in its text part, with the words that hold a link left out (a token in a link may hold
/// digits).
pub fn mail_code(text: &str) -> Option<String> {
    text.split_whitespace()
        .filter(|word| !word.contains("://"))
        .flat_map(|word| word.split(|c: char| !c.is_ascii_digit()))
        .find(|run| (6..=10).contains(&run.len()))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_links_codes_and_tokens() {
        let text = "Hello,\n\nopen this link within 30 minutes:\n\n\
                    https://app.example/confirm?token=ab12345678c%2B&tokenId=x+y\n";
        let link = mail_link(text, "https://app.example/confirm").unwrap();
        assert_eq!(
            link,
            "https://app.example/confirm?token=ab12345678c%2B&tokenId=x+y"
        );
        assert_eq!(
            link_token(link),
            Some(("ab12345678c+".into(), "x y".into()))
        );
        assert_eq!(mail_link(text, "https://app.example/reset"), None);
        // The digits in the link's token are not a code.
        assert_eq!(mail_code(text), None);
        assert_eq!(
            mail_code("Your code is 0123456. It expires in 10 minutes."),
            Some("0123456".into())
        );
        assert_eq!(mail_code("12345 and 12345678901 are not codes"), None);
    }
}
