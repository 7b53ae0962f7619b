//! Tokens and sessions (expiry, logout, rotation, inactivity, reasons) and the admin API.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("no {k} in {v}"))
        .to_string()
}

#[tokio::test]
async fn refresh_and_wrong_tokens() {
    let t = start().await;
    let u = t
        .login("test-app", "custom-function", json!({"username": "r"}))
        .await;
    let (at, rt) = (s(&u, "access_token"), s(&u, "refresh_token"));
    let r = t.refresh(&rt).await;
    let new_at = r.ok(201)["access_token"].as_str().unwrap().to_string();
    assert!(
        r.body.get("refresh_token").is_none(),
        "no rotation by default"
    );
    let c = claims(&new_at);
    assert_eq!(c["sub"], u["user_id"]);
    assert_eq!(c["baas_device_id"], u["device_id"]);
    assert_eq!(t.srv.request_count("refresh"), 1);
    // An access token is not a refresh token, and vice versa.
    t.refresh(&at).await.err(401, "InvalidSession");
    t.get(&format!("{BR}/auth/profile"), Some(&rt))
        .await
        .err(401, "InvalidSession");
    // Forged: right shape, wrong signature.
    let mut parts: Vec<&str> = rt.split('.').collect();
    let forged_sig = "AAAA".repeat(10);
    parts[2] = &forged_sig;
    t.refresh(&parts.join(".")).await.err(401, "InvalidSession");
    let forged_at = custom_jwt("guess", claims(&at));
    t.get(&format!("{BR}/auth/profile"), Some(&forged_at))
        .await
        .err(401, "InvalidSession");
    t.refresh("garbage").await.err(401, "InvalidSession");
    t.raw(Method::POST, &format!("{BR}/auth/session"), None, None)
        .await
        .err(401, "InvalidSession");
    let r = t
        .http
        .post(format!("{}{BR}/auth/session", t.base))
        .header("authorization", format!("Basic {rt}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn access_and_refresh_expiry_follow_the_server_clock() {
    let t = start().await;
    let u = t
        .login("test-app", "custom-function", json!({"username": "e"}))
        .await;
    let (at, rt) = (s(&u, "access_token"), s(&u, "refresh_token"));
    let rc = claims(&rt);
    assert_eq!(
        rc["exp"].as_i64().unwrap() - rc["iat"].as_i64().unwrap(),
        3600
    );
    t.srv.advance_clock(1801);
    t.get(&format!("{BR}/auth/profile"), Some(&at))
        .await
        .err(401, "InvalidSession");
    let fresh = t.refresh(&rt).await.s("access_token");
    t.get(&format!("{BR}/auth/profile"), Some(&fresh))
        .await
        .ok(200);
    t.srv.advance_clock(1800);
    t.refresh(&rt).await.reason("InvalidSession", "expired");
    t.delete(&format!("{BR}/auth/session"), Some(&rt))
        .await
        .reason("InvalidSession", "expired");
}

#[tokio::test]
async fn logout_revokes_only_that_session() {
    let t = start().await;
    let a = t
        .login("test-app", "custom-function", json!({"username": "lo"}))
        .await;
    let b = t
        .login("test-app", "custom-function", json!({"username": "lo"}))
        .await;
    t.delete(&format!("{BR}/auth/session"), Some(&s(&a, "refresh_token")))
        .await
        .ok(204);
    assert_eq!(t.srv.request_count("logout"), 1);
    t.refresh(&s(&a, "refresh_token"))
        .await
        .reason("InvalidSession", "revoked");
    t.delete(&format!("{BR}/auth/session"), Some(&s(&a, "refresh_token")))
        .await
        .reason("InvalidSession", "revoked");
    t.refresh(&s(&b, "refresh_token")).await.ok(201);
    // The ended session's access token is refused at once (#25: it names its session); the
    // other session's works.
    t.get(&format!("{BR}/auth/profile"), Some(&s(&a, "access_token")))
        .await
        .err(401, "InvalidSession");
    t.get(&format!("{BR}/auth/profile"), Some(&s(&b, "access_token")))
        .await
        .ok(200);
}

#[tokio::test]
async fn rotation_grace_window_and_reuse_detection() {
    let t = start().await;
    let u = t.anon("rot-app").await;
    let rt0 = s(&u, "refresh_token");
    let rc = claims(&rt0);
    assert_eq!(
        rc["exp"].as_i64().unwrap() - rc["iat"].as_i64().unwrap(),
        7200
    );
    let r1 = t.refresh(&rt0).await;
    let rt1 = r1.s("refresh_token");
    assert_ne!(rt1, rt0);
    assert!(r1.body["access_token"].is_string());
    // Within 10 s the old token still works (a lost response) and answers the successor it
    // already produced.
    t.srv.advance_clock(5);
    let rt2 = t.refresh(&rt0).await.s("refresh_token");
    assert!(
        rt2 == rt1,
        "a retry within the grace window got a new token"
    );
    let rt3 = t.refresh(&rt2).await.s("refresh_token");
    // After the window, presenting a rotated-out token revokes the whole family.
    t.srv.advance_clock(11);
    t.refresh(&rt0).await.reason("InvalidSession", "revoked");
    t.refresh(&rt3).await.reason("InvalidSession", "revoked");
    // Other sessions of the same app are untouched.
    let v = t.anon("rot-app").await;
    t.refresh(&s(&v, "refresh_token")).await.ok(201);
}

/// The refresh tokens a rotating session has stored (SQLite file or the PostgreSQL database
/// of the test server on `dir`).
async fn stored_tokens(dir: &std::path::Path, session: &str) -> i64 {
    match test_database(Some(dir.display().to_string())).await {
        Some(url) => {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            sqlx::query_scalar("SELECT COUNT(*) FROM refresh_tokens WHERE session_id = $1")
                .bind(session)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
        None => rusqlite::Connection::open(dir.join("sessionkit.db"))
            .unwrap()
            .query_row(
                "SELECT COUNT(*) FROM refresh_tokens WHERE session_id = ?1",
                [session],
                |r| r.get(0),
            )
            .unwrap(),
    }
}

/// Makes the stored successor (generation 1) of a session's first refresh token look like one an
/// older release issued: its `issued_at` moves a second back, so the token can no longer be made
/// again from the row (as one with a random `jti` cannot).
async fn make_first_successor_unrepeatable(dir: &std::path::Path, session: &str) {
    let n: u64 = match test_database(Some(dir.display().to_string())).await {
        Some(url) => {
            let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url)
                .await
                .unwrap();
            sqlx::query(
                "UPDATE refresh_tokens SET issued_at = issued_at - 1
                 WHERE generation = 1 AND session_id = $1",
            )
            .bind(session)
            .execute(&mut conn)
            .await
            .unwrap()
            .rows_affected()
        }
        None => rusqlite::Connection::open(dir.join("sessionkit.db"))
            .unwrap()
            .execute(
                "UPDATE refresh_tokens SET issued_at = issued_at - 1
                 WHERE generation = 1 AND session_id = ?1",
                [session],
            )
            .unwrap() as u64,
    };
    assert_eq!(n, 1);
}

/// A test server on a data dir of its own, and that dir: [`stored_tokens`] finds the server's
/// database by it.
async fn start_in(tag: &str) -> (T, std::path::PathBuf) {
    let mut config = sessionkit_server::config::Config::from_toml_str(CONFIG).unwrap();
    config.data_dir = temp_dir(tag);
    let dir = config.data_dir.clone();
    (start_config(config).await, dir)
}

/// A rotating session's rotated-out tokens are deleted once past the grace window (#16: a
/// session's refresh got slower the longer it lived), and reuse of a deleted one still revokes
/// the session (its `sid` names it).
#[tokio::test]
async fn rotated_out_tokens_are_pruned_and_their_reuse_still_revokes() {
    let (t, dir) = start_in("prune").await;
    let other = s(&t.anon("rot-app").await, "refresh_token");
    let mut chain = vec![s(&t.anon("rot-app").await, "refresh_token")];
    let session = claims(&chain[0])["sid"].as_str().unwrap().to_string();
    for _ in 0..30 {
        t.srv.advance_clock(11); // each token is rotated out past the grace window
        let next = t.refresh(chain.last().unwrap()).await.s("refresh_token");
        chain.push(next);
    }
    // The current token and its parent (a retry after a lost answer), not 31.
    assert_eq!(stored_tokens(&dir, &session).await, 2);
    t.srv.advance_clock(11);
    t.refresh(&chain[5])
        .await
        .reason("InvalidSession", "revoked");
    t.refresh(chain.last().unwrap())
        .await
        .reason("InvalidSession", "revoked");
    t.refresh(&other).await.ok(201);
}

/// A retried rotation (its answer lost) answers the successor again and stores nothing more;
/// its tokens are pruned like any (PostgreSQL prunes from the newest generation it pruned,
/// migration 0002).
#[tokio::test]
async fn a_retried_rotations_tokens_are_pruned_too() {
    let (t, dir) = start_in("prune-retry").await;
    let a = s(&t.anon("rot-app").await, "refresh_token");
    let session = claims(&a)["sid"].as_str().unwrap().to_string();
    // t = 0: A -> B, whose answer is lost; t = 5: A again -> B again, no new row.
    let b = t.refresh(&a).await.s("refresh_token");
    t.srv.advance_clock(5);
    let c = t.refresh(&a).await.s("refresh_token");
    assert!(c == b, "the retry got a new token");
    assert_eq!(stored_tokens(&dir, &session).await, 2);
    // t = 14: C -> D prunes A; t = 20: D -> E keeps C (superseded at 14).
    t.srv.advance_clock(9);
    let d = t.refresh(&c).await.s("refresh_token");
    t.srv.advance_clock(6);
    let e = t.refresh(&d).await.s("refresh_token");
    // t = 40: E -> F prunes C and D.
    t.srv.advance_clock(20);
    let f = t.refresh(&e).await.s("refresh_token");
    assert_eq!(stored_tokens(&dir, &session).await, 2);
    t.srv.advance_clock(11);
    t.refresh(&f).await.ok(201);
}

/// Issue 22, item 1: one refresh token presented 8 times at once (an app and its extension
/// sharing a session, a client retrying on two connections) gets one successor, the same in
/// every answer, in each of several trials. Two copies of the session holding it then refresh
/// in turn, often past the grace window, and are never refused: they stay on one chain. Reuse
/// of an older token still revokes the session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refreshes_of_one_token_get_one_successor_and_copies_converge() {
    let t = start().await;
    for trial in 0..6 {
        let login = t.anon("rot-app").await;
        let rt0 = s(&login, "refresh_token");
        let answers = refresh_at_once(&t.http, &[&t.base], &rt0, 8).await;
        let rt1 = one_successor(trial, &answers);
        assert!(rt1 != rt0);
        // And once more, the same token: the same successor again (within the grace window).
        let again = refresh_at_once(&t.http, &[&t.base], &rt0, 4).await;
        assert!(
            one_successor(trial, &again) == rt1,
            "trial {trial}: a later retry differs"
        );

        // Copy A and copy B both hold rt1. In turn: A refreshes; B refreshes the token it has
        // (the one A just rotated out), within the grace window or long past it (its successor
        // unused: a lost answer); both go on with the answer, which is the same token.
        let (mut a, mut b) = (rt1.clone(), rt1);
        let mut chain = vec![rt0];
        for round in 0..8 {
            let r = t.refresh(&a).await;
            assert_eq!(
                r.status, 201,
                "trial {trial} round {round}: A refused: {}",
                r.body["reason"]
            );
            let next = r.s("refresh_token");
            t.srv.advance_clock(if round % 2 == 0 { 11 } else { 3 });
            let r = t.refresh(&b).await;
            assert_eq!(
                r.status, 201,
                "trial {trial} round {round}: B refused: {}",
                r.body["reason"]
            );
            assert!(
                r.s("refresh_token") == next,
                "trial {trial} round {round}: B got another token"
            );
            chain.push(a);
            (a, b) = (next.clone(), next);
            t.srv.advance_clock(11);
        }
        t.refresh(&a).await.ok(201);
        // The parent of a successor that was used, past the grace window: reuse.
        t.srv.advance_clock(11);
        t.refresh(chain.last().unwrap())
            .await
            .reason("InvalidSession", "revoked");
        t.refresh(&a).await.reason("InvalidSession", "revoked");
    }
}

/// A parent presented again within its grace window after its successor was itself rotated:
/// it gets its own successor (not the newest token), which, presented next within its own
/// grace window, gets the newest: the copy catches up with the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_its_successor_rotated_gets_its_own_successor_then_catches_up() {
    let t = start().await;
    let rt0 = s(&t.anon("rot-app").await, "refresh_token");
    let rt1 = t.refresh(&rt0).await.s("refresh_token");
    t.srv.advance_clock(2);
    let rt2 = t.refresh(&rt1).await.s("refresh_token");
    t.srv.advance_clock(2);
    assert!(t.refresh(&rt0).await.s("refresh_token") == rt1);
    t.srv.advance_clock(2);
    assert!(t.refresh(&rt1).await.s("refresh_token") == rt2);
    t.srv.advance_clock(11);
    let rt3 = t.refresh(&rt2).await.s("refresh_token");
    t.srv.advance_clock(11);
    t.refresh(&rt3).await.ok(201);
    // rt1 is two rotations old now: reuse.
    t.refresh(&rt1).await.reason("InvalidSession", "revoked");
}

