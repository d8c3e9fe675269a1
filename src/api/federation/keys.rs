//! `GET /_matrix/key/v2/server` (Server-Server API, "Retrieving server
//! keys"): our verify keys, self-signed, for other servers to check our
//! request and event signatures with; and `/_matrix/key/v2/query`, where we
//! act as a notary for the keys of other servers.

use axum::extract::State;
use ruma::{
    api::federation::discovery::{
        get_remote_server_keys, get_remote_server_keys_batch, get_server_keys,
    },
    MilliSecondsSinceUnixEpoch,
};

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

/// `GET /_matrix/key/v2/query/{serverName}` (notary, "Querying Keys Through
/// Another Server"): the server's keys as it served them to us, countersigned.
pub async fn notary_one(
    State(state): State<AppState>,
    request: Ruma<get_remote_server_keys::v2::Request>,
) -> Result<get_remote_server_keys::v2::Response> {
    let federation = super::federation_of(&state)?;
    let body = &request.body;
    let found = federation
        .notary_keys(&body.server_name, Some(body.minimum_valid_until_ts))
        .await?;
    Ok(get_remote_server_keys::v2::Response::new(
        found.into_iter().collect(),
    ))
}

/// `POST /_matrix/key/v2/query` (notary): several servers at once. Servers
/// we cannot reach and know nothing of are left out, as the spec allows.
pub async fn notary_batch(
    State(state): State<AppState>,
    request: Ruma<get_remote_server_keys_batch::v2::Request>,
) -> Result<get_remote_server_keys_batch::v2::Response> {
    let federation = super::federation_of(&state)?;
    let mut found = Vec::new();
    for (server, wanted) in &request.body.server_keys {
        let minimum = wanted
            .values()
            .filter_map(|criteria| criteria.minimum_valid_until_ts)
            .max();
        if let Some(keys) = federation.notary_keys(server, minimum).await? {
            found.push(keys);
        }
    }
    Ok(get_remote_server_keys_batch::v2::Response::new(found))
}
