//! Faults between the SDK and the server, injected by the proxy in `sessionkit_tests::proxy`:
//! slow, dropped, failing, cut-short and malformed answers end no session; each definitive 401 on
//! the refresh ends it with exactly one callback; late answers after a logout are discarded;
//! callers are held off after a failure, and the scheduler backs off and recovers. Client time
//! moves by the ManualClock and server time by its test clock; no test sleeps for long.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use sessionkit::{AppError, AuthEventKind, SessionErrorKind, UserState};
use sessionkit_tests::proxy::{Endpoint, Fault, FaultProxy};
use sessionkit_tests::rig::{Rig, eventually};
use sessionkit_tests::{APP_ID, ServerOptions, TestServer};

/// Lets anything that is wrongly going to happen happen, before asserting that it did not.
async fn settle() {
    tokio::time::sleep(Duration::from_millis(200)).await;
}

fn transient_faults() -> Vec<(&'static str, Fault)> {
    vec![
        (
            "delay past the timeout",
            Fault::Delay(Duration::from_millis(1500)),
        ),
        ("dropped connection", Fault::Drop),
        (
            "500",
            Fault::Status(
                500,
                r#"{"error":"boom","error_code":"InternalServerError"}"#.into(),
            ),
        ),
        ("429", Fault::Status(429, "slow down".into())),
        ("503", Fault::Status(503, "<html>unavailable</html>".into())),
        ("truncated JSON", Fault::Truncated),
        ("malformed JSON with 200", Fault::MalformedJson),
    ]
}

