//! What a refused email/password login costs, by what the email names (#24; BENCHMARKS.md,
//! "A wrong password, by account"): an email nobody has (checked against the server's dummy
//! hash), an account of the server's own (argon2id), and accounts imported with another
//! system's hash (the vectors of server/tests/fixtures/legacy-hashes, before their first login
//! upgrades them). Each iteration is one `App::log_in` with a wrong password, through the SDK,
//! to a real sessionkit-server on loopback; the refusal is asserted.

use std::time::Duration;

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use serde_json::{Value, json};
use sessionkit::{App, Credentials};
use sessionkit_tests::TestServer;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The first vector of each scheme, by the name its benchmark gets.
fn vectors() -> Vec<(String, Value)> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../server/tests/fixtures/legacy-hashes/vectors.json"
    ))
    .expect("vectors.json");
    let doc: Value = serde_json::from_str(&text).expect("vectors.json is JSON");
    let mut seen = Vec::<(String, Value)>::new();
    for v in doc["vectors"].as_array().expect("vectors") {
        let scheme = v["scheme"].as_str().expect("scheme").to_owned();
        if !seen.iter().any(|(s, _)| *s == scheme) {
            seen.push((scheme, v.clone()));
        }
    }
    seen
}

async fn refused(app: &App, email: &str) {
    let err = app
        .log_in(Credentials::email_password(email, "not-the-password"))
        .await
        .expect_err("a wrong password is refused");
    assert_eq!(err.server_code(), Some("InvalidPassword"), "{err}");
}

fn wrong_passwords(c: &mut Criterion) {
    let rt = runtime();
    let server = rt.block_on(TestServer::start());
    let (app, _) = rt.block_on(async { server.app() });
    rt.block_on(
        app.email_password_auth()
            .register_user("own@example.com", "the-password-123"),
    )
    .expect("register");
    let vectors = vectors();
    let mut lines = Vec::new();
    for (i, (scheme, v)) in vectors.iter().enumerate() {
        let mut identity = json!({
            "provider_type": "local-userpass",
            "id": format!("bench-identity-{i}"),
            "profile_data": {"email": format!("{scheme}@example.com")},
        });
        if scheme == "firebase-scrypt" {
            lines.push(json!({"firebase_params": v["project"]}));
            identity["firebase_scrypt"] = json!({"hash": v["hash"], "salt": v["salt"]});
        } else {
            identity["password_hash"] = v["hash"].clone();
        }
        lines.push(json!({"id": format!("bench-user-{i}"), "identities": [identity]}));
    }
    let (status, report) =
        rt.block_on(server.admin(reqwest::Method::POST, "/users/import", Some(json!(lines))));
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["created"], json!(vectors.len()), "{report}");

    let mut group = c.benchmark_group("wrong_password");
    // Flat sampling: iterations of 50 to 300 ms each, the same number in every sample.
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("unknown_email", |b| {
        b.to_async(&rt).iter(|| refused(&app, "nobody@example.com"))
    });
    group.bench_function("own_argon2id", |b| {
        b.to_async(&rt).iter(|| refused(&app, "own@example.com"))
    });
    for (scheme, v) in &vectors {
        let email = format!("{scheme}@example.com");
        let name = format!("imported_{scheme}");
        group.bench_function(&name, |b| b.to_async(&rt).iter(|| refused(&app, &email)));
        eprintln!("{name}: {}", v["made_by"]);
    }
    group.finish();
    rt.block_on(server.stop());
}

criterion_group!(benches, wrong_passwords);
criterion_main!(benches);
