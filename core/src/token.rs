//! An access token as the SDK keeps it: the raw string, its claims, and its lifetime measured
//! on the monotonic clock, so a wrong device clock cannot make it look fresh or stale.

use std::time::Duration;

use crate::clock::Clock;
use crate::error::Result;
use crate::jwt::{self, Claims};

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
