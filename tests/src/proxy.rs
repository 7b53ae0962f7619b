//! A fault-injecting HTTP proxy on a loopback port, between the SDK and a [`TestServer`]. It
//! forwards every request unless a rule for that endpoint says otherwise: delay the answer,
//! drop the connection, answer a status (with headers such as `Retry-After` if asked), cut the
//! answer short, or answer malformed JSON or a given 401. Rules are changed while the test runs; every request is counted.
//!
//! [`TestServer`]: crate::TestServer

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use futures_util::stream;

/// Which requests a rule applies to: a method and the end of the path (no query), e.g.
/// `POST .../auth/session`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub method: Method,
    pub path_suffix: String,
}

impl Endpoint {
    pub fn new(method: Method, path_suffix: &str) -> Self {
        Self {
            method,
            path_suffix: path_suffix.to_string(),
        }
    }
    /// The refresh: POST `/auth/session`.
    pub fn refresh() -> Self {
        Self::new(Method::POST, "/auth/session")
    }
    /// Log out: DELETE `/auth/session`.
    pub fn logout() -> Self {
        Self::new(Method::DELETE, "/auth/session")
    }
    pub fn profile() -> Self {
        Self::new(Method::GET, "/auth/profile")
    }
    pub fn function() -> Self {
        Self::new(Method::POST, "/functions/call")
    }
    pub fn location() -> Self {
        Self::new(Method::GET, "/location")
    }
    /// Any provider's login (and link).
    pub fn login() -> Self {
        Self::new(Method::POST, "/login")
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        self.method == *method && path.ends_with(&self.path_suffix)
    }
}

/// What the proxy does instead of simply forwarding.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forwards, then holds the server's answer this long: the server has done the work (a
    /// refresh has been issued) by the time the client gives up or gets it late.
    Delay(Duration),
    /// Closes the connection without any answer; nothing is forwarded.
    Drop,
    /// Answers this status and body (JSON content type when the body is JSON); not forwarded.
    Status(u16, String),
    /// Forwards, then sends the status, headers and full `Content-Length` of the server's answer
    /// but only the first half of its body before closing the connection.
    Truncated,
    /// Answers 200 with a JSON content type and a body that is not JSON; not forwarded.
    MalformedJson,
    /// Answers 401 with this JSON body; not forwarded.
    Unauthorized(String),
    /// Answers this status, these headers (e.g. `Retry-After`) and this body (JSON content type
    /// when the body is JSON); not forwarded.
    StatusWithHeaders(u16, Vec<(String, String)>, String),
}

#[derive(Clone, Debug)]
struct Rule {
    endpoint: Endpoint,
    fault: Fault,
    /// How many more requests it applies to; `None`: until removed.
    remaining: Option<usize>,
}

#[derive(Default)]
struct Shared {
    rules: Mutex<Vec<Rule>>,
    /// Every request seen: method and path, in order.
    seen: Mutex<Vec<(Method, String)>>,
}

struct ProxyState {
    shared: Arc<Shared>,
    upstream: String,
    /// Sent upstream as Host, so location answers with the proxy's address.
    own_host: HeaderValue,
    http: reqwest::Client,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy on 127.0.0.1:<free port> forwarding to `upstream` (a base URL such as
    /// `TestServer::base_url()`).
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let addr = listener.local_addr().expect("proxy address");
        let shared = Arc::new(Shared::default());
        let state = Arc::new(ProxyState {
            shared: shared.clone(),
            upstream: upstream.trim_end_matches('/').to_string(),
            own_host: HeaderValue::from_str(&addr.to_string()).expect("host header"),
            // Redirects are the client's business: pass them through as they are.
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("proxy client"),
        });
        let router = axum::Router::new().fallback(handle).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { addr, shared, task }
    }

    /// The base URL clients use instead of the server's.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Applies `fault` to every request to `endpoint` until cleared.
    pub fn set(&self, endpoint: Endpoint, fault: Fault) {
        self.add(endpoint, fault, None);
    }

    /// Applies `fault` to the next request to `endpoint` only.
    pub fn once(&self, endpoint: Endpoint, fault: Fault) {
        self.add(endpoint, fault, Some(1));
    }

    /// Applies `fault` to the next `times` requests to `endpoint`.
    pub fn times(&self, endpoint: Endpoint, fault: Fault, times: usize) {
        self.add(endpoint, fault, Some(times));
    }

    fn add(&self, endpoint: Endpoint, fault: Fault, remaining: Option<usize>) {
        // The newest rule for an endpoint wins, so a test can change its mind mid-way.
        self.shared.rules.lock().unwrap().insert(
            0,
            Rule {
                endpoint,
                fault,
                remaining,
            },
        );
    }

