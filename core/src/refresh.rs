//! The refresh engine: fresh access tokens on demand, one refresh per user however many callers,
//! the line between "the session is over" and "try again later", and the proactive scheduler.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use reqwest::Method;
use serde_json::Value;
use tokio::sync::watch;

use crate::context::Context;
use crate::dpop::DpopKey;
use crate::error::{AppError, Result, SessionError, SessionErrorKind};
use crate::hub::Event;
use crate::log::LogLevel;
use crate::session::{Change, UserInner, UserState};
use crate::token::AccessToken;
use crate::transport::{ApiResponse, Auth, Route, required_str};

/// Why a refresh is wanted: it decides whether the cooldown applies and whether the app asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// A caller found the token too close to expiry.
    Lazy,
    /// The server answered 401 to the access token.
    Unauthorized,
    /// The app called `refresh_access_token` / `refresh_custom_data`.
    App,
    /// The proactive scheduler.
    Scheduler,
}

impl Trigger {
    /// Forced refreshes skip the cooldown after a transient failure.
    fn forced(self) -> bool {
        matches!(self, Self::Unauthorized | Self::App)
    }
}

impl Context {
    pub(crate) async fn valid_access_token(
        self: &Arc<Self>,
        user: &Arc<UserInner>,
        min_ttl_secs: Option<u32>,
    ) -> Result<String> {
        let min_ttl = min_ttl_secs.map_or(self.margin, |s| Duration::from_secs(s.into()));
        // A refresh discarded because the session changed under it is followed by one more look.
        for _ in 0..3 {
            let seen = {
                let d = user.data();
                if d.state() != UserState::LoggedIn {
                    return Err(AppError::not_logged_in(
                        "the user is logged out; log in again",
                    ));
                }
                match d.access() {
                    Some(t) if !t.needs_refresh(self.clock.as_ref(), min_ttl) => {
                        return Ok(t.raw.clone());
                    }
                    other => other.cloned(),
                }
            };
            match self
                .refresh(user, seen.as_ref().map(|t| t.raw.as_str()), Trigger::Lazy)
                .await
            {
                Ok(token) => return Ok(token),
                Err(AppError::ClientUserNotLoggedIn { .. }) => continue,
                Err(e) if e.is_transient() => {
                    // Still usable, if not for as long as asked: better than nothing.
                    return match seen {
                        Some(t) if !t.remaining(self.clock.as_ref()).is_zero() => Ok(t.raw),
                        _ => Err(e),
                    };
                }
                Err(e) => return Err(e),
            }
        }
        Err(AppError::not_logged_in(
            "the user's session kept changing; log in again",
        ))
    }

    pub(crate) async fn forced_refresh(self: &Arc<Self>, user: &Arc<UserInner>) -> Result<String> {
        self.ensure_known(user)?;
        let seen = user.data().access().map(|t| t.raw.clone());
        self.refresh(user, seen.as_deref(), Trigger::App).await
    }

    /// After a 401 to `stale`: refresh, unless another caller already replaced that token.
    pub(crate) async fn refresh_after_401(
        self: &Arc<Self>,
        user: &Arc<UserInner>,
        stale: &str,
    ) -> Result<String> {
        self.refresh(user, Some(stale), Trigger::Unauthorized).await
    }

