//! Joining, leaving and invites as a resident or invited server
//! (Server-Server API "Joining Rooms", "Leaving Rooms", "Inviting to a
//! room"): thin handlers over `rooms` and `federation`.

use axum::{extract::State, http::StatusCode};
use ruma::{
    api::{
        error::ErrorKind,
        federation::membership::{
            create_invite, create_join_event, create_knock_event, create_leave_event,
            prepare_join_event, prepare_knock_event, prepare_leave_event,
        },
    },
    events::TimelineEventType,
    OwnedServerName, RoomId, ServerName,
};
use serde_json::value::{to_raw_value, RawValue};

use super::federation_of;
use crate::{
    api::ruma::Ruma,
    error::{Error, Result},
    federation::check_acl,
    rooms::{Membership, Outcome, Pdu, Rooms},
    AppState,
};

fn raw(value: &impl serde::Serialize) -> Result<Box<RawValue>> {
    to_raw_value(value).map_err(|e| Error::internal(format!("encoding a PDU: {e}")))
}

/// The user a `make_*` request names must belong to the asking server.
fn check_user_origin(user: &ruma::UserId, origin: &ServerName) -> Result<()> {
    if user.server_name() != origin {
        return Err(Error::forbidden(format!("{origin} may not act for {user}")));
    }
    Ok(())
}

/// The checks every `make_*` request shares, then the room's template for
/// `membership` (`ver`: the versions the asking server supports, if it says).
fn template(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    user_id: &ruma::UserId,
    membership: &str,
    ver: Option<&[ruma::RoomVersionId]>,
) -> Result<(ruma::RoomVersionId, Box<RawValue>)> {
    check_user_origin(user_id, origin)?;
    check_acl(&state.rooms, room_id, origin)?;
    let (version, template) = state
        .rooms
        .membership_template(room_id, user_id, membership, ver)?;
    Ok((version, raw(&template)?))
}

pub async fn make_join(
    State(state): State<AppState>,
    request: Ruma<prepare_join_event::v1::Request>,
) -> Result<prepare_join_event::v1::Response> {
    let body = &request.body;
    let (version, event) = template(
        &state,
        request.origin()?,
        &body.room_id,
        &body.user_id,
        "join",
        Some(&body.ver),
    )?;
    let mut response = prepare_join_event::v1::Response::new(event);
    response.room_version = Some(version);
    Ok(response)
}

pub async fn make_leave(
    State(state): State<AppState>,
    request: Ruma<prepare_leave_event::v1::Request>,
) -> Result<prepare_leave_event::v1::Response> {
    let body = &request.body;
    let (version, event) = template(
        &state,
        request.origin()?,
        &body.room_id,
        &body.user_id,
        "leave",
        None,
    )?;
    Ok(prepare_leave_event::v1::Response::new(Some(version), event))
}

pub async fn make_knock(
    State(state): State<AppState>,
    request: Ruma<prepare_knock_event::v1::Request>,
) -> Result<prepare_knock_event::v1::Response> {
    let body = &request.body;
    let (version, event) = template(
        &state,
        request.origin()?,
        &body.room_id,
        &body.user_id,
        "knock",
        Some(&body.ver),
    )?;
    Ok(prepare_knock_event::v1::Response::new(version, event))
}

/// `PUT /send_knock`: accepts the knock and answers with the room's
/// stripped state, as full PDUs (Matrix 1.16).
pub async fn send_knock(
    State(state): State<AppState>,
    request: Ruma<create_knock_event::v1::Request>,
) -> Result<create_knock_event::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    accept_membership(
        &state,
        origin,
        &body.room_id,
        &body.event_id,
        &body.pdu,
        Membership::Knock,
    )
    .await?;
    let stripped = state
        .rooms
        .stripped_state_pdus(&body.room_id)?
        .iter()
        .map(|p| raw(&*p.json).map(ruma::api::federation::membership::RawStrippedState::Pdu))
        .collect::<Result<_>>()?;
    Ok(create_knock_event::v1::Response::new(stripped))
}

/// Checks and accepts a membership event another server signed for one of
/// its users (`send_join`, `send_leave`), then passes it on to the other
/// servers in the room, as the resident server must.
async fn accept_membership(
    state: &AppState,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &ruma::EventId,
    pdu: &RawValue,
    membership: Membership,
) -> Result<Pdu> {
    let federation = federation_of(state)?;
    check_acl(&state.rooms, room_id, origin)?;
    if !state.rooms.participates(room_id)? {
        return Err(Error::not_found("This server is not in the room"));
    }
    let Some(info) = state.rooms.room_info(room_id)? else {
        return Err(Error::not_found("Unknown room"));
    };
    let pdu = if membership == Membership::Join {
        federation
            .verify_join_countersigned(room_id, &info.version, pdu)
            .await
    } else {
        federation.verify_pdu(room_id, &info.version, pdu).await
    }
    .map_err(Error::bad_json)?;
    if pdu.event_id != event_id {
        return Err(Error::bad_json("The event id does not match the event"));
    }
    let is_membership = pdu.kind == TimelineEventType::RoomMember
        && pdu.state_key.as_deref() == Some(pdu.sender.as_str())
        && Membership::of(&pdu) == Some(membership);
    if !is_membership || pdu.sender.server_name() != origin {
        return Err(Error::bad_json(format!(
            "Not a {membership:?} event of one of {origin}'s users"
        )));
    }
    match state.rooms.accept_remote(pdu.clone(), None).await? {
        Outcome::Accepted | Outcome::AlreadyKnown => {}
        Outcome::SoftFailed(reason) | Outcome::Rejected(reason) => {
            return Err(Error::forbidden(reason));
        }
    }
    let others: Vec<OwnedServerName> = state
        .rooms
        .servers_in_room(room_id)?
        .into_iter()
        .filter(|s| s != origin && s != state.rooms.server_name())
        .collect();
    state
        .rooms
        .forward_to_servers(&pdu.event_id, &others)
        .await?;
    Ok(pdu)
}

