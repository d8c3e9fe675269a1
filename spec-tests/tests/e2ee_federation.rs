//! End-to-end encryption across servers: matrix-sdk users (vodozemac
//! inside) on two federated homeservers share an encrypted room and decrypt
//! each other's messages — two Feathur servers, and Feathur with a real
//! Synapse in both directions. This needs keys queried and claimed through
//! the other server (`user/keys/query`, `user/keys/claim`), room keys
//! carried as `m.direct_to_device` EDUs, and device-list updates.

#[path = "support/sdk.rs"]
mod sdk;

use matrix_sdk::{
    ruma::{
        api::client::room::create_room,
        events::{
            room::{encryption::RoomEncryptionEventContent, message::RoomMessageEventContent},
            InitialStateEvent,
        },
        OwnedServerName, RoomOrAliasId,
    },
    Client,
};
use sdk::{await_decrypted, await_joined, await_room, logged_in, settings};
use spec_tests::{synapse_python_or_report, PeerName, SynapseServer, TestServer};

/// `host` creates an encrypted room and invites `guest` (of another
/// server, reached through `via`); they exchange one message each way and
/// each decrypts the other's.
async fn encrypted_conversation(host: &Client, guest: &Client, via: &str) {
    let mut request = create_room::v3::Request::new();
    request.invite = vec![guest.user_id().expect("guest id").to_owned()];
    request.initial_state = vec![InitialStateEvent::with_empty_state_key(
        RoomEncryptionEventContent::with_recommended_defaults(),
    )
    .to_raw_any()];
    let room = host.create_room(request).await.expect("create_room");
    let room_id = room.room_id().to_owned();

    await_room(guest, &room_id, 60).await;
    let via: OwnedServerName = via.try_into().unwrap();
    let target: &RoomOrAliasId = room_id.as_str().try_into().unwrap();
    guest
        .join_room_by_id_or_alias(target, &[via])
        .await
        .expect("the guest joins over federation");
    await_joined(host, &room, 2, 60).await;

    room.send(RoomMessageEventContent::text_plain("hello guest, secretly"))
        .await
        .expect("host sends");
    let seen = await_decrypted(guest, &room_id, "hello guest, secretly", 60).await;
    assert_eq!(seen[0], "hello guest, secretly");

    let guest_room = guest.get_room(&room_id).expect("guest's room");
    guest_room
        .send(RoomMessageEventContent::text_plain("hi host, secretly"))
        .await
        .expect("guest sends");
    let seen = await_decrypted(host, &room_id, "hi host, secretly", 60).await;
    assert!(
        seen.contains(&"hello guest, secretly".to_owned()),
        "{seen:?}"
    );
}

#[tokio::test]
async fn matrix_sdk_users_on_two_feathur_servers_decrypt_each_other() {
    let (a, b) = tokio::join!(
        TestServer::builder().peer(PeerName::Ip).start(),
        TestServer::builder().peer(PeerName::Localhost).start(),
    );
    let alice = logged_in(&a, "alice").await;
    let bob = logged_in(&b, "bob").await;
    alice
        .sync_once(settings())
        .await
        .expect("alice's first sync");
    bob.sync_once(settings()).await.expect("bob's first sync");
    encrypted_conversation(&alice, &bob, &a.server_name()).await;
}

#[tokio::test]
async fn matrix_sdk_users_on_feathur_and_synapse_decrypt_each_other() {
    let Some(python) = synapse_python_or_report() else {
        return;
    };
    let (feathur, synapse) = tokio::join!(
        TestServer::builder().peer(PeerName::Ip).start(),
        SynapseServer::start(&python, PeerName::Localhost, "12"),
    );
    let alice = logged_in(&feathur, "alice").await;
    let bob = logged_in(&synapse, "bob").await;
    alice
        .sync_once(settings())
        .await
        .expect("alice's first sync");
    bob.sync_once(settings()).await.expect("bob's first sync");
    // A Feathur-hosted room, then a Synapse-hosted one.
    encrypted_conversation(&alice, &bob, &feathur.server_name()).await;
    encrypted_conversation(&bob, &alice, synapse.server_name()).await;
}
