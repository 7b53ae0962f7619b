//! Time, injectable. Token freshness is judged on a monotonic clock (never the wall clock), so a
//! device clock that is hours off causes neither refresh loops nor stale tokens.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of monotonic and wall-clock time.
pub trait Clock: Send + Sync {
    /// Monotonic time since an arbitrary fixed point; never goes back.
    fn monotonic(&self) -> Duration;
    /// Seconds since the Unix epoch by the device's (possibly wrong) clock.
    fn unix_now(&self) -> i64;
}

/// The real clocks.
#[derive(Debug)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn monotonic(&self) -> Duration {
        self.start.elapsed()
    }
    fn unix_now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// A clock that real time moves, plus whatever a test adds: `advance` moves both clocks,
/// `set_wall_offset` skews only the wall clock (a device clock set wrong).
///
/// ```
/// use sessionkit::{Clock, ManualClock};
/// let clock = ManualClock::new();
/// let before = clock.monotonic();
/// clock.advance(std::time::Duration::from_secs(3600));
/// assert!(clock.monotonic() - before >= std::time::Duration::from_secs(3600));
/// ```
#[derive(Debug, Default)]
pub struct ManualClock {
    real: SystemClock,
    offsets: Mutex<(Duration, i64)>,
}

impl ManualClock {
    pub fn new() -> Self {
        Self::default()
    }
    /// Moves time forward on both clocks.
    pub fn advance(&self, by: Duration) {
        let mut o = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        o.0 += by;
        o.1 += by.as_secs() as i64;
    }
    /// Skews the wall clock by `secs` (negative: behind) without moving monotonic time.
    pub fn set_wall_offset(&self, secs: i64) {
        let mut o = self.offsets.lock().unwrap_or_else(|e| e.into_inner());
        o.1 = o.0.as_secs() as i64 + secs;
    }
}

impl Clock for ManualClock {
    fn monotonic(&self) -> Duration {
        self.real.monotonic() + self.offsets.lock().unwrap_or_else(|e| e.into_inner()).0
    }
    fn unix_now(&self) -> i64 {
        self.real.unix_now() + self.offsets.lock().unwrap_or_else(|e| e.into_inner()).1
    }
}