    /// Joins the refresh in flight or starts one. `seen` is the token the caller found wanting:
    /// if the user holds another one by now, that one is the answer and no request is made.
    async fn refresh(
        self: &Arc<Self>,
        user: &Arc<UserInner>,
        seen: Option<&str>,
        trigger: Trigger,
    ) -> Result<String> {
        let mut flight = {
            let mut slot = user.flight.lock().unwrap_or_else(|e| e.into_inner());
            match slot.as_ref() {
                Some(f) => f.clone(),
                None => {
                    let (refresh_token, session, token_gen) = {
                        let d = user.data();
                        let Some(refresh_token) = d
                            .refresh_token()
                            .filter(|_| d.state() == UserState::LoggedIn)
                        else {
                            return Err(AppError::not_logged_in(
                                "the user is logged out; log in again",
                            ));
                        };
                        if let Some(current) = d.access()
                            && Some(current.raw.as_str()) != seen
                        {
                            return Ok(current.raw.clone());
                        }
                        if !trigger.forced()
                            && self.clock.monotonic() < d.backoff().callers_wait_until
                            && let Some(e) = &d.backoff().last_error
                        {
                            return Err(e.clone());
                        }
                        (refresh_token.to_string(), d.session(), d.token_gen())
                    };
                    // The refresh outlives its callers, so it holds its own pass: closing the
                    // App waits for it and saves what it brings.
                    let pass = self.pass()?;
                    let (tx, rx) = watch::channel(None);
                    *slot = Some(rx.clone());
                    let task = run_refresh(
                        Arc::clone(self),
                        Arc::clone(user),
                        refresh_token,
                        session,
                        token_gen,
                        trigger,
                        tx,
                    );
                    // Spawned so a caller that gives up does not cancel everyone's refresh.
                    match tokio::runtime::Handle::try_current() {
                        Ok(rt) => drop(rt.spawn(async move {
                            task.await;
                            drop(pass);
                        })),
                        Err(_) => {
                            *slot = None;
                            return Err(AppError::invalid(
                                "SDK calls must run inside a tokio runtime",
                            ));
                        }
                    }
                    rx
                }
            }
        };
        match flight.wait_for(Option::is_some).await {
            Ok(result) => result.clone().expect("wait_for saw Some"),
            Err(_) => Err(AppError::Network {
                message: "the refresh was interrupted; try again".into(),
            }),
        }
    }

    /// The server rejected the refresh token: the session is over. Tokens are cleared, the user
    /// logged out (anonymous: removed), the app told once. Returns the error for callers.
    pub(crate) fn session_rejected(
        self: &Arc<Self>,
        user: &Arc<UserInner>,
        session: u64,
        response: &ApiResponse,
    ) -> AppError {
        let doc = response.json().unwrap_or(Value::Null);
        let code = doc
            .get("error_code")
            .and_then(Value::as_str)
            .map(str::to_string);
        let server_message = doc
            .get("error")
            .and_then(Value::as_str)
            .unwrap_or("refresh token rejected");
        let kind = SessionErrorKind::from_reason(response.reason().as_deref(), code.as_deref());
        let message = format!("{kind}: {server_message}");
        let ended = Change::SessionEnded {
            session,
            message: message.clone(),
        };
        let Ok(ended) = self.end_session(user, ended) else {
            // Already ended or replaced by a newer login: nothing to end, nothing to report.
            return AppError::not_logged_in("the session ended while the request was in flight");
        };
        self.log.log(LogLevel::Info, "sessionkit::refresh", || {
            format!("session of user {} ended: {message}", user.id)
        });
        self.discard_key(ended.released.as_ref().and_then(|r| r.dpop.as_deref()));
        self.emit_all(ended.events);
        if let Some(sink) = self.session_end_sink() {
            let error = SessionError {
                user_id: user.id.clone(),
                kind,
                message: message.clone(),
                server_code: code,
            };
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                sink.session_ended(self, user, error)
            }));
        }
        AppError::SessionExpired { kind, message }
    }

    fn refresh_failed(&self, user: &Arc<UserInner>, error: &AppError) {
        let failed = Change::RefreshFailed {
            now: self.clock.monotonic(),
            error: error.clone(),
            will_retry: self.auto_refresh.load(Ordering::SeqCst),
        };
        // Never refused: the backoff counts every failure, whatever the state.
        let announced = user.apply(failed).map(|a| a.events).unwrap_or_default();
        self.log.log(LogLevel::Warn, "sessionkit::refresh", || {
            format!("refresh of user {} failed: {error}", user.id)
        });
        self.emit_all(announced.into_iter().map(|a| Event::about(user, a)));
    }

    /// Stores a refreshed token unless the session it belongs to is gone.
    fn commit_refresh(
        &self,
        user: &Arc<UserInner>,
        session: u64,
        access: AccessToken,
        rotated: Option<String>,
        bound: Option<Arc<DpopKey>>,
        trigger: Trigger,
    ) -> Result<String> {
        let refreshed = Change::Refreshed {
            session,
            access: access.clone(),
            rotated,
            app_asked: trigger == Trigger::App,
            bound,
        };
        let Ok(applied) = user.apply(refreshed) else {
            return Err(AppError::not_logged_in(
                "the user logged out during the refresh; its result was discarded",
            ));
        };
        // Saved before anyone is told, so a rotated refresh token is never lost.
        self.persist();
        self.emit_all(applied.events.into_iter().map(|a| Event::about(user, a)));
        Ok(access.raw)
    }
}

