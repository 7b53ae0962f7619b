//! Client API v2.0 against a real server: location, login for every provider, link, profile,
//! delete, API keys, email/password flows, functions, and bad input.

mod common;

use common::*;
use reqwest::Method;
use serde_json::{Value, json};

fn login_path(app: &str, provider: &str) -> String {
    format!("{}/auth/providers/{provider}/login", ar(app))
}
fn up(app: &str, op: &str) -> String {
    format!("{}/auth/providers/local-userpass/{op}", ar(app))
}

#[tokio::test]
async fn location_uses_host_header_and_rejects_unknown_app() {
    let t = start().await;
    let r = t.get(&format!("{}/location", ar("test-app")), None).await;
    let host = t.base.clone();
    assert_eq!(r.ok(200)["hostname"], host);
    assert_eq!(r.body["ws_hostname"], host.replace("http://", "ws://"));
    assert_eq!(r.body["deployment_model"], "GLOBAL");
    assert_eq!(r.body["location"], "US-VA");
    let r = t.get(&format!("{}/location", ar("nope")), None).await;
    r.err(404, "InvalidParameter");
    assert_eq!(
        r.body["error"],
        "cannot find app using Client App ID 'nope'"
    );
    assert_eq!(t.srv.request_count("location"), 2);
}

#[tokio::test]
async fn public_url_overrides_location_hostname() {
    let t = start_with(&CONFIG.replace(
        "test_clock = true",
        "test_clock = true\npublic_url = \"https://auth.example.com\"",
    ))
    .await;
    let r = t.get(&format!("{}/location", ar("test-app")), None).await;
    assert_eq!(r.ok(200)["hostname"], "https://auth.example.com");
    assert_eq!(r.body["ws_hostname"], "wss://auth.example.com");
}

#[tokio::test]
async fn anonymous_login_creates_a_new_user_each_time() {
    let t = start().await;
    let a = t
        .login(
            "test-app",
            "anon-user",
            json!({"provider": "anon-user", "options": {"device": {"platform": "x"}}}),
        )
        .await;
    let b = t.anon("test-app").await;
    for v in [&a, &b] {
        for k in ["user_id", "device_id"] {
            let s = v[k].as_str().unwrap();
            assert!(
                s.len() == 24 && s.bytes().all(|c| c.is_ascii_hexdigit()),
                "{k}: {s}"
            );
        }
    }
    assert_ne!(a["user_id"], b["user_id"]);
    let c = claims(a["access_token"].as_str().unwrap());
    assert_eq!(c["typ"], "access");
    assert_eq!(c["sub"], a["user_id"]);
    assert_eq!(c["baas_device_id"], a["device_id"]);
    assert_eq!(c["iss"], "test-app");
    assert!(c["domain_id"].is_string());
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        1800
    );
    assert!(c.get("user_data").is_none());
    let rc = claims(a["refresh_token"].as_str().unwrap());
    assert_eq!(rc["typ"], "refresh");
    assert_eq!(rc["sub"], a["user_id"]);
    // Anonymous refresh tokens live 90 days by default.
    assert_eq!(
        rc["exp"].as_i64().unwrap() - rc["iat"].as_i64().unwrap(),
        90 * 24 * 3600
    );
    let p = t
        .get(&format!("{BR}/auth/profile"), a["access_token"].as_str())
        .await;
    let p = p.ok(200);
    assert_eq!(p["user_id"], a["user_id"]);
    assert_eq!(p["type"], "normal");
    assert_eq!(p["domain_id"], c["domain_id"]);
    assert_eq!(p["identities"][0]["provider_type"], "anon-user");
    assert!(p["identities"][0]["id"].is_string());
    assert!(p["identities"][0]["provider_id"].is_string());
    assert_eq!(p["data"], json!({}));
    assert_eq!(t.srv.request_count("login"), 2);
    assert_eq!(t.srv.request_count("profile"), 1);
}