/// A retried token whose successor cannot be made again (issued by a release before successors
/// were derived) rotates to a new successor, as that release did: the session goes on, and its
/// reuse rules are unchanged.
#[tokio::test]
async fn a_successor_that_cannot_be_made_again_is_replaced_as_before() {
    let (t, dir) = start_in("unrepeatable").await;
    let rt0 = s(&t.anon("rot-app").await, "refresh_token");
    let session = claims(&rt0)["sid"].as_str().unwrap().to_string();
    let rt1 = t.refresh(&rt0).await.s("refresh_token");
    make_first_successor_unrepeatable(&dir, &session).await;
    t.srv.advance_clock(3);
    let rt1b = t.refresh(&rt0).await.s("refresh_token");
    assert!(
        rt1b != rt1,
        "a successor made again that the store does not hold"
    );
    // The new successor is repeatable: a second retry gets it again.
    assert!(t.refresh(&rt0).await.s("refresh_token") == rt1b);
    assert_eq!(stored_tokens(&dir, &session).await, 3);
    t.srv.advance_clock(11);
    let rt2 = t.refresh(&rt1b).await.s("refresh_token");
    t.srv.advance_clock(11);
    t.refresh(&rt2).await.ok(201);
    t.refresh(&rt0).await.reason("InvalidSession", "revoked");
}

