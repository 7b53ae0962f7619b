//! Login sessions: issuing access and refresh tokens, and judging presented tokens.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::config::DpopMode;
use crate::dpop;
use crate::error::{ApiError, Reason};
use crate::state::{AppRuntime, Inner};
use crate::store::{CheckedSession, NewSession, PresentedRefresh, RefreshUse, SessionRow, UserRow};
use crate::tokens::{self, Claims, TYP_ACCESS, TYP_REFRESH, VerifyError};
use axum::http::HeaderMap;

/// Signs an access token for `user` in session `session_id`, which it names (`sid`) so that a
/// revoked session's access tokens are refused at once ([`access_user`], #25). `jkt`: the key
/// a DPoP-bound session is bound to, carried as `cnf.jkt` (RFC 9449 section 6.1).
pub fn access_token(
    app: &AppRuntime,
    user: &UserRow,
    device_id: &str,
    session_id: &str,
    jkt: Option<&str>,
    now: i64,
) -> String {
    let claims = Claims {
        exp: now + app.config.access_token_lifetime_secs as i64,
        iat: now,
        sub: user.id.clone(),
        typ: TYP_ACCESS.to_string(),
        baas_device_id: device_id.to_string(),
        domain_id: Some(app.domain_id.clone()),
        iss: app.config.id.clone(),
        aud: None,
        user_data: user.custom_data.clone(),
        sid: Some(session_id.to_string()),
        // Unique per token: two tokens issued in the same second must still differ, so a
        // client can tell a refreshed token from the one it had.
        jti: Some(tokens::new_object_id()),
        cnf: jkt.map(|jkt| tokens::Confirmation {
            jkt: jkt.to_string(),
        }),
    };
    let active = app.keys().active().cloned();
    match active {
        Some(key) => crate::signing::sign(
            &key,
            &Claims {
                aud: Some(app.config.id.clone()),
                ..claims
            },
        ),
        None => tokens::sign(&claims, &app.secret),
    }
}

/// A refresh token of session `sid`. Signing (HS256) is deterministic: the same claims give the
/// same token.
fn refresh_token(
    app: &AppRuntime,
    user_id: &str,
    device_id: &str,
    sid: &str,
    exp: i64,
    now: i64,
    jti: String,
) -> String {
    let claims = Claims {
        exp,
        iat: now,
        sub: user_id.to_string(),
        typ: TYP_REFRESH.to_string(),
        baas_device_id: device_id.to_string(),
        domain_id: None,
        iss: app.config.id.clone(),
        aud: None,
        user_data: None,
        sid: Some(sid.to_string()),
        jti: Some(jti),
        cnf: None,
    };
    tokens::sign(&claims, &app.secret)
}

/// The successor of the refresh token whose SHA-256 (hex) is `parent_hash`, issued at
/// `issued_at` (Unix seconds). A function of its arguments: its `jti` is derived from the parent
/// under the app secret, its other claims are the session's, and the successor of a session's
/// token keeps the session's absolute expiry. So the store makes the very token a rotation
/// handed out again from what it keeps (the parent's hash and the successor's `issued_at`)
/// when the parent is accepted a second time, without keeping any token in clear
/// (PROTOCOL.md, "Refresh token rotation").
fn successor_refresh_token(
    app: &AppRuntime,
    session: &SessionRow,
    parent_hash: &str,
    issued_at: i64,
) -> String {
    let jti = tokens::derived_id(
        &app.secret,
        &format!("refresh-successor:{}:{parent_hash}", session.id),
    );
    refresh_token(
        app,
        &session.user_id,
        &session.device_id,
        &session.id,
        session.expires_at,
        issued_at,
        jti,
    )
}

/// What a login tells of itself, kept with its session for its user's list (#25).
pub struct LoginOrigin {
    /// The device id of the login.
    pub device_id: String,
    /// The provider it logs in with.
    pub provider_type: String,
    /// Its device document, as listed (JSON text; [`device_document`]).
    pub device: Option<String>,
    /// The client address.
    pub ip: Option<String>,
    /// The thumbprint of the key its DPoP proof was made with, when the session is to be
    /// bound to it (dpop.rs).
    pub jkt: Option<String>,
}

