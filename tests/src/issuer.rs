//! A stand-in for Google, Apple, Facebook and any OpenID Connect issuer, on loopback, so that
//! social sign-in is tested without the internet.
//!
//! It serves a JWKS (`/jwks`), OpenID Connect discovery, an OAuth token endpoint (`/token`,
//! auth codes registered with [`TestIssuer::add_code`]) and a Graph-like API (`/debug_token`,
//! `/me`). Keys (RSA 2048 and P-256) are generated per run; tokens are minted with any claims;
//! keys rotate on demand; the issuer can be made slow or unavailable. For the habits of real
//! issuers it can also serve keys a verifier cannot use, leave `kid` out, regenerate a key
//! under the same `kid`, move its JWKS, fail its discovery document or name another issuer
//! there, and count the requests.
//!
//! Runners in other languages drive it over HTTP (the `test_issuer` binary prints its URL):
//! POST `/control/mint` `{"claims": {...}, "alg": "RS256"|"ES256"|"none"|"HS256-public-key"}`
//! -> `{"token"}` (`iss` defaults to the issuer's URL, `iat`/`exp` to now and an hour on);
//! `/control/code` `{"code", "claims"}`; `/control/facebook` `{"token", "app_id", "user_id",
//! "name", "email"}`; `/control/down` `{"down": bool}`; `/control/habits` `{"omit_kids": bool,
//! "extra_jwks": [jwk...], "move_jwks": name, "discovery_status": status|null,
//! "discovery_issuer": string|null}` (each field optional: what it names changes); GET
//! `/control/counts` -> `{"jwks_fetches", "discovery_fetches"}`.
//!
//! Conformance scenarios name social credentials by intent, and the issuer turns them into
//! tokens, so that every language's runner stays a thin HTTP call: GET
//! `/control/providers.toml` is the server config for these providers (appended to the app's
//! table), and POST `/control/credential` `{"kind", "spec"}` answers `{"token"}`; see
//! [`credential`] for the spec.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Form, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

/// A signing key of the issuer.
struct Key {
    kid: String,
    alg: Algorithm,
    encoding: EncodingKey,
    /// The public half as a JWK.
    jwk: Value,
    /// The public half as PEM (for the "HS256 signed with the public key" attack).
    public_pem: String,
}

fn rsa_key(kid: &str) -> Key {
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::{EncodePublicKey, LineEnding};
    use rsa::traits::PublicKeyParts;
    let private = rsa::RsaPrivateKey::new(&mut rsa::rand_core::OsRng, 2048).expect("RSA key");
    let pem = private.to_pkcs1_pem(LineEnding::LF).expect("PEM");
    let public = private.to_public_key();
    Key {
        kid: kid.to_string(),
        alg: Algorithm::RS256,
        encoding: EncodingKey::from_rsa_pem(pem.as_bytes()).expect("encoding key"),
        jwk: json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(public.n().to_bytes_be()),
            "e": URL_SAFE_NO_PAD.encode(public.e().to_bytes_be()),
        }),
        public_pem: public
            .to_public_key_pem(LineEnding::LF)
            .expect("public PEM"),
    }
}

fn ec_key(kid: &str) -> Key {
    use p256::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let pem = secret.to_pkcs8_pem(LineEnding::LF).expect("PEM");
    let point =
        p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(&secret.public_key(), false);
    Key {
        kid: kid.to_string(),
        alg: Algorithm::ES256,
        encoding: EncodingKey::from_ec_pem(pem.as_bytes()).expect("encoding key"),
        jwk: json!({
            "kty": "EC", "use": "sig", "alg": "ES256", "kid": kid, "crv": "P-256",
            "x": URL_SAFE_NO_PAD.encode(point.x().expect("x")),
            "y": URL_SAFE_NO_PAD.encode(point.y().expect("y")),
        }),
        public_pem: secret
            .public_key()
            .to_public_key_pem(LineEnding::LF)
            .expect("public PEM"),
    }
}

