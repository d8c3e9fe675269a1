//! End-to-end encryption key directory over raw HTTP (Client-Server API
//! "End-to-End Encryption"): `/keys/upload`, `/keys/query`, `/keys/claim`,
//! `/keys/changes`, `/sync`'s device lists and key counts, cross-signing
//! uploads, and server-side key backups.

#[path = "support/olm_device.rs"]
mod olm_device;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use olm_device::OlmDevice;
use spec_tests::{assert_error, assert_ok, enc, json, HttpClient, Session, TestServer, Value};

const PW: &str = "e2ee-keys-pw";

async fn sync(server: &TestServer, who: &Session, since: Option<&str>) -> Value {
    let mut path = "/_matrix/client/v3/sync?timeout=0".to_owned();
    if let Some(since) = since {
        path.push_str(&format!("&since={}", enc(since)));
    }
    assert_ok(server.get(&path, who.token()).await)
}

fn next_batch(sync: &Value) -> String {
    sync["next_batch"].as_str().expect("next_batch").to_owned()
}

fn users(list: &Value) -> Vec<String> {
    let mut users: Vec<String> = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(str::to_owned))
        .collect();
    users.sort();
    users
}

async fn upload(
    server: &TestServer,
    device: &OlmDevice,
    body: Value,
) -> (spec_tests::StatusCode, Value) {
    server
        .post(
            "/_matrix/client/v3/keys/upload",
            device.session.token(),
            body,
        )
        .await
}

async fn claim(server: &HttpClient, who: &Session, target: &OlmDevice) -> Value {
    let body =
        json!({ "one_time_keys": { target.user(): { target.device(): "signed_curve25519" } } });
    let claimed = assert_ok(
        server
            .post("/_matrix/client/v3/keys/claim", who.token(), body)
            .await,
    );
    claimed["one_time_keys"][target.user()][target.device()].clone()
}