/// The session a login starts for `user`, with its first refresh token. `api_key_id`: the API
/// key it logs in with, whose deletion or disabling ends it.
pub fn new_session(
    app: &AppRuntime,
    user: &UserRow,
    origin: LoginOrigin,
    api_key_id: Option<String>,
    now: i64,
) -> NewSession {
    let device_id = origin.device_id.as_str();
    let lifetime = if user.anonymous {
        app.config.anon_refresh_token_lifetime_secs as i64
    } else {
        app.refresh_lifetime.load(Ordering::SeqCst)
    };
    let expires_at = now.saturating_add(lifetime);
    let id = tokens::new_object_id();
    let jti = tokens::new_object_id();
    let refresh_token = refresh_token(app, &user.id, device_id, &id, expires_at, now, jti);
    NewSession {
        id,
        device_id: device_id.to_string(),
        expires_at,
        refresh_token,
        api_key_id,
        provider_type: origin.provider_type,
        device: origin.device,
        ip: origin.ip,
        jkt: origin.jkt,
    }
}

/// Longest value kept of a device document's field (characters).
const DEVICE_FIELD_MAX: usize = 100;

/// The listed device document of a login (`options.device`, PROTOCOL.md "Sessions"): the
/// client's strings for `platform`, `platformVersion`, `sdk`, `sdkVersion`, `cpuArch`,
/// `deviceName`, `deviceVersion`, `frameworkName`, `frameworkVersion`, `bundleId`,
/// `appVersion`, under snake_case names, each cut to 100 characters without control or format characters; anything else
/// (other fields, non-strings) is dropped. `None` when nothing is left. The client chose the
/// values: they are shown to the user as the device's, never trusted.
pub fn device_document(body: &serde_json::Map<String, serde_json::Value>) -> Option<String> {
    let device = body
        .get("options")
        .and_then(|o| o.get("device"))
        .and_then(|d| d.as_object())?;
    let mut out = serde_json::Map::new();
    for (wire, listed) in [
        ("platform", "platform"),
        ("platformVersion", "platform_version"),
        ("sdk", "sdk"),
        ("sdkVersion", "sdk_version"),
        ("cpuArch", "cpu_arch"),
        ("deviceName", "device_name"),
        ("deviceVersion", "device_version"),
        ("frameworkName", "framework_name"),
        ("frameworkVersion", "framework_version"),
        ("bundleId", "bundle_id"),
        ("appVersion", "app_version"),
    ] {
        if let Some(v) = device.get(wire).and_then(|v| v.as_str()) {
            let v: String = v
                .chars()
                // Control and format characters (a right-to-left override, zero-width ones:
                // #22) would let a device name pose as another in the user's list.
                .filter(|c| {
                    !c.is_control()
                        && unicode_properties::UnicodeGeneralCategory::general_category(*c)
                            != unicode_properties::GeneralCategory::Format
                })
                .take(DEVICE_FIELD_MAX)
                .collect();
            if !v.trim().is_empty() {
                out.insert(listed.to_string(), serde_json::Value::String(v));
            }
        }
    }
    (!out.is_empty()).then(|| serde_json::Value::Object(out).to_string())
}

/// The token of a request's `Authorization` header, and whether its scheme is `DPoP` (a
/// DPoP-bound token, RFC 9449 section 7.1) rather than `Bearer`. 401 InvalidSession without
/// one of the two.
pub fn authorization(headers: &HeaderMap) -> Result<(String, bool), ApiError> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::invalid_session("must authenticate first: missing Authorization header")
        })?
        .to_str()
        .map_err(|_| ApiError::invalid_session("invalid Authorization header"))?;
    let (scheme, token) = value
        .split_once(' ')
        .ok_or_else(|| ApiError::invalid_session("invalid Authorization header"))?;
    let dpop = scheme.eq_ignore_ascii_case("dpop");
    if !(dpop || scheme.eq_ignore_ascii_case("bearer")) || token.trim().is_empty() {
        return Err(ApiError::invalid_session("invalid Authorization header"));
    }
    Ok((token.trim().to_string(), dpop))
}

