//! DPoP (#29, RFC 9449): sessions bound to a key the client holds. The proofs here are made
//! with p256 and base64 directly, not with the server's code, so a misreading shared by the
//! server's maker and checker cannot pass unseen; the SDK's proofs are checked by an
//! independent verifier in the bindings' tests.

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use p256::ecdsa::signature::Signer;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const DPOP_CONFIG: &str = r#"
listen = "127.0.0.1:0"
test_clock = true
rate_limits = { enabled = false }

[[app]]
id = "dpop-app"
dpop = "required"
refresh_token_rotation = true
[app.providers.anon-user]

[[app]]
id = "opt-app"
dpop = "optional"
[app.providers.anon-user]

[[app]]
id = "off-app"
[app.providers.anon-user]
"#;

/// A device's key pair.
struct Key {
    signing: p256::ecdsa::SigningKey,
    x: String,
    y: String,
}

impl Key {
    fn new() -> Key {
        let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let point = p256::elliptic_curve::sec1::ToEncodedPoint::to_encoded_point(
            &secret.public_key(),
            false,
        );
        Key {
            x: URL_SAFE_NO_PAD.encode(point.x().unwrap()),
            y: URL_SAFE_NO_PAD.encode(point.y().unwrap()),
            signing: p256::ecdsa::SigningKey::from(secret),
        }
    }

    /// RFC 7638's thumbprint, computed here on its own.
    fn jkt(&self) -> String {
        let canonical = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            self.x, self.y
        );
        URL_SAFE_NO_PAD.encode(Sha256::digest(canonical.as_bytes()))
    }

    fn jwk(&self) -> Value {
        json!({"kty": "EC", "crv": "P-256", "x": self.x, "y": self.y})
    }

    /// A compact JWS with this header and these claims, signed with this key.
    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let sig: p256::ecdsa::Signature = self.signing.sign(input.as_bytes());
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
    }

    /// A proof for `method` `url` at `iat`, with `ath` for `access_token` and `nonce`.
    fn proof_at(
        &self,
        method: &str,
        url: &str,
        iat: i64,
        access_token: Option<&str>,
        nonce: Option<&str>,
    ) -> String {
        let mut claims = json!({
            "jti": uuid_like(),
            "htm": method,
            "htu": url,
            "iat": iat,
        });
        if let Some(t) = access_token {
            claims["ath"] = Value::from(URL_SAFE_NO_PAD.encode(Sha256::digest(t.as_bytes())));
        }
        if let Some(n) = nonce {
            claims["nonce"] = Value::from(n);
        }
        self.sign(
            &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk()}),
            &claims,
        )
    }
}

fn uuid_like() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A response with its headers.
struct Answer {
    status: u16,
    body: Value,
    headers: reqwest::header::HeaderMap,
}

impl Answer {
    #[track_caller]
    fn code(&self, status: u16, code: &str) -> &Self {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert_eq!(self.body["error_code"], code, "body: {}", self.body);
        self
    }
    #[track_caller]
    fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        &self.body
    }
    fn s(&self, key: &str) -> String {
        self.body[key].as_str().unwrap_or_default().to_string()
    }
}

/// GET `path` with the DPoP-bound `access` token and `proof`.
async fn get(d: &D, path: &str, access: &str, proof: String) -> Answer {
    d.send(
        Method::GET,
        path,
        Some(("DPoP", access)),
        Some(&proof),
        None,
    )
    .await
}

/// The test server and its clock's offset from this machine's (advanced by the test).
struct D {
    t: T,
    skew: i64,
}

impl D {
    async fn start() -> D {
        D {
            t: start_with(DPOP_CONFIG).await,
            skew: 0,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.t.base)
    }

    fn now(&self) -> i64 {
        unix_now() + self.skew
    }

    fn advance(&mut self, secs: i64) {
        self.t.srv.advance_clock(secs);
        self.skew += secs;
    }

