//! A small JSON-over-HTTP client for talking to a server under test.
//!
//! Every helper takes a path that starts with `/` (for example
//! `/_matrix/client/v3/account/whoami`) and an optional access token, which is
//! sent as `Authorization: Bearer …`.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
pub use reqwest::{Method, StatusCode};
use serde_json::Value;

/// Installs rustls' ring crypto provider as the process default.
///
/// reqwest is built without a provider of its own, and matrix-sdk brings a
/// second one (aws-lc-rs), so rustls cannot choose by itself. Calling this
/// more than once is harmless.
pub fn install_crypto_provider() {
    // Deprecated in rustls 0.23.48 only for lacking post-quantum key
    // exchange; ring is the provider this workspace builds on, and the tests
    // speak plain HTTP to the server anyway.
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Percent-encodes one path segment or query value (everything except the
/// RFC 3986 unreserved characters), e.g. `@alice:localhost:8008` →
/// `%40alice%3Alocalhost%3A8008`.
pub fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A JSON HTTP client bound to one server's base URL.
#[derive(Clone, Debug)]
pub struct HttpClient {
    http: reqwest::Client,
    base_url: String,
}

/// A response kept as raw bytes, for checks on headers, non-JSON bodies and
/// status codes of malformed requests.
#[derive(Debug)]
pub struct RawResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// The body parsed as JSON, or `None` if it is not valid JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The body as (lossy) UTF-8 text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The value of a response header, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }
}

impl HttpClient {
    /// A client for the server at `base_url` (no trailing slash), ignoring any
    /// proxy settings in the environment.
    pub fn new(base_url: &str) -> Self {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("building the reqwest client");
        HttpClient {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The absolute URL of `path` (which must start with `/`).
    pub fn url(&self, path: &str) -> String {
        assert!(path.starts_with('/'), "path must start with '/': {path}");
        format!("{}{}", self.base_url, path)
    }

    /// Sends a request and returns the raw response. `headers` are added as
    /// given; `body` is sent as is (with `Content-Type: application/json`
    /// unless `headers` sets one).
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> RawResponse {
        let mut req = self.http.request(method.clone(), self.url(path));
        let mut map = HeaderMap::new();
        if let Some(t) = token {
            map.insert(
                AUTHORIZATION,
                HeaderValue::from_str(&format!("Bearer {t}")).expect("token header"),
            );
        }
        if body.is_some() {
            map.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        for (k, v) in headers {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                HeaderValue::from_str(v).expect("header value"),
            );
        }
        req = req.headers(map);
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: request failed: {e}"));
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: reading the body failed: {e}"))
            .to_vec();
        RawResponse {
            status,
            headers,
            body,
        }
    }

    /// Sends a request with an optional JSON body and returns the status and
    /// the parsed JSON body (`Value::Null` for an empty body). Panics if the
    /// body is not JSON: every Matrix endpoint answers with JSON.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let bytes = body.map(|b| serde_json::to_vec(&b).expect("serialising the body"));
        let resp = self.raw(method.clone(), path, token, &[], bytes).await;
        if resp.body.is_empty() {
            return (resp.status, Value::Null);
        }
        match resp.json() {
            Some(v) => (resp.status, v),
            None => panic!(
                "{method} {path}: response (status {}) is not JSON: {:?}",
                resp.status,
                resp.text()
            ),
        }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.request(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.request(Method::PUT, path, token, Some(body)).await
    }

    pub async fn delete(
        &self,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.request(Method::DELETE, path, token, body).await
    }
}
