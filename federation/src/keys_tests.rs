//! Unit tests of key fetching with a fake key server.

use std::sync::atomic::{AtomicUsize, Ordering};

use ruma::{server_name, OwnedServerSigningKeyId};
use serde_json::json;

use super::*;
use crate::{finalize_pdu, to_canonical_object, SigningKey};

const DAY: u64 = 24 * 3600 * 1000;

fn now_ms() -> u64 {
    u64::from(MilliSecondsSinceUnixEpoch::now().get())
}

fn ts(ms: u64) -> MilliSecondsSinceUnixEpoch {
    MilliSecondsSinceUnixEpoch(UInt::new(ms).unwrap())
}

/// A `/_matrix/key/v2/server` document for `server`, self-signed.
fn key_doc(
    server: &str,
    key: &SigningKey,
    old: Option<(&SigningKey, u64)>,
    valid_until: u64,
) -> CanonicalJsonObject {
    let mut old_keys = serde_json::Map::new();
    if let Some((old, expired)) = old {
        old_keys.insert(
            old.key_id().to_owned(),
            json!({"key": old.public_key_base64(), "expired_ts": expired}),
        );
    }
    let doc = json!({
        "server_name": server,
        "verify_keys": {key.key_id(): {"key": key.public_key_base64()}},
        "old_verify_keys": old_keys,
        "valid_until_ts": valid_until,
    });
    key.sign_value(server, &doc).unwrap()
}

fn raw(object: &CanonicalJsonObject) -> Raw<ServerSigningKeys> {
    Raw::from_json_string(serde_json::to_string(object).unwrap()).unwrap()
}

#[derive(Default)]
struct FakeKeyServer {
    direct: Mutex<HashMap<String, CanonicalJsonObject>>,
    notary: Mutex<HashMap<String, Vec<CanonicalJsonObject>>>,
    direct_calls: AtomicUsize,
    notary_calls: AtomicUsize,
}

impl FakeKeyServer {
    fn serve(&self, server: &str, doc: CanonicalJsonObject) {
        self.direct.lock().unwrap().insert(server.to_owned(), doc);
    }
}

impl KeyServer for FakeKeyServer {
    async fn server_keys(&self, server: &ServerName) -> Result<Raw<ServerSigningKeys>, BoxError> {
        self.direct_calls.fetch_add(1, Ordering::SeqCst);
        let direct = self.direct.lock().unwrap();
        direct
            .get(server.as_str())
            .map(raw)
            .ok_or_else(|| "unreachable".into())
    }

    async fn notary_query(
        &self,
        notary: &ServerName,
        request: batch::Request,
    ) -> Result<Vec<Raw<ServerSigningKeys>>, BoxError> {
        self.notary_calls.fetch_add(1, Ordering::SeqCst);
        let wanted = request.server_keys.keys().next().unwrap().to_string();
        let criteria = &request.server_keys[wanted.as_str()];
        assert!(criteria
            .values()
            .all(|c| c.minimum_valid_until_ts.is_some()));
        let answers = self.notary.lock().unwrap();
        let key = format!("{notary}/{wanted}");
        Ok(answers
            .get(&key)
            .map(|docs| docs.iter().map(raw).collect())
            .unwrap_or_default())
    }
}

struct Setup {
    local: SigningKey,
    remote: SigningKey,
    fetcher: KeyFetcher<MemoryKeyCache, Arc<FakeKeyServer>>,
    server: Arc<FakeKeyServer>,
}

fn setup() -> Setup {
    let local = SigningKey::generate().unwrap();
    let remote = SigningKey::generate().unwrap();
    let server = Arc::new(FakeKeyServer::default());
    let fetcher = KeyFetcher::new(
        MemoryKeyCache::default(),
        server.clone(),
        "local.test".try_into().unwrap(),
        local.public_key_set(),
    )
    .with_refetch_interval(Duration::ZERO);
    Setup {
        local,
        remote,
        fetcher,
        server,
    }
}

fn ids(key: &SigningKey) -> Vec<String> {
    vec![key.key_id().to_owned()]
}

