//! Users see and end their own sessions (#25): two Apps with separate stores act as two devices
//! of one user (different `DeviceInfo`); the list, revoking the other device, `OtherDevices`,
//! `Everywhere`, and what the other device hears (one `SessionRevoked`).

use std::sync::{Arc, Mutex};

use serde_json::Value;
use sessionkit::{
    App, AppError, Credentials, DeviceInfo, LogOutScope, SessionError, SessionErrorKind, User,
    UserState,
};
use sessionkit_tests::{TestServer, custom_jwt};

type Calls = Arc<Mutex<Vec<(String, SessionErrorKind)>>>;

/// A device: an App of its own with `platform` in its device document, its session-error
/// handler's calls recorded, logged in as custom-JWT subject `sub`.
async fn device(server: &TestServer, platform: &str, sub: &str) -> (App, User, Calls) {
    let (mut config, _) = server.config();
    config.device = DeviceInfo {
        platform: platform.into(),
        platform_version: "1.0".into(),
        device_name: Some(format!("{platform} test device")),
        app_version: Some(format!("{platform}-2.4.0")),
        ..DeviceInfo::default()
    };
    let app = App::new(config).unwrap();
    let calls: Calls = Arc::default();
    let sink = calls.clone();
    app.set_session_error_handler(Some(Arc::new(move |user: User, error: SessionError| {
        sink.lock().unwrap().push((user.id(), error.kind));
    })));
    let user = app
        .log_in(Credentials::jwt(custom_jwt(sub, Value::Null)))
        .await
        .unwrap();
    (app, user, calls)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_device_sees_both_and_revoking_the_other_ends_it_at_its_next_refresh() {
    let server = TestServer::start().await;
    let (_a, phone, phone_calls) = device(&server, "iOS", "kim").await;
    let (_b, laptop, laptop_calls) = device(&server, "macOS", "kim").await;
    assert_eq!(phone.id(), laptop.id());

    let seen = phone.sessions().await.unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].current && !seen[1].current, "{seen:?}");
    assert_eq!(seen[0].device.platform.as_deref(), Some("iOS"));
    assert_eq!(seen[1].device.platform.as_deref(), Some("macOS"));
    assert_eq!(
        seen[1].device.device_name.as_deref(),
        Some("macOS test device")
    );
    assert_eq!(seen[1].device.app_version.as_deref(), Some("macOS-2.4.0"));
    assert_eq!(seen[0].provider_type.as_deref(), Some("custom-token"));
    assert!(seen[0].created <= seen[0].last_used);
    let from_laptop = laptop.sessions().await.unwrap();
    assert!(!from_laptop[0].current && from_laptop[1].current);

    phone.revoke_session(&seen[1].id).await.unwrap();
    assert_eq!(phone.sessions().await.unwrap().len(), 1);
    // The laptop's next call is refused, its refresh says why: SessionExpired, handler once.
    let err = laptop.call_function("sum", "[1, 2]").await.unwrap_err();
    assert!(matches!(err, AppError::SessionExpired { .. }), "{err:?}");
    assert_eq!(laptop.state(), UserState::LoggedOut);
    let _ = laptop.refresh_access_token().await;
    assert_eq!(
        *laptop_calls.lock().unwrap(),
        vec![(laptop.id(), SessionErrorKind::SessionRevoked)]
    );
    assert!(phone_calls.lock().unwrap().is_empty());
    phone.refresh_access_token().await.unwrap();

    // Again, or an unknown id: SessionNotFound; not an id at all: refused before sending.
    let err = phone.revoke_session(&seen[1].id).await.unwrap_err();
    assert_eq!(err.server_code(), Some("SessionNotFound"), "{err:?}");
    let err = phone.revoke_session("../profile").await.unwrap_err();
    assert!(matches!(err, AppError::InvalidArgument { .. }), "{err:?}");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_devices_keeps_this_one_and_everywhere_logs_it_out_too() {
    let server = TestServer::start().await;
    let (_a, phone, phone_calls) = device(&server, "Android", "lea").await;
    let (_b, tablet, tablet_calls) = device(&server, "iPadOS", "lea").await;
    let (_c, laptop, _) = device(&server, "Windows", "lea").await;

    phone
        .log_out_scope(LogOutScope::OtherDevices)
        .await
        .unwrap();
    assert_eq!(phone.state(), UserState::LoggedIn);
    phone.refresh_access_token().await.unwrap();
    assert!(
        phone_calls.lock().unwrap().is_empty(),
        "no SessionExpired here"
    );
    for other in [&tablet, &laptop] {
        let err = other.refresh_access_token().await.unwrap_err();
        assert!(matches!(err, AppError::SessionExpired { .. }), "{err:?}");
    }
    assert_eq!(
        *tablet_calls.lock().unwrap(),
        vec![(tablet.id(), SessionErrorKind::SessionRevoked)]
    );
    let left = phone.sessions().await.unwrap();
    assert_eq!(left.len(), 1);
    assert!(left[0].current);

    // Everywhere: a new device, then both end; this one logs out as log_out() does.
    let (_d, desktop, desktop_calls) = device(&server, "Linux", "lea").await;
    phone.log_out_scope(LogOutScope::Everywhere).await.unwrap();
    assert_eq!(phone.state(), UserState::LoggedOut);
    assert!(
        phone_calls.lock().unwrap().is_empty(),
        "a logout, not an expiry"
    );
    let err = desktop.refresh_access_token().await.unwrap_err();
    assert!(matches!(err, AppError::SessionExpired { .. }), "{err:?}");
    assert_eq!(
        *desktop_calls.lock().unwrap(),
        vec![(desktop.id(), SessionErrorKind::SessionRevoked)]
    );
    // ThisDevice is log_out().
    let (_e, last, _) = device(&server, "Linux", "lea").await;
    last.log_out_scope(LogOutScope::ThisDevice).await.unwrap();
    assert_eq!(last.state(), UserState::LoggedOut);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_this_devices_own_session_logs_it_out() {
    let server = TestServer::start().await;
    let (_a, phone, calls) = device(&server, "iOS", "max").await;
    let own = phone.sessions().await.unwrap().remove(0);
    assert!(own.current);
    phone.revoke_session(&own.id).await.unwrap();
    assert_eq!(phone.state(), UserState::LoggedOut);
    assert!(calls.lock().unwrap().is_empty());
    server.stop().await;
}
