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

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use crate::backoff::Backoff;
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
    /// The data after the change; `None` when the change leaves it as it was.
    pub data: Option<UserData>,
    /// The events to send about this user, in order. A change of the current user that follows
    /// is the registry's to announce.
    pub events: Vec<Announcement>,
    /// The refresh token the change took from the user, for the caller to revoke.
    pub released: Option<String>,
}

/// What applying a change to a user's record did: [`Outcome`] once the data is in place.
pub(crate) struct Applied {
    /// Whether the data changed (and so wants saving).
    pub changed: bool,
    pub events: Vec<Announcement>,
    pub released: Option<String>,
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

/// The data of one user on this device. Only [`UserData::next`] makes a changed copy.
#[derive(Clone)]
pub(crate) struct UserData {
    state: UserState,
    access: Option<AccessToken>,
    refresh: Option<String>,
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
    /// logged out rather than lost.
    pub(crate) fn restored(
        state: UserState,
        access: Option<AccessToken>,
        refresh: Option<String>,
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
            device_id,
            identities,
            profile,
            ..Self::new(&provider_type)
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

    /// Forgets the tokens and moves to `state`; returns the refresh token it held.
    fn end(&mut self, state: UserState) -> Option<String> {
        self.state = state;
        self.access = None;
        self.session += 1;
        self.backoff = Backoff::default();
        self.refresh.take()
    }

    /// The one place a user's data changes: the data after `change` and the events it
    /// announces, or why it does not apply (see the module's diagram).
    pub(crate) fn next(&self, change: Change) -> std::result::Result<Outcome, Refused> {
        use AuthEventKind as K;
        let mut d = self.clone();
        let mut events = Vec::new();
        let mut released = None;
        let current_session = |session: u64| session == self.session && self.is_logged_in();
        match change {
            Change::LoggedIn {
                access,
                refresh,
                device_id,
            } => {
                d.state = UserState::LoggedIn;
                d.access = Some(access);
                d.refresh = Some(refresh);
                d.token_gen += 1;
                d.device_id = device_id;
                d.session += 1;
                d.backoff = Backoff::default();
                events.push(Announcement::new(K::SignedIn, true));
            }
            Change::Linked { session, access } => {
                if !current_session(session) {
                    return Err(Refused::Stale);
                }
                d.access = Some(access);
                d.token_gen += 1;
            }
            Change::ProfileFetched {
                identities,
                profile,
                announce,
            } => {
                d.identities = identities;
                d.profile = profile;
                if announce {
                    events.push(Announcement::new(K::ProfileUpdated, true));
                }
            }
            Change::Refreshed {
                session,
                access,
                rotated,
                app_asked,
            } => {
                if !current_session(session) {
                    return Err(Refused::Stale);
                }
                d.access = Some(access);
                d.token_gen += 1;
                if let Some(r) = rotated {
                    d.refresh = Some(r);
                }
                d.backoff = Backoff::default();
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
                d.backoff.record_failure(now, error);
                events.push(failed);
            }
            Change::SessionEnded { session, message } => {
                if session != self.session || self.state == UserState::Removed {
                    return Err(Refused::Stale);
                }
                let target = self.end_state();
                released = d.end(target);
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
                    return Err(Refused::AlreadyDone);
                }
                released = d.end(target);
                events.push(Announcement::new(K::SignedOut, true));
                if target == UserState::Removed {
                    events.push(Announcement::new(K::UserRemoved, true));
                }
            }
            Change::Removed => {
                if self.state == UserState::Removed {
                    return Err(Refused::Stale);
                }
                released = d.end(UserState::Removed);
                if self.state == UserState::LoggedIn {
                    events.push(Announcement::new(K::SignedOut, true));
                }
                events.push(Announcement::new(K::UserRemoved, true));
            }
            Change::Deleted => {
                // The account is gone whatever this device thought of the user meanwhile.
                events.push(Announcement::new(K::UserDeleted, true));
                if self.state == UserState::Removed {
                    return Ok(Outcome {
                        data: None,
                        events,
                        released,
                    });
                }
                released = d.end(UserState::Removed);
            }
            Change::Adopted(theirs) => {
                let theirs = *theirs;
                if self.refresh != theirs.refresh || self.state != theirs.state {
                    d.session += 1;
                    d.backoff = Backoff::default();
                }
                d.token_gen += 1;
                // Keep our own copy of an unchanged access token: its expiry is measured more
                // exactly.
                if self.access.as_ref().map(|t| &t.raw) != theirs.access.as_ref().map(|t| &t.raw) {
                    d.access = theirs.access;
                }
                d.state = theirs.state;
                d.refresh = theirs.refresh;
                d.device_id = theirs.device_id;
                d.provider_type = theirs.provider_type;
                d.identities = theirs.identities;
                d.profile = theirs.profile;
            }
            Change::RemovedElsewhere => {
                released = d.end(UserState::Removed);
            }
        }
        Ok(Outcome {
            data: Some(d),
            events,
            released,
        })
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
        let outcome = d.next(change)?;
        let changed = outcome.data.is_some();
        if let Some(new) = outcome.data {
            *d = new;
        }
        Ok(Applied {
            changed,
            events: outcome.events,
            released: outcome.released,
        })
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

    fn logged_in(provider: &str) -> UserData {
        let login = Change::LoggedIn {
            access: token(0),
            refresh: "r0".into(),
            device_id: "d0".into(),
        };
        UserData::new(provider).next(login).unwrap().data.unwrap()
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
        let d = logged_in("local-userpass");
        assert_eq!(d.state(), UserState::LoggedIn);
        assert_eq!(d.refresh_token(), Some("r0"));
        assert_eq!(d.device_id(), "d0");
        assert_ne!(d.session(), blank.session());
        assert_ne!(d.token_gen(), blank.token_gen());
        let again = Change::LoggedIn {
            access: token(1),
            refresh: "r1".into(),
            device_id: "d1".into(),
        };
        let o = d.next(again).unwrap();
        assert_eq!(kinds(&o), [(K::SignedIn, true)]);
        let d2 = o.data.unwrap();
        assert_ne!(d2.session(), d.session(), "a new login is a new session");
        assert_eq!(d2.provider_type(), "local-userpass");
    }

    #[test]
    fn a_refresh_or_link_of_an_older_session_is_refused() {
        let d = logged_in("local-userpass");
        let old = d.session();
        let out = d.next(Change::LoggedOut).unwrap().data.unwrap();
        for change in [
            Change::Refreshed {
                session: old,
                access: token(1),
                rotated: None,
                app_asked: false,
            },
            Change::Linked {
                session: old,
                access: token(1),
            },
        ] {
            assert!(matches!(out.next(change), Err(Refused::Stale)));
        }
        let stale = Change::SessionEnded {
            session: old,
            message: "x".into(),
        };
        assert!(matches!(out.next(stale), Err(Refused::Stale)));
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
        let o = d.next(failed).unwrap();
        assert_eq!(kinds(&o), [(K::RefreshFailed, false)]);
        assert!(o.events[0].will_retry);
        assert!(o.events[0].error.as_deref().unwrap().contains("down"));
        let d = o.data.unwrap();
        assert_eq!(d.refresh_token(), Some("r0"), "a failure keeps the tokens");
        assert!(d.backoff().last_error.is_some());
        let refreshed = Change::Refreshed {
            session: d.session(),
            access: token(5),
            rotated: Some("r1".into()),
            app_asked: true,
        };
        let o = d.next(refreshed).unwrap();
        assert_eq!(kinds(&o), [(K::TokenRefreshed, true)]);
        let d2 = o.data.unwrap();
        assert_eq!(d2.refresh_token(), Some("r1"));
        assert_eq!(d2.access().unwrap().claims.exp, 2_000_000_005);
        assert!(d2.backoff().last_error.is_none());
        assert_eq!(d2.session(), d.session(), "a refresh stays in the session");
    }

    #[test]
    fn ending_a_session_releases_the_refresh_token_and_says_why() {
        let named = logged_in("local-userpass");
        let o = named.next(Change::LoggedOut).unwrap();
        assert_eq!(kinds(&o), [(K::SignedOut, true)]);
        assert_eq!(o.released.as_deref(), Some("r0"));
        let out = o.data.unwrap();
        assert_eq!(out.state(), UserState::LoggedOut);
        assert!(out.access().is_none() && out.refresh_token().is_none());
        assert!(matches!(
            out.next(Change::LoggedOut),
            Err(Refused::AlreadyDone)
        ));

        let anon = logged_in("anon-user");
        let o = anon.next(Change::LoggedOut).unwrap();
        assert_eq!(kinds(&o), [(K::SignedOut, true), (K::UserRemoved, true)]);
        assert_eq!(o.data.unwrap().state(), UserState::Removed);

        let ended = Change::SessionEnded {
            session: anon.session(),
            message: "SessionRevoked: gone".into(),
        };
        let o = anon.next(ended).unwrap();
        assert_eq!(
            kinds(&o),
            [(K::SessionExpired, false), (K::UserRemoved, false)]
        );
        assert_eq!(o.events[0].error.as_deref(), Some("SessionRevoked: gone"));
    }

    #[test]
    fn removal_and_deletion_are_final() {
        let d = logged_in("local-userpass");
        let o = d.next(Change::Removed).unwrap();
        assert_eq!(kinds(&o), [(K::SignedOut, true), (K::UserRemoved, true)]);
        let removed = o.data.unwrap();
        assert!(matches!(removed.next(Change::Removed), Err(Refused::Stale)));
        let out = d.next(Change::LoggedOut).unwrap().data.unwrap();
        let o = out.next(Change::Removed).unwrap();
        assert_eq!(kinds(&o), [(K::UserRemoved, true)], "no SignedOut twice");
        let o = removed.next(Change::Deleted).unwrap();
        assert_eq!(kinds(&o), [(K::UserDeleted, true)]);
        assert!(
            o.data.is_none(),
            "a removed user is deleted without a change"
        );
        let o = d.next(Change::Deleted).unwrap();
        assert_eq!(o.data.unwrap().state(), UserState::Removed);
        let o = d.next(Change::RemovedElsewhere).unwrap();
        assert!(o.events.is_empty());
        assert_eq!(o.data.unwrap().state(), UserState::Removed);
    }

    #[test]
    fn adopting_another_process_save_starts_a_session_only_when_the_tokens_moved() {
        let d = logged_in("local-userpass");
        let same = d.clone();
        let o = d.next(Change::Adopted(Box::new(same))).unwrap();
        let kept = o.data.unwrap();
        assert!(o.events.is_empty());
        assert_eq!(kept.session(), d.session(), "same tokens: same session");
        assert_ne!(
            kept.token_gen(),
            d.token_gen(),
            "but a refresh learns of it"
        );
        let rotated = d
            .next(Change::Refreshed {
                session: d.session(),
                access: token(9),
                rotated: Some("r9".into()),
                app_asked: false,
            })
            .unwrap()
            .data
            .unwrap();
        let adopted = d.next(Change::Adopted(Box::new(rotated))).unwrap();
        let adopted = adopted.data.unwrap();
        assert_eq!(adopted.refresh_token(), Some("r9"));
        assert_ne!(
            adopted.session(),
            d.session(),
            "a refresh in flight is discarded"
        );
    }

    #[test]
    fn a_profile_fetch_announces_only_when_asked() {
        let d = logged_in("local-userpass");
        let fetched = |announce| Change::ProfileFetched {
            identities: vec![UserIdentity {
                id: "i1".into(),
                provider_type: "local-userpass".into(),
            }],
            profile: json!({"name": "Ada"}),
            announce,
        };
        let quiet = d.next(fetched(false)).unwrap();
        assert!(quiet.events.is_empty());
        assert_eq!(quiet.data.unwrap().profile()["name"], "Ada");
        assert_eq!(
            kinds(&d.next(fetched(true)).unwrap()),
            [(K::ProfileUpdated, true)]
        );
    }
}