/// On the refresh itself, also a 401 that is not the protocol's session error: only those end
/// a session, not one from a proxy or captive portal.
fn transient_refresh_faults() -> Vec<(&'static str, Fault)> {
    let mut faults = transient_faults();
    faults.push((
        "401 HTML from a captive portal",
        Fault::Status(401, "<html>sign in to the wifi</html>".into()),
    ));
    faults.push((
        "401 JSON without a session error code",
        Fault::Status(401, r#"{"error":"no","error_code":"Unauthorized"}"#.into()),
    ));
    faults
}

/// One transient fault on the refresh: nothing ends, a still-valid token is served, and the
/// next call after the fault is lifted refreshes.
async fn transient_refresh_fault(name: &str, fault: Fault, auto_refresh: bool) {
    let rig = Rig::with(ServerOptions::default(), 500).await;
    let user = rig.user().await;
    let (access, refresh) = (user.access_token().unwrap(), user.refresh_token().unwrap());
    if auto_refresh {
        rig.app.set_auto_refresh(true);
    }
    rig.proxy.set(Endpoint::refresh(), fault);

    rig.clock.advance(Duration::from_secs(1800 - 30)); // due, with 30 s to live
    if auto_refresh {
        rig.app.enter_foreground(); // the scheduler tries now
        eventually(&format!("{name}: the scheduler's refresh to fail"), || {
            rig.recorder.count(AuthEventKind::RefreshFailed) >= 1
        })
        .await;
    }
    let served = user.valid_access_token(None).await;
    assert_eq!(
        served,
        Ok(access.clone()),
        "{name}: the valid token is served"
    );
    let failed = rig.recorder.wait_for(AuthEventKind::RefreshFailed);
    assert!(failed.error.is_some(), "{name}");
    assert_eq!(failed.will_retry, auto_refresh, "{name}: will_retry");
    assert_eq!(failed.user_id, Some(user.id()), "{name}");
    assert!(rig.refreshes() >= 1, "{name}: the refresh went out");
    assert_eq!(user.state(), UserState::LoggedIn, "{name}");
    assert_eq!(
        (user.access_token(), user.refresh_token()),
        (Some(access.clone()), Some(refresh.clone())),
        "{name}: tokens kept"
    );
    assert_eq!(rig.app.current_user(), Some(user.clone()), "{name}");
    settle().await;
    assert!(rig.callbacks().is_empty(), "{name}: no session error");
    assert_eq!(rig.recorder.count(AuthEventKind::SessionExpired), 0);

    // Lifted: once the cooldown is over the next call refreshes and gets a new token.
    rig.app.set_auto_refresh(false);
    rig.proxy.clear(&Endpoint::refresh());
    rig.clock.advance(Duration::from_secs(6));
    let fresh = user.valid_access_token(None).await.unwrap();
    assert_ne!(fresh, access, "{name}: refreshed once the fault is gone");
    assert_eq!(user.access_token(), Some(fresh));
    rig.recorder.wait_for(AuthEventKind::TokenRefreshed);
    assert!(rig.callbacks().is_empty(), "{name}");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_transient_refresh_fault_logs_anyone_out() {
    for (name, fault) in transient_refresh_faults() {
        transient_refresh_fault(name, fault, false).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auto_refresh_a_transient_fault_is_reported_as_will_retry() {
    for (name, fault) in transient_refresh_faults() {
        transient_refresh_fault(name, fault, true).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_access_token_is_not_served_while_the_refresh_fails() {
    let rig = Rig::start().await;
    let user = rig.user().await;
    rig.proxy
        .set(Endpoint::refresh(), Fault::Status(503, String::new()));
    rig.clock.advance(Duration::from_secs(1801));
    let err = user.valid_access_token(None).await.unwrap_err();
    assert!(err.is_transient(), "{err:?}");
    assert_eq!(err.http_status(), Some(503));
    assert_eq!(user.state(), UserState::LoggedIn);
    assert!(user.refresh_token().is_some());
    rig.proxy.clear_all();
    rig.clock.advance(Duration::from_secs(6));
    user.valid_access_token(None).await.unwrap();
    assert!(rig.callbacks().is_empty());
    rig.stop().await;
}

/// Faults on ordinary requests are the caller's errors; they neither refresh nor end anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_on_other_endpoints_end_nothing() {
    let rig = Rig::with(ServerOptions::default(), 500).await;
    let user = rig.user().await;
    let before = rig.refreshes();
    for (name, fault) in transient_faults() {
        for endpoint in [Endpoint::function(), Endpoint::profile()] {
            if fault == Fault::MalformedJson && endpoint == Endpoint::function() {
                continue; // call_function hands the body back as text, unparsed
            }
            rig.proxy.once(endpoint.clone(), fault.clone());
            let result = if endpoint == Endpoint::function() {
                user.call_function("sum", "[1, 2]").await.map(drop)
            } else {
                user.refresh_profile().await.map(drop)
            };
            let err = result.expect_err(name);
            assert!(err.is_transient(), "{name} on {endpoint:?}: {err:?}");
            assert_eq!(user.state(), UserState::LoggedIn, "{name}");
        }
    }
    assert_eq!(rig.refreshes(), before, "no refresh for a failed request");
    assert_eq!(user.call_function("sum", "[1, 2]").await.unwrap(), "3");
    assert!(rig.callbacks().is_empty());
    rig.stop().await;
}

fn unauthorized(reason: Option<&str>, code: &str) -> Fault {
    let mut body = json!({"error": "invalid session", "error_code": code});
    if let Some(r) = reason {
        body["reason"] = json!(r);
    }
    Fault::Unauthorized(body.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_definitive_401_on_the_refresh_logs_out_with_one_callback() {
    let cases = [
        (
            unauthorized(Some("expired"), "InvalidSession"),
            SessionErrorKind::TokenExpired,
        ),
        (
            unauthorized(Some("revoked"), "InvalidSession"),
            SessionErrorKind::SessionRevoked,
        ),
        (
            unauthorized(Some("disabled"), "UserDisabled"),
            SessionErrorKind::UserDisabled,
        ),
        (
            unauthorized(Some("deleted"), "InvalidSession"),
            SessionErrorKind::UserDeleted,
        ),
        // A server that sends no reason (the hosted service did not): the session expired.
        (
            unauthorized(None, "InvalidSession"),
            SessionErrorKind::TokenExpired,
        ),
    ];
    for (fault, kind) in cases {
        let rig = Rig::start().await;
        let user = rig.user().await;
        rig.app.set_auto_refresh(true);
        rig.proxy.set(Endpoint::refresh(), fault.clone());
        rig.clock.advance(Duration::from_secs(1801));
        // Many callers and the scheduler all meet the dead session at once.
        rig.app.enter_foreground();
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let user = user.clone();
                tokio::spawn(async move { user.valid_access_token(None).await })
            })
            .collect();
        for task in tasks {
            match task.await.unwrap() {
                Err(AppError::SessionExpired { kind: k, .. }) => assert_eq!(k, kind),
                Err(AppError::ClientUserNotLoggedIn { .. }) => {}
                other => panic!("{fault:?}: {other:?}"),
            }
        }
        assert_eq!(user.state(), UserState::LoggedOut, "{fault:?}");
        assert_eq!((user.access_token(), user.refresh_token()), (None, None));
        assert_eq!(rig.app.current_user(), None);
        settle().await;
        let calls = rig.callbacks();
        assert_eq!(calls.len(), 1, "{fault:?}: exactly one callback");
        assert_eq!((calls[0].0.clone(), calls[0].1.kind), (user.id(), kind));
        assert_eq!(rig.recorder.count(AuthEventKind::SessionExpired), 1);
        assert_eq!(rig.refreshes(), 1, "{fault:?}: one refresh, never retried");
        rig.stop().await;
    }
}

/// The real server's 401s pass through the proxy unchanged and end the session the same way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_revocation_through_the_proxy_logs_out_with_one_callback() {
    let rig = Rig::start().await;
    let user = rig.user().await;
    rig.server.revoke_sessions(&user.id()).await;
    rig.clock.advance(Duration::from_secs(1801));
    let err = user.valid_access_token(None).await.unwrap_err();
    assert!(
        matches!(
            err,
            AppError::SessionExpired {
                kind: SessionErrorKind::SessionRevoked,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(user.state(), UserState::LoggedOut);
    assert_eq!(rig.callbacks().len(), 1);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_delayed_past_a_logout_is_discarded() {
    let rig = Rig::start().await;
    let user = rig.user().await;
    rig.proxy.set(
        Endpoint::refresh(),
        Fault::Delay(Duration::from_millis(300)),
    );
    rig.clock.advance(Duration::from_secs(1801));
    let before = rig.server.refresh_count();
    let racing = {
        let user = user.clone();
        tokio::spawn(async move { user.valid_access_token(None).await })
    };
    // The server has issued a new access token; its answer is still held by the proxy.
    eventually("the server to refresh", || {
        rig.server.refresh_count() == before + 1
    })
    .await;
    user.log_out().await.unwrap();
    assert_eq!(rig.proxy.count(&Endpoint::logout()), 1);
    let late = racing.await.unwrap();
    assert!(
        matches!(late, Err(AppError::ClientUserNotLoggedIn { .. })),
        "{late:?}"
    );
    settle().await;
    assert_eq!(user.state(), UserState::LoggedOut, "not logged in again");
    assert_eq!((user.access_token(), user.refresh_token()), (None, None));
    assert_eq!(rig.app.current_user(), None);
    assert_eq!(rig.recorder.count(AuthEventKind::TokenRefreshed), 0);
    assert!(
        rig.callbacks().is_empty(),
        "a logout is not a session error"
    );
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_transient_failure_callers_are_held_off() {
    let rig = Rig::start().await;
    let user = rig.user().await;
    let token = user.access_token().unwrap();
    rig.proxy
        .set(Endpoint::refresh(), Fault::Status(500, String::new()));
    rig.clock.advance(Duration::from_secs(1800 - 30));
    assert_eq!(user.valid_access_token(None).await.unwrap(), token);
    assert_eq!(rig.refreshes(), 1);

    // A burst right after the failure: no request, the still-valid token for everyone.
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let user = user.clone();
            tokio::spawn(async move { user.valid_access_token(None).await })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(token.clone()));
    }
    assert_eq!(rig.refreshes(), 1, "the cooldown holds callers off");
    assert_eq!(rig.recorder.count(AuthEventKind::RefreshFailed), 1);

    // The cooldown (1 s with up to a quarter off at the first failure) is over: one more try.
    rig.clock.advance(Duration::from_millis(1001));
    assert_eq!(user.valid_access_token(None).await.unwrap(), token);
    assert_eq!(rig.refreshes(), 2);
    // An explicit refresh is the app's own choice and is never held off.
    assert!(
        user.refresh_access_token()
            .await
            .unwrap_err()
            .is_transient()
    );
    assert_eq!(rig.refreshes(), 3);
    assert!(rig.callbacks().is_empty());
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_backs_off_and_recovers_when_the_fault_is_lifted() {
    let rig = Rig::start().await;
    let user = rig.user().await;
    let token = user.access_token().unwrap();
    rig.proxy
        .set(Endpoint::refresh(), Fault::Status(503, String::new()));
    rig.app.set_auto_refresh(true);
    rig.clock.advance(Duration::from_secs(1800 - 90)); // due (lead: 20 % of 1800 s)
    rig.app.enter_foreground();
    eventually("the first try", || rig.refreshes() == 1).await;
    eventually("its failure", || {
        rig.recorder.count(AuthEventKind::RefreshFailed) == 1
    })
    .await;

    // Each wait is 1 s, 2 s, 4 s... minus up to a quarter: waking earlier sends nothing, waking
    // after it sends exactly one more try. The ManualClock also moves with real time, hence
    // the headroom below the shortest wait.
    for (n, backoff_ms) in [(1usize, 1000u64), (2, 2000), (3, 4000)] {
        rig.clock
            .advance(Duration::from_millis(backoff_ms * 3 / 4 - 350));
        rig.app.enter_foreground();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(rig.refreshes(), n, "try {n}: still backing off");
        rig.clock.advance(Duration::from_millis(backoff_ms));
        rig.app.enter_foreground();
        eventually("the next try", || rig.refreshes() == n + 1).await;
        eventually("its failure", || {
            rig.recorder.count(AuthEventKind::RefreshFailed) == n + 1
        })
        .await;
        assert!(
            rig.recorder
                .events()
                .iter()
                .all(|e| e.kind != AuthEventKind::RefreshFailed || e.will_retry)
        );
        assert_eq!(user.access_token(), Some(token.clone()));
    }

    // Lifted: the next round refreshes, and the scheduler carries on as usual.
    rig.proxy.clear_all();
    rig.clock.advance(Duration::from_secs(8));
    rig.app.enter_foreground();
    eventually("the refresh", || {
        rig.recorder.count(AuthEventKind::TokenRefreshed) == 1
    })
    .await;
    assert_ne!(user.access_token(), Some(token));
    assert_eq!(user.state(), UserState::LoggedIn);
    assert!(rig.callbacks().is_empty());
    rig.app.set_auto_refresh(false);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_user_failing_does_not_stop_the_scheduler_for_another() {
    let rig = Rig::start().await;
    let doomed = rig.user().await;
    let other = rig.user().await;
    let other_token = other.access_token().unwrap();
    rig.app.set_auto_refresh(true);
    // The first refresh to arrive dies with the connection; the other goes through.
    rig.proxy.once(Endpoint::refresh(), Fault::Drop);
    rig.clock.advance(Duration::from_secs(1800 - 90));
    rig.app.enter_foreground();
    eventually("one failure and one refresh", || {
        rig.recorder.count(AuthEventKind::RefreshFailed) == 1
            && rig.recorder.count(AuthEventKind::TokenRefreshed) == 1
    })
    .await;
    // Whichever failed is retried after its backoff and succeeds.
    rig.clock.advance(Duration::from_secs(2));
    rig.app.enter_foreground();
    eventually("the retry", || {
        rig.recorder.count(AuthEventKind::TokenRefreshed) == 2
    })
    .await;
    assert_ne!(other.access_token(), Some(other_token));
    assert_eq!(doomed.state(), UserState::LoggedIn);
    assert_eq!(other.state(), UserState::LoggedIn);
    rig.app.set_auto_refresh(false);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_on_a_request_is_refreshed_and_replayed_once() {
    let rig = Rig::start().await;
    let user = rig.user().await;
    let stale = json!({"error": "invalid session", "error_code": "InvalidSession"}).to_string();

    // Function: one 401, one refresh, one replay that succeeds.
    rig.proxy
        .once(Endpoint::function(), Fault::Unauthorized(stale.clone()));
    assert_eq!(user.call_function("sum", "[1, 2]").await.unwrap(), "3");
    assert_eq!(rig.proxy.count(&Endpoint::function()), 2);
    assert_eq!(rig.refreshes(), 1);

    // Profile: 401 every time: one refresh, one replay, and the second 401 comes back.
    let profiles = rig.proxy.count(&Endpoint::profile()); // the login fetched one
    rig.proxy
        .set(Endpoint::profile(), Fault::Unauthorized(stale.clone()));
    let err = user.refresh_profile().await.unwrap_err();
    assert_eq!(err.http_status(), Some(401), "{err:?}");
    assert_eq!(
        rig.proxy.count(&Endpoint::profile()),
        profiles + 2,
        "never looped"
    );
    assert_eq!(rig.refreshes(), 2);

    // Same for a function, whose 401 body is returned as the error.
    rig.proxy
        .set(Endpoint::function(), Fault::Unauthorized(stale));
    let err = user.call_function("sum", "[1, 2]").await.unwrap_err();
    assert_eq!(err.http_status(), Some(401), "{err:?}");
    assert_eq!(rig.proxy.count(&Endpoint::function()), 4);
    assert_eq!(rig.refreshes(), 3);

    // A request's 401 is not the session's end.
    assert_eq!(user.state(), UserState::LoggedIn);
    assert!(rig.callbacks().is_empty());
    rig.proxy.clear_all();
    assert_eq!(user.call_function("sum", "[2, 2]").await.unwrap(), "4");
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_401_on_a_request_whose_refresh_fails_transiently_ends_nothing() {
    let rig = Rig::start().await;
    let user = rig.user().await;
    let stale = json!({"error": "invalid session", "error_code": "InvalidSession"}).to_string();
    rig.proxy
        .once(Endpoint::function(), Fault::Unauthorized(stale));
    rig.proxy.once(Endpoint::refresh(), Fault::Drop);
    let err = user.call_function("sum", "[1, 2]").await.unwrap_err();
    assert_eq!(err.http_status(), Some(401), "the request's own answer");
    assert_eq!(rig.proxy.count(&Endpoint::function()), 1, "no replay");
    assert_eq!(user.state(), UserState::LoggedIn);
    assert!(rig.callbacks().is_empty());
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rotation_the_new_refresh_token_replaces_the_old_one() {
    let rig = Rig::with(
        ServerOptions {
            refresh_token_rotation: true,
            ..Default::default()
        },
        10_000,
    )
    .await;
    let user = rig.user().await;
    let old = user.refresh_token().unwrap();
    // What a listener sees when the refresh is reported: the new token must be in place.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let _sub = user.subscribe({
        let (user, seen) = (user.clone(), seen.clone());
        Arc::new(move |e: sessionkit::AuthEvent| {
            if e.kind == AuthEventKind::TokenRefreshed {
                seen.lock().unwrap().push(user.refresh_token());
            }
        })
    });
    user.refresh_access_token().await.unwrap();
    let new = user.refresh_token().unwrap();
    assert_ne!(new, old, "rotated");
    assert_eq!(*seen.lock().unwrap(), vec![Some(new.clone())]);

    // Past the grace window the SDK keeps working with the new token...
    rig.server.advance_server_clock(11);
    user.refresh_access_token().await.unwrap();
    let newer = user.refresh_token().unwrap();
    assert_ne!(newer, new);
    // ...while the old one is refused (and, reused, revokes the whole session).
    let (status, body) = rig
        .server
        .post_raw("/api/client/v2.0/auth/session", Some(&old), None)
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["reason"], "revoked");
    let err = user.refresh_access_token().await.unwrap_err();
    assert!(
        matches!(
            err,
            AppError::SessionExpired {
                kind: SessionErrorKind::SessionRevoked,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(rig.callbacks().len(), 1);
    rig.stop().await;
}

/// A rotated answer that is lost on the way (cut short) leaves the client with the old token,
/// which the server still honours within its grace window: the retry gets the successor the
/// lost answer carried.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_rotation_a_lost_answer_is_retried_within_the_grace() {
    let rig = Rig::with(
        ServerOptions {
            refresh_token_rotation: true,
            ..Default::default()
        },
        10_000,
    )
    .await;
    let user = rig.user().await;
    let old = user.refresh_token().unwrap();
    rig.proxy.once(Endpoint::refresh(), Fault::Truncated);
    assert!(
        user.refresh_access_token()
            .await
            .unwrap_err()
            .is_transient()
    );
    assert_eq!(user.refresh_token(), Some(old.clone()), "kept");
    assert_eq!(rig.server.refresh_count(), 1, "the server did rotate");
    user.refresh_access_token().await.unwrap();
    assert_ne!(user.refresh_token(), Some(old));
    assert_eq!(user.state(), UserState::LoggedIn);
    assert!(rig.callbacks().is_empty());
    rig.stop().await;
}

/// The proxy itself: faults look to a plain HTTP client as they should, requests are counted,
/// and location points clients back at the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxy_forwards_faults_and_counts() {
    let server = TestServer::start().await;
    let proxy = FaultProxy::start(&server.base_url()).await;
    let http = reqwest::Client::new();
    let location = format!("{}/api/client/v2.0/app/{APP_ID}/location", proxy.url());
    let doc: serde_json::Value = http
        .get(&location)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(doc["hostname"], proxy.url());

    proxy.once(Endpoint::location(), Fault::Drop);
    let err = http.get(&location).send().await.unwrap_err();
    assert!(
        !err.is_status() && !err.is_body(),
        "no answer at all: {err}"
    );

    proxy.once(Endpoint::location(), Fault::Truncated);
    let response = http.get(&location).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.text().await.is_err(), "the body is cut short");

    proxy.times(Endpoint::location(), Fault::Status(429, "slow".into()), 2);
    for _ in 0..2 {
        assert_eq!(http.get(&location).send().await.unwrap().status(), 429);
    }
    proxy.set(Endpoint::location(), Fault::MalformedJson);
    let response = http.get(&location).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.json::<serde_json::Value>().await.is_err());
    proxy.clear(&Endpoint::location());
    assert_eq!(http.get(&location).send().await.unwrap().status(), 200);
    assert_eq!(proxy.count(&Endpoint::location()), 7, "{:?}", proxy.log());
    assert_eq!(
        server.server.request_count("location"),
        3,
        "only forwarded ones"
    );
    assert_eq!(proxy.count(&Endpoint::refresh()), 0);
    server.stop().await;
}
