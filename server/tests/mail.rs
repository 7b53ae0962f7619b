//! Mail delivery (#23) through a real SMTP relay on loopback: aiosmtpd run by
//! tests/smtp/relay.py, with the Python of SESSIONKIT_TEST_SMTP_PYTHON (scripts/test-all makes
//! it: target/smtp-venv). Both back ends; the worker's backoff follows the server's test clock.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::relay::Relay;
use common::*;
use serde_json::{Value, json};
use sessionkit_server::Config;

const APP: &str = "mail-app";

fn toml(smtp_url: &str, mail_extra: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:0"
test_clock = true
rate_limits = {{ enabled = false }}

[admin]
public_key = "admin-pub"
private_key = "admin-priv"

[mail]
smtp_url = "{smtp_url}"
from = "SessionKit Test <no-reply@sessionkit.test>"
{mail_extra}

[[app]]
id = "{APP}"
[app.providers.local-userpass]
auto_confirm = false
confirm_url = "https://app.example/confirm"
reset_url = "https://app.example/reset?lang=en"
"#
    )
}

fn config(relay: &Relay, dir: &Path) -> Config {
    let mut c = Config::from_toml_str(&toml(&relay.url(), "")).expect("mail config");
    c.data_dir = dir.to_path_buf();
    c
}

async fn server(relay: &Relay) -> T {
    start_config(config(relay, &temp_dir("mail"))).await
}

fn up(path: &str) -> String {
    format!("{}/auth/providers/local-userpass/{path}", ar(APP))
}

/// The link of a mail: its base (without our query) and its `token` and `tokenId`.
fn link(mail: &Value) -> (String, String, String) {
    let text = mail["text"].as_str().unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with("https://app.example/"))
        .unwrap_or_else(|| panic!("no link in {text}"));
    let url = reqwest::Url::parse(line.trim()).unwrap();
    let q = |k: &str| {
        url.query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_else(|| panic!("no {k} in {line}"))
    };
    let base = format!("{}{}", url.origin().ascii_serialization(), url.path());
    // The HTML part carries the same link (its & escaped).
    assert!(
        mail["html"]
            .as_str()
            .unwrap()
            .contains(&line.trim().replace('&', "&amp;")),
        "{}",
        mail["html"]
    );
    (base, q("token"), q("tokenId"))
}

async fn register(t: &T, email: &str) {
    t.post(
        &up("register"),
        json!({"email": email, "password": "password1"}),
        None,
    )
    .await
    .ok(201);
}

/// Confirms an account with the token pair its mail carried; asserts 204.
async fn confirm(t: &T, token: &str, token_id: &str) {
    t.post(
        &up("confirm"),
        json!({"token": token, "tokenId": token_id}),
        None,
    )
    .await
    .ok(204);
}

async fn queue(t: &T) -> Vec<Value> {
    let admin = t.admin().await;
    t.get(&format!("{}/mail", adm(APP)), Some(&admin))
        .await
        .ok(200)
        .as_array()
        .unwrap()
        .clone()
}