/// A Facebook user as the Graph-like API knows them.
#[derive(Clone)]
pub struct FacebookUser {
    /// The Facebook app the token was issued to.
    pub app_id: String,
    pub user_id: String,
    pub name: String,
    pub email: Option<String>,
}

#[derive(Default)]
struct Shared {
    /// Published keys.
    published: Mutex<Vec<Arc<Key>>>,
    /// Keys that sign but are not (yet) published.
    pending: Mutex<Vec<Arc<Key>>>,
    codes: Mutex<HashMap<String, String>>,
    facebook: Mutex<HashMap<String, FacebookUser>>,
    down: AtomicBool,
    delay_ms: AtomicU64,
    jwks_fetches: AtomicUsize,
    discovery_fetches: AtomicUsize,
    next_kid: AtomicUsize,
    url: Mutex<String>,
    /// JWKs served after the real keys, as given (keys a verifier cannot use).
    extra_jwks: Mutex<Vec<Value>>,
    /// The JWKS leaves `kid` out of its keys.
    omit_kids: AtomicBool,
    /// Where the JWKS is served (`/jwks`, or `/keys/<name>` after [`TestIssuer::move_jwks`]);
    /// other JWKS paths answer 404.
    jwks_path: Mutex<String>,
    /// A status the discovery document answers with instead (e.g. 500).
    discovery_status: Mutex<Option<u16>>,
    /// An `issuer` the discovery document names instead of the real one.
    discovery_issuer: Mutex<Option<String>>,
}

