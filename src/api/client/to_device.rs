//! `PUT /sendToDevice/{eventType}/{txnId}` (Client-Server API, module
//! "Send-to-Device messaging"): the logic is in `crate::to_device`.

use axum::extract::State;
use ruma::api::client::to_device::send_event_to_device;

use crate::{api::ruma::Ruma, error::Result, to_device::Send, AppState};

pub async fn send(
    State(state): State<AppState>,
    request: Ruma<send_event_to_device::v3::Request>,
) -> Result<send_event_to_device::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let event_type = body.event_type.to_string();
    let send = Send {
        sender: &session.user_id,
        sender_device: &session.device_id,
        event_type: &event_type,
        txn_id: body.txn_id.as_str(),
        messages: &body.messages,
    };
    state.to_device.send(&state.accounts, send).await?;
    Ok(send_event_to_device::v3::Response::new())
}
