//! A JSON HTTP client that reports failures as errors (the test harness's
//! client panics, which is right in a test and wrong in a load generator
//! that counts errors).

use std::time::Duration;

use spec_tests::{install_crypto_provider, Method, Value};

pub struct Api {
    http: reqwest::Client,
    base: String,
}

/// An answer: status, parsed JSON body (`Null` if not JSON) and body size.
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub bytes: usize,
}

impl Api {
    pub fn new(base: &str) -> Api {
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .no_proxy()
            // Long-polls last up to 30 s; anything slower than this is a failure.
            .timeout(Duration::from_secs(120))
            .pool_max_idle_per_host(4096)
            .build()
            .expect("building the HTTP client");
        Api {
            http,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// Any status; `Err` only when no HTTP answer came.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Answer, String> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = resp.status().as_u16();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| format!("{method} {path}: reading the body: {e}"))?;
        Ok(Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            bytes: bytes.len(),
        })
    }

    /// Status and body; `Err` only when no HTTP answer came.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<(u16, Value), String> {
        let a = self.request(method, path, token, body).await?;
        Ok((a.status, a.body))
    }

    /// The body of a 2xx answer; anything else is an error.
    pub async fn ok(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let (status, answer) = self.call(method.clone(), path, token, body).await?;
        if (200..300).contains(&status) {
            Ok(answer)
        } else {
            Err(format!("{method} {path}: {status} {answer}"))
        }
    }
}