#[tokio::test]
async fn device_id_from_options_is_used_when_an_object_id() {
    let t = start().await;
    let id = "0123456789abcdef01234567";
    let a = t
        .login(
            "test-app",
            "anon-user",
            json!({"options": {"device": {"deviceId": id}}}),
        )
        .await;
    assert_eq!(a["device_id"], id);
    let b = t
        .login(
            "test-app",
            "anon-user",
            json!({"options": {"device": {"deviceId": {"$oid": id}}}}),
        )
        .await;
    assert_eq!(b["device_id"], id);
    for bad in [json!("000000000000000000000000"), json!("xyz"), json!(5)] {
        let c = t
            .login(
                "test-app",
                "anon-user",
                json!({"options": {"device": {"deviceId": bad}}}),
            )
            .await;
        assert_ne!(c["device_id"], id);
        assert_ne!(c["device_id"], "000000000000000000000000");
        assert_eq!(c["device_id"].as_str().unwrap().len(), 24);
    }
}

#[tokio::test]
async fn disabled_and_unknown_providers_and_apps() {
    let t = start().await;
    t.post(&login_path("bare-app", "anon-user"), json!({}), None)
        .await
        .err(404, "AuthProviderNotFound");
    t.post(&login_path("test-app", "oauth2-google"), json!({}), None)
        .await
        .err(404, "AuthProviderNotFound");
    t.post(
        &up("bare-app", "register"),
        json!({"email": "a@b.c", "password": "secret1"}),
        None,
    )
    .await
    .err(404, "AuthProviderNotFound");
    let r = t
        .post(&login_path("ghost", "anon-user"), json!({}), None)
        .await;
    r.err(404, "InvalidParameter");
    assert_eq!(
        r.body["error"],
        "cannot find app using Client App ID 'ghost'"
    );
}

#[tokio::test]
async fn bad_bodies_are_400_or_413_never_500() {
    let t = start().await;
    let p = login_path("test-app", "local-userpass");
    let r = t
        .raw(Method::POST, &p, Some(b"{not json".to_vec()), None)
        .await;
    r.err(400, "BadRequest");
    t.raw(Method::POST, &p, Some(b"[1,2]".to_vec()), None)
        .await
        .err(400, "BadRequest");
    let r = t.post(&p, json!({"password": "secret1"}), None).await;
    r.err(400, "BadRequest");
    assert!(
        r.body["error"].as_str().unwrap().contains("username"),
        "{}",
        r.body
    );
    let r = t
        .post(&p, json!({"username": 5, "password": "secret1"}), None)
        .await;
    r.err(400, "BadRequest");
    assert!(r.body["error"].as_str().unwrap().contains("username"));
    let r = t
        .post(
            &login_path("test-app", "custom-token"),
            json!({"token": []}),
            None,
        )
        .await;
    r.err(400, "BadRequest");
    assert!(r.body["error"].as_str().unwrap().contains("token"));
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat((1 << 20) + 10));
    t.raw(
        Method::POST,
        &login_path("test-app", "anon-user"),
        Some(big.into_bytes()),
        None,
    )
    .await
    .err(413, "BadRequest");
    let r = t
        .post(
            &format!("{}/functions/call", ar("test-app")),
            json!({}),
            None,
        )
        .await;
    r.err(401, "InvalidSession");
    // Unknown routes and wrong methods answer JSON too.
    t.get("/nowhere", None).await.err(404, "NotFound");
    t.raw(Method::PUT, &format!("{BR}/auth/session"), None, None)
        .await
        .err(405, "BadRequest");
    t.get(&login_path("test-app", "anon-user"), None)
        .await
        .err(405, "BadRequest");
}

