//! `GET /_matrix/key/v2/server` (Server-Server API, "Retrieving server
//! keys"): our verify keys, self-signed, for other servers to check our
//! request and event signatures with.

use axum::extract::State;
use ruma::{api::federation::discovery::get_server_keys, MilliSecondsSinceUnixEpoch};

use crate::{api::ruma::Ruma, error::Result, server_keys, AppState};

pub async fn server_keys(
    State(state): State<AppState>,
    _request: Ruma<get_server_keys::v2::Request>,
) -> Result<get_server_keys::v2::Response> {
    let keys = server_keys::published_keys(
        &state.signing_key,
        &state.config.server_name,
        MilliSecondsSinceUnixEpoch::now(),
    )?;
    Ok(get_server_keys::v2::Response::new(keys))
}