    /// Lifts every rule for `endpoint`: its requests are forwarded again.
    pub fn clear(&self, endpoint: &Endpoint) {
        self.shared
            .rules
            .lock()
            .unwrap()
            .retain(|r| &r.endpoint != endpoint);
    }

    /// Lifts every rule.
    pub fn clear_all(&self) {
        self.shared.rules.lock().unwrap().clear();
    }

    /// How many requests to `endpoint` the proxy has received (faulted or not).
    pub fn count(&self, endpoint: &Endpoint) -> usize {
        self.shared
            .seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p)| endpoint.matches(m, p))
            .count()
    }

    /// Every request received so far, as "METHOD path", for failure messages.
    pub fn log(&self) -> Vec<String> {
        self.shared
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|(m, p)| format!("{m} {p}"))
            .collect()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Takes the fault of the first matching rule, using up one-shot rules.
fn take_fault(shared: &Shared, method: &Method, path: &str) -> Option<Fault> {
    let mut rules = shared.rules.lock().unwrap();
    let i = rules
        .iter()
        .position(|r| r.endpoint.matches(method, path))?;
    let fault = rules[i].fault.clone();
    if let Some(n) = rules[i].remaining.as_mut() {
        *n -= 1;
        if *n == 0 {
            rules.remove(i);
        }
    }
    Some(fault)
}

async fn handle(State(st): State<Arc<ProxyState>>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    st.shared
        .seen
        .lock()
        .unwrap()
        .push((method.clone(), path.clone()));
    let fault = take_fault(&st.shared, &method, &path);
    match fault {
        None => forward(&st, request).await,
        Some(Fault::Delay(d)) => {
            let response = forward(&st, request).await;
            tokio::time::sleep(d).await;
            response
        }
        Some(Fault::Drop) => {
            // A body that fails before its first byte makes hyper abort the connection before
            // the head is flushed: the client sees the socket close with no answer at all.
            let failing = stream::once(async {
                Err::<Bytes, _>(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "dropped by the proxy",
                ))
            });
            Response::new(Body::from_stream(failing))
        }
        Some(Fault::Status(status, body)) => answer(status, body),
        Some(Fault::Unauthorized(body)) => answer(401, body),
        Some(Fault::StatusWithHeaders(status, headers, body)) => {
            let mut response = answer(status, body);
            for (name, value) in headers {
                response.headers_mut().append(
                    header::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                    HeaderValue::from_str(&value).expect("header value"),
                );
            }
            response
        }
        Some(Fault::MalformedJson) => answer(200, r#"{"access_token": "eyJ, oops"#.into()),
        Some(Fault::Truncated) => {
            let (mut parts, body) = forward(&st, request).await.into_parts();
            let full = axum::body::to_bytes(body, usize::MAX)
                .await
                .unwrap_or_default();
            let half = full.slice(..full.len() / 2);
            parts
                .headers
                .insert(header::CONTENT_LENGTH, full.len().into());
            // The pause lets hyper flush the first half before the failure closes the socket.
            let cut = stream::iter([Ok(half)]).chain(stream::once(async {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "cut short by the proxy",
                ))
            }));
            Response::from_parts(parts, Body::from_stream(cut))
        }
    }
}

fn answer(status: u16, body: String) -> Response {
    let content_type = if serde_json::from_str::<serde_json::Value>(&body).is_ok() {
        "application/json"
    } else {
        "text/plain"
    };
    Response::builder()
        .status(StatusCode::from_u16(status).expect("valid status"))
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .expect("response")
}

/// Sends the request on to the server and hands its answer back (a 502 if it is unreachable).
async fn forward(st: &ProxyState, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let target = format!(
        "{}{}",
        st.upstream,
        parts.uri.path_and_query().map_or("/", |p| p.as_str())
    );
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return answer(400, "unreadable request body".into());
    };
    let mut headers = parts.headers;
    headers.insert(header::HOST, st.own_host.clone());
    let sent = st
        .http
        .request(parts.method, target)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let upstream = match sent {
        Ok(r) => r,
        Err(e) => return answer(502, format!("proxy: upstream unreachable: {e}")),
    };
    let mut builder = Response::builder().status(upstream.status());
    for (name, value) in upstream.headers() {
        // Framing is redone for the client's connection.
        if name != header::TRANSFER_ENCODING && name != header::CONNECTION {
            builder = builder.header(name, value);
        }
    }
    let bytes = upstream.bytes().await.unwrap_or_default();
    builder.body(Body::from(bytes)).expect("response")
}
