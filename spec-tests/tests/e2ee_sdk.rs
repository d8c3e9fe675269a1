//! End-to-end encryption with real clients on one Feathur: two matrix-sdk
//! users in an encrypted room read each other's messages, and a vodozemac
//! Olm session is set up from a claimed one-time key and carries an
//! `m.room.encrypted` to-device message that the recipient decrypts.

#[path = "support/olm_device.rs"]
mod olm_device;
#[path = "support/sdk.rs"]
mod sdk;

use matrix_sdk::{
    ruma::{
        api::client::room::create_room,
        events::{
            room::{encryption::RoomEncryptionEventContent, message::RoomMessageEventContent},
            InitialStateEvent,
        },
        OwnedRoomId,
    },
    Client,
};
use olm_device::{signing_text, OlmDevice};
use sdk::{logged_in, settings, PW};
use spec_tests::{assert_ok, enc, json, TestServer, Value};
use vodozemac::{
    olm::{OlmMessage, SessionConfig},
    Curve25519PublicKey, Ed25519PublicKey, Ed25519Signature,
};

async fn await_decrypted(client: &Client, room_id: &OwnedRoomId, body: &str) -> Vec<String> {
    sdk::await_decrypted(client, room_id, body, 20).await
}

#[tokio::test]
async fn two_matrix_sdk_users_read_each_others_encrypted_messages() {
    let server = TestServer::start().await;
    let alice = logged_in(&server, "alice").await;
    let bob = logged_in(&server, "bob").await;
    // First syncs publish each device's keys.
    alice
        .sync_once(settings())
        .await
        .expect("alice's first sync");
    bob.sync_once(settings()).await.expect("bob's first sync");

    let mut request = create_room::v3::Request::new();
    request.invite = vec![bob.user_id().expect("bob's id").to_owned()];
    request.initial_state = vec![InitialStateEvent::with_empty_state_key(
        RoomEncryptionEventContent::with_recommended_defaults(),
    )
    .to_raw_any()];
    let room = alice.create_room(request).await.expect("create_room");
    let room_id = room.room_id().to_owned();
    bob.sync_once(settings())
        .await
        .expect("bob sees the invite");
    bob.get_room(&room_id)
        .expect("the invite reached bob")
        .join()
        .await
        .expect("bob joins");
    alice
        .sync_once(settings())
        .await
        .expect("alice sees bob join");
    assert!(room
        .latest_encryption_state()
        .await
        .expect("state")
        .is_encrypted());

    room.send(RoomMessageEventContent::text_plain("hello bob, secretly"))
        .await
        .expect("alice sends");
    let seen_by_bob = await_decrypted(&bob, &room_id, "hello bob, secretly").await;
    assert_eq!(seen_by_bob[0], "hello bob, secretly");

    let bob_room = bob.get_room(&room_id).expect("bob's room");
    bob_room
        .send(RoomMessageEventContent::text_plain("hi alice, secretly"))
        .await
        .expect("bob sends");
    let seen_by_alice = await_decrypted(&alice, &room_id, "hi alice, secretly").await;
    assert!(seen_by_alice.contains(&"hello bob, secretly".to_owned()));

    // The server only ever stored ciphertext.
    let reader = server.login("alice", PW).await;
    let path = format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=50",
        enc(room_id.as_str())
    );
    let page = assert_ok(server.get(&path, reader.token()).await);
    let events = page["chunk"].as_array().expect("chunk");
    let encrypted = events
        .iter()
        .filter(|e| e["type"] == "m.room.encrypted")
        .count();
    assert_eq!(encrypted, 2, "{page}");
    assert!(!page.to_string().contains("secretly"));
}

