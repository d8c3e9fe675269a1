//! Room alias and room directory handlers (Client-Server API: "Room aliases",
//! "Room directory", "Published room directory"). The rules live in
//! `crate::directory`.

use axum::extract::State;
use ruma::{
    api::client::{
        alias::{create_alias, delete_alias, get_alias},
        directory::{
            get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility,
        },
        room::{aliases, Visibility},
    },
    directory::{Filter, RoomNetwork},
    UInt,
};

use crate::{
    accounts::Session,
    api::ruma::Ruma,
    directory::{PublicRoomsPage, PublicRoomsQuery, Requester},
    error::{Error, Result},
    AppState,
};

/// The caller as the directory rules see them (server administrators may
/// manage any alias or room listing).
fn requester<'a>(state: &AppState, session: &'a Session) -> Result<Requester<'a>> {
    let is_admin = state
        .accounts
        .account(&session.user_id)?
        .is_some_and(|account| account.admin);
    Ok(Requester {
        user_id: &session.user_id,
        is_admin,
    })
}

pub async fn set_alias(
    State(state): State<AppState>,
    request: Ruma<create_alias::v3::Request>,
) -> Result<create_alias::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    state
        .directory
        .create_alias(
            &state.rooms,
            requester(&state, session)?,
            &body.room_alias,
            &body.room_id,
        )
        .await?;
    Ok(create_alias::v3::Response::new())
}

pub async fn get_alias(
    State(state): State<AppState>,
    request: Ruma<get_alias::v3::Request>,
) -> Result<get_alias::v3::Response> {
    let alias = &request.body.room_alias;
    if let Some(federation) = remote_directory(&state, Some(alias.server_name())) {
        let (room_id, servers) = federation.resolve_alias(alias).await?;
        return Ok(get_alias::v3::Response::new(room_id, servers));
    }
    let resolved = state.directory.resolve_alias(alias)?;
    Ok(get_alias::v3::Response::new(
        resolved.room_id,
        resolved.servers,
    ))
}

pub async fn delete_alias(
    State(state): State<AppState>,
    request: Ruma<delete_alias::v3::Request>,
) -> Result<delete_alias::v3::Response> {
    let session = request.session()?;
    state
        .directory
        .delete_alias(
            &state.rooms,
            requester(&state, session)?,
            &request.body.room_alias,
        )
        .await?;
    Ok(delete_alias::v3::Response::new())
}

pub async fn room_aliases(
    State(state): State<AppState>,
    request: Ruma<aliases::v3::Request>,
) -> Result<aliases::v3::Response> {
    let session = request.session()?;
    let aliases =
        state
            .directory
            .local_aliases(&state.rooms, &session.user_id, &request.body.room_id)?;
    Ok(aliases::v3::Response::new(aliases))
}

pub async fn get_visibility(
    State(state): State<AppState>,
    request: Ruma<get_room_visibility::v3::Request>,
) -> Result<get_room_visibility::v3::Response> {
    let published = state
        .directory
        .is_published(&state.rooms, &request.body.room_id)?;
    Ok(get_room_visibility::v3::Response::new(if published {
        Visibility::Public
    } else {
        Visibility::Private
    }))
}

pub async fn set_visibility(
    State(state): State<AppState>,
    request: Ruma<set_room_visibility::v3::Request>,
) -> Result<set_room_visibility::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let published = match &body.visibility {
        Visibility::Public => true,
        Visibility::Private => false,
        other => {
            return Err(Error::invalid_param(format!(
                "Unknown visibility {}",
                other.as_str()
            )))
        }
    };
    state
        .directory
        .set_visibility(
            &state.rooms,
            requester(&state, session)?,
            &body.room_id,
            published,
        )
        .await?;
    Ok(set_room_visibility::v3::Response::new())
}

/// `GET /publicRooms`: no filter, Matrix rooms only; no access token.
pub async fn public_rooms(
    State(state): State<AppState>,
    request: Ruma<get_public_rooms::v3::Request>,
) -> Result<get_public_rooms::v3::Response> {
    let body = &request.body;
    let mut response = get_public_rooms::v3::Response::new(Vec::new());
    (
        response.chunk,
        response.next_batch,
        response.prev_batch,
        response.total_room_count_estimate,
    ) = directory_page(
        &state,
        body.server.as_deref(),
        body.limit,
        body.since.as_deref(),
        &Filter::new(),
        &RoomNetwork::Matrix,
    )
    .await?;
    Ok(response)
}

/// `POST /publicRooms`: with `filter` and `include_all_networks` /
/// `third_party_instance_id`.
pub async fn public_rooms_filtered(
    State(state): State<AppState>,
    request: Ruma<get_public_rooms_filtered::v3::Request>,
) -> Result<get_public_rooms_filtered::v3::Response> {
    let body = &request.body;
    let mut response = get_public_rooms_filtered::v3::Response::new();
    (
        response.chunk,
        response.next_batch,
        response.prev_batch,
        response.total_room_count_estimate,
    ) = directory_page(
        &state,
        body.server.as_deref(),
        body.limit,
        body.since.as_deref(),
        &body.filter,
        &body.room_network,
    )
    .await?;
    Ok(response)
}

/// A page of `server`'s room directory: ours, or another server's asked
/// over federation (`/publicRooms?server=`).
async fn directory_page(
    state: &AppState,
    server: Option<&ruma::ServerName>,
    limit: Option<UInt>,
    since: Option<&str>,
    filter: &Filter,
    network: &RoomNetwork,
) -> Result<PageParts> {
    if let (Some(remote), Some(server)) = (remote_directory(state, server), server) {
        let answer = remote
            .public_rooms(
                server,
                limit,
                since.map(str::to_owned),
                filter.clone(),
                network.clone(),
            )
            .await?;
        return Ok((
            answer.chunk,
            answer.next_batch,
            answer.prev_batch,
            answer.total_room_count_estimate,
        ));
    }
    local_directory_page(state, server, limit, since, filter, network)
}

/// A page of our own room directory (also what other servers get).
pub(crate) fn local_directory_page(
    state: &AppState,
    server: Option<&ruma::ServerName>,
    limit: Option<UInt>,
    since: Option<&str>,
    filter: &Filter,
    network: &RoomNetwork,
) -> Result<PageParts> {
    let page = state.directory.public_rooms(
        &state.rooms,
        PublicRoomsQuery {
            server,
            limit,
            since,
            filter,
            network,
        },
    )?;
    Ok(page_parts(page))
}

/// The federation service when `server` names another server's directory.
fn remote_directory<'a>(
    state: &'a AppState,
    server: Option<&ruma::ServerName>,
) -> Option<&'a crate::federation::Federation> {
    let server = server?;
    if server == state.rooms.server_name() {
        return None;
    }
    state.federation.as_deref()
}

pub(crate) type PageParts = (
    Vec<ruma::directory::PublicRoomsChunk>,
    Option<String>,
    Option<String>,
    Option<UInt>,
);

pub(crate) fn page_parts(page: PublicRoomsPage) -> PageParts {
    (
        page.chunk,
        page.next_batch,
        page.prev_batch,
        Some(UInt::new_saturating(page.total_room_count_estimate)),
    )
}
