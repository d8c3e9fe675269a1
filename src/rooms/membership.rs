//! Membership changes of local users in local rooms (Client-Server API: "Room
//! membership"). Every change is an `m.room.member` event, so the auth rules
//! decide who may do what; here we only build the right content.

use ruma::{events::TimelineEventType, OwnedEventId, RoomId, UserId};
use serde_json::{json, Value};

use super::{Membership, NewEvent, Rooms, Txn};
use crate::error::{Error, Result};

/// The profile copied into a user's own membership events.
#[derive(Debug, Clone, Default)]
pub struct MemberProfile {
    pub displayname: Option<String>,
    pub avatar_url: Option<String>,
}

impl MemberProfile {
    pub fn member_content(&self, membership: &str, is_direct: bool) -> Value {
        let mut content = json!({ "membership": membership });
        if let Some(name) = &self.displayname {
            content["displayname"] = json!(name);
        }
        if let Some(url) = &self.avatar_url {
            content["avatar_url"] = json!(url);
        }
        if is_direct {
            content["is_direct"] = json!(true);
        }
        content
    }
}

/// A membership change one user makes to another's (or their own) membership.
pub enum Change {
    Join(MemberProfile),
    Knock(MemberProfile),
    Leave,
    Invite { is_direct: bool },
    Kick,
    Ban,
    Unban,
}

impl Rooms {
    /// Applies `change` by `sender` to `target` and returns the membership event.
    pub async fn change_membership(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        target: &UserId,
        change: Change,
        reason: Option<String>,
    ) -> Result<OwnedEventId> {
        if self.room_info(room_id)?.is_none() {
            return Err(
                if room_id.server_name().is_some_and(|s| s != self.server_name) {
                    Error::new(
                        axum::http::StatusCode::NOT_FOUND,
                        ruma::api::error::ErrorKind::NotFound,
                        "This room is on another server, and federation is not enabled here",
                    )
                } else {
                    Error::not_found("Unknown room")
                },
            );
        }
        let current = self.membership(room_id, target)?;
        let mut content = match &change {
            Change::Join(profile) => profile.member_content("join", false),
            Change::Knock(profile) => profile.member_content("knock", false),
            Change::Leave | Change::Kick | Change::Unban => json!({ "membership": "leave" }),
            Change::Invite { is_direct } => {
                if current == Some(Membership::Join) {
                    return Err(Error::forbidden(format!("{target} is already in the room")));
                }
                MemberProfile::default().member_content("invite", *is_direct)
            }
            Change::Ban => json!({ "membership": "ban" }),
        };
        match change {
            Change::Unban if current != Some(Membership::Ban) => {
                return Err(Error::forbidden(format!("{target} is not banned")));
            }
            Change::Kick
                if !matches!(
                    current,
                    Some(Membership::Join | Membership::Invite | Membership::Knock)
                ) =>
            {
                return Err(Error::forbidden(format!("{target} is not in the room")));
            }
            Change::Leave if current.is_none() => {
                return Err(Error::forbidden("You are not in this room"));
            }
            _ => {}
        }
        if let Some(reason) = reason {
            content["reason"] = json!(reason);
        }
        if matches!(change, Change::Join(_)) {
            if let Some(authoriser) = self.join_authoriser(room_id, target)? {
                content["join_authorised_via_users_server"] = json!(authoriser);
            }
        }
        let event = NewEvent {
            kind: TimelineEventType::RoomMember,
            state_key: Some(target.to_string()),
            content: serde_json::value::to_raw_value(&content)
                .map_err(|e| Error::internal(format!("membership content: {e}")))?,
            redacts: None,
        };
        self.send(room_id, sender, event, None::<Txn<'_>>).await
    }
}

impl Rooms {
    /// `/forget`: the room leaves the user's own room list; their past
    /// membership stays in the room's state and member index.
    pub async fn forget(&self, room_id: &RoomId, user_id: &UserId) -> Result<()> {
        match self.membership(room_id, user_id)? {
            None => Ok(()),
            Some(Membership::Leave | Membership::Ban) => {
                let mut batch = self.storage.batch();
                batch.delete(
                    &self.user_memberships,
                    &(user_id.to_owned(), room_id.to_owned()),
                );
                self.storage.commit(batch).await?;
                Ok(())
            }
            Some(_) => Err(Error::new(
                axum::http::StatusCode::BAD_REQUEST,
                ruma::api::error::ErrorKind::Unknown,
                "Leave the room before forgetting it",
            )),
        }
    }
}
