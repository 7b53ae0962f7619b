//! Users see and end their own sessions (#25, PROTOCOL.md "Sessions of a user"): the list, one
//! revocation, the other_devices and everywhere scopes, API-key sessions, and what a revoked
//! device sees. Both back ends (scripts/test-all's PostgreSQL pass).

mod common;

use common::*;
use serde_json::{Value, json};

fn s(v: &Value, k: &str) -> String {
    v[k].as_str()
        .unwrap_or_else(|| panic!("no {k} in {v}"))
        .to_string()
}

/// A login of custom-function user `name` from a device whose document says `platform`.
async fn device_login(t: &T, name: &str, platform: &str) -> Value {
    t.login(
        "test-app",
        "custom-function",
        json!({
            "username": name,
            "options": {"device": {
                "appId": "test-app",
                "platform": platform,
                "platformVersion": "17.1",
                "sdk": "sessionkit-swift",
                "sdkVersion": "1.2.3",
                "cpuArch": "arm64",
                "deviceName": format!("{platform} phone"),
                "appVersion": "2.4.0 (118)",
                "deviceId": "000000000000000000000000",
            }},
        }),
    )
    .await
}

async fn list(t: &T, refresh: &str) -> Vec<Value> {
    t.get(&format!("{BR}/auth/sessions"), Some(refresh))
        .await
        .ok(200)
        .as_array()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn the_list_shows_each_device_once_and_marks_the_callers() {
    let t = start().await;
    let a = device_login(&t, "ann", "iOS").await;
    let b = device_login(&t, "ann", "Android").await;
    assert_eq!(a["user_id"], b["user_id"]);
    let rt_a = s(&a, "refresh_token");
    let r = t.get(&format!("{BR}/auth/sessions"), Some(&rt_a)).await;
    let text = r.body.to_string();
    let sessions = r.ok(200).as_array().unwrap().clone();
    assert_eq!(sessions.len(), 2, "{sessions:?}");
    let (first, second) = (&sessions[0], &sessions[1]);
    assert_eq!(first["current"], true, "{first}");
    assert_eq!(second["current"], false, "{second}");
    assert_eq!(first["provider_type"], "custom-function");
    assert_eq!(first["ip"], "127.0.0.1");
    assert_eq!(
        first["device"],
        json!({"platform": "iOS", "platform_version": "17.1", "sdk": "sessionkit-swift",
               "sdk_version": "1.2.3", "cpu_arch": "arm64", "device_name": "iOS phone",
               "app_version": "2.4.0 (118)"})
    );
    assert_eq!(second["device"]["platform"], "Android");
    assert!(first["created"].as_i64().unwrap() > 0);
    assert!(first["last_used"].as_i64().unwrap() >= first["created"].as_i64().unwrap());
    assert!(first.get("api_key").is_none());
    // No secret: neither token, nor anything named like one.
    for secret in [rt_a.as_str(), b["refresh_token"].as_str().unwrap()] {
        assert!(!text.contains(secret), "a token in the list: {text}");
    }
    assert!(!text.contains("token") && !text.contains("hash"), "{text}");
    // The other device sees the same sessions, itself as current.
    let from_b = list(&t, &s(&b, "refresh_token")).await;
    assert_eq!(from_b[1]["current"], true);
    assert_eq!(from_b[0]["id"], first["id"]);
    // A refresh moves last_used; another user's sessions are not listed.
    t.srv.advance_clock(100);
    t.refresh(&s(&b, "refresh_token")).await.ok(201);
    device_login(&t, "bob", "iOS").await;
    let after = list(&t, &rt_a).await;
    assert_eq!(after.len(), 2);
    assert!(
        after[1]["last_used"].as_i64().unwrap() >= after[1]["created"].as_i64().unwrap() + 100,
        "{after:?}"
    );
    assert_eq!(after[0]["last_used"], first["last_used"]);
    // An access token is not the credential here (like API keys: the refresh token).
    t.get(&format!("{BR}/auth/sessions"), Some(&s(&a, "access_token")))
        .await
        .err(401, "InvalidSession");
}

#[tokio::test]
async fn revoking_another_device_ends_it_at_its_next_call_and_refresh() {
    let t = start().await;
    let a = device_login(&t, "cat", "iOS").await;
    let b = device_login(&t, "cat", "Android").await;
    let rt_a = s(&a, "refresh_token");
    let other = list(&t, &rt_a)
        .await
        .into_iter()
        .find(|x| x["current"] == false)
        .unwrap();
    let path = format!("{BR}/auth/sessions/{}", s(&other, "id"));
    t.delete(&path, Some(&rt_a)).await.ok(204);
    // B's access token is refused at once, and its refresh says why.
    t.get(&format!("{BR}/auth/profile"), Some(&s(&b, "access_token")))
        .await
        .err(401, "InvalidSession");
    t.refresh(&s(&b, "refresh_token"))
        .await
        .reason("InvalidSession", "revoked");
    // A is untouched.
    t.get(&format!("{BR}/auth/profile"), Some(&s(&a, "access_token")))
        .await
        .ok(200);
    t.refresh(&rt_a).await.ok(201);
    let left = list(&t, &rt_a).await;
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["current"], true);
    // Twice, an unknown id, a malformed one: 404.
    t.delete(&path, Some(&rt_a))
        .await
        .err(404, "SessionNotFound");
    t.delete(
        &format!("{BR}/auth/sessions/000000000000000000000000"),
        Some(&rt_a),
    )
    .await
    .err(404, "SessionNotFound");
    t.delete(&format!("{BR}/auth/sessions/x%20y"), Some(&rt_a))
        .await
        .err(404, "SessionNotFound");
}

