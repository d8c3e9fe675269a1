//! Membership handlers (Client-Server API: "Room membership").

use std::collections::BTreeMap;

use axum::extract::State;
use ruma::{
    api::client::knock::knock_room,
    api::client::membership::{
        ban_user, forget_room, get_member_events, invite_user, join_room_by_id,
        join_room_by_id_or_alias, joined_members, joined_rooms, kick_user, leave_room, unban_user,
    },
    events::room::member::MembershipState,
    OwnedRoomId, OwnedRoomOrAliasId, OwnedServerName, OwnedUserId,
};
use serde_json::Value;

use super::rooms::{member_profile, raw};
use crate::{
    api::ruma::Ruma,
    error::{Error, Result},
    rooms::{self, Change, Membership},
    AppState,
};

/// Joins locally when this server is in the room; otherwise through one
/// of `via`, the room id's server, the inviter's server, or the servers
/// our (possibly stale) copy of the room names (Server-Server API "Joining
/// Rooms").
async fn join(
    state: &AppState,
    user_id: &OwnedUserId,
    room_id: &OwnedRoomId,
    reason: Option<String>,
    via: Vec<OwnedServerName>,
) -> Result<()> {
    let profile = member_profile(state, user_id);
    let remote = match &state.federation {
        Some(federation) if !state.rooms.participates(room_id)? => {
            let servers = servers_for(state, room_id, user_id, via)?;
            (!servers.is_empty()).then_some((federation, servers))
        }
        _ => None,
    };
    let Some((federation, servers)) = remote else {
        state
            .rooms
            .change_membership(room_id, user_id, user_id, Change::Join(profile), reason)
            .await?;
        return Ok(());
    };
    let content = remote_member_content(&profile, "join", reason);
    federation
        .join_remote(&state.rooms, user_id, room_id, &servers, content)
        .await?;
    Ok(())
}

/// The member content we add to a resident server's template: the same
/// profile fields a local membership event carries, and the reason.
fn remote_member_content(
    profile: &rooms::MemberProfile,
    membership: &str,
    reason: Option<String>,
) -> serde_json::Map<String, serde_json::Value> {
    let mut content = match profile.member_content(membership, false) {
        serde_json::Value::Object(content) => content,
        _ => serde_json::Map::new(),
    };
    if let Some(reason) = reason {
        content.insert("reason".to_owned(), reason.into());
    }
    content
}

/// Other servers that may be in the room, best first, ours left out.
fn servers_for(
    state: &AppState,
    room_id: &OwnedRoomId,
    user_id: &OwnedUserId,
    via: Vec<OwnedServerName>,
) -> Result<Vec<OwnedServerName>> {
    let mut servers = via;
    if let Some(invite) = state.rooms.current_state_event(
        room_id,
        &ruma::events::StateEventType::RoomMember,
        user_id.as_str(),
    )? {
        servers.push(invite.sender.server_name().to_owned());
    }
    if let Some(server) = room_id.server_name() {
        servers.push(server.to_owned());
    }
    servers.extend(state.rooms.servers_in_room(room_id)?);
    Ok(crate::federation::candidate_servers(
        state.rooms.server_name(),
        servers,
    ))
}

pub async fn join_by_id(
    State(state): State<AppState>,
    request: Ruma<join_room_by_id::v3::Request>,
) -> Result<join_room_by_id::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    join(
        &state,
        &session.user_id,
        &body.room_id,
        body.reason.clone(),
        Vec::new(),
    )
    .await?;
    Ok(join_room_by_id::v3::Response::new(body.room_id.clone()))
}

pub async fn join_by_id_or_alias(
    State(state): State<AppState>,
    request: Ruma<join_room_by_id_or_alias::v3::Request>,
) -> Result<join_room_by_id_or_alias::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let (room_id, mut servers) = room_and_servers(&state, &body.room_id_or_alias).await?;
    servers.splice(0..0, body.via.iter().cloned());
    join(
        &state,
        &session.user_id,
        &room_id,
        body.reason.clone(),
        servers,
    )
    .await?;
    Ok(join_room_by_id_or_alias::v3::Response::new(room_id))
}

/// The room a `roomIdOrAlias` path names: an id as it is, an alias resolved
/// (other servers' aliases with `query/directory`), with the servers the
/// alias names.
async fn room_and_servers(
    state: &AppState,
    room_id_or_alias: &OwnedRoomOrAliasId,
) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
    match OwnedRoomId::try_from(room_id_or_alias.clone()) {
        Ok(room_id) => Ok((room_id, Vec::new())),
        Err(alias) => match &state.federation {
            Some(federation) if alias.server_name() != state.rooms.server_name() => {
                federation.resolve_alias(&alias).await
            }
            _ => {
                let resolved = state.directory.resolve_alias(&alias)?;
                Ok((resolved.room_id, resolved.servers))
            }
        },
    }
}

