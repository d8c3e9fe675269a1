//! `GET /_matrix/federation/v1/query/{directory,profile}` (Server-Server
//! API "Querying for information"): our aliases and our users' profiles.

use axum::extract::State;
use ruma::api::federation::query::{get_profile_information, get_room_information};

use crate::{
    api::ruma::Ruma,
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
