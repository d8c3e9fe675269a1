//! /versions, /capabilities and /.well-known/matrix/client (Client-Server
//! API §Server Discovery, §Capabilities negotiation).

use spec_tests::{assert_error, assert_ok, Method, StatusCode, TestServer, Value};

fn is_spec_version(v: &str) -> bool {
    let rest = match v.strip_prefix('v') {
        Some(r) => r,
        None => return v.starts_with("r0."),
    };
    let mut parts = rest.split('.');
    let ok =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    ok(parts.next()) && ok(parts.next()) && parts.next().is_none()
}

#[tokio::test]
async fn versions_lists_v1_releases() {
    let server = TestServer::start().await;
    let body = assert_ok(server.get("/_matrix/client/versions", None).await);
    let versions: Vec<&str> = body["versions"]
        .as_array()
        .unwrap_or_else(|| panic!("versions must be an array: {body}"))
        .iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("non-string version in {body}"))
        })
        .collect();
    assert!(
        versions.iter().any(|v| v.starts_with("v1.")),
        "no v1.x version in {body}"
    );
    for v in &versions {
        assert!(is_spec_version(v), "malformed version {v:?} in {body}");
    }
    if let Some(unstable) = body.get("unstable_features") {
        let map = unstable
            .as_object()
            .expect("unstable_features is an object");
        assert!(map.values().all(Value::is_boolean), "{body}");
    }
    // Works with a token too, and the answer is the same.
    let alice = server.register("alice", "versions-pw").await;
    let with_token = assert_ok(server.get("/_matrix/client/versions", alice.token()).await);
    assert_eq!(with_token["versions"], body["versions"]);
}

#[tokio::test]
async fn capabilities_allow_password_change() {
    let server = TestServer::start().await;
    assert_error(
        &server.get("/_matrix/client/v3/capabilities", None).await,
        401,
        "M_MISSING_TOKEN",
    );
    let alice = server.register("alice", "caps-pw").await;
    let body = assert_ok(
        server
            .get("/_matrix/client/v3/capabilities", alice.token())
            .await,
    );
    let caps = body["capabilities"]
        .as_object()
        .unwrap_or_else(|| panic!("capabilities must be an object: {body}"));
    // The spec: an absent `m.change_password` means password changes are allowed.
    let change_password = caps.get("m.change_password").and_then(|c| c.get("enabled"));
    assert!(
        change_password.is_none() || change_password == Some(&Value::Bool(true)),
        "{body}"
    );
    // Boolean capabilities, when present, are {enabled: bool}.
    for key in [
        "m.set_displayname",
        "m.set_avatar_url",
        "m.3pid_changes",
        "m.get_login_token",
    ] {
        if let Some(c) = caps.get(key) {
            assert!(c["enabled"].is_boolean(), "{key}: {body}");
        }
    }
    if let Some(rv) = caps.get("m.room_versions") {
        let default = rv["default"].as_str().expect("m.room_versions.default");
        let available = rv["available"]
            .as_object()
            .expect("m.room_versions.available");
        assert!(available.contains_key(default), "{body}");
        for stability in available.values() {
            assert!(
                stability == "stable" || stability == "unstable",
                "room version stability: {body}"
            );
        }
    }
}

#[tokio::test]
async fn well_known_client_when_configured() {
    let server =
        TestServer::start_with_toml("[well_known]\nclient = \"https://matrix.example.org\"").await;
    let body = assert_ok(server.get("/.well-known/matrix/client", None).await);
    let base = body["m.homeserver"]["base_url"]
        .as_str()
        .unwrap_or_else(|| panic!("m.homeserver.base_url missing: {body}"));
    assert_eq!(base.trim_end_matches('/'), "https://matrix.example.org");
    // Browsers fetch it cross-origin.
    let raw = server
        .raw(
            Method::GET,
            "/.well-known/matrix/client",
            None,
            &[("Origin", "https://app.example.com")],
            None,
        )
        .await;
    assert_eq!(raw.status, StatusCode::OK);
    assert_eq!(
        raw.header("access-control-allow-origin").as_deref(),
        Some("*")
    );
}

#[tokio::test]
async fn well_known_client_absent_by_default() {
    let server = TestServer::start().await;
    let raw = server
        .raw(Method::GET, "/.well-known/matrix/client", None, &[], None)
        .await;
    assert_eq!(
        raw.status,
        StatusCode::NOT_FOUND,
        "unconfigured well-known: {}",
        raw.text()
    );
}
