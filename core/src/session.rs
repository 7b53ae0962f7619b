//! One user's session state on this device, and every change it goes through, decided in one
//! place: [`UserData::next`] takes the current data and a [`Change`] and returns the new data
//! and the events to send. Callers do the I/O (the request, the save, the delivery) around it;
//! nothing else writes a user's data (its fields are private to this module). STYLE.md
//! lesson 3, after fxa-client's `state_machine`.
//!
//! ```text
//!                      LoggedIn (a login; an unknown user starts here)
//!                           |
//!        +------------------+-------------------------------------------+
//!        | Refreshed, Linked (same session only: a stale result is refused)
//!        | RefreshFailed (backoff; tokens kept)  ProfileFetched  Adopted
//!        v                                                             |
//!   +----------+  LoggedOut (named user) / SessionEnded (named user)  +-----------+
//!   | LoggedIn | -------------------------------------------------->  | LoggedOut |
//!   +----------+                                                      +-----------+
//!        |  LoggedOut, SessionEnded (anonymous user)                      |   ^
//!        |  Removed, Deleted, RemovedElsewhere                            |   | LoggedIn
//!        v                                                                v   |
//!   +---------+  <------------ Removed, Deleted, RemovedElsewhere --------+---+
//!   | Removed |  final: the record leaves the registry; a later login makes a new one
//!   +---------+
//! ```
//!
//! Every change that ends a session (to `LoggedOut` or `Removed`) clears the tokens, bumps the
//! session counter (so a refresh or link still in flight is discarded when it lands) and hands
//! the caller the refresh token it held, to revoke. `Adopted` takes another process's save and
//! may move the user to any state it wrote. Closing the App is not a change of any user: the
//! sessions stay as they are, and a new App restores them.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::backoff::Backoff;
use crate::dpop::DpopKey;
use crate::error::{AppError, Result};
use crate::token::AccessToken;

shared_type! {
    $ __user_state;
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    =>
    /// Where a user stands.
    pub enum UserState {
        LoggedIn,
        LoggedOut,
        Removed,
    }
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

shared_type! {
    $ __user_identity;
    #[derive(Clone, Debug, PartialEq, Eq, Hash)]
    =>
    /// One way the user can log in: a provider and the id the provider knows them by.
    pub struct UserIdentity {
        pub id: String,
        pub provider_type: String,
    }
}

shared_type! {
    $ __auth_event_kind;
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    =>
    /// What happened.
    pub enum AuthEventKind {
        /// First event to every new subscriber: the state at the time of subscribing.
        InitialState,
        SignedIn,
        TokenRefreshed,
        /// Logged out by the app (`log_out`, `remove_user`).
        SignedOut,
        /// The refresh token was rejected; the user must log in again.
        SessionExpired,
        /// A refresh failed for a transient reason; tokens were kept.
        RefreshFailed,
        UserRemoved,
        UserDeleted,
        CurrentUserChanged,
        ProfileUpdated,
    }
}

/// An event a change announces about its own user: the hub's event without the user, whom the
/// caller names (`Event::about`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Announcement {
    pub kind: AuthEventKind,
    /// True when the app asked for the change.
    pub user_initiated: bool,
    /// The failure as text, never with a token in it.
    pub error: Option<String>,
    /// For `RefreshFailed`: whether the SDK will try again by itself.
    pub will_retry: bool,
}

impl Announcement {
    pub(crate) fn new(kind: AuthEventKind, user_initiated: bool) -> Self {
        Self {
            kind,
            user_initiated,
            error: None,
            will_retry: false,
        }
    }
}

