//! A real client in rooms: two matrix-sdk users create, invite, join, sync and
//! converse through Feathur.

#[path = "support/sdk.rs"]
mod sdk;

use std::time::Duration;

use matrix_sdk::{
    config::SyncSettings,
    room::MessagesOptions,
    ruma::{
        api::client::room::create_room, events::room::message::RoomMessageEventContent, OwnedUserId,
    },
};
use sdk::logged_in;
use spec_tests::TestServer;

fn settings() -> SyncSettings {
    SyncSettings::default().timeout(Duration::from_millis(500))
}

#[tokio::test]
async fn two_matrix_sdk_users_converse() {
    let server = TestServer::start().await;
    let alice = logged_in(&server, "alice").await;
    let bob = logged_in(&server, "bob").await;
    let bob_id: OwnedUserId = bob.user_id().expect("bob's id").to_owned();

    let mut request = create_room::v3::Request::new();
    request.invite = vec![bob_id.clone()];
    request.name = Some("sdk room".into());
    let room = alice
        .create_room(request)
        .await
        .expect("create_room through matrix-sdk");
    let room_id = room.room_id().to_owned();

    // Bob learns of the invite through /sync and accepts it.
    bob.sync_once(settings()).await.expect("bob's first sync");
    let invited = bob
        .get_room(&room_id)
        .expect("the invite reached bob's sync");
    invited.join().await.expect("bob joins");

    room.send(RoomMessageEventContent::text_plain("hello bob"))
        .await
        .expect("alice sends");
    bob.sync_once(settings()).await.expect("bob's second sync");
    let bob_room = bob.get_room(&room_id).expect("bob's room");
    bob_room
        .send(RoomMessageEventContent::text_plain("hi alice"))
        .await
        .expect("bob sends");

    // Both see the conversation, in order, through /messages.
    let messages = room
        .messages(MessagesOptions::backward())
        .await
        .expect("messages");
    let bodies: Vec<String> = messages
        .chunk
        .iter()
        .filter_map(|e| {
            let value: serde_json::Value = e.raw().deserialize_as().ok()?;
            (value["type"] == "m.room.message").then(|| {
                value["content"]["body"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
        })
        .collect();
    assert_eq!(bodies, ["hi alice", "hello bob"]);
    assert_eq!(bob_room.name().as_deref(), Some("sdk room"));
}
