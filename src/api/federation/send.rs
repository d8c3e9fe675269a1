//! `PUT /_matrix/federation/v1/send/{txnId}` (Server-Server API
//! "Transactions"): PDUs go through the federation domain's pipeline; EDUs
//! reach the typing and receipt domains here.

use std::{future::Future, pin::Pin, time::Duration};

use axum::extract::State;
use ruma::{
    api::{
        client::receipt::create_receipt::v3::ReceiptType,
        federation::transactions::send_transaction_message,
    },
    events::receipt::ReceiptThread,
    OwnedEventId, OwnedRoomId, OwnedUserId, ServerName,
};
use serde::Deserialize;

use super::federation_of;
use crate::{
    api::ruma::Ruma,
    error::Result,
    federation::{check_acl, EduSink},
    receipts::ReceiptKind,
    AppState,
};

/// How long a remote user shows as typing without a refresh (the spec's
/// suggested 30 s; `m.typing` EDUs carry no timeout).
const REMOTE_TYPING_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn send_transaction(
    State(state): State<AppState>,
    request: Ruma<send_transaction_message::v1::Request>,
) -> Result<send_transaction_message::v1::Response> {
    let origin = request.origin()?.to_owned();
    let federation = federation_of(&state)?;
    let sink = Edus(&state);
    let results = federation
        .receive_transaction(&state.rooms, &sink, &origin, request.body)
        .await?;
    let mut response = send_transaction_message::v1::Response::new(Default::default());
    response.pdus = results
        .into_iter()
        .map(|(id, error)| (id, error.map_or(Ok(()), Err)))
        .collect();
    Ok(response)
}

struct Edus<'a>(&'a AppState);

#[derive(Deserialize)]
struct TypingEdu {
    room_id: OwnedRoomId,
    user_id: OwnedUserId,
    typing: bool,
}

#[derive(Deserialize)]
struct UserReceipt {
    event_ids: Vec<OwnedEventId>,
    #[serde(default)]
    data: ReceiptData,
}

#[derive(Deserialize, Default)]
struct ReceiptData {
    thread_id: Option<String>,
}

impl EduSink for Edus<'_> {
    fn edu<'a>(
        &'a self,
        origin: &'a ServerName,
        edu: &'a serde_json::Value,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            let kind = edu.get("edu_type").and_then(|v| v.as_str()).unwrap_or("");
            let content = edu.get("content").cloned().unwrap_or_default();
            match kind {
                "m.typing" => self.typing(origin, content).await,
                "m.receipt" => self.receipts(origin, content).await,
                "m.device_list_update" | "m.signing_key_update" => {
                    self.device_list(origin, content).await
                }
                "m.direct_to_device" => self.to_device(origin, content).await,
                "m.presence" => self.presence(origin, content),
                // Unknown EDUs are ignored.
                _ => tracing::debug!(%origin, edu_type = kind, "ignored an EDU"),
            }
        })
    }
}

#[derive(Deserialize)]
struct DeviceListEdu {
    user_id: OwnedUserId,
}

#[derive(Deserialize)]
struct DirectToDevice {
    sender: OwnedUserId,
    #[serde(rename = "type")]
    kind: String,
    messages: ruma::api::client::to_device::send_event_to_device::v3::Messages,
}

#[derive(Deserialize)]
struct PresenceEdu {
    push: Vec<PresenceUpdate>,
}

#[derive(Deserialize)]
struct PresenceUpdate {
    user_id: OwnedUserId,
    presence: ruma::presence::PresenceState,
    status_msg: Option<String>,
    last_active_ago: Option<u64>,
}

impl Edus<'_> {
    fn presence(&self, origin: &ServerName, content: serde_json::Value) {
        let Ok(edu) = serde_json::from_value::<PresenceEdu>(content) else {
            return;
        };
        for update in edu.push {
            if update.user_id.server_name() != origin {
                continue;
            }
            self.0.presence.remote_update(
                &update.user_id,
                update.presence,
                update.status_msg,
                update.last_active_ago.map(Duration::from_millis),
            );
        }
    }

    async fn device_list(&self, origin: &ServerName, content: serde_json::Value) {
        let Ok(edu) = serde_json::from_value::<DeviceListEdu>(content) else {
            return;
        };
        if edu.user_id.server_name() != origin {
            return;
        }
        if let Err(e) = self.0.e2ee.remote_device_list_changed(&edu.user_id).await {
            tracing::warn!(%origin, "applying a device list update failed: {e}");
        }
    }

    async fn to_device(&self, origin: &ServerName, content: serde_json::Value) {
        let Ok(edu) = serde_json::from_value::<DirectToDevice>(content) else {
            return;
        };
        if edu.sender.server_name() != origin {
            return;
        }
        let state = self.0;
        if let Err(e) = state
            .to_device
            .receive(&state.accounts, &edu.sender, &edu.kind, &edu.messages)
            .await
        {
            tracing::warn!(%origin, "delivering to-device messages failed: {e}");
        }
    }

    async fn typing(&self, origin: &ServerName, content: serde_json::Value) {
        let Ok(edu) = serde_json::from_value::<TypingEdu>(content) else {
            return;
        };
        if edu.user_id.server_name() != origin
            || check_acl(&self.0.rooms, &edu.room_id, origin).is_err()
        {
            return;
        }
        let timeout = edu.typing.then_some(REMOTE_TYPING_TIMEOUT);
        let state = self.0;
        if let Err(e) = state
            .typing
            .set(
                &state.rooms,
                &edu.room_id,
                &edu.user_id,
                &edu.user_id,
                timeout,
            )
            .await
        {
            tracing::debug!(%origin, "ignored a typing EDU: {e}");
        }
    }

    async fn receipts(&self, origin: &ServerName, content: serde_json::Value) {
        // { room_id: { "m.read": { user_id: { event_ids, data } } } }
        let Ok(rooms) = serde_json::from_value::<
            std::collections::BTreeMap<
                OwnedRoomId,
                std::collections::BTreeMap<
                    String,
                    std::collections::BTreeMap<OwnedUserId, UserReceipt>,
                >,
            >,
        >(content) else {
            return;
        };
        let state = self.0;
        for (room_id, by_type) in rooms {
            if check_acl(&state.rooms, &room_id, origin).is_err() {
                continue;
            }
            let Some(users) = by_type.get(ReceiptType::Read.as_str()) else {
                continue;
            };
            for (user_id, receipt) in users {
                if user_id.server_name() != origin {
                    continue;
                }
                let thread = match receipt.data.thread_id.as_deref() {
                    None => ReceiptThread::Unthreaded,
                    Some("main") => ReceiptThread::Main,
                    Some(root) => match OwnedEventId::try_from(root) {
                        Ok(root) => ReceiptThread::Thread(root),
                        Err(_) => continue,
                    },
                };
                for event_id in &receipt.event_ids {
                    if let Err(e) = state
                        .receipts
                        .set(
                            &state.rooms,
                            user_id,
                            &room_id,
                            ReceiptKind::Read,
                            event_id,
                            &thread,
                        )
                        .await
                    {
                        tracing::debug!(%origin, "ignored a receipt EDU: {e}");
                    }
                }
            }
        }
    }
}