#[tokio::test]
async fn direct_fetch_is_checked_cached_and_capped() {
    let s = setup();
    let remote = server_name!("remote.test");
    s.server.serve(
        "remote.test",
        key_doc("remote.test", &s.remote, None, now_ms() + 30 * DAY),
    );
    let keys = s
        .fetcher
        .keys_for(remote, &ids(&s.remote), KeyUse::Request)
        .await
        .unwrap();
    assert_eq!(keys, s.remote.public_key_set());
    s.fetcher
        .keys_for(remote, &ids(&s.remote), KeyUse::Request)
        .await
        .unwrap();
    assert_eq!(s.server.direct_calls.load(Ordering::SeqCst), 1);

    let cached = s.fetcher.cache().get(remote).await.unwrap();
    let until = u64::from(cached[s.remote.key_id()].valid_until_ts.get());
    assert!(until <= now_ms() + 7 * DAY && until > now_ms() + 7 * DAY - 60_000);

    // An event signed 8 days from now is past the cap: a fresh fetch is
    // tried, and still gives only 7 days.
    let later = KeyUse::Signed {
        ts: ts(now_ms() + 8 * DAY),
        enforce_validity: true,
    };
    assert!(s
        .fetcher
        .keys_for(remote, &ids(&s.remote), later)
        .await
        .is_err());
    assert_eq!(s.server.direct_calls.load(Ordering::SeqCst), 2);

    // Our own keys never touch the network.
    let local = server_name!("local.test");
    let keys = s
        .fetcher
        .keys_for(local, &ids(&s.local), KeyUse::Request)
        .await
        .unwrap();
    assert_eq!(keys, s.local.public_key_set());
    assert_eq!(s.server.direct_calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn bad_key_documents_are_refused() {
    let s = setup();
    let other = SigningKey::generate().unwrap();
    // Names another server.
    s.server
        .serve("a.test", key_doc("b.test", &s.remote, None, now_ms() + DAY));
    // Signed by a key it does not list.
    let mut doc = key_doc("c.test", &s.remote, None, now_ms() + DAY);
    doc.remove("signatures");
    other.sign_json("c.test", &mut doc).unwrap();
    s.server.serve("c.test", doc);
    // Tampered after signing.
    let mut doc = key_doc("d.test", &s.remote, None, now_ms() + DAY);
    doc.insert(
        "valid_until_ts".into(),
        CanonicalJsonValue::Integer((1u32 << 31).into()),
    );
    s.server.serve("d.test", doc);
    for server in ["a.test", "c.test", "d.test", "unreachable.test"] {
        let server = <&ServerName>::try_from(server).unwrap();
        let result = s
            .fetcher
            .keys_for(server, &ids(&s.remote), KeyUse::Request)
            .await;
        assert!(
            matches!(result, Err(KeyFetchError::NotFound { .. })),
            "{server}: {result:?}"
        );
        assert!(s.fetcher.cache().get(server).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn old_keys_verify_earlier_events_only() {
    let s = setup();
    let old = SigningKey::generate().unwrap();
    let expired = now_ms() - DAY;
    s.server.serve(
        "remote.test",
        key_doc(
            "remote.test",
            &s.remote,
            Some((&old, expired)),
            now_ms() + DAY,
        ),
    );
    let remote = server_name!("remote.test");
    let signed_at = |ms, enforce_validity| KeyUse::Signed {
        ts: ts(ms),
        enforce_validity,
    };
    let before = signed_at(expired - DAY, true);
    assert_eq!(
        s.fetcher
            .keys_for(remote, &ids(&old), before)
            .await
            .unwrap(),
        old.public_key_set()
    );
    assert!(s
        .fetcher
        .keys_for(remote, &ids(&old), signed_at(expired + 1, true))
        .await
        .is_err());
    // Room versions 1–4 ignore validity.
    s.fetcher
        .keys_for(remote, &ids(&old), signed_at(expired + 1, false))
        .await
        .unwrap();
    // Never for requests.
    assert!(s
        .fetcher
        .keys_for(remote, &ids(&old), KeyUse::Request)
        .await
        .is_err());
}

#[tokio::test]
async fn notary_fallback_needs_both_signatures() {
    let s = setup();
    let notary_key = SigningKey::generate().unwrap();
    let doc = key_doc("remote.test", &s.remote, None, now_ms() + DAY);
    let mut cosigned = doc.clone();
    notary_key.sign_json("notary.test", &mut cosigned).unwrap();
    s.server.notary.lock().unwrap().insert(
        "notary.test/remote.test".to_owned(),
        vec![doc.clone()], // the notary's signature is missing
    );
    let notary = Notary {
        server_name: "notary.test".try_into().unwrap(),
        verify_keys: Some(notary_key.public_key_set()),
    };
    let fetcher = KeyFetcher::new(
        MemoryKeyCache::default(),
        s.server.clone(),
        "local.test".try_into().unwrap(),
        s.local.public_key_set(),
    )
    .with_refetch_interval(Duration::ZERO)
    .with_notaries(vec![notary.clone()]);
    let remote = server_name!("remote.test");
    assert!(fetcher
        .keys_for(remote, &ids(&s.remote), KeyUse::Request)
        .await
        .is_err());

    s.server
        .notary
        .lock()
        .unwrap()
        .insert("notary.test/remote.test".to_owned(), vec![cosigned]);
    let keys = fetcher
        .keys_for(remote, &ids(&s.remote), KeyUse::Request)
        .await
        .unwrap();
    assert_eq!(keys, s.remote.public_key_set());
    assert_eq!(s.server.notary_calls.load(Ordering::SeqCst), 2);

    // A notary without configured keys has its own keys fetched directly.
    let unconfigured = KeyFetcher::new(
        MemoryKeyCache::default(),
        s.server.clone(),
        "local.test".try_into().unwrap(),
        s.local.public_key_set(),
    )
    .with_notaries(vec![Notary {
        verify_keys: None,
        ..notary
    }]);
    s.server.serve(
        "notary.test",
        key_doc("notary.test", &notary_key, None, now_ms() + DAY),
    );
    unconfigured
        .keys_for(remote, &ids(&s.remote), KeyUse::Request)
        .await
        .unwrap();
}

#[tokio::test]
async fn unknown_keys_are_not_refetched_within_the_interval() {
    let s = setup();
    let fetcher = KeyFetcher::new(
        MemoryKeyCache::default(),
        s.server.clone(),
        "local.test".try_into().unwrap(),
        s.local.public_key_set(),
    );
    s.server.serve(
        "remote.test",
        key_doc("remote.test", &s.remote, None, now_ms() + DAY),
    );
    let remote = server_name!("remote.test");
    let unknown = vec!["ed25519:nope".to_owned()];
    for _ in 0..3 {
        assert!(fetcher
            .keys_for(remote, &unknown, KeyUse::Request)
            .await
            .is_err());
    }
    assert_eq!(s.server.direct_calls.load(Ordering::SeqCst), 1);
    // The fetch that happened cached the real key.
    fetcher
        .keys_for(remote, &ids(&s.remote), KeyUse::Request)
        .await
        .unwrap();
    assert_eq!(s.server.direct_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn verifies_pdus_with_fetched_keys_per_room_version() {
    let s = setup();
    let origin_ts = now_ms() - 2 * DAY;
    let make_pdu = |rules: &RoomVersionRules| {
        let mut pdu = to_canonical_object(&json!({
            "room_id": "!room:remote.test", "sender": "@bob:remote.test",
            "type": "m.room.message", "content": {"body": "hi"},
            "origin_server_ts": origin_ts, "prev_events": ["$p"],
            "auth_events": ["$a"], "depth": 3,
        }))
        .unwrap();
        finalize_pdu(&s.remote, "remote.test", rules, &mut pdu).unwrap();
        pdu
    };
    // The key's validity ended before the event was made.
    s.server.serve(
        "remote.test",
        key_doc("remote.test", &s.remote, None, origin_ts - DAY),
    );
    let v11 = RoomVersionRules::V11;
    assert!(matches!(
        s.fetcher.verify_pdu(&make_pdu(&v11), &v11).await,
        Err(KeyFetchError::NotFound { .. })
    ));
    let v4 = RoomVersionRules::V4;
    assert_eq!(
        s.fetcher.verify_pdu(&make_pdu(&v4), &v4).await.unwrap(),
        PduCheck::Valid
    );

    // With a valid key, a PDU verifies and a tampered one does not.
    s.server.serve(
        "remote.test",
        key_doc("remote.test", &s.remote, None, now_ms() + DAY),
    );
    let pdu = make_pdu(&v11);
    assert_eq!(
        s.fetcher.verify_pdu(&pdu, &v11).await.unwrap(),
        PduCheck::Valid
    );
    let mut tampered = pdu.clone();
    tampered.insert("depth".into(), CanonicalJsonValue::Integer(9u8.into()));
    assert!(matches!(
        s.fetcher.verify_pdu(&tampered, &v11).await,
        Err(KeyFetchError::Pdu(PduError::Signature(_)))
    ));

    // Signed JSON in general.
    let object = s
        .remote
        .sign_value("remote.test", &json!({"a": 1}))
        .unwrap();
    let usage = KeyUse::Signed {
        ts: ts(now_ms()),
        enforce_validity: true,
    };
    s.fetcher
        .verify_json(server_name!("remote.test"), &object, usage)
        .await
        .unwrap();
    assert!(matches!(
        s.fetcher
            .verify_json(server_name!("other.test"), &object, usage)
            .await,
        Err(KeyFetchError::Unsigned(_))
    ));
    let mut unsigned = pdu.clone();
    unsigned.remove("signatures");
    unsigned.insert(
        "signatures".into(),
        CanonicalJsonValue::Object(Default::default()),
    );
    assert!(matches!(
        s.fetcher.verify_pdu(&unsigned, &v11).await,
        Err(KeyFetchError::Unsigned(_))
    ));
}

#[tokio::test]
async fn verifies_x_matrix_requests() {
    let s = setup();
    s.server.serve(
        "remote.test",
        key_doc("remote.test", &s.remote, None, now_ms() + DAY),
    );
    let mut request = http::Request::builder()
        .method("GET")
        .uri("/_matrix/federation/v1/version")
        .body(Vec::new())
        .unwrap();
    let (origin, ours) = (server_name!("remote.test"), server_name!("local.test"));
    xmatrix::sign_request(&s.remote, origin, ours, &mut request).unwrap();
    let auth = s.fetcher.verify_request(&request, ours).await.unwrap();
    assert_eq!(auth.origin, origin);
    let key_id: OwnedServerSigningKeyId = s.remote.key_id().try_into().unwrap();
    assert_eq!(auth.key, key_id);

    // Signed by a key the origin does not publish.
    let rogue = SigningKey::generate().unwrap();
    xmatrix::sign_request(&rogue, origin, ours, &mut request).unwrap();
    assert!(matches!(
        s.fetcher.verify_request(&request, ours).await,
        Err(KeyFetchError::NotFound { .. })
    ));
}
