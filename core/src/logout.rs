//! Logging out, removing a user from this device and deleting the account: the operations
//! that end a user's session on purpose (PROTOCOL.md "Logout", "Delete").

use std::sync::Arc;

use reqwest::Method;

use crate::context::Context;
use crate::dpop::DpopKey;
use crate::error::{AppError, Result};
use crate::hub::Event;
use crate::log::LogLevel;
use crate::session::{Change, Released, UserInner, UserState};
use crate::transport::{Auth, Route};

impl Context {
    /// Logs the user out on this device (an anonymous user is removed), then revokes the
    /// session on the server; nothing to do for a user already logged out.
    pub(crate) async fn log_out(self: &Arc<Self>, user: &Arc<UserInner>) -> Result<()> {
        let Ok(ended) = self.end_session(user, Change::LoggedOut) else {
            return Ok(());
        };
        self.announce_end(user, ended.events);
        self.revoke_released(ended.released).await
    }

    /// Sends the events of a session the app ended. The user may be gone from the registry by
    /// now, so the events carry its record themselves.
    fn announce_end(&self, user: &Arc<UserInner>, mut events: Vec<Event>) {
        Self::attach_user(&mut events, user);
        self.emit_all(events);
    }

    /// DELETE the session of the refresh token a logout or removal took from the user, if it
    /// held one (with a proof from its key when bound). A token the server already forgot is
    /// fine.
    async fn revoke_released(&self, released: Option<Released>) -> Result<()> {
        let Some(released) = released else {
            return Ok(());
        };
        let sent = self
            .transport
            .send(
                Method::DELETE,
                &Route::Base("auth/session".into()),
                Auth::refresh(&released.refresh_token, released.dpop.as_deref()),
                None,
            )
            .await;
        // The key is of no use once the session is over here, revoked or not.
        self.discard_key(released.dpop.as_deref());
        let response = sent?;
        if response.status == 401 {
            return Ok(());
        }
        response.into_json()?;
        Ok(())
    }

    /// Deletes the key of a session that is over from the app's `DpopSigner` (a software key
    /// goes with the session document). A failure is logged: the key is unusable anyway, as
    /// its session is.
    pub(crate) fn discard_key(&self, key: Option<&DpopKey>) {
        if let Some(Err(e)) = key.map(DpopKey::delete) {
            self.log.log(LogLevel::Warn, "sessionkit::dpop", || {
                format!("could not delete the DPoP key of an ended session: {e}")
            });
        }
    }

    /// Removes the user from this device (logging them out first), then revokes the session
    /// on the server. Errors: `ClientUserNotFound` for a user already removed.
    pub(crate) async fn remove_user(self: &Arc<Self>, user: &Arc<UserInner>) -> Result<()> {
        if user.data().state() == UserState::Removed {
            return Err(AppError::not_found("the user has already been removed"));
        }
        self.ensure_known(user)?;
        let Ok(ended) = self.end_session(user, Change::Removed) else {
            return Err(AppError::not_found("the user has already been removed"));
        };
        self.announce_end(user, ended.events);
        self.revoke_released(ended.released).await
    }

    /// Deletes the user's account on the server, then removes the user here. Errors:
    /// `ClientUserNotLoggedIn`, and the server's or the network's (nothing changed here then).
    pub(crate) async fn delete_user(self: &Arc<Self>, user: &Arc<UserInner>) -> Result<()> {
        self.ensure_known(user)?;
        if user.data().state() != UserState::LoggedIn {
            return Err(AppError::not_logged_in(
                "the user must be logged in to be deleted",
            ));
        }
        self.authed(
            user,
            Method::DELETE,
            Route::Base("auth/delete".into()),
            None,
        )
        .await?
        .into_json()?;
        // Never refused: the account is gone whatever happened here meanwhile.
        let events = self
            .end_session(user, Change::Deleted)
            .map(|ended| ended.events)
            .unwrap_or_default();
        self.announce_end(user, events);
        Ok(())
    }
}
