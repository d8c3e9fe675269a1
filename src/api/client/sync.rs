//! `GET /sync` and filters (Client-Server API "Syncing", "Filtering"): the
//! logic is in `crate::sync`.

use axum::extract::State;
use ruma::api::client::{
    filter::{create_filter, get_filter},
    sync::sync_events,
};

use crate::{
    api::ruma::Ruma,
    error::{Error, Result},
    rooms::parse_token,
    sync::SyncRequest,
    AppState,
};

pub async fn sync(
    State(state): State<AppState>,
    request: Ruma<sync_events::v3::Request>,
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
        use_state_after: body.use_state_after,
    };
    state.sync.sync(&state.rooms, &user, request).await
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