/// The running test issuer.
pub struct TestIssuer {
    /// Its base URL, e.g. `http://127.0.0.1:41234`; also the `iss` of OpenID Connect tokens.
    pub url: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestIssuer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestIssuer {
    /// Starts it on a free loopback port with one RSA and one P-256 key published.
    pub async fn start() -> Self {
        let shared = Arc::new(Shared::default());
        {
            let rsa = rsa_key("rsa-1");
            let ec = ec_key("ec-1");
            let mut keys = shared.published.lock().unwrap();
            keys.push(Arc::new(rsa));
            keys.push(Arc::new(ec));
        }
        shared.next_kid.store(2, Ordering::SeqCst);
        let app = Router::new()
            .route("/jwks", get(jwks))
            .route("/keys/{name}", get(jwks_moved))
            .route("/.well-known/openid-configuration", get(discovery))
            .route("/token", post(token))
            .route("/debug_token", get(debug_token))
            .route("/me", get(me))
            .route("/control/mint", post(control_mint))
            .route("/control/code", post(control_code))
            .route("/control/facebook", post(control_facebook))
            .route("/control/down", post(control_down))
            .route("/control/habits", post(control_habits))
            .route("/control/counts", get(control_counts))
            .route("/control/credential", post(control_credential))
            .route("/control/providers.toml", get(control_providers))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        *shared.url.lock().unwrap() = url.clone();
        *shared.jwks_path.lock().unwrap() = "/jwks".into();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { url, shared, task }
    }

    /// The JWKS URL.
    pub fn jwks_url(&self) -> String {
        format!("{}/jwks", self.url)
    }

    /// How many times the JWKS was fetched.
    pub fn jwks_fetches(&self) -> usize {
        self.shared.jwks_fetches.load(Ordering::SeqCst)
    }

    /// How many times the discovery document was asked for (answered or not).
    pub fn discovery_fetches(&self) -> usize {
        self.shared.discovery_fetches.load(Ordering::SeqCst)
    }

    /// Serves `jwks` (raw JWK objects, e.g. keys no verifier can use) after the real keys.
    pub fn add_raw_jwks(&self, jwks: Vec<Value>) {
        self.shared.extra_jwks.lock().unwrap().extend(jwks);
    }

    /// Makes the JWKS leave `kid` out of every key (`true`), as a single-key issuer may.
    pub fn omit_kids(&self, omit: bool) {
        self.shared.omit_kids.store(omit, Ordering::SeqCst);
    }

    /// A token with `claims` and no `kid` in its header, signed with the newest published key
    /// of `alg`.
    pub fn mint_without_kid(&self, alg: Algorithm, claims: &Value) -> String {
        let header = Header::new(alg);
        jsonwebtoken::encode(&header, claims, &self.key(alg).encoding).expect("sign")
    }

    /// Withdraws every published key (tokens minted before still carry their signatures): with
    /// [`Self::add_raw_jwks`], a set of only unusable keys.
    pub fn withdraw_keys(&self) {
        self.shared.published.lock().unwrap().clear();
    }

    /// Publishes one more RSA key (the newest, which [`Self::mint`] then signs with) and keeps
    /// the older ones.
    pub fn add_rsa_key(&self) {
        let n = self.shared.next_kid.fetch_add(1, Ordering::SeqCst);
        let key = rsa_key(&format!("rsa-{n}"));
        self.shared.published.lock().unwrap().push(Arc::new(key));
    }

    /// Replaces the newest published key of `alg` with a new key under the same `kid` (a key
    /// regenerated in place): tokens signed before fail against the new one, and the other way
    /// round.
    pub fn regenerate_key(&self, alg: Algorithm) {
        let mut published = self.shared.published.lock().unwrap();
        let at = published
            .iter()
            .rposition(|k| k.alg == alg)
            .expect("a published key of that algorithm");
        let kid = published[at].kid.clone();
        published[at] = Arc::new(match alg {
            Algorithm::ES256 => ec_key(&kid),
            _ => rsa_key(&kid),
        });
    }

    /// Moves the JWKS to `/keys/<name>` (the discovery document names the new place); the old
    /// place answers 404.
    pub fn move_jwks(&self, name: &str) {
        *self.shared.jwks_path.lock().unwrap() = format!("/keys/{name}");
    }

    /// Makes the discovery document answer `status` instead (`None`: answer it again).
    pub fn set_discovery_status(&self, status: Option<u16>) {
        *self.shared.discovery_status.lock().unwrap() = status;
    }

    /// Makes the discovery document name `issuer` instead of the real one (`None`: the real
    /// one again).
    pub fn set_discovery_issuer(&self, issuer: Option<&str>) {
        *self.shared.discovery_issuer.lock().unwrap() = issuer.map(str::to_string);
    }

    /// Makes every endpoint answer 503 (`true`) or work again.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Delays every answer by `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    fn key(&self, alg: Algorithm) -> Arc<Key> {
        self.shared
            .published
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|k| k.alg == alg)
            .cloned()
            .expect("a published key of that algorithm")
    }

    /// A token with `claims`, signed with the newest published RS256 key.
    pub fn mint(&self, claims: &Value) -> String {
        self.mint_with(Algorithm::RS256, claims)
    }

    /// A token with `claims`, signed with the newest published key of `alg` (RS256 or ES256).
    pub fn mint_with(&self, alg: Algorithm, claims: &Value) -> String {
        sign(&self.key(alg), claims)
    }

    /// Makes a new RSA key that signs at once but is published only by [`Self::publish`]: a
    /// token signed with it carries a `kid` the JWKS does not have yet.
    pub fn new_unpublished_key(&self) {
        let n = self.shared.next_kid.fetch_add(1, Ordering::SeqCst);
        let key = rsa_key(&format!("rsa-{n}"));
        self.shared.pending.lock().unwrap().push(Arc::new(key));
    }

    /// A token signed with the newest unpublished key.
    pub fn mint_unpublished(&self, claims: &Value) -> String {
        let key = self.shared.pending.lock().unwrap().last().cloned();
        sign(&key.expect("call new_unpublished_key first"), claims)
    }

    /// Rotates: the pending keys are published and the older RSA keys withdrawn.
    pub fn publish(&self) {
        let pending = std::mem::take(&mut *self.shared.pending.lock().unwrap());
        let mut published = self.shared.published.lock().unwrap();
        published.retain(|k| k.alg != Algorithm::RS256);
        published.extend(pending);
    }

    /// A token whose header says `alg` but is signed with HMAC over the issuer's public RSA key
    /// (the classic confusion attack), or an unsigned `alg: none` token.
    pub fn mint_forged(&self, alg: &str, claims: &Value) -> String {
        let alg = if alg == "none" {
            "none"
        } else {
            "HS256-public-key"
        };
        forge(&self.key(Algorithm::RS256), alg, claims)
    }

    /// A social credential from a conformance spec (see [`credential`]): the token, or the
    /// code for `google_auth_code`.
    pub fn credential(&self, kind: &str, spec: &Value) -> Result<String, String> {
        credential(&self.shared, kind, spec)
    }

    /// Registers a Google-style auth code that the token endpoint exchanges for an ID token
    /// with `claims`.
    pub fn add_code(&self, code: &str, claims: &Value) {
        let token = self.mint(claims);
        self.shared
            .codes
            .lock()
            .unwrap()
            .insert(code.to_string(), token);
    }

    /// Registers a Facebook user access token.
    pub fn add_facebook_token(&self, token: &str, user: FacebookUser) {
        self.shared
            .facebook
            .lock()
            .unwrap()
            .insert(token.to_string(), user);
    }
}

