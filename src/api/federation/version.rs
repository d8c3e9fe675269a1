//! `GET /_matrix/federation/v1/version` (Server-Server API, "Server
//! implementation"): which software this server runs.

use axum::extract::State;
use ruma::api::federation::discovery::get_server_version::v1 as get_server_version;

use crate::{api::ruma::Ruma, error::Result, AppState};

/// The name peers see for this implementation.
pub const SERVER_NAME: &str = "Feathur";

pub async fn version(
    State(_state): State<AppState>,
    _request: Ruma<get_server_version::Request>,
) -> Result<get_server_version::Response> {
    let mut server = get_server_version::Server::new();
    server.name = Some(SERVER_NAME.to_owned());
    server.version = Some(env!("CARGO_PKG_VERSION").to_owned());
    let mut response = get_server_version::Response::new();
    response.server = Some(server);
    Ok(response)
}