#[tokio::test]
async fn custom_token_login_checks_signature_audience_and_expiry() {
    let t = start().await;
    let now = t.srv.now();
    let good = json!({"sub": "ext-1", "aud": "test-app", "exp": now + 600, "name": "Ada", "email": "ada@x.io", "other": 1});
    let a = t
        .login(
            "test-app",
            "custom-token",
            json!({"token": custom_jwt("custom-secret", good.clone())}),
        )
        .await;
    let p = t
        .get(&format!("{BR}/auth/profile"), a["access_token"].as_str())
        .await;
    let p = p.ok(200);
    assert_eq!(p["identities"][0]["provider_type"], "custom-token");
    assert_eq!(p["identities"][0]["id"], "ext-1");
    assert_eq!(p["data"], json!({"name": "Ada", "email": "ada@x.io"}));
    // Same sub, same user.
    let b = t
        .login(
            "test-app",
            "custom-token",
            json!({"token": custom_jwt("custom-secret", good.clone())}),
        )
        .await;
    assert_eq!(a["user_id"], b["user_id"]);

    let path = login_path("test-app", "custom-token");
    let bad = |claims: Value, key: &str| json!({"token": custom_jwt(key, claims)});
    t.post(&path, bad(good.clone(), "wrong-key"), None)
        .await
        .err(401, "AuthError");
    let mut wrong_aud = good.clone();
    wrong_aud["aud"] = json!("other-app");
    t.post(&path, bad(wrong_aud, "custom-secret"), None)
        .await
        .err(401, "AuthError");
    let mut no_aud = good.clone();
    no_aud.as_object_mut().unwrap().remove("aud");
    t.post(&path, bad(no_aud, "custom-secret"), None)
        .await
        .err(401, "AuthError");
    let mut expired = good.clone();
    expired["exp"] = json!(now - 1);
    t.post(&path, bad(expired, "custom-secret"), None)
        .await
        .err(401, "AuthError");
    let mut no_sub = good.clone();
    no_sub.as_object_mut().unwrap().remove("sub");
    t.post(&path, bad(no_sub, "custom-secret"), None)
        .await
        .err(401, "AuthError");
    // alg none: header {"alg":"none"} and an empty signature.
    use base64::Engine;
    let b64 = |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "JWT"})),
        b64(&good)
    );
    t.post(&path, json!({"token": none}), None)
        .await
        .err(401, "AuthError");
    t.post(&path, json!({"token": "garbage"}), None)
        .await
        .err(401, "AuthError");
    // The token expires on the server clock.
    t.srv.advance_clock(601);
    t.post(&path, bad(good, "custom-secret"), None)
        .await
        .err(401, "AuthError");
}

#[tokio::test]
async fn custom_token_metadata_fields_are_configurable() {
    let t = start().await;
    let now = t.srv.now();
    let tok = custom_jwt(
        "custom-secret",
        json!({"sub": "u", "exp": now + 60, "name": "N", "email": "e", "team": "t"}),
    );
    let a = t
        .login("auto-app", "custom-token", json!({"token": tok}))
        .await;
    let p = t
        .get(&format!("{BR}/auth/profile"), a["access_token"].as_str())
        .await;
    assert_eq!(p.ok(200)["data"], json!({"name": "N", "team": "t"}));
}

#[tokio::test]
async fn custom_function_id_field() {
    let t = start().await;
    let a = t
        .login(
            "test-app",
            "custom-function",
            json!({"username": "bob", "options": {"device": {}}}),
        )
        .await;
    let b = t
        .login("test-app", "custom-function", json!({"username": "bob"}))
        .await;
    assert_eq!(a["user_id"], b["user_id"]);
    let c = t
        .login("test-app", "custom-function", json!({"username": "carol"}))
        .await;
    assert_ne!(a["user_id"], c["user_id"]);
    let path = login_path("test-app", "custom-function");
    t.post(&path, json!({"name": "bob"}), None)
        .await
        .err(401, "AuthError");
    t.post(&path, json!({"username": ""}), None)
        .await
        .err(401, "AuthError");
    t.post(&path, json!({"username": 7}), None)
        .await
        .err(401, "AuthError");
}

/// A tiny webhook: accepts `{"user":"ok-*"}` as that id, answers 403 for "deny", `{}` for
/// "noid" and garbage for "garbage".
async fn webhook() -> String {
    use axum::routing::post;
    async fn hook(axum::Json(v): axum::Json<Value>) -> axum::response::Response {
        use axum::response::IntoResponse;
        let user = v["user"].as_str().unwrap_or_default().to_string();
        assert!(
            v.get("options").is_none(),
            "options must not reach the function"
        );
        match user.as_str() {
            "deny" => (axum::http::StatusCode::FORBIDDEN, "no").into_response(),
            "noid" => axum::Json(json!({})).into_response(),
            "garbage" => (axum::http::StatusCode::OK, "<html>").into_response(),
            u => axum::Json(json!({"id": u})).into_response(),
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().route("/auth", post(hook)))
            .await
            .unwrap();
    });
    format!("http://{addr}/auth")
}

