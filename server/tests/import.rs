//! Importing users (#24, SERVER.md "Importing users"): an App Services-shaped export imported
//! through the admin API and logged into with the exported ids; every legacy hash scheme (the
//! vectors other implementations made, fixtures/legacy-hashes) logging in once and upgraded to
//! argon2 in the database; wrong passwords refused alike; idempotency; conflicts refused with
//! their line; dry runs; must_reset and the reset that ends it; the `import` command. Both back
//! ends (`SESSIONKIT_TEST_POSTGRES`).

mod common;

use common::*;
use serde_json::{Value, json};

const APP: &str = "imp-app";

const TOML: &str = r#"
listen = "127.0.0.1:0"
test_clock = true
rate_limits = { enabled = false }

[admin]
public_key = "admin-pub"
private_key = "admin-priv"

[[app]]
id = "imp-app"
[app.providers.local-userpass]
auto_confirm = false
[app.providers.custom-token]
key = "custom-secret"
audience = "imp-app"

[[app]]
id = "other-app"
[app.providers.anon-user]
"#;

fn config(dir: &std::path::Path) -> sessionkit_server::Config {
    let mut c = sessionkit_server::Config::from_toml_str(TOML).unwrap();
    c.data_dir = dir.to_path_buf();
    c
}

async fn server(tag: &str) -> T {
    start_config(config(&temp_dir(tag))).await
}

fn vectors() -> Vec<Value> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/legacy-hashes/vectors.json"
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["vectors"].as_array().unwrap().clone()
}

/// POST users/import with these lines as NDJSON (or `?dry_run=true`); the report.
async fn import(t: &T, lines: &[Value], dry_run: bool) -> Value {
    let admin = t.admin().await;
    let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let path = format!(
        "{}/users/import{}",
        adm(APP),
        if dry_run { "?dry_run=true" } else { "" }
    );
    let r = t
        .raw(
            reqwest::Method::POST,
            &path,
            Some(body.into_bytes()),
            Some(&admin),
        )
        .await;
    r.ok(200).clone()
}

#[track_caller]
fn counts(report: &Value, created: u64, updated: u64, unchanged: u64, refused: u64) {
    assert_eq!(
        [
            &report["created"],
            &report["updated"],
            &report["unchanged"],
            &report["refused"]
        ],
        [
            &json!(created),
            &json!(updated),
            &json!(unchanged),
            &json!(refused)
        ],
        "report: {report}"
    );
}

async fn password_login(t: &T, email: &str, password: &str) -> Resp {
    t.post(
        &format!("{}/auth/providers/local-userpass/login", ar(APP)),
        json!({"username": email, "password": password}),
        None,
    )
    .await
}

/// The password column of an account, read through a second store on the server's database.
async fn password_column(t: &T, email: &str) -> String {
    let store = sessionkit_server::store::open(t.srv.config())
        .await
        .unwrap();
    let row = store.userpass(APP, email).await.unwrap().expect("account");
    store.close().await;
    row.password_hash
}

/// A confirmed email user of the server's own (admin API).
async fn own_user(t: &T, email: &str, password: &str) {
    let admin = t.admin().await;
    t.post(
        &format!("{}/users", adm(APP)),
        json!({"email": email, "password": password}),
        Some(&admin),
    )
    .await
    .ok(201);
}

fn userpass(id: &str, email: &str, password: Value) -> Value {
    let mut ident =
        json!({"provider_type": "local-userpass", "id": id, "profile_data": {"email": email}});
    for (k, v) in password.as_object().unwrap() {
        ident[k] = v.clone();
    }
    ident
}

