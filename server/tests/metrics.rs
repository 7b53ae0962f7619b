//! Prometheus metrics (#26, SERVER.md "Metrics"): off by default; behind HTTP Basic credentials
//! of the admin key pair on the server's address, or open on an address of its own; a
//! scripted flow (logins of several providers, a wrong password, refreshes with and without
//! rotation, a reused refresh token, logouts, an admin's revocation, a rate limit) moves
//! exactly the counters it should; no token, password or user id in the exposition. Both back
//! ends (`SESSIONKIT_TEST_POSTGRES`).

mod common;

use base64::Engine;
use common::*;
use serde_json::json;

fn with_metrics(table: &str) -> String {
    // [metrics] is a top-level table: written before the first [[app]].
    CONFIG.replacen("[admin]", &format!("{table}\n\n[admin]"), 1)
}

/// GET /metrics with `auth` as the Authorization header: status, content type, text.
async fn scrape(base: &str, auth: Option<&str>) -> (u16, String, String) {
    let mut req = reqwest::Client::new().get(format!("{base}/metrics"));
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

fn basic(user: &str, password: &str) -> String {
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

async fn exposition(t: &T) -> String {
    let (status, ct, text) = scrape(&t.base, Some(&basic("admin-pub", "admin-priv"))).await;
    assert_eq!(status, 200, "{text}");
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    text
}

/// The value of sample `name` whose labels include every `labels` pair (0 when absent: a
/// family's label set appears at its first count).
#[track_caller]
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let mut found = None;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        let (series_name, series_labels) = match series.split_once('{') {
            Some((n, rest)) => (n, rest.trim_end_matches('}')),
            None => (series, ""),
        };
        if series_name != name {
            continue;
        }
        let pairs: Vec<&str> = series_labels.split(',').collect();
        if labels
            .iter()
            .all(|(k, v)| pairs.contains(&format!("{k}=\"{v}\"").as_str()))
        {
            assert!(found.is_none(), "{name} {labels:?} matches twice:\n{text}");
            found = Some(value.parse::<f64>().unwrap());
        }
    }
    found.unwrap_or(0.0)
}

#[tokio::test]
async fn off_by_default_and_behind_the_admin_key_pair_when_on() {
    let off = start().await;
    let (status, _, _) = scrape(&off.base, Some(&basic("admin-pub", "admin-priv"))).await;
    assert_eq!(status, 404);
    off.srv.shutdown().await;

    let t = start_with(&with_metrics("[metrics]\nenabled = true")).await;
    for auth in [
        None,
        Some(basic("admin-pub", "wrong")),
        Some(basic("admin-pub", "admin-priv").replace("Basic", "Bearer")),
        Some("Basic !!!".to_string()),
    ] {
        let (status, _, text) = scrape(&t.base, auth.as_deref()).await;
        assert_eq!(status, 401, "{auth:?}: {text}");
        assert!(text.contains("admin public key"), "{text}");
        assert!(!text.contains("admin-priv"), "{text}");
    }
    let text = exposition(&t).await;
    // The families without labels are there from the start; a labelled one appears with its
    // first count (the scrapes above counted requests).
    for family in [
        "sessionkit_http_requests",
        "sessionkit_http_request_duration_seconds",
        "sessionkit_mail_queue",
        "sessionkit_password_hash_queue",
        "sessionkit_database_writes",
        "sessionkit_process_resident_memory_bytes",
        "sessionkit_process_cpu_seconds",
        "sessionkit_process_open_fds",
        "sessionkit_process_start_time_seconds",
    ] {
        assert!(
            text.contains(&format!("# HELP {family} ")),
            "{family}:\n{text}"
        );
    }
    assert!(sample(&text, "sessionkit_process_resident_memory_bytes", &[]) > 1e6);
    assert!(sample(&text, "sessionkit_process_open_fds", &[]) > 0.0);
    t.srv.shutdown().await;
}

