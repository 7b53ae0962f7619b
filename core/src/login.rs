//! Logging in, linking another identity, the profile, and choosing the current user: the
//! operations that give a user a session (PROTOCOL.md "Login", "Linking", "Profile").

use std::sync::Arc;

use reqwest::Method;
use serde_json::{Value, json};

use crate::context::Context;
use crate::credentials::Credentials;
use crate::dpop::{DpopKey, DpopKeyError};
use crate::error::{AppError, Result};
use crate::hub::Event;
use crate::session::{Change, UserData, UserIdentity, UserInner, UserState};
use crate::token::AccessToken;
use crate::transport::{Auth, Route, required_str};

/// What a login answered: the new session's tokens, device id, and key if it is bound.
pub(crate) struct Session {
    pub access: AccessToken,
    pub refresh: String,
    pub device_id: String,
    pub dpop: Option<Arc<DpopKey>>,
}

impl Context {
    /// A new key for a session to be bound to: the app's signer's, or a software key.
    pub(crate) fn new_dpop_key(&self) -> std::result::Result<DpopKey, DpopKeyError> {
        match &self.dpop_signer {
            None => DpopKey::generate(),
            Some(signer) => DpopKey::create(Arc::clone(signer)),
        }
    }

    pub(crate) fn login_body(&self, credentials: &Credentials) -> Result<Value> {
        let mut body = credentials.body()?;
        let d = &self.device;
        let mut device = json!({
            "appId": self.app_id,
            "platform": d.platform,
            "platformVersion": d.platform_version,
            "sdk": d.sdk,
            "sdkVersion": d.sdk_version,
            "cpuArch": d.cpu_arch,
        });
        for (key, value) in [
            ("deviceName", &d.device_name),
            ("deviceVersion", &d.device_version),
            ("frameworkName", &d.framework_name),
            ("frameworkVersion", &d.framework_version),
            ("bundleId", &d.bundle_id),
            ("appVersion", &d.app_version),
        ] {
            if let Some(v) = value {
                device[key] = json!(v);
            }
        }
        body.insert("options".into(), json!({ "device": device }));
        Ok(Value::Object(body))
    }

    pub(crate) async fn log_in(
        self: &Arc<Self>,
        credentials: Credentials,
    ) -> Result<Arc<UserInner>> {
        // Reuse means one anonymous user per app on this device: concurrent reusing logins
        // wait for each other, so the second finds the user the first created.
        let _reusing = match credentials {
            Credentials::Anonymous { reuse: true } => {
                let guard = self.anonymous_reuse.lock().await;
                if let Some(user) = self.logged_in_anonymous() {
                    self.switch_user(&user)?;
                    return Ok(user);
                }
                Some(guard)
            }
            _ => None,
        };
        let body = self.login_body(&credentials)?;
        let route = Route::App(format!("auth/providers/{}/login", credentials.provider()));
        // A new key per login (PROTOCOL.md, "DPoP"): the proof asks the server to bind the
        // session to it.
        let key = self
            .dpop
            .then(|| self.new_dpop_key())
            .transpose()
            .map_err(|e| AppError::Storage {
                message: format!("could not log in: {e}"),
            })?;
        let answer = self
            .transport
            .send(Method::POST, &route, Auth::proof(key.as_ref()), Some(&body))
            .await
            .and_then(|r| r.into_json());
        let doc = match answer {
            Ok(doc) => doc,
            Err(e) => {
                self.discard_key(key.as_ref());
                return Err(e.into());
            }
        };
        let user_id = required_str(&doc, "user_id", "login")?;
        let access = required_str(&doc, "access_token", "login")?;
        let refresh = required_str(&doc, "refresh_token", "login")?;
        let device_id = required_str(&doc, "device_id", "login")?;
        let access =
            AccessToken::received(access, self.clock.as_ref()).map_err(|e| AppError::BadToken {
                message: format!(
                    "could not log in: the server sent a malformed access token ({e})"
                ),
            })?;
        // Bound only if the server says so; an app with DPoP off answers with bearer tokens.
        let bound = doc.get("token_type").and_then(Value::as_str) == Some("DPoP");
        if !bound {
            self.discard_key(key.as_ref());
        }
        let dpop = key.filter(|_| bound).map(Arc::new);
        let session = Session {
            access,
            refresh,
            device_id,
            dpop,
        };
        let (user, signed_in, current_changed) =
            self.upsert_user(user_id, session, &credentials.provider());
        self.persist();
        let mut events = signed_in;
        events.extend(current_changed.map(|mut e| {
            e.what.user_initiated = true;
            e
        }));
        self.emit_all(events);
        // A new session for the proactive scheduler to look after.
        self.scheduler_wake.notify_one();
        // realm-core: login, then profile, then the user is made current.
        self.fetch_profile(&user, false).await?;
        self.switch_user(&user)?;
        Ok(user)
    }

