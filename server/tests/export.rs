//! Exporting users (#24, SERVER.md "Exporting users"): users of several kinds (the server's own
//! email/password users, imported legacy hashes not yet upgraded, must-reset accounts, custom
//! JWT and API key identities, custom data, a disabled user, an anonymous one, and enough plain
//! users to take several pages) exported by the `export` command, imported into an empty second
//! server, logged into there with the same passwords and ids; the second server's export equals
//! the first's. Both back ends (`SESSIONKIT_TEST_POSTGRES`).

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;
use serde_json::{Value, json};

const APP: &str = "exp-app";

const TOML: &str = r#"
listen = "127.0.0.1:0"
test_clock = true
rate_limits = { enabled = false }

[admin]
public_key = "admin-pub"
private_key = "admin-priv"

[[app]]
id = "exp-app"
[app.providers.local-userpass]
auto_confirm = false
[app.providers.anon-user]
[app.providers.api-key]
[app.providers.custom-token]
key = "custom-secret"
audience = "exp-app"
"#;

/// Plain users imported to make the export take several pages (export::PAGE is 500).
const MANY: usize = 1_100;

fn config_file(dir: &Path) -> std::path::PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let file = dir.join("config.toml");
    std::fs::write(&file, format!("data_dir = \"{}\"\n{TOML}", dir.display())).unwrap();
    file
}

async fn server(dir: &Path) -> T {
    let mut c = sessionkit_server::Config::from_toml_str(TOML).unwrap();
    c.data_dir = dir.to_path_buf();
    start_config(c).await
}

/// Runs the server binary on `dir`'s config and database; exit code, stdout, stderr.
fn cli(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let config = config_file(dir);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sessionkit-server"));
    same_database(&mut cmd, dir);
    cmd.arg("--config").arg(&config).args(args);
    let out = cmd.output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

async fn import(t: &T, lines: &[Value]) {
    let admin = t.admin().await;
    for chunk in lines.chunks(1000) {
        let body: String = chunk.iter().map(|l| format!("{l}\n")).collect();
        let r = t
            .raw(
                reqwest::Method::POST,
                &format!("{}/users/import", adm(APP)),
                Some(body.into_bytes()),
                Some(&admin),
            )
            .await;
        assert_eq!(r.ok(200)["refused"], 0, "{}", r.body);
    }
}

async fn password_login(t: &T, email: &str, password: &str) -> Resp {
    t.post(
        &format!("{}/auth/providers/local-userpass/login", ar(APP)),
        json!({"username": email, "password": password}),
        None,
    )
    .await
}

fn jwt_login(t: &T, sub: &str) -> Value {
    json!({"token": custom_jwt(
        "custom-secret",
        json!({"sub": sub, "aud": APP, "exp": t.srv.now() + 600}),
    )})
}

/// The lines of an export file by user id (an export is in id order, an import in any).
fn by_id(text: &str) -> BTreeMap<String, Value> {
    text.lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["id"].as_str().unwrap().to_string(), v)
        })
        .collect()
}