#[tokio::test]
async fn a_scripted_flow_moves_exactly_its_counters() {
    let t = start_with(&with_metrics("[metrics]\nenabled = true")).await;
    let login = |provider: &str, outcome: &str| {
        [("provider", provider), ("outcome", outcome)]
            .map(|(k, v)| (k, v.to_string()))
            .to_vec()
    };
    let count = |text: &str, name: &str, labels: &[(&str, String)]| {
        let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        sample(text, name, &l)
    };

    t.confirmed_user("ann@example.com", "ann-password-1").await;
    let ann = t
        .login(
            "test-app",
            "local-userpass",
            json!({"username": "ann@example.com", "password": "ann-password-1"}),
        )
        .await;
    let wrong = t
        .post(
            &format!("{}/auth/providers/local-userpass/login", ar("test-app")),
            json!({"username": "ann@example.com", "password": "not-it"}),
            None,
        )
        .await;
    wrong.err(401, "InvalidPassword");
    let made_up = t
        .post(
            &format!("{}/auth/providers/no-such-provider/login", ar("test-app")),
            json!({}),
            None,
        )
        .await;
    assert!(made_up.status >= 400, "{made_up:?}");
    let anon = t.anon("test-app").await;
    t.refresh(ann["refresh_token"].as_str().unwrap())
        .await
        .ok(201);
    // Rotation on: a refresh rotates; its parent presented again after the successor was
    // used and the grace window is over is reuse, which revokes the session.
    let rot = t.anon("rot-app").await;
    let first = rot["refresh_token"].as_str().unwrap().to_string();
    let second = t.refresh(&first).await.ok(201)["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    t.refresh(&second).await.ok(201);
    t.srv.advance_clock(60);
    t.refresh(&first).await.reason("InvalidSession", "revoked");
    t.delete(
        "/api/client/v2.0/auth/session",
        Some(anon["refresh_token"].as_str().unwrap()),
    )
    .await;
    let admin = t.admin().await;
    t.put(
        &format!(
            "{}/users/{}/logout",
            adm("test-app"),
            ann["user_id"].as_str().unwrap()
        ),
        None,
        Some(&admin),
    )
    .await
    .ok(204);

    let text = exposition(&t).await;
    let logins = "sessionkit_logins_total";
    assert_eq!(
        count(&text, logins, &login("local-userpass", "success")),
        1.0
    );
    assert_eq!(
        count(&text, logins, &login("local-userpass", "InvalidPassword")),
        1.0
    );
    assert_eq!(count(&text, logins, &login("anon-user", "success")), 2.0);
    assert_eq!(count(&text, logins, &login("unknown", "success")), 0.0);
    assert_eq!(
        sample(&text, logins, &[("provider", "no-such-provider")]),
        0.0,
        "a made-up provider is no label value"
    );
    assert!(sample(&text, logins, &[("provider", "unknown")]) >= 1.0);
    let refreshes = "sessionkit_refreshes_total";
    assert_eq!(
        sample(
            &text,
            refreshes,
            &[("rotated", "false"), ("outcome", "success")]
        ),
        1.0
    );
    assert_eq!(
        sample(
            &text,
            refreshes,
            &[("rotated", "true"), ("outcome", "success")]
        ),
        2.0
    );
    assert_eq!(
        sample(&text, refreshes, &[("outcome", "InvalidSession")]),
        1.0
    );
    let revocations = "sessionkit_revocations_total";
    assert_eq!(sample(&text, revocations, &[("by", "reuse")]), 1.0);
    assert_eq!(sample(&text, revocations, &[("by", "logout")]), 1.0);
    assert_eq!(sample(&text, revocations, &[("by", "admin")]), 1.0);
    let requests = "sessionkit_http_requests_total";
    assert_eq!(
        sample(
            &text,
            requests,
            &[
                ("route", "/api/client/v2.0/auth/session"),
                ("method", "POST"),
                ("status", "201")
            ]
        ),
        3.0
    );
    assert_eq!(
        sample(
            &text,
            "sessionkit_http_request_duration_seconds_count",
            &[
                ("route", "/api/client/v2.0/auth/session"),
                ("method", "POST")
            ]
        ),
        4.0
    );
    // Each store operation is timed under its name, on either back end: five uses of a
    // refresh token (three refreshes, the reuse, the logout) and three sessions started.
    let operations = "sessionkit_database_operation_duration_seconds_count";
    assert_eq!(
        sample(&text, operations, &[("operation", "use_refresh_token")]),
        5.0
    );
    assert_eq!(sample(&text, operations, &[("operation", "login")]), 3.0);
    assert!(sample(&text, operations, &[("operation", "revoke_sessions")]) >= 1.0);
    assert!(
        !text.contains("sessionkit_database_failures_total{"),
        "no operation failed:\n{text}"
    );
    let connections = "sessionkit_database_connections";
    let in_use = sample(&text, connections, &[("state", "in_use")]);
    let idle = sample(&text, connections, &[("state", "idle")]);
    let max = sample(&text, "sessionkit_database_connections_max", &[]);
    assert!(
        max >= 1.0 && in_use + idle >= 1.0 && in_use + idle <= max,
        "{text}"
    );
    // Raw paths are no label values: ids in paths stay out.
    assert!(
        text.contains(
            "route=\"/api/admin/v3.0/groups/{group_id}/apps/{app_id}/users/{user_id}/logout\""
        ),
        "{text}"
    );
    // No secret and no id of a user or session.
    for secret in [
        ann["refresh_token"].as_str().unwrap(),
        ann["access_token"].as_str().unwrap(),
        ann["user_id"].as_str().unwrap(),
        &first,
        &second,
        "ann-password-1",
        "not-it",
        "ann@example.com",
        "admin-priv",
    ] {
        assert!(!text.contains(secret), "{secret} in the exposition");
    }
    t.srv.shutdown().await;
}

#[tokio::test]
async fn rate_limited_requests_are_counted_by_route() {
    let toml = with_metrics("[metrics]\nenabled = true").replace(
        "rate_limits = { enabled = false }",
        "rate_limits = { logins_per_account_per_hour = 2 }",
    );
    let t = start_with(&toml).await;
    let path = format!("{}/auth/providers/local-userpass/login", ar("test-app"));
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = t
            .post(
                &path,
                json!({"username": "nobody@example.com", "password": "x-password"}),
                None,
            )
            .await;
        statuses.push(r.status);
    }
    let limited = statuses.iter().filter(|s| **s == 429).count() as f64;
    assert!(limited >= 1.0, "{statuses:?}");
    let text = exposition(&t).await;
    assert_eq!(
        sample(
            &text,
            "sessionkit_rate_limited_requests_total",
            &[(
                "route",
                "/api/client/v2.0/app/{app_id}/auth/providers/{provider}/login"
            )]
        ),
        limited
    );
    t.srv.shutdown().await;
}

