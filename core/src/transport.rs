//! HTTP to the server: URL routes, the lazy location lookup, and turning answers into errors.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use reqwest::{Method, header};
use serde_json::Value;
use url::{Host, Url};

use crate::clock::Clock;
use crate::dpop::{DpopKey, DpopKeyError};
use crate::error::AppError;
use crate::log::{Log, LogLevel};

/// What went wrong in this module, with the library error that caused it kept as its
/// `source()` (STYLE.md lesson 1, after fxa-client's internal error). Nothing outside core sees
/// it: `From<Error> for AppError` is the one mapping into what the app acts on, and the text of
/// each variant is the message the app reads there.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// `base_url` (or the host the location lookup named) does not parse as a URL.
    #[error("base_url: {raw:?} is not a URL ({source})")]
    NotAUrl {
        raw: String,
        #[source]
        source: url::ParseError,
    },
    /// A URL without a host (`unix:/x`, `data:...`).
    #[error("base_url: {raw:?} has no host")]
    NoHost { raw: String },
    /// A scheme other than https and http.
    #[error("base_url: scheme {scheme:?} is not supported; use https (or http to loopback)")]
    Scheme { scheme: String },
    /// Plain http to a host other than loopback, without `allow_insecure_http`.
    #[error("refusing plain http to {url}")]
    InsecureUrl { url: String },
    /// reqwest could not make its client (its TLS backend failed to start).
    #[error("could not build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    /// No answer: DNS, connect, TLS, reset, a refused redirect, or the request timeout. The text
    /// names the method, the path (no query) and reqwest's chain of causes, never a header.
    #[error("{method} {path}: {}", error_chain(.source))]
    Http {
        method: Method,
        path: String,
        #[source]
        source: reqwest::Error,
    },
    /// A body over `max_response_bytes`, refused while it was read.
    #[error(
        "{method} {path}: the response body ({size}) is larger than max_response_bytes \
         ({limit} bytes); raise max_response_bytes if this answer is expected"
    )]
    TooLarge {
        method: Method,
        path: String,
        size: String,
        limit: u64,
    },
    /// A 2xx answer whose body is not JSON.
    #[error("body is not JSON ({0})")]
    NotJson(#[source] serde_json::Error),
    /// A JSON answer without a string field the protocol requires.
    #[error("{what}: missing string field {key:?}")]
    MissingField { what: String, key: String },
    /// The location lookup named a host that is not a usable URL: `check_base_url`'s
    /// `NotAUrl`, `NoHost` or `Scheme` inside (plain http stays `InsecureUrl`), worded as the
    /// invalid argument it would be as `base_url`.
    #[error("location: hostname unusable: invalid argument: {0}")]
    UnusableHost(#[source] Box<Error>),
    /// The server's own error (the protocol's JSON error body, or a status outside 2xx),
    /// already in the public shape: `AppError::Service`.
    #[error(transparent)]
    Server(AppError),
    /// A DPoP proof could not be signed (the random source or the app's signer failed).
    #[error("could not make a DPoP proof: {0}")]
    Proof(#[source] DpopKeyError),
}

/// The one mapping into the public error (STYLE.md lesson 1): what the app can do about it
/// decides the variant, the internal text is the message.
impl From<Error> for AppError {
    fn from(e: Error) -> Self {
        match e {
            Error::InsecureUrl { url } => AppError::InsecureUrl { url },
            Error::Server(public) => public,
            Error::Proof(_) => AppError::Storage {
                message: e.to_string(),
            },
            Error::NotAUrl { .. }
            | Error::NoHost { .. }
            | Error::Scheme { .. }
            | Error::Client(_) => AppError::InvalidArgument {
                message: e.to_string(),
            },
            Error::Http { ref source, .. } if source.is_timeout() => AppError::Timeout {
                message: e.to_string(),
            },
            Error::Http { .. } => AppError::Network {
                message: e.to_string(),
            },
            Error::TooLarge { .. }
            | Error::NotJson(_)
            | Error::MissingField { .. }
            | Error::UnusableHost(_) => AppError::MalformedResponse {
                message: e.to_string(),
            },
        }
    }
}

/// This module's results.
pub(crate) type Result<T, E = Error> = std::result::Result<T, E>;

/// Refuses plain http except to loopback, unless the app allowed it.
pub(crate) fn check_base_url(raw: &str, allow_insecure_http: bool) -> Result<()> {
    let url = Url::parse(raw).map_err(|source| Error::NotAUrl {
        raw: raw.to_string(),
        source,
    })?;
    if url.host().is_none() {
        return Err(Error::NoHost {
            raw: raw.to_string(),
        });
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(&url) => Ok(()),
        "http" => Err(Error::InsecureUrl {
            url: raw.to_string(),
        }),
        other => Err(Error::Scheme {
            scheme: other.to_string(),
        }),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

/// Where a request goes, before the location lookup says which host serves the app.
#[derive(Clone, Debug)]
pub(crate) enum Route {
    /// Under `H/api/client/v2.0/app/<id>/`: login, providers, functions.
    App(String),
    /// Under `H/api/client/v2.0/`: session, profile, delete, api keys.
    Base(String),
    /// A path on `H` itself, for `User::request`.
    Host(String),
}

/// What a request carries to say whose it is: a token, and the DPoP key of a bound session
/// (PROTOCOL.md, "DPoP"), which makes a proof for each request.
#[derive(Clone, Copy, Default)]
pub(crate) struct Auth<'a> {
    token: Option<&'a str>,
    /// The token is an access token: the scheme is `DPoP` and the proof has `ath` when bound.
    access: bool,
    key: Option<&'a DpopKey>,
}

impl<'a> Auth<'a> {
    /// Nothing: a login without DPoP, the providers' public routes.
    pub(crate) const NONE: Auth<'static> = Auth {
        token: None,
        access: false,
        key: None,
    };

    /// A login or a link asking the server to bind the session to `key`.
    pub(crate) fn proof(key: Option<&'a DpopKey>) -> Self {
        Self { key, ..Auth::NONE }
    }

    /// The refresh token (refresh, logout, API keys, sessions), always as `Bearer`, with a
    /// proof (no `ath`) when the session is bound.
    pub(crate) fn refresh(token: &'a str, key: Option<&'a DpopKey>) -> Self {
        Self {
            token: Some(token),
            access: false,
            key,
        }
    }

    /// An access token: `Bearer`, or `DPoP` with a proof carrying `ath` when bound.
    pub(crate) fn access(token: &'a str, key: Option<&'a DpopKey>) -> Self {
        Self {
            token: Some(token),
            access: true,
            key,
        }
    }

    fn carries_secret(&self) -> bool {
        self.token.is_some() || self.key.is_some()
    }
}

/// The host the location lookup returned.
#[derive(Clone, Debug)]
struct Location {
    hostname: String,
}

/// An answer from the server, whatever its status.
#[derive(Clone, Debug)]
pub(crate) struct ApiResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    json_content: bool,
}

impl ApiResponse {
    /// The body as JSON, if it is JSON.
    pub(crate) fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// The server's error, if the answer is one: a JSON body with `error` whatever the status
    /// (as realm-core), else any status outside 2xx.
    pub(crate) fn error(&self) -> Option<AppError> {
        if self.json_content
            && let Some(Value::Object(doc)) = self.json()
            && (doc.contains_key("error") || doc.contains_key("error_code"))
        {
            let text = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
            return Some(AppError::Service {
                code: text("error_code")
                    .filter(|c| !c.is_empty())
                    .unwrap_or_else(|| "AppUnknownError".into()),
                message: text("error").unwrap_or_else(|| "no error message".into()),
                http_status: self.status,
                link: text("link"),
                retry_after_secs: self.retry_after_secs(),
            });
        }
        if !(200..300).contains(&self.status) {
            let mut message = format!("HTTP status {}", self.status);
            if !self.body.is_empty() {
                message.push_str(": ");
                message.extend(self.body.chars().take(200));
            }
            return Some(AppError::Service {
                code: "HTTPError".into(),
                message,
                http_status: self.status,
                link: None,
                retry_after_secs: self.retry_after_secs(),
            });
        }
        None
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The answer's `Retry-After` in seconds from now, if it has a readable one.
    fn retry_after_secs(&self) -> Option<u64> {
        retry_after_secs(
            self.header("retry-after")?,
            self.header("date"),
            std::time::SystemTime::now(),
        )
    }

    /// Ok with the parsed JSON body (Null when empty), or the server's error.
    pub(crate) fn into_json(self) -> Result<Value> {
        if let Some(e) = self.error() {
            return Err(Error::Server(e));
        }
        if self.body.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&self.body).map_err(Error::NotJson)
    }

    /// Whether this answer to a refresh token says the session is over: a 401 with the
    /// protocol's JSON error body and one of its session-ending codes (PROTOCOL.md,
    /// "Errors": `InvalidSession`, `UserDisabled`). Any other 401 (say, an HTML page from a
    /// proxy or captive portal) says nothing about the session.
    pub(crate) fn ends_session(&self) -> bool {
        self.status == 401
            && matches!(
                self.error(),
                Some(AppError::Service { ref code, .. })
                    if code == "InvalidSession" || code == "UserDisabled"
            )
    }

    /// A 401 that does not end the session, as the transient failure it is.
    pub(crate) fn stray_401(&self, what: &str) -> AppError {
        AppError::Network {
            message: format!(
                "{what}: HTTP 401 without the protocol's session error (a proxy or captive \
                 portal?); the session is kept, retry later"
            ),
        }
    }

    /// A DPoP nonce challenge (`UseDPoPNonce`, RFC 9449's `use_dpop_nonce`): the proof's time
    /// or nonce was not accepted, and the answer's `DPoP-Nonce` has the nonce to use.
    pub(crate) fn asks_for_nonce(&self) -> bool {
        self.dpop_error("UseDPoPNonce")
    }

    /// A refusal of the request for want of a DPoP proof (or for a wrong one):
    /// `InvalidDPoPProof`.
    pub(crate) fn refuses_proof(&self) -> bool {
        self.dpop_error("InvalidDPoPProof")
    }

    /// A DPoP error `code` (400 at the token endpoint, 401 elsewhere). The status is looked at
    /// first, so a success is not parsed here on top of its caller's parse.
    fn dpop_error(&self, code: &str) -> bool {
        matches!(self.status, 400 | 401)
            && self.error().is_some_and(|e| e.server_code() == Some(code))
    }

    /// The `reason` sessionkit-server puts on a 401 for a refresh token.
    pub(crate) fn reason(&self) -> Option<String> {
        self.json()?.get("reason")?.as_str().map(str::to_string)
    }
}

/// RFC 9111 section 1.2.2: a delta-seconds too large to represent counts as 2^31.
const RETRY_AFTER_MAX_SECS: u64 = 1 << 31;

/// Reads a `Retry-After` value (RFC 9110 section 10.2.3): delta-seconds, or an HTTP-date
/// (section 5.6.7, all three formats) measured against the answer's own `Date` when it has a
/// readable one, so a device clock set wrong does not change the wait; else against `now`.
/// A date in the past is 0; anything else (negative, fractional, empty, junk) is `None`.
pub(crate) fn retry_after_secs(
    value: &str,
    date: Option<&str>,
    now: std::time::SystemTime,
) -> Option<u64> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return Some(
            value
                .parse::<u64>()
                .unwrap_or(u64::MAX)
                .min(RETRY_AFTER_MAX_SECS),
        );
    }
    let at = httpdate::parse_http_date(value).ok()?;
    let base = date
        .and_then(|d| httpdate::parse_http_date(d.trim()).ok())
        .unwrap_or(now);
    Some(
        at.duration_since(base)
            .map_or(0, |d| d.as_secs())
            .min(RETRY_AFTER_MAX_SECS),
    )
}