#[tokio::test]
async fn custom_function_webhook_accept_reject_and_down() {
    let hook = webhook().await;
    // A port that was free a moment ago: nothing listens there.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/auth", l.local_addr().unwrap())
    };
    let toml = format!(
        "test_clock = true\n[admin]\npublic_key = \"admin-pub\"\nprivate_key = \"admin-priv\"\n\
         [[app]]\nid = \"hook\"\n[app.providers.custom-function]\nwebhook_url = \"{hook}\"\n\
         [[app]]\nid = \"dead\"\n[app.providers.custom-function]\nwebhook_url = \"{dead}\"\n"
    );
    let t = start_with(&toml).await;
    let a = t
        .login(
            "hook",
            "custom-function",
            json!({"user": "ok-1", "options": {"device": {}}}),
        )
        .await;
    let p = t
        .get(&format!("{BR}/auth/profile"), a["access_token"].as_str())
        .await;
    assert_eq!(p.ok(200)["identities"][0]["id"], "ok-1");
    let path = login_path("hook", "custom-function");
    t.post(&path, json!({"user": "deny"}), None)
        .await
        .err(401, "AuthError");
    t.post(&path, json!({"user": "noid"}), None)
        .await
        .err(401, "AuthError");
    t.post(&path, json!({"user": "garbage"}), None)
        .await
        .err(502, "FunctionExecutionError");
    t.post(
        &login_path("dead", "custom-function"),
        json!({"user": "x"}),
        None,
    )
    .await
    .err(502, "FunctionExecutionError");
    // No user was created by any failure.
    let admin = t.admin().await;
    let users = t.get(&format!("{}/users", adm("hook")), Some(&admin)).await;
    assert_eq!(users.ok(200).as_array().unwrap().len(), 1);
    let users = t.get(&format!("{}/users", adm("dead")), Some(&admin)).await;
    assert_eq!(users.ok(200).as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn email_password_register_confirm_login() {
    let t = start().await;
    let app = "test-app";
    let reg = up(app, "register");
    t.post(&reg, json!({"email": "a@x.io", "password": "12345"}), None)
        .await
        .err(400, "BadRequest");
    t.post(
        &reg,
        json!({"email": "a@x.io", "password": "x".repeat(129)}),
        None,
    )
    .await
    .err(400, "BadRequest");
    t.post(&reg, json!({"email": "a@x.io"}), None)
        .await
        .err(400, "BadRequest");
    t.post(
        &reg,
        json!({"email": "a@x.io", "password": "secret1"}),
        None,
    )
    .await
    .ok(201);
    let r = t
        .post(
            &reg,
            json!({"email": "a@x.io", "password": "secret2"}),
            None,
        )
        .await;
    r.err(409, "AccountNameInUse");
    assert_eq!(r.body["error"], "name already in use");
    let login = login_path(app, "local-userpass");
    let r = t
        .post(
            &login,
            json!({"username": "a@x.io", "password": "secret1"}),
            None,
        )
        .await;
    r.err(401, "AuthError");
    assert_eq!(r.body["error"], "confirmation required");
    // Bad tokens.
    let confirm = up(app, "confirm");
    let r = t
        .post(&confirm, json!({"token": "nope", "tokenId": "nope"}), None)
        .await;
    r.err(400, "UserpassTokenInvalid");
    assert_eq!(r.body["error"], "invalid token data");
    t.post(&confirm, json!({"token": "nope"}), None)
        .await
        .err(400, "BadRequest");
    // Resend, then confirm with the newest token.
    t.post(&up(app, "confirm/send"), json!({"email": "a@x.io"}), None)
        .await
        .ok(204);
    t.post(&up(app, "confirm/call"), json!({"email": "a@x.io"}), None)
        .await
        .ok(204);
    let admin = t.admin().await;
    let mail = t.outbox(&admin, app, "a@x.io").await;
    assert_eq!(mail.len(), 3);
    assert!(
        mail.iter()
            .all(|m| m["kind"] == "confirm" && m["email"] == "a@x.io")
    );
    let m = mail.last().unwrap();
    let tok = json!({"token": m["token"], "tokenId": m["tokenId"]});
    let mut wrong = tok.clone();
    wrong["token"] = json!("x");
    t.post(&confirm, wrong, None)
        .await
        .err(400, "UserpassTokenInvalid");
    t.post(&confirm, tok.clone(), None).await.ok(204);
    t.post(&confirm, tok, None)
        .await
        .err(400, "UserpassTokenInvalid");
    let r = t
        .post(&up(app, "confirm/send"), json!({"email": "a@x.io"}), None)
        .await;
    r.err(409, "UserAlreadyConfirmed");
    assert_eq!(r.body["error"], "already confirmed");
    let r = t
        .post(
            &up(app, "confirm/send"),
            json!({"email": "ghost@x.io"}),
            None,
        )
        .await;
    r.err(404, "UserNotFound");
    assert_eq!(r.body["error"], "user not found");

    let a = t
        .login(
            app,
            "local-userpass",
            json!({"username": "a@x.io", "password": "secret1"}),
        )
        .await;
    let b = t
        .login(
            app,
            "local-userpass",
            json!({"username": "a@x.io", "password": "secret1"}),
        )
        .await;
    assert_eq!(a["user_id"], b["user_id"]);
    let p = t
        .get(&format!("{BR}/auth/profile"), a["access_token"].as_str())
        .await;
    let p = p.ok(200);
    assert_eq!(p["data"]["email"], "a@x.io");
    assert_eq!(p["identities"][0]["provider_type"], "local-userpass");
    t.post(
        &login,
        json!({"username": "a@x.io", "password": "wrong12"}),
        None,
    )
    .await
    .err(401, "InvalidPassword");
    t.post(
        &login,
        json!({"username": "b@x.io", "password": "secret1"}),
        None,
    )
    .await
    .err(401, "InvalidPassword");
}

#[tokio::test]
async fn email_password_reset_flows() {
    let t = start().await;
    let app = "test-app";
    t.confirmed_user("r@x.io", "secret1").await;
    let a = t
        .login(
            app,
            "local-userpass",
            json!({"username": "r@x.io", "password": "secret1"}),
        )
        .await;
    t.post(&up(app, "reset/send"), json!({"email": "ghost@x.io"}), None)
        .await
        .err(404, "UserNotFound");
    t.post(&up(app, "reset/send"), json!({"email": "r@x.io"}), None)
        .await
        .ok(204);
    let admin = t.admin().await;
    let m = t
        .outbox(&admin, app, "r@x.io")
        .await
        .last()
        .unwrap()
        .clone();
    assert_eq!(m["kind"], "reset");
    let reset = up(app, "reset");
    t.post(
        &reset,
        json!({"password": "newpass1", "token": "bad", "tokenId": m["tokenId"]}),
        None,
    )
    .await
    .err(400, "UserpassTokenInvalid");
    t.post(
        &reset,
        json!({"password": "short", "token": m["token"], "tokenId": m["tokenId"]}),
        None,
    )
    .await
    .err(400, "BadRequest");
    t.post(
        &reset,
        json!({"password": "newpass1", "token": m["token"], "tokenId": m["tokenId"]}),
        None,
    )
    .await
    .ok(204);
    // Single use.
    t.post(
        &reset,
        json!({"password": "newpass2", "token": m["token"], "tokenId": m["tokenId"]}),
        None,
    )
    .await
    .err(400, "UserpassTokenInvalid");
    let login = login_path(app, "local-userpass");
    t.post(
        &login,
        json!({"username": "r@x.io", "password": "secret1"}),
        None,
    )
    .await
    .err(401, "InvalidPassword");
    t.login(
        app,
        "local-userpass",
        json!({"username": "r@x.io", "password": "newpass1"}),
    )
    .await;
    // A reset ends the sessions that existed before it.
    t.refresh(a["refresh_token"].as_str().unwrap())
        .await
        .reason("InvalidSession", "revoked");

    // reset/call: "pending" (default) mails a reset token and keeps the password.
    let call = up(app, "reset/call");
    t.post(
        &call,
        json!({"email": "r@x.io", "password": "callpass1", "arguments": []}),
        None,
    )
    .await
    .ok(204);
    let kinds: Vec<Value> = t
        .outbox(&admin, app, "r@x.io")
        .await
        .iter()
        .map(|m| m["kind"].clone())
        .collect();
    assert_eq!(
        kinds,
        vec![json!("confirm"), json!("reset"), json!("reset")]
    );
    t.login(
        app,
        "local-userpass",
        json!({"username": "r@x.io", "password": "newpass1"}),
    )
    .await;
    t.post(
        &call,
        json!({"email": "ghost@x.io", "password": "callpass1"}),
        None,
    )
    .await
    .err(404, "UserNotFound");
    t.post(
        &call,
        json!({"email": "r@x.io", "password": "callpass1", "arguments": 3}),
        None,
    )
    .await
    .err(400, "BadRequest");
}

#[tokio::test]
async fn reset_function_success_and_fail_modes() {
    let t = start().await;
    t.post(
        &up("auto-app", "register"),
        json!({"email": "s@x.io", "password": "secret1"}),
        None,
    )
    .await
    .ok(201);
    // auto_confirm (default true): log in at once; confirmation resend says already confirmed.
    t.login(
        "auto-app",
        "local-userpass",
        json!({"username": "s@x.io", "password": "secret1"}),
    )
    .await;
    t.post(
        &up("auto-app", "confirm/send"),
        json!({"email": "s@x.io"}),
        None,
    )
    .await
    .err(409, "UserAlreadyConfirmed");
    t.post(
        &up("auto-app", "reset/call"),
        json!({"email": "s@x.io", "password": "changed1", "arguments": ["a"]}),
        None,
    )
    .await
    .ok(204);
    t.login(
        "auto-app",
        "local-userpass",
        json!({"username": "s@x.io", "password": "changed1"}),
    )
    .await;

    t.post(
        &up("fail-app", "register"),
        json!({"email": "f@x.io", "password": "secret1"}),
        None,
    )
    .await
    .ok(201);
    t.post(
        &up("fail-app", "reset/call"),
        json!({"email": "f@x.io", "password": "changed1"}),
        None,
    )
    .await
    .err(400, "BadRequest");
    t.login(
        "fail-app",
        "local-userpass",
        json!({"username": "f@x.io", "password": "secret1"}),
    )
    .await;
}

#[tokio::test]
async fn api_keys_lifecycle() {
    let t = start().await;
    let u = t
        .login(
            "test-app",
            "custom-function",
            json!({"username": "keyowner"}),
        )
        .await;
    let rt = u["refresh_token"].as_str().unwrap();
    let keys = format!("{BR}/auth/api_keys");
    let r = t.post(&keys, json!({"name": "k1"}), Some(rt)).await;
    let doc = r.ok(201).clone();
    let key = doc["key"].as_str().unwrap().to_string();
    assert_eq!(key.len(), 64);
    assert!(key.chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(doc["name"], "k1");
    assert_eq!(doc["disabled"], false);
    let id = doc["_id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 24);
    t.post(&keys, json!({"name": "k1"}), Some(rt))
        .await
        .err(409, "APIKeyAlreadyExists");
    t.post(&keys, json!({}), Some(rt))
        .await
        .err(400, "BadRequest");
    t.post(&keys, json!({"name": 3}), Some(rt))
        .await
        .err(400, "BadRequest");
    // The access token is the wrong kind here.
    t.post(&keys, json!({"name": "k2"}), u["access_token"].as_str())
        .await
        .err(401, "InvalidSession");
    t.get(&keys, None).await.err(401, "InvalidSession");

    let list = t.get(&keys, Some(rt)).await;
    let list = list.ok(200).as_array().unwrap().clone();
    assert_eq!(
        list,
        vec![json!({"_id": id, "name": "k1", "disabled": false})]
    );
    let one = t.get(&format!("{keys}/{id}"), Some(rt)).await;
    assert_eq!(
        one.ok(200),
        &json!({"_id": id, "name": "k1", "disabled": false})
    );
    t.get(&format!("{keys}/not-an-id"), Some(rt))
        .await
        .err(404, "APIKeyNotFound");
    t.get(&format!("{keys}/0123456789abcdef01234567"), Some(rt))
        .await
        .err(404, "APIKeyNotFound");

    // Another user cannot see or touch it.
    let other = t
        .login("test-app", "custom-function", json!({"username": "other"}))
        .await;
    let ort = other["refresh_token"].as_str().unwrap();
    let r = t.get(&format!("{keys}/{id}"), Some(ort)).await;
    r.err(404, "APIKeyNotFound");
    assert_eq!(r.body["error"], "API key not found");
    t.delete(&format!("{keys}/{id}"), Some(ort))
        .await
        .err(404, "APIKeyNotFound");
    t.put(&format!("{keys}/{id}/disable"), None, Some(ort))
        .await
        .err(404, "APIKeyNotFound");

    // Log in with the key: the owner's user, with an api-key identity.
    let k = t.login("test-app", "api-key", json!({"key": key})).await;
    assert_eq!(k["user_id"], u["user_id"]);
    let p = t
        .get(&format!("{BR}/auth/profile"), k["access_token"].as_str())
        .await;
    let types: Vec<Value> = p.ok(200)["identities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["provider_type"].clone())
        .collect();
    assert!(types.contains(&json!("api-key")), "{types:?}");
    let kl = login_path("test-app", "api-key");
    t.post(&kl, json!({"key": "unknown"}), None)
        .await
        .err(401, "AuthError");
    t.put(&format!("{keys}/{id}/disable"), None, Some(rt))
        .await
        .ok(204);
    assert_eq!(
        t.get(&format!("{keys}/{id}"), Some(rt)).await.ok(200)["disabled"],
        true
    );
    t.post(&kl, json!({"key": key}), None)
        .await
        .err(401, "AuthError");
    t.put(&format!("{keys}/{id}/enable"), None, Some(rt))
        .await
        .ok(204);
    t.login("test-app", "api-key", json!({"key": key})).await;
    t.delete(&format!("{keys}/{id}"), Some(rt)).await.ok(204);
    t.post(&kl, json!({"key": key}), None)
        .await
        .err(401, "AuthError");
    assert_eq!(t.get(&keys, Some(rt)).await.ok(200), &json!([]));
}

#[tokio::test]
async fn functions_builtins_and_errors() {
    let t = start().await;
    let u = t.anon("test-app").await;
    let at = u["access_token"].as_str();
    let call = format!("{}/functions/call", ar("test-app"));
    assert_eq!(
        t.post(&call, json!({"name": "sum", "arguments": [1, 2, 3]}), at)
            .await
            .ok(200),
        &json!(6)
    );
    assert_eq!(
        t.post(&call, json!({"name": "sum", "arguments": [1, 0.5]}), at)
            .await
            .ok(200),
        &json!(1.5)
    );
    t.post(&call, json!({"name": "sum", "arguments": [1, "2"]}), at)
        .await
        .err(400, "BadRequest");
    let args = json!([1, "two", {"three": [3]}, null]);
    assert_eq!(
        t.post(
            &call,
            json!({"name": "echo", "arguments": args, "service": "x"}),
            at
        )
        .await
        .ok(200),
        &args
    );
    let who = t
        .post(&call, json!({"name": "whoami", "arguments": []}), at)
        .await;
    assert_eq!(
        who.ok(200),
        &json!({"user_id": u["user_id"], "custom_data": null})
    );
    let r = t
        .post(&call, json!({"name": "nope", "arguments": []}), at)
        .await;
    r.err(404, "FunctionNotFound");
    t.post(&call, json!({"arguments": []}), at)
        .await
        .err(400, "BadRequest");
    t.post(&call, json!({"name": "sum", "arguments": {}}), at)
        .await
        .err(400, "BadRequest");
    t.post(&call, json!({"name": "sum"}), u["refresh_token"].as_str())
        .await
        .err(401, "InvalidSession");
    t.post(&call, json!({"name": "sum"}), Some("not.a.jwt"))
        .await
        .err(401, "InvalidSession");
    // An access token of one app does not call another app's functions.
    t.post(
        &format!("{}/functions/call", ar("rot-app")),
        json!({"name": "sum"}),
        at,
    )
    .await
    .err(401, "InvalidSession");
}

#[tokio::test]
async fn link_identities() {
    let t = start().await;
    t.confirmed_user("l@x.io", "secret1").await;
    let anon = t.anon("test-app").await;
    let at = anon["access_token"].as_str();
    let link = |p: &str| format!("{}?link=true", login_path("test-app", p));
    let r = t
        .post(
            &link("local-userpass"),
            json!({"username": "l@x.io", "password": "secret1"}),
            at,
        )
        .await;
    let linked = r.ok(200).clone();
    assert_eq!(linked["user_id"], anon["user_id"]);
    assert!(linked["access_token"].is_string());
    let p = t.get(&format!("{BR}/auth/profile"), at).await;
    let p = p.ok(200).clone();
    assert_eq!(p["identities"].as_array().unwrap().len(), 2);
    assert_eq!(p["data"]["email"], "l@x.io");
    // Logging in with the email now gives the same user; linking again is idempotent.
    let e = t
        .login(
            "test-app",
            "local-userpass",
            json!({"username": "l@x.io", "password": "secret1"}),
        )
        .await;
    assert_eq!(e["user_id"], anon["user_id"]);
    t.post(
        &link("local-userpass"),
        json!({"username": "l@x.io", "password": "secret1"}),
        at,
    )
    .await
    .ok(200);
    // Anonymous credentials cannot be linked; an identity owned by someone else neither.
    t.post(&link("anon-user"), json!({}), at)
        .await
        .err(400, "BadRequest");
    let other = t
        .login("test-app", "custom-function", json!({"username": "taken"}))
        .await;
    let r = t
        .post(&link("custom-function"), json!({"username": "taken"}), at)
        .await;
    r.err(409, "AccountNameInUse");
    assert_ne!(other["user_id"], anon["user_id"]);
    // Wrong credentials and missing token.
    t.post(
        &link("local-userpass"),
        json!({"username": "l@x.io", "password": "nope123"}),
        at,
    )
    .await
    .err(401, "InvalidPassword");
    t.post(&link("custom-function"), json!({"username": "new"}), None)
        .await
        .err(401, "InvalidSession");
    t.post(
        &link("custom-function"),
        json!({"username": "new"}),
        anon["refresh_token"].as_str(),
    )
    .await
    .err(401, "InvalidSession");
    t.post(&link("custom-function"), json!({"username": "new"}), at)
        .await
        .ok(200);
}

#[tokio::test]
async fn delete_user_ends_everything() {
    let t = start().await;
    t.confirmed_user("d@x.io", "secret1").await;
    let u = t
        .login(
            "test-app",
            "local-userpass",
            json!({"username": "d@x.io", "password": "secret1"}),
        )
        .await;
    let at = u["access_token"].as_str();
    t.delete(&format!("{BR}/auth/delete"), u["refresh_token"].as_str())
        .await
        .err(401, "InvalidSession");
    t.delete(&format!("{BR}/auth/delete"), at).await.ok(204);
    assert_eq!(t.srv.request_count("delete"), 2);
    t.get(&format!("{BR}/auth/profile"), at)
        .await
        .err(401, "InvalidSession");
    t.delete(&format!("{BR}/auth/delete"), at)
        .await
        .err(401, "InvalidSession");
    t.refresh(u["refresh_token"].as_str().unwrap())
        .await
        .reason("InvalidSession", "deleted");
    t.post(
        &login_path("test-app", "local-userpass"),
        json!({"username": "d@x.io", "password": "secret1"}),
        None,
    )
    .await
    .err(401, "InvalidPassword");
    // The address can register again.
    t.post(
        &up("test-app", "register"),
        json!({"email": "d@x.io", "password": "secret1"}),
        None,
    )
    .await
    .ok(201);
}

/// GET /health answers 200 while the database answers; no token, no app.
#[tokio::test]
async fn health_answers_ok_without_a_token() {
    let t = common::start().await;
    let r = t.get("/health", None).await;
    assert_eq!(r.ok(200)["status"], "ok");
    t.srv.shutdown().await;
}
