//! The audit log (#26, SERVER.md "Audit log"): a scripted flow (registration, confirmation,
//! logins, a wrong password, refreshes, a reused refresh token, logouts, the user's own
//! revocations, API keys, an admin's disable, enable, revocation and deletion, a password
//! reset, a rate limit) writes exactly the expected events, in order, with who, from where and
//! about whom; filters and pages; retention; no token, password, code or hash in any event.
//! Both back ends (`SESSIONKIT_TEST_POSTGRES`).

mod common;

use common::*;
use serde_json::{Value, json};

/// Every event of `app`, oldest first, through the admin API (pages of `page`).
async fn events(t: &T, app: &str, query: &str, page: usize) -> Vec<Value> {
    let admin = t.admin().await;
    let mut out = Vec::new();
    let mut after: Option<i64> = None;
    loop {
        let mut q = format!("{query}&limit={page}");
        if let Some(a) = after {
            q.push_str(&format!("&after={a}"));
        }
        let r = t
            .get(&format!("{}/events?{q}", adm(app)), Some(&admin))
            .await;
        let doc = r.ok(200).clone();
        out.extend(doc["events"].as_array().unwrap().iter().cloned());
        match doc["next_after"].as_i64() {
            Some(n) => after = Some(n),
            None => return out,
        }
    }
}