#[tokio::test]
async fn another_users_session_id_cannot_be_revoked_or_told_apart_from_none() {
    let t = start().await;
    let mine = device_login(&t, "dan", "iOS").await;
    let theirs = device_login(&t, "eve", "iOS").await;
    let their_id = s(&list(&t, &s(&theirs, "refresh_token")).await[0], "id");
    let r = t
        .delete(
            &format!("{BR}/auth/sessions/{their_id}"),
            Some(&s(&mine, "refresh_token")),
        )
        .await;
    r.err(404, "SessionNotFound");
    let unknown = t
        .delete(
            &format!("{BR}/auth/sessions/111111111111111111111111"),
            Some(&s(&mine, "refresh_token")),
        )
        .await;
    assert_eq!(
        r.body, unknown.body,
        "a foreign id answers like an unknown one"
    );
    t.refresh(&s(&theirs, "refresh_token")).await.ok(201);
}

#[tokio::test]
async fn other_devices_keeps_the_caller_and_everywhere_ends_all() {
    let t = start().await;
    let a = device_login(&t, "fay", "iOS").await;
    let b = device_login(&t, "fay", "Android").await;
    let c = device_login(&t, "fay", "macOS").await;
    let control = device_login(&t, "gil", "iOS").await;
    let rt_a = s(&a, "refresh_token");
    let r = t
        .delete(
            &format!("{BR}/auth/sessions?scope=other_devices"),
            Some(&rt_a),
        )
        .await;
    assert_eq!(r.ok(200)["revoked"], 2);
    for x in [&b, &c] {
        t.refresh(&s(x, "refresh_token"))
            .await
            .reason("InvalidSession", "revoked");
    }
    t.refresh(&rt_a).await.ok(201);
    assert_eq!(list(&t, &rt_a).await.len(), 1);
    // Everywhere: this device too.
    let d = device_login(&t, "fay", "Linux").await;
    let r = t
        .delete(&format!("{BR}/auth/sessions?scope=everywhere"), Some(&rt_a))
        .await;
    assert_eq!(r.ok(200)["revoked"], 2);
    for x in [&a, &d] {
        t.refresh(&s(x, "refresh_token"))
            .await
            .reason("InvalidSession", "revoked");
    }
    t.refresh(&s(&control, "refresh_token")).await.ok(201);
    // A scope is required and must be one of the two.
    let e = device_login(&t, "fay", "iOS").await;
    for bad in ["", "?scope=this_device", "?scope=all", "?scope="] {
        t.delete(
            &format!("{BR}/auth/sessions{bad}"),
            Some(&s(&e, "refresh_token")),
        )
        .await
        .err(400, "BadRequest");
    }
}