#[tokio::test]
async fn upload_query_claim_changes_and_fallback_after_exhaustion() {
    let server = TestServer::start().await;
    let mut alice = OlmDevice::new(server.register("alice", PW).await);
    let bob = server.register("bob", PW).await;
    let room = server
        .create_room(&alice.session, json!({"preset": "public_chat"}))
        .await;
    server.join_room(&bob, &room).await;
    let t0 = next_batch(&sync(&server, &bob, None).await);

    // No token, no keys.
    let anonymous = server
        .post("/_matrix/client/v3/keys/upload", None, json!({}))
        .await;
    assert_error(&anonymous, 401, "M_MISSING_TOKEN");
    // A forged signature, and keys of another device, are refused.
    let mut forged = alice.device_keys();
    forged["algorithms"] = json!(["m.megolm.v1.aes-sha2"]);
    let refused = upload(&server, &alice, json!({ "device_keys": forged })).await;
    assert_error(&refused, 400, "M_INVALID_SIGNATURE");
    let mut elsewhere = alice.device_keys();
    elsewhere["device_id"] = json!("OTHERDEVICE");
    let refused = upload(&server, &alice, json!({ "device_keys": elsewhere })).await;
    assert_error(&refused, 400, "M_INVALID_PARAM");

    // A long-poll of bob's, waiting, is woken by alice's keys.
    let waiting = {
        let (client, bob, t0) = (HttpClient::new(server.base_url()), bob.clone(), t0.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let path = format!("/_matrix/client/v3/sync?timeout=20000&since={}", enc(&t0));
            (
                assert_ok(client.get(&path, bob.token()).await),
                started.elapsed(),
            )
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let otks = alice.one_time_keys(3);
    let fallback = alice.fallback_key();
    let body = json!({ "device_keys": alice.device_keys(), "one_time_keys": otks, "fallback_keys": fallback });
    let counts = assert_ok(upload(&server, &alice, body).await);
    assert_eq!(counts["one_time_key_counts"]["signed_curve25519"], 3);
    let (woken, waited) = waiting.await.unwrap();
    assert!(waited < Duration::from_secs(10), "woken after {waited:?}");
    assert_eq!(
        users(&woken["device_lists"]["changed"]),
        [alice.user().to_owned()]
    );

    // Reported once, and /keys/changes agrees.
    let t1 = next_batch(&woken);
    let again = sync(&server, &bob, Some(&t1)).await;
    assert!(again["device_lists"]["changed"].is_null(), "{again}");
    let path = format!(
        "/_matrix/client/v3/keys/changes?from={}&to={}",
        enc(&t0),
        enc(&t1)
    );
    let changes = assert_ok(server.get(&path, bob.token()).await);
    assert_eq!(users(&changes["changed"]), [alice.user().to_owned()]);
    let bad = server
        .get(
            "/_matrix/client/v3/keys/changes?from=nope&to=s1",
            bob.token(),
        )
        .await;
    assert_error(&bad, 400, "M_INVALID_PARAM");

    // Bob sees alice's device, with her key as uploaded.
    let body = json!({ "device_keys": { alice.user(): [] } });
    let query = assert_ok(
        server
            .post("/_matrix/client/v3/keys/query", bob.token(), body)
            .await,
    );
    let keys = &query["device_keys"][alice.user()][alice.device()];
    assert_eq!(
        keys["keys"][format!("ed25519:{}", alice.device())],
        alice.ed25519()
    );
    assert!(keys["signatures"][alice.user()].is_object());
    // A remote user is a failure (no federation yet), not an error.
    let body = json!({ "device_keys": { "@carol:remote.example": [] } });
    let query = assert_ok(
        server
            .post("/_matrix/client/v3/keys/query", bob.token(), body)
            .await,
    );
    assert!(query["failures"]["remote.example"].is_object(), "{query}");

    // Alice's sync: three keys, an unused fallback key.
    let own = sync(&server, &alice.session, None).await;
    assert_eq!(own["device_one_time_keys_count"]["signed_curve25519"], 3);
    assert_eq!(
        own["device_unused_fallback_key_types"],
        json!(["signed_curve25519"])
    );

    // Three claims get the three one-time keys, then the fallback key.
    let mut claimed = BTreeSet::new();
    for _ in 0..3 {
        let key = claim(&server, &bob, &alice).await;
        let (id, _) = key.as_object().unwrap().iter().next().unwrap();
        assert!(otks.get(id).is_some(), "{id} is one of the uploaded keys");
        claimed.insert(id.clone());
    }
    assert_eq!(claimed.len(), 3);
    let fallback_id = fallback.as_object().unwrap().keys().next().unwrap().clone();
    for _ in 0..2 {
        let key = claim(&server, &bob, &alice).await;
        assert_eq!(key[&fallback_id]["fallback"], true, "{key}");
    }
    let own = sync(&server, &alice.session, None).await;
    assert_eq!(own["device_one_time_keys_count"]["signed_curve25519"], 0);
    assert_eq!(own["device_unused_fallback_key_types"], json!([]));

    // Bob leaves the only room they shared: alice's sync reports him as left.
    let t2 = next_batch(&own);
    assert_ok(
        server
            .post(
                &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
                bob.token(),
                json!({}),
            )
            .await,
    );
    let after = sync(&server, &alice.session, Some(&t2)).await;
    assert_eq!(
        users(&after["device_lists"]["left"]),
        std::slice::from_ref(&bob.user_id)
    );
}

#[tokio::test]
async fn concurrent_claims_never_hand_out_the_same_key() {
    let server = TestServer::start().await;
    let mut alice = OlmDevice::new(server.register("alice", PW).await);
    let bob = server.register("bob", PW).await;
    let otks = alice.one_time_keys(20);
    let fallback = alice.fallback_key();
    let body = json!({ "device_keys": alice.device_keys(), "one_time_keys": otks, "fallback_keys": fallback });
    assert_ok(upload(&server, &alice, body).await);

    let target = std::sync::Arc::new(alice);
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let (client, bob, target) = (
                HttpClient::new(server.base_url()),
                bob.clone(),
                target.clone(),
            );
            tokio::spawn(async move { claim(&client, &bob, &target).await })
        })
        .collect();
    let mut one_time = Vec::new();
    let mut fallbacks = 0;
    for task in tasks {
        let key = task.await.unwrap();
        let (id, value) = key.as_object().unwrap().iter().next().unwrap();
        if value["fallback"] == true {
            fallbacks += 1;
        } else {
            one_time.push(id.clone());
        }
    }
    let distinct: BTreeSet<_> = one_time.iter().collect();
    assert_eq!(
        one_time.len(),
        20,
        "every one-time key handed out: {one_time:?}"
    );
    assert_eq!(distinct.len(), 20, "none twice: {one_time:?}");
    assert_eq!(fallbacks, 10);
}

