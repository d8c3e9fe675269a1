//! Standard error responses, CORS and token transport (Client-Server API
//! §API Standards, §Web Browser Clients, §Client Authentication).

use spec_tests::{assert_ok, enc, json, Method, RawResponse, TestServer, Value};

const PW: &str = "errors-test-pw";
const MAX_BODY: usize = 4096;

enum Auth {
    None,
    Alice,
    Bogus,
}

struct Case {
    name: &'static str,
    method: Method,
    path: String,
    auth: Auth,
    headers: Vec<(&'static str, &'static str)>,
    body: Option<Vec<u8>>,
    status: u16,
    errcode: &'static str,
}

fn case(
    name: &'static str,
    method: Method,
    path: impl Into<String>,
    auth: Auth,
    body: Option<Vec<u8>>,
    status: u16,
    errcode: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        auth,
        headers: Vec::new(),
        body,
        status,
        errcode,
    }
}

fn js(v: Value) -> Option<Vec<u8>> {
    Some(serde_json::to_vec(&v).unwrap())
}

fn login_body(user: &str, password: &str) -> Value {
    json!({"type": "m.login.password",
           "identifier": {"type": "m.id.user", "user": user},
           "password": password})
}

/// Checks the standard error shape; returns a description of what is wrong.
fn check_error(resp: &RawResponse, status: u16, errcode: &str) -> Option<String> {
    let mut problems = Vec::new();
    if resp.status.as_u16() != status {
        problems.push(format!("status {} (want {status})", resp.status));
    }
    match resp.json() {
        None => problems.push(format!("body is not JSON: {:?}", resp.text())),
        Some(body) => {
            if body.get("errcode").and_then(Value::as_str) != Some(errcode) {
                problems.push(format!("errcode {} (want {errcode})", body["errcode"]));
            }
            if !body.get("error").is_some_and(Value::is_string) {
                problems.push(format!("no string `error`: {body}"));
            }
        }
    }
    let ct = resp.header("content-type").unwrap_or_default();
    if !ct.starts_with("application/json") {
        problems.push(format!("content-type {ct:?} (want application/json)"));
    }
    (!problems.is_empty()).then(|| problems.join("; "))
}

