//! A load generator for sessionkit-server, run as its own process against a server on loopback.
//!
//! `loadgen --url URL [--url URL2 ...] --app-id ID --op login|refresh|rotate|register|confirm-send
//! [--concurrency N[,N2...]] [--seconds S] [--requests R] [--history H] [--tsv]`
//!
//! `login`: anonymous logins. `refresh`: each worker first logs in one anonymous user, then
//! refreshes its access token in a loop. `rotate`: the same against an app with refresh-token
//! rotation, each refresh presenting the token the previous one answered; `--history H` first
//! rotates each session H times unmeasured, so that sessions with a long past are measured.
//! The history is built in seconds, where a real session's takes days: the server keeps a
//! rotated-out token for its 10 s grace window (PROTOCOL.md, "Refresh token rotation") and
//! prunes it at a later rotation, so after the history every worker waits 11 s and rotates
//! once more, unmeasured. The run then measures sessions in their steady state (a long past,
//! pruned as it went) rather than each one's first rotation deleting a whole history at once.
//!
//! `register`: `local-userpass` registrations of new addresses (an argon2 hash each; with
//! `auto_confirm = false` each one queues a confirmation mail). `confirm-send`: each worker first
//! registers one address (unmeasured, so one mail queued per worker before the clock starts),
//! then asks for its confirmation mail again in a loop: one mail queued per request, without a
//! password hash (#23's mail benchmark, scripts/bench-mail). `--requests R` stops a level after
//! R successful requests in all (the `S` seconds still bound it): exactly R mails queued.
//!
//! `--revokers N` (#25): N more tasks, each logged in as an anonymous user of its own, send
//! `DELETE auth/sessions?scope=other_devices` in a loop, as fast as they are answered, for as
//! long as the measured runs last: a flood of users signing out their other devices (each one a
//! write transaction), beside the measured workload. Their count and rate go to stderr.
//!
//! Several `--url`s (`--base-url` is the same option) are instances of one server sharing a
//! database: each worker sends its requests to them in turn (worker `w`'s `n`-th request goes to
//! URL `(w + n) mod count`). A worker's session, and so a rotating refresh-token chain, stays
//! with that worker and is used one request after another, so consecutive links of a chain are
//! presented to different instances.
//!
//! Every answer is checked (2xx and the expected field). A failed request is counted, not
//! fatal: it is left out of the latencies, the worker waits 10 ms, and a `refresh`/`rotate`
//! worker logs in a new user (after a failed rotation the token it holds may be spent). The
//! counts of failures by kind go to stderr and the exit status is 1 when there were any.
//! Failures before the clock starts (the logins, the history) end the run, exit status 2.
//!
//! Several concurrency levels (`--concurrency 16,64`) are measured one after another, S seconds
//! each, by one set of workers: as many as the largest level, all logged in (and given their
//! history) once, of which the first N work during level N's run while the others wait.
//!
//! Each run is bounded by time and stops by itself. Prints, per level, requests per second, the
//! p50, p99 and max latencies, and how busy each CPU of the machine was during the run (from
//! /proc/stat: every process, not only this one's); with `--tsv`, those lines go to stderr and
//! stdout gets one line per level of tab-separated fields:
//! `concurrency requests errors seconds req/s p50_ms p99_ms max_ms cpu_busy` (cpu_busy: the
//! percentages of cpu0, cpu1, ... joined by `/`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Args {
    urls: Vec<String>,
    app_id: String,
    op: String,
    concurrency: Vec<usize>,
    seconds: u64,
    history: usize,
    requests: Option<usize>,
    revokers: usize,
    tsv: bool,
}

const USAGE: &str = "usage: loadgen --url URL [--url URL ...] [--app-id ID] \
                     --op login|refresh|rotate|register|confirm-send \
                     [--concurrency N[,N...]] [--seconds S] [--requests R] [--history H] \
                     [--revokers N] [--tsv]";

const OPS: [&str; 5] = ["login", "refresh", "rotate", "register", "confirm-send"];

