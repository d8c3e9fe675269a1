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

use std::sync::Arc;

use ruma::{
    events::{
        room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource},
        StateEventType,
    },
    push::{Action, PushConditionPowerLevelsCtx, PushConditionRoomCtx, Ruleset},
    serde::Raw,
    OwnedEventId, OwnedUserId, RoomId, UInt, UserId,
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

/// Evaluates `ruleset` against `event` (a client-format event) for the user
/// in `context`. Events the user sent themselves never notify.
pub async fn evaluate(
    ruleset: &Ruleset,
    event: &Raw<Value>,
    context: &PushConditionRoomCtx,
) -> Outcome {
    let actions = ruleset.get_actions(event, context).await;
    Outcome {
        notify: actions.iter().any(Action::should_notify),
        highlight: actions.iter().any(Action::is_highlight),
    }
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

/// What every recipient of one event shares: the room's side of the
/// [`PushConditionRoomCtx`] and the members to evaluate for.
pub struct RoomContext {
    /// The room's current state, read once for every recipient.
    state: Arc<StateMap>,
    member_count: UInt,
    power_levels: Option<PushConditionPowerLevelsCtx>,
    /// Local joined members other than the sender.
    pub recipients: Vec<OwnedUserId>,
}

impl RoomContext {
    /// Reads the room's current members and power levels.
    pub fn load(rooms: &Rooms, room_id: &RoomId, sender: &UserId) -> Result<RoomContext> {
        let joined: Vec<OwnedUserId> = rooms
            .members(room_id)?
            .into_iter()
            .filter(|(_, m)| *m == Membership::Join)
            .map(|(user, _)| user)
            .collect();
        let member_count = UInt::new_saturating(joined.len() as u64);
        let recipients = joined
            .into_iter()
            .filter(|u| u != sender && u.server_name() == rooms.server_name())
            .collect();
        let state = rooms.current_state_snapshot(room_id)?;
        Ok(RoomContext {
            member_count,
            power_levels: power_levels(rooms, room_id, &state)?,
            recipients,
            state,
        })
    }

    /// The full context for `user`, with their display name in the room
    /// (their localpart when they have none).
    pub fn for_user(
        &self,
        rooms: &Rooms,
        room_id: &RoomId,
        user: &UserId,
    ) -> Result<PushConditionRoomCtx> {
        let member =
            rooms.state_event_of(&self.state, &StateEventType::RoomMember, user.as_str())?;
        let display_name = member
            .and_then(|pdu| serde_json::from_str::<Value>(pdu.content.get()).ok())
            .and_then(|content| content.get("displayname")?.as_str().map(str::to_owned))
            .filter(|name| !name.is_empty())
            .unwrap_or_else(|| user.localpart().to_owned());
        let context = PushConditionRoomCtx::new(
            room_id.to_owned(),
            self.member_count,
            user.to_owned(),
            display_name,
        );
        Ok(match &self.power_levels {
            Some(power_levels) => context.with_power_levels(power_levels.clone()),
            None => context,
        })
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
    if let Some(create) = rooms.state_event_of(state, &StateEventType::RoomCreate, "")? {
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
    let source = match rooms.state_event_of(state, &StateEventType::RoomPowerLevels, "")? {
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