/// A change to one user's data: what happened, with what it brings.
pub(crate) enum Change {
    /// A login answered (also of a user already on this device, logged out or not): a new
    /// session with these tokens.
    LoggedIn {
        access: AccessToken,
        refresh: String,
        device_id: String,
        /// The key the server bound the session to (its answer said `token_type: DPoP`).
        dpop: Option<Arc<DpopKey>>,
    },
    /// Linking another identity answered with a new access token, for session `session`.
    Linked { session: u64, access: AccessToken },
    /// The profile was fetched. `announce`: tell subscribers (`ProfileUpdated`); a login's own
    /// fetch does not.
    ProfileFetched {
        identities: Vec<UserIdentity>,
        profile: Value,
        announce: bool,
    },
    /// A refresh of session `session` brought an access token, and maybe a rotated refresh
    /// token. `app_asked`: the app called for it.
    Refreshed {
        session: u64,
        access: AccessToken,
        rotated: Option<String>,
        app_asked: bool,
        /// The key the server bound this bearer session to at this refresh (an app that
        /// turned `required` on since the login).
        bound: Option<Arc<DpopKey>>,
    },
    /// A refresh failed for a transient reason at monotonic time `now`; the tokens stay.
    RefreshFailed {
        now: Duration,
        error: AppError,
        will_retry: bool,
    },
    /// The server rejected the refresh token of session `session`: the session is over
    /// (`message` is the `SessionExpired` event's text).
    SessionEnded { session: u64, message: String },
    /// The app logged the user out; an anonymous user is removed, as it could never log in
    /// again.
    LoggedOut,
    /// The app removed the user from this device.
    Removed,
    /// The user's account was deleted on the server.
    Deleted,
    /// Another process sharing the store saved this version of the user (boxed: the data is
    /// much larger than every other change).
    Adopted(Box<UserData>),
    /// Another process sharing the store removed the user (it hears no event of its own: the
    /// process that removed the user told its subscribers).
    RemovedElsewhere,
}

/// What a change did.
pub(crate) struct Outcome {
    /// The data after the change.
    pub data: UserData,
    /// Whether the change altered the data (and so wants saving).
    pub changed: bool,
    /// The events to send about this user, in order. A change of the current user that follows
    /// is the registry's to announce.
    pub events: Vec<Announcement>,
    /// The refresh token the change took from the user, for the caller to revoke.
    pub released: Option<Released>,
}

/// The credentials of a session a change ended, for the caller to revoke it on the server.
pub(crate) struct Released {
    pub refresh_token: String,
    /// The session's DPoP key: the revocation of a bound session needs a proof from it.
    pub dpop: Option<Arc<DpopKey>>,
}

/// What applying a change to a user's record did: [`Outcome`] once the data is in place.
pub(crate) struct Applied {
    /// Whether the data changed (and so wants saving).
    pub changed: bool,
    pub events: Vec<Announcement>,
    pub released: Option<Released>,
}

/// Why a change was not applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// It belongs to a session that is over: a refresh or link result landing after a logout
    /// or a newer login, a rejection of an older session's token, or a user already removed.
    Stale,
    /// It is so already (logging out a logged-out user).
    AlreadyDone,
}

/// The data of one user on this device. Only [`UserData::next`] changes it. Not `Clone`: a
/// change moves it through `next` instead of copying the profile and tokens.
pub(crate) struct UserData {
    state: UserState,
    access: Option<AccessToken>,
    refresh: Option<String>,
    /// The key a DPoP-bound session's requests carry proofs of (#29); `None`: bearer tokens.
    dpop: Option<Arc<DpopKey>>,
    device_id: String,
    provider_type: String,
    identities: Vec<UserIdentity>,
    profile: Value,
    /// Bumped by every login and logout, so a refresh that started in an older session is
    /// discarded instead of reviving it.
    session: u64,
    /// Bumped whenever the tokens are replaced (login, refresh, link, another process's save),
    /// even by an identical token: how a refresh learns that someone else already did it.
    token_gen: u64,
    backoff: Backoff,
}

impl UserData {
    /// A user not logged in yet, first seen with a login of `provider_type`: what
    /// [`Change::LoggedIn`] applies to for a user new to this device.
    pub(crate) fn new(provider_type: &str) -> Self {
        Self {
            state: UserState::LoggedOut,
            access: None,
            refresh: None,
            dpop: None,
            device_id: String::new(),
            provider_type: provider_type.to_string(),
            identities: Vec::new(),
            profile: json!({}),
            session: 0,
            token_gen: 0,
            backoff: Backoff::default(),
        }
    }

