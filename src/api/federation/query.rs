//! `GET /_matrix/federation/v1/query/{directory,profile}` (Server-Server
//! API "Querying for information"): our aliases and our users' profiles;
//! `publicRooms` ("Public Room Directory"): our published rooms.

use axum::extract::State;
use ruma::{
    api::federation::{
        directory::{get_public_rooms, get_public_rooms_filtered},
        query::{get_profile_information, get_room_information},
    },
    directory::Filter,
};

use crate::{
    api::{client::directory::local_directory_page, ruma::Ruma},
    error::{Error, Result},
    AppState,
};

pub async fn directory(
    State(state): State<AppState>,
    request: Ruma<get_room_information::v1::Request>,
) -> Result<get_room_information::v1::Response> {
    request.origin()?;
    let alias = &request.body.room_alias;
    if alias.server_name() != state.rooms.server_name() {
        return Err(Error::not_found("That alias is not on this server"));
    }
    let resolved = state.directory.resolve_alias(alias)?;
    let mut servers = state.rooms.servers_in_room(&resolved.room_id)?;
    // Ours first: the asking server tries them in order.
    servers.retain(|s| s != state.rooms.server_name());
    servers.insert(0, state.rooms.server_name().clone());
    Ok(get_room_information::v1::Response::new(
        resolved.room_id,
        servers,
    ))
}

pub async fn profile(
    State(state): State<AppState>,
    request: Ruma<get_profile_information::v1::Request>,
) -> Result<get_profile_information::v1::Response> {
    request.origin()?;
    let body = &request.body;
    if !state.accounts.is_local(&body.user_id) {
        return Err(Error::not_found("That user is not on this server"));
    }
    let profile = state.accounts.profile(&body.user_id)?;
    let mut response = get_profile_information::v1::Response::new();
    for (field, value) in profile {
        if body.field.as_ref().is_none_or(|f| f.as_str() == field) {
            response.data.set(field, value);
        }
    }
    Ok(response)
}

/// `GET /_matrix/federation/v1/publicRooms`.
pub async fn public_rooms(
    State(state): State<AppState>,
    request: Ruma<get_public_rooms::v1::Request>,
) -> Result<get_public_rooms::v1::Response> {
    request.origin()?;
    let body = &request.body;
    let mut response = get_public_rooms::v1::Response::new();
    (
        response.chunk,
        response.next_batch,
        response.prev_batch,
        response.total_room_count_estimate,
    ) = local_directory_page(
        &state,
        None,
        body.limit,
        body.since.as_deref(),
        &Filter::new(),
        &body.room_network,
    )?;
    Ok(response)
}

/// `POST /_matrix/federation/v1/publicRooms`, with a filter.
pub async fn public_rooms_filtered(
    State(state): State<AppState>,
    request: Ruma<get_public_rooms_filtered::v1::Request>,
) -> Result<get_public_rooms_filtered::v1::Response> {
    request.origin()?;
    let body = &request.body;
    let mut response = get_public_rooms_filtered::v1::Response::new();
    (
        response.chunk,
        response.next_batch,
        response.prev_batch,
        response.total_room_count_estimate,
    ) = local_directory_page(
        &state,
        None,
        body.limit,
        body.since.as_deref(),
        &body.filter,
        &body.room_network,
    )?;
    Ok(response)
}
