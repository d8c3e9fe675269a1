//! `POST /createRoom` (Client-Server API: "Creation"): the create event, the
//! creator's join, power levels, preset events, initial state, name, topic and
//! invites, in the order the spec gives. Each event is its own durable write
//! under the room lock, so a failure part-way leaves a valid, smaller room.

use ruma::{
    events::TimelineEventType, MilliSecondsSinceUnixEpoch, OwnedRoomId, OwnedUserId, RoomId,
    RoomVersionId, UserId,
};
use serde_json::{json, Map, Value};

use super::{pdu, MemberProfile, NewEvent, RoomInfo, Rooms, StateMap};
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    PrivateChat,
    PublicChat,
    TrustedPrivateChat,
}

/// What a client asked for, already parsed by the API layer.
pub struct CreateRoom {
    pub version: Option<RoomVersionId>,
    pub preset: Preset,
    /// Extra keys of the create event's content (`creation_content`).
    pub creation_content: Map<String, Value>,
    pub power_level_override: Option<Map<String, Value>>,
    /// (type, state key, content) from `initial_state`.
    pub initial_state: Vec<(String, String, Value)>,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub invite: Vec<OwnedUserId>,
    pub is_direct: bool,
    pub creator_profile: MemberProfile,
    /// From `room_alias_name`, already reserved in the directory: sent as
    /// `m.room.canonical_alias` right after the power levels (step 4).
    pub canonical_alias: Option<ruma::OwnedRoomAliasId>,
}

fn raw(value: &Value) -> Result<Box<serde_json::value::RawValue>> {
    serde_json::value::to_raw_value(value).map_err(|e| Error::bad_json(format!("{e}")))
}

fn state(kind: &str, state_key: &str, content: Value) -> Result<NewEvent> {
    Ok(NewEvent {
        kind: TimelineEventType::from(kind),
        state_key: Some(state_key.to_owned()),
        content: raw(&content)?,
        redacts: None,
    })
}

impl Rooms {
    pub async fn create_room(&self, creator: &UserId, request: CreateRoom) -> Result<OwnedRoomId> {
        let version = request
            .version
            .clone()
            .unwrap_or_else(|| self.default_version.clone());
        if !Self::supported_versions().contains(&version) {
            return Err(Error::new(
                axum::http::StatusCode::BAD_REQUEST,
                ruma::api::error::ErrorKind::UnsupportedRoomVersion,
                format!("This server does not create rooms of version {version}"),
            ));
        }
        let rules = Self::rules(&version)?;

        // The create event.
        let mut content = request.creation_content.clone();
        content.insert("room_version".into(), json!(version.as_str()));
        if !rules.authorization.use_room_create_sender {
            content.insert("creator".into(), json!(creator));
        }
        let mut additional_creators: Vec<OwnedUserId> = Vec::new();
        if rules.authorization.additional_room_creators {
            if let Some(list) = content.get("additional_creators").and_then(Value::as_array) {
                for user in list {
                    let user: OwnedUserId = serde_json::from_value(user.clone())
                        .map_err(|_| Error::bad_json("additional_creators must be user ids"))?;
                    additional_creators.push(user);
                }
            }
            if request.preset == Preset::TrustedPrivateChat {
                for user in &request.invite {
                    if !additional_creators.contains(user) && user != creator {
                        additional_creators.push(user.clone());
                    }
                }
            }
            if !additional_creators.is_empty() {
                content.insert("additional_creators".into(), json!(additional_creators));
            }
        }
        let content = raw(&Value::Object(content))?;
        let mut origin_server_ts = MilliSecondsSinceUnixEpoch::now();
        let mut attempts = 0;
        let (create, room_id, guard) = loop {
            let room_id_hint = (!rules.authorization.room_create_event_id_as_room_id)
                .then(|| RoomId::new_v1(&self.server_name));
            let create_json = pdu::build_unsigned_pdu(pdu::UnsignedPdu {
                rules: &rules,
                room_id: room_id_hint.as_deref(),
                sender: creator,
                kind: &TimelineEventType::RoomCreate,
                state_key: Some(""),
                content: &content,
                prev_events: &[],
                auth_events: &[],
                depth: 1,
                origin_server_ts,
                redacts: None,
            })
            .map_err(|e| Error::bad_json(format!("Invalid creation_content: {e}")))?;
            let create = self.sign(&rules, room_id_hint.as_deref(), create_json)?;
            let room_id = create.room_id.clone();
            let guard = self.lock_room(&room_id).await;
            if self.room_info(&room_id)?.is_none() {
                break (create, room_id, guard);
            }
            // From v12 the room id is the create event's hash: the same creator
            // creating the same room in the same millisecond gets the same id.
            // A later timestamp makes a different event, hence a new room.
            attempts += 1;
            if attempts > 1000 {
                return Err(Error::internal("could not find a free room id"));
            }
            origin_server_ts =
                MilliSecondsSinceUnixEpoch(origin_server_ts.0.saturating_add(1u32.into()));
        };
        let mut in_flight = self.stream.begin();
        let info = RoomInfo {
            version: version.clone(),
        };
        let mut batch = self.storage.batch();
        batch.put(&self.infos, &room_id, &info)?;
        let shortroomid = self.ids.room_or_create(&room_id, &mut batch)?;
        self.stage(
            &mut batch,
            &rules,
            &create,
            shortroomid,
            None,
            &StateMap::new(),
        )?;
        // Each event is built on the previous one once that is applied; one
        // sync at the end makes them all durable.
        let mut durable = self.storage.apply(batch).await?;
        in_flight.changed(Some(room_id.clone()), vec![creator.to_owned()]);

        for event in self.initial_events(creator, &request, &version)? {
            let mut batch = self.storage.batch();
            self.append_local(&mut batch, &room_id, &info, creator, event)?;
            durable = self.storage.apply(batch).await?;
        }
        drop(guard);
        durable.wait().await?;
        in_flight.changed(Some(room_id.clone()), request.invite.clone());
        in_flight.done();
        tracing::info!(%room_id, %creator, %version, "room created");
        Ok(room_id)
    }