#[tokio::test]
async fn an_address_of_its_own_needs_no_credentials_and_the_main_one_has_none() {
    let t = start_with(&with_metrics(
        "[metrics]\nenabled = true\nlisten = \"127.0.0.1:0\"",
    ))
    .await;
    let addr = t.srv.metrics_addr().expect("a metrics address");
    assert_ne!(addr, t.srv.local_addr());
    t.anon("test-app").await;
    let (status, _, text) = scrape(&format!("http://{addr}"), None).await;
    assert_eq!(status, 200, "{text}");
    assert_eq!(
        sample(
            &text,
            "sessionkit_logins_total",
            &[("provider", "anon-user"), ("outcome", "success")]
        ),
        1.0
    );
    let (status, _, _) = scrape(&t.base, Some(&basic("admin-pub", "admin-priv"))).await;
    assert_eq!(status, 404);
    t.srv.shutdown().await;
}

#[tokio::test]
async fn metrics_on_the_main_address_without_an_admin_key_pair_stop_the_start() {
    let toml = with_metrics("[metrics]\nenabled = true").replace(
        "[admin]\npublic_key = \"admin-pub\"\nprivate_key = \"admin-priv\"\n",
        "",
    );
    let mut config = sessionkit_server::Config::from_toml_str(&toml).unwrap();
    config.data_dir = temp_dir("metrics-no-admin");
    let err = sessionkit_server::RunningServer::start(config)
        .await
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("metrics") && text.contains("[admin]"),
        "{text}"
    );
}

/// Settings of `[metrics]` and `[audit]` that cannot work are refused with what to write; a
/// busy metrics address is named as `[metrics] listen`.
#[tokio::test]
async fn settings_that_cannot_work_are_refused_with_what_to_write() {
    let refused = |table: &str| {
        sessionkit_server::Config::from_toml_str(&with_metrics(table))
            .err()
            .unwrap_or_else(|| panic!("{table} was accepted"))
            .to_string()
    };
    let e = refused("[metrics]\nlisten = \"127.0.0.1:9464\"");
    assert!(
        e.contains("metrics.listen") && e.contains("enabled = true"),
        "{e}"
    );
    let e = refused("[audit]\nlog = \"\"");
    assert!(
        e.contains("audit.log") && e.contains("stdout, stderr or a file path"),
        "{e}"
    );
    // The server's own address again: another port, it says.
    let toml = with_metrics("[metrics]\nenabled = true\nlisten = \"127.0.0.1:9464\"").replacen(
        "listen = \"127.0.0.1:0\"",
        "listen = \"127.0.0.1:9464\"",
        1,
    );
    let e = sessionkit_server::Config::from_toml_str(&toml)
        .expect_err("refused")
        .to_string();
    assert!(e.contains("another port"), "{e}");
    // A metrics address in use: named as such.
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let e = refused_at_start(&format!(
        "[metrics]\nenabled = true\nlisten = \"127.0.0.1:{port}\""
    ))
    .await;
    assert!(
        e.contains("[metrics] listen") && e.contains(&port.to_string()),
        "{e}"
    );
    // A missing directory for the log file says what the target may be.
    let e = refused_at_start("[audit]\nlog = \"/nonexistent-dir/audit.jsonl\"").await;
    assert!(
        e.contains("/nonexistent-dir/audit.jsonl") && e.contains("SESSIONKIT_AUDIT_LOG"),
        "{e}"
    );
}

/// The error of a server started with `table` added to the standard config.
async fn refused_at_start(table: &str) -> String {
    let mut config = sessionkit_server::Config::from_toml_str(&with_metrics(table)).unwrap();
    config.data_dir = temp_dir("refused");
    match sessionkit_server::RunningServer::start(config).await {
        Ok(_) => panic!("{table}: the server started"),
        Err(e) => e.to_string(),
    }
}
