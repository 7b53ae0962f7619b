//! `Retry-After` (RFC 9110 section 10.2.3) seen through the SDK: the proxy in
//! `sessionkit_tests::proxy` answers 429 or 503 with it in front of a real server. The scheduler
//! and callers send no refresh before the time the server asked for (counted at the proxy; client
//! time moves by the ManualClock), at most an hour; and the error of a login, a refresh and a
//! function call carries the value, whether seconds or an HTTP-date.

use std::time::{Duration, SystemTime};

use sessionkit::{AppError, AuthEventKind, Credentials, UserState};
use sessionkit_tests::proxy::{Endpoint, Fault};
use sessionkit_tests::rig::{Rig, eventually};
use sessionkit_tests::unique_email;

/// An answer with `Retry-After: value`: JSON from the protocol for 429, HTML for 503 (a load
/// balancer's page).
fn busy(status: u16, value: &str) -> Fault {
    let body = if status == 429 {
        r#"{"error":"too many requests; retry later","error_code":"TooManyRequests"}"#
    } else {
        "<html>unavailable</html>"
    };
    Fault::StatusWithHeaders(
        status,
        vec![("Retry-After".into(), value.into())],
        body.into(),
    )
}

/// Retry-After as an HTTP-date `secs` from now by this machine's clock (the proxy's `Date`).
fn date_in(secs: u64) -> String {
    httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(secs))
}

/// The scheduler fails once on an answer asking for about 20 s: a wake-up at 15 s sends
/// nothing (the backoff alone would have retried after 1 s), one at 22 s sends one request.
async fn scheduler_waits(name: &str, fault: Fault) {
    let rig = Rig::start().await;
    let user = rig.user().await;
    let token = user.access_token().unwrap();
    rig.proxy.set(Endpoint::refresh(), fault);
    rig.app.set_auto_refresh(true);
    rig.clock.advance(Duration::from_secs(1800 - 90)); // due (lead: 20 % of 1800 s)
    rig.app.enter_foreground();
    eventually("the first try", || rig.refreshes() == 1).await;
    let failed = rig.recorder.wait_for(AuthEventKind::RefreshFailed);
    assert!(failed.will_retry, "{name}");

    for _ in 0..3 {
        rig.clock.advance(Duration::from_secs(5));
        rig.app.enter_foreground();
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(rig.refreshes(), 1, "{name}: no retry before Retry-After");
    }
    // Callers are held off too: the still-valid token, no request.
    assert_eq!(user.valid_access_token(None).await, Ok(token.clone()));
    assert_eq!(rig.refreshes(), 1, "{name}: callers wait too");

    rig.proxy.clear(&Endpoint::refresh());
    rig.clock.advance(Duration::from_secs(7));
    rig.app.enter_foreground();
    eventually("the refresh after Retry-After", || {
        rig.recorder.count(AuthEventKind::TokenRefreshed) == 1
    })
    .await;
    assert_eq!(rig.refreshes(), 2, "{name}: exactly one retry");
    assert_ne!(user.access_token(), Some(token));
    assert_eq!(user.state(), UserState::LoggedIn);
    rig.app.set_auto_refresh(false);
    rig.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_does_not_retry_before_retry_after_in_seconds() {
    scheduler_waits("429, 20 s", busy(429, "20")).await;
    scheduler_waits("503, 20 s", busy(503, "20")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_does_not_retry_before_retry_after_as_a_date() {
    scheduler_waits("503, a date 20 s ahead", busy(503, &date_in(20))).await;
}

/// A server asking for a day holds the scheduler off for an hour, no longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_after_beyond_an_hour_holds_the_scheduler_off_for_an_hour() {
    let rig = Rig::start().await;
    let user = rig.user().await;
    rig.proxy.set(Endpoint::refresh(), busy(503, "86400"));
    rig.app.set_auto_refresh(true);
    rig.clock.advance(Duration::from_secs(1800 - 90));
    rig.app.enter_foreground();
    eventually("the first try", || rig.refreshes() == 1).await;
    rig.recorder.wait_for(AuthEventKind::RefreshFailed);

    rig.clock.advance(Duration::from_secs(3500));
    rig.app.enter_foreground();
    tokio::time::sleep(Duration::from_millis(150)).await;
    assert_eq!(rig.refreshes(), 1, "held off within the hour");
    // The access token has expired by now: a caller gets the error (with the server's value),
    // not a request.
    let e = user.valid_access_token(None).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(86400)), "{e:?}");
    assert_eq!(rig.refreshes(), 1, "callers held off within the hour");

    rig.proxy.clear(&Endpoint::refresh());
    rig.clock.advance(Duration::from_secs(150));
    rig.app.enter_foreground();
    eventually("the refresh after the hour", || {
        rig.recorder.count(AuthEventKind::TokenRefreshed) == 1
    })
    .await;
    assert_eq!(rig.refreshes(), 2);
    rig.app.set_auto_refresh(false);
    rig.stop().await;
}

fn assert_retry_after(what: &str, e: &AppError, secs: u64) {
    assert!(e.is_transient(), "{what}: {e:?}");
    let Some(got) = e.retry_after() else {
        panic!("{what}: no retry_after in {e:?}")
    };
    // A date is read against the answer's Date, both to the second: one second either way.
    assert!(
        got.as_secs().abs_diff(secs) <= 1,
        "{what}: {got:?}, expected about {secs} s"
    );
    assert!(
        matches!(e, AppError::Service { retry_after_secs: Some(s), .. } if *s == got.as_secs()),
        "{what}: {e:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_of_logins_refreshes_and_calls_carry_retry_after() {
    let rig = Rig::start().await;
    let user = rig.user().await;
    let (email, password) = (unique_email("retry-after"), "password-123");
    rig.app
        .email_password_auth()
        .register_user(&email, password)
        .await
        .unwrap();

    for (status, value, secs) in [(429, "1199".to_string(), 1199), (503, date_in(30), 30)] {
        let what = format!("{status} {value}");
        rig.proxy.once(Endpoint::login(), busy(status, &value));
        let e = rig
            .app
            .log_in(Credentials::email_password(&email, password))
            .await
            .unwrap_err();
        assert_retry_after(&format!("login, {what}"), &e, secs);

        rig.proxy.once(Endpoint::refresh(), busy(status, &value));
        let e = user.refresh_access_token().await.unwrap_err();
        assert_retry_after(&format!("refresh, {what}"), &e, secs);
        assert_eq!(user.state(), UserState::LoggedIn, "{what}");

        rig.proxy.once(Endpoint::function(), busy(status, &value));
        let e = user.call_function("sum", "[1, 2]").await.unwrap_err();
        assert_retry_after(&format!("function, {what}"), &e, secs);
    }

    // Without the header, or with one that is not a number or a date: none.
    for fault in [
        Fault::Status(503, "<html>unavailable</html>".into()),
        busy(429, "soon"),
        busy(503, "-5"),
    ] {
        rig.proxy.once(Endpoint::function(), fault.clone());
        let e = user.call_function("sum", "[1, 2]").await.unwrap_err();
        assert!(e.is_transient(), "{fault:?}: {e:?}");
        assert_eq!(e.retry_after(), None, "{fault:?}: {e:?}");
    }
    // The message stays the sentence it was, with no header text in it.
    rig.proxy.once(Endpoint::function(), busy(429, "1199"));
    let e = user.call_function("sum", "[1, 2]").await.unwrap_err();
    assert!(!e.to_string().contains("Retry-After"), "{e}");
    rig.stop().await;
}
