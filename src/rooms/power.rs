//! Power levels as the auth rules see them (ruma's `RoomPowerLevels`), for the
//! checks the auth rules do not make themselves: redacting others' events,
//! upgrading a room, changing its aliases or directory listing.

use ruma::{
    events::{
        room::power_levels::{RoomPowerLevels, RoomPowerLevelsEventContent, RoomPowerLevelsSource},
        StateEventType,
    },
    room_version_rules::RoomVersionRules,
    OwnedUserId, RoomId, UserId,
};

use super::{Rooms, StateMap};
use crate::error::{Error, Result};

impl Rooms {
    /// The room's power levels in `state`; in v12+ rooms the creators (the
    /// create event's sender and `additional_creators`) rank above all.
    pub(super) fn power_levels(
        &self,
        rules: &RoomVersionRules,
        state: &StateMap,
    ) -> Result<RoomPowerLevels> {
        let mut creators: Vec<OwnedUserId> = Vec::new();
        if let Some(create) = self.state_event_in(state, &StateEventType::RoomCreate, "")? {
            creators.push(create.sender.clone());
            if rules.authorization.additional_room_creators {
                #[derive(serde::Deserialize)]
                struct CreateContent {
                    #[serde(default)]
                    additional_creators: Vec<OwnedUserId>,
                }
                if let Ok(content) = serde_json::from_str::<CreateContent>(create.content.get()) {
                    creators.extend(content.additional_creators);
                }
            }
        }
        let source = match self.state_event_in(state, &StateEventType::RoomPowerLevels, "")? {
            Some(event) => RoomPowerLevelsSource::Original(
                serde_json::from_str::<RoomPowerLevelsEventContent>(event.content.get())
                    .map_err(|e| Error::internal(format!("unreadable power levels: {e}")))?,
            ),
            None => RoomPowerLevelsSource::None,
        };
        Ok(RoomPowerLevels::new(source, &rules.authorization, creators))
    }

    /// Whether `user` may send the state event `event_type` in the room now.
    pub fn can_send_state(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        event_type: StateEventType,
    ) -> Result<bool> {
        let Some(info) = self.room_info(room_id)? else {
            return Ok(false);
        };
        let rules = Self::rules(&info.version)?;
        let Some(shortroomid) = self.ids.room(room_id)? else {
            return Ok(false);
        };
        let Some(snapshot) = self.state.room_current(shortroomid)? else {
            return Ok(false);
        };
        let state = self.state.load(snapshot)?;
        Ok(self
            .power_levels(&rules, &state)?
            .user_can_send_state(user_id, event_type))
    }
}