#[tokio::test]
async fn error_table() {
    let server =
        TestServer::start_with_toml(&format!("[client]\nmax_request_bytes = {MAX_BODY}")).await;
    let alice = server.register("alice", PW).await;
    let me = enc(&alice.user_id);
    let device = format!("/_matrix/client/v3/devices/{}", enc(&alice.device_id));
    let login = "/_matrix/client/v3/login";
    let whoami = "/_matrix/client/v3/account/whoami";
    let register = "/_matrix/client/v3/register";
    let huge = login_body("alice", &"x".repeat(MAX_BODY * 4));
    let just_under = login_body("alice", &"y".repeat(MAX_BODY / 2));

    let mut cases = vec![
        case(
            "invalid JSON",
            Method::POST,
            login,
            Auth::None,
            Some(b"{not json".to_vec()),
            400,
            "M_NOT_JSON",
        ),
        case(
            "invalid JSON (authenticated PUT)",
            Method::PUT,
            format!("/_matrix/client/v3/user/{me}/account_data/org.example.x"),
            Auth::Alice,
            Some(b"nope".to_vec()),
            400,
            "M_NOT_JSON",
        ),
        case(
            "JSON array instead of object",
            Method::POST,
            login,
            Auth::None,
            js(json!([1, 2])),
            400,
            "M_BAD_JSON",
        ),
        case(
            "display_name not a string",
            Method::PUT,
            device.clone(),
            Auth::Alice,
            js(json!({"display_name": 12})),
            400,
            "M_BAD_JSON",
        ),
        case(
            "missing token",
            Method::GET,
            whoami,
            Auth::None,
            None,
            401,
            "M_MISSING_TOKEN",
        ),
        case(
            "unknown token",
            Method::GET,
            whoami,
            Auth::Bogus,
            None,
            401,
            "M_UNKNOWN_TOKEN",
        ),
        case(
            "unknown token in query",
            Method::GET,
            format!("{whoami}?access_token=syt_not_a_real_token"),
            Auth::None,
            None,
            401,
            "M_UNKNOWN_TOKEN",
        ),
        case(
            "wrong password",
            Method::POST,
            login,
            Auth::None,
            js(login_body("alice", "wrong")),
            403,
            "M_FORBIDDEN",
        ),
        case(
            "unknown user",
            Method::POST,
            login,
            Auth::None,
            js(login_body("nobody", PW)),
            403,
            "M_FORBIDDEN",
        ),
        case(
            "body just under the limit",
            Method::POST,
            login,
            Auth::None,
            js(just_under),
            403,
            "M_FORBIDDEN",
        ),
        case(
            "unknown endpoint",
            Method::GET,
            "/_matrix/client/v3/nope",
            Auth::None,
            None,
            404,
            "M_UNRECOGNIZED",
        ),
        case(
            "unknown endpoint, authenticated",
            Method::POST,
            "/_matrix/client/v3/nope/deeper",
            Auth::Alice,
            js(json!({})),
            404,
            "M_UNRECOGNIZED",
        ),
        case(
            "path outside /_matrix",
            Method::GET,
            "/nope",
            Auth::None,
            None,
            404,
            "M_UNRECOGNIZED",
        ),
        case(
            "wrong method on /login",
            Method::DELETE,
            login,
            Auth::None,
            None,
            405,
            "M_UNRECOGNIZED",
        ),
        case(
            "wrong method on /versions",
            Method::POST,
            "/_matrix/client/versions",
            Auth::None,
            js(json!({})),
            405,
            "M_UNRECOGNIZED",
        ),
        case(
            "wrong method on /logout",
            Method::GET,
            "/_matrix/client/v3/logout",
            Auth::None,
            None,
            405,
            "M_UNRECOGNIZED",
        ),
        case(
            "body over max_request_bytes",
            Method::POST,
            login,
            Auth::None,
            js(huge),
            413,
            "M_TOO_LARGE",
        ),
        case(
            "taken user id",
            Method::POST,
            register,
            Auth::None,
            js(json!({"username": "alice", "password": PW})),
            400,
            "M_USER_IN_USE",
        ),
        case(
            "invalid user id",
            Method::POST,
            register,
            Auth::None,
            js(json!({"username": "no:colons", "password": PW})),
            400,
            "M_INVALID_USERNAME",
        ),
    ];
    // Content-Type is recommended, not required: a JSON body sent as
    // text/plain is still parsed.
    let mut plain = case(
        "JSON body sent as text/plain",
        Method::POST,
        login,
        Auth::None,
        js(login_body("alice", "wrong")),
        403,
        "M_FORBIDDEN",
    );
    plain.headers.push(("content-type", "text/plain"));
    cases.push(plain);

    let mut failures = Vec::new();
    for c in &cases {
        let token = match c.auth {
            Auth::None => None,
            Auth::Alice => Some(alice.access_token.as_str()),
            Auth::Bogus => Some("syt_not_a_real_token"),
        };
        let resp = server
            .raw(c.method.clone(), &c.path, token, &c.headers, c.body.clone())
            .await;
        if let Some(p) = check_error(&resp, c.status, c.errcode) {
            failures.push(format!("{} ({} {}): {p}", c.name, c.method, c.path));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} error cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
    // None of that broke the server or alice's session.
    assert_ok(server.whoami(&alice.access_token).await);
}

fn list_has_all(value: Option<String>, wanted: &[&str]) -> bool {
    let Some(v) = value else { return false };
    let items: Vec<String> = v.split(',').map(|s| s.trim().to_lowercase()).collect();
    items.iter().any(|i| i == "*") || wanted.iter().all(|w| items.contains(&w.to_lowercase()))
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "OPTIONS"];
const HEADERS: &[&str] = &["X-Requested-With", "Content-Type", "Authorization"];

fn check_cors(resp: &RawResponse, what: &str) {
    assert_eq!(
        resp.header("access-control-allow-origin").as_deref(),
        Some("*"),
        "{what}: Access-Control-Allow-Origin, headers {:?}",
        resp.headers
    );
    assert!(
        list_has_all(resp.header("access-control-allow-methods"), METHODS),
        "{what}: Access-Control-Allow-Methods must list {METHODS:?}, headers {:?}",
        resp.headers
    );
    assert!(
        list_has_all(resp.header("access-control-allow-headers"), HEADERS),
        "{what}: Access-Control-Allow-Headers must list {HEADERS:?}, headers {:?}",
        resp.headers
    );
}

#[tokio::test]
async fn cors_headers_on_preflight_and_responses() {
    let server = TestServer::start().await;
    let origin = ("Origin", "https://app.example.com");

    for (path, method) in [
        ("/_matrix/client/v3/account/whoami", "GET"),
        ("/_matrix/client/v3/login", "POST"),
        ("/_matrix/client/v3/devices/ABCDEF", "DELETE"),
    ] {
        let resp = server
            .raw(
                Method::OPTIONS,
                path,
                None,
                &[
                    origin,
                    ("Access-Control-Request-Method", method),
                    (
                        "Access-Control-Request-Headers",
                        "authorization, content-type, x-requested-with",
                    ),
                ],
                None,
            )
            .await;
        // OPTIONS runs none of the endpoint's logic: no 401 for a missing token.
        assert!(
            resp.status.is_success(),
            "preflight for {method} {path}: {} {}",
            resp.status,
            resp.text()
        );
        check_cors(&resp, &format!("preflight {method} {path}"));
    }

    // A bare OPTIONS (no preflight headers) is answered too.
    let bare = server
        .raw(Method::OPTIONS, "/_matrix/client/v3/login", None, &[], None)
        .await;
    assert!(bare.status.is_success(), "bare OPTIONS: {}", bare.status);
    assert_eq!(
        bare.header("access-control-allow-origin").as_deref(),
        Some("*")
    );

    // Normal responses, successful or not, carry the headers as well.
    let ok = server
        .raw(
            Method::GET,
            "/_matrix/client/versions",
            None,
            &[origin],
            None,
        )
        .await;
    assert_eq!(ok.status.as_u16(), 200);
    check_cors(&ok, "GET /versions");
    let unauth = server
        .raw(
            Method::GET,
            "/_matrix/client/v3/account/whoami",
            None,
            &[origin],
            None,
        )
        .await;
    assert_eq!(unauth.status.as_u16(), 401);
    check_cors(&unauth, "401 from /whoami");
    let missing = server
        .raw(
            Method::GET,
            "/_matrix/client/v3/nope",
            None,
            &[origin],
            None,
        )
        .await;
    assert_eq!(missing.status.as_u16(), 404);
    check_cors(&missing, "404 from an unknown endpoint");
}

#[tokio::test]
async fn access_token_in_query_string() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let q = enc(&alice.access_token);
    let me = assert_ok(
        server
            .get(
                &format!("/_matrix/client/v3/account/whoami?access_token={q}"),
                None,
            )
            .await,
    );
    assert_eq!(me["user_id"], alice.user_id.as_str());
    assert_eq!(me["device_id"], alice.device_id.as_str());

    let path = format!(
        "/_matrix/client/v3/user/{}/account_data/org.example.q",
        enc(&alice.user_id)
    );
    let set = server
        .put(
            &format!("{path}?access_token={q}"),
            None,
            json!({"via": "query"}),
        )
        .await;
    assert_ok(set);
    let got = assert_ok(server.get(&path, alice.token()).await);
    assert_eq!(got, json!({"via": "query"}));
}
