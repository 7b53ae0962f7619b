//! A real SMTP relay on loopback for the mail tests (#23): aiosmtpd run by tests/smtp/relay.py,
//! with the Python of SESSIONKIT_TEST_SMTP_PYTHON (scripts/test-all makes it: target/smtp-venv).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::temp_dir;

/// The Python that runs the relay: SESSIONKIT_TEST_SMTP_PYTHON, else target/smtp-venv of this
/// workspace. Fails (never skips) without one.
pub fn python() -> PathBuf {
    if let Ok(p) = std::env::var("SESSIONKIT_TEST_SMTP_PYTHON") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/smtp-venv/bin/python");
    if venv.exists() {
        return venv;
    }
    panic!("{}", HOW_TO_GET_THE_RELAY);
}

pub const HOW_TO_GET_THE_RELAY: &str = "the mail tests need a Python with aiosmtpd for their SMTP \
relay: python3 -m venv target/smtp-venv && target/smtp-venv/bin/pip install aiosmtpd \
cryptography, then set SESSIONKIT_TEST_SMTP_PYTHON=$PWD/target/smtp-venv/bin/python \
(scripts/test-all does both)";

/// A real SMTP relay on 127.0.0.1, started and stopped by the test.
pub struct Relay {
    pub dir: PathBuf,
    pub port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl Relay {
    /// A relay on a free port, not yet running (down).
    pub fn new(args: &[&str]) -> Relay {
        let dir = temp_dir("relay");
        std::fs::create_dir_all(&dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Relay {
            dir,
            port,
            args: args.iter().map(|a| a.to_string()).collect(),
            child: None,
        }
    }

    /// A relay already running.
    pub async fn up(args: &[&str]) -> Relay {
        let mut r = Relay::new(args);
        r.start().await;
        r
    }

    pub async fn start(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/smtp/relay.py");
        let mut child = Command::new(python())
            .arg(script)
            .arg("--dir")
            .arg(&self.dir)
            .arg("--port")
            .arg(self.port.to_string())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run the relay ({e}); {HOW_TO_GET_THE_RELAY}"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.dir.join("ready").exists() {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                use std::io::Read;
                child
                    .stderr
                    .take()
                    .unwrap()
                    .read_to_string(&mut err)
                    .unwrap();
                panic!("the relay exited ({status}): {err}\n{HOW_TO_GET_THE_RELAY}");
            }
            assert!(Instant::now() < deadline, "the relay did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_file(self.dir.join("ready"));
    }

    /// What the relay answers at the end of DATA: "ok", "4xx" or "5xx".
    pub fn answer(&self, mode: &str) {
        std::fs::write(self.dir.join("mode"), mode).unwrap();
    }

    /// Every mail received, in order.
    pub fn mails(&self) -> Vec<Value> {
        let mut names: Vec<_> = std::fs::read_dir(&self.dir)
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| n.starts_with("mail-") && n.ends_with(".json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| serde_json::from_slice(&std::fs::read(self.dir.join(n)).unwrap()).unwrap())
            .collect()
    }

    /// Waits until `n` mails have arrived; all of them.
    pub async fn wait_mails(&self, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} mails arrived",
                mails.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop();
    }
}
