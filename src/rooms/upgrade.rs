//! `POST /rooms/{roomId}/upgrade` (Client-Server API: "Room Upgrades"): a new
//! room of the requested version that names its predecessor and carries the
//! old room's important state, a tombstone in the old room pointing at it, and
//! the old room's power levels raised so that only moderators can speak there.

use ruma::{
    events::{StateEventType, TimelineEventType},
    OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId,
};
use serde_json::{json, Map, Value};

use super::{CreateRoom, MemberProfile, NewEvent, Preset, Rooms};
use crate::error::{Error, Result};

/// State the spec says a replacement room inherits (besides power levels).
const CARRIED_STATE: &[&str] = &[
    "m.room.server_acl",
    "m.room.encryption",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.join_rules",
];

pub struct Upgrade {
    pub new_version: RoomVersionId,
    pub additional_creators: Vec<OwnedUserId>,
    pub profile: MemberProfile,
}

impl Rooms {
    pub async fn upgrade_room(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        upgrade: Upgrade,
    ) -> Result<OwnedRoomId> {
        self.check_can_read(room_id, sender)?;
        if !self.is_joined(room_id, sender)? {
            return Err(Error::forbidden("You are not in this room"));
        }
        let state = |kind: &str| -> Result<Option<Value>> {
            Ok(self
                .current_state_event(room_id, &StateEventType::from(kind), "")?
                .and_then(|e| serde_json::from_str(e.content.get()).ok()))
        };
        let mut power_levels = match state("m.room.power_levels")? {
            Some(Value::Object(map)) => map,
            _ => Map::new(),
        };
        // Permission to upgrade is permission to send the tombstone.
        if !self.can_send_state(room_id, sender, StateEventType::RoomTombstone)? {
            return Err(Error::forbidden("You may not upgrade this room"));
        }
        let old_power_levels = power_levels.clone();

        // Carried state becomes the new room's initial state.
        let mut initial_state = Vec::new();
        for kind in CARRIED_STATE {
            if let Some(content) = state(kind)? {
                initial_state.push(((*kind).to_owned(), String::new(), content));
            }
        }
        let new_rules = Self::rules(&upgrade.new_version)?;
        if new_rules.authorization.explicitly_privilege_room_creators {
            // Creators hold their power by being creators, never in `users`.
            if let Some(Value::Object(users)) = power_levels.get_mut("users") {
                users.remove(sender.as_str());
                for creator in &upgrade.additional_creators {
                    users.remove(creator.as_str());
                }
            }
        }
        let mut creation_content = Map::new();
        creation_content.insert("predecessor".into(), json!({ "room_id": room_id }));
        if !upgrade.additional_creators.is_empty() {
            creation_content.insert(
                "additional_creators".into(),
                json!(upgrade.additional_creators),
            );
        }
        let new_room = self
            .create_room(
                sender,
                CreateRoom {
                    version: Some(upgrade.new_version),
                    // No preset events beyond what is carried over.
                    preset: Preset::PublicChat,
                    creation_content,
                    power_level_override: Some(power_levels.clone()),
                    initial_state,
                    name: None,
                    topic: None,
                    invite: Vec::new(),
                    is_direct: false,
                    // Aliases follow in `Directory::follow_upgrade`.
                    canonical_alias: None,
                    creator_profile: upgrade.profile,
                },
            )
            .await?;

        let tombstone = json!({
            "body": "This room has been replaced",
            "replacement_room": new_room,
        });
        self.send_state(room_id, sender, "m.room.tombstone", tombstone)
            .await?;

        // Only moderators may talk or invite in the old room from now on.
        let mut power_levels = old_power_levels;
        let users_default = power_levels
            .get("users_default")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let restricted = 50.max(users_default + 1);
        for key in ["events_default", "invite"] {
            let current = power_levels.get(key).and_then(Value::as_i64).unwrap_or(0);
            power_levels.insert(key.into(), json!(current.max(restricted)));
        }
        self.send_state(
            room_id,
            sender,
            "m.room.power_levels",
            Value::Object(power_levels),
        )
        .await?;
        Ok(new_room)
    }

    async fn send_state(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        kind: &str,
        content: Value,
    ) -> Result<()> {
        let event = NewEvent {
            kind: TimelineEventType::from(kind),
            state_key: Some(String::new()),
            content: serde_json::value::to_raw_value(&content)
                .map_err(|e| Error::internal(format!("state content: {e}")))?,
            redacts: None,
        };
        self.send(room_id, sender, event, None).await?;
        Ok(())
    }
}
