//! A login that races the deletion of its account (#22, item 2): every path that creates or
//! resumes a session (email/password login, API-key login, link, refresh, a login with an
//! outside identity) against a concurrent `DELETE auth/delete`, admin delete or API key
//! deletion, many times, on one server and across two servers on one database (the second
//! server is a second store on the same SQLite file, or the same PostgreSQL database with
//! `SESSIONKIT_TEST_POSTGRES`).
//!
//! After each trial: the race's loser got the answer it would get a moment later (never a 5xx),
//! no user is left over that should not exist (the admin API lists them), and no session of a
//! deleted user or key works (its refresh token and access token are refused). A login with an
//! outside identity may make a new user after the deletion, as it would a moment later; that
//! user is then whole (its identity, a working session).
//!
//! Run: `cargo test -p sessionkit-server --test delete_race`, then the same with
//! `SESSIONKIT_TEST_BACKEND=postgres SESSIONKIT_TEST_POSTGRES=<url>`.

mod common;

use std::time::Duration;

use common::{BR, Resp, T, adm, ar};
use serde_json::{Value, json};
use sessionkit_server::Config;

const APP: &str = "race-app";

const RACE_CONFIG: &str = r#"
listen = "127.0.0.1:0"
test_clock = true
rate_limits = { enabled = false }

[admin]
public_key = "admin-pub"
private_key = "admin-priv"

[[app]]
id = "race-app"
refresh_token_rotation = true
[app.providers.anon-user]
[app.providers.local-userpass]
auto_confirm = true
reset_function = "success"
allow_insecure_reset_function = true
[app.providers.api-key]
[app.providers.custom-token]
key = "custom-secret"
audience = "race-app"
"#;

/// Trials per path and per setup (one server, two servers).
const TRIALS: usize = 14;

/// Two servers on one database (one data dir: one SQLite file, or one PostgreSQL database).
/// `one` tests use the first for both sides of the race, `two` tests one server per side.
struct Servers {
    a: T,
    b: T,
    admin: String,
}

impl Servers {
    async fn start() -> Servers {
        let mut config = Config::from_toml_str(RACE_CONFIG).expect("test config");
        config.data_dir = common::temp_dir("race");
        let a = common::start_config(config.clone()).await;
        let b = common::start_config(config).await;
        let admin = a.admin().await;
        Servers { a, b, admin }
    }

    /// The servers the two sides of trial `i` go to: the same one, or one each.
    fn sides(&self, across: bool) -> (&T, &T) {
        if across {
            (&self.a, &self.b)
        } else {
            (&self.a, &self.a)
        }
    }

    /// Every user of the app, with their identities (admin API).
    async fn users(&self) -> Vec<Value> {
        self.b
            .get(&format!("{}/users", adm(APP)), Some(&self.admin))
            .await
            .ok(200)
            .as_array()
            .unwrap()
            .clone()
    }

    async fn admin_delete(&self, on: &T, user_id: &str) -> Resp {
        on.delete(&format!("{}/users/{user_id}", adm(APP)), Some(&self.admin))
            .await
    }
}

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key} in {v}"))
        .to_string()
}

fn login_path(provider: &str) -> String {
    format!("{}/auth/providers/{provider}/login", ar(APP))
}

fn jwt(sub: &str) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    common::custom_jwt("custom-secret", json!({"sub": sub, "aud": APP, "exp": exp}))
}

/// Which side of a race waits a little first.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Login,
    Delete,
}

