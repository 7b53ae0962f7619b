//! Storage figures for BENCHMARKS.md: `App::new` restoring 1,000 users from the file store, and
//! one save of the session file (read, merge, write, fsync, rename, fsync of the directory), the
//! work a refreshed token costs. Run: `cargo bench -p sessionkit --bench storage`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use sessionkit::{App, AppConfig, StorageConfig};

const APP_ID: &str = "bench-app";

fn jwt(sub: &str, typ: &str) -> String {
    let part = |v: serde_json::Value| URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.{}",
        part(json!({"alg": "HS256", "typ": "JWT"})),
        part(json!({"sub": sub, "typ": typ, "iat": 1_700_000_000, "exp": 4_102_444_800u64})),
        URL_SAFE_NO_PAD.encode(b"benchmark-signature-bytes")
    )
}

/// A schema-2 session document with `n` logged-in users, written as the App writes it.
fn write_store(dir: &Path, n: usize) {
    let users: Vec<_> = (0..n)
        .map(|i| {
            let id = format!("{i:024x}");
            json!({
                "id": id, "rev": 1, "state": "LoggedIn",
                "access_token": jwt(&id, "access"), "refresh_token": jwt(&id, "refresh"),
                "device_id": format!("{:024x}", i + 1_000_000), "provider_type": "local-userpass",
                "identities": [{"id": format!("{:024x}", i + 2_000_000), "provider_type": "local-userpass"}],
                "profile": {"email": format!("user{i}@example.com")}
            })
        })
        .collect();
    let doc = json!({
        "schema_version": 2, "app_id": APP_ID, "rev": 1,
        "current_user_id": format!("{:024x}", 0), "recent_user_ids": [], "users": users
    });
    let store = sessionkit::FileStore::new(dir, APP_ID, None).unwrap();
    sessionkit::SessionStore::save(&store, doc.to_string().as_bytes()).unwrap();
}

fn open(dir: &Path) -> App {
    let mut config = AppConfig::new(APP_ID, "http://127.0.0.1:9");
    config.storage = StorageConfig::File {
        dir: dir.to_path_buf(),
        encryption_key: None,
    };
    App::new(config).unwrap()
}

fn bench_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sessionkit-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn storage(c: &mut Criterion) {
    let mut group = c.benchmark_group("storage");
    group
        .measurement_time(Duration::from_secs(5))
        .sample_size(50);

    let dir = bench_dir("restore");
    write_store(&dir, 1000);
    assert_eq!(open(&dir).all_users().len(), 1000);
    group.bench_function("App::new restoring 1000 users", |b| {
        b.iter(|| black_box(open(&dir)))
    });

    // One save, as after a refresh: switching between two users persists the whole document.
    for n in [1usize, 1000] {
        let dir = bench_dir(&format!("save{n}"));
        write_store(&dir, n.max(2));
        let app = open(&dir);
        let users = app.all_users();
        let mut flip = false;
        group.bench_function(
            format!("save after a change, {} users (fsync included)", n.max(2)),
            |b| {
                b.iter(|| {
                    flip = !flip;
                    app.switch_user(&users[usize::from(flip)]).unwrap();
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, storage);
criterion_main!(benches);