#[tokio::test]
async fn inactivity_timeout() {
    let t = start().await;
    let u = t.anon("rot-app").await;
    let mut rt = s(&u, "refresh_token");
    for _ in 0..3 {
        t.srv.advance_clock(500);
        rt = t.refresh(&rt).await.s("refresh_token");
    }
    t.srv.advance_clock(601);
    t.refresh(&rt).await.reason("InvalidSession", "expired");
}

#[tokio::test]
async fn admin_login_and_auth() {
    let t = start().await;
    let login = "/api/admin/v3.0/auth/providers/mongodb-cloud/login";
    t.post(
        login,
        json!({"username": "admin-pub", "apiKey": "wrong"}),
        None,
    )
    .await
    .err(401, "InvalidPassword");
    t.post(login, json!({"username": "admin-pub"}), None)
        .await
        .err(400, "BadRequest");
    let r = t
        .post(
            login,
            json!({"username": "admin-pub", "apiKey": "admin-priv"}),
            None,
        )
        .await;
    let (at, rt) = (r.s("access_token"), r.s("refresh_token"));
    t.get(&format!("{}/users", adm("test-app")), None)
        .await
        .err(401, "InvalidSession");
    t.get(&format!("{}/users", adm("test-app")), Some(&rt))
        .await
        .err(401, "InvalidSession");
    // A user's token is no admin token.
    let u = t.anon("test-app").await;
    t.get(
        &format!("{}/users", adm("test-app")),
        Some(&s(&u, "access_token")),
    )
    .await
    .err(401, "InvalidSession");
    t.get(&format!("{}/users", adm("nope")), Some(&at))
        .await
        .err(404, "InvalidParameter");
    let again = t
        .post("/api/admin/v3.0/auth/session", json!({}), Some(&rt))
        .await
        .s("access_token");
    t.get(&format!("{}/users", adm("test-app")), Some(&again))
        .await
        .ok(200);
    // Admin tokens expire on the server clock too.
    t.srv.advance_clock(1801);
    t.get(&format!("{}/users", adm("test-app")), Some(&at))
        .await
        .err(401, "InvalidSession");
}