    /// A request with `Authorization: <scheme> <token>` and a `DPoP` header.
    async fn send(
        &self,
        method: Method,
        path: &str,
        auth: Option<(&str, &str)>,
        proof: Option<&str>,
        body: Option<Value>,
    ) -> Answer {
        let mut req = self.t.http.request(method, self.url(path));
        if let Some((scheme, token)) = auth {
            req = req.header("authorization", format!("{scheme} {token}"));
        }
        if let Some(p) = proof {
            req = req.header("dpop", p);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Answer {
            status,
            body,
            headers,
        }
    }

    fn login_path(app: &str) -> String {
        format!("{}/auth/providers/anon-user/login", ar(app))
    }

    /// An anonymous login with a proof from `key` (none without).
    async fn login(&self, app: &str, key: Option<&Key>) -> Answer {
        let path = Self::login_path(app);
        let proof = key.map(|k| k.proof_at("POST", &self.url(&path), self.now(), None, None));
        self.send(Method::POST, &path, None, proof.as_deref(), Some(json!({})))
            .await
    }

    /// POST session with `refresh` and a fresh proof from `key`.
    async fn refresh(&self, refresh: &str, key: Option<&Key>) -> Answer {
        let path = format!("{BR}/auth/session");
        let proof = key.map(|k| k.proof_at("POST", &self.url(&path), self.now(), None, None));
        self.send(
            Method::POST,
            &path,
            Some(("Bearer", refresh)),
            proof.as_deref(),
            None,
        )
        .await
    }

    /// GET profile with a DPoP-bound access token and a proof from `key`.
    async fn profile(&self, access: &str, key: &Key) -> Answer {
        let path = format!("{BR}/auth/profile");
        let proof = key.proof_at("GET", &self.url(&path), self.now(), Some(access), None);
        self.send(
            Method::GET,
            &path,
            Some(("DPoP", access)),
            Some(&proof),
            None,
        )
        .await
    }
}

#[tokio::test]
async fn a_required_app_binds_every_session_and_its_tokens_to_the_key() {
    let d = D::start().await;
    let key = Key::new();
    // No proof, no session.
    d.login("dpop-app", None)
        .await
        .code(400, "InvalidDPoPProof");
    let login = d.login("dpop-app", Some(&key)).await;
    login.ok(200);
    assert_eq!(login.body["token_type"], "DPoP");
    let access = login.s("access_token");
    assert_eq!(claims(&access)["cnf"]["jkt"], key.jkt());
    // Every refresh needs a fresh proof from that key, and keeps the binding.
    let refreshed = d.refresh(&login.s("refresh_token"), Some(&key)).await;
    refreshed.ok(201);
    assert_eq!(refreshed.body["token_type"], "DPoP");
    assert_eq!(
        claims(&refreshed.s("access_token"))["cnf"]["jkt"],
        key.jkt()
    );
    d.profile(&refreshed.s("access_token"), &key).await.ok(200);
}

#[tokio::test]
async fn stolen_tokens_alone_are_refused_and_the_device_stays_logged_in() {
    let d = D::start().await;
    let key = Key::new();
    let login = d.login("dpop-app", Some(&key)).await;
    let refresh = login.s("refresh_token");
    let access = login.s("access_token");
    // The refresh token replayed by raw HTTP, without a proof or with the thief's own key.
    d.refresh(&refresh, None)
        .await
        .code(400, "InvalidDPoPProof");
    d.refresh(&refresh, Some(&Key::new()))
        .await
        .code(400, "InvalidDPoPProof");
    // Logging out needs the key too.
    let path = format!("{BR}/auth/session");
    d.send(
        Method::DELETE,
        &path,
        Some(("Bearer", &refresh)),
        None,
        None,
    )
    .await
    .code(400, "InvalidDPoPProof");
    // The access token alone, as a bearer token or as a DPoP one without a proof.
    let profile = format!("{BR}/auth/profile");
    let r = d
        .send(Method::GET, &profile, Some(("Bearer", &access)), None, None)
        .await;
    r.code(401, "InvalidDPoPProof");
    let challenge = r.headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.starts_with("DPoP error=\"invalid_dpop_proof\""),
        "{challenge}"
    );
    d.send(Method::GET, &profile, Some(("DPoP", &access)), None, None)
        .await
        .code(401, "InvalidDPoPProof");
    // A proof from another key, with the right ath.
    let thief = Key::new();
    let p = thief.proof_at("GET", &d.url(&profile), d.now(), Some(&access), None);
    d.send(
        Method::GET,
        &profile,
        Some(("DPoP", &access)),
        Some(&p),
        None,
    )
    .await
    .code(401, "InvalidDPoPProof");
    // None of it logged the device out.
    d.profile(&access, &key).await.ok(200);
    d.refresh(&refresh, Some(&key)).await.ok(201);
}