    /// Everything after the create event, in the spec's order.
    fn initial_events(
        &self,
        creator: &UserId,
        request: &CreateRoom,
        version: &RoomVersionId,
    ) -> Result<Vec<NewEvent>> {
        let rules = Self::rules(version)?;
        let privileged_creators = rules.authorization.explicitly_privilege_room_creators;
        let mut events = Vec::new();
        events.push(state(
            "m.room.member",
            creator.as_str(),
            request.creator_profile.member_content("join", false),
        )?);

        // Power levels: the spec's defaults, the preset's, then the client's override.
        let mut users = Map::new();
        if !privileged_creators {
            users.insert(creator.to_string(), json!(100));
        }
        if request.preset == Preset::TrustedPrivateChat && !privileged_creators {
            for user in &request.invite {
                users.insert(user.to_string(), json!(100));
            }
        }
        let mut power_levels = json!({
            "users": users,
            "users_default": 0,
            "events": {
                "m.room.name": 50,
                "m.room.power_levels": 100,
                "m.room.history_visibility": 100,
                "m.room.canonical_alias": 50,
                "m.room.avatar": 50,
                "m.room.tombstone": 100,
                "m.room.server_acl": 100,
                "m.room.encryption": 100,
            },
            "events_default": 0,
            "state_default": 50,
            "ban": 50,
            "kick": 50,
            "redact": 50,
            "invite": 0,
        });
        if let (Some(over), Some(base)) =
            (&request.power_level_override, power_levels.as_object_mut())
        {
            for (key, value) in over {
                base.insert(key.clone(), value.clone());
            }
        }
        events.push(state("m.room.power_levels", "", power_levels)?);
        if let Some(alias) = &request.canonical_alias {
            events.push(state(
                "m.room.canonical_alias",
                "",
                json!({ "alias": alias }),
            )?);
        }

        let (join_rule, guest_access) = match request.preset {
            Preset::PublicChat => ("public", "forbidden"),
            Preset::PrivateChat | Preset::TrustedPrivateChat => ("invite", "can_join"),
        };
        let overridden = |kind: &str| {
            request
                .initial_state
                .iter()
                .any(|(t, k, _)| t == kind && k.is_empty())
        };
        if !overridden("m.room.join_rules") {
            events.push(state(
                "m.room.join_rules",
                "",
                json!({ "join_rule": join_rule }),
            )?);
        }
        if !overridden("m.room.history_visibility") {
            events.push(state(
                "m.room.history_visibility",
                "",
                json!({ "history_visibility": "shared" }),
            )?);
        }
        if !overridden("m.room.guest_access") && guest_access == "can_join" {
            events.push(state(
                "m.room.guest_access",
                "",
                json!({ "guest_access": "can_join" }),
            )?);
        }
        for (kind, state_key, content) in &request.initial_state {
            if kind == "m.room.create" || kind == "m.room.member" || kind == "m.room.power_levels" {
                return Err(Error::bad_json(format!(
                    "initial_state may not contain {kind}"
                )));
            }
            events.push(state(kind, state_key, content.clone())?);
        }
        if let Some(name) = &request.name {
            events.push(state("m.room.name", "", json!({ "name": name }))?);
        }
        if let Some(topic) = &request.topic {
            events.push(state(
                "m.room.topic",
                "",
                json!({ "topic": topic, "m.topic": [{ "body": topic, "mimetype": "text/plain" }] }),
            )?);
        }
        for user in &request.invite {
            let mut content = json!({ "membership": "invite" });
            if request.is_direct {
                content["is_direct"] = json!(true);
            }
            events.push(state("m.room.member", user.as_str(), content)?);
        }
        Ok(events)
    }
}
