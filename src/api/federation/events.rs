//! Reading a room's events and state as another server (Server-Server API
//! "Retrieving events", "Backfilling and retrieving missing events",
//! "Retrieving the authorization chain"). Every answer is limited to what
//! the asking server may see.

use axum::extract::State;
use ruma::{
    api::federation::{
        authorization::get_event_authorization,
        backfill::get_backfill,
        event::{get_event, get_missing_events, get_room_state, get_room_state_ids},
    },
    MilliSecondsSinceUnixEpoch, RoomId, ServerName,
};
use serde_json::value::{to_raw_value, RawValue};

use crate::{
    api::ruma::Ruma,
    error::{Error, Result},
    federation::check_acl,
    AppState,
};

fn raw(value: &impl serde::Serialize) -> Result<Box<RawValue>> {
    to_raw_value(value).map_err(|e| Error::internal(format!("encoding a PDU: {e}")))
}

/// Room-scoped reads need a server that is in the room now and passes its ACL.
fn check_room_access(state: &AppState, room_id: &RoomId, origin: &ServerName) -> Result<()> {
    check_acl(&state.rooms, room_id, origin)?;
    if !state.rooms.server_in_room(origin, room_id)? {
        return Err(Error::forbidden(format!("{origin} is not in the room")));
    }
    Ok(())
}

pub async fn event(
    State(state): State<AppState>,
    request: Ruma<get_event::v1::Request>,
) -> Result<get_event::v1::Response> {
    let origin = request.origin()?;
    let pdu = state
        .rooms
        .get_pdu(&request.body.event_id)?
        .ok_or_else(|| Error::not_found("Unknown event"))?;
    check_acl(&state.rooms, &pdu.room_id, origin)?;
    if !state.rooms.server_can_see(origin, &pdu)? {
        return Err(Error::forbidden("You may not see this event"));
    }
    Ok(get_event::v1::Response::new(
        state.rooms.server_name().clone(),
        MilliSecondsSinceUnixEpoch::now(),
        raw(&*pdu.json)?,
    ))
}

pub async fn state(
    State(state): State<AppState>,
    request: Ruma<get_room_state::v1::Request>,
) -> Result<get_room_state::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    check_room_access(&state, &body.room_id, origin)?;
    let (pdus, auth_chain) = state
        .rooms
        .state_and_auth_chain_before(&body.room_id, &body.event_id)?;
    Ok(get_room_state::v1::Response::new(
        auth_chain
            .iter()
            .map(|p| raw(&*p.json))
            .collect::<Result<_>>()?,
        pdus.iter().map(|p| raw(&*p.json)).collect::<Result<_>>()?,
    ))
}

pub async fn state_ids(
    State(state): State<AppState>,
    request: Ruma<get_room_state_ids::v1::Request>,
) -> Result<get_room_state_ids::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    check_room_access(&state, &body.room_id, origin)?;
    let (pdus, auth_chain) = state
        .rooms
        .state_and_auth_chain_before(&body.room_id, &body.event_id)?;
    Ok(get_room_state_ids::v1::Response::new(
        auth_chain.into_iter().map(|p| p.event_id).collect(),
        pdus.into_iter().map(|p| p.event_id).collect(),
    ))
}

pub async fn event_auth(
    State(state): State<AppState>,
    request: Ruma<get_event_authorization::v1::Request>,
) -> Result<get_event_authorization::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    check_room_access(&state, &body.room_id, origin)?;
    let pdu = state
        .rooms
        .get_pdu(&body.event_id)?
        .filter(|p| p.room_id == body.room_id)
        .ok_or_else(|| Error::not_found("Unknown event"))?;
    if !state.rooms.server_can_see(origin, &pdu)? {
        return Err(Error::forbidden("You may not see this event"));
    }
    let chain = state.rooms.auth_chain_pdus([pdu.event_id])?;
    Ok(get_event_authorization::v1::Response::new(
        chain.iter().map(|p| raw(&*p.json)).collect::<Result<_>>()?,
    ))
}

pub async fn missing_events(
    State(state): State<AppState>,
    request: Ruma<get_missing_events::v1::Request>,
) -> Result<get_missing_events::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    check_room_access(&state, &body.room_id, origin)?;
    let events = state.rooms.missing_events(
        origin,
        &body.room_id,
        &body.earliest_events,
        &body.latest_events,
        usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX),
        u64::from(body.min_depth),
    )?;
    Ok(get_missing_events::v1::Response::new(
        events.iter().map(raw).collect::<Result<_>>()?,
    ))
}

pub async fn backfill(
    State(state): State<AppState>,
    request: Ruma<get_backfill::v1::Request>,
) -> Result<get_backfill::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    check_room_access(&state, &body.room_id, origin)?;
    let events = state.rooms.backfill(
        origin,
        &body.room_id,
        &body.v,
        usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX),
    )?;
    Ok(get_backfill::v1::Response::new(
        state.rooms.server_name().clone(),
        MilliSecondsSinceUnixEpoch::now(),
        events.iter().map(raw).collect::<Result<_>>()?,
    ))
}