/// An App Services export as the line format has it: ObjectId ids, several providers per user,
/// custom data, creation times.
fn export() -> Vec<Value> {
    let argon2 = &vectors()[0];
    vec![
        json!({
            "id": "5f1b2c3d4e5f60718293a4b5",
            "created_at": "2021-06-01T12:00:00Z",
            "custom_data": {"plan": "pro", "seats": 3},
            "identities": [
                userpass("5f1b2c3d4e5f60718293a4b6", "ada@example.com", json!({"password_hash": argon2["hash"]})),
                {"provider_type": "custom-token", "id": "ada-sub", "profile_data": {"name": "Ada"}},
                {"provider_type": "oauth2-google", "id": "104857600123", "profile_data": {"email": "ada@gmail.example", "name": "Ada L."}}
            ]
        }),
        json!({
            "id": "5f1b2c3d4e5f60718293a4c0",
            "created_at": 1_600_000_000,
            "identities": [
                {"provider_type": "custom-token", "id": "bob-sub"},
                {"provider_type": "oauth2-apple", "id": "001234.abcdef.1234"}
            ]
        }),
    ]
}

#[tokio::test]
async fn an_app_services_export_imports_and_logs_in_to_the_exported_ids() {
    let t = server("import-export").await;
    let report = import(&t, &export(), false).await;
    counts(&report, 2, 0, 0, 0);
    assert_eq!(report["refusals"], json!([]));

    let argon2 = &vectors()[0];
    let password = argon2["password"].as_str().unwrap();
    let login = password_login(&t, "ada@example.com", password).await;
    assert_eq!(login.ok(200)["user_id"], "5f1b2c3d4e5f60718293a4b5");
    let access = login.s("access_token");
    assert_eq!(
        claims(&access)["user_data"],
        json!({"plan": "pro", "seats": 3})
    );
    let profile = t.get(&format!("{BR}/auth/profile"), Some(&access)).await;
    let ids: Vec<&str> = profile.ok(200)["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["provider_type"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["local-userpass", "custom-token", "oauth2-google"]);

    // A custom JWT of the imported subject lands on the same user.
    for (sub, id) in [
        ("ada-sub", "5f1b2c3d4e5f60718293a4b5"),
        ("bob-sub", "5f1b2c3d4e5f60718293a4c0"),
    ] {
        let jwt = custom_jwt(
            "custom-secret",
            json!({"sub": sub, "aud": APP, "exp": t.srv.now() + 600}),
        );
        let login = t.login(APP, "custom-token", json!({"token": jwt})).await;
        assert_eq!(login["user_id"], id);
    }
    let admin = t.admin().await;
    let users = t.get(&format!("{}/users", adm(APP)), Some(&admin)).await;
    let users = users.ok(200).as_array().unwrap().clone();
    assert_eq!(users.len(), 2, "{users:?}");
    let bob = users
        .iter()
        .find(|u| u["_id"] == "5f1b2c3d4e5f60718293a4c0")
        .unwrap();
    assert_eq!(bob["creation_date"], 1_600_000_000);
    let ada = users
        .iter()
        .find(|u| u["_id"] == "5f1b2c3d4e5f60718293a4b5")
        .unwrap();
    assert_eq!(ada["creation_date"], 1_622_548_800);
    t.srv.shutdown().await;
}

#[tokio::test]
async fn every_scheme_logs_in_once_then_is_upgraded_and_wrong_passwords_are_refused_alike() {
    let t = server("import-schemes").await;
    let mut lines = Vec::new();
    let mut accounts = Vec::new();
    for (i, v) in vectors().iter().enumerate() {
        let email = format!("user{i}@example.com");
        let password = match v["scheme"].as_str().unwrap() {
            "firebase-scrypt" => {
                lines.push(json!({"firebase_params": v["project"]}));
                json!({"firebase_scrypt": {"hash": v["hash"], "salt": v["salt"]}})
            }
            _ => json!({"password_hash": v["hash"]}),
        };
        lines.push(json!({
            "id": format!("user-{i}"),
            "identities": [userpass(&format!("ident-{i}"), &email, password)],
        }));
        accounts.push((
            email,
            v["password"].as_str().unwrap().to_string(),
            v["made_by"].clone(),
        ));
    }
    let report = import(&t, &lines, false).await;
    counts(&report, accounts.len() as u64, 0, 0, 0);

    // What a wrong password gets for an account of the server's own.
    own_user(&t, "own@example.com", "own-password").await;
    let own = password_login(&t, "own@example.com", "wrong-password").await;
    own.err(401, "InvalidPassword");

    for (i, (email, password, made_by)) in accounts.iter().enumerate() {
        let column = password_column(&t, email).await;
        assert!(column.starts_with("legacy:$"), "{made_by}");
        // Changed in front: bcrypt reads only the first 72 bytes.
        let wrong = password_login(&t, email, &format!("!x{password}")).await;
        wrong.err(401, "InvalidPassword");
        assert_eq!(
            wrong.body, own.body,
            "{made_by}: refused as any wrong password"
        );
        assert_eq!(
            password_column(&t, email).await,
            column,
            "{made_by}: a wrong password upgrades nothing"
        );

        let first = password_login(&t, email, password).await;
        assert_eq!(first.ok(200)["user_id"], format!("user-{i}"), "{made_by}");
        let upgraded = password_column(&t, email).await;
        assert!(
            upgraded.starts_with("$argon2id$"),
            "{made_by}: the server's own hash after the first login"
        );
        let second = password_login(&t, email, password).await;
        assert_eq!(second.ok(200)["user_id"], format!("user-{i}"), "{made_by}");
        assert_eq!(password_column(&t, email).await, upgraded);
        password_login(&t, email, &format!("!x{password}"))
            .await
            .err(401, "InvalidPassword");
    }
    // Re-importing the same lines leaves the upgraded passwords alone.
    let report = import(&t, &lines, false).await;
    counts(&report, 0, 0, accounts.len() as u64, 0);
    let (email, password, _) = &accounts[0];
    password_login(&t, email, password).await.ok(200);
    t.srv.shutdown().await;
}

#[tokio::test]
async fn import_is_idempotent_and_a_changed_line_updates_its_user() {
    let t = server("import-idempotent").await;
    let lines = export();
    counts(&import(&t, &lines, false).await, 2, 0, 0, 0);
    counts(&import(&t, &lines, false).await, 0, 0, 2, 0);

    let mut changed = lines.clone();
    changed[1]["disabled"] = json!(true);
    changed[0]["custom_data"] = json!({"plan": "team"});
    changed[0]["identities"][1]["profile_data"] = json!({"name": "Ada Lovelace"});
    counts(&import(&t, &changed, false).await, 0, 2, 0, 0);
    counts(&import(&t, &changed, false).await, 0, 0, 2, 0);

    let jwt = custom_jwt(
        "custom-secret",
        json!({"sub": "bob-sub", "aud": APP, "exp": t.srv.now() + 600}),
    );
    t.post(
        &format!("{}/auth/providers/custom-token/login", ar(APP)),
        json!({"token": jwt}),
        None,
    )
    .await
    .err(401, "UserDisabled");
    let admin = t.admin().await;
    let ada = t
        .get(
            &format!("{}/users/5f1b2c3d4e5f60718293a4b5", adm(APP)),
            Some(&admin),
        )
        .await;
    assert_eq!(ada.ok(200)["custom_data"], json!({"plan": "team"}));
    t.srv.shutdown().await;
}

#[tokio::test]
async fn conflicts_and_bad_lines_are_refused_with_their_line_and_the_rest_imported() {
    let t = server("import-conflicts").await;
    own_user(&t, "taken@example.com", "password1").await;
    let other = t.anon("other-app").await;
    let other_id = other["user_id"].as_str().unwrap().to_string();
    let lines = [
        json!({"id": "u1", "identities": [{"provider_type": "custom-token", "id": "shared-sub"}]}),
        json!({"id": "u2", "identities": [{"provider_type": "custom-token", "id": "shared-sub"}]}),
        json!({"id": "u3", "identities": [userpass("i3", "taken@example.com", json!({"must_reset": true}))]}),
        json!({"id": other_id}),
        json!({"id": "u5", "disabled": "yes"}),
        json!({"id": "u6", "identities": [userpass("i6", "new@example.com", json!({"password_hash": "$md5$abc"}))]}),
        json!({"id": "u7", "identities": [{"provider_type": "api-key", "id": "k1"}]}),
        json!({"id": "u8"}),
    ];
    let report = import(&t, &lines, false).await;
    counts(&report, 2, 0, 0, 6);
    let refusals = report["refusals"].as_array().unwrap();
    let line = |n: u64| -> String {
        refusals
            .iter()
            .find(|r| r["line"] == n)
            .unwrap_or_else(|| panic!("line {n} refused: {report}"))["reason"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert!(line(2).contains("custom-token identity shared-sub belongs to another user (u1)"));
    assert!(line(3).contains("email taken@example.com is already the email/password account"));
    assert!(line(4).contains("is a user of another app"));
    assert!(line(5).contains("boolean"), "{}", line(5));
    assert!(line(6).starts_with("identities[0]: password_hash: unsupported"));
    assert!(line(7).contains("api-key identities are not imported"));
    assert!(refusals.iter().all(|r| r["line"] != 1 && r["line"] != 8));
    // A refused line wrote nothing: u2 does not exist.
    let admin = t.admin().await;
    t.get(&format!("{}/users/u2", adm(APP)), Some(&admin))
        .await
        .err(404, "UserNotFound");
    // A JSON array body numbers its elements.
    let r = t
        .post(
            &format!("{}/users/import", adm(APP)),
            json!([{"id": "u9"}, "not an object"]),
            Some(&admin),
        )
        .await;
    let report = r.ok(200);
    counts(report, 1, 0, 0, 1);
    assert_eq!(report["refusals"][0]["line"], 2);
    // More than a batch holds is refused whole.
    let many: Vec<Value> = (0..1001).map(|i| json!({"id": format!("m{i}")})).collect();
    t.post(
        &format!("{}/users/import", adm(APP)),
        Value::Array(many),
        Some(&admin),
    )
    .await
    .err(400, "BadRequest");
    t.srv.shutdown().await;
}

#[tokio::test]
async fn a_dry_run_reports_the_same_and_writes_nothing() {
    let t = server("import-dry").await;
    let mut lines = export();
    lines.push(lines[1].clone()); // the same user twice: the second sees the first
    let dry = import(&t, &lines, true).await;
    counts(&dry, 2, 0, 1, 0);
    assert_eq!(dry["dry_run"], true);
    let admin = t.admin().await;
    let users = t.get(&format!("{}/users", adm(APP)), Some(&admin)).await;
    assert_eq!(users.ok(200), &json!([]));
    let real = import(&t, &lines, false).await;
    counts(&real, 2, 0, 1, 0);
    let mut changed = lines.clone();
    changed[0]["disabled"] = json!(true);
    counts(&import(&t, &changed, true).await, 0, 1, 2, 0);
    counts(&import(&t, &lines, false).await, 0, 0, 3, 0);
    t.srv.shutdown().await;
}

#[tokio::test]
async fn a_must_reset_account_logs_in_after_a_reset_only() {
    let t = server("import-reset").await;
    let line = json!({"id": "r1", "identities": [userpass("ri", "reset@example.com", json!({"must_reset": true}))]});
    counts(
        &import(&t, std::slice::from_ref(&line), false).await,
        1,
        0,
        0,
        0,
    );
    password_login(&t, "reset@example.com", "anything")
        .await
        .err(401, "PasswordResetRequired");
    t.post(
        &format!("{}/auth/providers/local-userpass/reset/send", ar(APP)),
        json!({"email": "reset@example.com"}),
        None,
    )
    .await
    .ok(204);
    let admin = t.admin().await;
    let mail = t.outbox(&admin, APP, "reset@example.com").await;
    let last = mail.last().unwrap();
    assert_eq!(last["kind"], "reset");
    t.post(
        &format!("{}/auth/providers/local-userpass/reset", ar(APP)),
        json!({"token": last["token"], "tokenId": last["tokenId"], "password": "brand-new-pw"}),
        None,
    )
    .await
    .ok(204);
    let login = password_login(&t, "reset@example.com", "brand-new-pw").await;
    assert_eq!(login.ok(200)["user_id"], "r1");
    // The password set here is newer than the export's mark: a re-import leaves it.
    counts(&import(&t, &[line], false).await, 0, 0, 1, 0);
    password_login(&t, "reset@example.com", "brand-new-pw")
        .await
        .ok(200);
    t.srv.shutdown().await;
}

#[tokio::test]
async fn the_import_command_streams_a_file_and_reports() {
    let dir = temp_dir("import-cli");
    let t = start_config(config(&dir)).await;
    let mut text: String = export().iter().map(|l| format!("{l}\n")).collect();
    text.push_str("\n{\"id\": \"c3\", \"colour\": 1}\n");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("users.ndjson");
    std::fs::write(&file, &text).unwrap();
    let config_file = dir.join("config.toml");
    std::fs::write(
        &config_file,
        format!("data_dir = \"{}\"\n{TOML}", dir.display()),
    )
    .unwrap();
    let run = |dry: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sessionkit-server"));
        common::same_database(&mut cmd, &dir);
        cmd.args([
            "--config",
            config_file.to_str().unwrap(),
            "import",
            "--app",
            APP,
        ]);
        if dry {
            cmd.arg("--dry-run");
        }
        let out = cmd.arg(&file).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, out) = run(true);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("line 4: refused: unknown field `colour`"),
        "{out}"
    );
    assert!(
        out.contains("created 2, updated 0, unchanged 0, refused 1 (dry run: nothing written)"),
        "{out}"
    );
    let (code, out) = run(false);
    assert_eq!(code, Some(1), "{out}");
    assert!(
        out.contains("created 2, updated 0, unchanged 0, refused 1"),
        "{out}"
    );
    let (_, out) = run(false);
    assert!(
        out.contains("created 0, updated 0, unchanged 2, refused 1"),
        "{out}"
    );
    // The running server sees the imported users.
    let jwt = custom_jwt(
        "custom-secret",
        json!({"sub": "bob-sub", "aud": APP, "exp": t.srv.now() + 600}),
    );
    let login = t.login(APP, "custom-token", json!({"token": jwt})).await;
    assert_eq!(login["user_id"], "5f1b2c3d4e5f60718293a4c0");
    t.srv.shutdown().await;
}

#[tokio::test]
async fn concurrent_imports_and_logins_on_two_postgres_instances_make_one_user_per_id() {
    if std::env::var("SESSIONKIT_TEST_POSTGRES").is_err() {
        eprintln!(
            "not run on the SQLite pass (one process per SQLite file): it needs SESSIONKIT_TEST_POSTGRES"
        );
        return;
    }
    let dir = temp_dir("import-two");
    let a = start_config(config(&dir)).await;
    let b = start_config(config(&dir)).await;
    // bcrypt cost 4 from the fixtures: cheap, so that the logins overlap.
    let bcrypt = vectors()
        .into_iter()
        .find(|v| v["made_by"].as_str().unwrap().contains("$2y$"))
        .unwrap();
    let n = 40;
    let lines: Vec<Value> = (0..n)
        .map(|i| {
            json!({
                "id": format!("{i:024x}"),
                "identities": [
                    userpass(&format!("ident-{i}"), &format!("c{i}@example.com"), json!({"password_hash": bcrypt["hash"]})),
                    {"provider_type": "custom-token", "id": format!("sub-{i}")}
                ]
            })
        })
        .collect();
    // The same file through both instances, twice each, at once.
    let (r1, r2, r3, r4) = tokio::join!(
        import(&a, &lines, false),
        import(&b, &lines, false),
        import(&a, &lines, false),
        import(&b, &lines, false)
    );
    let reports = [r1, r2, r3, r4];
    let created: u64 = reports.iter().map(|r| r["created"].as_u64().unwrap()).sum();
    assert_eq!(created, n, "{reports:?}");
    for r in &reports {
        assert_eq!(r["refused"], 0, "{r}");
        assert_eq!(
            r["created"].as_u64().unwrap() + r["unchanged"].as_u64().unwrap(),
            n,
            "{r}"
        );
    }
    let admin = a.admin().await;
    let users = a.get(&format!("{}/users", adm(APP)), Some(&admin)).await;
    assert_eq!(users.ok(200).as_array().unwrap().len() as u64, n);

    // The first logins of one imported user on both instances at once: both succeed, as the
    // same user, and the column ends as an argon2 hash of the password.
    let password = bcrypt["password"].as_str().unwrap();
    for i in 0..8 {
        let email = format!("c{i}@example.com");
        let (x, y) = tokio::join!(
            password_login(&a, &email, password),
            password_login(&b, &email, password)
        );
        assert_eq!(x.ok(200)["user_id"], format!("{i:024x}"));
        assert_eq!(y.ok(200)["user_id"], format!("{i:024x}"));
        assert!(password_column(&a, &email).await.starts_with("$argon2id$"));
        password_login(&b, &email, password).await.ok(200);
    }
    a.srv.shutdown().await;
    b.srv.shutdown().await;
}

/// A stand-in for the old system of a lazy migration: vouches for one email and password when
/// the shared secret is right; `mode` 0 answers, 1 never answers, 2 answers 500. Counts calls.
struct OldSystem {
    url: String,
    calls: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    mode: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

async fn old_system() -> OldSystem {
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let mode = Arc::new(AtomicUsize::new(0));
    let (c, m) = (calls.clone(), mode.clone());
    let app = axum::Router::new().route(
        "/verify",
        axum::routing::post(
            move |headers: HeaderMap, axum::Json(body): axum::Json<Value>| {
                let (c, m) = (c.clone(), m.clone());
                async move {
                    c.fetch_add(1, Ordering::SeqCst);
                    match m.load(Ordering::SeqCst) {
                        1 => std::future::pending::<()>().await,
                        2 => return (StatusCode::INTERNAL_SERVER_ERROR, String::new()),
                        _ => {}
                    }
                    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
                    if auth != Some("Bearer old-secret") {
                        return (StatusCode::FORBIDDEN, String::new());
                    }
                    if body == json!({"email": "old@example.com", "password": "old-password"}) {
                        let user = json!({"id": "old-42", "custom_data": {"from": "old"}, "created_at": 1_500_000_000});
                        (StatusCode::OK, user.to_string())
                    } else {
                        (StatusCode::UNAUTHORIZED, String::new())
                    }
                }
            },
        ),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    OldSystem {
        url: format!("http://{addr}/verify"),
        calls,
        mode,
    }
}

fn migrating(dir: &std::path::Path, url: &str, secret: &str) -> sessionkit_server::Config {
    let toml = TOML.replace(
        "[app.providers.local-userpass]\nauto_confirm = false\n",
        &format!(
            "[app.providers.local-userpass]\nauto_confirm = false\nmigrate_webhook = \"{url}\"\n\
             migrate_webhook_secret_env = \"OLD_SECRET\"\nmigrate_webhook_timeout_ms = 300\n"
        ),
    );
    let mut c = sessionkit_server::Config::from_toml_str(&toml).unwrap();
    c.data_dir = dir.to_path_buf();
    let up = c.apps[0].providers.local_userpass.as_mut().unwrap();
    up.migrate_webhook_secret = Some(sessionkit_server::config::Secret(secret.into()));
    c
}

#[tokio::test]
async fn lazy_migration_creates_a_user_the_old_system_vouches_for_and_asks_once() {
    use std::sync::atomic::Ordering;
    let old = old_system().await;
    let t = start_config(migrating(
        &temp_dir("import-migrate"),
        &old.url,
        "old-secret",
    ))
    .await;
    // Unknown to the old system, or a wrong password: refused as any wrong password.
    password_login(&t, "nobody@example.com", "whatever")
        .await
        .err(401, "InvalidPassword");
    password_login(&t, "old@example.com", "wrong-password")
        .await
        .err(401, "InvalidPassword");
    assert_eq!(old.calls.load(Ordering::SeqCst), 2);
    let login = password_login(&t, "old@example.com", "old-password").await;
    assert_eq!(login.ok(200)["user_id"], "old-42");
    assert_eq!(
        claims(&login.s("access_token"))["user_data"],
        json!({"from": "old"})
    );
    assert!(
        password_column(&t, "old@example.com")
            .await
            .starts_with("$argon2id$")
    );
    // From now on the account is here: the old system is not asked again, even when down.
    old.mode.store(2, Ordering::SeqCst);
    let again = password_login(&t, "old@example.com", "old-password").await;
    assert_eq!(again.ok(200)["user_id"], "old-42");
    password_login(&t, "old@example.com", "wrong-password")
        .await
        .err(401, "InvalidPassword");
    assert_eq!(old.calls.load(Ordering::SeqCst), 3);
    t.srv.shutdown().await;
}

#[tokio::test]
async fn a_slow_or_failing_old_system_is_a_503_with_retry_after() {
    use std::sync::atomic::Ordering;
    let old = old_system().await;
    let t = start_config(migrating(&temp_dir("import-slow"), &old.url, "old-secret")).await;
    for mode in [1, 2] {
        old.mode.store(mode, Ordering::SeqCst);
        let resp = t
            .http
            .post(format!(
                "{}{}/auth/providers/local-userpass/login",
                t.base,
                ar(APP)
            ))
            .json(&json!({"username": "old@example.com", "password": "old-password"}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 503, "mode {mode}");
        assert_eq!(resp.headers()["retry-after"], "5", "mode {mode}");
    }
    // A wrong shared secret is the old system refusing: nobody is created.
    let t2 = start_config(migrating(&temp_dir("import-secret"), &old.url, "not-it")).await;
    old.mode.store(0, Ordering::SeqCst);
    password_login(&t2, "old@example.com", "old-password")
        .await
        .err(401, "InvalidPassword");
    t.srv.shutdown().await;
    t2.srv.shutdown().await;
}

#[test]
fn a_migrate_webhook_must_be_https_or_loopback_and_name_its_secret() {
    let with = |extra: &str| {
        sessionkit_server::Config::from_toml_str(&TOML.replace(
            "[app.providers.local-userpass]\nauto_confirm = false\n",
            &format!("[app.providers.local-userpass]\nauto_confirm = false\n{extra}\n"),
        ))
    };
    for bad in [
        "migrate_webhook = \"http://old.example/verify\"\nmigrate_webhook_secret_env = \"S\"",
        "migrate_webhook = \"ftp://old.example/verify\"\nmigrate_webhook_secret_env = \"S\"",
        "migrate_webhook = \"https://old.example/verify\"",
        "migrate_webhook = \"https://u:p@old.example/verify\"\nmigrate_webhook_secret_env = \"S\"",
        "migrate_webhook = \"https://old.example/verify\"\nmigrate_webhook_secret_env = \"S\"\nmigrate_webhook_timeout_ms = 60000",
    ] {
        let e = with(bad).unwrap_err().to_string();
        assert!(e.contains("migrate_webhook"), "{bad}: {e}");
    }
    for good in [
        "migrate_webhook = \"https://old.example/verify\"\nmigrate_webhook_secret_env = \"S\"",
        "migrate_webhook = \"http://127.0.0.1:8080/verify\"\nmigrate_webhook_secret_env = \"S\"",
        "migrate_webhook = \"http://localhost/verify\"\nmigrate_webhook_secret_env = \"S\"",
    ] {
        with(good).unwrap_or_else(|e| panic!("{good}: {e}"));
    }
}