fn parse_args() -> Args {
    let mut args = Args {
        urls: Vec::new(),
        app_id: "sessionkit-dev".into(),
        op: "login".into(),
        concurrency: vec![16],
        seconds: 10,
        history: 0,
        requests: None,
        revokers: 0,
        tsv: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--tsv" {
            args.tsv = true;
            continue;
        }
        let value = it
            .next()
            .unwrap_or_else(|| die(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--url" | "--base-url" => args.urls.push(value.trim_end_matches('/').to_string()),
            "--app-id" => args.app_id = value,
            "--op" => args.op = value,
            "--concurrency" => {
                args.concurrency = value
                    .split(',')
                    .map(|n| n.trim().parse().unwrap_or(0))
                    .collect()
            }
            "--seconds" => {
                args.seconds = value.parse().unwrap_or_else(|_| die("--seconds: a number"))
            }
            "--history" => {
                args.history = value.parse().unwrap_or_else(|_| die("--history: a number"))
            }
            "--revokers" => {
                args.revokers = value
                    .parse()
                    .unwrap_or_else(|_| die("--revokers: a number"))
            }
            "--requests" => {
                args.requests = Some(
                    value
                        .parse()
                        .unwrap_or_else(|_| die("--requests: a number")),
                )
            }
            other => die(&format!("unknown option {other}\n{USAGE}")),
        }
    }
    if args.urls.is_empty() || args.concurrency.contains(&0) || !OPS.contains(&args.op.as_str()) {
        die(USAGE);
    }
    let loopback = ["http://127.", "http://localhost", "http://[::1]"];
    if let Some(url) = args
        .urls
        .iter()
        .find(|u| !loopback.iter().any(|p| u.starts_with(p)))
    {
        die(&format!(
            "loadgen only targets servers on this machine's loopback addresses, not {url}"
        ));
    }
    args
}

fn die(message: &str) -> ! {
    eprintln!("loadgen: {message}");
    std::process::exit(2)
}

/// One POST; the answer's JSON when it is a 2xx carrying `field` as a string (any 2xx when
/// `field` is empty: register and confirm/send answer without a body), else what went wrong, in
/// a short form that failures of one kind share (for the counts).
async fn post(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: Option<Value>,
    field: &str,
) -> Result<Value, String> {
    let mut request = http.post(url).header("Accept", "application/json");
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.map_err(|e| {
        let mut kind = String::from("request failed");
        // reqwest's Display is terse ("error sending request"); the source says why.
        let mut source: Option<&dyn std::error::Error> = Some(&e);
        while let Some(s) = source {
            kind = format!("{kind}: {s}");
            source = s.source();
        }
        kind
    })?;
    let status = response.status();
    let doc: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() || (!field.is_empty() && !doc[field].is_string()) {
        // The error code and message, not the whole body: one line per kind of failure.
        let what = match (doc["error_code"].as_str(), doc["error"].as_str()) {
            (Some(code), Some(msg)) => format!("{code}: {msg}"),
            (None, Some(msg)) => msg.to_string(),
            _ if status.is_success() => format!("no {field} in {doc}"),
            _ => doc.to_string(),
        };
        return Err(format!("HTTP {status}: {what}"));
    }
    Ok(doc)
}

/// `DELETE auth/sessions?scope=other_devices` with `token` (#25): 200 `{"revoked"}`.
async fn revoke_other_devices(
    http: &reqwest::Client,
    base: &str,
    token: &str,
) -> Result<(), String> {
    let response = http
        .delete(format!(
            "{base}/api/client/v2.0/auth/sessions?scope=other_devices"
        ))
        .bearer_auth(token)
        .send()
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = response.status();
    let doc: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() || !doc["revoked"].is_u64() {
        return Err(format!("HTTP {status}: {doc}"));
    }
    Ok(())
}

/// A worker's view of the servers: its requests go to each base URL in turn.
struct Targets {
    login: Vec<String>,
    refresh: Vec<String>,
    register: Vec<String>,
    confirm_send: Vec<String>,
    next: usize,
}

