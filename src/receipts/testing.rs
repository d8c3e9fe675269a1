//! A rooms service on a temporary database for the typing and receipts
//! unit tests.

use std::sync::Arc;

use feathur_federation::SigningKey;
use ruma::{
    events::TimelineEventType, OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, RoomVersionId,
    UserId,
};
use serde_json::{json, value::to_raw_value, Map, Value};

use crate::{
    rooms::{Change, CreateRoom, MemberProfile, NewEvent, Preset, Rooms},
    storage::{OpenMode, Storage},
};

pub struct Fixture {
    _dir: tempfile::TempDir,
    pub storage: Arc<Storage>,
    pub rooms: Rooms,
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&dir.path().join("db"), OpenMode::ReadWrite).unwrap();
    let key = Arc::new(SigningKey::generate().unwrap());
    let server = "example.org".try_into().unwrap();
    let rooms = Rooms::new(storage.clone(), server, key, RoomVersionId::V11).unwrap();
    Fixture {
        _dir: dir,
        storage,
        rooms,
    }
}

pub fn user(name: &str) -> OwnedUserId {
    UserId::parse(format!("@{name}:example.org")).unwrap()
}

impl Fixture {
    /// A public room created by `creator`.
    pub async fn room(&self, creator: &UserId) -> OwnedRoomId {
        let request = CreateRoom {
            version: None,
            preset: Preset::PublicChat,
            creation_content: Map::new(),
            power_level_override: None,
            initial_state: Vec::new(),
            name: None,
            topic: None,
            invite: Vec::new(),
            is_direct: false,
            creator_profile: MemberProfile::default(),
            canonical_alias: None,
        };
        self.rooms.create_room(creator, request).await.unwrap()
    }

    pub async fn join(&self, room: &RoomId, user: &UserId) {
        let change = Change::Join(MemberProfile::default());
        self.rooms
            .change_membership(room, user, user, change, None)
            .await
            .unwrap();
    }

    pub async fn send(&self, room: &RoomId, sender: &UserId, content: Value) -> OwnedEventId {
        let event = NewEvent {
            kind: TimelineEventType::RoomMessage,
            state_key: None,
            content: to_raw_value(&content).unwrap(),
            redacts: None,
        };
        self.rooms.send(room, sender, event, None).await.unwrap()
    }

    pub async fn text(&self, room: &RoomId, sender: &UserId, body: &str) -> OwnedEventId {
        self.send(room, sender, json!({"msgtype": "m.text", "body": body}))
            .await
    }
}
