//! Push rule evaluation for one event (Client-Server API, "Push Notifications"
//! → "Push Rules" and "Conditions"): ruma's [`Ruleset::get_actions`] picks
//! the first enabled rule whose conditions hold, in the spec's order
//! (override, content, room, sender, underride); its actions say whether
//! the event notifies the user and whether it highlights.
//!
//! The room context ([`PushConditionRoomCtx`]) carries what conditions need
//! beyond the event: the joined member count (`room_member_count`), the
//! user's display name in the room (`contains_display_name`) and the power
//! levels (`sender_notification_permission`, used by `.m.rule.is_room_mention`).
//! They are read from the room's current state just after the event commits.

use ruma::{
    events::{
        room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource},
        StateEventType,
    },
    push::{Action, FlattenedJson, PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset},
    serde::Raw,
    OwnedEventId, OwnedUserId, RoomId, UInt,
};
use serde::Deserialize;
use serde_json::Value;

use crate::{
    error::{Error, Result},
    rooms::{Membership, Pdu, Rooms, StateMap},
};

/// What the rules decided for one user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The actions contain `notify`: the event counts as a notification.
    pub notify: bool,
    /// The actions contain `set_tweak: highlight` (true): it also highlights.
    pub highlight: bool,
}

/// Evaluates `ruleset` against `event` (a client-format event, flattened
/// once for all its recipients, which ruma's `Ruleset::get_actions` would
/// do again for each) for the user in `context`: the first rule that
/// applies, in the spec's order, gives the actions. Events the user sent
/// themselves never notify.
pub async fn evaluate(
    ruleset: &Ruleset,
    event: &FlattenedJson,
    context: &PushConditionRoomCtx,
) -> Outcome {
    if event.get_str("sender") == Some(context.user_id.as_str()) {
        return Outcome::default();
    }
    for rule in ruleset {
        if rule.applies(event, context).await {
            let actions = rule.actions();
            return Outcome {
                notify: actions.iter().any(Action::should_notify),
                highlight: actions.iter().any(Action::is_highlight),
            };
        }
    }
    Outcome::default()
}

/// The client-format JSON of `pdu` as the rules see it.
pub fn event_json(pdu: &Pdu) -> Result<Raw<Value>> {
    serde_json::value::to_raw_value(&pdu.to_client_event())
        .map(Raw::from_json)
        .map_err(|e| Error::internal(format!("event not serialisable: {e}")))
}

/// The thread root when `pdu` is in a thread (`m.relates_to` with
/// `rel_type: m.thread`; spec "Threading").
pub fn thread_of(pdu: &Pdu) -> Option<OwnedEventId> {
    #[derive(Deserialize)]
    struct Relation {
        rel_type: Option<String>,
        event_id: Option<OwnedEventId>,
    }
    #[derive(Deserialize)]
    struct Content {
        #[serde(rename = "m.relates_to")]
        relates_to: Option<Relation>,
    }
    let content: Content = serde_json::from_str(pdu.content.get()).ok()?;
    let relation = content.relates_to?;
    (relation.rel_type.as_deref() == Some("m.thread"))
        .then_some(relation.event_id)
        .flatten()
}

/// The push condition context of every local joined member of a room, as
/// of one state snapshot: member count, display names and power levels
/// only change with the state, so a room's context is built once per state
/// and reused for every event until the state changes (`Push` caches it).
pub struct RoomContext {
    /// The snapshot it was built from.
    pub snapshot: u64,
    /// Local joined members, with their context (display name in the room,
    /// their localpart when they have none).
    pub members: Vec<(OwnedUserId, PushConditionRoomCtx)>,
}

impl RoomContext {
    /// Builds the context from the room's current state; `None` for a room
    /// without state.
    pub fn load(rooms: &Rooms, room_id: &RoomId) -> Result<Option<RoomContext>> {
        let Some((snapshot, state)) = rooms.current_state_snapshot_with_id(room_id)? else {
            return Ok(None);
        };
        let joined: Vec<OwnedUserId> = rooms
            .members(room_id)?
            .into_iter()
            .filter(|(_, m)| *m == Membership::Join)
            .map(|(user, _)| user)
            .collect();
        let member_count = UInt::new_saturating(joined.len() as u64);
        let power_levels = power_levels(rooms, room_id, &state)?;
        let mut members = Vec::new();
        for user in joined
            .into_iter()
            .filter(|u| u.server_name() == rooms.server_name())
        {
            let member =
                rooms.state_event_in(&state, &StateEventType::RoomMember, user.as_str())?;
            let display_name = member
                .and_then(|pdu| serde_json::from_str::<Value>(pdu.content.get()).ok())
                .and_then(|content| content.get("displayname")?.as_str().map(str::to_owned))
                .filter(|name| !name.is_empty())
                .unwrap_or_else(|| user.localpart().to_owned());
            let context = PushConditionRoomCtx::new(
                room_id.to_owned(),
                member_count,
                user.clone(),
                display_name,
            );
            let context = match &power_levels {
                Some(power_levels) => context.with_power_levels(power_levels.clone()),
                None => context,
            };
            members.push((user, context));
        }
        Ok(Some(RoomContext { snapshot, members }))
    }
}

/// The room's power levels as the push conditions see them; in v12+ rooms
/// the creators outrank everyone (`RoomPowerLevels` handles that).
fn power_levels(
    rooms: &Rooms,
    room_id: &RoomId,
    state: &StateMap,
) -> Result<Option<PushConditionPowerLevelsCtx>> {
    let Some(info) = rooms.room_info(room_id)? else {
        return Ok(None);
    };
    let Some(rules) = info.version.rules() else {
        return Ok(None);
    };
    let mut creators: Vec<OwnedUserId> = Vec::new();
    if let Some(create) = rooms.state_event_in(state, &StateEventType::RoomCreate, "")? {
        creators.push(create.sender.clone());
        if rules.authorization.additional_room_creators {
            #[derive(Deserialize)]
            struct CreateContent {
                #[serde(default)]
                additional_creators: Vec<OwnedUserId>,
            }
            if let Ok(content) = serde_json::from_str::<CreateContent>(create.content.get()) {
                creators.extend(content.additional_creators);
            }
        }
    }
    let source = match rooms.state_event_in(state, &StateEventType::RoomPowerLevels, "")? {
        Some(event) => {
            match serde_json::from_str::<RoomPowerLevelsEventContent>(event.content.get()) {
                Ok(content) => RoomPowerLevelsSource::Original(content),
                Err(_) => return Ok(None),
            }
        }
        None => RoomPowerLevelsSource::None,
    };
    let levels = RoomPowerLevels::new(source, &rules.authorization, creators);
    Ok(Some(levels.into()))
}
