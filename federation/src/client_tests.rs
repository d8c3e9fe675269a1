//! The federation client against a local TLS server (rcgen certificate,
//! axum-server): SSRF refusal, certificate checks, size limits, SRV
//! targets and X-Matrix signatures verified on the receiving side.

use std::sync::Mutex;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use ruma::api::federation::query::get_profile_information::v1 as profile;
use ruma::api::federation::transactions::send_transaction_message::v1 as send_txn;
use ruma::{MilliSecondsSinceUnixEpoch, OwnedTransactionId};

use super::*;
use crate::dns::SrvRecord;

/// What the test server knows: the client's key and our expected name.
struct Peer {
    client_key: ruma::signatures::PublicKeySet,
    server_key: SigningKey,
    our_name: Mutex<OwnedServerName>,
    seen: Mutex<Vec<String>>,
}

fn json(status: u16, body: String) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body))
        .unwrap()
}

/// Checks X-Matrix and answers profile queries with what it saw.
async fn handle(State(peer): State<Arc<Peer>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap().to_vec();
    let request = http::Request::from_parts(parts, body);
    // HTTP/2 requests without an explicit `Host` carry `:authority` only.
    let host = match request.headers().get(http::header::HOST) {
        Some(host) => host.to_str().unwrap().to_owned(),
        None => request.uri().authority().unwrap().to_string(),
    };
    let uri = request.uri().path_and_query().unwrap().as_str().to_owned();
    peer.seen
        .lock()
        .unwrap()
        .push(format!("{} {uri} host={host}", request.method()));
    let our_name = peer.our_name.lock().unwrap().clone();
    if let Some(rest) = uri.strip_prefix("/redirect/") {
        // `/redirect/loop` points at itself; `/redirect/N` counts down to 0.
        let next = match rest {
            "loop" => "/redirect/loop".to_owned(),
            "0" => "/final".to_owned(),
            n => format!("/redirect/{}", n.parse::<u32>().unwrap() - 1),
        };
        return Response::builder()
            .status(302)
            .header("location", next)
            .body(Body::empty())
            .unwrap();
    }
    if uri == "/_matrix/key/v2/server" {
        // Unauthenticated: the keys document, self-signed.
        let valid_until = MilliSecondsSinceUnixEpoch::now().get() + ruma::uint!(3_600_000);
        let doc = serde_json::json!({
            "server_name": our_name,
            "verify_keys": {peer.server_key.key_id(): {"key": peer.server_key.public_key_base64()}},
            "valid_until_ts": valid_until,
        });
        let signed = peer.server_key.sign_value(our_name.as_str(), &doc).unwrap();
        return json(200, serde_json::to_string(&signed).unwrap());
    }
    let verified = xmatrix::parse_authorization(request.headers())
        .and_then(|x| xmatrix::verify_request(&x, &request, &our_name, &peer.client_key));
    if let Err(e) = verified {
        let error = serde_json::json!({"errcode": "M_UNAUTHORIZED", "error": e.to_string()});
        return json(401, error.to_string());
    }
    if uri.starts_with("/_matrix/federation/v1/send/") {
        return json(200, r#"{"pdus": {}}"#.to_owned());
    }
    let displayname = if uri.contains("big") {
        "x".repeat(200_000)
    } else {
        host
    };
    json(
        200,
        serde_json::json!({ "displayname": displayname }).to_string(),
    )
}

struct TestServer {
    port: u16,
    cert_der: Vec<u8>,
    peer: Arc<Peer>,
    client_key: Arc<SigningKey>,
}

async fn start_server() -> TestServer {
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
    let names = ["localhost", "127.0.0.1", "srv.test"].map(str::to_owned);
    let cert = rcgen::generate_simple_self_signed(names).unwrap();
    let cert_der = cert.cert.der().to_vec();
    let tls = axum_server::tls_rustls::RustlsConfig::from_der(
        vec![cert_der.clone()],
        cert.signing_key.serialize_der(),
    )
    .await
    .unwrap();
    let client_key = Arc::new(SigningKey::generate().unwrap());
    let peer = Arc::new(Peer {
        client_key: client_key.public_key_set(),
        server_key: SigningKey::generate().unwrap(),
        our_name: Mutex::new("unset.example".try_into().unwrap()),
        seen: Mutex::new(Vec::new()),
    });
    let app = axum::Router::new()
        .fallback(handle)
        .with_state(peer.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = axum_server::from_tcp_rustls(listener, tls).unwrap();
    tokio::spawn(server.serve(app.into_make_service()));
    TestServer {
        port,
        cert_der,
        peer,
        client_key,
    }
}

impl TestServer {
    fn config(&self, allow_private: bool) -> ClientConfig {
        let mut config = ClientConfig::new("origin.test".try_into().unwrap());
        config.allow_private_ranges = allow_private;
        config.verify_certificates = false;
        config
    }

    fn client(&self, config: ClientConfig) -> FederationClient {
        FederationClient::new(config, self.client_key.clone()).unwrap()
    }

    fn expect_destination(&self, name: &str) -> OwnedServerName {
        let name: OwnedServerName = name.try_into().unwrap();
        *self.peer.our_name.lock().unwrap() = name.clone();
        name
    }
}

fn profile_request(user: &str) -> profile::Request {
    profile::Request::new(user.try_into().unwrap())
}

#[tokio::test]
async fn loopback_is_refused_by_default_literal_and_hostname() {
    let server = start_server().await;
    let client = server.client(server.config(false));
    for name in [
        format!("127.0.0.1:{}", server.port),
        format!("localhost:{}", server.port),
    ] {
        let dest = server.expect_destination(&name);
        let result = client.send(&dest, profile_request("@a:origin.test")).await;
        assert!(
            matches!(result, Err(ClientError::Refused(_))),
            "{name}: {result:?}"
        );
    }
    assert!(server.peer.seen.lock().unwrap().is_empty());
}

#[tokio::test]
async fn signed_requests_verify_on_the_receiving_side() {
    let server = start_server().await;
    let client = server.client(server.config(true));

    // IP literal: Host is the server name with its port.
    let dest = server.expect_destination(&format!("127.0.0.1:{}", server.port));
    let response = client
        .send(&dest, profile_request("@a:origin.test"))
        .await
        .unwrap();
    assert_eq!(response.get("displayname").unwrap(), dest.as_str());

    // Hostname with explicit port, a PUT with a JSON body.
    let dest = server.expect_destination(&format!("localhost:{}", server.port));
    let response = client
        .send(&dest, profile_request("@a:origin.test"))
        .await
        .unwrap();
    assert_eq!(response.get("displayname").unwrap(), dest.as_str());
    let txn = send_txn::Request::new(
        OwnedTransactionId::from("t1"),
        "origin.test".try_into().unwrap(),
        MilliSecondsSinceUnixEpoch::now(),
    );
    client.send(&dest, txn).await.unwrap();

    // Signed for another destination: the peer refuses with 401 M_UNAUTHORIZED.
    server.expect_destination("someone-else.test");
    match client.send(&dest, profile_request("@a:origin.test")).await {
        Err(ClientError::Server(error)) => assert_eq!(error.status_code, 401),
        other => panic!("{other:?}"),
    }
    let seen = server.peer.seen.lock().unwrap();
    assert!(
        seen.iter()
            .any(|s| s.starts_with("PUT /_matrix/federation/v1/send/t1")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|s| s.contains("/query/profile?user_id=%40a%3Aorigin.test")),
        "{seen:?}"
    );
}

#[tokio::test]
async fn response_size_limit() {
    let server = start_server().await;
    let client = server.client(server.config(true));
    let dest = server.expect_destination(&format!("localhost:{}", server.port));
    let result = client
        .send_with_limit(&dest, profile_request("@big:origin.test"), 100_000)
        .await;
    assert!(
        matches!(result, Err(ClientError::TooLarge(100_000))),
        "{result:?}"
    );
    let response = client
        .send_with_limit(&dest, profile_request("@big:origin.test"), 300_000)
        .await
        .unwrap();
    assert_eq!(
        response.get("displayname").unwrap().as_str().unwrap().len(),
        200_000
    );
}

#[tokio::test]
async fn certificates_are_verified_unless_switched_off() {
    let server = start_server().await;
    let dest = server.expect_destination(&format!("localhost:{}", server.port));
    let mut config = server.config(true);
    config.verify_certificates = true;
    let strict = server.client(config.clone());
    let result = strict.send(&dest, profile_request("@a:origin.test")).await;
    assert!(matches!(result, Err(ClientError::Http(_))), "{result:?}");

    config.extra_root_certificates = vec![server.cert_der.clone()];
    let trusting = server.client(config);
    trusting
        .send(&dest, profile_request("@a:origin.test"))
        .await
        .unwrap();
}

/// DNS for `srv.test`: no well-known host, an SRV record to `target.test`,
/// which is loopback.
struct SrvDns(u16);

impl Dns for SrvDns {
    fn lookup_srv<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Result<Vec<SrvRecord>, BoxError>> {
        let records = if name == "_matrix-fed._tcp.srv.test" {
            vec![SrvRecord {
                priority: 0,
                weight: 0,
                port: self.0,
                target: "target.test".to_owned(),
            }]
        } else {
            Vec::new()
        };
        Box::pin(async move { Ok(records) })
    }

    fn lookup_ip<'a>(&'a self, host: &'a str) -> BoxFuture<'a, Result<Vec<IpAddr>, BoxError>> {
        let ips = if host == "target.test" {
            vec![IpAddr::from([127, 0, 0, 1])]
        } else {
            Vec::new()
        };
        Box::pin(async move { Ok(ips) })
    }
}

#[tokio::test]
async fn srv_target_gets_the_names_certificate_and_host() {
    let server = start_server().await;
    let mut config = server.config(true);
    config.verify_certificates = true;
    config.extra_root_certificates = vec![server.cert_der.clone()];
    let dns = Arc::new(SrvDns(server.port));
    let client =
        FederationClient::with_dns(config, server.client_key.clone(), dns.clone()).unwrap();
    let dest = server.expect_destination("srv.test");
    let response = client
        .send(&dest, profile_request("@a:origin.test"))
        .await
        .unwrap();
    assert_eq!(response.get("displayname").unwrap(), "srv.test");

    // The same target is refused when private ranges are not allowed.
    let client =
        FederationClient::with_dns(server.config(false), server.client_key.clone(), dns).unwrap();
    let result = client.send(&dest, profile_request("@a:origin.test")).await;
    assert!(matches!(result, Err(ClientError::Refused(_))), "{result:?}");
}

#[tokio::test]
async fn well_known_fetch_reads_status_and_refuses_plain_http() {
    let server = start_server().await;
    let fetcher = HttpWellKnown::new(&server.config(true), Arc::new(SrvDns(0))).unwrap();
    // The test server answers 401 to anything without X-Matrix: a non-200
    // answer, which discovery treats as "no delegation".
    let url = format!(
        "https://127.0.0.1:{}/.well-known/matrix/server",
        server.port
    );
    let response = fetcher.fetch_url(&url).await.unwrap();
    assert_eq!(response.status, 401);
    assert!(fetcher.fetch_url("http://127.0.0.1:1/").await.is_err());

    // Redirects are followed, but not in loops or without end.
    let base = format!("https://127.0.0.1:{}", server.port);
    let response = fetcher
        .fetch_url(&format!("{base}/redirect/3"))
        .await
        .unwrap();
    assert_eq!(response.status, 401);
    assert!(server
        .peer
        .seen
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.starts_with("GET /final")));
    assert!(fetcher
        .fetch_url(&format!("{base}/redirect/loop"))
        .await
        .is_err());
    assert!(fetcher
        .fetch_url(&format!("{base}/redirect/12"))
        .await
        .is_err());
}

#[tokio::test]
async fn key_fetcher_over_the_client() {
    use crate::keys::{KeyFetcher, KeyUse, MemoryKeyCache};
    let server = start_server().await;
    let client = Arc::new(server.client(server.config(true)));
    let local = SigningKey::generate().unwrap();
    let fetcher = KeyFetcher::new(
        MemoryKeyCache::default(),
        client,
        "origin.test".try_into().unwrap(),
        local.public_key_set(),
    );
    let dest = server.expect_destination(&format!("localhost:{}", server.port));
    let key_ids = [server.peer.server_key.key_id().to_owned()];
    let keys = fetcher
        .keys_for(&dest, &key_ids, KeyUse::Request)
        .await
        .unwrap();
    assert_eq!(keys, server.peer.server_key.public_key_set());
    let seen = server.peer.seen.lock().unwrap();
    assert!(
        seen.iter()
            .any(|s| s.starts_with("GET /_matrix/key/v2/server")),
        "{seen:?}"
    );
}