/// The token of a request (`Authorization: Bearer` or `DPoP`).
pub fn bearer(headers: &HeaderMap) -> Result<String, ApiError> {
    authorization(headers).map(|(token, _)| token)
}

/// The request's DPoP proof, checked for `target` (dpop.rs) and remembered so that it is
/// never accepted again: the thumbprint of its key; `None` when the request has no `DPoP`
/// header. `access_token`: the token the proof's `ath` must hash, for calls made with one.
/// Errors: 401 `InvalidDPoPProof` or `UseDPoPNonce` (a token endpoint makes them 400,
/// [`dpop::for_token_endpoint`]).
pub async fn proof(
    st: &Inner,
    app: &AppRuntime,
    headers: &HeaderMap,
    target: &dpop::Target,
    access_token: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let Some(value) = dpop::header(headers)? else {
        return Ok(None);
    };
    let now = st.now();
    let request = dpop::Request {
        method: &target.method,
        url: &target.url,
        access_token,
        now,
    };
    let proof = dpop::verify(value, &request, &app.config.id, &app.secret)?;
    if !st
        .store
        .remember_proof(&proof.replay_key, proof.remember_until)
        .await?
    {
        return Err(dpop::invalid("this proof was used before: make a new one"));
    }
    Ok(Some(proof.jkt))
}

/// Verifies a token of ours of type `typ`, finding its app from the (then verified) `iss`.
/// Counts the request as `op` for that app (not at all when `op` is empty).
pub fn verify_bearer(
    st: &Inner,
    headers: &HeaderMap,
    typ: &str,
    op: &str,
) -> Result<(Arc<AppRuntime>, Claims, String), ApiError> {
    let token = match bearer(headers) {
        Ok(t) => t,
        Err(e) => {
            st.counters.bump(None, op);
            return Err(e);
        }
    };
    let app = tokens::peek_issuer(&token).and_then(|iss| st.apps.get(&iss).cloned());
    st.counters
        .bump(app.as_ref().map(|a| a.config.id.as_str()), op);
    let app = app.ok_or_else(|| ApiError::invalid_session("invalid session: malformed token"))?;
    let claims = match app.verify(&token, st.now()) {
        Ok(c) => c,
        Err(VerifyError::UnknownKey) => {
            // Perhaps a key another instance made since our last reload: look again.
            st.reload_keys_soon();
            return Err(ApiError::invalid_session(
                "invalid session: signature is invalid",
            ));
        }
        Err(VerifyError::Invalid) => {
            return Err(ApiError::invalid_session(
                "invalid session: signature is invalid",
            ));
        }
        Err(VerifyError::Expired) if typ == TYP_REFRESH => {
            return Err(ApiError::session_ended(Reason::Expired));
        }
        Err(VerifyError::Expired) => {
            return Err(ApiError::invalid_session(
                "invalid session: access token expired",
            ));
        }
    };
    if claims.typ != typ {
        return Err(ApiError::invalid_session(format!(
            "invalid session: wrong token type (expected {typ})",
        )));
    }
    Ok((app, claims, token))
}