/// Waits until every mail of the queue satisfies `ok`; the queue.
async fn wait_queue(t: &T, what: &str, ok: impl Fn(&Value) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let q = queue(t).await;
        if !q.is_empty() && q.iter().all(&ok) {
            return q;
        }
        assert!(Instant::now() < deadline, "queue never {what}: {q:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a mail was tried `n` times and the last failure recorded (the claim counts the try
/// before the answer is known).
fn tried(m: &Value, n: i64) -> bool {
    m["attempts"] == n && m["error"].is_string()
}

async fn login(t: &T, email: &str, password: &str) -> u16 {
    t.post(
        &format!("{}/auth/providers/local-userpass/login", ar(APP)),
        json!({"username": email, "password": password}),
        None,
    )
    .await
    .status
}

#[tokio::test]
async fn a_confirmation_mail_arrives_and_its_link_confirms() {
    let relay = Relay::up(&[]).await;
    let t = server(&relay).await;
    register(&t, "ada@example.com").await;
    let mails = relay.wait_mails(1).await;
    let m = &mails[0];
    assert_eq!(m["rcpt_tos"], json!(["ada@example.com"]));
    assert_eq!(m["mail_from"], "no-reply@sessionkit.test");
    assert!(m["subject"].as_str().unwrap().contains(APP), "{m}");
    assert!(m["text"].as_str().unwrap().contains("30 minutes"), "{m}");
    // A Message-ID on the sender's domain (providers junk mail without one), and a Date.
    let id = m["headers"]["Message-ID"].as_str().unwrap_or_default();
    let local = id
        .strip_prefix('<')
        .and_then(|i| i.strip_suffix("@sessionkit.test>"))
        .unwrap_or_else(|| panic!("Message-ID {id:?}: {m}"));
    assert!(
        local.len() == 32 && local.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert!(m["headers"]["Date"].is_string(), "{m}");
    let (base, token, token_id) = link(m);
    assert_eq!(base, "https://app.example/confirm");
    assert_eq!(login(&t, "ada@example.com", "password1").await, 401);
    confirm(&t, &token, &token_id).await;
    assert_eq!(login(&t, "ada@example.com", "password1").await, 200);
    // Sent, and the token no longer kept in clear.
    let q = wait_queue(&t, "sent", |m| m["status"] == "sent").await;
    assert_eq!(q[0]["attempts"], 1);
    assert!(q[0].get("token").is_none(), "{q:?}");
    let admin = t.admin().await;
    assert_eq!(
        t.outbox(&admin, APP, "ada@example.com").await[0]["token"],
        ""
    );
    // A sent mail leaves the listing after 30 days.
    t.srv.advance_clock(29 * 24 * 3600);
    t.srv.sweep().await.unwrap();
    assert_eq!(queue(&t).await.len(), 1);
    t.srv.advance_clock(2 * 24 * 3600);
    t.srv.sweep().await.unwrap();
    assert!(queue(&t).await.is_empty());
}

#[tokio::test]
async fn a_reset_mail_arrives_and_its_link_resets() {
    let relay = Relay::up(&[]).await;
    let t = server(&relay).await;
    register(&t, "bob@example.com").await;
    let (_, token, token_id) = link(&relay.wait_mails(1).await[0]);
    confirm(&t, &token, &token_id).await;
    t.post(&up("reset/send"), json!({"email": "bob@example.com"}), None)
        .await
        .ok(204);
    let mails = relay.wait_mails(2).await;
    let (base, token, token_id) = link(&mails[1]);
    assert_eq!(base, "https://app.example/reset");
    // The page's own query is kept.
    assert!(
        mails[1]["text"]
            .as_str()
            .unwrap()
            .contains("?lang=en&token=")
    );
    t.post(
        &up("reset"),
        json!({"token": token, "tokenId": token_id, "password": "password2"}),
        None,
    )
    .await
    .ok(204);
    assert_eq!(login(&t, "bob@example.com", "password1").await, 401);
    assert_eq!(login(&t, "bob@example.com", "password2").await, 200);
}

#[tokio::test]
async fn the_worker_sends_several_mails_at_once() {
    // The relay takes a mail only once four are in DATA at the same time (451 after 10 s
    // otherwise): a worker that sends one mail at a time gets none through (17 mails/s to a relay
    // on loopback, each waiting 40 ms for a delayed ACK; BENCHMARKS.md, "Mail").
    let mut relay = Relay::new(&[]);
    let t = server(&relay).await;
    let emails = [
        "t1@example.com",
        "t2@example.com",
        "t3@example.com",
        "t4@example.com",
    ];
    for e in emails {
        register(&t, e).await;
    }
    // Queued with the relay down, so that all four are due together at the next try.
    wait_queue(&t, "tried", |m| tried(m, 1) && m["status"] == "pending").await;
    relay.answer("together 4");
    relay.start().await;
    t.srv.advance_clock(61);
    relay.wait_mails(4).await;
    let q = wait_queue(&t, "sent", |m| m["status"] == "sent").await;
    assert!(q.iter().all(|m| m["attempts"] == 2), "{q:?}");
}

#[tokio::test]
async fn with_the_relay_down_requests_are_answered_and_every_mail_arrives_once_it_is_up() {
    let mut relay = Relay::new(&[]);
    let t = server(&relay).await;
    let emails = ["c1@example.com", "c2@example.com", "c3@example.com"];
    for e in emails {
        register(&t, e).await;
    }
    wait_queue(&t, "tried", |m| tried(m, 1) && m["status"] == "pending").await;
    // Still down at the next try (backoff: 30 s on the server clock).
    t.srv.advance_clock(31);
    let q = wait_queue(&t, "tried twice", |m| tried(m, 2)).await;
    assert!(q.iter().all(|m| m["error"].as_str().is_some()), "{q:?}");
    assert!(relay.mails().is_empty());
    relay.start().await;
    // The next try is an hour at most away (60 s here).
    t.srv.advance_clock(61);
    let mails = relay.wait_mails(3).await;
    wait_queue(&t, "sent", |m| m["status"] == "sent" && m["attempts"] == 3).await;
    // Once each, however often the worker looks again.
    t.srv.advance_clock(3600);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mails_after = relay.mails();
    assert_eq!(mails_after.len(), 3, "{mails:?}");
    let mut to: Vec<_> = mails_after
        .iter()
        .map(|m| m["rcpt_tos"][0].as_str().unwrap().to_string())
        .collect();
    to.sort();
    assert_eq!(to, emails);
}

#[tokio::test]
async fn a_4xx_answer_is_retried_until_the_relay_takes_the_mail() {
    let relay = Relay::up(&[]).await;
    relay.answer("4xx");
    let t = server(&relay).await;
    register(&t, "dan@example.com").await;
    let q = wait_queue(&t, "tried", |m| tried(m, 1)).await;
    assert_eq!(q[0]["status"], "pending");
    assert!(q[0]["error"].as_str().unwrap().contains("451"), "{q:?}");
    relay.answer("ok");
    t.srv.advance_clock(31);
    let mails = relay.wait_mails(1).await;
    let (_, token, token_id) = link(&mails[0]);
    wait_queue(&t, "sent", |m| m["status"] == "sent").await;
    confirm(&t, &token, &token_id).await;
}

/// A link that has expired by the time the relay would take the mail (30 minutes for a
/// confirmation) is not sent: the mail fails saying so, and nothing reaches the relay.
#[tokio::test]
async fn a_mail_whose_link_has_expired_is_failed_not_sent() {
    let relay = Relay::up(&[]).await;
    relay.answer("4xx");
    let t = server(&relay).await;
    register(&t, "late@example.com").await;
    wait_queue(&t, "tried", |m| tried(m, 1)).await;
    relay.answer("ok");
    t.srv.advance_clock(1900);
    let q = wait_queue(&t, "failed", |m| m["status"] == "failed").await;
    let why = q[0]["error"].as_str().unwrap();
    assert!(why.contains("its link expired"), "{q:?}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(relay.mails().is_empty(), "a dead link was sent");
}

#[tokio::test]
async fn a_5xx_answer_fails_the_mail_with_its_reason_and_an_operator_can_retry_it() {
    let relay = Relay::up(&[]).await;
    relay.answer("5xx");
    let t = server(&relay).await;
    register(&t, "eve@example.com").await;
    let q = wait_queue(&t, "failed", |m| m["status"] == "failed").await;
    assert!(q[0]["error"].as_str().unwrap().contains("550"), "{q:?}");
    assert_eq!(q[0]["attempts"], 1);
    // Never tried again on its own (within the token's 30 minutes, so that it still confirms).
    t.srv.advance_clock(600);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(queue(&t).await[0]["attempts"], 1);
    assert!(relay.mails().is_empty());
    relay.answer("ok");
    let admin = t.admin().await;
    let r = t
        .post(&format!("{}/mail/retry", adm(APP)), json!({}), Some(&admin))
        .await;
    assert_eq!(r.ok(200)["retried"], 1);
    let (_, token, token_id) = link(&relay.wait_mails(1).await[0]);
    confirm(&t, &token, &token_id).await;
}

/// `admin mail retry` once the relay works again: a pending mail is sent at once instead of at
/// its next try, and a failed mail whose link has expired stays failed and is not counted (its
/// user asks for a new mail).
#[tokio::test]
async fn an_operators_retry_sends_pending_mail_now_and_leaves_dead_links_failed() {
    let relay = Relay::up(&[]).await;
    relay.answer("5xx");
    let t = server(&relay).await;
    register(&t, "old@example.com").await;
    wait_queue(&t, "failed", |m| m["status"] == "failed").await;
    // Its 30-minute link dies; a second mail meets a relay answering 4xx.
    t.srv.advance_clock(1900);
    relay.answer("4xx");
    register(&t, "new@example.com").await;
    wait_queue(&t, "tried", |m| m["status"] == "failed" || tried(m, 1)).await;
    relay.answer("ok");
    let admin = t.admin().await;
    let r = t
        .post(&format!("{}/mail/retry", adm(APP)), json!({}), Some(&admin))
        .await;
    assert_eq!(r.ok(200)["retried"], 1);
    // Sent without the clock reaching its next try (30 s away).
    let mails = relay.wait_mails(1).await;
    assert_eq!(mails[0]["rcpt_tos"], json!(["new@example.com"]));
    let q = wait_queue(&t, "settled", |m| m["status"] != "pending").await;
    let old = q.iter().find(|m| m["email"] == "old@example.com").unwrap();
    assert_eq!(old["status"], "failed", "{q:?}");
    assert_eq!(old["attempts"], 1, "{q:?}");
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(relay.mails().len(), 1);
}

/// The relay is down for the whole life of a confirmation link: the tries follow the backoff,
/// the last one is made a minute before the link expires, and then the mail fails saying why.
#[tokio::test]
async fn with_the_relay_down_the_last_try_is_made_just_before_the_link_expires() {
    let relay = Relay::up(&[]).await;
    relay.answer("4xx");
    let t = server(&relay).await;
    register(&t, "ivy@example.com").await;
    // Tries at 0, 30, 90, 210, 450, 930 s after queuing (30 s doubling); the next would be at
    // 1890 s, past the expiry at 1800: the 7th is at 1740. The server clock is the system's
    // plus the test offset, so a few real seconds may be added to each.
    let created = queue(&t).await[0]["created_at"].as_i64().unwrap();
    let mut at = 0;
    for (n, next) in [(1, 30), (2, 90), (3, 210), (4, 450), (5, 930), (6, 1740)] {
        // Try n recorded (a claim alone moves next_at by the 300 s lease, out of this range).
        let q = wait_queue(&t, "tried", |m| {
            let due = m["next_at"].as_i64().unwrap() - created;
            tried(m, n) && (next..next + 10).contains(&due)
        })
        .await;
        assert_eq!(q[0]["status"], "pending");
        t.srv.advance_clock(next - at);
        at = next;
    }
    let q = wait_queue(&t, "failed", |m| m["status"] == "failed").await;
    assert_eq!(q[0]["attempts"], 7, "{q:?}");
    let why = q[0]["error"].as_str().unwrap();
    assert!(
        why.contains("gave up after 7 tries: its link expires before another one")
            && why.contains("451"),
        "{why}"
    );
}

#[tokio::test]
async fn a_mail_queued_before_a_restart_is_sent_after_it() {
    let mut relay = Relay::new(&[]);
    let dir = temp_dir("mail-restart");
    let t = start_config(config(&relay, &dir)).await;
    register(&t, "fay@example.com").await;
    wait_queue(&t, "tried", |m| tried(m, 1)).await;
    t.srv.shutdown().await;
    relay.start().await;
    let t = start_config(config(&relay, &dir)).await;
    t.srv.advance_clock(31);
    let (_, token, token_id) = link(&relay.wait_mails(1).await[0]);
    confirm(&t, &token, &token_id).await;
}

#[tokio::test]
async fn two_instances_on_postgres_send_each_mail_once() {
    if std::env::var("SESSIONKIT_TEST_POSTGRES").is_err() {
        eprintln!(
            "not run on the SQLite pass (one process per SQLite file): it needs SESSIONKIT_TEST_POSTGRES"
        );
        return;
    }
    let mut relay = Relay::new(&[]);
    let dir = temp_dir("mail-two");
    let a = start_config(config(&relay, &dir)).await;
    let b = start_config(config(&relay, &dir)).await;
    let n = 20;
    for i in 0..n {
        let t = if i % 2 == 0 { &a } else { &b };
        register(t, &format!("u{i}@example.com")).await;
    }
    wait_queue(&a, "tried", |m| tried(m, 1)).await;
    relay.start().await;
    // Both instances find every mail due at once, and race for them.
    a.srv.advance_clock(31);
    b.srv.advance_clock(31);
    relay.wait_mails(n).await;
    wait_queue(&a, "sent", |m| m["status"] == "sent").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mails = relay.mails();
    let mut to: Vec<_> = mails
        .iter()
        .map(|m| m["rcpt_tos"][0].as_str().unwrap().to_string())
        .collect();
    to.sort();
    to.dedup();
    assert_eq!((mails.len(), to.len()), (n, n));
    assert!(queue(&a).await.iter().all(|m| m["attempts"] == 2));
}

#[tokio::test]
async fn a_header_injection_in_the_address_is_refused() {
    let relay = Relay::up(&[]).await;
    let t = server(&relay).await;
    for bad in [
        "victim@example.com\r\nBcc: attacker@evil.example",
        "victim@example.com\nBcc: attacker@evil.example",
        "victim@example.com>\r\nBcc:<attacker@evil.example",
    ] {
        t.post(
            &up("register"),
            json!({"email": bad, "password": "password1"}),
            None,
        )
        .await
        .err(400, "BadRequest");
        let r = t.post(&up("reset/send"), json!({"email": bad}), None).await;
        assert_ne!(r.status, 204, "{bad:?}");
    }
    assert!(queue(&t).await.is_empty());
    // The second line: the sender itself refuses such a recipient, before any SMTP.
    let mailer = sessionkit_server::mail::SmtpMailer::new(
        Config::from_toml_str(&toml(&relay.url(), ""))
            .unwrap()
            .mail
            .as_ref()
            .unwrap(),
    )
    .unwrap();
    use sessionkit_server::mail::{Mailer, Outgoing, SendError};
    let sent = mailer
        .send(&Outgoing {
            to: "victim@example.com\r\nBcc: attacker@evil.example".into(),
            subject: "s".into(),
            text: "t".into(),
            html: "h".into(),
        })
        .await;
    assert!(matches!(sent, Err(SendError::Permanent(_))), "{sent:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(relay.mails().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_lists_and_retries_the_queue_from_the_shell() {
    let relay = Relay::up(&[]).await;
    relay.answer("5xx");
    let t = server(&relay).await;
    register(&t, "gus@example.com").await;
    wait_queue(&t, "failed", |m| m["status"] == "failed").await;
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_sessionkit-server"))
            .args(["admin", "--url", &t.base, "mail"])
            .args(args)
            .env("SESSIONKIT_ADMIN_PUBLIC_KEY", "admin-pub")
            .env("SESSIONKIT_ADMIN_PRIVATE_KEY", "admin-priv")
            .output()
            .unwrap()
    };
    let out = cli(&["list", "--app", APP]);
    let listed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: Value = serde_json::from_str(listed.trim()).unwrap();
    assert_eq!(line["status"], "failed");
    assert_eq!(line["email"], "gus@example.com");
    assert!(line["error"].as_str().unwrap().contains("550"), "{line}");
    assert!(!listed.contains("token"), "{listed}");
    relay.answer("ok");
    let out = cli(&["retry", "--app", APP]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with(&format!("1 mail of {APP} due now")));
    relay.wait_mails(1).await;
    wait_queue(&t, "sent", |m| m["status"] == "sent").await;
    let out = cli(&["list", "--app", "no-such-app"]);
    assert_eq!(out.status.code(), Some(1));
}

#[tokio::test]
async fn starttls_to_a_relay_with_a_self_signed_certificate_given_as_ca_file() {
    let relay = Relay::up(&["--tls"]).await;
    // Without the CA, the relay's certificate is refused and nothing is sent (in clear or not).
    let t = server(&relay).await;
    register(&t, "hal@example.com").await;
    let q = wait_queue(&t, "tried", |m| m["error"].is_string()).await;
    let why = q[0]["error"].as_str().unwrap();
    // The relay named, and what to do about its certificate.
    assert!(
        why.starts_with(&format!("relay 127.0.0.1:{}: ", relay.port))
            && why.contains("UnknownIssuer")
            && why.contains("set mail.ca_file to the PEM of the CA"),
        "{why}"
    );
    assert!(relay.mails().is_empty());
    // A ca_file that holds no PEM certificate (DER, a key, a typo) stops the start.
    let der = relay.dir.join("ca.der");
    std::fs::write(&der, [0x30u8, 0x82, 0x01, 0x0a]).unwrap();
    let e = Config::from_toml_str(&toml(
        &relay.url(),
        &format!("ca_file = \"{}\"", der.display()),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.starts_with("mail.ca_file:")
            && e.contains("has no PEM certificate")
            && e.contains("openssl x509"),
        "{e}"
    );
    // With it as ca_file: STARTTLS (the relay takes no mail without it).
    let ca = format!("ca_file = \"{}\"", relay.dir.join("ca.pem").display());
    let mut c = Config::from_toml_str(&toml(&relay.url(), &ca)).unwrap();
    c.data_dir = temp_dir("mail-tls");
    let t = start_config(c).await;
    register(&t, "ida@example.com").await;
    let mails = relay.wait_mails(1).await;
    assert_eq!(mails[0]["rcpt_tos"], json!(["ida@example.com"]));
}

#[tokio::test]
async fn auth_with_the_user_name_from_the_url_and_the_password_apart() {
    let relay = Relay::up(&["--tls", "--auth", "mailer:s3cret-pw"]).await;
    let ca = format!("ca_file = \"{}\"", relay.dir.join("ca.pem").display());
    let url = format!("smtp://mailer@127.0.0.1:{}", relay.port);
    let start = |password: &str| {
        let mut c = Config::from_toml_str(&toml(&url, &ca)).unwrap();
        c.data_dir = temp_dir("mail-auth");
        c.mail.as_mut().unwrap().password =
            Some(sessionkit_server::config::Secret(password.to_string()));
        start_config(c)
    };
    // A wrong password: the relay's 535 fails the mail, reason kept (never the password).
    let t = start("wrong-pw").await;
    register(&t, "jon@example.com").await;
    let q = wait_queue(&t, "failed", |m| m["status"] == "failed").await;
    let why = q[0]["error"].as_str().unwrap();
    assert!(why.contains("535"), "{why}");
    assert!(!why.contains("wrong-pw"), "{why}");
    let t = start("s3cret-pw").await;
    register(&t, "kim@example.com").await;
    let mails = relay.wait_mails(1).await;
    assert_eq!(mails[0]["rcpt_tos"], json!(["kim@example.com"]));
    // A password in the URL is refused, with where to put it instead.
    let e = Config::from_toml_str(&toml(
        &format!("smtp://mailer:pw@127.0.0.1:{}", relay.port),
        "",
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("SESSIONKIT_SMTP_PASSWORD"), "{e}");
}

#[test]
fn without_mail_a_production_server_with_local_userpass_refuses_to_start() {
    let bare = "[[app]]\nid = \"a\"\n[app.providers.local-userpass]\n";
    let e = Config::from_toml_str(bare).unwrap_err().to_string();
    assert!(e.starts_with("mail: "), "{e}");
    for what in ["[mail]", "smtp_url", "reset_url", "--dev", "reset_function"] {
        assert!(e.contains(what), "{what}: {e}");
    }
    // Test servers are no advice for a production operator.
    assert!(!e.contains("test_clock"), "{e}");
    let e = Config::from_toml_str(&format!(
        "{bare}auto_confirm = false\nreset_function = \"fail\"\n"
    ))
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("confirmation mails (auto_confirm = false)"),
        "{e}"
    );
    // A test server keeps the outbox; with [mail], reset_url is then required.
    Config::from_toml_str(&format!("test_clock = true\n{bare}")).unwrap();
    let with_mail =
        format!("[mail]\nsmtp_url = \"smtp://127.0.0.1:2525\"\nfrom = \"a@example.com\"\n{bare}");
    let e = Config::from_toml_str(&with_mail).unwrap_err().to_string();
    assert!(
        e.starts_with("app[0].providers.local-userpass.reset_url:"),
        "{e}"
    );
    let ok = format!("{with_mail}reset_url = \"https://a.example/reset\"\n");
    Config::from_toml_str(&ok).unwrap();
    // Other checks of [mail]: the scheme, the sender, the confirmation page when confirmation
    // is on.
    let e = Config::from_toml_str(&ok.replace("smtp://", "http://")).unwrap_err();
    assert!(
        e.to_string()
            .contains("use smtp:// (STARTTLS) or smtps:// (TLS)"),
        "{e}"
    );
    let e = Config::from_toml_str(&ok.replace("a@example.com\"", "not an address\"")).unwrap_err();
    assert!(e.to_string().starts_with("mail.from:"), "{e}");
    let e = Config::from_toml_str(&format!("{ok}auto_confirm = false\n")).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("app[0].providers.local-userpass.confirm_url:"),
        "{e}"
    );
}

/// `--dev` prints each mail's token on the console; a server of any other mode prints none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_dev_prints_the_tokens_on_the_console() {
    let bin = env!("CARGO_BIN_EXE_sessionkit-server");
    let http = reqwest::Client::new();
    let reset_send = |base: String, app: &'static str| {
        let http = http.clone();
        async move {
            let url = format!("{base}/api/client/v2.0/app/{app}/auth/providers/local-userpass");
            let r = http
                .post(format!("{url}/register"))
                .json(&json!({"email": "dev@example.com", "password": "password1"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            let r = http
                .post(format!("{url}/reset/send"))
                .json(&json!({"email": "dev@example.com"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 204);
        }
    };
    let dir = temp_dir("mail-dev");
    let (mut child, base, mut lines) = spawn_listening(
        Command::new(bin)
            .args(["--dev", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(&dir)
            .stderr(Stdio::null()),
    );
    reset_send(base, "sessionkit-dev").await;
    let line = lines
        .by_ref()
        .map(|l| l.unwrap())
        .find(|l| l.starts_with("[dev mail]"))
        .expect("a [dev mail] line");
    assert!(
        line.contains("reset for dev@example.com") && line.contains("\"tokenId\": \""),
        "{line}"
    );
    let _ = child.kill();
    let _ = child.wait();

    // A test server (no --dev): the mail is in the outbox, its token on no line of stdout.
    let cfg = temp_dir("mail-nodev");
    std::fs::create_dir_all(&cfg).unwrap();
    let file = cfg.join("server.toml");
    std::fs::write(&file, CONFIG).unwrap();
    let (mut child, base, lines) = spawn_listening(
        Command::new(bin)
            .arg("--config")
            .arg(&file)
            .args(["--data-dir"])
            .arg(cfg.join("data"))
            .stderr(Stdio::null()),
    );
    reset_send(base.clone(), "test-app").await;
    let admin: Value = http
        .post(format!(
            "{base}/api/admin/v3.0/auth/providers/mongodb-cloud/login"
        ))
        .json(&json!({"username": "admin-pub", "apiKey": "admin-priv"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let outbox: Value = http
        .get(format!("{base}{}/outbox", adm("test-app")))
        .bearer_auth(admin["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tokens: Vec<String> = outbox
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["token"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(tokens.len(), 2, "{outbox}");
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let out: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let _ = child.wait();
    for t in &tokens {
        assert!(out.iter().all(|l| !l.contains(t.as_str())), "{out:?}");
    }
    assert!(out.iter().all(|l| !l.starts_with("[dev mail]")), "{out:?}");
}

#[tokio::test]
async fn an_apps_own_templates_and_subjects_fill_their_placeholders() {
    let relay = Relay::up(&[]).await;
    let dir = temp_dir("mail-templates");
    std::fs::create_dir_all(&dir).unwrap();
    let text = dir.join("confirm.txt");
    let html = dir.join("confirm.html");
    std::fs::write(
        &text,
        "Hi {email}, welcome to {app}:\n{link}\n({expires_minutes} min)\n",
    )
    .unwrap();
    std::fs::write(
        &html,
        "<style>p { color: red }</style><a href=\"{link}\">{email}</a>",
    )
    .unwrap();
    let toml = toml(&relay.url(), "").replace(
        "confirm_url =",
        &format!(
            "confirm_subject = \"Welcome to {{app}}, {{email}}\"\nconfirm_template_text = \"{}\"\n\
             confirm_template_html = \"{}\"\nconfirm_url =",
            text.file_name().unwrap().to_str().unwrap(),
            html.file_name().unwrap().to_str().unwrap()
        ),
    );
    // Relative paths are the config file's neighbours, wherever the server was started from.
    let file = dir.join("server.toml");
    std::fs::write(&file, &toml).unwrap();
    let mut c = Config::from_file(&file).unwrap();
    assert_eq!(
        c.apps[0]
            .providers
            .local_userpass
            .as_ref()
            .unwrap()
            .confirm_template_text,
        Some(text.clone())
    );
    c.data_dir = dir.join("data");
    let t = start_config(c).await;
    register(&t, "liz@example.com").await;
    let m = &relay.wait_mails(1).await[0];
    assert_eq!(m["subject"], format!("Welcome to {APP}, liz@example.com"));
    // SMTP ends lines with CRLF.
    let body = m["text"].as_str().unwrap().replace("\r\n", "\n");
    assert!(
        body.starts_with(&format!(
            "Hi liz@example.com, welcome to {APP}:\nhttps://app.example/confirm?token="
        )),
        "{body}"
    );
    assert!(body.contains("(30 min)"), "{body}");
    // link() checks the HTML part has the same link, & escaped; CSS braces are no placeholder.
    let (_, token, token_id) = link(m);
    let html = m["html"].as_str().unwrap();
    assert!(
        html.starts_with("<style>p { color: red }</style><a href=")
            && html.ends_with("liz@example.com</a>"),
        "{m}"
    );
    confirm(&t, &token, &token_id).await;
    // A template file that cannot be read stops the start, naming the key.
    let bad = toml.replace("\"confirm.txt\"", "\"/no/such/template.txt\"");
    let e = Config::from_toml_str(&bad).unwrap_err().to_string();
    assert!(e.starts_with("app[0].providers.local-userpass.confirm_template_text: cannot read /no/such/template.txt"), "{e}");
}

/// A confirmation or reset template without `{link}`, or with a placeholder that is not one (a
/// typo, which would be mailed as is), stops the start naming the file, the placeholder and the
/// known ones.
#[test]
fn a_template_without_its_link_or_with_an_unknown_placeholder_is_refused() {
    let dir = temp_dir("mail-bad-templates");
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, body: &str| {
        let f = dir.join(name);
        std::fs::write(&f, body).unwrap();
        f.display().to_string()
    };
    let start = |key: &str, value: &str| {
        let toml = toml("smtp://127.0.0.1:2525", "").replace(
            "confirm_url =",
            &format!("{key} = \"{value}\"\nconfirm_url ="),
        );
        Config::from_toml_str(&toml)
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let no_link = file("no-link.html", "<p>Welcome, {email}!</p>");
    for key in [
        "confirm_template_text",
        "confirm_template_html",
        "reset_template_text",
        "reset_template_html",
    ] {
        let e = start(key, &no_link).unwrap_err();
        assert!(
            e.starts_with(&format!("app[0].providers.local-userpass.{key}: {no_link}"))
                && e.contains("no {link}"),
            "{e}"
        );
    }
    let typo = file("typo.txt", "Hello {emial}, {link}\n");
    let e = start("reset_template_text", &typo).unwrap_err();
    assert!(
        e.contains(&typo)
            && e.contains("unknown placeholder {emial}")
            && e.contains("{link}, {email}, {app}, {expires_minutes}"),
        "{e}"
    );
    let e = start("confirm_subject", "Hi {name}").unwrap_err();
    assert!(
        e.starts_with("app[0].providers.local-userpass.confirm_subject:") && e.contains("{name}"),
        "{e}"
    );
    start(
        "reset_template_text",
        &file("ok.txt", "{email}: {link} ({expires_minutes})"),
    )
    .unwrap();
}

/// An app that needs no mail (users confirmed at once, resets by a function that is not
/// "pending") runs in production without [mail], as before #23: register and log in work, and
/// asking for a mail answers 400 MailNotConfigured instead of queuing it for nobody.
#[tokio::test]
async fn an_app_that_needs_no_mail_starts_without_it_and_refuses_to_mail() {
    let toml = format!(
        "listen = \"127.0.0.1:0\"\nrate_limits = {{ enabled = false }}\n[[app]]\nid = \"{APP}\"\n\
         [app.providers.local-userpass]\nauto_confirm = true\nreset_function = \"fail\"\n"
    );
    let mut c = Config::from_toml_str(&toml).expect("no mail needed");
    assert!(!c.sends_mail());
    c.data_dir = temp_dir("mail-none");
    let t = start_config(c).await;
    register(&t, "ann@example.com").await;
    assert_eq!(login(&t, "ann@example.com", "password1").await, 200);
    for path in ["confirm/send", "confirm/call", "reset/send"] {
        let r = t
            .post(&up(path), json!({"email": "ann@example.com"}), None)
            .await;
        assert_eq!(r.status, 400, "{path}: {:?}", r.body);
        assert_eq!(
            r.body["error_code"], "MailNotConfigured",
            "{path}: {:?}",
            r.body
        );
        assert!(
            r.body["error"].as_str().unwrap().contains("[mail]"),
            "{path}: {:?}",
            r.body
        );
    }
}

/// The mail worker's tries in the audit log and the metrics (#26): a mail refused with a 5xx
/// is `mail_failed`, the operator's retry that delivers it `mail_sent`; each try counted by
/// outcome in `sessionkit_mail_tries_total`.
#[tokio::test]
async fn the_workers_tries_are_audit_events_and_counted_in_the_metrics() {
    let relay = Relay::up(&[]).await;
    relay.answer("5xx");
    let mut c = Config::from_toml_str(&toml(&relay.url(), "\n[metrics]\nenabled = true"))
        .expect("mail config");
    c.data_dir = temp_dir("mail-observed");
    let t = start_config(c).await;
    register(&t, "obs@example.com").await;
    wait_queue(&t, "failed", |m| m["status"] == "failed").await;
    relay.answer("ok");
    let admin = t.admin().await;
    t.post(&format!("{}/mail/retry", adm(APP)), json!({}), Some(&admin))
        .await
        .ok(200);
    relay.wait_mails(1).await;
    wait_queue(&t, "sent", |m| m["status"] == "sent").await;

    let events = t
        .get(&format!("{}/events", adm(APP)), Some(&admin))
        .await
        .ok(200)["events"]
        .clone();
    let kinds: Vec<&str> = events
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["registered", "mail_failed", "mail_sent"],
        "{events}"
    );
    assert_eq!(events[1]["actor"], "server");
    assert_eq!(events[1]["detail"]["mail"], "confirm");
    // The tries the queue counted before this one (the operator's retry starts it afresh).
    assert!(events[2]["detail"]["attempts"].is_i64(), "{events}");
    assert!(!events.to_string().contains("obs@example.com"), "{events}");

    let auth = {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.encode("admin-pub:admin-priv")
    };
    let text = reqwest::Client::new()
        .get(format!("{}/metrics", t.base))
        .header("authorization", format!("Basic {auth}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for (outcome, n) in [("sent", 1), ("failed", 1)] {
        let line = format!("sessionkit_mail_tries_total{{outcome=\"{outcome}\"}} {n}");
        assert!(text.lines().any(|l| l == line), "{line} in:\n{text}");
    }
}
