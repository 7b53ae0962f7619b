//! A load generator for sessionkit-server, run as its own process against a server on loopback.
//!
//! `loadgen --base-url URL --app-id ID --op login|refresh|rotate [--concurrency N] [--seconds S]
//! [--history H]`
//!
//! `login`: anonymous logins. `refresh`: each worker first logs in one anonymous user, then
//! refreshes its access token in a loop. `rotate`: the same against an app with refresh-token
//! rotation, each refresh presenting the token the previous one answered; `--history H` first
//! rotates each session H times unmeasured, so that sessions with a long past are measured. Every request is checked (2xx and the expected field).
//! The loop is bounded by time and stops by itself. Prints requests per second and the p50, p99
//! and max latencies.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

struct Args {
    base_url: String,
    app_id: String,
    op: String,
    concurrency: usize,
    seconds: u64,
    history: usize,
}

fn parse_args() -> Args {
    let mut args = Args {
        base_url: String::new(),
        app_id: "sessionkit-dev".into(),
        op: "login".into(),
        concurrency: 16,
        seconds: 10,
        history: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .unwrap_or_else(|| die(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--base-url" => args.base_url = value,
            "--app-id" => args.app_id = value,
            "--op" => args.op = value,
            "--concurrency" => {
                args.concurrency = value
                    .parse()
                    .unwrap_or_else(|_| die("--concurrency: a number"))
            }
            "--seconds" => {
                args.seconds = value.parse().unwrap_or_else(|_| die("--seconds: a number"))
            }
            "--history" => {
                args.history = value.parse().unwrap_or_else(|_| die("--history: a number"))
            }
            other => die(&format!("unknown option {other}")),
        }
    }
    if args.base_url.is_empty() || !["login", "refresh", "rotate"].contains(&args.op.as_str()) {
        die(
            "usage: loadgen --base-url URL [--app-id ID] --op login|refresh|rotate [--concurrency N] [--seconds S] [--history H]",
        );
    }
    let loopback = ["http://127.", "http://localhost", "http://[::1]"];
    if !loopback.iter().any(|p| args.base_url.starts_with(p)) {
        die("loadgen only targets a server on this machine's loopback addresses");
    }
    args
}

fn die(message: &str) -> ! {
    eprintln!("loadgen: {message}");
    std::process::exit(2)
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    bearer: Option<&str>,
    body: Option<Value>,
    field: &str,
) -> Value {
    let mut request = http.post(url).header("Accept", "application/json");
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|e| die(&format!("request failed: {e}")));
    let status = response.status();
    let doc: Value = response.json().await.unwrap_or(Value::Null);
    if !status.is_success() || !doc[field].is_string() {
        die(&format!("unexpected answer {status}: {doc}"));
    }
    doc
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(args.concurrency)
        .build()
        .unwrap();
    let login_url = format!(
        "{}/api/client/v2.0/app/{}/auth/providers/anon-user/login",
        args.base_url, args.app_id
    );
    let refresh_url = format!("{}/api/client/v2.0/auth/session", args.base_url);
    let history = args.history;
    // Every worker logs in (and builds its history) before the clock starts.
    let ready = std::sync::Arc::new(tokio::sync::Barrier::new(args.concurrency + 1));
    let seconds = args.seconds;
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (http, login_url, refresh_url, op, ready) = (
                http.clone(),
                login_url.clone(),
                refresh_url.clone(),
                args.op.clone(),
                ready.clone(),
            );
            tokio::spawn(async move {
                let mut refresh_token = if op == "login" {
                    None
                } else {
                    let doc = post(&http, &login_url, None, Some(json!({})), "refresh_token").await;
                    Some(doc["refresh_token"].as_str().unwrap().to_string())
                };
                let rotate = op == "rotate";
                if rotate {
                    for _ in 0..history {
                        let token = refresh_token.as_deref().unwrap();
                        let doc =
                            post(&http, &refresh_url, Some(token), None, "refresh_token").await;
                        refresh_token = Some(doc["refresh_token"].as_str().unwrap().to_string());
                    }
                }
                ready.wait().await;
                let deadline = Instant::now() + Duration::from_secs(seconds);
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let start = Instant::now();
                    match refresh_token.as_deref() {
                        Some(token) if rotate => {
                            let doc =
                                post(&http, &refresh_url, Some(token), None, "refresh_token").await;
                            refresh_token =
                                Some(doc["refresh_token"].as_str().unwrap().to_string());
                        }
                        Some(token) => {
                            post(&http, &refresh_url, Some(token), None, "access_token").await;
                        }
                        None => {
                            post(&http, &login_url, None, Some(json!({})), "access_token").await;
                        }
                    };
                    latencies.push(start.elapsed());
                }
                latencies
            })
        })
        .collect();
    ready.wait().await;
    let begin = Instant::now();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.unwrap());
    }
    let elapsed = begin.elapsed().as_secs_f64();
    all.sort();
    let pct =
        |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1e3;
    println!(
        "{}{}: {} requests in {elapsed:.1} s = {:.0} req/s; latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} concurrent)",
        args.op,
        if args.op == "rotate" {
            format!(" (after {history} rotations per session)")
        } else {
            String::new()
        },
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50),
        pct(0.99),
        all.last().unwrap().as_secs_f64() * 1e3,
        args.concurrency
    );
}
