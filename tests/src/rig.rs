//! A client `App` behind the fault proxy ([`crate::proxy`]) in front of a real server: the rig
//! of the fault tests (`tests/faults.rs`, `tests/retry_after.rs`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sessionkit::{App, AppConfig, Credentials, ManualClock, SessionError, StorageConfig, User};

use crate::proxy::{Endpoint, FaultProxy};
use crate::{APP_ID, Recorder, ServerOptions, TestServer, custom_jwt, unique_email};

/// A server, a proxy in front of it, and a client App that only knows the proxy.
pub struct Rig {
    /// The real server.
    pub server: TestServer,
    /// The proxy the App talks to, which injects faults and counts requests.
    pub proxy: FaultProxy,
    /// The client, storage in memory, time from `clock`.
    pub app: App,
    /// The App's clock.
    pub clock: Arc<ManualClock>,
    calls: Arc<Mutex<Vec<(String, SessionError)>>>,
    /// The App's events.
    pub recorder: Arc<Recorder>,
    _sub: sessionkit::Subscription,
}

impl Rig {
    /// The standard server, a 10 s request timeout.
    pub async fn start() -> Self {
        Self::with(ServerOptions::default(), 10_000).await
    }

    /// A server with `options`; the App's request timeout in milliseconds.
    pub async fn with(options: ServerOptions, request_timeout_ms: u64) -> Self {
        let server = TestServer::with(options).await;
        let proxy = FaultProxy::start(&server.base_url()).await;
        let clock = Arc::new(ManualClock::new());
        let mut config = AppConfig::new(APP_ID, proxy.url());
        config.storage = StorageConfig::InMemory;
        config.request_timeout_ms = request_timeout_ms;
        config.clock = Some(clock.clone());
        let app = App::new(config).expect("App::new");
        let calls = Arc::new(Mutex::new(Vec::new()));
        let sink = calls.clone();
        app.set_session_error_handler(Some(Arc::new(move |user: User, error: SessionError| {
            sink.lock().unwrap().push((user.id(), error));
        })));
        let recorder = Recorder::new();
        let sub = app.subscribe(recorder.clone());
        Self {
            server,
            proxy,
            app,
            clock,
            calls,
            recorder,
            _sub: sub,
        }
    }

    /// A new user, logged in through the proxy with a custom JWT: no password hash on the
    /// server, so that a loaded machine (CI on 2 cores) still answers within the rig's short
    /// request timeouts, which are for the faults under test, not for argon2.
    pub async fn user(&self) -> User {
        let sub = unique_email("rig");
        let user = self
            .app
            .log_in(Credentials::jwt(custom_jwt(&sub, serde_json::Value::Null)))
            .await
            .unwrap();
        // Tokens carry whole seconds: without this a refresh in the login's second would hand
        // out the very same token, and a test could not tell that it was refreshed.
        self.server.advance_server_clock(2);
        user
    }

    /// The session-error callbacks so far: (user id, error).
    pub fn callbacks(&self) -> Vec<(String, SessionError)> {
        self.calls.lock().unwrap().clone()
    }

    /// Refresh requests that reached the proxy.
    pub fn refreshes(&self) -> usize {
        self.proxy.count(&Endpoint::refresh())
    }

    /// Drops the App and the proxy, then stops the server.
    pub async fn stop(self) {
        drop(self.app);
        drop(self.proxy);
        self.server.stop().await;
    }
}

/// Polls `done` for up to five seconds.
pub async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
