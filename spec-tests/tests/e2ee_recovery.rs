//! Cross-signing and key backup with a real client (matrix-sdk, vodozemac
//! inside) on Feathur: recovery set up on a first device bootstraps
//! cross-signing, secret storage and a key backup; a second device of the
//! same user recovers with the recovery key and reads encrypted history
//! from before it existed, through the backup.

#[path = "support/sdk.rs"]
mod sdk;

use matrix_sdk::ruma::{
    api::client::room::create_room,
    events::{
        room::{encryption::RoomEncryptionEventContent, message::RoomMessageEventContent},
        InitialStateEvent,
    },
};
use sdk::{decrypted_bodies, log_in, logged_in, settings, PW};
use spec_tests::{assert_ok, TestServer};

#[tokio::test]
async fn a_second_device_recovers_and_reads_history_through_the_key_backup() {
    let server = TestServer::start().await;
    let first = logged_in(&server, "alice").await;
    first.sync_once(settings()).await.expect("first sync");
    // A first upload of cross-signing keys needs no password.
    first
        .encryption()
        .bootstrap_cross_signing(None)
        .await
        .expect("bootstrapping cross-signing");
    let recovery_key = first
        .encryption()
        .recovery()
        .enable()
        .await
        .expect("enabling recovery (cross-signing, secret storage, backup)");

    // Cross-signing is set up and the first device is signed by it (the
    // client learns of its signed keys through device_lists in /sync).
    let mut signed = false;
    for _ in 0..20 {
        first.sync_once(settings()).await.expect("sync");
        let own = first
            .encryption()
            .get_own_device()
            .await
            .expect("own device")
            .expect("own device known");
        if own.is_cross_signed_by_owner() {
            signed = true;
            break;
        }
    }
    assert!(signed, "the device never showed as cross-signed");
    let alice = first.user_id().unwrap().to_owned();
    let keys = assert_ok(
        server
            .post(
                "/_matrix/client/v3/keys/query",
                Some(&server.login("alice", PW).await.access_token),
                serde_json::json!({"device_keys": {alice.as_str(): []}}),
            )
            .await,
    );
    assert!(keys["master_keys"][alice.as_str()].is_object(), "{keys}");
    assert!(
        keys["self_signing_keys"][alice.as_str()].is_object(),
        "{keys}"
    );

    // Encrypted history, backed up.
    let mut request = create_room::v3::Request::new();
    request.initial_state = vec![InitialStateEvent::with_empty_state_key(
        RoomEncryptionEventContent::with_recommended_defaults(),
    )
    .to_raw_any()];
    let room = first.create_room(request).await.expect("create_room");
    room.send(RoomMessageEventContent::text_plain(
        "written before the second device",
    ))
    .await
    .expect("send");
    first
        .encryption()
        .backups()
        .wait_for_steady_state()
        .await
        .expect("room keys backed up");
    let version = assert_ok(
        server
            .get(
                "/_matrix/client/v3/room_keys/version",
                Some(&server.login("alice", PW).await.access_token),
            )
            .await,
    );
    assert!(version["count"].as_u64().unwrap_or(0) >= 1, "{version}");

    // A new device: recovers, then reads the history from the backup.
    let second = log_in(&server, "alice").await;
    second
        .sync_once(settings())
        .await
        .expect("second device syncs");
    second
        .encryption()
        .recovery()
        .recover(&recovery_key)
        .await
        .expect("recovering with the recovery key");
    second
        .encryption()
        .backups()
        .download_room_keys_for_room(room.room_id())
        .await
        .expect("downloading the room's keys from the backup");
    second.sync_once(settings()).await.expect("sync");
    let room2 = second.get_room(room.room_id()).expect("the room");
    let bodies = decrypted_bodies(&room2).await;
    assert!(
        bodies
            .iter()
            .any(|b| b == "written before the second device"),
        "{bodies:?}"
    );
    // The recovered device is cross-signed too, and sees the first as such.
    let first_device = second
        .encryption()
        .get_device(&alice, first.device_id().unwrap())
        .await
        .expect("device")
        .expect("the first device is known");
    assert!(first_device.is_cross_signed_by_owner());
}
