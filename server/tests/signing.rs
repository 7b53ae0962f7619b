//! Access tokens signed with a key pair: verifiable offline through the app's discovery
//! document and JWKS, and key rotation by command.

mod common;

use std::time::Duration;

use base64::Engine;
use common::{BR, ar, start_config, temp_dir};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, jwk::JwkSet};
use serde_json::{Value, json};
use sessionkit_server::Config;

const TOML: &str = r#"
listen = "127.0.0.1:0"
test_clock = true
rate_limits = { enabled = false }

[[app]]
id = "es-app"
access_token_algorithm = "ES256"
access_token_lifetime_secs = 60
[app.providers.anon-user]

[[app]]
id = "rs-app"
access_token_algorithm = "RS256"
[app.providers.anon-user]

[[app]]
id = "hs-app"
[app.providers.anon-user]
"#;

fn header(token: &str) -> jsonwebtoken::Header {
    jsonwebtoken::decode_header(token).expect("a JWT header")
}

/// What a backend does with a standard JWT library: discovery, JWKS, verify with iss and aud.
async fn verify_offline(t: &common::T, app: &str, token: &str) -> Result<Value, String> {
    let discovery = t
        .get(
            &format!("{}/.well-known/openid-configuration", ar(app)),
            None,
        )
        .await;
    let doc = discovery.ok(200);
    assert_eq!(doc["issuer"], app);
    let jwks_uri = doc["jwks_uri"].as_str().unwrap().to_string();
    let set: JwkSet = reqwest::get(&jwks_uri).await.unwrap().json().await.unwrap();
    let h = header(token);
    let jwk = set
        .find(h.kid.as_deref().unwrap_or_default())
        .ok_or("kid not in the JWKS")?;
    let key = DecodingKey::from_jwk(jwk).map_err(|e| e.to_string())?;
    let mut v = Validation::new(h.alg);
    v.set_issuer(&[app]);
    v.set_audience(&[app]);
    jsonwebtoken::decode::<Value>(token, &key, &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

fn config(dir: &std::path::Path) -> Config {
    let mut config = Config::from_toml_str(TOML).unwrap();
    config.data_dir = dir.to_path_buf();
    config
}

#[tokio::test]
async fn es256_and_rs256_access_tokens_verify_offline_and_work_with_the_server() {
    let t = start_config(config(&temp_dir("signing"))).await;
    for (app, alg) in [("es-app", Algorithm::ES256), ("rs-app", Algorithm::RS256)] {
        let login = t.anon(app).await;
        let access = login["access_token"].as_str().unwrap();
        assert_eq!(header(access).alg, alg, "{app}");
        let claims = verify_offline(&t, app, access).await.unwrap();
        assert_eq!(claims["sub"], login["user_id"]);
        // The server itself takes the token, and a refreshed one is signed the same way.
        t.get(&format!("{BR}/auth/profile"), Some(access))
            .await
            .ok(200);
        let refreshed = t.refresh(login["refresh_token"].as_str().unwrap()).await;
        let next = refreshed.s("access_token");
        assert_eq!(header(&next).alg, alg);
        verify_offline(&t, app, &next).await.unwrap();
    }
    // HS256 apps publish nothing: their tokens cannot be verified without the secret.
    let login = t.anon("hs-app").await;
    assert_eq!(
        header(login["access_token"].as_str().unwrap()).alg,
        Algorithm::HS256
    );
    let jwks = t
        .get(&format!("{}/.well-known/jwks.json", ar("hs-app")), None)
        .await;
    assert_eq!(jwks.ok(200)["keys"], json!([]));
    t.srv.shutdown().await;
}

#[tokio::test]
async fn a_forged_token_with_a_made_up_kid_is_refused() {
    let t = start_config(config(&temp_dir("signing-forged"))).await;
    let login = t.anon("es-app").await;
    let access = login["access_token"].as_str().unwrap();
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let parts: Vec<&str> = access.split('.').collect();
    let forged_header = b64.encode(json!({"alg": "ES256", "kid": "made-up"}).to_string());
    let forged = format!("{forged_header}.{}.{}", parts[1], parts[2]);
    t.get(&format!("{BR}/auth/profile"), Some(&forged))
        .await
        .err(401, "InvalidSession");
    t.srv.shutdown().await;
}

#[tokio::test]
async fn rotation_by_command_signs_with_a_new_key_and_keeps_the_old_one_published() {
    let dir = temp_dir("signing-rotate");
    let t = start_config(config(&dir)).await;
    let old = t.anon("es-app").await;
    let old_access = old["access_token"].as_str().unwrap().to_string();
    let old_kid = header(&old_access).kid.unwrap();

    // The command reads the same config; the data dir is shared with the running server.
    let file = dir.join("config.toml");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(&file, format!("data_dir = \"{}\"\n{TOML}", dir.display())).unwrap();
    let bin = env!("CARGO_BIN_EXE_sessionkit-server");
    let mut cmd = std::process::Command::new(bin);
    common::same_database(&mut cmd, &dir);
    let out = cmd
        .args([
            "--config",
            file.to_str().unwrap(),
            "keys",
            "rotate",
            "--app",
            "es-app",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(said.contains("new signing key"), "{said}");

    // An HS256 app has no key to rotate: a clear error, non-zero exit.
    let out = std::process::Command::new(bin)
        .args([
            "--config",
            file.to_str().unwrap(),
            "keys",
            "rotate",
            "--app",
            "hs-app",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("access_token_algorithm"));

    // The running server switches within a minute; a token with an unknown kid hurries it.
    let forged = {
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let parts: Vec<&str> = old_access.split('.').collect();
        let h = b64.encode(json!({"alg": "ES256", "kid": "unknown"}).to_string());
        format!("{h}.{}.{}", parts[1], parts[2])
    };
    t.get(&format!("{BR}/auth/profile"), Some(&forged)).await;
    let jwks_path = format!("{}/.well-known/jwks.json", ar("es-app"));
    let mut keys = 0;
    for _ in 0..100 {
        keys = t.get(&jwks_path, None).await.ok(200)["keys"]
            .as_array()
            .unwrap()
            .len();
        if keys == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(keys, 2, "the old and the new key are published");

    let new = t.anon("es-app").await;
    let new_access = new["access_token"].as_str().unwrap().to_string();
    assert_ne!(header(&new_access).kid.unwrap(), old_kid);
    verify_offline(&t, "es-app", &new_access).await.unwrap();
    // Tokens the old key signed keep working until they expire.
    verify_offline(&t, "es-app", &old_access).await.unwrap();
    t.get(&format!("{BR}/auth/profile"), Some(&old_access))
        .await
        .ok(200);

    // Once the last token it can have signed has expired, the old key is withdrawn.
    t.srv.advance_clock(61);
    let after = t.get(&jwks_path, None).await;
    let kids: Vec<String> = after.ok(200)["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kids.len(), 1);
    assert_ne!(kids[0], old_kid);
    t.srv.shutdown().await;
}