/// The client ids and names the conformance config and [`credential`] agree on.
pub const GOOGLE_CLIENT: &str = "conformance-google-client";
pub const APPLE_CLIENT: &str = "conformance-apple-client";
pub const FACEBOOK_APP: &str = "conformance-facebook-app";
pub const OIDC_NAME: &str = "conformance";
pub const OIDC_CLIENT: &str = "conformance-oidc-client";
const GOOGLE_ISSUER: &str = "https://accounts.google.com";
const APPLE_ISSUER: &str = "https://appleid.apple.com";

/// The provider tables that trust an issuer at `url`, for an `[[app]]`.
pub fn providers_toml(url: &str) -> String {
    format!(
        r#"[app.providers.oauth2-google]
client_ids = ["{GOOGLE_CLIENT}"]
client_secret = "conformance-google-secret"
jwks_url = "{url}/jwks"
token_url = "{url}/token"
[app.providers.oauth2-apple]
client_ids = ["{APPLE_CLIENT}"]
jwks_url = "{url}/jwks"
[app.providers.oauth2-facebook]
app_id = "{FACEBOOK_APP}"
app_secret = "conformance-facebook-secret"
graph_url = "{url}"
[app.providers.oidc.{OIDC_NAME}]
issuer = "{url}"
audiences = ["{OIDC_CLIENT}"]
"#
    )
}

async fn control_providers(State(s): State<Arc<Shared>>) -> String {
    providers_toml(&s.url.lock().unwrap())
}