pub async fn send_join(
    State(state): State<AppState>,
    request: Ruma<create_join_event::v2::Request>,
) -> Result<create_join_event::v2::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    let join = accept_membership(
        &state,
        origin,
        &body.room_id,
        &body.event_id,
        &body.pdu,
        Membership::Join,
    )
    .await?;
    let (room_state, auth_chain) = state
        .rooms
        .state_and_auth_chain_before(&body.room_id, &join.event_id)?;
    let mut answer = create_join_event::v2::RoomState::new();
    // A restricted join carries our signature now: the joining server needs it.
    if join
        .json
        .get("content")
        .and_then(|c| match c {
            ruma::CanonicalJsonValue::Object(c) => c.get("join_authorised_via_users_server"),
            _ => None,
        })
        .is_some()
    {
        answer.event = Some(raw(&*join.json)?);
    }
    answer.state = room_state
        .iter()
        .map(|p| raw(&*p.json))
        .collect::<Result<_>>()?;
    answer.auth_chain = auth_chain
        .iter()
        .map(|p| raw(&*p.json))
        .collect::<Result<_>>()?;
    answer.servers_in_room = Some(
        state
            .rooms
            .servers_in_room(&body.room_id)?
            .into_iter()
            .map(|s| s.to_string())
            .collect(),
    );
    Ok(create_join_event::v2::Response::new(answer))
}

pub async fn send_leave(
    State(state): State<AppState>,
    request: Ruma<create_leave_event::v2::Request>,
) -> Result<create_leave_event::v2::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    accept_membership(
        &state,
        origin,
        &body.room_id,
        &body.event_id,
        &body.pdu,
        Membership::Leave,
    )
    .await?;
    Ok(create_leave_event::v2::Response::new())
}

/// What a client sees of one piece of invite or knock state: a PDU (as servers send
/// it since Matrix 1.16) cut down to a stripped state event.
pub(crate) fn stripped_form(value: serde_json::Value) -> serde_json::Value {
    let mut out = serde_json::Map::new();
    for field in ["type", "state_key", "content", "sender"] {
        if let Some(v) = value.get(field) {
            out.insert(field.to_owned(), v.clone());
        }
    }
    serde_json::Value::Object(out)
}

/// `PUT /invite/{roomId}/{eventId}` (v2): another server invites one of
/// our users. We check the inviting server's signature, countersign, and
/// show the invite to the user.
pub async fn invite(
    State(state): State<AppState>,
    request: Ruma<create_invite::v2::Request>,
) -> Result<create_invite::v2::Response> {
    let origin = request.origin()?;
    let federation = federation_of(&state)?;
    let body = &request.body;
    if !Rooms::supported_versions().contains(&body.room_version) {
        return Err(Error::new(
            StatusCode::BAD_REQUEST,
            ErrorKind::IncompatibleRoomVersion(
                ruma::api::error::IncompatibleRoomVersionErrorData::new(body.room_version.clone()),
            ),
            format!("Room version {} is not supported here", body.room_version),
        ));
    }
    check_acl(&state.rooms, &body.room_id, origin)?;
    let pdu = federation
        .verify_pdu(&body.room_id, &body.room_version, &body.event)
        .await
        .map_err(Error::bad_json)?;
    if pdu.event_id != body.event_id {
        return Err(Error::bad_json("The event id does not match the event"));
    }
    let invitee = pdu
        .state_key
        .as_deref()
        .and_then(|k| ruma::UserId::parse(k).ok());
    let is_invite = pdu.kind == TimelineEventType::RoomMember
        && Membership::of(&pdu) == Some(Membership::Invite);
    let Some(invitee) = invitee.filter(|_| is_invite) else {
        return Err(Error::bad_json("Not an invite event"));
    };
    if pdu.sender.server_name() != origin {
        return Err(Error::forbidden(
            "The invite's sender is not on the calling server",
        ));
    }
    if !state.accounts.is_local(&invitee) || !state.accounts.exists(&invitee)? {
        return Err(Error::not_found(format!("Unknown user {invitee}")));
    }
    let signed = federation.countersign(&body.room_id, &body.room_version, pdu)?;
    let stripped: Vec<serde_json::Value> = body
        .invite_room_state
        .iter()
        .filter_map(|s| serde_json::to_value(s).ok())
        .map(stripped_form)
        .collect();
    state
        .rooms
        .record_outside_membership(&body.room_version, signed.clone(), Some(stripped))
        .await?;
    Ok(create_invite::v2::Response::new(raw(&*signed.json)?))
}
