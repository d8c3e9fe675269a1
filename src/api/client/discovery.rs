//! What a client asks before anything else: `/versions`, `/.well-known/matrix/*`
//! (Client-Server API: "Server Discovery", "API Standards") and `/capabilities`.

use std::collections::BTreeMap;

use axum::{extract::State, response::IntoResponse, Json};
use ruma::{
    api::client::discovery::{
        get_capabilities::{
            self,
            v3::{
                Capabilities, ProfileFieldsCapability, RoomVersionStability, RoomVersionsCapability,
            },
        },
        get_supported_versions,
    },
    RoomVersionId,
};
use serde_json::json;

use crate::{
    api::ruma::Ruma,
    error::{Error, Result},
    AppState,
};

/// The spec versions whose Client-Server API this server implements.
/// Room, sync, E2EE and media endpoints land issue by issue; until they do they
/// answer 404 `M_UNRECOGNIZED`, which clients treat as "not supported".
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8",
    "v1.9", "v1.10", "v1.11", "v1.12",
];

pub async fn versions(
    State(_state): State<AppState>,
    _request: Ruma<get_supported_versions::Request>,
) -> Result<get_supported_versions::Response> {
    let mut response = get_supported_versions::Response::new(
        SUPPORTED_VERSIONS.iter().map(|v| (*v).to_owned()).collect(),
    );
    response.unstable_features = BTreeMap::new();
    Ok(response)
}

pub async fn capabilities(
    State(_state): State<AppState>,
    request: Ruma<get_capabilities::v3::Request>,
) -> Result<get_capabilities::v3::Response> {
    request.session()?;
    let mut capabilities = Capabilities::new();
    capabilities.change_password.enabled = true;
    capabilities.profile_fields = Some(ProfileFieldsCapability::new(true));
    // Still read by clients that predate extended profiles (Matrix 1.16).
    #[allow(deprecated)]
    {
        capabilities.set_displayname.enabled = true;
        capabilities.set_avatar_url.enabled = true;
    }
    capabilities.thirdparty_id_changes.enabled = false;
    capabilities.get_login_token.enabled = false;
    capabilities.room_versions = RoomVersionsCapability::new(
        RoomVersionId::V12,
        [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12]
            .into_iter()
            .map(|v| (v, RoomVersionStability::Stable))
            .collect(),
    );
    Ok(get_capabilities::v3::Response::new(capabilities))
}

/// `/.well-known/matrix/client`: only when an operator configured a base URL.
pub async fn well_known_client(State(state): State<AppState>) -> impl IntoResponse {
    match &state.config.well_known.client {
        Some(base_url) => Ok(Json(json!({ "m.homeserver": { "base_url": base_url } }))),
        None => Err(Error::not_found(
            "No client discovery information is configured",
        )),
    }
}

/// `/.well-known/matrix/server`: delegation of federation to `host[:port]`.
pub async fn well_known_server(State(state): State<AppState>) -> impl IntoResponse {
    match &state.config.well_known.server {
        Some(server) => Ok(Json(json!({ "m.server": server }))),
        None => Err(Error::not_found("No server delegation is configured")),
    }
}
