//! Matrix-level helpers on top of [`HttpClient`]: registration through
//! user-interactive auth, password login, UIA round trips and error checks.

use serde_json::{json, Value};

use crate::http::{enc, HttpClient, Method, StatusCode};

/// One logged-in device of a user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub user_id: String,
    pub access_token: String,
    pub device_id: String,
}

impl Session {
    /// The access token, ready for the `token` argument of the HTTP helpers.
    pub fn token(&self) -> Option<&str> {
        Some(&self.access_token)
    }

    /// The localpart of the user id (`alice` for `@alice:localhost:1234`).
    pub fn localpart(&self) -> &str {
        localpart(&self.user_id)
    }
}

/// The localpart of a user id: `@alice:host:port` → `alice`.
pub fn localpart(user_id: &str) -> &str {
    let rest = user_id.strip_prefix('@').unwrap_or(user_id);
    rest.split(':').next().unwrap_or(rest)
}

/// Asserts that a response is the spec's standard error: the given status and
/// a JSON body with string `errcode` equal to `errcode` and a string `error`.
#[track_caller]
pub fn assert_error(resp: &(StatusCode, Value), status: u16, errcode: &str) {
    let (got_status, body) = resp;
    assert_eq!(
        got_status.as_u16(),
        status,
        "expected status {status} {errcode}, got {got_status} with body {body}"
    );
    assert_eq!(
        body.get("errcode").and_then(Value::as_str),
        Some(errcode),
        "expected errcode {errcode} (status {status}), body: {body}"
    );
    assert!(
        body.get("error").is_some_and(Value::is_string),
        "error response lacks a string `error` field: {body}"
    );
}

/// Asserts the status and that the body is a standard error (string
/// `errcode` and `error`), without fixing the errcode; returns the errcode.
#[track_caller]
pub fn assert_error_status(resp: &(StatusCode, Value), status: u16) -> String {
    let (got_status, body) = resp;
    assert_eq!(
        got_status.as_u16(),
        status,
        "expected status {status}, got {got_status} with body {body}"
    );
    assert!(
        body.get("error").is_some_and(Value::is_string),
        "error response lacks a string `error` field: {body}"
    );
    body.get("errcode")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("error response lacks a string `errcode`: {body}"))
        .to_owned()
}

/// Asserts status 200 and returns the body.
#[track_caller]
pub fn assert_ok(resp: (StatusCode, Value)) -> Value {
    let (status, body) = resp;
    assert_eq!(status, StatusCode::OK, "expected 200, body: {body}");
    body
}

