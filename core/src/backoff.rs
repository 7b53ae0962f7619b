//! Backoff after transient refresh failures: how long callers get the last error instead of a
//! new request, and when the proactive scheduler tries again (PROTOCOL.md "Client refresh
//! rules").

use std::time::Duration;

use crate::error::AppError;

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
