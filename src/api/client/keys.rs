//! `/keys/*` (Client-Server API "End-to-End Encryption"): thin handlers;
//! the logic is in `crate::e2ee`.

use std::collections::BTreeMap;

use axum::{
    extract::State,
    http::{StatusCode, Uri},
};
use ruma::api::{
    client::{
        keys::{
            claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures,
            upload_signing_keys,
        },
        uiaa::{AuthFlow, AuthType},
    },
    error::ErrorKind,
};
use ruma::OwnedUserId;

use crate::{
    accounts::uia::Purpose,
    api::ruma::Ruma,
    e2ee::{SigningKeys, Upload},
    error::{Error, Result},
    rooms::parse_token,
    AppState,
};

pub async fn upload(
    State(state): State<AppState>,
    request: Ruma<upload_keys::v3::Request>,
) -> Result<upload_keys::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let counts = state
        .e2ee
        .upload(Upload {
            user: &session.user_id,
            device: &session.device_id,
            device_keys: body.device_keys.as_ref(),
            one_time_keys: &body.one_time_keys,
            fallback_keys: &body.fallback_keys,
        })
        .await?;
    Ok(upload_keys::v3::Response::new(counts))
}

pub async fn query(
    State(state): State<AppState>,
    request: Ruma<get_keys::v3::Request>,
) -> Result<get_keys::v3::Response> {
    let session = request.session()?;
    let (local, remote) = split_local(&state, &request.body.device_keys);
    let mut response = state
        .e2ee
        .query(&state.accounts, &session.user_id, &local)?;
    if let (Some(federation), false) = (&state.federation, remote.is_empty()) {
        federation.query_remote_keys(&remote, &mut response).await;
    } else {
        add_remote_failures(&remote, &mut response.failures);
    }
    Ok(response)
}

/// `wanted` split into this server's users and other servers' users.
fn split_local<V: Clone>(
    state: &AppState,
    wanted: &BTreeMap<OwnedUserId, V>,
) -> (BTreeMap<OwnedUserId, V>, BTreeMap<OwnedUserId, V>) {
    wanted
        .iter()
        .map(|(u, v)| (u.clone(), v.clone()))
        .partition(|(u, _)| state.accounts.is_local(u))
}

/// Without federation, other servers' users are failures.
fn add_remote_failures<V>(
    remote: &BTreeMap<OwnedUserId, V>,
    failures: &mut BTreeMap<String, serde_json::Value>,
) {
    for user in remote.keys() {
        failures.insert(
            user.server_name().to_string(),
            serde_json::json!({
                "status": 503,
                "message": "Federation is not enabled on this server",
            }),
        );
    }
}

pub async fn claim(
    State(state): State<AppState>,
    request: Ruma<claim_keys::v3::Request>,
) -> Result<claim_keys::v3::Response> {
    request.session()?;
    let (local, remote) = split_local(&state, &request.body.one_time_keys);
    let mut response = state.e2ee.claim(&local).await?;
    if let (Some(federation), false) = (&state.federation, remote.is_empty()) {
        federation.claim_remote_keys(&remote, &mut response).await;
    } else {
        add_remote_failures(&remote, &mut response.failures);
    }
    Ok(response)
}

/// `GET /keys/changes?from&to`: both are `/sync` tokens; `to` beyond the
/// committed position is clamped to it.
pub async fn changes(
    State(state): State<AppState>,
    request: Ruma<get_key_changes::v3::Request>,
) -> Result<get_key_changes::v3::Response> {
    let session = request.session()?;
    let token = |name: &str, token: &str| {
        parse_token(token)
            .ok_or_else(|| Error::invalid_param(format!("Invalid {name} token {token}")))
    };
    let from = token("from", &request.body.from)?;
    let to = token("to", &request.body.to)?.min(state.rooms.committed_position());
    let changes = state
        .e2ee
        .device_list_changes(&state.rooms, &session.user_id, from, to)?;
    Ok(get_key_changes::v3::Response::new(
        changes.changed,
        changes.left,
    ))
}

/// `POST /keys/device_signing/upload`: user-interactive auth (password)
/// only when the upload would replace stored keys (Matrix 1.11).
pub async fn upload_signing_keys(
    State(state): State<AppState>,
    request: Ruma<upload_signing_keys::v3::Request>,
) -> Result<upload_signing_keys::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let keys = SigningKeys {
        master: body.master_key.as_ref(),
        self_signing: body.self_signing_key.as_ref(),
        user_signing: body.user_signing_key.as_ref(),
    };
    if state.e2ee.signing_keys_need_auth(&session.user_id, &keys)? {
        state
            .accounts
            .authorize(
                Purpose::UploadSigningKeys,
                Some(&session.user_id),
                vec![AuthFlow::new(vec![AuthType::Password])],
                body.auth.as_ref(),
            )
            .await?;
    }
    state
        .e2ee
        .upload_signing_keys(&state.accounts, &session.user_id, keys)
        .await?;
    Ok(upload_signing_keys::v3::Response::new())
}

pub async fn upload_signatures(
    State(state): State<AppState>,
    request: Ruma<upload_signatures::v3::Request>,
) -> Result<upload_signatures::v3::Response> {
    let session = request.session()?;
    let failures = state
        .e2ee
        .upload_signatures(&session.user_id, &request.body.signed_keys)
        .await?;
    let mut response = upload_signatures::v3::Response::new();
    response.failures = failures;
    Ok(response)
}

/// Dehydrated devices (MSC3814, `/unstable/org.matrix.msc3814.v1/dehydrated_device*`)
/// are not implemented: a clear `M_UNRECOGNIZED`, so clients skip the feature.
pub async fn dehydrated_device(uri: Uri) -> Error {
    Error::new(
        StatusCode::NOT_FOUND,
        ErrorKind::Unrecognized,
        format!(
            "Dehydrated devices (MSC3814) are not supported by this server: {}",
            uri.path()
        ),
    )
}