#[tokio::test]
async fn an_export_imported_into_an_empty_server_gives_the_same_users_and_passwords() {
    let dir1 = temp_dir("export-from");
    let t = server(&dir1).await;
    let admin = t.admin().await;

    // The server's own email/password user (argon2id, made here).
    let own = t
        .post(
            &format!("{}/users", adm(APP)),
            json!({"email": "own@example.com", "password": "own-password-1"}),
            Some(&admin),
        )
        .await;
    let own_id = own.ok(201)["_id"].as_str().unwrap().to_string();
    // Imported users: a legacy bcrypt hash not yet upgraded, a Firebase scrypt hash, a
    // must-reset account, a disabled custom-JWT user with custom data.
    let vectors: Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/legacy-hashes/vectors.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let vectors = vectors["vectors"].as_array().unwrap();
    let bcrypt = vectors.iter().find(|v| v["scheme"] == "bcrypt").unwrap();
    let firebase = vectors
        .iter()
        .find(|v| v["scheme"] == "firebase-scrypt")
        .unwrap();
    let mut lines = vec![
        json!({"firebase_params": firebase["project"]}),
        json!({"id": "legacy-1", "created_at": 1_600_000_000, "custom_data": {"plan": "pro"},
            "identities": [{"provider_type": "local-userpass", "id": "legacy-1-up",
                "profile_data": {"email": "legacy@example.com"}, "password_hash": bcrypt["hash"]}]}),
        json!({"id": "fire-1", "identities": [{"provider_type": "local-userpass", "id": "fire-1-up",
                "profile_data": {"email": "fire@example.com"},
                "firebase_scrypt": {"hash": firebase["hash"], "salt": firebase["salt"]}}]}),
        json!({"id": "reset-1", "identities": [{"provider_type": "local-userpass", "id": "reset-1-up",
                "profile_data": {"email": "reset@example.com"}, "must_reset": true}]}),
        json!({"id": "off-1", "disabled": true, "custom_data": {"why": "left"},
            "identities": [{"provider_type": "custom-token", "id": "off-sub", "profile_data": {"name": "Off"}}]}),
    ];
    for i in 0..MANY {
        lines.push(
            json!({"id": format!("bulk-{i:05}"), "created_at": 1_500_000_000 + i,
            "identities": [{"provider_type": "custom-token", "id": format!("bulk-sub-{i}")}]}),
        );
    }
    import(&t, &lines).await;
    // A custom-JWT user made by a login, with an API key it logged in with once.
    let jwt_user = t.login(APP, "custom-token", jwt_login(&t, "jwt-sub")).await;
    let jwt_id = jwt_user["user_id"].as_str().unwrap().to_string();
    let key = t
        .post(
            &format!("{BR}/auth/api_keys"),
            json!({"name": "ci"}),
            jwt_user["refresh_token"].as_str(),
        )
        .await;
    let key = key.ok(201)["key"].as_str().unwrap().to_string();
    let by_key = t.login(APP, "api-key", json!({"key": key})).await;
    assert_eq!(by_key["user_id"], jwt_id.as_str());
    // An anonymous user: left out.
    t.anon(APP).await;

    // Export to a file (0600) while the server runs, and to standard output.
    let file = dir1.join("users.ndjson");
    let (code, out, err) = cli(&dir1, &["export", "--app", APP, file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    let total = MANY + 6;
    assert!(
        err.contains(&format!("exported {total} users"))
            && err.contains("left out 1 anonymous users")
            && err.contains("left out 1 API key identities"),
        "{err}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Exporting again to the same name is refused without --force.
    let (code, _, err) = cli(&dir1, &["export", "--app", APP, file.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--force"), "{err}");
    let (code, stdout, _) = cli(&dir1, &["export", "--app", APP]);
    assert_eq!(code, Some(0));
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(stdout, text);
    let first = by_id(&text);
    assert_eq!(first.len(), total);
    // In id order: the pages follow each other.
    let ids: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    // What each kind became.
    let own_line = &first[&own_id];
    let own_hash = own_line["identities"][0]["password_hash"].as_str().unwrap();
    assert!(own_hash.starts_with("$argon2id$"), "{own_line}");
    assert_eq!(
        first["legacy-1"]["identities"][0]["password_hash"],
        bcrypt["hash"]
    );
    assert_eq!(first["legacy-1"]["custom_data"], json!({"plan": "pro"}));
    assert_eq!(first["legacy-1"]["created_at"], 1_600_000_000);
    assert!(
        first["fire-1"]["identities"][0]["password_hash"]
            .as_str()
            .unwrap()
            .starts_with("$firebase-scrypt$")
    );
    assert_eq!(first["reset-1"]["identities"][0]["must_reset"], true);
    assert_eq!(first["off-1"]["disabled"], true);
    assert_eq!(
        first[&jwt_id]["identities"],
        json!([{"provider_type": "custom-token", "id": "jwt-sub", "profile_data": {}}])
    );

    // Into an empty second server, with the import command.
    let dir2 = temp_dir("export-to");
    let t2 = server(&dir2).await;
    let (code, out, err) = cli(&dir2, &["import", "--app", APP, file.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains(&format!(
            "created {total}, updated 0, unchanged 0, refused 0"
        )),
        "{out}"
    );
    // Its export equals the first (before any login upgrades a hash).
    let (code, again, err) = cli(&dir2, &["export", "--app", APP, "-"]);
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(by_id(&again), first);

    // The same users log in there with the same passwords and ids.
    let login = password_login(&t2, "own@example.com", "own-password-1").await;
    assert_eq!(login.ok(200)["user_id"], own_id.as_str());
    password_login(&t2, "own@example.com", "wrong-password")
        .await
        .err(401, "InvalidPassword");
    let login = password_login(
        &t2,
        "legacy@example.com",
        bcrypt["password"].as_str().unwrap(),
    )
    .await;
    assert_eq!(login.ok(200)["user_id"], "legacy-1");
    let login = password_login(
        &t2,
        "fire@example.com",
        firebase["password"].as_str().unwrap(),
    )
    .await;
    assert_eq!(login.ok(200)["user_id"], "fire-1");
    password_login(&t2, "reset@example.com", "anything")
        .await
        .err(401, "PasswordResetRequired");
    let login = t2
        .login(APP, "custom-token", jwt_login(&t2, "jwt-sub"))
        .await;
    assert_eq!(login["user_id"], jwt_id.as_str());
    let login = t2
        .login(APP, "custom-token", jwt_login(&t2, "bulk-sub-777"))
        .await;
    assert_eq!(login["user_id"], "bulk-00777");
    t2.post(
        &format!("{}/auth/providers/custom-token/login", ar(APP)),
        jwt_login(&t2, "off-sub"),
        None,
    )
    .await
    .err(401, "UserDisabled");
    // The API key did not come along (keys are stored hashed).
    t2.post(
        &format!("{}/auth/providers/api-key/login", ar(APP)),
        json!({"key": key}),
        None,
    )
    .await
    .err(401, "AuthError");

    t.srv.shutdown().await;
    t2.srv.shutdown().await;
}

#[tokio::test]
async fn export_refuses_an_unknown_app() {
    let dir = temp_dir("export-noapp");
    let (code, _, err) = cli(&dir, &["export", "--app", "nope"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("no app \"nope\""), "{err}");
}