#[tokio::test]
async fn proofs_that_do_not_fit_their_request_are_refused() {
    let mut d = D::start().await;
    let key = Key::new();
    let login = d.login("dpop-app", Some(&key)).await;
    let access = login.s("access_token");
    let path = format!("{BR}/auth/profile");
    let url = d.url(&path);
    // Replayed: the same proof twice.
    let once = key.proof_at("GET", &url, d.now(), Some(&access), None);
    get(&d, &path, &access, once.clone()).await.ok(200);
    get(&d, &path, &access, once)
        .await
        .code(401, "InvalidDPoPProof");
    // For another URL, another method.
    let other = d.url(&format!("{BR}/auth/sessions"));
    get(
        &d,
        &path,
        &access,
        key.proof_at("GET", &other, d.now(), Some(&access), None),
    )
    .await
    .code(401, "InvalidDPoPProof");
    get(
        &d,
        &path,
        &access,
        key.proof_at("POST", &url, d.now(), Some(&access), None),
    )
    .await
    .code(401, "InvalidDPoPProof");
    // For another access token (ath).
    get(
        &d,
        &path,
        &access,
        key.proof_at("GET", &url, d.now(), Some("another token"), None),
    )
    .await
    .code(401, "InvalidDPoPProof");
    // A private key in the header, though the signature is good.
    let mut jwk = key.jwk();
    jwk["d"] = Value::from(URL_SAFE_NO_PAD.encode(key.signing.to_bytes()));
    let claims = json!({"jti": uuid_like(), "htm": "GET", "htu": url, "iat": d.now(),
        "ath": URL_SAFE_NO_PAD.encode(Sha256::digest(access.as_bytes()))});
    get(
        &d,
        &path,
        &access,
        key.sign(
            &json!({"typ": "dpop+jwt", "alg": "ES256", "jwk": jwk}),
            &claims,
        ),
    )
    .await
    .code(401, "InvalidDPoPProof");
    // Not a DPoP JWT, or not ES256.
    let header = |typ: &str, alg: &str| json!({"typ": typ, "alg": alg, "jwk": key.jwk()});
    get(
        &d,
        &path,
        &access,
        key.sign(&header("JWT", "ES256"), &claims),
    )
    .await
    .code(401, "InvalidDPoPProof");
    get(
        &d,
        &path,
        &access,
        key.sign(&header("dpop+jwt", "none"), &claims),
    )
    .await
    .code(401, "InvalidDPoPProof");
    // Signed by another key than the one in its header.
    let forged = Key::new().sign(&header("dpop+jwt", "ES256"), &claims);
    get(&d, &path, &access, forged)
        .await
        .code(401, "InvalidDPoPProof");
    // Too old, or from the future: the server asks for its nonce, and a proof with it passes
    // whatever the device's clock says.
    for iat in [d.now() - 120, d.now() + 60] {
        let r = get(
            &d,
            &path,
            &access,
            key.proof_at("GET", &url, iat, Some(&access), None),
        )
        .await;
        r.code(401, "UseDPoPNonce");
        let nonce = r.headers["dpop-nonce"].to_str().unwrap().to_string();
        assert!(
            r.headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("use_dpop_nonce")
        );
        get(
            &d,
            &path,
            &access,
            key.proof_at("GET", &url, iat, Some(&access), Some(&nonce)),
        )
        .await
        .ok(200);
    }
    // A nonce expires: two epochs later it is asked for again.
    let r = get(
        &d,
        &path,
        &access,
        key.proof_at("GET", &url, d.now() - 120, Some(&access), None),
    )
    .await;
    let nonce = r.headers["dpop-nonce"].to_str().unwrap().to_string();
    d.advance(2 * 300);
    let r = get(
        &d,
        &path,
        &access,
        key.proof_at("GET", &url, d.now(), Some(&access), Some(&nonce)),
    )
    .await;
    r.code(401, "UseDPoPNonce");
    assert!(r.headers.contains_key("dpop-nonce"));
}

#[tokio::test]
async fn a_token_endpoint_asks_for_a_nonce_with_400() {
    let d = D::start().await;
    let key = Key::new();
    let path = D::login_path("dpop-app");
    let old = key.proof_at("POST", &d.url(&path), d.now() - 300, None, None);
    let r = d
        .send(Method::POST, &path, None, Some(&old), Some(json!({})))
        .await;
    r.code(400, "UseDPoPNonce");
    let nonce = r.headers["dpop-nonce"].to_str().unwrap().to_string();
    let again = key.proof_at("POST", &d.url(&path), d.now() - 300, None, Some(&nonce));
    d.send(Method::POST, &path, None, Some(&again), Some(json!({})))
        .await
        .ok(200);
}

#[tokio::test]
async fn rotation_and_reuse_detection_work_on_bound_sessions() {
    let mut d = D::start().await;
    let key = Key::new();
    let login = d.login("dpop-app", Some(&key)).await;
    let first = login.s("refresh_token");
    let second = d.refresh(&first, Some(&key)).await.s("refresh_token");
    assert_ne!(first, second);
    let third = d.refresh(&second, Some(&key)).await.s("refresh_token");
    d.advance(11);
    // The rotated-out token without the key: refused, and it is not taken as reuse.
    d.refresh(&first, None).await.code(400, "InvalidDPoPProof");
    d.refresh(&third, Some(&key)).await.ok(201);
    // With the key it is reuse: the session ends.
    d.refresh(&first, Some(&key))
        .await
        .code(401, "InvalidSession");
    d.refresh(&third, Some(&key))
        .await
        .code(401, "InvalidSession");
}

