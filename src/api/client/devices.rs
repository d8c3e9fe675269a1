//! Device management (Client-Server API: "Device management").

use axum::extract::State;
use ruma::{
    api::client::{
        device::{delete_device, delete_devices, get_device, get_devices, update_device, Device},
        uiaa::{AuthFlow, AuthType},
    },
    MilliSecondsSinceUnixEpoch, OwnedDeviceId, UInt,
};

use crate::{
    accounts::{self, uia::Purpose},
    api::ruma::Ruma,
    error::{Error, Result},
    AppState,
};

fn to_client(device_id: OwnedDeviceId, device: accounts::Device) -> Device {
    let mut out = Device::new(device_id);
    out.display_name = device.display_name;
    out.last_seen_ip = device.last_seen_ip;
    out.last_seen_ts = device
        .last_seen_ts
        .and_then(UInt::new)
        .map(MilliSecondsSinceUnixEpoch);
    out
}

pub async fn list(
    State(state): State<AppState>,
    request: Ruma<get_devices::v3::Request>,
) -> Result<get_devices::v3::Response> {
    let session = request.session()?;
    let devices = state.accounts.list_devices(&session.user_id)?;
    Ok(get_devices::v3::Response::new(
        devices
            .into_iter()
            .map(|(id, d)| to_client(id, d))
            .collect(),
    ))
}

pub async fn get(
    State(state): State<AppState>,
    request: Ruma<get_device::v3::Request>,
) -> Result<get_device::v3::Response> {
    let session = request.session()?;
    let device_id = &request.body.device_id;
    match state.accounts.device(&session.user_id, device_id)? {
        Some(device) => Ok(get_device::v3::Response::new(to_client(
            device_id.clone(),
            device,
        ))),
        None => Err(Error::not_found("No such device")),
    }
}

pub async fn update(
    State(state): State<AppState>,
    request: Ruma<update_device::v3::Request>,
) -> Result<update_device::v3::Response> {
    let session = request.session()?.clone();
    let body = request.body;
    if !state
        .accounts
        .rename_device(&session.user_id, &body.device_id, body.display_name)
        .await?
    {
        return Err(Error::not_found("No such device"));
    }
    // The name is part of what `/keys/query` shows of the device.
    state
        .e2ee
        .device_renamed(&session.user_id, &body.device_id)
        .await?;
    Ok(update_device::v3::Response::new())
}

fn password_flows() -> Vec<AuthFlow> {
    vec![AuthFlow::new(vec![AuthType::Password])]
}

pub async fn delete(
    State(state): State<AppState>,
    request: Ruma<delete_device::v3::Request>,
) -> Result<delete_device::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    if state
        .accounts
        .device(&session.user_id, &body.device_id)?
        .is_none()
    {
        return Err(Error::not_found("No such device"));
    }
    state
        .accounts
        .authorize(
            Purpose::DeleteDevices,
            Some(&session.user_id),
            password_flows(),
            body.auth.as_ref(),
        )
        .await?;
    state
        .accounts
        .remove_devices(&session.user_id, std::slice::from_ref(&body.device_id))
        .await?;
    Ok(delete_device::v3::Response::new())
}

pub async fn delete_many(
    State(state): State<AppState>,
    request: Ruma<delete_devices::v3::Request>,
) -> Result<delete_devices::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    state
        .accounts
        .authorize(
            Purpose::DeleteDevices,
            Some(&session.user_id),
            password_flows(),
            body.auth.as_ref(),
        )
        .await?;
    state
        .accounts
        .remove_devices(&session.user_id, &body.devices)
        .await?;
    Ok(delete_devices::v3::Response::new())
}