/// Reads a required string field of a JSON answer.
pub(crate) fn required_str(doc: &Value, key: &str, what: &str) -> Result<String> {
    doc.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| Error::MissingField {
            what: what.to_string(),
            key: key.to_string(),
        })
}

pub(crate) struct Transport {
    /// For requests with a token or a body: same-origin redirects only.
    client: reqwest::Client,
    /// For the location lookup, which carries neither.
    anonymous_client: reqwest::Client,
    app_id: String,
    allow_insecure_http: bool,
    base_url: RwLock<String>,
    /// Fetched once, before the first request; cleared after a failure so the next one retries.
    location: tokio::sync::Mutex<Option<Location>>,
    max_response_bytes: u64,
    log: Log,
    /// The `iat` of DPoP proofs.
    clock: Arc<dyn Clock>,
    /// The server's last `DPoP-Nonce`, put in every later proof (RFC 9449 section 8).
    nonce: Mutex<Option<String>>,
}

impl Transport {
    pub(crate) fn new(
        app_id: &str,
        base_url: &str,
        timeout: Duration,
        allow_insecure_http: bool,
        max_response_bytes: u64,
        log: Log,
        clock: Arc<dyn Clock>,
    ) -> Result<Self> {
        // A request with a token or credentials never follows a redirect to another origin (a
        // 307 would re-post a login's password there); the location lookup carries neither,
        // and may be sent on to another host.
        let client = |same_origin_only: bool| {
            let redirect = reqwest::redirect::Policy::custom(move |attempt| {
                let cross_origin = attempt
                    .previous()
                    .last()
                    .is_some_and(|from| from.origin() != attempt.url().origin());
                if attempt.previous().len() >= 10 {
                    attempt.error("too many redirects")
                } else if same_origin_only && cross_origin {
                    attempt.error(
                        "redirect to another origin refused: the request carries credentials",
                    )
                } else if check_base_url(attempt.url().as_str(), allow_insecure_http).is_err() {
                    attempt.error("redirect to plain http refused")
                } else {
                    attempt.follow()
                }
            });
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(30)))
                .redirect(redirect)
                .user_agent(concat!("sessionkit/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(Error::Client)
        };
        Ok(Self {
            client: client(true)?,
            anonymous_client: client(false)?,
            app_id: app_id.to_string(),
            allow_insecure_http,
            base_url: RwLock::new(trim_url(base_url)),
            location: tokio::sync::Mutex::new(None),
            max_response_bytes,
            log,
            clock,
            nonce: Mutex::new(None),
        })
    }

