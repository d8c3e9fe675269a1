//! A real client's sync loop (Client-Server API "Syncing"): bob's matrix-sdk
//! client runs repeated short `sync_once` calls while alice sends 50
//! messages; every message must reach bob exactly once, in order.

#[path = "support/sdk.rs"]
mod sdk;

use std::time::{Duration, Instant};

use matrix_sdk::{
    config::SyncSettings,
    ruma::{
        api::client::{filter::FilterDefinition, room::create_room, sync::sync_events::v3::Filter},
        events::room::message::RoomMessageEventContent,
        OwnedUserId, UInt,
    },
};
use sdk::logged_in;
use spec_tests::TestServer;

const MESSAGES: usize = 50;

/// Short long-polls, and a timeline limit above what one sync can hold, so
/// a `limited` timeline (a gap) would be a server bug, not the filter.
fn settings() -> SyncSettings {
    let mut filter = FilterDefinition::default();
    filter.room.timeline.limit = Some(UInt::from(100u32));
    SyncSettings::default()
        .timeout(Duration::from_millis(200))
        .filter(Filter::FilterDefinition(filter))
}

#[tokio::test]
async fn every_message_arrives_once_and_in_order() {
    let server = TestServer::start().await;
    let alice = logged_in(&server, "alice").await;
    let bob = logged_in(&server, "bob").await;
    let bob_id: OwnedUserId = bob.user_id().expect("bob's id").to_owned();

    let mut request = create_room::v3::Request::new();
    request.invite = vec![bob_id];
    let room = alice.create_room(request).await.expect("create_room");
    let room_id = room.room_id().to_owned();
    bob.sync_once(settings()).await.expect("bob's first sync");
    bob.get_room(&room_id)
        .expect("the invite reached bob")
        .join()
        .await
        .expect("bob joins");
    bob.sync_once(settings())
        .await
        .expect("bob's sync after joining");

    let sender = tokio::spawn(async move {
        for n in 0..MESSAGES {
            room.send(RoomMessageEventContent::text_plain(format!("m{n}")))
                .await
                .expect("alice sends");
        }
    });

    let mut bodies: Vec<String> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    // Keep syncing until everything arrived, then once more: a duplicate
    // delivered late would show up there.
    let mut extra = 1;
    while extra > 0 {
        assert!(Instant::now() < deadline, "only got {bodies:?}");
        if bodies.len() >= MESSAGES {
            extra -= 1;
        }
        let response = bob.sync_once(settings()).await.expect("bob syncs");
        let Some(update) = response.rooms.joined.get(&room_id) else {
            continue;
        };
        assert!(!update.timeline.limited, "a gap in bob's timeline");
        for event in &update.timeline.events {
            let value: serde_json::Value = event.raw().deserialize_as().expect("event JSON");
            if value["type"] == "m.room.message" {
                bodies.push(
                    value["content"]["body"]
                        .as_str()
                        .unwrap_or_default()
                        .to_owned(),
                );
            }
        }
    }
    sender.await.expect("alice's sender task");
    let expected: Vec<String> = (0..MESSAGES).map(|n| format!("m{n}")).collect();
    assert_eq!(bodies, expected);
}