/// A social credential from a conformance spec: `kind` is `google_id_token`,
/// `google_auth_code`, `apple_id_token`, `facebook_access_token` or `oidc_id_token`; `spec` is
/// `{"sub", "email"?, "name"?, "aud": "valid"|"wrong", "iss": "valid"|"wrong",
/// "time": "valid"|"expired"|"not_yet_valid", "signature": "valid"|"ES256"|"unknown_key"|"none"|
/// "HS256-public-key"|"tampered"}` (all but `sub` optional, default valid). For Facebook:
/// `{"sub", "name"?, "email"?, "app": "valid"|"wrong"|"unknown"}`. For an auth code, the code
/// is registered and returned; it works once.
fn credential(s: &Shared, kind: &str, spec: &Value) -> Result<String, String> {
    let text = |k: &str, default: &str| {
        spec.get(k)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_string()
    };
    let sub = text("sub", "");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    if kind == "facebook_access_token" {
        let token = format!("fb-{sub}-{}", s.next_kid.fetch_add(1, Ordering::SeqCst));
        let app_id = match text("app", "valid").as_str() {
            "valid" => FACEBOOK_APP.to_string(),
            "wrong" => "another-facebook-app".to_string(),
            _ => return Ok(token), // unknown to the Graph API
        };
        let user = FacebookUser {
            app_id,
            user_id: sub,
            name: text("name", ""),
            email: spec
                .get("email")
                .and_then(Value::as_str)
                .map(str::to_string),
        };
        s.facebook.lock().unwrap().insert(token.clone(), user);
        return Ok(token);
    }
    let url = s.url.lock().unwrap().clone();
    let (iss, aud) = match kind {
        "google_id_token" | "google_auth_code" => (GOOGLE_ISSUER.to_string(), GOOGLE_CLIENT),
        "apple_id_token" => (APPLE_ISSUER.to_string(), APPLE_CLIENT),
        "oidc_id_token" => (url, OIDC_CLIENT),
        other => return Err(format!("unknown credential kind {other}")),
    };
    let mut claims = json!({
        "sub": sub,
        "iss": if text("iss", "valid") == "valid" { iss } else { "https://wrong-issuer.example".into() },
        "aud": if text("aud", "valid") == "valid" { aud } else { "wrong-client" },
    });
    let (iat, exp, nbf) = match text("time", "valid").as_str() {
        "expired" => (now - 7200, now - 3600, None),
        "not_yet_valid" => (now, now + 7200, Some(now + 3600)),
        _ => (now, now + 3600, None),
    };
    claims["iat"] = json!(iat);
    claims["exp"] = json!(exp);
    if let Some(nbf) = nbf {
        claims["nbf"] = json!(nbf);
    }
    for field in ["email", "name"] {
        if let Some(v) = spec.get(field) {
            claims[field] = v.clone();
        }
    }
    let rsa = newest(s, Algorithm::RS256).ok_or("no RSA key")?;
    let token = match text("signature", "valid").as_str() {
        "valid" => sign(&rsa, &claims),
        "ES256" => sign(&*newest(s, Algorithm::ES256).ok_or("no EC key")?, &claims),
        "unknown_key" => sign(&rsa_key("never-published"), &claims),
        "none" | "HS256-public-key" => forge(&rsa, &text("signature", ""), &claims),
        "tampered" => tamper(&sign(&rsa, &claims)),
        other => return Err(format!("unknown signature {other}")),
    };
    if kind == "google_auth_code" {
        let code = format!("code-{sub}-{}", s.next_kid.fetch_add(1, Ordering::SeqCst));
        s.codes.lock().unwrap().insert(code.clone(), token);
        return Ok(code);
    }
    Ok(token)
}

async fn control_credential(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or_default();
    let spec = body.get("spec").cloned().unwrap_or(json!({}));
    match credential(&s, kind, &spec) {
        Ok(token) => Json(json!({ "token": token })).into_response(),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

/// Fills `iss`, `iat` and `exp` when the caller left them out.
fn complete(s: &Shared, mut claims: Value) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if let Some(c) = claims.as_object_mut() {
        let url = s.url.lock().unwrap().clone();
        c.entry("iss").or_insert(json!(url));
        c.entry("iat").or_insert(json!(now));
        c.entry("exp").or_insert(json!(now + 3600));
    }
    claims
}

fn newest(s: &Shared, alg: Algorithm) -> Option<Arc<Key>> {
    s.published
        .lock()
        .unwrap()
        .iter()
        .rev()
        .find(|k| k.alg == alg)
        .cloned()
}

async fn control_mint(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    let claims = complete(&s, body.get("claims").cloned().unwrap_or(json!({})));
    let alg = body.get("alg").and_then(Value::as_str).unwrap_or("RS256");
    let token = match alg {
        "RS256" | "ES256" => {
            let alg = if alg == "RS256" {
                Algorithm::RS256
            } else {
                Algorithm::ES256
            };
            newest(&s, alg).map(|k| sign(&k, &claims))
        }
        "none" | "HS256-public-key" => {
            newest(&s, Algorithm::RS256).map(|k| forge(&k, alg, &claims))
        }
        _ => None,
    };
    match token {
        Some(token) => Json(json!({ "token": token })).into_response(),
        None => (
            StatusCode::BAD_REQUEST,
            format!("cannot mint with alg {alg}"),
        )
            .into_response(),
    }
}

async fn control_code(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    let claims = complete(&s, body.get("claims").cloned().unwrap_or(json!({})));
    let (Some(code), Some(key)) = (
        body.get("code").and_then(Value::as_str),
        newest(&s, Algorithm::RS256),
    ) else {
        return (StatusCode::BAD_REQUEST, "need code").into_response();
    };
    s.codes
        .lock()
        .unwrap()
        .insert(code.to_string(), sign(&key, &claims));
    StatusCode::NO_CONTENT.into_response()
}

async fn control_facebook(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    let field = |k: &str| body.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(token), Some(app_id), Some(user_id)) =
        (field("token"), field("app_id"), field("user_id"))
    else {
        return (StatusCode::BAD_REQUEST, "need token, app_id, user_id").into_response();
    };
    let user = FacebookUser {
        app_id,
        user_id,
        name: field("name").unwrap_or_default(),
        email: field("email"),
    };
    s.facebook.lock().unwrap().insert(token, user);
    StatusCode::NO_CONTENT.into_response()
}

