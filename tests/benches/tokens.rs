//! Token benchmarks against a real sessionkit-server on loopback (see BENCHMARKS.md):
//! - `valid_access_token/valid`: the hot path, a token that needs no refresh (goal: < 1 µs).
//! - `valid_access_token/1000_callers_expired`: 1,000 concurrent callers on an expired token;
//!   exactly one refresh per iteration is asserted (goal: within 2x of one refresh round trip).
//! - `refresh_access_token/round_trip`: one plain refresh, the yardstick for the above.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sessionkit::{Credentials, User};
use sessionkit_tests::{TestServer, unique_email};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn email_user(app: &sessionkit::App) -> User {
    let email = unique_email("bench");
    app.email_password_auth()
        .register_user(&email, "password-123")
        .await
        .expect("register");
    app.log_in(Credentials::email_password(&email, "password-123"))
        .await
        .expect("log in")
}

fn tokens(c: &mut Criterion) {
    let rt = runtime();
    let server = rt.block_on(TestServer::start());
    let (app, clock) = rt.block_on(async { server.app() });
    let user = rt.block_on(email_user(&app));

    let mut group = c.benchmark_group("valid_access_token");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));
    group.bench_function("valid", |b| {
        b.to_async(&rt)
            .iter(|| async { user.valid_access_token(None).await.expect("token") })
    });

    group.sample_size(30);
    // The yardstick for the harness: the same 1,000 spawned and joined callers, on a token that
    // needs no refresh. What the expired case costs beyond this and one refresh is the SDK's.
    group.bench_function("1000_callers_valid", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let user = user.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let callers: Vec<_> = (0..1000)
                        .map(|_| {
                            let user = user.clone();
                            tokio::spawn(async move { user.valid_access_token(None).await })
                        })
                        .collect();
                    for caller in callers {
                        caller.await.expect("join").expect("token");
                    }
                    total += start.elapsed();
                }
                total
            }
        })
    });
    group.bench_function("1000_callers_expired", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (user, clock, server) = (user.clone(), clock.clone(), &server);
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    clock.advance(Duration::from_secs(3600)); // the token is long expired
                    let before = server.refresh_count();
                    let start = Instant::now();
                    let callers: Vec<_> = (0..1000)
                        .map(|_| {
                            let user = user.clone();
                            tokio::spawn(async move { user.valid_access_token(None).await })
                        })
                        .collect();
                    for caller in callers {
                        caller.await.expect("join").expect("token");
                    }
                    total += start.elapsed();
                    assert_eq!(
                        server.refresh_count(),
                        before + 1,
                        "1,000 callers share exactly one refresh"
                    );
                }
                total
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("refresh_access_token");
    group
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .sample_size(30);
    group.bench_function("round_trip", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let user = user.clone();
            async move {
                let start = Instant::now();
                for _ in 0..iters {
                    user.refresh_access_token().await.expect("refresh");
                }
                start.elapsed()
            }
        })
    });
    group.finish();

    drop(app);
    rt.block_on(server.stop());
}

criterion_group!(benches, tokens);
criterion_main!(benches);