/// Spreads where the deletion lands in the login's work: at once, or with one side (the login,
/// or the deletion) a few milliseconds later, by trial.
async fn stagger(trial: usize, side: Side) {
    let (login_ms, delete_ms) =
        [(0, 0), (0, 3), (3, 0), (0, 10), (8, 0), (0, 20), (15, 0)][trial % 7];
    let ms = if side == Side::Login {
        login_ms
    } else {
        delete_ms
    };
    if ms > 0 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

/// Asserts that the session a login or refresh answered with is dead: its refresh token is
/// refused, and its access token too (its user is gone).
async fn assert_dead(on: &T, body: &Value, what: &str) {
    assert_refresh_dead(on, body, what).await;
    let access = s(body, "access_token");
    let r = on.get(&format!("{BR}/auth/profile"), Some(&access)).await;
    assert_eq!(
        r.status, 401,
        "{what}: the access token still works: {}",
        r.body
    );
}

/// Asserts that the refresh token a login answered with is refused (an ended session's access
/// token lives on until it expires, as for any logout).
async fn assert_refresh_dead(on: &T, body: &Value, what: &str) {
    if let Some(refresh) = body["refresh_token"].as_str() {
        let r = on.refresh(refresh).await;
        // Its answer would hold new tokens: not printed.
        assert_eq!(r.status, 401, "{what}: the refresh token still works");
    }
}

/// Email/password login against `DELETE auth/delete` (even trials) or the admin API's delete
/// (odd): the login answers 200 as the user that is then deleted (a dead session) or 401
/// InvalidPassword, the same as a wrong password; never a new user.
async fn userpass_trials(srv: &Servers, across: bool) {
    let (x, y) = srv.sides(across);
    let mut outcomes = std::collections::BTreeMap::<u16, usize>::new(); // HTTP statuses only
    for i in 0..TRIALS {
        let email = format!("race-{across}-{i}@example.com");
        let creds = json!({"username": email, "password": "secret-password"});
        x.post(
            &format!("{}/auth/providers/local-userpass/register", ar(APP)),
            json!({"email": email, "password": "secret-password"}),
            None,
        )
        .await
        .ok(201);
        let first = x
            .post(&login_path("local-userpass"), creds.clone(), None)
            .await;
        let user = s(first.ok(200), "user_id");
        let access = s(&first.body, "access_token");
        let path = login_path("local-userpass");
        let (login, deleted) = tokio::join!(x.post(&path, creds.clone(), None), async {
            stagger(i, Side::Delete).await;
            if i % 2 == 0 {
                y.delete(&format!("{BR}/auth/delete"), Some(&access)).await
            } else {
                srv.admin_delete(y, &user).await
            }
        });
        assert_eq!(deleted.status, 204, "trial {i}: delete: {}", deleted.body);
        *outcomes.entry(login.status).or_default() += 1;
        let what = format!("userpass trial {i} (across: {across})");
        match login.status {
            200 => {
                assert_eq!(s(&login.body, "user_id"), user, "{what}: a new user");
                assert_dead(x, &login.body, &what).await;
            }
            _ => {
                login.err(401, "InvalidPassword");
            }
        }
        let users = srv.users().await;
        assert!(users.is_empty(), "{what}: users left over: {users:?}");
        // The account is gone: its password no longer logs in.
        x.post(&login_path("local-userpass"), creds, None)
            .await
            .err(401, "InvalidPassword");
    }
    eprintln!("userpass_trials (across: {across}): statuses {outcomes:?}");
}

/// Email/password login with the old password against a password change (`reset/call`, whose
/// function accepts at once): 200 with a session that the change then ends, or 401
/// InvalidPassword; never a working session from a password that no longer logs in.
async fn password_change_trials(srv: &Servers, across: bool) {
    let (x, y) = srv.sides(across);
    let mut outcomes = std::collections::BTreeMap::<u16, usize>::new(); // HTTP statuses only
    for i in 0..TRIALS * 2 / 3 {
        let email = format!("change-{across}-{i}@example.com");
        let old = json!({"username": email, "password": "old-password"});
        x.post(
            &format!("{}/auth/providers/local-userpass/register", ar(APP)),
            json!({"email": email, "password": "old-password"}),
            None,
        )
        .await
        .ok(201);
        let user = s(
            x.post(&login_path("local-userpass"), old.clone(), None)
                .await
                .ok(200),
            "user_id",
        );
        let path = login_path("local-userpass");
        let (login, changed) = tokio::join!(
            async {
                stagger(i, Side::Login).await;
                x.post(&path, old.clone(), None).await
            },
            async {
                stagger(i, Side::Delete).await;
                y.post(
                    &format!("{}/auth/providers/local-userpass/reset/call", ar(APP)),
                    json!({"email": email, "password": "new-password", "arguments": []}),
                    None,
                )
                .await
            }
        );
        assert_eq!(changed.status, 204, "trial {i}: reset: {}", changed.body);
        *outcomes.entry(login.status).or_default() += 1;
        let what = format!("password change trial {i} (across: {across})");
        match login.status {
            200 => {
                assert_eq!(s(&login.body, "user_id"), user, "{what}: a new user");
                assert_refresh_dead(x, &login.body, &what).await;
            }
            _ => {
                login.err(401, "InvalidPassword");
            }
        }
        x.post(&login_path("local-userpass"), old, None)
            .await
            .err(401, "InvalidPassword");
        srv.admin_delete(x, &user).await.ok(204);
    }
    eprintln!("password_change_trials (across: {across}): statuses {outcomes:?}");
}

/// API-key login against the key's deletion (even trials) or its owner's (odd): 200 with a
/// session that is then ended, or 401 "invalid API key"; never a session of a deleted key, an
/// identity of a deleted key, or a new user.
async fn api_key_trials(srv: &Servers, across: bool) {
    let (x, y) = srv.sides(across);
    let mut outcomes = std::collections::BTreeMap::<u16, usize>::new(); // HTTP statuses only
    for i in 0..TRIALS {
        let owner = x
            .post(
                &login_path("custom-token"),
                json!({"token": jwt(&format!("key-owner-{across}-{i}"))}),
                None,
            )
            .await;
        let user = s(owner.ok(200), "user_id");
        let (access, refresh) = (
            s(&owner.body, "access_token"),
            s(&owner.body, "refresh_token"),
        );
        let key = x
            .post(
                &format!("{BR}/auth/api_keys"),
                json!({"name": "k"}),
                Some(&refresh),
            )
            .await;
        let (key_id, key) = (s(key.ok(201), "_id"), s(&key.body, "key"));
        let delete_key = i % 2 == 0;
        let path = login_path("api-key");
        let (login, deleted) = tokio::join!(x.post(&path, json!({"key": key}), None), async {
            stagger(i, Side::Delete).await;
            if delete_key {
                y.delete(&format!("{BR}/auth/api_keys/{key_id}"), Some(&refresh))
                    .await
            } else {
                y.delete(&format!("{BR}/auth/delete"), Some(&access)).await
            }
        });
        assert_eq!(deleted.status, 204, "trial {i}: delete: {}", deleted.body);
        *outcomes.entry(login.status).or_default() += 1;
        let what = format!("api-key trial {i} (across: {across}, key deleted: {delete_key})");
        match login.status {
            200 if delete_key => {
                assert_eq!(s(&login.body, "user_id"), user, "{what}: another user");
                assert_refresh_dead(x, &login.body, &what).await;
            }
            200 => {
                assert_eq!(s(&login.body, "user_id"), user, "{what}: another user");
                assert_dead(x, &login.body, &what).await;
            }
            _ => {
                login.err(401, "AuthError");
                assert_eq!(login.body["error"], "invalid API key", "{what}");
            }
        }
        let users = srv.users().await;
        if delete_key {
            assert_eq!(users.len(), 1, "{what}: users: {users:?}");
            assert_eq!(users[0]["_id"], user.as_str(), "{what}");
            let kinds: Vec<&Value> = users[0]["identities"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| &i["provider_type"])
                .collect();
            assert_eq!(kinds, ["custom-token"], "{what}: identities left over");
            srv.admin_delete(x, &user).await.ok(204);
        } else {
            assert!(users.is_empty(), "{what}: users left over: {users:?}");
        }
        x.post(&login_path("api-key"), json!({"key": key}), None)
            .await
            .err(401, "AuthError");
    }
    eprintln!("api_key_trials (across: {across}): statuses {outcomes:?}");
}

/// A link (a custom JWT to an anonymous user) against the linking user's deletion: 200 with a
/// session that is then ended, or 401 InvalidSession (what the access token gets a moment
/// later); never a user or identity left over.
async fn link_trials(srv: &Servers, across: bool) {
    let (x, y) = srv.sides(across);
    let mut outcomes = std::collections::BTreeMap::<u16, usize>::new(); // HTTP statuses only
    for i in 0..TRIALS {
        let anon = x.anon(APP).await;
        let access = s(&anon, "access_token");
        let path = format!("{}?link=true", login_path("custom-token"));
        let token = jwt(&format!("linked-{across}-{i}"));
        let (link, deleted) = tokio::join!(
            async {
                stagger(i, Side::Login).await;
                x.post(&path, json!({"token": token}), Some(&access)).await
            },
            async {
                stagger(i, Side::Delete).await;
                y.delete(&format!("{BR}/auth/delete"), Some(&access)).await
            }
        );
        assert_eq!(deleted.status, 204, "trial {i}: delete: {}", deleted.body);
        *outcomes.entry(link.status).or_default() += 1;
        let what = format!("link trial {i} (across: {across})");
        match link.status {
            200 => assert_dead(x, &link.body, &what).await,
            _ => {
                link.err(401, "InvalidSession");
            }
        }
        let users = srv.users().await;
        assert!(users.is_empty(), "{what}: users left over: {users:?}");
    }
    eprintln!("link_trials (across: {across}): statuses {outcomes:?}");
}

/// A refresh (rotating) against the user's deletion: 201 with tokens that are then refused, or
/// 401 InvalidSession (deleted); never a working session.
async fn refresh_trials(srv: &Servers, across: bool) {
    let (x, y) = srv.sides(across);
    let mut outcomes = std::collections::BTreeMap::<u16, usize>::new(); // HTTP statuses only
    for i in 0..TRIALS {
        let login = x
            .post(
                &login_path("custom-token"),
                json!({"token": jwt(&format!("refresher-{across}-{i}"))}),
                None,
            )
            .await;
        let user = s(login.ok(200), "user_id");
        let refresh = s(&login.body, "refresh_token");
        let (refreshed, deleted) = tokio::join!(
            async {
                stagger(i, Side::Login).await;
                x.refresh(&refresh).await
            },
            async {
                stagger(i, Side::Delete).await;
                srv.admin_delete(y, &user).await
            }
        );
        assert_eq!(deleted.status, 204, "trial {i}: delete: {}", deleted.body);
        *outcomes.entry(refreshed.status).or_default() += 1;
        let what = format!("refresh trial {i} (across: {across})");
        match refreshed.status {
            201 => assert_dead(x, &refreshed.body, &what).await,
            _ => {
                refreshed.reason("InvalidSession", "deleted");
            }
        }
        let users = srv.users().await;
        assert!(users.is_empty(), "{what}: users left over: {users:?}");
    }
    eprintln!("refresh_trials (across: {across}): statuses {outcomes:?}");
}

/// A custom-JWT login (an identity kept outside) against its user's deletion: 200, either as
/// the deleted user (a dead session) or as a new user that is whole (the identity, a working
/// session), as a login a moment later would be.
async fn outside_identity_trials(srv: &Servers, across: bool) {
    let (x, y) = srv.sides(across);
    // Which of the two outcomes, only: no token or id is kept to be printed.
    let mut outcomes = std::collections::BTreeMap::<&str, usize>::new();
    for i in 0..TRIALS {
        let token = jwt(&format!("outside-{across}-{i}"));
        let first = x
            .post(&login_path("custom-token"), json!({"token": token}), None)
            .await;
        let user = s(first.ok(200), "user_id");
        let access = s(&first.body, "access_token");
        let path = login_path("custom-token");
        let (login, deleted) = tokio::join!(x.post(&path, json!({"token": token}), None), async {
            stagger(i, Side::Delete).await;
            y.delete(&format!("{BR}/auth/delete"), Some(&access)).await
        });
        assert_eq!(deleted.status, 204, "trial {i}: delete: {}", deleted.body);
        let what = format!("outside-identity trial {i} (across: {across})");
        let body = login.ok(200);
        let users = srv.users().await;
        let same = s(body, "user_id") == user;
        *outcomes
            .entry(if same { "deleted user" } else { "new user" })
            .or_default() += 1;
        if same {
            assert_dead(x, body, &what).await;
            assert!(users.is_empty(), "{what}: users left over: {users:?}");
        } else {
            let new = s(body, "user_id");
            assert_eq!(users.len(), 1, "{what}: users: {users:?}");
            assert_eq!(users[0]["_id"], new.as_str(), "{what}");
            assert_eq!(
                users[0]["identities"][0]["provider_type"], "custom-token",
                "{what}: {users:?}"
            );
            assert_eq!(users[0]["identities"].as_array().unwrap().len(), 1);
            x.refresh(&s(body, "refresh_token")).await.ok(201);
            srv.admin_delete(x, &new).await.ok(204);
        }
    }
    eprintln!("outside_identity_trials (across: {across}): statuses {outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userpass_login_racing_the_deletion_never_makes_a_user() {
    let srv = Servers::start().await;
    userpass_trials(&srv, false).await;
    userpass_trials(&srv, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn userpass_login_racing_a_password_change_gets_no_lasting_session() {
    let srv = Servers::start().await;
    password_change_trials(&srv, false).await;
    password_change_trials(&srv, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_key_login_racing_the_deletion_of_the_key_or_its_owner_gets_no_session() {
    let srv = Servers::start().await;
    api_key_trials(&srv, false).await;
    api_key_trials(&srv, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_racing_the_deletion_of_the_linking_user_leaves_nothing() {
    let srv = Servers::start().await;
    link_trials(&srv, false).await;
    link_trials(&srv, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refresh_racing_the_deletion_of_the_user_gets_no_working_session() {
    let srv = Servers::start().await;
    refresh_trials(&srv, false).await;
    refresh_trials(&srv, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_identity_login_racing_the_deletion_is_the_old_user_or_a_whole_new_one() {
    let srv = Servers::start().await;
    outside_identity_trials(&srv, false).await;
    outside_identity_trials(&srv, true).await;
}