#[tokio::test]
async fn deleting_a_device_removes_its_keys_and_is_a_change() {
    let server = TestServer::start().await;
    let mut alice = OlmDevice::new(server.register("alice", PW).await);
    let bob = server.register("bob", PW).await;
    let room = server
        .create_room(&alice.session, json!({"preset": "public_chat"}))
        .await;
    server.join_room(&bob, &room).await;
    let body =
        json!({ "device_keys": alice.device_keys(), "one_time_keys": alice.one_time_keys(2) });
    assert_ok(upload(&server, &alice, body).await);
    // Her second device deletes the first.
    let second = server.login(alice.user(), PW).await;
    let t0 = next_batch(&sync(&server, &bob, None).await);
    let path = format!("/_matrix/client/v3/devices/{}", enc(alice.device()));
    assert_ok(
        server
            .uia_password(spec_tests::Method::DELETE, &path, &second, json!({}), PW)
            .await,
    );

    let body = json!({ "device_keys": { alice.user(): [] } });
    let query = assert_ok(
        server
            .post("/_matrix/client/v3/keys/query", bob.token(), body)
            .await,
    );
    assert_eq!(query["device_keys"][alice.user()], json!({}));
    assert_eq!(claim(&server, &bob, &alice).await, Value::Null);
    let after = sync(&server, &bob, Some(&t0)).await;
    assert_eq!(
        users(&after["device_lists"]["changed"]),
        [alice.user().to_owned()]
    );
}

#[tokio::test]
async fn renaming_a_device_with_keys_is_a_change() {
    let server = TestServer::start().await;
    let alice = OlmDevice::new(server.register("alice", PW).await);
    let bob = server.register("bob", PW).await;
    let room = server
        .create_room(&alice.session, json!({"preset": "public_chat"}))
        .await;
    server.join_room(&bob, &room).await;
    assert_ok(
        upload(
            &server,
            &alice,
            json!({ "device_keys": alice.device_keys() }),
        )
        .await,
    );
    let t0 = next_batch(&sync(&server, &bob, None).await);
    let path = format!("/_matrix/client/v3/devices/{}", enc(alice.device()));
    assert_ok(
        server
            .put(
                &path,
                alice.session.token(),
                json!({"display_name": "Laptop"}),
            )
            .await,
    );
    let after = sync(&server, &bob, Some(&t0)).await;
    assert_eq!(
        users(&after["device_lists"]["changed"]),
        [alice.user().to_owned()]
    );
    let body = json!({ "device_keys": { alice.user(): [] } });
    let query = assert_ok(
        server
            .post("/_matrix/client/v3/keys/query", bob.token(), body)
            .await,
    );
    assert_eq!(
        query["device_keys"][alice.user()][alice.device()]["unsigned"]["device_display_name"],
        "Laptop"
    );
}

#[tokio::test]
async fn cross_signing_upload_needs_auth_only_to_replace() {
    let server = TestServer::start().await;
    let alice = OlmDevice::new(server.register("alice", PW).await);
    let master = OlmDevice::new(alice.session.clone());
    let master_key = |device: &OlmDevice| {
        json!({
            "user_id": device.user(),
            "usage": ["master"],
            "keys": { format!("ed25519:{}", device.ed25519()): device.ed25519() },
        })
    };
    let path = "/_matrix/client/v3/keys/device_signing/upload";
    let first = json!({ "master_key": master_key(&master) });
    assert_ok(
        server
            .post(path, alice.session.token(), first.clone())
            .await,
    );
    // The same keys again: still no auth (an idempotent retry).
    assert_ok(server.post(path, alice.session.token(), first).await);
    // A new master key: UIA, then the password.
    let other = OlmDevice::new(alice.session.clone());
    let replace = json!({ "master_key": master_key(&other) });
    let done = server
        .uia_password(spec_tests::Method::POST, path, &alice.session, replace, PW)
        .await;
    assert_ok(done);
    let body = json!({ "device_keys": { alice.user(): [] } });
    let query = assert_ok(
        server
            .post("/_matrix/client/v3/keys/query", alice.session.token(), body)
            .await,
    );
    let keys = &query["master_keys"][alice.user()]["keys"];
    assert_eq!(
        keys[format!("ed25519:{}", other.ed25519())],
        other.ed25519()
    );
    // A self-signing key not signed by the master key.
    let bad = json!({ "self_signing_key": {
        "user_id": alice.user(), "usage": ["self_signing"],
        "keys": { format!("ed25519:{}", alice.ed25519()): alice.ed25519() },
    }});
    let refused = server
        .uia_password(spec_tests::Method::POST, path, &alice.session, bad, PW)
        .await;
    assert_error(&refused, 400, "M_INVALID_SIGNATURE");
}

