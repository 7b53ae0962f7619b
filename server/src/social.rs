//! Social sign-in: Google, Apple, Facebook, and OpenID Connect issuers configured by name.
//!
//! The login bodies are the hosted service's (REALM-SEMANTICS.md, provider table): Google
//! `{"id_token"}` or `{"authCode"}`, Apple `{"id_token"}`, Facebook `{"accessToken"}`; an OIDC
//! issuer takes `{"id_token"}`. The identity is the issuer's subject (`sub`, or Facebook's user
//! id), so a later login without an email (Apple sends it once) still finds the same user.

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::config::{AppleConfig, FacebookConfig, GoogleConfig, OidcConfig};
use crate::credentials::{Identity, Proof, req_str};
use crate::error::ApiError;
use crate::jwks::{self, ISSUER_TIMEOUT, KeySource, Rules, issuer_unavailable};
use crate::state::Inner;

/// ID-token claims copied into the profile, by the profile field they fill.
const ID_TOKEN_PROFILE: &[(&str, &str)] = &[
    ("email", "email"),
    ("name", "name"),
    ("picture", "picture_url"),
    ("given_name", "first_name"),
    ("family_name", "last_name"),
];

fn identity(provider_type: String, claims: &Map<String, Value>) -> Identity {
    let mut data = Map::new();
    for (claim, field) in ID_TOKEN_PROFILE {
        if let Some(Value::String(v)) = claims.get(*claim)
            && !v.is_empty()
        {
            data.insert((*field).to_string(), Value::String(v.clone()));
        }
    }
    let sub = claims
        .get("sub")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Identity {
        provider_type,
        external_id: sub,
        data,
        proof: Proof::Outside,
    }
}

/// `oauth2-google`: an ID token, or a server auth code exchanged for one.
pub async fn google(
    st: &Inner,
    cfg: &GoogleConfig,
    body: &Map<String, Value>,
) -> Result<Identity, ApiError> {
    let exchanged;
    let id_token = if body.contains_key("id_token") {
        req_str(body, "id_token")?
    } else if body.contains_key("authCode") {
        exchanged = exchange_code(st, cfg, req_str(body, "authCode")?).await?;
        exchanged.as_str()
    } else {
        return Err(ApiError::bad_request(
            "missing field 'id_token' or 'authCode'",
        ));
    };
    let rules = Rules {
        label: "Google ID token",
        keys: KeySource::Url(&cfg.jwks_url),
        issuers: &cfg.issuers,
        audiences: &cfg.client_ids,
        id_token: true,
    };
    let claims = st.jwks.verify(id_token, &rules, st.now()).await?;
    Ok(identity("oauth2-google".into(), &claims))
}

/// Exchanges a Google server auth code at the token endpoint; its ID token.
async fn exchange_code(st: &Inner, cfg: &GoogleConfig, code: &str) -> Result<String, ApiError> {
    let Some(secret) = &cfg.client_secret else {
        return Err(ApiError::auth(
            "Google auth codes are not accepted: the server has no client_secret for \
             oauth2-google",
        ));
    };
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("client_id", cfg.client_ids[0].as_str()),
        ("client_secret", secret.0.as_str()),
        ("redirect_uri", cfg.redirect_uri.as_str()),
    ];
    let resp = st
        .jwks
        .http()
        .post(&cfg.token_url)
        .timeout(ISSUER_TIMEOUT)
        .form(&form)
        .send()
        .await
        .map_err(|e| issuer_unavailable(&format!("{}", e.without_url())))?;
    // OAuth 2.0 (RFC 6749 5.2): a refused code is a 400 (`invalid_grant`), or 401 for a
    // client the issuer does not know; anything else is the issuer's trouble.
    if matches!(resp.status().as_u16(), 400 | 401) {
        return Err(ApiError::auth("invalid Google auth code"));
    }
    #[derive(Deserialize)]
    struct TokenAnswer {
        id_token: Option<String>,
    }
    let answer: TokenAnswer = jwks::read_json(resp).await?;
    answer
        .id_token
        .ok_or_else(|| ApiError::auth("the Google auth code did not yield an ID token"))
}