#[tokio::test]
async fn admin_api_disabled_without_keys() {
    let t = start_with("[[app]]\nid = \"a\"\n[app.providers.anon-user]\n").await;
    t.post(
        "/api/admin/v3.0/auth/providers/mongodb-cloud/login",
        json!({"username": "x", "apiKey": "y"}),
        None,
    )
    .await
    .err(404, "NotFound");
    t.post(
        "/api/admin/v3.0/test/clock",
        json!({"advance_secs": 1}),
        None,
    )
    .await
    .err(404, "NotFound");
}

#[tokio::test]
async fn admin_verify_token() {
    let t = start().await;
    let admin = t.admin().await;
    let u = t.anon("test-app").await;
    let at = s(&u, "access_token");
    let path = format!("{}/users/verify_token", adm("test-app"));
    let r = t.post(&path, json!({"token": at}), Some(&admin)).await;
    let c = r.ok(200);
    assert_eq!(c["sub"], u["user_id"]);
    assert_eq!(c["iss"], "test-app");
    assert_eq!(c["device_id"], u["device_id"]);
    assert_eq!(c["domain_id"], claims(&at)["domain_id"]);
    assert!(c["exp"].as_i64().unwrap() > c["iat"].as_i64().unwrap());
    let forged = custom_jwt("nope", claims(&at));
    let r = t.post(&path, json!({"token": forged}), Some(&admin)).await;
    assert_eq!(r.status, 401);
    assert_eq!(r.body["error"], "signature is invalid");
    t.post(&path, json!({}), Some(&admin))
        .await
        .err(400, "BadRequest");
    t.srv.advance_clock(1801);
    let admin = t.admin().await;
    let r = t.post(&path, json!({"token": at}), Some(&admin)).await;
    assert_eq!(r.ok(200), &json!("token expired"));
}

