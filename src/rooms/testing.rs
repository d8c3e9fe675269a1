//! A room service on a temporary database, for the rooms unit tests.

use std::sync::Arc;

use axum::http::StatusCode;
use feathur_federation::SigningKey;
use ruma::{
    api::client::filter::RoomEventFilter, events::TimelineEventType, EventId, OwnedEventId,
    OwnedRoomId, OwnedServerName, OwnedUserId, RoomId, RoomVersionId, UserId,
};
use serde_json::{value::to_raw_value, Map, Value};

use super::{Change, CreateRoom, MemberProfile, NewEvent, Preset, Rooms, Txn};
use crate::{
    error::{Error, Result},
    storage::{OpenMode, Storage},
};

pub struct Fixture {
    _dir: tempfile::TempDir,
    pub rooms: Rooms,
}

pub fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&dir.path().join("db"), OpenMode::ReadWrite).unwrap();
    let server: OwnedServerName = "example.org".try_into().unwrap();
    let key = Arc::new(SigningKey::generate().unwrap());
    let rooms = Rooms::new(storage, server, key, RoomVersionId::V11).unwrap();
    Fixture { _dir: dir, rooms }
}

pub fn user(name: &str) -> OwnedUserId {
    UserId::parse(format!("@{name}:example.org")).unwrap()
}

/// `(status, errcode)` of a Matrix error.
pub fn errcode<T: std::fmt::Debug>(result: Result<T>) -> (StatusCode, String) {
    match result.unwrap_err() {
        Error::Matrix { status, kind, .. } => (status, kind.errcode().to_string()),
        other => panic!("expected a Matrix error, got {other}"),
    }
}

pub fn no_filter() -> RoomEventFilter {
    RoomEventFilter::default()
}

impl Fixture {
    /// A public room of `version` created by `creator`, with `initial_state`
    /// as (type, content) pairs.
    pub async fn room(
        &self,
        creator: &UserId,
        version: RoomVersionId,
        initial_state: &[(&str, Value)],
    ) -> OwnedRoomId {
        let request = CreateRoom {
            version: Some(version),
            preset: Preset::PublicChat,
            creation_content: Map::new(),
            power_level_override: None,
            initial_state: initial_state
                .iter()
                .map(|(kind, content)| (kind.to_string(), String::new(), content.clone()))
                .collect(),
            name: None,
            topic: None,
            invite: Vec::new(),
            is_direct: false,
            creator_profile: MemberProfile::default(),
            canonical_alias: None,
        };
        self.rooms.create_room(creator, request).await.unwrap()
    }

    pub async fn membership(&self, room: &RoomId, user: &UserId, change: Change) {
        let rooms = &self.rooms;
        rooms
            .change_membership(room, user, user, change, None)
            .await
            .unwrap();
    }

    pub async fn join(&self, room: &RoomId, user: &UserId) {
        let change = Change::Join(MemberProfile::default());
        self.membership(room, user, change).await;
    }

    /// Sends a message-like event.
    pub async fn send(
        &self,
        room: &RoomId,
        sender: &UserId,
        kind: &str,
        content: Value,
    ) -> Result<OwnedEventId> {
        let event = NewEvent {
            kind: TimelineEventType::from(kind),
            state_key: None,
            content: to_raw_value(&content).unwrap(),
            redacts: None,
        };
        self.rooms.send(room, sender, event, None).await
    }

    pub async fn text(&self, room: &RoomId, sender: &UserId, body: &str) -> OwnedEventId {
        let content = serde_json::json!({"msgtype": "m.text", "body": body});
        self.send(room, sender, "m.room.message", content)
            .await
            .unwrap()
    }

    pub async fn redact(
        &self,
        room: &RoomId,
        sender: &UserId,
        target: &EventId,
        txn_id: &str,
    ) -> Result<OwnedEventId> {
        let device = ruma::OwnedDeviceId::from("DEVICE");
        let txn = Txn {
            user_id: sender,
            device_id: &device,
            txn_id,
        };
        let reason = Some("spam".to_owned());
        self.rooms.redact(room, sender, target, reason, txn).await
    }
}
