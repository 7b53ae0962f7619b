//! Requests on a user's behalf: with the access token (refreshed first, one replay after a
//! 401), or with the refresh token (API keys, sessions), where a 401 ends the session.

use std::sync::Arc;

use reqwest::Method;
use serde_json::Value;

use crate::context::Context;
use crate::error::{AppError, Result};
use crate::session::{UserInner, UserState};
use crate::transport::{ApiResponse, Auth, Route};

impl Context {
    /// A request with the user's access token: a fresh token first, and on 401 one refresh and
    /// one replay. A second 401 is returned as it came.
    pub(crate) async fn authed(
        self: &Arc<Self>,
        user: &Arc<UserInner>,
        method: Method,
        route: Route,
        body: Option<&Value>,
    ) -> Result<ApiResponse> {
        let token = self.valid_access_token(user, None).await?;
        let key = user.data().dpop_key().cloned();
        let response = self
            .transport
            .send(
                method.clone(),
                &route,
                Auth::access(&token, key.as_deref()),
                body,
            )
            .await?;
        if response.status != 401 {
            return Ok(response);
        }
        match self.refresh_after_401(user, &token).await {
            Ok(fresh) => {
                // The refresh may have bound the session to a key (an app now `required`).
                let key = user.data().dpop_key().cloned();
                Ok(self
                    .transport
                    .send(method, &route, Auth::access(&fresh, key.as_deref()), body)
                    .await?)
            }
            // The session is over (refused, or ended by a logout here or in another process
            // sharing the store): that, not the 401, is the answer.
            Err(e @ (AppError::SessionExpired { .. } | AppError::ClientUserNotLoggedIn { .. })) => {
                Err(e)
            }
            Err(_) => Ok(response),
        }
    }

    /// A request with the user's refresh token (the API key endpoints). A 401 means the refresh
    /// token is dead: the session ends as it would on a failed refresh.
    pub(crate) async fn refresh_authed(
        self: &Arc<Self>,
        user: &Arc<UserInner>,
        method: Method,
        route: Route,
        body: Option<&Value>,
    ) -> Result<Value> {
        self.ensure_known(user)?;
        let (token, key, session) = {
            let d = user.data();
            match (d.refresh_token(), d.state()) {
                (Some(t), UserState::LoggedIn) => {
                    (t.to_string(), d.dpop_key().cloned(), d.session())
                }
                _ => return Err(AppError::not_logged_in("the user must be logged in")),
            }
        };
        let response = self
            .transport
            .send(method, &route, Auth::refresh(&token, key.as_deref()), body)
            .await?;
        if response.ends_session() {
            return Err(self.session_rejected(user, session, &response));
        }
        if response.status == 401 {
            return Err(response.stray_401("request with the refresh token"));
        }
        Ok(response.into_json()?)
    }
}