    /// A user as the store has them (a removed user is not restored at all). Logged in only
    /// with both tokens (an unreadable access token comes as `None`): a user missing one is
    /// logged out rather than lost. `dpop`: the key of a bound session.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn restored(
        state: UserState,
        access: Option<AccessToken>,
        refresh: Option<String>,
        dpop: Option<Arc<DpopKey>>,
        device_id: String,
        provider_type: String,
        identities: Vec<UserIdentity>,
        profile: Value,
    ) -> Self {
        let logged_in = state == UserState::LoggedIn && access.is_some() && refresh.is_some();
        Self {
            state: if logged_in {
                UserState::LoggedIn
            } else {
                UserState::LoggedOut
            },
            access: access.filter(|_| logged_in),
            refresh: refresh.filter(|_| logged_in),
            dpop: dpop.filter(|_| logged_in),
            device_id,
            provider_type,
            identities,
            profile,
            session: 0,
            token_gen: 0,
            backoff: Backoff::default(),
        }
    }

    pub(crate) fn state(&self) -> UserState {
        self.state
    }
    pub(crate) fn access(&self) -> Option<&AccessToken> {
        self.access.as_ref()
    }
    pub(crate) fn refresh_token(&self) -> Option<&str> {
        self.refresh.as_deref()
    }
    /// The DPoP key of a bound session.
    pub(crate) fn dpop_key(&self) -> Option<&Arc<DpopKey>> {
        self.dpop.as_ref()
    }
    pub(crate) fn device_id(&self) -> &str {
        &self.device_id
    }
    /// The provider of the login that first created the user on this device.
    pub(crate) fn provider_type(&self) -> &str {
        &self.provider_type
    }
    pub(crate) fn identities(&self) -> &[UserIdentity] {
        &self.identities
    }
    /// The profile's `data` document.
    pub(crate) fn profile(&self) -> &Value {
        &self.profile
    }
    pub(crate) fn session(&self) -> u64 {
        self.session
    }
    pub(crate) fn token_gen(&self) -> u64 {
        self.token_gen
    }
    pub(crate) fn backoff(&self) -> &Backoff {
        &self.backoff
    }

    /// Anonymous: logged in anonymously and never linked to another identity.
    pub(crate) fn is_anonymous(&self) -> bool {
        self.provider_type == "anon-user"
            && self
                .identities
                .iter()
                .all(|i| i.provider_type == "anon-user")
    }

    /// Where a logout or a rejected refresh token leaves this user.
    fn end_state(&self) -> UserState {
        if self.is_anonymous() {
            UserState::Removed
        } else {
            UserState::LoggedOut
        }
    }

    /// Forgets the tokens and the key and moves to `state`; returns the refresh token (and
    /// key) it held.
    fn end(&mut self, state: UserState) -> Option<Released> {
        self.state = state;
        self.access = None;
        self.session += 1;
        self.backoff = Backoff::default();
        let dpop = self.dpop.take();
        self.refresh.take().map(|refresh_token| Released {
            refresh_token,
            dpop,
        })
    }

    /// The one place a user's data changes: takes the current data and `change`, and returns
    /// the data after it with the events it announces; or, when it does not apply (see the
    /// module's diagram), the data as it was and why.
    // The refused data comes back by value, as the applied data does in `Outcome`: boxing it
    // would allocate on every change to spare a move.
    #[allow(clippy::result_large_err)]
    pub(crate) fn next(mut self, change: Change) -> std::result::Result<Outcome, (Self, Refused)> {
        use AuthEventKind as K;
        let mut events = Vec::new();
        let mut released = None;
        let mut changed = true;
        match change {
            Change::LoggedIn {
                access,
                refresh,
                device_id,
                dpop,
            } => {
                self.state = UserState::LoggedIn;
                self.access = Some(access);
                self.refresh = Some(refresh);
                self.dpop = dpop;
                self.token_gen += 1;
                self.device_id = device_id;
                self.session += 1;
                self.backoff = Backoff::default();
                events.push(Announcement::new(K::SignedIn, true));
            }
            Change::Linked { session, access } => {
                if !self.in_session(session) {
                    return Err((self, Refused::Stale));
                }
                self.access = Some(access);
                self.token_gen += 1;
            }
            Change::ProfileFetched {
                identities,
                profile,
                announce,
            } => {
                self.identities = identities;
                self.profile = profile;
                if announce {
                    events.push(Announcement::new(K::ProfileUpdated, true));
                }
            }
            Change::Refreshed {
                session,
                access,
                rotated,
                app_asked,
                bound,
            } => {
                if !self.in_session(session) {
                    return Err((self, Refused::Stale));
                }
                if self.dpop.is_none() {
                    self.dpop = bound;
                }
                self.access = Some(access);
                self.token_gen += 1;
                if let Some(r) = rotated {
                    self.refresh = Some(r);
                }
                self.backoff = Backoff::default();
                events.push(Announcement::new(K::TokenRefreshed, app_asked));
            }
            Change::RefreshFailed {
                now,
                error,
                will_retry,
            } => {
                let mut failed = Announcement::new(K::RefreshFailed, false);
                failed.error = Some(error.to_string());
                failed.will_retry = will_retry;
                self.backoff.record_failure(now, error);
                events.push(failed);
            }
            Change::SessionEnded { session, message } => {
                if session != self.session || self.state == UserState::Removed {
                    return Err((self, Refused::Stale));
                }
                let target = self.end_state();
                released = self.end(target);
                let mut expired = Announcement::new(K::SessionExpired, false);
                expired.error = Some(message);
                events.push(expired);
                if target == UserState::Removed {
                    events.push(Announcement::new(K::UserRemoved, false));
                }
            }
            Change::LoggedOut => {
                let target = self.end_state();
                if self.state == UserState::Removed || self.state == target {
                    return Err((self, Refused::AlreadyDone));
                }
                released = self.end(target);
                events.push(Announcement::new(K::SignedOut, true));
                if target == UserState::Removed {
                    events.push(Announcement::new(K::UserRemoved, true));
                }
            }
            Change::Removed => {
                if self.state == UserState::Removed {
                    return Err((self, Refused::Stale));
                }
                if self.is_logged_in() {
                    events.push(Announcement::new(K::SignedOut, true));
                }
                events.push(Announcement::new(K::UserRemoved, true));
                released = self.end(UserState::Removed);
            }
            Change::Deleted => {
                // The account is gone whatever this device thought of the user meanwhile.
                events.push(Announcement::new(K::UserDeleted, true));
                if self.state == UserState::Removed {
                    changed = false;
                } else {
                    released = self.end(UserState::Removed);
                }
            }
            Change::Adopted(theirs) => {
                let theirs = *theirs;
                if self.refresh != theirs.refresh || self.state != theirs.state {
                    self.session += 1;
                    self.backoff = Backoff::default();
                }
                self.token_gen += 1;
                // Keep our own copy of an unchanged access token: its expiry is measured more
                // exactly.
                if self.access.as_ref().map(|t| &t.raw) != theirs.access.as_ref().map(|t| &t.raw) {
                    self.access = theirs.access;
                }
                self.state = theirs.state;
                self.refresh = theirs.refresh;
                // Keep our parsed key when it is the same one.
                if self.dpop.as_ref().map(|k| k.thumbprint())
                    != theirs.dpop.as_ref().map(|k| k.thumbprint())
                {
                    self.dpop = theirs.dpop;
                }
                self.device_id = theirs.device_id;
                self.provider_type = theirs.provider_type;
                self.identities = theirs.identities;
                self.profile = theirs.profile;
            }
            Change::RemovedElsewhere => {
                released = self.end(UserState::Removed);
            }
        }
        Ok(Outcome {
            data: self,
            changed,
            events,
            released,
        })
    }

    /// Logged in, in session `session` (a result of an older session is stale).
    fn in_session(&self, session: u64) -> bool {
        session == self.session && self.is_logged_in()
    }

    fn is_logged_in(&self) -> bool {
        self.state == UserState::LoggedIn
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

    /// The user's data, locked for reading (every field is private; changes go through
    /// [`apply`](Self::apply)).
    pub(crate) fn data(&self) -> MutexGuard<'_, UserData> {
        self.data.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies `change` under the user's lock ([`UserData::next`] decides) and returns what it
    /// did; the caller saves and sends the events.
    pub(crate) fn apply(&self, change: Change) -> std::result::Result<Applied, Refused> {
        let mut d = self.data();
        // Moved out for `next` and back in below; `next` does not panic, so it never stays
        // the placeholder.
        let current = std::mem::replace(&mut *d, UserData::new(""));
        match current.next(change) {
            Ok(outcome) => {
                *d = outcome.data;
                Ok(Applied {
                    changed: outcome.changed,
                    events: outcome.events,
                    released: outcome.released,
                })
            }
            Err((current, why)) => {
                *d = current;
                Err(why)
            }
        }
    }
}

