//! Logging out, removing a user from this device and deleting the account: the operations
//! that end a user's session on purpose (PROTOCOL.md "Logout", "Delete").

use std::sync::Arc;

use reqwest::Method;

use crate::context::Context;
use crate::error::{AppError, Result};
use crate::hub::{AuthEventKind, Event};
use crate::session::{UserInner, UserState};
use crate::transport::Route;

impl Context {
    pub(crate) async fn log_out(self: &Arc<Self>, user: &Arc<UserInner>) -> Result<()> {
        let target = {
            let d = user.data();
            let target = if d.is_anonymous() {
                UserState::Removed
            } else {
                UserState::LoggedOut
            };
            if d.state == UserState::Removed || d.state == target {
                return Ok(());
            }
            target
        };
        let Some((refresh, current_changed)) = self.end_locally(user, target, None) else {
            return Ok(());
        };
        let mut events = vec![Event::new(AuthEventKind::SignedOut, Some(&user.id), true)];
        if target == UserState::Removed {
            events.push(Event::new(AuthEventKind::UserRemoved, Some(&user.id), true));
        }
        events.extend(current_changed);
        // The user may be gone from the registry: these events carry the handle themselves.
        Self::attach_user(&mut events, user);
        self.emit_all(events);
        match refresh {
            Some(token) => self.revoke(&token).await,
            None => Ok(()),
        }
    }

    /// DELETE the session on the server. A token the server already forgot is fine.
    pub(crate) async fn revoke(&self, refresh_token: &str) -> Result<()> {
        let response = self
            .transport
            .send(
                Method::DELETE,
                &Route::Base("auth/session".into()),
                Some(refresh_token),
                None,
            )
            .await?;
        if response.status == 401 {
            return Ok(());
        }
        response.into_json()?;
        Ok(())
    }

    pub(crate) async fn remove_user(self: &Arc<Self>, user: &Arc<UserInner>) -> Result<()> {
        if user.data().state == UserState::Removed {
            return Err(AppError::not_found("the user has already been removed"));
        }
        self.ensure_known(user)?;
        let was_logged_in = user.data().state == UserState::LoggedIn;
        let Some((refresh, current_changed)) = self.end_locally(user, UserState::Removed, None)
        else {
            return Err(AppError::not_found("the user has already been removed"));
        };
        let mut events = Vec::new();
        if was_logged_in {
            events.push(Event::new(AuthEventKind::SignedOut, Some(&user.id), true));
        }
        events.push(Event::new(AuthEventKind::UserRemoved, Some(&user.id), true));
        events.extend(current_changed);
        // The user may be gone from the registry: these events carry the handle themselves.
        Self::attach_user(&mut events, user);
        self.emit_all(events);
        match refresh {
            Some(token) => self.revoke(&token).await,
            None => Ok(()),
        }
    }

    pub(crate) async fn delete_user(self: &Arc<Self>, user: &Arc<UserInner>) -> Result<()> {
        self.ensure_known(user)?;
        if user.data().state != UserState::LoggedIn {
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
        let current_changed = self
            .end_locally(user, UserState::Removed, None)
            .and_then(|(_, e)| e);
        let mut events = vec![Event::new(AuthEventKind::UserDeleted, Some(&user.id), true)];
        events.extend(current_changed);
        // The user may be gone from the registry: these events carry the handle themselves.
        Self::attach_user(&mut events, user);
        self.emit_all(events);
        Ok(())
    }
}