async fn run_refresh(
    app: Arc<Context>,
    user: Arc<UserInner>,
    refresh_token: String,
    session: u64,
    token_gen: u64,
    trigger: Trigger,
    tx: watch::Sender<Option<Result<String>>>,
) {
    // Held until the result is saved, so another process sharing the store waits for it.
    let lock = lock_refresh(&app, &user).await;
    let adopted = if lock.is_some() {
        adopt_from_store(&app, &user, session, token_gen)
    } else {
        None
    };
    let outcome = match adopted {
        Some(outcome) => outcome,
        None => refresh_over_network(&app, &user, &refresh_token, session, trigger).await,
    };
    drop(lock);
    *user.flight.lock().unwrap_or_else(|e| e.into_inner()) = None;
    let _ = tx.send(Some(outcome));
}

/// Takes the store's per-user refresh lock (waiting while another process refreshes).
async fn lock_refresh(
    app: &Arc<Context>,
    user: &Arc<UserInner>,
) -> Option<crate::storage::StoreGuard> {
    let (store, id) = (Arc::clone(&app.store), user.id.clone());
    match tokio::task::spawn_blocking(move || store.lock_refresh(&id)).await {
        Ok(Ok(lock)) => lock,
        Ok(Err(e)) => {
            app.log.log(LogLevel::Warn, "sessionkit::refresh", || {
                format!("{e}; refreshing without the lock")
            });
            None
        }
        Err(_) => None,
    }
}

/// Another process sharing the store may already have refreshed (or rotated, or logged out)
/// this user: then its result is taken instead of spending our copy of the refresh token.
fn adopt_from_store(
    app: &Arc<Context>,
    user: &Arc<UserInner>,
    session: u64,
    token_gen: u64,
) -> Option<Result<String>> {
    app.persist();
    let d = user.data();
    if d.state() != UserState::LoggedIn {
        return Some(Err(AppError::not_logged_in(
            "the user was logged out by another process",
        )));
    }
    let token = d.access()?;
    let newer = d.session() != session || d.token_gen() != token_gen;
    (newer && !token.needs_refresh(app.clock.as_ref(), app.margin)).then(|| Ok(token.raw.clone()))
}

async fn refresh_over_network(
    app: &Arc<Context>,
    user: &Arc<UserInner>,
    refresh_token: &str,
    session: u64,
    trigger: Trigger,
) -> Result<String> {
    // The key of the session the token belongs to (a newer session's result is discarded
    // anyway).
    let key = {
        let d = user.data();
        d.dpop_key().filter(|_| d.session() == session).cloned()
    };
    let mut sent = post_session(app, refresh_token, key.as_deref()).await;
    // An app that turned `required` on since this bearer session's login refuses its refresh
    // without a proof; with DPoP on here, the session is bound to a new key at this refresh
    // (PROTOCOL.md, "DPoP": `required` binds an older session at its first use with a proof).
    let mut fresh_key = None;
    if key.is_none() && app.dpop && matches!(&sent, Ok(r) if r.refuses_proof()) {
        match app.new_dpop_key() {
            Ok(k) => {
                sent = post_session(app, refresh_token, Some(&k)).await;
                fresh_key = Some(k);
            }
            Err(e) => app.log.log(LogLevel::Warn, "sessionkit::refresh", || {
                format!(
                    "could not make a DPoP key to bind user {}'s session: {e}",
                    user.id
                )
            }),
        }
    }
    // The new key is kept only if the server bound the session to it (read only then: every
    // other refresh parses its answer once, below).
    let bound = fresh_key.and_then(|k| {
        let bound_now = sent
            .as_ref()
            .ok()
            .and_then(ApiResponse::json)
            .is_some_and(|doc| doc.get("token_type").and_then(Value::as_str) == Some("DPoP"));
        if bound_now {
            Some(Arc::new(k))
        } else {
            app.discard_key(Some(&k));
            None
        }
    });
    let response = match sent {
        Ok(response) if response.ends_session() => {
            return Err(app.session_rejected(user, session, &response));
        }
        Ok(response) if response.status == 401 => {
            let e = response.stray_401("refresh");
            app.refresh_failed(user, &e);
            return Err(e);
        }
        Ok(response) => response,
        Err(e) => {
            app.refresh_failed(user, &e);
            return Err(e);
        }
    };
    let parsed = response
        .into_json()
        .map_err(AppError::from)
        .and_then(|doc| {
            let access = AccessToken::received(
                required_str(&doc, "access_token", "refresh")?,
                app.clock.as_ref(),
            )?;
            let rotated = doc
                .get("refresh_token")
                .and_then(Value::as_str)
                .map(str::to_string);
            Ok((access, rotated))
        });
    match parsed {
        Ok((access, rotated)) => app.commit_refresh(user, session, access, rotated, bound, trigger),
        Err(e) => {
            app.refresh_failed(user, &e);
            Err(e)
        }
    }
}

