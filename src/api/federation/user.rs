//! Our users' E2EE keys and devices for other servers (Server-Server API
//! "End-to-End Encryption", "Device Management"): `user/keys/query`,
//! `user/keys/claim`, `user/devices/{userId}`. Only our own users are
//! answered; the `user_signing` key never leaves the server.

use std::collections::BTreeMap;

use axum::extract::State;
use ruma::{
    api::federation::{
        device::get_devices,
        keys::{claim_keys, get_keys},
    },
    UInt,
};

use crate::{
    api::ruma::Ruma,
    error::{Error, Result},
    AppState,
};

pub async fn keys_query(
    State(state): State<AppState>,
    request: Ruma<get_keys::v1::Request>,
) -> Result<get_keys::v1::Response> {
    request.origin()?;
    let mut response = get_keys::v1::Response::new(BTreeMap::new());
    for (user, devices) in &request.body.device_keys {
        if !state.accounts.is_local(user) {
            continue;
        }
        // Asked as the user themself: only the owner's signatures are merged.
        let one = BTreeMap::from([(user.clone(), devices.clone())]);
        let mut answer = state.e2ee.query(&state.accounts, user, &one)?;
        response.device_keys.append(&mut answer.device_keys);
        response.master_keys.append(&mut answer.master_keys);
        response
            .self_signing_keys
            .append(&mut answer.self_signing_keys);
    }
    Ok(response)
}

pub async fn keys_claim(
    State(state): State<AppState>,
    request: Ruma<claim_keys::v1::Request>,
) -> Result<claim_keys::v1::Response> {
    request.origin()?;
    let local = request
        .body
        .one_time_keys
        .iter()
        .filter(|(user, _)| state.accounts.is_local(user))
        .map(|(u, d)| (u.clone(), d.clone()))
        .collect();
    let answer = state.e2ee.claim(&local).await?;
    Ok(claim_keys::v1::Response::new(answer.one_time_keys))
}

pub async fn devices(
    State(state): State<AppState>,
    request: Ruma<get_devices::v1::Request>,
) -> Result<get_devices::v1::Response> {
    request.origin()?;
    let user = &request.body.user_id;
    if !state.accounts.is_local(user) || !state.accounts.exists(user)? {
        return Err(Error::not_found("No such user on this server"));
    }
    let one = BTreeMap::from([(user.clone(), Vec::new())]);
    let mut keys = state.e2ee.query(&state.accounts, user, &one)?;
    let stream_id = UInt::new_saturating(state.rooms.committed_position());
    let mut response = get_devices::v1::Response::new(user.clone(), stream_id);
    let names: BTreeMap<_, _> = state
        .accounts
        .list_devices(user)?
        .into_iter()
        .map(|(id, device)| (id, device.display_name))
        .collect();
    for (device_id, device_keys) in keys.device_keys.remove(user).unwrap_or_default() {
        let mut device = get_devices::v1::UserDevice::new(device_id.clone(), device_keys);
        device.device_display_name = names.get(&device_id).cloned().flatten();
        response.devices.push(device);
    }
    response.master_key = keys.master_keys.remove(user);
    response.self_signing_key = keys.self_signing_keys.remove(user);
    Ok(response)
}