/// Verifies an access token and loads its user, who must still exist and not be disabled: a
/// disabled user's unexpired access tokens are refused for every call (deleting the account
/// included, or disabling could be escaped by deleting and registering again).
pub async fn access_user(
    st: &Inner,
    headers: &HeaderMap,
    target: &dpop::Target,
    op: &str,
) -> Result<(Arc<AppRuntime>, Claims, UserRow), ApiError> {
    let (app, claims, token) = verify_bearer(st, headers, TYP_ACCESS, op)?;
    // A DPoP-bound token is worth nothing without a proof from its key (RFC 9449 section 7),
    // judged before anything is read: a stolen token costs the server one signature check.
    match &claims.cnf {
        Some(cnf) => {
            if !authorization(headers)?.1 {
                return Err(dpop::invalid(
                    "a DPoP-bound access token is sent as Authorization: DPoP, with a proof",
                ));
            }
            let jkt = proof(st, &app, headers, target, Some(&token))
                .await?
                .ok_or_else(|| dpop::invalid("a DPoP-bound access token needs a DPoP proof"))?;
            if jkt != cnf.jkt {
                return Err(dpop::invalid(
                    "the proof is not made with the key the access token is bound to",
                ));
            }
        }
        None if app.config.dpop == DpopMode::Required => {
            return Err(dpop::invalid(
                "this app takes DPoP-bound access tokens only: refresh the session with a proof",
            ));
        }
        None => {}
    }
    let app_id = app.config.id.clone();
    let sub = claims.sub.clone();
    let user = st
        .store
        .user(&app_id, &sub)
        .await?
        .ok_or_else(|| ApiError::invalid_session("invalid session: user not found"))?;
    if user.disabled {
        return Err(ApiError::new(
            axum::http::StatusCode::UNAUTHORIZED,
            "UserDisabled",
            "user disabled",
        ));
    }
    // An access token of a revoked session is refused at once (#25), not only at its next
    // refresh (after the user checks: a disabled user hears UserDisabled, as before). Tokens
    // minted before #25 name no session and live out their minutes.
    if let Some(sid) = &claims.sid
        && !st.store.session_live(sid, st.now()).await?
    {
        return Err(ApiError::invalid_session(
            "invalid session: the session of this access token has ended",
        ));
    }
    Ok((app, claims, user))
}

/// Judges a verified refresh token against the store and uses it for `purpose` (PROTOCOL.md,
/// "Refresh token rotation"): with rotation on, a refresh also makes the session's next
/// refresh token, or hands out again the one the presented token already produced (a retry
/// within the grace window, or after a lost answer). Reuse of a rotated-out token after the
/// grace window revokes the session.
pub async fn use_refresh_token(
    st: &Inner,
    app: &Arc<AppRuntime>,
    claims: &Claims,
    token: &str,
    purpose: Purpose,
    headers: &HeaderMap,
    target: &dpop::Target,
) -> Result<CheckedSession, ApiError> {
    let proof_jkt = proof(st, app, headers, target, None)
        .await
        .map_err(|e| purpose.dpop_status(e))?;
    let now = st.now();
    let presented = PresentedRefresh {
        app_id: app.config.id.clone(),
        user_id: claims.sub.clone(),
        token_hash: tokens::sha256_hex(token),
        session_id: claims.sid.clone(),
        inactivity_timeout_secs: app.config.inactivity_timeout_secs as i64,
        proof_jkt,
        dpop_required: app.config.dpop == DpopMode::Required,
        now,
    };
    let asked = purpose;
    let purpose = match purpose {
        Purpose::Refresh if app.config.refresh_token_rotation => {
            let app = app.clone();
            RefreshUse::Refresh(Some(Box::new(
                move |s: &SessionRow, parent: &str, issued_at: i64| {
                    successor_refresh_token(&app, s, parent, issued_at)
                },
            )))
        }
        Purpose::Refresh => RefreshUse::Refresh(None),
        Purpose::Logout => RefreshUse::Logout,
        Purpose::Authenticate => RefreshUse::Authenticate,
    };
    st.store
        .use_refresh_token(presented, purpose)
        .await
        .map_err(|e| asked.dpop_status(e))
}

/// What a refresh token is presented for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// POST session: mint an access token (and rotate).
    Refresh,
    /// DELETE session.
    Logout,
    /// Authenticate another call (API keys).
    Authenticate,
}

impl Purpose {
    /// `e` with the status this use gives a DPoP refusal: login's, refresh's and logout's are
    /// the token endpoint's, 400 (RFC 9449 section 5); other calls made with a refresh token
    /// are resource calls, 401.
    fn dpop_status(self, e: ApiError) -> ApiError {
        match self {
            Purpose::Refresh | Purpose::Logout => dpop::for_token_endpoint(e),
            Purpose::Authenticate => e,
        }
    }
}
