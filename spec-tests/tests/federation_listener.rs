//! The federation listener (Server-Server API): TLS with a generated
//! certificate, with and without SNI; `GET /_matrix/key/v2/server`
//! ("Retrieving server keys"), `GET /_matrix/federation/v1/version`, and
//! 404 `M_UNRECOGNIZED` for everything not implemented yet.

use std::{
    net::SocketAddr,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use feathur_federation::{to_canonical_object, verify_server_json, PublicKeySet, SigningKey};
use ruma::serde::Base64;
use spec_tests::{install_crypto_provider, StatusCode, TestServer, Value};

/// An HTTPS client that accepts the server's self-signed certificate, as a
/// peer with `verify_certificates = false` (or Synapse's
/// `federation_verify_certificates: false`) does. `localhost` and
/// `other.example` resolve to the listener.
fn peer(port: u16) -> reqwest::Client {
    install_crypto_provider();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .resolve("localhost", addr)
        .resolve("other.example", addr)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("building the peer client")
}

async fn get(client: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    let response = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e:?}"));
    let status = response.status();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Checks a key response as a peer would: for this server, valid for a
/// while, and signed by the key it lists. Returns the key id.
fn check_keys(body: &Value, server_name: &str) -> String {
    assert_eq!(body["server_name"], server_name, "{body}");
    let valid_until = body["valid_until_ts"].as_u64().expect("valid_until_ts");
    assert!(
        valid_until > now_ms() + 3_600_000,
        "expires too soon: {body}"
    );
    assert!(body["old_verify_keys"].is_object(), "{body}");
    let verify_keys = body["verify_keys"].as_object().expect("verify_keys");
    assert_eq!(verify_keys.len(), 1, "{body}");
    let (key_id, key) = verify_keys.iter().next().unwrap();
    assert!(key_id.starts_with("ed25519:"), "{key_id}");
    let mut keys = PublicKeySet::new();
    keys.insert(
        key_id.clone(),
        Base64::parse(key["key"].as_str().expect("key")).expect("unpadded base64 key"),
    );
    let object = to_canonical_object(body).expect("canonical JSON");
    verify_server_json(server_name, &keys, &object).expect("valid self-signature");

    // The signature covers the content: a changed expiry no longer verifies.
    let mut forged = body.clone();
    forged["valid_until_ts"] = (valid_until + 1).into();
    let forged = to_canonical_object(&forged).unwrap();
    assert!(verify_server_json(server_name, &keys, &forged).is_err());
    key_id.clone()
}

#[tokio::test]
async fn keys_and_version_over_tls_with_and_without_sni() {
    let mut server = TestServer::builder().federation().start().await;
    let port = server.federation_port();
    let client = peer(port);

    // An IP literal: no SNI (what Synapse sends for IP server names), then
    // SNI for a name in the certificate and for one that is not.
    let mut key_ids = Vec::new();
    for host in ["127.0.0.1", "localhost", "other.example"] {
        let url = format!("https://{host}:{port}/_matrix/key/v2/server");
        let (status, body) = get(&client, &url).await;
        assert_eq!(status, StatusCode::OK, "{url}: {body}");
        key_ids.push(check_keys(&body, &server.server_name()));
    }
    key_ids.dedup();
    assert_eq!(key_ids.len(), 1);

    // It is the key the server keeps in its data directory.
    let file = std::fs::read_to_string(server.data_dir().join("signing.key")).unwrap();
    let stored = SigningKey::from_key_file(&file).unwrap();
    assert_eq!(key_ids[0], stored.key_id());

    let url = format!("https://127.0.0.1:{port}/_matrix/federation/v1/version");
    let (status, body) = get(&client, &url).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["server"]["name"], "Feathur", "{body}");
    assert!(
        body["server"]["version"]
            .as_str()
            .is_some_and(|v| !v.is_empty()),
        "{body}"
    );

    // Keys belong to the federation port, not the client listener.
    let on_client = server.get("/_matrix/key/v2/server", None).await;
    assert_eq!(on_client.0, StatusCode::NOT_FOUND);
    assert_eq!(on_client.1["errcode"], "M_UNRECOGNIZED");

    // The same key after a restart (on a fresh certificate).
    server.restart().await;
    let client = peer(port);
    let url = format!("https://127.0.0.1:{port}/_matrix/key/v2/server");
    let (status, body) = get(&client, &url).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(check_keys(&body, &server.server_name()), key_ids[0]);
}

#[tokio::test]
async fn unsigned_requests_are_unauthorized_and_unknown_paths_unrecognized() {
    let server = TestServer::builder().federation().start().await;
    let port = server.federation_port();
    let client = peer(port);
    let base = format!("https://127.0.0.1:{port}");
    let send = |method: reqwest::Method, path: &'static str| {
        let request = client
            .request(method.clone(), format!("{base}{path}"))
            .body("{}");
        async move {
            let response = request
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
            let status = response.status();
            let body: Value = response.json().await.expect("a JSON error body");
            (status, body)
        }
    };
    // Signed endpoints without a signature: 401 before anything else.
    for (method, path) in [
        (
            reqwest::Method::GET,
            "/_matrix/federation/v1/query/directory?room_alias=%23a%3Ab",
        ),
        (reqwest::Method::PUT, "/_matrix/federation/v1/send/txn1"),
        (
            reqwest::Method::GET,
            "/_matrix/federation/v1/make_join/!r:x/@u:x",
        ),
    ] {
        let (status, body) = send(method.clone(), path).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        assert_eq!(body["errcode"], "M_UNAUTHORIZED", "{method} {path}: {body}");
    }
    // Not served here (the client API).
    for (method, path) in [(reqwest::Method::GET, "/_matrix/client/versions")] {
        let (status, body) = send(method.clone(), path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(body["errcode"], "M_UNRECOGNIZED", "{method} {path}: {body}");
    }
    // A known path with the wrong method.
    let response = client
        .post(format!("{base}/_matrix/key/v2/server"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn behind_a_tls_proxy_the_listener_speaks_plain_http() {
    let server = TestServer::builder()
        .federation()
        .toml("[federation]\ntls = false")
        .start()
        .await;
    let port = server.federation_port();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let (status, body) = get(
        &client,
        &format!("http://127.0.0.1:{port}/_matrix/key/v2/server"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    check_keys(&body, &server.server_name());
}