async fn control_down(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    let down = body.get("down").and_then(Value::as_bool).unwrap_or(false);
    s.down.store(down, Ordering::SeqCst);
    StatusCode::NO_CONTENT.into_response()
}

/// `token` with one character in the middle of its signature changed: well-formed, and its
/// signature fails. (The last character may only carry padding bits, so it is not the one.)
pub fn tamper(token: &str) -> String {
    let sig_start = token.rfind('.').map_or(0, |i| i + 1);
    let at = sig_start + (token.len() - sig_start) / 2;
    let mut t = token.to_string();
    let old = t.as_bytes()[at];
    let new = if old == b'A' { "B" } else { "A" };
    t.replace_range(at..=at, new);
    t
}

async fn control_habits(State(s): State<Arc<Shared>>, Json(body): Json<Value>) -> Response {
    if let Some(omit) = body.get("omit_kids").and_then(Value::as_bool) {
        s.omit_kids.store(omit, Ordering::SeqCst);
    }
    if let Some(jwks) = body.get("extra_jwks").and_then(Value::as_array) {
        s.extra_jwks.lock().unwrap().extend(jwks.iter().cloned());
    }
    if let Some(name) = body.get("move_jwks").and_then(Value::as_str) {
        *s.jwks_path.lock().unwrap() = format!("/keys/{name}");
    }
    if let Some(status) = body.get("discovery_status") {
        *s.discovery_status.lock().unwrap() = status.as_u64().map(|n| n as u16);
    }
    if let Some(issuer) = body.get("discovery_issuer") {
        *s.discovery_issuer.lock().unwrap() = issuer.as_str().map(str::to_string);
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn control_counts(State(s): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({
        "jwks_fetches": s.jwks_fetches.load(Ordering::SeqCst),
        "discovery_fetches": s.discovery_fetches.load(Ordering::SeqCst),
    }))
}

/// An unsigned (`none`) token, or one "signed" with HMAC over the public key (`HS256-public-key`).
fn forge(key: &Key, alg: &str, claims: &Value) -> String {
    if alg == "none" {
        let header = json!({"alg": "none", "typ": "JWT", "kid": key.kid});
        let enc = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        return format!("{}.{}.", enc(&header), enc(claims));
    }
    let header = Header {
        kid: Some(key.kid.clone()),
        ..Header::new(Algorithm::HS256)
    };
    let secret = EncodingKey::from_secret(key.public_pem.as_bytes());
    jsonwebtoken::encode(&header, claims, &secret).expect("sign")
}

fn sign(key: &Key, claims: &Value) -> String {
    let header = Header {
        kid: Some(key.kid.clone()),
        ..Header::new(key.alg)
    };
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("sign")
}

/// Applies the configured delay; `Some(503)` while the issuer is down.
async fn gate(s: &Shared) -> Option<Response> {
    let delay = s.delay_ms.load(Ordering::SeqCst);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    s.down
        .load(Ordering::SeqCst)
        .then(|| (StatusCode::SERVICE_UNAVAILABLE, "down for the test").into_response())
}

async fn jwks(State(s): State<Arc<Shared>>) -> Response {
    serve_jwks(&s, "/jwks").await
}

async fn jwks_moved(
    State(s): State<Arc<Shared>>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Response {
    serve_jwks(&s, &format!("/keys/{name}")).await
}

async fn serve_jwks(s: &Shared, path: &str) -> Response {
    if let Some(r) = gate(s).await {
        return r;
    }
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if *s.jwks_path.lock().unwrap() != path {
        return (StatusCode::NOT_FOUND, "the keys moved").into_response();
    }
    let omit_kids = s.omit_kids.load(Ordering::SeqCst);
    let mut keys: Vec<Value> = s
        .published
        .lock()
        .unwrap()
        .iter()
        .map(|k| {
            let mut jwk = k.jwk.clone();
            if omit_kids && let Some(o) = jwk.as_object_mut() {
                o.remove("kid");
            }
            jwk
        })
        .collect();
    keys.extend(s.extra_jwks.lock().unwrap().iter().cloned());
    Json(json!({ "keys": keys })).into_response()
}

async fn discovery(State(s): State<Arc<Shared>>) -> Response {
    s.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = gate(&s).await {
        return r;
    }
    if let Some(status) = *s.discovery_status.lock().unwrap() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (status, "discovery fails for the test").into_response();
    }
    let url = s.url.lock().unwrap().clone();
    let issuer = s
        .discovery_issuer
        .lock()
        .unwrap()
        .clone()
        .unwrap_or(url.clone());
    let jwks_uri = format!("{url}{}", s.jwks_path.lock().unwrap());
    Json(json!({"issuer": issuer, "jwks_uri": jwks_uri})).into_response()
}

async fn token(
    State(s): State<Arc<Shared>>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    if let Some(r) = gate(&s).await {
        return r;
    }
    let code = form.get("code").cloned().unwrap_or_default();
    // A code is good once, as at a real issuer.
    match s.codes.lock().unwrap().remove(&code) {
        Some(id_token)
            if form.get("grant_type").map(String::as_str) == Some("authorization_code") =>
        {
            Json(json!({"access_token": "at", "token_type": "Bearer", "id_token": id_token}))
                .into_response()
        }
        _ => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_grant"})),
        )
            .into_response(),
    }
}