fn kinds(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn a_scripted_flow_writes_exactly_its_events_in_order() {
    let t = start().await;
    let app = "test-app";
    // Registration and confirmation (through the outbox), then a login and a wrong password.
    t.confirmed_user("eve@example.com", "eve-password-1").await;
    let eve = t
        .login(
            app,
            "local-userpass",
            json!({"username": "eve@example.com", "password": "eve-password-1"}),
        )
        .await;
    let eve_id = eve["user_id"].as_str().unwrap().to_string();
    let eve_rt = eve["refresh_token"].as_str().unwrap().to_string();
    t.post(
        &format!("{}/auth/providers/local-userpass/login", ar(app)),
        json!({"username": "eve@example.com", "password": "not-it"}),
        None,
    )
    .await
    .err(401, "InvalidPassword");
    // A refresh writes nothing; a second device, then "sign out other devices".
    t.refresh(&eve_rt).await.ok(201);
    let other = t
        .login(
            app,
            "local-userpass",
            json!({"username": "eve@example.com", "password": "eve-password-1"}),
        )
        .await;
    t.delete(
        &format!("{BR}/auth/sessions?scope=other_devices"),
        Some(&eve_rt),
    )
    .await
    .ok(200);
    // An API key, disabled, then deleted.
    let keys = format!("{BR}/auth/api_keys");
    let key = t.post(&keys, json!({"name": "ci"}), Some(&eve_rt)).await;
    let key_id = key.ok(201)["_id"].as_str().unwrap().to_string();
    t.put(&format!("{keys}/{key_id}/disable"), None, Some(&eve_rt))
        .await
        .ok(204);
    t.delete(&format!("{keys}/{key_id}"), Some(&eve_rt))
        .await
        .ok(204);
    // This device logs out.
    t.delete("/api/client/v2.0/auth/session", Some(&eve_rt))
        .await;
    // An admin disables, enables, signs out and deletes the user.
    let admin = t.admin().await;
    let user_path = format!("{}/users/{eve_id}", adm(app));
    t.put(&format!("{user_path}/disable"), None, Some(&admin))
        .await
        .ok(204);
    // A disabled user's login is refused, and its event names the user.
    t.post(
        &format!("{}/auth/providers/local-userpass/login", ar(app)),
        json!({"username": "eve@example.com", "password": "eve-password-1"}),
        None,
    )
    .await
    .err(401, "UserDisabled");
    t.put(&format!("{user_path}/enable"), None, Some(&admin))
        .await
        .ok(204);
    t.put(&format!("{user_path}/logout"), None, Some(&admin))
        .await
        .ok(204);
    t.delete(&user_path, Some(&admin)).await.ok(204);

    let all = events(&t, app, "", 3).await;
    assert_eq!(
        kinds(&all),
        [
            "registered",
            "confirmed",
            "login",
            "login_failed",
            "login",
            "sessions_revoked",
            "api_key_created",
            "api_key_disabled",
            "api_key_deleted",
            "sessions_revoked",
            "user_disabled",
            "login_failed",
            "user_enabled",
            "sessions_revoked",
            "user_deleted",
        ],
        "{all:#?}"
    );
    let seqs: Vec<i64> = all.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let by_kind = |k: &str, n: usize| all.iter().filter(|e| e["kind"] == k).nth(n).unwrap();
    for e in &all {
        assert_eq!(e["app_id"], app);
        assert_eq!(e["ip"], "127.0.0.1", "{e}");
        assert!(e["at"].as_i64().unwrap() > 1_700_000_000, "{e}");
    }
    assert_eq!(by_kind("registered", 0)["actor"], "user");
    // The account's user is made at its first login: a confirmation has none yet.
    assert!(by_kind("confirmed", 0)["user_id"].is_null());
    let login = by_kind("login", 0);
    assert_eq!(login["user_id"], eve_id.as_str());
    assert_eq!(login["detail"]["provider"], "local-userpass");
    assert!(login["session_id"].as_str().unwrap().len() == 24, "{login}");
    let failed = by_kind("login_failed", 0);
    assert_eq!(
        failed["detail"],
        json!({"provider": "local-userpass", "error": "InvalidPassword"})
    );
    assert!(failed["user_id"].is_null());
    let refused = by_kind("login_failed", 1);
    assert_eq!(refused["user_id"], eve_id.as_str());
    assert_eq!(refused["detail"]["error"], "UserDisabled");
    let others = by_kind("sessions_revoked", 0);
    assert_eq!(
        others["detail"],
        json!({"scope": "other_devices", "count": 1})
    );
    assert_eq!(others["actor"], "user");
    assert_eq!(by_kind("api_key_created", 0)["detail"]["name"], "ci");
    assert_eq!(
        by_kind("api_key_deleted", 0)["detail"]["key_id"],
        key_id.as_str()
    );
    assert_eq!(
        by_kind("sessions_revoked", 1)["detail"],
        json!({"scope": "this_device", "count": 1})
    );
    assert_eq!(by_kind("user_disabled", 0)["actor"], "admin");
    let by_admin = by_kind("sessions_revoked", 2);
    assert_eq!(by_admin["actor"], "admin");
    assert_eq!(by_admin["detail"]["scope"], "all");
    assert_eq!(by_kind("user_deleted", 0)["actor"], "admin");

    // Filters: by user, by kind, by time.
    let eves = events(&t, app, &format!("user_id={eve_id}"), 100).await;
    assert_eq!(
        eves.len(),
        all.len() - 3,
        "all but registered, confirmed and login_failed"
    );
    let failures = events(&t, app, "kind=login_failed,user_deleted", 100).await;
    assert_eq!(
        kinds(&failures),
        ["login_failed", "login_failed", "user_deleted"]
    );
    let future = t.srv.now() + 10;
    assert!(
        events(&t, app, &format!("since={future}"), 100)
            .await
            .is_empty()
    );
    assert_eq!(
        events(&t, app, &format!("until={future}"), 100).await.len(),
        all.len()
    );
    for bad in [
        "kind=no_such_kind",
        "limit=0",
        "limit=1001",
        "since=soon",
        "color=red",
    ] {
        t.get(&format!("{}/events?{bad}", adm(app)), Some(&admin))
            .await
            .err(400, "BadRequest");
    }
    // Another app's log is its own; a client token reads none.
    assert!(events(&t, "auto-app", "", 100).await.is_empty());
    t.get(
        &format!("{}/events", adm(app)),
        other["access_token"].as_str(),
    )
    .await
    .err(401, "InvalidSession");
    // An admin's account is registered by the admin, with its user from the start.
    let made = t
        .post(
            &format!("{}/users", adm(app)),
            json!({"email": "zed@example.com", "password": "zed-password-1"}),
            Some(&admin),
        )
        .await;
    let zed_id = made.ok(201)["_id"].as_str().unwrap().to_string();
    let zeds = events(&t, app, &format!("user_id={zed_id}"), 100).await;
    assert_eq!(kinds(&zeds), ["registered"]);
    assert_eq!(zeds[0]["actor"], "admin");
    assert_eq!(zeds[0]["detail"], json!({"confirmed": true}));

    // No secret anywhere in the log.
    let text = serde_json::to_string(&all).unwrap();
    for secret in [
        eve_rt.as_str(),
        eve["access_token"].as_str().unwrap(),
        other["refresh_token"].as_str().unwrap(),
        key.body["key"].as_str().unwrap(),
        "eve-password-1",
        "not-it",
        "eve@example.com",
        "$argon2",
    ] {
        assert!(!text.contains(secret), "{secret} in the audit log");
    }
    t.srv.shutdown().await;
}

#[tokio::test]
async fn reuse_reset_and_rate_limits_are_recorded() {
    let toml = CONFIG.replace(
        "rate_limits = { enabled = false }",
        "rate_limits = { logins_per_account_per_hour = 2 }",
    );
    let t = start_with(&toml).await;
    // Rotation: the successor used, the grace window over, the first token again is reuse.
    let anon = t.anon("rot-app").await;
    let first = anon["refresh_token"].as_str().unwrap().to_string();
    let second = t.refresh(&first).await.s("refresh_token");
    t.refresh(&second).await.ok(201);
    t.srv.advance_clock(60);
    t.refresh(&first).await.reason("InvalidSession", "revoked");
    let rot = events(&t, "rot-app", "", 100).await;
    assert_eq!(kinds(&rot), ["login", "refresh_token_reuse"], "{rot:#?}");
    assert_eq!(rot[1]["user_id"], anon["user_id"]);
    assert_eq!(rot[1]["session_id"], rot[0]["session_id"]);

    // A password reset (auto-app resets at once) ends the user's sessions with it.
    let auto = "auto-app";
    let up = |s: &str| format!("{}/auth/providers/local-userpass/{s}", ar(auto));
    t.post(
        &up("register"),
        json!({"email": "r@x.io", "password": "first-pass"}),
        None,
    )
    .await
    .ok(201);
    t.login(
        auto,
        "local-userpass",
        json!({"username": "r@x.io", "password": "first-pass"}),
    )
    .await;
    t.post(
        &up("reset/call"),
        json!({"email": "r@x.io", "password": "second-pass", "arguments": []}),
        None,
    )
    .await
    .ok(204);
    // Then three wrong guesses at the limit of two logins an hour (the login above was the
    // first): the second and third are rate limited.
    for _ in 0..3 {
        t.post(
            &format!("{}/auth/providers/local-userpass/login", ar(auto)),
            json!({"username": "r@x.io", "password": "guess"}),
            None,
        )
        .await;
    }
    let auto_events = events(&t, auto, "", 100).await;
    assert_eq!(
        kinds(&auto_events),
        [
            "registered",
            "login",
            "password_reset",
            "login_failed",
            "rate_limited",
            "rate_limited"
        ],
        "{auto_events:#?}"
    );
    assert_eq!(auto_events[2]["detail"], json!({"sessions_revoked": 1}));
    assert_eq!(
        auto_events[4]["detail"]["route"],
        "/api/client/v2.0/app/{app_id}/auth/providers/{provider}/login"
    );
    t.srv.shutdown().await;
}

#[tokio::test]
async fn events_older_than_the_retention_are_pruned() {
    let toml = CONFIG.replacen("[admin]", "[audit]\nretention_days = 1\n\n[admin]", 1);
    let t = start_with(&toml).await;
    t.anon("test-app").await;
    assert_eq!(events(&t, "test-app", "", 100).await.len(), 1);
    // Moving the clock wakes the sweeper too; the explicit sweep makes sure it ran.
    t.srv.advance_clock(2 * 24 * 3600);
    t.anon("test-app").await;
    t.srv.sweep().await.unwrap();
    let left = events(&t, "test-app", "", 100).await;
    assert_eq!(kinds(&left), ["login"]);
    assert!(left[0]["at"].as_i64().unwrap() >= t.srv.now() - 10);
    t.srv.shutdown().await;
}

#[tokio::test]
async fn with_a_log_target_each_committed_event_is_also_one_json_line() {
    let dir = temp_dir("audit-log");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("audit.jsonl");
    let toml = CONFIG.replacen(
        "[admin]",
        &format!("[audit]\nlog = \"{}\"\n\n[admin]", file.display()),
        1,
    );
    let t = start_with(&toml).await;
    let login = t.anon("test-app").await;
    t.post(
        &format!("{}/auth/providers/local-userpass/login", ar("test-app")),
        json!({"username": "nobody@example.com", "password": "guess-1"}),
        None,
    )
    .await
    .err(401, "InvalidPassword");
    t.delete(
        "/api/client/v2.0/auth/session",
        login["refresh_token"].as_str(),
    )
    .await;
    let stored = events(&t, "test-app", "", 100).await;
    assert_eq!(
        kinds(&stored),
        ["login", "login_failed", "sessions_revoked"],
        "{stored:#?}"
    );
    // Written after each answer: the file has every committed event once (events of other
    // apps too: this server's ES256-free apps have no key events).
    let lines: Vec<Value> = std::fs::read_to_string(&file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let logged: Vec<&Value> = lines.iter().filter(|e| e["app_id"] == "test-app").collect();
    assert_eq!(logged.len(), stored.len(), "{lines:#?}");
    for (l, s) in logged.iter().zip(&stored) {
        assert_eq!(*l, s, "the same event, its seq included");
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    t.srv.shutdown().await;
}