#[tokio::test]
async fn admin_revoke_disable_enable() {
    let t = start().await;
    let admin = t.admin().await;
    let u = t
        .login("test-app", "custom-function", json!({"username": "adm"}))
        .await;
    let uid = s(&u, "user_id");
    let base = format!("{}/users/{uid}", adm("test-app"));
    t.put(&format!("{base}/logout"), None, Some(&admin))
        .await
        .ok(204);
    t.refresh(&s(&u, "refresh_token"))
        .await
        .reason("InvalidSession", "revoked");
    t.get(&format!("{BR}/auth/profile"), Some(&s(&u, "access_token")))
        .await
        .err(401, "InvalidSession");

    let v = t
        .login("test-app", "custom-function", json!({"username": "adm"}))
        .await;
    t.put(&format!("{base}/disable"), None, Some(&admin))
        .await
        .ok(204);
    assert_eq!(t.get(&base, Some(&admin)).await.ok(200)["disabled"], true);
    t.refresh(&s(&v, "refresh_token"))
        .await
        .reason("UserDisabled", "disabled");
    t.post(
        &format!("{}/auth/providers/custom-function/login", ar("test-app")),
        json!({"username": "adm"}),
        None,
    )
    .await
    .err(401, "UserDisabled");
    t.put(&format!("{base}/enable"), None, Some(&admin))
        .await
        .ok(204);
    // Enabling does not revive the sessions the disable ended.
    t.refresh(&s(&v, "refresh_token"))
        .await
        .reason("InvalidSession", "revoked");
    let w = t
        .login("test-app", "custom-function", json!({"username": "adm"}))
        .await;
    t.refresh(&s(&w, "refresh_token")).await.ok(201);
    let ghost = format!("{}/users/0123456789abcdef01234567", adm("test-app"));
    for op in ["logout", "disable", "enable"] {
        t.put(&format!("{ghost}/{op}"), None, Some(&admin))
            .await
            .err(404, "UserNotFound");
    }
}

