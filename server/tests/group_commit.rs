//! Writes under concurrency, on both backends: every write answered is kept, a write that
//! fails (a taken email) takes nobody else's with it, and on SQLite concurrent writes share
//! commits (group commit: one fsync for all the writes waiting, store/sqlite.rs).

mod common;

use serde_json::json;

use common::{BR, adm, ar, start};

/// Runs every future at once on the runtime's threads; their outputs in order.
async fn join_all<T: Send + 'static>(
    futs: Vec<impl std::future::Future<Output = T> + Send + 'static>,
) -> Vec<T> {
    let handles: Vec<_> = futs.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_logins_are_all_kept_and_share_commits_on_sqlite() {
    let t = std::sync::Arc::new(start().await);
    let admin = t.admin().await;
    let before = t
        .get(&format!("{}/metrics", adm("rot-app")), Some(&admin))
        .await
        .ok(200)["database"]
        .clone();
    let logins = (0..64)
        .map(|_| {
            let t = t.clone();
            async move { t.anon("rot-app").await }
        })
        .collect();
    let answers = join_all(logins).await;
    // Every answered login is kept: its user exists and its refresh token refreshes.
    for a in &answers {
        let id = a["user_id"].as_str().expect("a user id");
        t.get(&format!("{}/users/{id}", adm("rot-app")), Some(&admin))
            .await
            .ok(200);
        t.refresh(a["refresh_token"].as_str().unwrap())
            .await
            .ok(201);
    }
    let after = t
        .get(&format!("{}/metrics", adm("rot-app")), Some(&admin))
        .await
        .ok(200)["database"]
        .clone();
    let delta = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    assert!(
        delta("writes") >= 128,
        "64 logins and 64 refreshes: {after}"
    );
    if after["backend"] == "sqlite" {
        assert!(
            delta("commits") < delta("writes"),
            "concurrent writes share commits on SQLite: {before} -> {after}"
        );
    } else {
        assert_eq!(after["backend"], "postgres", "{after}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failed_write_does_not_undo_the_writes_committed_with_it() {
    let t = std::sync::Arc::new(start().await);
    let refresh = t.anon("test-app").await["refresh_token"]
        .as_str()
        .unwrap()
        .to_string();
    // 24 API keys at once: 16 distinct names, and 8 of one more name, of which exactly one
    // may win (409 for the others); the winners are committed with the losers' rollbacks.
    let mut names: Vec<String> = (0..16).map(|i| format!("key-{i}")).collect();
    names.extend((0..8).map(|_| "same".to_string()));
    let creations = names
        .iter()
        .cloned()
        .map(|name| {
            let (t, refresh) = (t.clone(), refresh.clone());
            async move {
                let r = t
                    .post(
                        &format!("{BR}/auth/api_keys"),
                        json!({ "name": name }),
                        Some(&refresh),
                    )
                    .await;
                (name, r.status, r.body)
            }
        })
        .collect();
    let results = join_all(creations).await;
    let won_same = results
        .iter()
        .filter(|(n, s, _)| n == "same" && *s == 201)
        .count();
    assert_eq!(won_same, 1, "{results:?}");
    for (name, status, body) in &results {
        if name == "same" && *status != 201 {
            assert_eq!(*status, 409, "{body}");
            assert_eq!(body["error_code"], "APIKeyAlreadyExists");
        } else if name != "same" {
            assert_eq!(*status, 201, "{name}: {body}");
        }
    }
    // Exactly the 17 winners are stored, and each logs in.
    let listed = t
        .get(&format!("{BR}/auth/api_keys"), Some(&refresh))
        .await
        .ok(200)
        .clone();
    let mut stored: Vec<String> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap().to_string())
        .collect();
    stored.sort();
    let mut expected: Vec<String> = names.iter().take(17).cloned().collect();
    expected.sort();
    assert_eq!(stored, expected);
    for (_, _, body) in results.iter().filter(|(_, s, _)| *s == 201) {
        let key = body["key"].as_str().unwrap();
        t.post(
            &format!("{}/auth/providers/api-key/login", ar("test-app")),
            json!({ "key": key }),
            None,
        )
        .await
        .ok(200);
    }
}