/// A refresh in flight: the result every waiting caller receives.
pub(crate) type Flight = watch::Receiver<Option<Result<String>>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::jwt::encode_for_test;
    use AuthEventKind as K;

    fn token(n: i64) -> AccessToken {
        let raw = encode_for_test(&json!({"exp": 2_000_000_000 + n, "iat": 1_999_998_200}));
        AccessToken::received(raw, &ManualClock::new()).unwrap()
    }

    fn applied(d: UserData, change: Change) -> Outcome {
        match d.next(change) {
            Ok(o) => o,
            Err((_, why)) => panic!("refused: {why:?}"),
        }
    }

    fn refused(d: UserData, change: Change) -> Refused {
        match d.next(change) {
            Ok(_) => panic!("applied"),
            Err((_, why)) => why,
        }
    }

    fn login(n: i64, refresh: &str) -> Change {
        Change::LoggedIn {
            access: token(n),
            refresh: refresh.into(),
            device_id: format!("d{n}"),
            dpop: None,
        }
    }

    /// A user just logged in with `provider`, refresh token `r0`.
    fn logged_in(provider: &str) -> UserData {
        applied(UserData::new(provider), login(0, "r0")).data
    }

    fn refreshed(d: UserData, n: i64, rotated: Option<&str>, app_asked: bool) -> Outcome {
        let session = d.session();
        let change = Change::Refreshed {
            bound: None,
            session,
            access: token(n),
            rotated: rotated.map(str::to_string),
            app_asked,
        };
        applied(d, change)
    }

    fn kinds(o: &Outcome) -> Vec<(AuthEventKind, bool)> {
        o.events
            .iter()
            .map(|a| (a.kind, a.user_initiated))
            .collect()
    }

    #[test]
    fn a_login_starts_a_session_and_announces_itself() {
        let blank = UserData::new("local-userpass");
        let (session0, gen0) = (blank.session(), blank.token_gen());
        let o = applied(blank, login(0, "r0"));
        assert_eq!(kinds(&o), [(K::SignedIn, true)]);
        let d = o.data;
        assert_eq!(d.state(), UserState::LoggedIn);
        assert_eq!(d.refresh_token(), Some("r0"));
        assert_eq!(d.device_id(), "d0");
        assert_ne!(d.session(), session0);
        assert_ne!(d.token_gen(), gen0);
        let first = d.session();
        let d2 = applied(d, login(1, "r1")).data;
        assert_ne!(d2.session(), first, "a new login is a new session");
        assert_eq!(d2.provider_type(), "local-userpass");
        assert_eq!(d2.refresh_token(), Some("r1"));
    }

    #[test]
    fn a_refresh_or_link_of_an_older_session_is_refused() {
        let d = logged_in("local-userpass");
        let old = d.session();
        let stale = |d: UserData| {
            let r = refused(
                d,
                Change::Refreshed {
                    bound: None,
                    session: old,
                    access: token(1),
                    rotated: None,
                    app_asked: false,
                },
            );
            assert_eq!(r, Refused::Stale);
        };
        let out = applied(d, Change::LoggedOut).data;
        stale(out);
        let out = applied(logged_in("local-userpass"), Change::LoggedOut).data;
        let linked = Change::Linked {
            session: old,
            access: token(1),
        };
        assert_eq!(refused(out, linked), Refused::Stale);
        let newer = applied(logged_in("local-userpass"), login(2, "r2")).data;
        let ended = Change::SessionEnded {
            session: old,
            message: "x".into(),
        };
        assert_eq!(
            refused(newer, ended),
            Refused::Stale,
            "an older session's token"
        );
    }

    #[test]
    fn a_refused_change_hands_the_data_back_untouched() {
        let d = logged_in("local-userpass");
        let (session, token_gen) = (d.session(), d.token_gen());
        let Err((back, Refused::AlreadyDone)) =
            applied(d, Change::LoggedOut).data.next(Change::LoggedOut)
        else {
            panic!("a second logout must be refused")
        };
        assert_eq!(back.state(), UserState::LoggedOut);
        assert_ne!(back.session(), session);
        assert_eq!(back.token_gen(), token_gen);
    }

    #[test]
    fn a_refresh_replaces_the_tokens_and_clears_the_backoff() {
        let d = logged_in("local-userpass");
        let failed = Change::RefreshFailed {
            now: Duration::from_secs(10),
            error: AppError::Network {
                message: "down".into(),
            },
            will_retry: true,
        };
        let o = applied(d, failed);
        assert_eq!(kinds(&o), [(K::RefreshFailed, false)]);
        assert!(o.events[0].will_retry);
        assert!(o.events[0].error.as_deref().unwrap().contains("down"));
        let d = o.data;
        assert_eq!(d.refresh_token(), Some("r0"), "a failure keeps the tokens");
        assert!(d.backoff().last_error.is_some());
        let session = d.session();
        let o = refreshed(d, 5, Some("r1"), true);
        assert_eq!(kinds(&o), [(K::TokenRefreshed, true)]);
        let d2 = o.data;
        assert_eq!(d2.refresh_token(), Some("r1"));
        assert_eq!(d2.access().unwrap().claims.exp, 2_000_000_005);
        assert!(d2.backoff().last_error.is_none());
        assert_eq!(d2.session(), session, "a refresh stays in the session");
    }

    #[test]
    fn ending_a_session_releases_the_refresh_token_and_says_why() {
        let o = applied(logged_in("local-userpass"), Change::LoggedOut);
        assert_eq!(kinds(&o), [(K::SignedOut, true)]);
        assert_eq!(
            o.released.as_ref().map(|r| r.refresh_token.as_str()),
            Some("r0")
        );
        let out = o.data;
        assert_eq!(out.state(), UserState::LoggedOut);
        assert!(out.access().is_none() && out.refresh_token().is_none());
        assert_eq!(refused(out, Change::LoggedOut), Refused::AlreadyDone);

        let o = applied(logged_in("anon-user"), Change::LoggedOut);
        assert_eq!(kinds(&o), [(K::SignedOut, true), (K::UserRemoved, true)]);
        assert_eq!(o.data.state(), UserState::Removed);

        let anon = logged_in("anon-user");
        let ended = Change::SessionEnded {
            session: anon.session(),
            message: "SessionRevoked: gone".into(),
        };
        let o = applied(anon, ended);
        assert_eq!(
            kinds(&o),
            [(K::SessionExpired, false), (K::UserRemoved, false)]
        );
        assert_eq!(o.events[0].error.as_deref(), Some("SessionRevoked: gone"));
    }

    #[test]
    fn removal_and_deletion_are_final() {
        let o = applied(logged_in("local-userpass"), Change::Removed);
        assert_eq!(kinds(&o), [(K::SignedOut, true), (K::UserRemoved, true)]);
        let removed = o.data;
        assert_eq!(refused(removed, Change::Removed), Refused::Stale);
        let out = applied(logged_in("local-userpass"), Change::LoggedOut).data;
        let o = applied(out, Change::Removed);
        assert_eq!(kinds(&o), [(K::UserRemoved, true)], "no SignedOut twice");
        let o = applied(o.data, Change::Deleted);
        assert_eq!(kinds(&o), [(K::UserDeleted, true)]);
        assert!(!o.changed, "a removed user is deleted without a change");
        let o = applied(logged_in("local-userpass"), Change::Deleted);
        assert!(o.changed);
        assert_eq!(o.data.state(), UserState::Removed);
        let o = applied(logged_in("local-userpass"), Change::RemovedElsewhere);
        assert!(o.events.is_empty());
        assert_eq!(o.data.state(), UserState::Removed);
    }

    #[test]
    fn adopting_another_process_save_starts_a_session_only_when_the_tokens_moved() {
        let d = logged_in("local-userpass");
        let (session, token_gen) = (d.session(), d.token_gen());
        let o = applied(d, Change::Adopted(Box::new(logged_in("local-userpass"))));
        assert!(o.events.is_empty());
        assert_eq!(o.data.session(), session, "same tokens: same session");
        assert_ne!(o.data.token_gen(), token_gen, "but a refresh learns of it");
        let theirs = refreshed(logged_in("local-userpass"), 9, Some("r9"), false).data;
        let adopted = applied(o.data, Change::Adopted(Box::new(theirs))).data;
        assert_eq!(adopted.refresh_token(), Some("r9"));
        assert_ne!(
            adopted.session(),
            session,
            "a refresh in flight is discarded"
        );
    }

    #[test]
    fn a_bound_sessions_key_lives_and_ends_with_it() {
        let key = Arc::new(DpopKey::generate().unwrap());
        let bound = Change::LoggedIn {
            access: token(0),
            refresh: "r0".into(),
            device_id: "d".into(),
            dpop: Some(Arc::clone(&key)),
        };
        let d = applied(UserData::new("local-userpass"), bound).data;
        assert_eq!(d.dpop_key().map(|k| k.thumbprint()), Some(key.thumbprint()));
        // A refresh keeps it; another process's save brings its own.
        let d = refreshed(d, 1, Some("r1"), false).data;
        assert!(d.dpop_key().is_some());
        let theirs = logged_in("local-userpass");
        let d = applied(d, Change::Adopted(Box::new(theirs))).data;
        assert!(d.dpop_key().is_none(), "their session is a bearer one");
        // Ending a session hands the key over with the refresh token, to sign the revocation.
        let relogin = Change::LoggedIn {
            access: token(2),
            refresh: "r2".into(),
            device_id: "d".into(),
            dpop: Some(Arc::clone(&key)),
        };
        let o = applied(applied(d, relogin).data, Change::LoggedOut);
        let released = o.released.unwrap();
        assert_eq!(released.refresh_token, "r2");
        assert_eq!(released.dpop.unwrap().thumbprint(), key.thumbprint());
        assert!(o.data.dpop_key().is_none());
    }

    #[test]
    fn a_profile_fetch_announces_only_when_asked() {
        let fetched = |announce| Change::ProfileFetched {
            identities: vec![UserIdentity {
                id: "i1".into(),
                provider_type: "local-userpass".into(),
            }],
            profile: json!({"name": "Ada"}),
            announce,
        };
        let quiet = applied(logged_in("local-userpass"), fetched(false));
        assert!(quiet.events.is_empty());
        assert_eq!(quiet.data.profile()["name"], "Ada");
        let loud = applied(quiet.data, fetched(true));
        assert_eq!(kinds(&loud), [(K::ProfileUpdated, true)]);
    }
}