    pub(crate) fn logged_in_anonymous(&self) -> Option<Arc<UserInner>> {
        let reg = self.registry();
        let found = reg.users.iter().find(|u| {
            let d = u.data();
            d.state() == UserState::LoggedIn && d.is_anonymous()
        });
        found.cloned()
    }

    /// Creates the user, or gives an existing one (even logged out) its new session. Returns
    /// the user, the events of the login, and the event to send if that changed who is current
    /// (a first user becomes current at once).
    pub(crate) fn upsert_user(
        &self,
        id: String,
        session: Session,
        provider: &str,
    ) -> (Arc<UserInner>, Vec<Event>, Option<Event>) {
        let mut reg = self.registry();
        let before = reg.current().map(|u| u.id.clone());
        let user = match reg.find(&id).cloned() {
            Some(user) => user,
            None => {
                let user = Arc::new(UserInner::new(id, UserData::new(provider)));
                reg.users.push(Arc::clone(&user));
                user
            }
        };
        let login = Change::LoggedIn {
            access: session.access,
            refresh: session.refresh,
            device_id: session.device_id,
            dpop: session.dpop,
        };
        // A login applies to every state, so nothing is ever refused here.
        let announced = user.apply(login).map(|a| a.events).unwrap_or_default();
        let events = announced
            .into_iter()
            .map(|a| Event::about(&user, a))
            .collect();
        let current_changed = reg.settle_current(before);
        (user, events, current_changed)
    }

    /// GET the profile and keep its identities and data; `announce`: then send
    /// `ProfileUpdated` (a login's own fetch does not).
    pub(crate) async fn fetch_profile(
        self: &Arc<Self>,
        user: &Arc<UserInner>,
        announce: bool,
    ) -> Result<()> {
        let doc = self
            .authed(user, Method::GET, Route::Base("auth/profile".into()), None)
            .await?
            .into_json()?;
        let identities = doc
            .get("identities")
            .and_then(Value::as_array)
            .ok_or_else(|| AppError::malformed("profile: missing array field \"identities\""))?
            .iter()
            .map(|i| {
                Ok(UserIdentity {
                    id: required_str(i, "id", "profile identity")?,
                    provider_type: required_str(i, "provider_type", "profile identity")?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let data = doc
            .get("data")
            .filter(|d| d.is_object())
            .cloned()
            .ok_or_else(|| AppError::malformed("profile: missing object field \"data\""))?;
        let fetched = Change::ProfileFetched {
            identities,
            profile: data,
            announce,
        };
        let announced = user.apply(fetched).map(|a| a.events).unwrap_or_default();
        self.persist();
        self.emit_all(announced.into_iter().map(|a| Event::about(user, a)));
        Ok(())
    }

    pub(crate) async fn link(
        self: &Arc<Self>,
        user: &Arc<UserInner>,
        credentials: Credentials,
    ) -> Result<()> {
        self.ensure_known(user)?;
        let session = {
            let d = user.data();
            if d.state() != UserState::LoggedIn {
                return Err(AppError::not_logged_in(
                    "the user must be logged in to link credentials",
                ));
            }
            d.session()
        };
        if let Credentials::Anonymous { .. } = credentials {
            return Err(AppError::ClientUserAlreadyNamed {
                message: "cannot add anonymous credentials to an existing user".into(),
            });
        }
        let body = self.login_body(&credentials)?;
        let route = Route::App(format!(
            "auth/providers/{}/login?link=true",
            credentials.provider()
        ));
        let doc = self
            .authed(user, Method::POST, route, Some(&body))
            .await?
            .into_json()?;
        if let Some(linked) = doc.get("user_id").and_then(Value::as_str)
            && linked != user.id
        {
            return Err(AppError::malformed(format!(
                "link: the server linked user {linked}, not {}",
                user.id
            )));
        }
        let access = AccessToken::received(
            required_str(&doc, "access_token", "link")?,
            self.clock.as_ref(),
        )?;
        if user.apply(Change::Linked { session, access }).is_err() {
            return Err(AppError::not_logged_in("the user logged out while linking"));
        }
        self.persist();
        self.fetch_profile(user, true).await?;
        self.switch_user(user)
    }

    pub(crate) fn switch_user(&self, user: &Arc<UserInner>) -> Result<()> {
        if user.data().state() != UserState::LoggedIn {
            return Err(AppError::not_logged_in(
                "the user is logged out or removed; log in again first",
            ));
        }
        let event = {
            let mut reg = self.registry();
            if !reg.find(&user.id).is_some_and(|u| Arc::ptr_eq(u, user)) {
                return Err(AppError::not_found("the user is not on this device"));
            }
            let before = reg.current().map(|u| u.id.clone());
            reg.make_current(&user.id);
            reg.settle_current(before)
        };
        self.persist();
        if let Some(mut e) = event {
            e.what.user_initiated = true;
            self.emit(e);
        }
        Ok(())
    }
}