#[tokio::test]
async fn an_optional_app_binds_the_clients_that_send_proofs() {
    let d = D::start().await;
    let key = Key::new();
    let bound = d.login("opt-app", Some(&key)).await;
    assert_eq!(bound.body["token_type"], "DPoP");
    let plain = d.login("opt-app", None).await;
    plain.ok(200);
    assert!(plain.body.get("token_type").is_none(), "{}", plain.body);
    assert!(claims(&plain.s("access_token")).get("cnf").is_none());
    // The bearer session works as ever; the bound one only with its key.
    let refreshed = d.refresh(&plain.s("refresh_token"), None).await;
    refreshed.ok(201);
    let profile = format!("{BR}/auth/profile");
    d.send(
        Method::GET,
        &profile,
        Some(("Bearer", &refreshed.s("access_token"))),
        None,
        None,
    )
    .await
    .ok(200);
    d.refresh(&bound.s("refresh_token"), None)
        .await
        .code(400, "InvalidDPoPProof");
    d.refresh(&bound.s("refresh_token"), Some(&key))
        .await
        .ok(201);
}

#[tokio::test]
async fn an_app_with_dpop_off_binds_nothing() {
    let d = D::start().await;
    let key = Key::new();
    let login = d.login("off-app", Some(&key)).await;
    login.ok(200);
    assert!(login.body.get("token_type").is_none());
    assert!(claims(&login.s("access_token")).get("cnf").is_none());
    d.refresh(&login.s("refresh_token"), None).await.ok(201);
}

#[tokio::test]
async fn functions_and_api_keys_take_the_proof_of_a_bound_session() {
    let d = D::start().await;
    let key = Key::new();
    let login = d.login("dpop-app", Some(&key)).await;
    let access = login.s("access_token");
    let path = format!("{}/functions/call", ar("dpop-app"));
    let proof = key.proof_at("POST", &d.url(&path), d.now(), Some(&access), None);
    let r = d
        .send(
            Method::POST,
            &path,
            Some(("DPoP", &access)),
            Some(&proof),
            Some(json!({"name": "sum", "arguments": [1, 2]})),
        )
        .await;
    assert_ne!(r.status, 401, "{}", r.body);
    // Calls made with the refresh token (the user's sessions) need the key as well.
    let sessions = format!("{BR}/auth/sessions");
    let refresh = login.s("refresh_token");
    d.send(
        Method::GET,
        &sessions,
        Some(("Bearer", &refresh)),
        None,
        None,
    )
    .await
    .code(401, "InvalidDPoPProof");
    let proof = key.proof_at("GET", &d.url(&sessions), d.now(), None, None);
    d.send(
        Method::GET,
        &sessions,
        Some(("Bearer", &refresh)),
        Some(&proof),
        None,
    )
    .await
    .ok(200);
}

/// `required` turned on for an app with live bearer sessions: their access tokens (no `cnf`)
/// are refused, and each session is bound to the key of its first refresh with a proof.
#[tokio::test]
async fn turning_required_on_binds_old_sessions_at_their_next_refresh_with_a_proof() {
    let dir = temp_dir("dpop-switch");
    let start = |dpop: &str| {
        let mut config = sessionkit_server::config::Config::from_toml_str(
            &DPOP_CONFIG.replace(r#"dpop = "optional""#, &format!("dpop = \"{dpop}\"")),
        )
        .unwrap();
        config.data_dir = dir.clone();
        start_config(config)
    };
    let before = D {
        t: start("optional").await,
        skew: 0,
    };
    let login = before.login("opt-app", None).await;
    let (access, refresh) = (login.s("access_token"), login.s("refresh_token"));
    assert!(claims(&access).get("cnf").is_none(), "a bearer session");
    before.t.srv.shutdown().await;

    let d = D {
        t: start("required").await,
        skew: 0,
    };
    let profile = format!("{BR}/auth/profile");
    d.send(Method::GET, &profile, Some(("Bearer", &access)), None, None)
        .await
        .code(401, "InvalidDPoPProof");
    d.refresh(&refresh, None)
        .await
        .code(400, "InvalidDPoPProof");
    // The first refresh with a proof binds the session to its key.
    let key = Key::new();
    let fresh = d.refresh(&refresh, Some(&key)).await;
    let bound = fresh.ok(201)["access_token"].as_str().unwrap().to_string();
    assert_eq!(claims(&bound)["cnf"]["jkt"], key.jkt());
    d.profile(&bound, &key).await.ok(200);
    // From then on another key is a thief's.
    d.refresh(&refresh, Some(&Key::new()))
        .await
        .code(400, "InvalidDPoPProof");
    d.refresh(&refresh, Some(&key)).await.ok(201);
}
