//! Stopping the `sessionkit-server` binary: a SIGTERM is honoured even when the parent spawned
//! it with SIGTERM blocked, and a graceful stop ends within its deadline however clients behave,
//! keeping every acknowledged write (SERVER.md, "Stopping").
#![cfg(unix)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::temp_dir;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_sessionkit-server");
const DEADLINE_SECS: u64 = 2;

/// Starts the dev server the way a parent with SIGTERM blocked would (the mask is inherited
/// across exec): the child's mask is set just before exec.
fn spawn_with_sigterm_blocked(dir: &std::path::Path) -> (Child, String) {
    std::fs::create_dir_all(dir).unwrap();
    let config = dir.join("server.toml");
    std::fs::write(
        &config,
        format!(
            "shutdown_timeout_secs = {DEADLINE_SECS}\n[[app]]\nid = \"stop-app\"\n\
             [app.providers.anon-user]\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new(BIN);
    cmd.arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.join("data"))
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe libc calls between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let (child, base, _) = common::spawn_listening(&mut cmd);
    (child, base)
}

/// The blocked-signal mask of every thread of `pid`, from /proc (Linux only): bit 15 is SIGTERM.
fn sigterm_blocked_in_any_thread(pid: u32) -> Option<bool> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut any = false;
    for task in tasks.flatten() {
        let status = std::fs::read_to_string(task.path().join("status")).ok()?;
        let mask = status.lines().find_map(|l| l.strip_prefix("SigBlk:"))?;
        let mask = u64::from_str_radix(mask.trim(), 16).ok()?;
        any |= mask & (1 << (libc::SIGTERM - 1)) != 0;
    }
    Some(any)
}

fn host_port(base: &str) -> &str {
    base.strip_prefix("http://").unwrap()
}

/// One POST on its own connection (`Connection: close`): the status and the body.
fn post(base: &str, path: &str, bearer: Option<&str>) -> (u16, String) {
    let mut s = TcpStream::connect(host_port(base)).unwrap();
    let auth = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

fn anonymous_login(base: &str) -> String {
    let (status, body) = post(
        base,
        "/api/client/v2.0/app/stop-app/auth/providers/anon-user/login",
        None,
    );
    assert_eq!(status, 200, "{body}");
    let login: Value = serde_json::from_str(&body).unwrap();
    login["refresh_token"].as_str().unwrap().to_string()
}

#[test]
fn sigterm_with_sigterm_blocked_by_the_parent_and_stuck_clients_stops_within_the_deadline() {
    let dir = temp_dir("stop");
    let (mut child, base) = spawn_with_sigterm_blocked(&dir);
    if let Some(blocked) = sigterm_blocked_in_any_thread(child.id()) {
        assert!(!blocked, "the server must unblock SIGTERM in every thread");
    }
    // Acknowledged writes: two logins answered before the stop.
    let refresh_tokens = [anonymous_login(&base), anonymous_login(&base)];

    // An idle keep-alive connection: one request answered, the socket left open.
    let mut idle = TcpStream::connect(host_port(&base)).unwrap();
    write!(
        idle,
        "GET /api/client/v2.0/app/stop-app/location HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    .unwrap();
    let mut buf = [0u8; 512];
    let n = idle.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &buf[..n]);
    // A half-sent request: headers promise a body that never comes.
    let mut half = TcpStream::connect(host_port(&base)).unwrap();
    write!(
        half,
        "POST /api/client/v2.0/app/stop-app/auth/providers/anon-user/login HTTP/1.1\r\n\
         Host: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"opt"
    )
    .unwrap();
    // And one whose headers never finish.
    let mut half_header = TcpStream::connect(host_port(&base)).unwrap();
    write!(
        half_header,
        "GET /api/client/v2.0/app/stop-app/location HTTP/1.1\r\nHo"
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));

    let started = Instant::now();
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > Duration::from_secs(DEADLINE_SECS + 8) {
            let _ = child.kill();
            panic!("the server did not stop within its deadline after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}"
    );
    drop((idle, half, half_header));

    // Restarted on the same data: every session acknowledged before the stop still refreshes.
    let (mut child, base) = spawn_with_sigterm_blocked(&dir);
    for token in &refresh_tokens {
        let (status, body) = post(&base, "/api/client/v2.0/auth/session", Some(token));
        assert_eq!(
            status, 201,
            "a session from before the stop was lost: {body}"
        );
    }
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    assert_eq!(child.wait().unwrap().code(), Some(0));
    let _ = std::fs::remove_dir_all(&dir);
}
