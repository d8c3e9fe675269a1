//! `PUT/GET /presence/{userId}/status` (Client-Server API, module
//! "Presence"): the logic is in `crate::presence`.
//!
//! `GET` is allowed for yourself and for users you share a joined room with
//! (as Synapse); anyone else gets 403 `M_FORBIDDEN` ("You are not allowed to
//! see their presence"), which also avoids confirming that a user exists.

use axum::extract::State;
use ruma::api::client::presence::{get_presence, set_presence};

use crate::{
    api::ruma::Ruma,
    error::{Error, Result},
    AppState,
};

/// `PUT /presence/{userId}/status`: only for yourself (403).
pub async fn set_status(
    State(state): State<AppState>,
    request: Ruma<set_presence::v3::Request>,
) -> Result<set_presence::v3::Response> {
    let sender = &request.session()?.user_id;
    let body = &request.body;
    state.presence.set(
        sender,
        &body.user_id,
        body.presence.clone(),
        body.status_msg.clone(),
    )?;
    Ok(set_presence::v3::Response::new())
}

/// `GET /presence/{userId}/status`.
pub async fn get_status(
    State(state): State<AppState>,
    request: Ruma<get_presence::v3::Request>,
) -> Result<get_presence::v3::Response> {
    let viewer = &request.session()?.user_id;
    let target = &request.body.user_id;
    if !state.presence.may_see(viewer, target)? {
        return Err(Error::forbidden(
            "You are not allowed to see their presence",
        ));
    }
    let status = state.presence.status(target);
    let mut response = get_presence::v3::Response::new(status.presence);
    response.status_msg = status.status_msg;
    response.last_active_ago = status.last_active_ago;
    response.currently_active = status.currently_active;
    Ok(response)
}