/// `/knock/{roomIdOrAlias}`: asks to join a room whose join rule is `knock`.
pub async fn knock(
    State(state): State<AppState>,
    request: Ruma<knock_room::v3::Request>,
) -> Result<knock_room::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let (room_id, mut servers) = room_and_servers(&state, &body.room_id_or_alias).await?;
    let profile = member_profile(&state, &session.user_id);
    if let Some(federation) = &state.federation {
        if !state.rooms.participates(&room_id)? {
            servers.splice(0..0, body.via.iter().cloned());
            let servers = servers_for(&state, &room_id, &session.user_id, servers)?;
            if !servers.is_empty() {
                let content = remote_member_content(&profile, "knock", body.reason.clone());
                let (version, knock, stripped) = federation
                    .knock_remote(&session.user_id, &room_id, &servers, content)
                    .await?;
                let stripped = stripped
                    .into_iter()
                    .map(crate::api::federation::membership::stripped_form)
                    .collect();
                state
                    .rooms
                    .record_outside_membership(&version, knock, Some(stripped))
                    .await?;
                return Ok(knock_room::v3::Response::new(room_id));
            }
        }
    }
    state
        .rooms
        .change_membership(
            &room_id,
            &session.user_id,
            &session.user_id,
            Change::Knock(profile),
            body.reason.clone(),
        )
        .await?;
    Ok(knock_room::v3::Response::new(room_id))
}

pub async fn invite(
    State(state): State<AppState>,
    request: Ruma<invite_user::v3::Request>,
) -> Result<invite_user::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let invite_user::v3::InvitationRecipient::UserId(recipient) = &body.recipient else {
        return Err(Error::new(
            axum::http::StatusCode::BAD_REQUEST,
            ruma::api::error::ErrorKind::Unrecognized,
            "Third-party invites are not supported",
        ));
    };
    if !state.accounts.is_local(&recipient.user_id) {
        invite_remote_user(
            &state,
            &body.room_id,
            &session.user_id,
            &recipient.user_id,
            recipient.reason.clone(),
            false,
        )
        .await?;
        return Ok(invite_user::v3::Response::new());
    }
    if !state.accounts.exists(&recipient.user_id)? {
        return Err(Error::not_found(format!(
            "Unknown user {}",
            recipient.user_id
        )));
    }
    let change = Change::Invite { is_direct: false };
    state
        .rooms
        .change_membership(
            &body.room_id,
            &session.user_id,
            &recipient.user_id,
            change,
            recipient.reason.clone(),
        )
        .await?;
    Ok(invite_user::v3::Response::new())
}

/// Invites another server's user: the invite is built here, countersigned
/// by their server (`/invite`), then stored and sent ("Inviting to a room").
pub(super) async fn invite_remote_user(
    state: &AppState,
    room_id: &OwnedRoomId,
    sender: &OwnedUserId,
    invitee: &OwnedUserId,
    reason: Option<String>,
    is_direct: bool,
) -> Result<()> {
    let Some(federation) = &state.federation else {
        return Err(Error::forbidden(
            "Inviting users of other servers needs federation, which is not enabled here",
        ));
    };
    if state.rooms.membership(room_id, invitee)? == Some(Membership::Join) {
        return Err(Error::forbidden(format!(
            "{invitee} is already in the room"
        )));
    }
    let mut content = serde_json::json!({ "membership": "invite" });
    if let Some(reason) = reason {
        content["reason"] = reason.into();
    }
    if is_direct {
        content["is_direct"] = true.into();
    }
    let event = rooms::NewEvent {
        kind: ruma::events::TimelineEventType::RoomMember,
        state_key: Some(invitee.to_string()),
        content: serde_json::value::to_raw_value(&content)
            .map_err(|e| Error::internal(e.to_string()))?,
        redacts: None,
    };
    let invite = state.rooms.build_unstored(room_id, sender, event).await?;
    federation.invite_remote(&state.rooms, invite).await?;
    Ok(())
}

/// One membership change by the caller, as the kick/ban/unban/leave endpoints ask.
async fn change<T>(
    state: &AppState,
    request: &Ruma<T>,
    room_id: &OwnedRoomId,
    target: Option<&OwnedUserId>,
    change: Change,
    reason: Option<String>,
) -> Result<()> {
    let session = request.session()?;
    let target = target.unwrap_or(&session.user_id);
    state
        .rooms
        .change_membership(room_id, &session.user_id, target, change, reason)
        .await?;
    Ok(())
}