impl Targets {
    fn new(urls: &[String], app_id: &str, worker: usize) -> Targets {
        Targets {
            login: urls
                .iter()
                .map(|u| format!("{u}/api/client/v2.0/app/{app_id}/auth/providers/anon-user/login"))
                .collect(),
            refresh: urls
                .iter()
                .map(|u| format!("{u}/api/client/v2.0/auth/session"))
                .collect(),
            register: urls
                .iter()
                .map(|u| format!("{u}/api/client/v2.0/app/{app_id}/auth/providers/local-userpass/register"))
                .collect(),
            confirm_send: urls
                .iter()
                .map(|u| format!("{u}/api/client/v2.0/app/{app_id}/auth/providers/local-userpass/confirm/send"))
                .collect(),
            next: worker,
        }
    }

    /// The index of the instance for the next request.
    fn advance(&mut self) -> usize {
        let i = self.next % self.login.len();
        self.next = self.next.wrapping_add(1);
        i
    }

    async fn login(&mut self, http: &reqwest::Client) -> Result<String, String> {
        let i = self.advance();
        let doc = post(http, &self.login[i], None, Some(json!({})), "refresh_token").await?;
        Ok(doc["refresh_token"].as_str().unwrap().to_string())
    }

    /// Registers `email` (201, no body).
    async fn register(&mut self, http: &reqwest::Client, email: &str) -> Result<(), String> {
        let i = self.advance();
        let body = json!({"email": email, "password": "bench-password"});
        post(http, &self.register[i], None, Some(body), "").await?;
        Ok(())
    }

    /// Asks for `email`'s confirmation mail again (204, no body): one mail queued.
    async fn confirm_send(&mut self, http: &reqwest::Client, email: &str) -> Result<(), String> {
        let i = self.advance();
        let body = json!({ "email": email });
        post(http, &self.confirm_send[i], None, Some(body), "").await?;
        Ok(())
    }

    /// A refresh with `token`; the new refresh token when `rotate`.
    async fn refresh(
        &mut self,
        http: &reqwest::Client,
        token: &str,
        rotate: bool,
    ) -> Result<Option<String>, String> {
        let i = self.advance();
        let field = if rotate {
            "refresh_token"
        } else {
            "access_token"
        };
        let doc = post(http, &self.refresh[i], Some(token), None, field).await?;
        Ok(rotate.then(|| doc["refresh_token"].as_str().unwrap().to_string()))
    }
}

/// What one worker did during one run.
#[derive(Default)]
struct Outcome {
    latencies: Vec<Duration>,
    errors: usize,
}

/// Busy and total jiffies of each CPU (`cpuN` lines of /proc/stat).
fn cpu_times() -> Vec<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let f: Vec<u64> = l
                .split_whitespace()
                .skip(1)
                .map(|v| v.parse().unwrap_or(0))
                .collect();
            let at = |i: usize| f.get(i).copied().unwrap_or(0);
            // user nice system idle iowait irq softirq steal
            let busy = at(0) + at(1) + at(2) + at(5) + at(6) + at(7);
            (busy, busy + at(3) + at(4))
        })
        .collect()
}