#[tokio::test]
async fn an_api_key_session_is_listed_with_its_key_and_cannot_end_others() {
    let t = start().await;
    let owner = device_login(&t, "hal", "iOS").await;
    let rt_owner = s(&owner, "refresh_token");
    let key = t
        .post(
            &format!("{BR}/auth/api_keys"),
            json!({"name": "build-server"}),
            Some(&rt_owner),
        )
        .await;
    let key = key.ok(201).clone();
    let k = t
        .login("test-app", "api-key", json!({"key": key["key"]}))
        .await;
    let rt_k = s(&k, "refresh_token");
    let sessions = list(&t, &rt_k).await;
    assert_eq!(sessions.len(), 2);
    let listed = sessions.iter().find(|x| x["current"] == true).unwrap();
    assert_eq!(listed["provider_type"], "api-key");
    assert_eq!(
        listed["api_key"],
        json!({"_id": key["_id"], "name": "build-server"})
    );
    assert!(
        !sessions
            .iter()
            .any(|x| x.to_string().contains(key["key"].as_str().unwrap()))
    );
    let owner_id = s(
        sessions.iter().find(|x| x["current"] == false).unwrap(),
        "id",
    );
    t.delete(&format!("{BR}/auth/sessions/{owner_id}"), Some(&rt_k))
        .await
        .err(403, "Forbidden");
    for scope in ["other_devices", "everywhere"] {
        t.delete(&format!("{BR}/auth/sessions?scope={scope}"), Some(&rt_k))
            .await
            .err(403, "Forbidden");
    }
    t.refresh(&rt_owner).await.ok(201);
    // The owner ends the key's session; the key stays and logs in again.
    let key_session = s(
        &list(&t, &rt_owner)
            .await
            .into_iter()
            .find(|x| x["current"] == false)
            .unwrap(),
        "id",
    );
    t.delete(
        &format!("{BR}/auth/sessions/{key_session}"),
        Some(&rt_owner),
    )
    .await
    .ok(204);
    t.refresh(&rt_k).await.reason("InvalidSession", "revoked");
    let keys = t.get(&format!("{BR}/auth/api_keys"), Some(&rt_owner)).await;
    assert_eq!(keys.ok(200).as_array().unwrap().len(), 1);
    t.login("test-app", "api-key", json!({"key": key["key"]}))
        .await;
}

#[tokio::test]
async fn the_device_document_is_cut_and_cleaned_and_anonymous_sessions_say_so() {
    let t = start().await;
    let long = "x".repeat(500);
    let u = t
        .login(
            "test-app",
            "custom-function",
            json!({
                "username": "ivy",
                "options": {"device": {
                    "platform": format!("Linux\u{202e}\n{long}"),
                    "sdkVersion": 7,
                    "secret": "not listed",
                    "deviceName": "   ",
                }},
            }),
        )
        .await;
    let sessions = list(&t, &s(&u, "refresh_token")).await;
    let device = &sessions[0]["device"];
    let platform = device["platform"].as_str().unwrap();
    assert_eq!(platform.chars().count(), 100, "{platform}");
    assert!(
        platform.starts_with("Linuxx"),
        "control and format characters removed: {platform:?}"
    );
    assert_eq!(device.as_object().unwrap().len(), 1, "{device}");
    // No device document at all: an empty one.
    let anon = t.anon("test-app").await;
    let sessions = list(&t, &s(&anon, "refresh_token")).await;
    assert_eq!(sessions[0]["device"], json!({}));
    assert_eq!(sessions[0]["provider_type"], "anon-user");
}
