//! `PUT /rooms/{roomId}/redact/{eventId}/{txnId}` (Client-Server API
//! "Redactions").

use axum::extract::State;
use ruma::api::client::redact::redact_event;

use crate::{api::ruma::Ruma, error::Result, rooms::Txn, AppState};

pub async fn redact(
    State(state): State<AppState>,
    request: Ruma<redact_event::v3::Request>,
) -> Result<redact_event::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let txn = Txn {
        user_id: &session.user_id,
        device_id: &session.device_id,
        txn_id: body.txn_id.as_str(),
    };
    let event_id = state
        .rooms
        .redact(
            &body.room_id,
            &session.user_id,
            &body.event_id,
            body.reason.clone(),
            txn,
        )
        .await?;
    Ok(redact_event::v3::Response::new(event_id))
}