/// `oauth2-apple`: a Sign in with Apple ID token.
pub async fn apple(
    st: &Inner,
    cfg: &AppleConfig,
    body: &Map<String, Value>,
) -> Result<Identity, ApiError> {
    let issuers = [cfg.issuer.clone()];
    let rules = Rules {
        label: "Apple ID token",
        keys: KeySource::Url(&cfg.jwks_url),
        issuers: &issuers,
        audiences: &cfg.client_ids,
        id_token: true,
    };
    let claims = st
        .jwks
        .verify(req_str(body, "id_token")?, &rules, st.now())
        .await?;
    Ok(identity("oauth2-apple".into(), &claims))
}

/// `oidc-<name>`: an ID token of a configured OpenID Connect issuer.
pub async fn oidc(
    st: &Inner,
    name: &str,
    cfg: &OidcConfig,
    body: &Map<String, Value>,
) -> Result<Identity, ApiError> {
    let token = req_str(body, "id_token")?;
    // Without a configured JWKS URL, the discovery document names it; it is fetched again
    // with the keys (OpenID Connect Discovery 1.0 section 4).
    let keys = match &cfg.jwks_url {
        Some(url) => KeySource::Url(url),
        None => KeySource::Discovery(&cfg.issuer),
    };
    let issuers = [cfg.issuer.clone()];
    let label = format!("ID token of {name}");
    let rules = Rules {
        label: &label,
        keys,
        issuers: &issuers,
        audiences: &cfg.audiences,
        id_token: true,
    };
    let claims = st.jwks.verify(token, &rules, st.now()).await?;
    Ok(identity(
        format!("{}{name}", crate::config::OIDC_PREFIX),
        &claims,
    ))
}

/// `oauth2-facebook`: a user access token, checked with the Graph API's `debug_token` (is it
/// valid, and for this app?), then the user's id, name and email from `/me`.
pub async fn facebook(
    st: &Inner,
    cfg: &FacebookConfig,
    body: &Map<String, Value>,
) -> Result<Identity, ApiError> {
    let token = req_str(body, "accessToken")?;
    let refused = || ApiError::auth("invalid Facebook access token");
    let app_token = format!("{}|{}", cfg.app_id, cfg.app_secret.0);
    let graph = cfg.graph_url.trim_end_matches('/');
    let get = |path: &str, query: Vec<(&'static str, String)>| {
        st.jwks
            .http()
            .get(format!("{graph}/{path}"))
            .query(&query)
            .timeout(ISSUER_TIMEOUT)
            .send()
    };
    let resp = get(
        "debug_token",
        vec![
            ("input_token", token.to_string()),
            ("access_token", app_token),
        ],
    )
    .await
    .map_err(|e| issuer_unavailable(&format!("{}", e.without_url())))?;
    // The Graph API answers 400 (OAuthException) for a token it cannot parse.
    if resp.status().is_client_error() {
        return Err(refused());
    }
    #[derive(Deserialize)]
    struct Debug {
        data: DebugData,
    }
    #[derive(Deserialize)]
    struct DebugData {
        #[serde(default)]
        is_valid: bool,
        app_id: Option<String>,
        user_id: Option<String>,
    }
    let debug: Debug = jwks::read_json(resp).await?;
    let d = debug.data;
    if !d.is_valid || d.app_id.as_deref() != Some(cfg.app_id.as_str()) {
        return Err(refused());
    }
    let user_id = d.user_id.filter(|u| !u.is_empty()).ok_or_else(refused)?;
    let resp = get(
        "me",
        vec![
            (
                "fields",
                "id,name,email,first_name,last_name,picture".into(),
            ),
            ("access_token", token.to_string()),
        ],
    )
    .await
    .map_err(|e| issuer_unavailable(&format!("{}", e.without_url())))?;
    if resp.status().is_client_error() {
        return Err(refused());
    }
    let me: Map<String, Value> = jwks::read_json(resp).await?;
    if me.get("id").and_then(Value::as_str) != Some(user_id.as_str()) {
        return Err(refused());
    }
    let mut data = Map::new();
    for field in ["name", "email", "first_name", "last_name"] {
        if let Some(Value::String(v)) = me.get(field) {
            data.insert(field.to_string(), Value::String(v.clone()));
        }
    }
    if let Some(Value::String(url)) = me.get("picture").and_then(|p| p.pointer("/data/url")) {
        data.insert("picture_url".into(), Value::String(url.clone()));
    }
    Ok(Identity {
        provider_type: "oauth2-facebook".into(),
        external_id: user_id,
        data,
        proof: Proof::Outside,
    })
}