pub async fn leave(
    State(state): State<AppState>,
    request: Ruma<leave_room::v3::Request>,
) -> Result<leave_room::v3::Response> {
    let (room_id, reason) = (&request.body.room_id, request.body.reason.clone());
    // Rejecting an invite to a room this server is not in: through the
    // inviting server ("Leaving Rooms (Rejecting Invites)").
    if let Some(federation) = &state.federation {
        let user_id = &request.session()?.user_id;
        if !state.rooms.participates(room_id)?
            && state.rooms.membership(room_id, user_id)?.is_some()
        {
            let servers = servers_for(&state, room_id, user_id, Vec::new())?;
            if !servers.is_empty() {
                let (version, leave) = federation.leave_remote(user_id, room_id, &servers).await?;
                state
                    .rooms
                    .record_outside_membership(&version, leave, None)
                    .await?;
                return Ok(leave_room::v3::Response::new());
            }
        }
    }
    change(&state, &request, room_id, None, Change::Leave, reason).await?;
    Ok(leave_room::v3::Response::new())
}

pub async fn kick(
    State(state): State<AppState>,
    request: Ruma<kick_user::v3::Request>,
) -> Result<kick_user::v3::Response> {
    let body = &request.body;
    change(
        &state,
        &request,
        &body.room_id,
        Some(&body.user_id),
        Change::Kick,
        body.reason.clone(),
    )
    .await?;
    Ok(kick_user::v3::Response::new())
}

pub async fn ban(
    State(state): State<AppState>,
    request: Ruma<ban_user::v3::Request>,
) -> Result<ban_user::v3::Response> {
    let body = &request.body;
    change(
        &state,
        &request,
        &body.room_id,
        Some(&body.user_id),
        Change::Ban,
        body.reason.clone(),
    )
    .await?;
    Ok(ban_user::v3::Response::new())
}

pub async fn unban(
    State(state): State<AppState>,
    request: Ruma<unban_user::v3::Request>,
) -> Result<unban_user::v3::Response> {
    let body = &request.body;
    let reason = body.reason.clone();
    change(
        &state,
        &request,
        &body.room_id,
        Some(&body.user_id),
        Change::Unban,
        reason,
    )
    .await?;
    Ok(unban_user::v3::Response::new())
}

/// `/forget`: only a room the user has left; the room then no longer appears for them.
pub async fn forget(
    State(state): State<AppState>,
    request: Ruma<forget_room::v3::Request>,
) -> Result<forget_room::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    state.rooms.forget(&body.room_id, &session.user_id).await?;
    Ok(forget_room::v3::Response::new())
}

pub async fn joined(
    State(state): State<AppState>,
    request: Ruma<joined_rooms::v3::Request>,
) -> Result<joined_rooms::v3::Response> {
    let session = request.session()?;
    Ok(joined_rooms::v3::Response::new(
        state.rooms.joined_rooms(&session.user_id)?,
    ))
}

/// `/members`: the member events of the state the user may see, filtered.
pub async fn members(
    State(state): State<AppState>,
    request: Ruma<get_member_events::v3::Request>,
) -> Result<get_member_events::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let wanted = |m: &str| {
        body.membership
            .as_ref()
            .is_none_or(|w: &MembershipState| w.as_str() == m)
            && body
                .not_membership
                .as_ref()
                .is_none_or(|n: &MembershipState| n.as_str() != m)
    };
    let mut chunk = Vec::new();
    let room_state = match &body.at {
        Some(token) => {
            let position = rooms::parse_token(token)
                .ok_or_else(|| Error::invalid_param(format!("Invalid token {token}")))?;
            state
                .rooms
                .state_at_position(&session.user_id, &body.room_id, position)?
        }
        None => state.rooms.state_for(&session.user_id, &body.room_id)?,
    };
    for pdu in room_state {
        if pdu.kind != ruma::events::TimelineEventType::RoomMember {
            continue;
        }
        let content: Value = serde_json::from_str(pdu.content.get()).unwrap_or_default();
        let membership = content
            .get("membership")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if wanted(membership) {
            chunk.push(raw(&pdu.to_client_event())?);
        }
    }
    Ok(get_member_events::v3::Response::new(chunk))
}

pub async fn joined_members_list(
    State(state): State<AppState>,
    request: Ruma<joined_members::v3::Request>,
) -> Result<joined_members::v3::Response> {
    let session = request.session()?;
    let room_id = &request.body.room_id;
    if !state.rooms.is_joined(room_id, &session.user_id)? {
        return Err(Error::forbidden("You are not in this room"));
    }
    let mut joined = BTreeMap::new();
    for (user_id, membership) in state.rooms.members(room_id)? {
        if membership != Membership::Join {
            continue;
        }
        let mut member = joined_members::v3::RoomMember::new();
        if let Some(event) = state.rooms.current_state_event(
            room_id,
            &ruma::events::StateEventType::RoomMember,
            user_id.as_str(),
        )? {
            let content: Value = serde_json::from_str(event.content.get()).unwrap_or_default();
            member.display_name = content
                .get("displayname")
                .and_then(Value::as_str)
                .map(str::to_owned);
            member.avatar_url = content
                .get("avatar_url")
                .and_then(Value::as_str)
                .map(Into::into);
        }
        joined.insert(user_id, member);
    }
    Ok(joined_members::v3::Response::new(joined))
}