/// Every stage named in a UIA 401 body's `flows`, flow by flow.
pub fn uia_flows(body: &Value) -> Vec<Vec<String>> {
    body.get("flows")
        .and_then(Value::as_array)
        .map(|flows| {
            flows
                .iter()
                .map(|f| {
                    f.get("stages")
                        .and_then(Value::as_array)
                        .map(|s| {
                            s.iter()
                                .filter_map(|x| x.as_str().map(str::to_owned))
                                .collect()
                        })
                        .unwrap_or_default()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Checks a UIA challenge: status 401, a `session` string and a `flows` list
/// in which some flow is exactly `[stage]`. Returns the session id.
#[track_caller]
pub fn expect_uia_challenge(resp: &(StatusCode, Value), stage: &str) -> String {
    let (status, body) = resp;
    assert_eq!(
        *status,
        StatusCode::UNAUTHORIZED,
        "expected a 401 UIA challenge, body: {body}"
    );
    let flows = uia_flows(body);
    assert!(
        flows.iter().any(|f| f.len() == 1 && f[0] == stage),
        "expected a flow with the single stage {stage}, got {flows:?} in {body}"
    );
    body.get("session")
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("UIA challenge without a session: {body}"))
        .to_owned()
}

/// The `m.login.password` UIA auth dict for a user.
pub fn password_auth(user: &str, password: &str, session: &str) -> Value {
    json!({
        "type": "m.login.password",
        "identifier": {"type": "m.id.user", "user": user},
        "password": password,
        "session": session,
    })
}

fn session_from(body: &Value) -> Session {
    let field = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("response lacks a string `{k}`: {body}"))
            .to_owned()
    };
    Session {
        user_id: field("user_id"),
        access_token: field("access_token"),
        device_id: field("device_id"),
    }
}

impl HttpClient {
    /// Runs a user-interactive-auth request: sends `body` without `auth`,
    /// expects a 401 with a `session`, then sends it again with the auth dict
    /// that `auth(session)` builds. Returns the second response.
    pub async fn uia(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Value,
        auth: impl FnOnce(&str) -> Value,
    ) -> (StatusCode, Value) {
        let first = self
            .request(method.clone(), path, token, Some(body.clone()))
            .await;
        let (status, challenge) = &first;
        assert_eq!(
            *status,
            StatusCode::UNAUTHORIZED,
            "{method} {path} without auth: expected a 401 UIA challenge, body: {challenge}"
        );
        let session = challenge
            .get("session")
            .and_then(Value::as_str)
            .unwrap_or_else(|| {
                panic!("{method} {path}: UIA challenge without session: {challenge}")
            });
        let mut body = body;
        body["auth"] = auth(session);
        self.request(method, path, token, Some(body)).await
    }

    /// [`uia`](Self::uia) completed with `m.login.password` for `session`'s user.
    pub async fn uia_password(
        &self,
        method: Method,
        path: &str,
        session: &Session,
        body: Value,
        password: &str,
    ) -> (StatusCode, Value) {
        let user = session.user_id.clone();
        self.uia(method, path, session.token(), body, |s| {
            password_auth(&user, password, s)
        })
        .await
    }

    /// `POST /createRoom` as `who`; panics unless it succeeds. Returns the room id.
    pub async fn create_room(&self, who: &Session, body: Value) -> String {
        let resp = assert_ok(
            self.post("/_matrix/client/v3/createRoom", who.token(), body)
                .await,
        );
        resp["room_id"]
            .as_str()
            .expect("createRoom answered a room_id")
            .to_owned()
    }

    /// `who` joins `room` (a room id) on this server; panics unless 200.
    pub async fn join_room(&self, who: &Session, room: &str) {
        let path = format!("/_matrix/client/v3/join/{}", enc(room));
        assert_ok(self.post(&path, who.token(), json!({})).await);
    }

    /// Registers `username` with `password` through the spec's UIA flow
    /// (401 challenge, then `m.login.dummy`) and returns the new session.
    pub async fn register(&self, username: &str, password: &str) -> Session {
        let resp = self
            .register_with(
                json!({"username": username, "password": password}),
                |s| json!({"type": "m.login.dummy", "session": s}),
            )
            .await;
        session_from(&assert_ok(resp))
    }

    /// POST /register with `body`, completing UIA with whatever auth dict
    /// `auth(session)` returns. Returns the final response.
    pub async fn register_with(
        &self,
        body: Value,
        auth: impl FnOnce(&str) -> Value,
    ) -> (StatusCode, Value) {
        self.uia(
            Method::POST,
            "/_matrix/client/v3/register",
            None,
            body,
            auth,
        )
        .await
    }

    /// POST /login with `m.login.password` and an `m.id.user` identifier
    /// (`user` may be a localpart or a full user id); returns the raw response.
    pub async fn login_raw(
        &self,
        user: &str,
        password: &str,
        device_display_name: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut body = json!({
            "type": "m.login.password",
            "identifier": {"type": "m.id.user", "user": user},
            "password": password,
        });
        if let Some(name) = device_display_name {
            body["initial_device_display_name"] = json!(name);
        }
        self.post("/_matrix/client/v3/login", None, body).await
    }

    /// Logs in with a password (must succeed) and returns the new session.
    pub async fn login(&self, user: &str, password: &str) -> Session {
        session_from(&assert_ok(self.login_raw(user, password, None).await))
    }

    /// GET /account/whoami with `token`.
    pub async fn whoami(&self, token: &str) -> (StatusCode, Value) {
        self.get("/_matrix/client/v3/account/whoami", Some(token))
            .await
    }

    /// The device ids listed by GET /devices for `session`, sorted.
    pub async fn device_ids(&self, session: &Session) -> Vec<String> {
        let body = assert_ok(
            self.get("/_matrix/client/v3/devices", session.token())
                .await,
        );
        let mut ids: Vec<String> = body["devices"]
            .as_array()
            .unwrap_or_else(|| panic!("GET /devices: no `devices` array: {body}"))
            .iter()
            .map(|d| {
                d["device_id"]
                    .as_str()
                    .unwrap_or_else(|| panic!("device without device_id: {d}"))
                    .to_owned()
            })
            .collect();
        ids.sort();
        ids
    }

    /// GET /register/available?username=…
    pub async fn username_available(&self, username: &str) -> (StatusCode, Value) {
        let path = format!(
            "/_matrix/client/v3/register/available?username={}",
            enc(username)
        );
        self.get(&path, None).await
    }
}
