//! A client written for the hosted service, with nothing changed but its base URL. It speaks the
//! protocol the way realm-core does (REALM-SEMANTICS.md): location first, then the returned
//! hostname; `Content-Type: application/json;charset=utf-8` on every request, even empty ones;
//! `provider` and `options.device` in login bodies; canonical Extended JSON arguments. It does not
//! use the SessionKit core at all.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sessionkit_tests::{APP_ID, TestServer, custom_jwt, unique_email};

struct HostedClient {
    http: reqwest::Client,
    hostname: String,
}

struct Tokens {
    access: String,
    refresh: String,
    user_id: String,
}

impl HostedClient {
    async fn connect(base_url: &str) -> Self {
        let http = reqwest::Client::new();
        let location: Value = http
            .get(format!("{base_url}/api/client/v2.0/app/{APP_ID}/location"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for key in ["deployment_model", "location", "hostname", "ws_hostname"] {
            assert!(
                location[key].is_string(),
                "location lacks {key}: {location}"
            );
        }
        let hostname = location["hostname"].as_str().unwrap().to_string();
        Self { http, hostname }
    }

    async fn call(
        &self,
        method: Method,
        url: String,
        bearer: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self
            .http
            .request(method, url)
            .header("Content-Type", "application/json;charset=utf-8")
            .header("Accept", "application/json");
        if let Some(token) = bearer {
            req = req.header("Authorization", format!("Bearer {token}"));
        }
        if let Some(body) = body {
            req = req.body(body.to_string());
        }
        let response = req.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn app_route(&self, path: &str) -> String {
        format!("{}/api/client/v2.0/app/{APP_ID}/{path}", self.hostname)
    }

    fn base_route(&self, path: &str) -> String {
        format!("{}/api/client/v2.0/{path}", self.hostname)
    }

    fn login_body(provider: &str, mut credential: Value) -> Value {
        credential["provider"] = json!(provider);
        credential["options"] = json!({"device": {
            "appId": APP_ID, "platform": "Android", "platformVersion": "14", "sdk": "Kotlin",
            "sdkVersion": "1.16.0", "cpuArch": "arm64", "deviceName": "Pixel", "coreVersion": "14.14.0"
        }});
        credential
    }

    async fn log_in(&self, provider: &str, credential: Value) -> Tokens {
        let url = self.app_route(&format!("auth/providers/{provider}/login"));
        let (status, doc) = self
            .call(
                Method::POST,
                url,
                None,
                Some(Self::login_body(provider, credential)),
            )
            .await;
        assert!(status.is_success(), "{provider} login: {status} {doc}");
        for key in ["access_token", "refresh_token", "user_id", "device_id"] {
            assert!(doc[key].is_string(), "{provider} login lacks {key}: {doc}");
        }
        Tokens {
            access: doc["access_token"].as_str().unwrap().into(),
            refresh: doc["refresh_token"].as_str().unwrap().into(),
            user_id: doc["user_id"].as_str().unwrap().into(),
        }
    }

    async fn profile(&self, access: &str) -> Value {
        let (status, doc) = self
            .call(
                Method::GET,
                self.base_route("auth/profile"),
                Some(access),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        assert!(
            doc["identities"].is_array() && doc["data"].is_object(),
            "{doc}"
        );
        doc
    }

    async fn refresh(&self, refresh: &str) -> (StatusCode, Value) {
        self.call(
            Method::POST,
            self.base_route("auth/session"),
            Some(refresh),
            None,
        )
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_service_client_works_against_sessionkit_server() {
    let server = TestServer::start().await;
    let client = HostedClient::connect(&server.base_url()).await;

    // Every provider.
    let anon = client.log_in("anon-user", json!({})).await;
    let email = unique_email("hosted");
    let (status, doc) = client
        .call(
            Method::POST,
            client.app_route("auth/providers/local-userpass/register"),
            None,
            Some(json!({"email": email, "password": "password-123"})),
        )
        .await;
    assert!(status.is_success(), "register: {status} {doc}");
    let user = client
        .log_in(
            "local-userpass",
            json!({"username": email, "password": "password-123"}),
        )
        .await;
    let jwt = client
        .log_in(
            "custom-token",
            json!({"token": custom_jwt("hosted-ext", json!({}))}),
        )
        .await;
    // custom-function bodies go as they are, without a provider key (realm-core).
    let url = client.app_route("auth/providers/custom-function/login");
    let (status, func) = client
        .call(
            Method::POST,
            url,
            None,
            Some(json!({"username": "hosted-fn"})),
        )
        .await;
    assert!(status.is_success(), "custom-function: {status} {func}");
    assert_ne!(jwt.user_id, user.user_id);

    // Profile, then refresh: the body has access_token.
    let profile = client.profile(&user.access).await;
    assert_eq!(profile["user_id"], json!(user.user_id));
    assert_eq!(profile["identities"][0]["provider_type"], "local-userpass");
    let (status, refreshed) = client.refresh(&user.refresh).await;
    assert!(status.is_success(), "{status} {refreshed}");
    let access = refreshed["access_token"]
        .as_str()
        .expect("access_token")
        .to_string();
    client.profile(&access).await;

    // Link: the anonymous user gains an email identity.
    let linked_email = unique_email("hosted-link");
    client
        .call(
            Method::POST,
            client.app_route("auth/providers/local-userpass/register"),
            None,
            Some(json!({"email": linked_email, "password": "password-123"})),
        )
        .await;
    let url = client.app_route("auth/providers/local-userpass/login?link=true");
    let body = HostedClient::login_body(
        "local-userpass",
        json!({"username": linked_email, "password": "password-123"}),
    );
    let (status, link) = client
        .call(Method::POST, url, Some(&anon.access), Some(body))
        .await;
    assert!(status.is_success(), "link: {status} {link}");
    let link_access = link["access_token"].as_str().expect("link access_token");
    let identities = client.profile(link_access).await["identities"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(identities, 2);

    // User API keys, with the refresh token.
    let (status, key) = client
        .call(
            Method::POST,
            client.base_route("auth/api_keys"),
            Some(&user.refresh),
            Some(json!({"name": "ci"})),
        )
        .await;
    assert!(status.is_success(), "create key: {status} {key}");
    let (key_id, secret) = (
        key["_id"].as_str().unwrap().to_string(),
        key["key"].as_str().unwrap().to_string(),
    );
    let (_, list) = client
        .call(
            Method::GET,
            client.base_route("auth/api_keys"),
            Some(&user.refresh),
            None,
        )
        .await;
    assert_eq!(list.as_array().map(Vec::len), Some(1));
    assert!(
        list[0].get("key").is_none(),
        "the secret is only shown on create"
    );
    let path = format!("auth/api_keys/{key_id}");
    let (status, fetched) = client
        .call(
            Method::GET,
            client.base_route(&path),
            Some(&user.refresh),
            None,
        )
        .await;
    assert_eq!(
        (status, fetched["name"].as_str()),
        (StatusCode::OK, Some("ci"))
    );
    for action in ["disable", "enable"] {
        let url = client.base_route(&format!("{path}/{action}"));
        let (status, doc) = client
            .call(Method::PUT, url, Some(&user.refresh), None)
            .await;
        assert!(status.is_success(), "{action}: {status} {doc}");
    }
    let via_key = client.log_in("api-key", json!({"key": secret})).await;
    assert_eq!(via_key.user_id, user.user_id);
    let (status, _) = client
        .call(
            Method::DELETE,
            client.base_route(&path),
            Some(&user.refresh),
            None,
        )
        .await;
    assert!(status.is_success());

    // Functions, with canonical Extended JSON arguments.
    let body = json!({"name": "sum", "arguments": [{"$numberInt": "1"}, {"$numberInt": "2"}, {"$numberDouble": "0.5"}]});
    let (status, result) = client
        .call(
            Method::POST,
            client.app_route("functions/call"),
            Some(&access),
            Some(body),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{result}");
    assert_eq!(result.as_f64(), Some(3.5));

    // The key's session ended with the key (deleted above): logging it out answers "failed
    // to find refresh token", which hosted-service clients (realm-web) take as already gone.
    // Then the admin revokes another login: both refresh tokens are dead.
    let (status, doc) = client
        .call(
            Method::DELETE,
            client.base_route("auth/session"),
            Some(&via_key.refresh),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{doc}");
    assert!(
        doc["error"]
            .as_str()
            .is_some_and(|e| e.contains("failed to find refresh token")),
        "{doc}"
    );
    assert_eq!(
        client.refresh(&via_key.refresh).await.0,
        StatusCode::UNAUTHORIZED
    );
    server.revoke_sessions(&user.user_id).await;
    let (status, doc) = client.refresh(&user.refresh).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(doc["error_code"], "InvalidSession");
    // The admin API verifies a token the way the hosted admin API did.
    let (status, claims) = server
        .admin(
            Method::POST,
            "/users/verify_token",
            Some(json!({"token": jwt.access})),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(claims["sub"], json!(jwt.user_id));
    server.stop().await;
}

/// Social sign-in as the hosted service's clients sent it (realm-core's bodies: `id_token`,
/// `authCode`, `accessToken`, plus `provider` and `options.device`), against the server
/// pointed at the loopback test issuer instead of Google, Apple and Facebook.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hosted_service_client_signs_in_with_google_apple_and_facebook() {
    use sessionkit_tests::ServerOptions;
    use sessionkit_tests::issuer::{TestIssuer, providers_toml};
    let issuer = TestIssuer::start().await;
    let server = TestServer::with(ServerOptions {
        extra_providers: providers_toml(&issuer.url),
        ..ServerOptions::default()
    })
    .await;
    let client = HostedClient::connect(&server.base_url()).await;
    let spec = |sub: &str| json!({"sub": sub, "email": format!("{sub}@example.com")});
    let cases = [
        ("oauth2-google", "id_token", "google_id_token", "g-hosted"),
        (
            "oauth2-google",
            "authCode",
            "google_auth_code",
            "g-code-hosted",
        ),
        ("oauth2-apple", "id_token", "apple_id_token", "apple-hosted"),
        (
            "oauth2-facebook",
            "accessToken",
            "facebook_access_token",
            "fb-hosted",
        ),
    ];
    for (provider, field, kind, sub) in cases {
        let secret = issuer.credential(kind, &spec(sub)).unwrap();
        let tokens = client.log_in(provider, json!({ field: secret })).await;
        let profile = client.profile(&tokens.access).await;
        assert_eq!(profile["user_id"], tokens.user_id.as_str());
        assert_eq!(
            profile["identities"][0]["provider_type"], provider,
            "{profile}"
        );
        assert_eq!(profile["identities"][0]["id"], sub, "{profile}");
        assert_eq!(profile["data"]["email"], format!("{sub}@example.com"));
        let (status, _) = client.refresh(&tokens.refresh).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{provider}: refresh answers 201 as hosted"
        );
    }
    server.stop().await;
}
