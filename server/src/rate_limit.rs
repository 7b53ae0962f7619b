//! Rate limits (`[rate_limits]`), so that one client cannot guess passwords at speed, flood an
//! inbox with mails, or fill the database with sign-ups. Over a limit a request gets 429
//! `TooManyRequests` with `Retry-After`; the SDK treats that as transient.
//!
//! - Logins per account (email/password, and an address's sign-in codes, keyed apart; OWASP
//!   ASVS V2.2.1: at most 100 failed attempts an hour on one account). Attempts are counted,
//!   not only failures, which bounds failures the same way without a second store.
//! - Logins per client address, whatever the provider (API keys, custom tokens...).
//! - Sign-ups per client address: anonymous logins and registrations.
//! - Mails per client address: confirmation, reset and sign-in code mails (register, resend,
//!   reset, email-otp/send).
//!
//! The limiters are GCRA buckets from `governor`, keyed and in memory (one server instance).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::config::RateLimitConfig;
use crate::error::ApiError;

/// The client's address, put on each request by the accept loop (`0.0.0.0` if unknown).
#[derive(Clone, Copy, Debug)]
pub struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<ClientAddr>()
            .copied()
            .unwrap_or(ClientAddr(IpAddr::from([0, 0, 0, 0]))))
    }
}

type Keyed<K> = Option<DefaultKeyedRateLimiter<K>>;

/// Every limiter of the server; a limit of 0 (or `enabled = false`) is no limiter.
pub struct RateLimits {
    logins_per_account: Keyed<String>,
    logins_per_address: Keyed<IpAddr>,
    signups_per_address: Keyed<IpAddr>,
    mails_per_address: Keyed<IpAddr>,
}

fn hourly<K: std::hash::Hash + Eq + Clone>(enabled: bool, per_hour: u32) -> Keyed<K> {
    let n = NonZeroU32::new(per_hour).filter(|_| enabled)?;
    // The whole hour's allowance may be spent at once; it refills evenly over the hour.
    Some(RateLimiter::keyed(Quota::per_hour(n).allow_burst(n)))
}

fn check<K: std::hash::Hash + Eq + Clone>(
    limiter: &Keyed<K>,
    key: &K,
    what: &str,
) -> Result<(), ApiError> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        ApiError::too_many_requests(
            format!("too many {what}; retry later"),
            wait.as_secs().max(1),
        )
    })
}

impl RateLimits {
    /// The limiters `config` asks for.
    pub fn new(config: &RateLimitConfig) -> Self {
        let on = config.enabled;
        RateLimits {
            logins_per_account: hourly(on, config.logins_per_account_per_hour),
            logins_per_address: hourly(on, config.logins_per_address_per_hour),
            signups_per_address: hourly(on, config.signups_per_address_per_hour),
            mails_per_address: hourly(on, config.mails_per_address_per_hour),
        }
    }

    /// A login attempt from `addr`, for an `account` (`<app_id>/<email>` for email/password,
    /// `<app_id>/email-otp/<email>` for a sign-in code).
    pub fn login(&self, addr: IpAddr, account: Option<&str>) -> Result<(), ApiError> {
        check(&self.logins_per_address, &addr, "logins from this address")?;
        match account {
            Some(a) => check(
                &self.logins_per_account,
                &a.to_string(),
                "login attempts for this account",
            ),
            None => Ok(()),
        }
    }

    /// A new account (anonymous or registered) from `addr`.
    pub fn signup(&self, addr: IpAddr) -> Result<(), ApiError> {
        check(
            &self.signups_per_address,
            &addr,
            "sign-ups from this address",
        )
    }

    /// A mail (confirmation, reset, sign-in code) asked for from `addr`.
    pub fn mail(&self, addr: IpAddr) -> Result<(), ApiError> {
        check(
            &self.mails_per_address,
            &addr,
            "mails asked for from this address",
        )
    }

    /// Forgets keys whose buckets are full again, so memory does not grow with every address
    /// ever seen; the sweeper calls it.
    pub fn forget_idle(&self) {
        for l in [
            &self.logins_per_address,
            &self.signups_per_address,
            &self.mails_per_address,
        ]
        .into_iter()
        .flatten()
        {
            l.retain_recent();
        }
        if let Some(l) = &self.logins_per_account {
            l.retain_recent();
        }
    }
}

/// How often idle keys are forgotten.
pub const FORGET_EVERY: Duration = Duration::from_secs(600);
