//! matrix-sdk clients (vodozemac inside) for the tests that use a real
//! client: register and log in, sync, and read back (decrypted) messages.
//! Works against any homeserver. Each test file uses a part of it.
#![allow(dead_code)]

use std::time::Duration;

use matrix_sdk::{config::SyncSettings, room::MessagesOptions, ruma::OwnedRoomId, Client, Room};
use spec_tests::{install_crypto_provider, HttpClient, Value};

pub const PW: &str = "e2ee-sdk-pw";

/// Registers `name` on the homeserver behind `server` and logs a fresh
/// matrix-sdk client in.
pub async fn logged_in(server: &HttpClient, name: &str) -> Client {
    server.register(name, PW).await;
    log_in(server, name).await
}

/// Logs a fresh matrix-sdk client (a new device) in to the existing
/// account `name`.
pub async fn log_in(server: &HttpClient, name: &str) -> Client {
    install_crypto_provider();
    let client = Client::builder()
        .homeserver_url(server.base_url())
        .build()
        .await
        .expect("building the matrix-sdk client");
    client
        .matrix_auth()
        .login_username(name, PW)
        .send()
        .await
        .expect("login");
    client
}

pub fn settings() -> SyncSettings {
    SyncSettings::default().timeout(Duration::from_millis(500))
}

/// The decrypted bodies of the room's `m.room.message` events, newest
/// first; events the client could not decrypt are left out.
pub async fn decrypted_bodies(room: &Room) -> Vec<String> {
    let messages = room
        .messages(MessagesOptions::backward())
        .await
        .expect("messages");
    messages
        .chunk
        .iter()
        .filter(|e| e.encryption_info().is_some())
        .filter_map(|e| {
            let value: Value = e.raw().deserialize_as().ok()?;
            (value["type"] == "m.room.message").then(|| {
                value["content"]["body"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned()
            })
        })
        .collect()
}

/// Syncs `client` until `room` shows `body` decrypted (keys arrive by
/// to-device, possibly a sync after the message), at most `rounds` syncs.
pub async fn await_decrypted(
    client: &Client,
    room_id: &OwnedRoomId,
    body: &str,
    rounds: usize,
) -> Vec<String> {
    let mut bodies = Vec::new();
    for _ in 0..rounds {
        client.sync_once(settings()).await.expect("sync");
        if let Some(room) = client.get_room(room_id) {
            bodies = decrypted_bodies(&room).await;
            if bodies.iter().any(|b| b == body) {
                return bodies;
            }
        }
    }
    panic!("{body:?} never decrypted; got {bodies:?}");
}

/// Syncs `client` until it knows `room_id` (an invite arrived).
pub async fn await_room(client: &Client, room_id: &OwnedRoomId, rounds: usize) -> Room {
    for _ in 0..rounds {
        client.sync_once(settings()).await.expect("sync");
        if let Some(room) = client.get_room(room_id) {
            return room;
        }
    }
    panic!("{room_id} never reached the client");
}

/// Syncs `client` until `room` has `count` joined members.
pub async fn await_joined(client: &Client, room: &Room, count: usize, rounds: usize) {
    for _ in 0..rounds {
        client.sync_once(settings()).await.expect("sync");
        let members = room
            .members(matrix_sdk::RoomMemberships::JOIN)
            .await
            .expect("members");
        if members.len() >= count {
            return;
        }
    }
    panic!("{} never had {count} joined members", room.room_id());
}