/// `95/97`: the percentage of each CPU's time spent busy between two samples.
fn cpu_busy(before: &[(u64, u64)], after: &[(u64, u64)]) -> String {
    if before.is_empty() || before.len() != after.len() {
        return "?".into();
    }
    before
        .iter()
        .zip(after)
        .map(|((b0, t0), (b1, t1))| match t1.saturating_sub(*t0) {
            0 => "?".to_string(),
            t => format!("{}", (100 * b1.saturating_sub(*b0) + t / 2) / t),
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let workers_needed = *args.concurrency.iter().max().unwrap();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(workers_needed)
        .build()
        .unwrap();
    let history = args.history;
    // Every worker logs in (and builds its history) before the first run; every run starts
    // when all workers and main have reached the barrier.
    let ready = Arc::new(tokio::sync::Barrier::new(workers_needed + 1));
    let (done, mut outcomes) = tokio::sync::mpsc::unbounded_channel::<Outcome>();
    let failures: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let seconds = args.seconds;
    let levels = args.concurrency.clone();
    // Requests left in the current level with --requests (reset by main before each level).
    let left = Arc::new(std::sync::atomic::AtomicUsize::new(usize::MAX));
    // Addresses unique to this run: a server's database may outlive one loadgen.
    let run_id = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    // The revokers (#25): logged in before the runs, stopped after the last.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let revocations = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut revokers = Vec::new();
    for r in 0..args.revokers {
        let mut targets = Targets::new(&args.urls, &args.app_id, r);
        let base = args.urls[r % args.urls.len()].clone();
        let (http, stop, revocations, failures) = (
            http.clone(),
            stop.clone(),
            revocations.clone(),
            failures.clone(),
        );
        let token = targets
            .login(&http)
            .await
            .unwrap_or_else(|e| die(&format!("a revoker logging in before the run: {e}")));
        revokers.push(tokio::spawn(async move {
            use std::sync::atomic::Ordering::SeqCst;
            while !stop.load(SeqCst) {
                match revoke_other_devices(&http, &base, &token).await {
                    Ok(()) => {
                        revocations.fetch_add(1, SeqCst);
                    }
                    Err(kind) => {
                        *failures
                            .lock()
                            .unwrap()
                            .entry(format!("revoker: {kind}"))
                            .or_default() += 1;
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        }));
    }
    let revokers_since = Instant::now();
    for w in 0..workers_needed {
        let (http, op, ready, failures, done, levels, left) = (
            http.clone(),
            args.op.clone(),
            ready.clone(),
            failures.clone(),
            done.clone(),
            levels.clone(),
            left.clone(),
        );
        let mut targets = Targets::new(&args.urls, &args.app_id, w);
        let email_base = format!("lg{run_id}-w{w}");
        tokio::spawn(async move {
            let rotate = op == "rotate";
            let mut registered = 0usize;
            let mailbox = format!("{email_base}@bench.example");
            if op == "confirm-send" {
                targets
                    .register(&http, &mailbox)
                    .await
                    .unwrap_or_else(|e| die(&format!("registering before the run: {e}")));
            }
            let mut refresh_token = if ["login", "register", "confirm-send"].contains(&op.as_str())
            {
                None
            } else {
                let token = targets
                    .login(&http)
                    .await
                    .unwrap_or_else(|e| die(&format!("logging in before the run: {e}")));
                Some(token)
            };
            if rotate {
                for n in 0..history {
                    let token = refresh_token.as_deref().unwrap();
                    let next = targets
                        .refresh(&http, token, true)
                        .await
                        .unwrap_or_else(|e| {
                            die(&format!("rotation {n} of the history before the run: {e}"))
                        });
                    refresh_token = next;
                }
                if history > 0 {
                    tokio::time::sleep(Duration::from_secs(11)).await;
                    let token = refresh_token.as_deref().unwrap();
                    refresh_token = targets
                        .refresh(&http, token, true)
                        .await
                        .unwrap_or_else(|e| die(&format!("the rotation after the history: {e}")));
                }
            }
            for level in levels {
                ready.wait().await;
                if w >= level {
                    continue;
                }
                let deadline = Instant::now() + Duration::from_secs(seconds);
                let mut outcome = Outcome::default();
                while Instant::now() < deadline {
                    // Claims one of the --requests; given back if the request fails.
                    use std::sync::atomic::Ordering::SeqCst;
                    if left
                        .fetch_update(SeqCst, SeqCst, |n| n.checked_sub(1))
                        .is_err()
                    {
                        break;
                    }
                    let start = Instant::now();
                    let result = match (op.as_str(), refresh_token.as_deref()) {
                        ("register", _) => {
                            registered += 1;
                            let email = format!("{email_base}-{registered}@bench.example");
                            targets.register(&http, &email).await
                        }
                        ("confirm-send", _) => targets.confirm_send(&http, &mailbox).await,
                        (_, Some(token)) => {
                            targets.refresh(&http, token, rotate).await.map(|next| {
                                if let Some(next) = next {
                                    refresh_token = Some(next);
                                }
                            })
                        }
                        (_, None) => targets.login(&http).await.map(|_| ()),
                    };
                    match result {
                        Ok(()) => outcome.latencies.push(start.elapsed()),
                        Err(kind) => {
                            left.fetch_add(1, SeqCst);
                            outcome.errors += 1;
                            let key = format!("{level} concurrent: {kind}");
                            *failures.lock().unwrap().entry(key).or_default() += 1;
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            if refresh_token.is_some() && Instant::now() < deadline {
                                // A new session: the old one may be spent or revoked. If this
                                // login fails too, the next refresh fails and tries again.
                                match targets.login(&http).await {
                                    Ok(token) => refresh_token = Some(token),
                                    Err(kind) => {
                                        outcome.errors += 1;
                                        let key = format!("{level} concurrent: {kind}");
                                        *failures.lock().unwrap().entry(key).or_default() += 1;
                                    }
                                }
                            }
                        }
                    }
                }
                let _ = done.send(outcome);
            }
        });
    }
    let mut total_errors = 0;
    for &level in &args.concurrency {
        left.store(
            args.requests.unwrap_or(usize::MAX),
            std::sync::atomic::Ordering::SeqCst,
        );
        ready.wait().await;
        let cpu_before = cpu_times();
        let begin = Instant::now();
        let mut all = Vec::new();
        let mut errors = 0;
        for _ in 0..level {
            let outcome = outcomes.recv().await.expect("a worker ended early");
            all.extend(outcome.latencies);
            errors += outcome.errors;
        }
        let elapsed = begin.elapsed().as_secs_f64();
        let busy = cpu_busy(&cpu_before, &cpu_times());
        total_errors += errors;
        all.sort();
        let ms = |d: &Duration| d.as_secs_f64() * 1e3;
        let pct = |p: f64| {
            all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
                .map_or(f64::NAN, ms)
        };
        let (p50, p99, max) = (pct(0.50), pct(0.99), all.last().map_or(f64::NAN, ms));
        let rate = all.len() as f64 / elapsed;
        let line = format!(
            "{}{}: {} requests in {elapsed:.1} s = {rate:.0} req/s; latency p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms ({level} concurrent{}; CPUs busy {busy} %){}",
            args.op,
            if args.op == "rotate" {
                format!(" (after {history} rotations per session)")
            } else {
                String::new()
            },
            all.len(),
            if args.urls.len() > 1 {
                format!(", {} instances", args.urls.len())
            } else {
                String::new()
            },
            if errors > 0 {
                format!("; {errors} FAILED requests")
            } else {
                String::new()
            },
        );
        if args.tsv {
            eprintln!("{line}");
            println!(
                "{level}\t{}\t{errors}\t{elapsed:.2}\t{rate:.0}\t{p50:.2}\t{p99:.2}\t{max:.2}\t{busy}",
                all.len()
            );
        } else {
            println!("{line}");
        }
    }
    if !revokers.is_empty() {
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        for r in revokers {
            let _ = r.await;
        }
        let n = revocations.load(std::sync::atomic::Ordering::SeqCst);
        let secs = revokers_since.elapsed().as_secs_f64();
        eprintln!(
            "loadgen: {} revokers sent {n} revocations ({:.0}/s over {secs:.1} s)",
            args.revokers,
            n as f64 / secs
        );
        let failed: usize = failures
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("revoker"))
            .map(|(_, c)| *c)
            .sum();
        total_errors += failed;
    }
    if total_errors > 0 {
        for (kind, count) in failures.lock().unwrap().iter() {
            eprintln!("loadgen: failed {count} times at {kind}");
        }
        std::process::exit(1);
    }
}