async fn debug_token(
    State(s): State<Arc<Shared>>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(r) = gate(&s).await {
        return r;
    }
    let input = q.get("input_token").cloned().unwrap_or_default();
    let app_token = q.get("access_token").cloned().unwrap_or_default();
    // An app access token is `app_id|app_secret`.
    if !app_token.contains('|') {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"type": "OAuthException"}})),
        )
            .into_response();
    }
    match s.facebook.lock().unwrap().get(&input) {
        Some(u) => Json(json!({"data": {
            "app_id": u.app_id, "is_valid": true, "user_id": u.user_id, "type": "USER",
        }}))
        .into_response(),
        None => Json(json!({"data": {"is_valid": false}})).into_response(),
    }
}

async fn me(State(s): State<Arc<Shared>>, Query(q): Query<HashMap<String, String>>) -> Response {
    if let Some(r) = gate(&s).await {
        return r;
    }
    let token = q.get("access_token").cloned().unwrap_or_default();
    match s.facebook.lock().unwrap().get(&token) {
        Some(u) => {
            let mut me = json!({"id": u.user_id, "name": u.name,
                "picture": {"data": {"url": format!("https://pictures.test/{}", u.user_id)}}});
            if let Some(e) = &u.email {
                me["email"] = json!(e);
            }
            Json(me).into_response()
        }
        None => (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": {"type": "OAuthException"}})),
        )
            .into_response(),
    }
}
