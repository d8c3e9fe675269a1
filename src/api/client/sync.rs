//! `GET /sync` and filters (Client-Server API "Syncing", "Filtering"): the
//! logic is in `crate::sync`.
//!
//! `use_state_after` (Matrix 1.16) is also accepted under its MSC4222 name
//! `org.matrix.msc4222.use_state_after`, which current matrix-js-sdk sends;
//! such a request gets its rooms' `state_after` under the unstable name
//! `org.matrix.msc4222.state_after`, the one that client reads.

use std::collections::BTreeMap;

use axum::{
    body::Body,
    extract::{RawQuery, State},
    response::{IntoResponse, Response},
};
use bytes::BytesMut;
use ruma::api::{
    client::{
        filter::{create_filter, get_filter},
        sync::sync_events,
    },
    OutgoingResponseExt,
};
use serde_json::value::{to_raw_value, RawValue};

use crate::{
    api::ruma::Ruma,
    error::{Error, Result},
    rooms::parse_token,
    sync::SyncRequest,
    AppState,
};

/// MSC4222's unstable names of `use_state_after` and `state_after`.
const UNSTABLE_USE_STATE_AFTER: &str = "org.matrix.msc4222.use_state_after";
const UNSTABLE_STATE_AFTER: &str = "org.matrix.msc4222.state_after";

/// `GET /sync`, mounted with `ruma_with_query` for the MSC4222 parameter.
pub async fn sync(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
    request: Ruma<sync_events::v3::Request>,
) -> Result<Response> {
    let unstable = query.as_deref().is_some_and(|query| {
        query
            .split('&')
            .any(|pair| pair.split_once('=') == Some((UNSTABLE_USE_STATE_AFTER, "true")))
    });
    let response = sync_response(state, request, unstable).await?;
    let http = response
        .try_into_http_response::<BytesMut>()
        .map_err(|e| Error::internal(format!("could not serialize response: {e}")))?;
    if !unstable {
        return Ok(http.map(|body| Body::from(body.freeze())).into_response());
    }
    let (parts, body) = http.into_parts();
    let body = rename_state_after(&body)
        .map_err(|e| Error::internal(format!("could not rename state_after: {e}")))?;
    Ok(Response::from_parts(parts, Body::from(body)))
}

async fn sync_response(
    state: AppState,
    request: Ruma<sync_events::v3::Request>,
    unstable_state_after: bool,
) -> Result<sync_events::v3::Response> {
    let session = request.session()?;
    let (user, device) = (session.user_id.clone(), session.device_id.clone());
    let body = request.body;
    // Heartbeat and `set_presence` for as long as the request runs.
    let _presence = state.presence.syncing(&user, &body.set_presence).await;
    let since = match &body.since {
        Some(token) => Some(
            parse_token(token)
                .ok_or_else(|| Error::invalid_param(format!("Invalid since token {token}")))?,
        ),
        None => None,
    };
    let filter = state.sync.resolve_filter(&user, body.filter.as_ref())?;
    let request = SyncRequest {
        since,
        full_state: body.full_state,
        filter,
        timeout: body.timeout.unwrap_or_default(),
        device: Some(device),
        use_state_after: body.use_state_after || unstable_state_after,
    };
    state.sync.sync(&state.rooms, &user, request).await
}

/// Renames each joined and left room's `state_after` to the MSC4222 name;
/// events stay unparsed (`RawValue`).
fn rename_state_after(body: &[u8]) -> serde_json::Result<Vec<u8>> {
    type Object = BTreeMap<String, Box<RawValue>>;
    let mut top: Object = serde_json::from_slice(body)?;
    if let Some(rooms) = top.get_mut("rooms") {
        let mut sections: Object = serde_json::from_str(rooms.get())?;
        for name in ["join", "leave"] {
            let Some(section) = sections.get_mut(name) else {
                continue;
            };
            let mut by_room: BTreeMap<String, Object> = serde_json::from_str(section.get())?;
            for room in by_room.values_mut() {
                if let Some(state) = room.remove("state_after") {
                    room.insert(UNSTABLE_STATE_AFTER.to_owned(), state);
                }
            }
            *section = to_raw_value(&by_room)?;
        }
        *rooms = to_raw_value(&sections)?;
    }
    serde_json::to_vec(&top)
}

pub async fn create_filter(
    State(state): State<AppState>,
    request: Ruma<create_filter::v3::Request>,
) -> Result<create_filter::v3::Response> {
    let session = request.session()?;
    if session.user_id != request.body.user_id {
        return Err(Error::forbidden("Cannot create filters for other users"));
    }
    let id = state
        .sync
        .create_filter(&session.user_id, &request.body.filter)
        .await?;
    Ok(create_filter::v3::Response::new(id))
}

pub async fn get_filter(
    State(state): State<AppState>,
    request: Ruma<get_filter::v3::Request>,
) -> Result<get_filter::v3::Response> {
    let session = request.session()?;
    if session.user_id != request.body.user_id {
        return Err(Error::forbidden("Cannot read filters of other users"));
    }
    let filter = state
        .sync
        .get_filter(&session.user_id, &request.body.filter_id)?;
    Ok(get_filter::v3::Response::new(filter))
}