#[tokio::test]
async fn key_backup_versions_etag_and_count() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let token = alice.token();
    let algorithm = json!({
        "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
        "auth_data": { "public_key": "cHVibGlj", "signatures": {} },
    });
    let latest = server
        .get("/_matrix/client/v3/room_keys/version", token)
        .await;
    assert_error(&latest, 404, "M_NOT_FOUND");
    let v1 = assert_ok(
        server
            .post(
                "/_matrix/client/v3/room_keys/version",
                token,
                algorithm.clone(),
            )
            .await,
    );
    let v2 = assert_ok(
        server
            .post("/_matrix/client/v3/room_keys/version", token, algorithm)
            .await,
    );
    assert_eq!(
        (v1["version"].as_str(), v2["version"].as_str()),
        (Some("1"), Some("2"))
    );
    let latest = assert_ok(
        server
            .get("/_matrix/client/v3/room_keys/version", token)
            .await,
    );
    assert_eq!(
        (latest["version"].as_str(), latest["count"].as_u64()),
        (Some("2"), Some(0))
    );
    assert_eq!(latest["auth_data"]["public_key"], "cHVibGlj");

    let key = |index: u32, verified: bool, tag: &str| {
        json!({
            "first_message_index": index, "forwarded_count": 0, "is_verified": verified,
            "session_data": { "ephemeral": "ZQ", "ciphertext": tag, "mac": "bQ" },
        })
    };
    let room = "!room:example.org";
    let session_path = |version: &str| {
        format!(
            "/_matrix/client/v3/room_keys/keys/{}/sess1?version={version}",
            enc(room)
        )
    };
    let stale = server
        .put(&session_path("1"), token, key(3, false, "a"))
        .await;
    assert_error(&stale, 403, "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(stale.1["current_version"], "2");
    let first = assert_ok(
        server
            .put(&session_path("2"), token, key(3, false, "a"))
            .await,
    );
    assert_eq!(first["count"], 1);
    // A worse key changes nothing, etag included; a better one changes the etag.
    let worse = assert_ok(
        server
            .put(&session_path("2"), token, key(7, false, "b"))
            .await,
    );
    assert_eq!(
        (worse["count"].clone(), worse["etag"].clone()),
        (json!(1), first["etag"].clone())
    );
    let better = assert_ok(
        server
            .put(&session_path("2"), token, key(1, false, "c"))
            .await,
    );
    assert_ne!(better["etag"], first["etag"]);
    let stored = assert_ok(server.get(&session_path("2"), token).await);
    assert_eq!(stored["session_data"]["ciphertext"], "c");

    // All rooms at once; then read back per room and in full.
    let body =
        json!({ "rooms": { "!other:example.org": { "sessions": { "s2": key(0, true, "d") } } } });
    let all = assert_ok(
        server
            .put("/_matrix/client/v3/room_keys/keys?version=2", token, body)
            .await,
    );
    assert_eq!(all["count"], 2);
    let info = assert_ok(
        server
            .get("/_matrix/client/v3/room_keys/version/2", token)
            .await,
    );
    assert_eq!(
        (info["count"].clone(), info["etag"].clone()),
        (json!(2), all["etag"].clone())
    );
    let keys = assert_ok(
        server
            .get("/_matrix/client/v3/room_keys/keys?version=2", token)
            .await,
    );
    assert_eq!(keys["rooms"].as_object().unwrap().len(), 2);
    let path = format!(
        "/_matrix/client/v3/room_keys/keys/{}?version=2",
        enc("!none:example.org")
    );
    assert_eq!(
        assert_ok(server.get(&path, token).await),
        json!({"sessions": {}})
    );

    // Delete one room's keys, then the version.
    let path = format!("/_matrix/client/v3/room_keys/keys/{}?version=2", enc(room));
    let deleted = assert_ok(server.delete(&path, token, None).await);
    assert_eq!(deleted["count"], 1);
    assert_ok(
        server
            .delete("/_matrix/client/v3/room_keys/version/2", token, None)
            .await,
    );
    assert_ok(
        server
            .delete("/_matrix/client/v3/room_keys/version/2", token, None)
            .await,
    );
    let gone = server
        .get("/_matrix/client/v3/room_keys/version/2", token)
        .await;
    assert_error(&gone, 404, "M_NOT_FOUND");
    let latest = assert_ok(
        server
            .get("/_matrix/client/v3/room_keys/version", token)
            .await,
    );
    assert_eq!(latest["version"], "1");
    // Someone else's view: nothing.
    let bob = server.register("bob", PW).await;
    let theirs = server
        .get("/_matrix/client/v3/room_keys/version/1", bob.token())
        .await;
    assert_error(&theirs, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn dehydrated_devices_are_unrecognized() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let path = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device";
    let answer = server.get(path, alice.token()).await;
    assert_error(&answer, 404, "M_UNRECOGNIZED");
}