    pub(crate) fn base_url(&self) -> String {
        self.base_url
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Points the app at another server: location is re-run there first, and on failure the
    /// old URL stays.
    pub(crate) async fn update_base_url(&self, new_url: &str) -> Result<()> {
        check_base_url(new_url, self.allow_insecure_http)?;
        let new_url = trim_url(new_url);
        let mut location = self.location.lock().await;
        let found = self.fetch_location(&new_url).await?;
        *self.base_url.write().unwrap_or_else(|e| e.into_inner()) = new_url;
        *location = Some(found);
        Ok(())
    }

    async fn hostname(&self) -> Result<String> {
        let mut location = self.location.lock().await;
        if let Some(l) = location.as_ref() {
            return Ok(l.hostname.clone());
        }
        let found = self.fetch_location(&self.base_url()).await?;
        let host = found.hostname.clone();
        *location = Some(found);
        Ok(host)
    }

    async fn fetch_location(&self, base: &str) -> Result<Location> {
        let url = format!("{base}/api/client/v2.0/app/{}/location", self.app_id);
        let response = self.execute(Method::GET, &url, Auth::NONE, None).await?;
        let doc = response.into_json()?;
        let hostname = trim_url(&required_str(&doc, "hostname", "location")?);
        required_str(&doc, "ws_hostname", "location")?;
        // The server picks the host for every later request, so it gets the same scrutiny.
        check_base_url(&hostname, self.allow_insecure_http).map_err(|e| match e {
            Error::InsecureUrl { url } => Error::InsecureUrl { url },
            other => Error::UnusableHost(Box::new(other)),
        })?;
        Ok(Location { hostname })
    }

    /// Sends one request to a route; any HTTP answer is Ok, so callers can look at 401s. With a
    /// DPoP key, an answer `UseDPoPNonce` is answered by sending the request once more with the
    /// server's nonce in a new proof (RFC 9449 section 8); a second one is returned as it came.
    pub(crate) async fn send(
        &self,
        method: Method,
        route: &Route,
        auth: Auth<'_>,
        body: Option<&Value>,
    ) -> Result<ApiResponse> {
        let host = self.hostname().await?;
        let url = match route {
            Route::App(p) => format!("{host}/api/client/v2.0/app/{}/{p}", self.app_id),
            Route::Base(p) => format!("{host}/api/client/v2.0/{p}"),
            Route::Host(p) => format!("{host}{p}"),
        };
        let response = self.execute(method.clone(), &url, auth, body).await?;
        if auth.key.is_some() && response.asks_for_nonce() {
            return self.execute(method, &url, auth, body).await;
        }
        Ok(response)
    }

    /// A proof for one request, with the server's last nonce (RFC 9449 section 4.2).
    fn proof(&self, key: &DpopKey, method: &Method, url: &str, auth: Auth<'_>) -> Result<String> {
        let nonce = self.nonce.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let ath = auth.token.filter(|_| auth.access);
        key.proof(
            method.as_str(),
            url,
            ath,
            nonce.as_deref(),
            self.clock.unix_now(),
        )
        .map_err(Error::Proof)
    }

    async fn execute(
        &self,
        method: Method,
        url: &str,
        auth: Auth<'_>,
        body: Option<&Value>,
    ) -> Result<ApiResponse> {
        let client = if auth.carries_secret() || body.is_some() {
            &self.client
        } else {
            &self.anonymous_client
        };
        let mut request = client.request(method.clone(), url);
        if auth.carries_secret() || body.is_some() || method != Method::GET {
            request = request.header(header::ACCEPT, "application/json");
        }
        if let Some(key) = auth.key {
            request = request.header("DPoP", self.proof(key, &method, url, auth)?);
        }
        match (auth.token, auth.key) {
            (Some(token), Some(_)) if auth.access => {
                request = request.header(header::AUTHORIZATION, format!("DPoP {token}"));
            }
            (Some(token), _) => request = request.bearer_auth(token),
            (None, _) => {}
        }
        if let Some(body) = body {
            request = request
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.to_string());
        }
        let path = url.split('?').next().unwrap_or(url).to_string();
        let response = request
            .send()
            .await
            .map_err(|e| self.http_error(&method, &path, e))?;
        let status = response.status().as_u16();
        let headers: Vec<(String, String)> = response
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let json_content = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/json")
            });
        if let Some(nonce) = response
            .headers()
            .get("dpop-nonce")
            .and_then(|v| v.to_str().ok())
        {
            *self.nonce.lock().unwrap_or_else(|e| e.into_inner()) = Some(nonce.to_string());
        }
        let body = self.read_body(response, &method, &path).await?;
        self.log.log(LogLevel::Debug, "sessionkit::http", || {
            format!("{method} {path} -> {status}")
        });
        Ok(ApiResponse {
            status,
            headers,
            body,
            json_content,
        })
    }

    /// The body as text, read chunk by chunk so that one over `max_response_bytes` is refused
    /// without being held in memory whole.
    async fn read_body(
        &self,
        mut response: reqwest::Response,
        method: &Method,
        path: &str,
    ) -> Result<String> {
        let limit = self.max_response_bytes;
        let too_large = |size: String| Error::TooLarge {
            method: method.clone(),
            path: path.to_string(),
            size,
            limit,
        };
        if let Some(len) = response.content_length()
            && len > limit
        {
            return Err(too_large(format!("{len} bytes")));
        }
        let mut bytes = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| self.http_error(method, path, e))?
        {
            if (bytes.len() + chunk.len()) as u64 > limit {
                return Err(too_large("more than that".into()));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// A request that got no answer, logged at warn (reqwest's text names the URL, never
    /// headers, so no token can leak through it).
    fn http_error(&self, method: &Method, path: &str, source: reqwest::Error) -> Error {
        let e = Error::Http {
            method: method.clone(),
            path: path.to_string(),
            source,
        };
        self.log
            .log(LogLevel::Warn, "sessionkit::http", || e.to_string());
        e
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn trim_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_only_to_loopback() {
        assert!(check_base_url("https://example.com", false).is_ok());
        assert!(check_base_url("http://127.0.0.1:9090", false).is_ok());
        assert!(check_base_url("http://127.8.0.1", false).is_ok());
        assert!(check_base_url("http://[::1]:80", false).is_ok());
        assert!(check_base_url("http://localhost:1", false).is_ok());
        assert!(matches!(
            check_base_url("http://example.com", false),
            Err(Error::InsecureUrl { .. })
        ));
        assert!(check_base_url("http://example.com", true).is_ok());
        assert!(matches!(
            check_base_url("ftp://x", false),
            Err(Error::Scheme { .. })
        ));
        assert!(matches!(
            check_base_url("nonsense", false),
            Err(Error::NotAUrl { .. })
        ));
        // Host names in punycode always work; raw non-ASCII ones depend on the IDNA backend the
        // final library links (the FFI library is ASCII-only), and are never a panic.
        assert!(check_base_url("https://xn--bcher-kva.example", false).is_ok());
        let _ = check_base_url("https://b\u{fc}cher.example", false);
    }

    #[test]
    fn errors_keep_their_cause_and_map_once_into_the_public_error() {
        use std::error::Error as _;
        // The parse error stays reachable as the source; the app gets the same sentence.
        let e = check_base_url("nonsense", false).unwrap_err();
        assert!(e.source().is_some_and(|s| s.is::<url::ParseError>()));
        assert_eq!(
            AppError::from(e),
            AppError::invalid("base_url: \"nonsense\" is not a URL (relative URL without a base)")
        );
        assert_eq!(
            AppError::from(check_base_url("http://example.com", false).unwrap_err()),
            AppError::InsecureUrl {
                url: "http://example.com".into()
            }
        );
        let e = response(200, true, "{not json").into_json().unwrap_err();
        assert!(e.source().is_some_and(|s| s.is::<serde_json::Error>()));
        assert!(matches!(
            AppError::from(e),
            AppError::MalformedResponse { message } if message.starts_with("body is not JSON (")
        ));
        // A host from the location lookup keeps check_base_url's error inside, worded as before.
        let inner = check_base_url("ftp://x", false).unwrap_err();
        let e = Error::UnusableHost(Box::new(inner));
        assert!(
            e.source()
                .is_some_and(|s| s.to_string().starts_with("base_url: scheme \"ftp\""))
        );
        assert_eq!(
            AppError::from(e).to_string(),
            "malformed response from the server: location: hostname unusable: invalid argument: \
             base_url: scheme \"ftp\" is not supported; use https (or http to loopback)"
        );
        // The server's own error passes through unchanged.
        let e = response(401, true, r#"{"error":"m","error_code":"InvalidSession"}"#)
            .into_json()
            .unwrap_err();
        assert_eq!(AppError::from(e).server_code(), Some("InvalidSession"));
        assert_eq!(
            AppError::from(required_str(&serde_json::json!({}), "id", "session").unwrap_err()),
            AppError::malformed("session: missing string field \"id\"")
        );
    }

    fn response(status: u16, json: bool, body: &str) -> ApiResponse {
        ApiResponse {
            status,
            headers: vec![],
            body: body.into(),
            json_content: json,
        }
    }

    #[test]
    fn errors_from_answers() {
        let e = response(
            200,
            true,
            r#"{"error":"m","error_code":"Custom","link":"l"}"#,
        )
        .error();
        assert_eq!(
            e,
            Some(AppError::Service {
                code: "Custom".into(),
                message: "m".into(),
                http_status: 200,
                link: Some("l".into()),
                retry_after_secs: None,
            })
        );
        let e = response(502, false, "<html>").error().unwrap();
        assert_eq!(e.server_code(), Some("HTTPError"));
        assert!(e.is_transient());
        assert!(response(204, false, "").error().is_none());
        assert!(response(200, true, r#"{"a":1}"#).error().is_none());
    }

    #[test]
    fn retry_after_values() {
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777 - 7200);
        let read = |v: &str, date: Option<&str>| retry_after_secs(v, date, now);
        assert_eq!(read("120", None), Some(120));
        assert_eq!(read(" 0 ", None), Some(0));
        assert_eq!(read("99999999999999999999999", None), Some(1 << 31));
        for bad in ["", "-5", "1.5", "+3", "soon", "12 s", "0x10"] {
            assert_eq!(read(bad, None), None, "{bad:?}");
        }
        // The three HTTP-date forms of RFC 9110 section 5.6.7; `now` is 06:49:37.
        assert_eq!(read("Sun, 06 Nov 1994 08:49:37 GMT", None), Some(7200));
        assert_eq!(read("Sunday, 06-Nov-94 08:49:37 GMT", None), Some(7200));
        assert_eq!(read("Sun Nov  6 08:49:37 1994", None), Some(7200));
        // Against the answer's Date (the server's clock), not the device's.
        assert_eq!(
            read(
                "Sun, 06 Nov 1994 08:49:57 GMT",
                Some("Sun, 06 Nov 1994 08:49:37 GMT")
            ),
            Some(20)
        );
        // An unreadable Date falls back to the device's clock; a past date is no wait.
        assert_eq!(
            read("Sun, 06 Nov 1994 08:49:37 GMT", Some("junk")),
            Some(7200)
        );
        assert_eq!(read("Sun, 06 Nov 1994 05:00:00 GMT", None), Some(0));
        assert_eq!(read("Sun, 06 Nov 1994 25:00:00 GMT", None), None);

        let mut answer = response(
            429,
            true,
            r#"{"error":"slow","error_code":"TooManyRequests"}"#,
        );
        answer.headers = vec![("Retry-After".into(), "1199".into())];
        let e = answer.error().unwrap();
        assert_eq!(e.retry_after(), Some(Duration::from_secs(1199)));
        assert!(e.is_transient());
        answer.headers = vec![("retry-after".into(), "later".into())];
        assert_eq!(answer.error().unwrap().retry_after(), None);
    }
}