#[tokio::test]
async fn admin_custom_data_becomes_user_data_claim() {
    let t = start().await;
    let admin = t.admin().await;
    let u = t.anon("test-app").await;
    let uid = s(&u, "user_id");
    let path = format!("{}/users/{uid}/custom_data", adm("test-app"));
    t.put(&path, Some(json!({"plan": "pro", "n": 2})), Some(&admin))
        .await
        .ok(204);
    t.put(&path, Some(json!([1])), Some(&admin))
        .await
        .err(400, "BadRequest");
    t.raw(Method::PUT, &path, Some(b"{oops".to_vec()), Some(&admin))
        .await
        .err(400, "BadRequest");
    assert!(claims(&s(&u, "access_token")).get("user_data").is_none());
    let at = t.refresh(&s(&u, "refresh_token")).await.s("access_token");
    assert_eq!(claims(&at)["user_data"], json!({"plan": "pro", "n": 2}));
    let who = t
        .post(
            &format!("{}/functions/call", ar("test-app")),
            json!({"name": "whoami", "arguments": []}),
            Some(&at),
        )
        .await;
    assert_eq!(who.ok(200)["custom_data"], json!({"plan": "pro", "n": 2}));
}

#[tokio::test]
async fn admin_refresh_token_expiration_persists() {
    let mut config = sessionkit_server::Config::from_toml_str(CONFIG).unwrap();
    let dir = temp_dir("rte");
    config.data_dir = dir.clone();
    let t = start_config(config.clone()).await;
    let admin = t.admin().await;
    let path = format!("{}/security/refresh_token_expiration", adm("test-app"));
    t.put(
        &path,
        Some(json!({"expiration_time_seconds": 120})),
        Some(&admin),
    )
    .await
    .ok(204);
    t.put(
        &path,
        Some(json!({"expiration_time_seconds": "x"})),
        Some(&admin),
    )
    .await
    .err(400, "BadRequest");
    t.put(
        &path,
        Some(json!({"expiration_time_seconds": 0})),
        Some(&admin),
    )
    .await
    .err(400, "BadRequest");
    let u = t
        .login("test-app", "custom-function", json!({"username": "x"}))
        .await;
    let rc = claims(&s(&u, "refresh_token"));
    assert_eq!(
        rc["exp"].as_i64().unwrap() - rc["iat"].as_i64().unwrap(),
        120
    );
    t.srv.shutdown().await;
    // After a restart on the same data dir: same lifetime, and the old tokens still verify.
    let t = start_config(config).await;
    t.refresh(&s(&u, "refresh_token")).await.ok(201);
    let v = t
        .login("test-app", "custom-function", json!({"username": "x"}))
        .await;
    assert_eq!(v["user_id"], u["user_id"]);
    let rc = claims(&s(&v, "refresh_token"));
    assert_eq!(
        rc["exp"].as_i64().unwrap() - rc["iat"].as_i64().unwrap(),
        120
    );
}

