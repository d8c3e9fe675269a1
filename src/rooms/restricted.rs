//! Restricted joins (room versions 8+, "Restricted rooms"; `knock_restricted`
//! from version 10): a user who is neither invited nor joined may join when
//! they are in one of the rooms the join rules allow, and a server in the
//! room vouches for it by naming one of its users with the power to invite
//! in `join_authorised_via_users_server`, and signing the join.

use ruma::{events::StateEventType, OwnedUserId, RoomId, UserId};
use serde::Deserialize;

use super::{Membership, Rooms};
use crate::error::Result;

#[derive(Deserialize)]
struct JoinRules {
    join_rule: String,
    #[serde(default)]
    allow: Vec<AllowRule>,
}

#[derive(Deserialize)]
struct AllowRule {
    #[serde(rename = "type")]
    kind: String,
    room_id: Option<ruma::OwnedRoomId>,
}

impl Rooms {
    /// The local user to name in `join_authorised_via_users_server` for a
    /// join of `user_id`: `None` when the join needs no authorisation (not a
    /// restricted room, or invited or joined already) or when we cannot give
    /// it (the user is in none of the allowed rooms as far as we know, or no
    /// local member may invite) — the auth rules then decide.
    pub fn join_authoriser(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
    ) -> Result<Option<OwnedUserId>> {
        let Some(info) = self.room_info(room_id)? else {
            return Ok(None);
        };
        let rules = Self::rules(&info.version)?;
        if !rules.authorization.restricted_join_rule {
            return Ok(None);
        }
        let Some(event) = self.current_state_event(room_id, &StateEventType::RoomJoinRules, "")?
        else {
            return Ok(None);
        };
        let Ok(join_rules) = serde_json::from_str::<JoinRules>(event.content.get()) else {
            return Ok(None);
        };
        let knock_restricted = join_rules.join_rule == "knock_restricted"
            && rules.authorization.knock_restricted_join_rule;
        if join_rules.join_rule != "restricted" && !knock_restricted {
            return Ok(None);
        }
        if matches!(
            self.membership(room_id, user_id)?,
            Some(Membership::Join | Membership::Invite)
        ) {
            return Ok(None);
        }
        let mut allowed = false;
        for rule in &join_rules.allow {
            if rule.kind != "m.room_membership" {
                continue;
            }
            if let Some(other) = &rule.room_id {
                if self.membership(other, user_id)? == Some(Membership::Join) {
                    allowed = true;
                    break;
                }
            }
        }
        if !allowed {
            return Ok(None);
        }
        let Some(short) = self.ids.room(room_id)? else {
            return Ok(None);
        };
        let Some(snapshot) = self.state.room_current(short)? else {
            return Ok(None);
        };
        let state = self.state.load(snapshot)?;
        let power = self.power_levels(&rules, &state)?;
        for (member, membership) in self.members(room_id)? {
            if membership == Membership::Join
                && member.server_name() == self.server_name
                && power.user_can_invite(&member)
            {
                return Ok(Some(member));
            }
        }
        Ok(None)
    }
}
