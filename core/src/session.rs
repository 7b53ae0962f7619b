//! One user's session state on this device: where the user stands, the tokens, the counters
//! that tell a stale result from a current one, and the refresh backoff. Plain data under one
//! lock per user; it knows neither the App nor the server (docs/ARCHITECTURE.md).

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

use crate::clock::Clock;
use crate::error::{AppError, Result};
use crate::jwt::{self, Claims};

/// Where a user stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UserState {
    LoggedIn,
    LoggedOut,
    Removed,
}

impl UserState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::LoggedIn => "LoggedIn",
            Self::LoggedOut => "LoggedOut",
            Self::Removed => "Removed",
        }
    }
    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "LoggedIn" => Some(Self::LoggedIn),
            "LoggedOut" => Some(Self::LoggedOut),
            "Removed" => Some(Self::Removed),
            _ => None,
        }
    }
}

/// One way the user can log in: a provider and the id the provider knows them by.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserIdentity {
    pub id: String,
    pub provider_type: String,
}

/// An access token with its lifetime measured on the monotonic clock.
#[derive(Clone)]
pub(crate) struct AccessToken {
    pub raw: String,
    pub claims: Claims,
    /// Monotonic time at which it expires.
    pub expires_at: Duration,
    pub lifetime: Duration,
}

impl AccessToken {
    /// A token just received: it lives `exp - iat` from now, whatever the device clock says.
    pub(crate) fn received(raw: String, clock: &dyn Clock) -> Result<Self> {
        let claims = jwt::decode(&raw)?;
        let lifetime_secs = match claims.iat {
            Some(iat) => claims.exp - iat,
            None => claims.exp - clock.unix_now(),
        };
        let lifetime = Duration::from_secs(lifetime_secs.max(0) as u64);
        Ok(Self {
            raw,
            claims,
            expires_at: clock.monotonic() + lifetime,
            lifetime,
        })
    }

    /// A token read back from storage: only the wall clock can say how much of it is left.
    pub(crate) fn restored(raw: String, clock: &dyn Clock) -> Result<Self> {
        let claims = jwt::decode(&raw)?;
        let lifetime =
            Duration::from_secs(claims.iat.map_or(0, |iat| (claims.exp - iat).max(0)) as u64);
        let left = Duration::from_secs((claims.exp - clock.unix_now()).max(0) as u64);
        Ok(Self {
            raw,
            claims,
            expires_at: clock.monotonic() + left,
            lifetime,
        })
    }

    pub(crate) fn remaining(&self, clock: &dyn Clock) -> Duration {
        self.expires_at.saturating_sub(clock.monotonic())
    }

    /// Needs a refresh when it has less than `min_ttl` to live. A `min_ttl` that even a new
    /// token could not meet (a server issuing tokens shorter than the margin) becomes half the
    /// token's lifetime, so such a server does not cause a refresh on every call.
    pub(crate) fn needs_refresh(&self, clock: &dyn Clock, min_ttl: Duration) -> bool {
        let threshold = if min_ttl < self.lifetime {
            min_ttl
        } else {
            self.lifetime / 2
        };
        self.remaining(clock) < threshold
    }
}

/// The mutable state of one user.
pub(crate) struct UserData {
    pub state: UserState,
    pub access: Option<AccessToken>,
    pub refresh: Option<String>,
    pub device_id: String,
    pub provider_type: String,
    pub identities: Vec<UserIdentity>,
    pub profile: Value,
    /// Bumped by every login and logout, so a refresh that started in an older session is
    /// discarded instead of reviving it.
    pub session: u64,
    /// Bumped whenever the tokens are replaced (login, refresh, link, another process's save),
    /// even by an identical token: how a refresh learns that someone else already did it.
    pub token_gen: u64,
    pub backoff: Backoff,
}

impl UserData {
    pub(crate) fn is_anonymous(&self) -> bool {
        self.provider_type == "anon-user"
            && self
                .identities
                .iter()
                .all(|i| i.provider_type == "anon-user")
    }
    /// Forgets the tokens and moves to `state`; returns the refresh token it held.
    pub(crate) fn end(&mut self, state: UserState) -> Option<String> {
        self.state = state;
        self.access = None;
        self.session += 1;
        self.backoff = Backoff::default();
        self.refresh.take()
    }
}

/// The App-side record of a user, shared by every `User` handle.
pub(crate) struct UserInner {
    pub id: String,
    data: Mutex<UserData>,
    /// The refresh in flight, if any: every caller waits on the same result.
    pub(crate) flight: Mutex<Option<Flight>>,
}

impl UserInner {
    pub(crate) fn new(id: String, data: UserData) -> Self {
        Self {
            id,
            data: Mutex::new(data),
            flight: Mutex::new(None),
        }
    }
    pub(crate) fn data(&self) -> MutexGuard<'_, UserData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A refresh in flight: the result every waiting caller receives.
pub(crate) type Flight = watch::Receiver<Option<Result<String>>>;

/// Callers are held off this long at most after a transient failure, so they don't hammer a
/// struggling server while the scheduler backs off further.
const CALLER_COOLDOWN_CAP: Duration = Duration::from_secs(5);
const BACKOFF_START: Duration = Duration::from_secs(1);
const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// The longest a server's `Retry-After` holds off the scheduler and callers: a wrong or hostile
/// value must not stop refreshing for days (PROTOCOL.md, "Client refresh rules").
const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

/// Transient refresh failures of one user, for backoff.
#[derive(Clone, Default)]
pub(crate) struct Backoff {
    failures: u32,
    /// Monotonic time before which callers get `last_error` instead of a new request.
    pub callers_wait_until: Duration,
    /// Monotonic time of the scheduler's next try.
    pub scheduler_wait_until: Duration,
    pub last_error: Option<AppError>,
}

impl Backoff {
    /// Counts a transient failure at monotonic time `now`: callers wait at most
    /// `CALLER_COOLDOWN_CAP`, the scheduler backs off exponentially up to `BACKOFF_CAP`, and a
    /// server's `Retry-After` is a floor for both.
    pub(crate) fn record_failure(&mut self, now: Duration, error: AppError) {
        self.failures = self.failures.saturating_add(1);
        let exp = BACKOFF_START.saturating_mul(1 << self.failures.saturating_sub(1).min(16));
        let delay = jitter(exp.min(BACKOFF_CAP));
        // The server's Retry-After is a floor for both, never shortened by the jitter.
        let asked = error.retry_after().unwrap_or_default().min(RETRY_AFTER_CAP);
        self.callers_wait_until = now + delay.min(CALLER_COOLDOWN_CAP).max(asked);
        self.scheduler_wait_until = now + delay.max(asked);
        self.last_error = Some(error);
    }
}

/// Takes up to a quarter off, so many devices failing together don't retry together.
fn jitter(d: Duration) -> Duration {
    use std::hash::{BuildHasher, RandomState};
    let r = RandomState::new().hash_one(std::time::SystemTime::now()) % 1000;
    d - d.mul_f64(0.25 * r as f64 / 1000.0)
}