#[tokio::test]
async fn admin_users_crud_outbox_and_metrics() {
    let t = start().await;
    let admin = t.admin().await;
    let users = format!("{}/users", adm("test-app"));
    let r = t
        .post(
            &users,
            json!({"email": "c@x.io", "password": "secret1"}),
            Some(&admin),
        )
        .await;
    let doc = r.ok(201).clone();
    let uid = s(&doc, "_id");
    assert_eq!(doc["data"]["email"], "c@x.io");
    assert_eq!(doc["identities"][0]["provider_type"], "local-userpass");
    t.post(
        &users,
        json!({"email": "c@x.io", "password": "secret1"}),
        Some(&admin),
    )
    .await
    .err(409, "AccountNameInUse");
    t.post(
        &users,
        json!({"email": "d@x.io", "password": "123"}),
        Some(&admin),
    )
    .await
    .err(400, "BadRequest");
    t.post(&users, json!({"email": "d@x.io"}), Some(&admin))
        .await
        .err(400, "BadRequest");
    // The created user is confirmed and logs in as that user.
    let u = t
        .login(
            "test-app",
            "local-userpass",
            json!({"username": "c@x.io", "password": "secret1"}),
        )
        .await;
    assert_eq!(u["user_id"], uid.as_str());
    t.anon("test-app").await;
    let list = t.get(&users, Some(&admin)).await;
    assert_eq!(list.ok(200).as_array().unwrap().len(), 2);
    assert_eq!(
        t.get(&format!("{users}/{uid}"), Some(&admin)).await.ok(200)["_id"],
        uid.as_str()
    );
    t.get(&format!("{users}/0123456789abcdef01234567"), Some(&admin))
        .await
        .err(404, "UserNotFound");
    t.delete(&format!("{users}/{uid}"), Some(&admin))
        .await
        .ok(204);
    t.delete(&format!("{users}/{uid}"), Some(&admin))
        .await
        .err(404, "UserNotFound");
    t.get(&format!("{users}/{uid}"), Some(&admin))
        .await
        .err(404, "UserNotFound");
    t.refresh(&s(&u, "refresh_token"))
        .await
        .reason("InvalidSession", "deleted");

    // Outbox: filtered by email, for the app asked.
    t.post(
        &format!("{}/auth/providers/local-userpass/register", ar("test-app")),
        json!({"email": "o+1@x.io", "password": "secret1"}),
        None,
    )
    .await
    .ok(201);
    let mail = t.outbox(&admin, "test-app", "o+1@x.io").await;
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0]["email"], "o+1@x.io");
    assert_eq!(mail[0]["kind"], "confirm");
    assert!(mail[0]["token"].is_string() && mail[0]["tokenId"].is_string());
    assert!(t.outbox(&admin, "test-app", "nobody@x.io").await.is_empty());
    assert!(t.outbox(&admin, "auto-app", "o+1@x.io").await.is_empty());

    // Metrics count per app.
    let v = t.anon("rot-app").await;
    t.refresh(&s(&v, "refresh_token")).await.ok(201);
    t.refresh(&s(&v, "refresh_token")).await;
    let m = t
        .get(&format!("{}/metrics", adm("rot-app")), Some(&admin))
        .await;
    assert_eq!(m.ok(200)["requests"]["refresh"], 2);
    assert_eq!(m.body["requests"]["login"], 1);
    let m = t
        .get(&format!("{}/metrics", adm("test-app")), Some(&admin))
        .await;
    assert_eq!(m.ok(200)["requests"]["refresh"], 1);
    assert_eq!(t.srv.request_count("refresh"), 3);
}

#[tokio::test]
async fn test_clock_endpoint_expires_tokens() {
    let t = start().await;
    let admin = t.admin().await;
    let u = t.anon("test-app").await;
    let clock = "/api/admin/v3.0/test/clock";
    t.post(clock, json!({"advance_secs": -5}), Some(&admin))
        .await
        .err(400, "BadRequest");
    t.post(clock, json!({"advance_secs": "x"}), Some(&admin))
        .await
        .err(400, "BadRequest");
    t.post(clock, json!({"advance_secs": 5}), None)
        .await
        .err(401, "InvalidSession");
    let before = t.srv.now();
    let r = t
        .post(clock, json!({"advance_secs": 1801}), Some(&admin))
        .await;
    assert!(r.ok(200)["now"].as_i64().unwrap() >= before + 1801);
    t.get(&format!("{BR}/auth/profile"), Some(&s(&u, "access_token")))
        .await
        .err(401, "InvalidSession");

    // Without test_clock = true the endpoint does not exist (a production config: no
    // local-userpass, which would need [mail]).
    let t2 = start_with(
        "listen = \"127.0.0.1:0\"\n[admin]\npublic_key = \"admin-pub\"\n\
         private_key = \"admin-priv\"\n[[app]]\nid = \"test-app\"\n[app.providers.anon-user]\n",
    )
    .await;
    let admin2 = t2.admin().await;
    t2.post(clock, json!({"advance_secs": 1}), Some(&admin2))
        .await
        .err(404, "NotFound");
}

#[tokio::test]
async fn anonymous_users_are_swept_after_90_days() {
    let t = start().await;
    let anon = t.anon("test-app").await;
    let named = t
        .login("test-app", "custom-function", json!({"username": "stays"}))
        .await;
    t.srv.advance_clock(89 * 24 * 3600);
    t.srv.sweep().await.unwrap();
    let users = format!("{}/users", adm("test-app"));
    let admin = t.admin().await;
    t.get(&format!("{users}/{}", s(&anon, "user_id")), Some(&admin))
        .await
        .ok(200);
    t.srv.advance_clock(2 * 24 * 3600);
    t.srv.sweep().await.unwrap();
    let admin = t.admin().await;
    t.get(&format!("{users}/{}", s(&anon, "user_id")), Some(&admin))
        .await
        .err(404, "UserNotFound");
    t.get(&format!("{users}/{}", s(&named, "user_id")), Some(&admin))
        .await
        .ok(200);
}