/// POST `auth/session` with the refresh token (and a proof from `key`).
async fn post_session(
    app: &Context,
    refresh_token: &str,
    key: Option<&DpopKey>,
) -> Result<ApiResponse> {
    Ok(app
        .transport
        .send(
            Method::POST,
            &Route::Base("auth/session".into()),
            Auth::refresh(refresh_token, key),
            None,
        )
        .await?)
}

/// Starts the proactive refresh loop. It holds the App only weakly and ends when the App is
/// dropped or auto refresh is turned off.
pub(crate) fn start_scheduler(app: &Arc<Context>) {
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        app.log.log(LogLevel::Warn, "sessionkit::refresh", || {
            "auto refresh needs a tokio runtime; it stays off".to_string()
        });
        app.auto_refresh.store(false, Ordering::SeqCst);
        return;
    };
    let weak = Arc::downgrade(app);
    let wake = Arc::clone(&app.scheduler_wake);
    let generation = app.scheduler_generation.fetch_add(1, Ordering::SeqCst) + 1;
    rt.spawn(async move {
        loop {
            let woken = wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let wait = {
                let Some(app) = weak.upgrade() else { return };
                if !app.auto_refresh.load(Ordering::SeqCst)
                    || app.is_closed()
                    || app.scheduler_generation.load(Ordering::SeqCst) != generation
                {
                    return;
                }
                if app.background.load(Ordering::SeqCst) {
                    Duration::from_secs(300)
                } else {
                    app.refresh_due_users()
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = woken => {}
            }
        }
    });
}

impl Context {
    /// Starts a refresh for every logged-in user whose token is due (at the margin, or at 80 %
    /// of its lifetime if that is earlier); returns how long until the next one is due.
    fn refresh_due_users(self: &Arc<Self>) -> Duration {
        let now = self.clock.monotonic();
        let mut next = Duration::from_secs(300);
        let users = self.registry().users.clone();
        for user in users {
            let (due_in, seen) = {
                let d = user.data();
                let Some(t) = d.access().filter(|_| d.state() == UserState::LoggedIn) else {
                    continue;
                };
                let lead = self.margin.max(t.lifetime / 5).min(t.lifetime / 2);
                let due_at = t
                    .expires_at
                    .saturating_sub(lead)
                    .max(d.backoff().scheduler_wait_until);
                (due_at.saturating_sub(now), t.raw.clone())
            };
            if due_in.is_zero() {
                let app = Arc::clone(self);
                tokio::spawn(async move {
                    // Failures are reported as events and retried with backoff by the next round.
                    // Not forced: a caller's refresh that just failed holds this one off too.
                    let _ = app.refresh(&user, Some(&seen), Trigger::Scheduler).await;
                    app.scheduler_wake.notify_one();
                });
            } else {
                next = next.min(due_in);
            }
        }
        next
    }
}