#[tokio::test]
async fn olm_to_device_message_from_a_claimed_one_time_key() {
    let server = TestServer::start().await;
    let alice = OlmDevice::new(server.register("alice", PW).await);
    let mut bob = OlmDevice::new(server.register("bob", PW).await);
    let body = json!({ "device_keys": bob.device_keys(), "one_time_keys": bob.one_time_keys(5) });
    let uploaded = assert_ok(
        server
            .post("/_matrix/client/v3/keys/upload", bob.session.token(), body)
            .await,
    );
    assert_eq!(uploaded["one_time_key_counts"]["signed_curve25519"], 5);
    let first = assert_ok(
        server
            .get("/_matrix/client/v3/sync?timeout=0", bob.session.token())
            .await,
    );
    let since = first["next_batch"].as_str().expect("next_batch").to_owned();

    // Alice looks bob's device up and checks its self-signature.
    let query = json!({ "device_keys": { bob.user(): [bob.device()] } });
    let keys = assert_ok(
        server
            .post(
                "/_matrix/client/v3/keys/query",
                alice.session.token(),
                query,
            )
            .await,
    );
    let device = &keys["device_keys"][bob.user()][bob.device()];
    let ed25519 = Ed25519PublicKey::from_base64(
        device["keys"][format!("ed25519:{}", bob.device())]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let curve25519 = Curve25519PublicKey::from_base64(
        device["keys"][format!("curve25519:{}", bob.device())]
            .as_str()
            .unwrap(),
    )
    .unwrap();
    let verify = |object: &Value| {
        let signature = object["signatures"][bob.user()][format!("ed25519:{}", bob.device())]
            .as_str()
            .unwrap();
        ed25519
            .verify(
                signing_text(object).as_bytes(),
                &Ed25519Signature::from_base64(signature).unwrap(),
            )
            .expect("signed by bob's device");
    };
    verify(device);

    // She claims one of his one-time keys, checks it, and opens a session.
    let claim = json!({ "one_time_keys": { bob.user(): { bob.device(): "signed_curve25519" } } });
    let claimed = assert_ok(
        server
            .post(
                "/_matrix/client/v3/keys/claim",
                alice.session.token(),
                claim,
            )
            .await,
    );
    let (_, one_time_key) = claimed["one_time_keys"][bob.user()][bob.device()]
        .as_object()
        .and_then(|keys| keys.iter().next())
        .map(|(id, key)| (id.clone(), key.clone()))
        .expect("a one-time key was claimed");
    verify(&one_time_key);
    let one_time_key =
        Curve25519PublicKey::from_base64(one_time_key["key"].as_str().unwrap()).unwrap();
    let mut session = alice
        .account
        .create_outbound_session(SessionConfig::version_1(), curve25519, one_time_key)
        .expect("outbound session");
    let payload = json!({
        "type": "org.example.secret",
        "content": { "body": "only bob can read this" },
        "sender": alice.user(),
        "sender_device": alice.device(),
        "keys": { "ed25519": alice.ed25519() },
        "recipient": bob.user(),
        "recipient_keys": { "ed25519": bob.ed25519() },
    });
    let message = session.encrypt(payload.to_string()).expect("encrypt");
    let content = json!({
        "algorithm": "m.olm.v1.curve25519-aes-sha2",
        "sender_key": alice.curve25519(),
        "ciphertext": { bob.curve25519(): serde_json::to_value(&message).unwrap() },
    });
    let path = "/_matrix/client/v3/sendToDevice/m.room.encrypted/olm-1";
    let messages = json!({ "messages": { bob.user(): { bob.device(): content } } });
    assert_ok(server.put(path, alice.session.token(), messages).await);

    // Bob's sync carries it; his one-time key count went down by one.
    let path = format!("/_matrix/client/v3/sync?timeout=0&since={}", enc(&since));
    let synced = assert_ok(server.get(&path, bob.session.token()).await);
    assert_eq!(synced["device_one_time_keys_count"]["signed_curve25519"], 4);
    let event = synced["to_device"]["events"]
        .as_array()
        .and_then(|events| events.iter().find(|e| e["type"] == "m.room.encrypted"))
        .expect("the encrypted to-device event")
        .clone();
    assert_eq!(event["sender"], alice.user());
    let sender_key =
        Curve25519PublicKey::from_base64(event["content"]["sender_key"].as_str().unwrap()).unwrap();
    let ciphertext: OlmMessage =
        serde_json::from_value(event["content"]["ciphertext"][bob.curve25519()].clone())
            .expect("an Olm message");
    let OlmMessage::PreKey(pre_key) = ciphertext else {
        panic!("the first message of a session is a pre-key message");
    };
    let inbound = bob
        .account
        .create_inbound_session(SessionConfig::version_1(), sender_key, &pre_key)
        .expect("bob's inbound session from his one-time key");
    let plaintext: Value = serde_json::from_slice(&inbound.plaintext).expect("JSON plaintext");
    assert_eq!(plaintext, payload);
}
