//! Typing, receipts and read markers (Client-Server API modules "Typing
//! Notifications", "Receipts", "Fully read markers"): the logic is in
//! `crate::typing` and `crate::receipts`.

use axum::extract::State;
use ruma::{
    api::client::{
        read_marker::set_read_marker,
        receipt::create_receipt::{self, v3::ReceiptType},
        typing::create_typing_event::{self, v3::Typing},
    },
    events::receipt::ReceiptThread,
    EventId, RoomId, UserId,
};

use crate::{
    api::ruma::Ruma,
    error::{Error, Result},
    receipts::{ReadMarkers, ReceiptKind},
    AppState,
};

/// `PUT /rooms/{roomId}/typing/{userId}`.
pub async fn typing(
    State(state): State<AppState>,
    request: Ruma<create_typing_event::v3::Request>,
) -> Result<create_typing_event::v3::Response> {
    let sender = &request.session()?.user_id;
    let body = &request.body;
    let timeout = match body.state {
        Typing::Yes(info) => Some(info.timeout),
        Typing::No => None,
    };
    state
        .typing
        .set(&state.rooms, &body.room_id, sender, &body.user_id, timeout)
        .await?;
    if state.federation.is_some() {
        crate::federation::share_typing(
            &state.rooms,
            &state.sending,
            &body.room_id,
            sender,
            timeout.is_some(),
        )
        .await?;
    }
    Ok(create_typing_event::v3::Response::new())
}

/// `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`; `m.fully_read`
/// "effectively calls `/read_markers`" (and takes no `thread_id`).
pub async fn receipt(
    State(state): State<AppState>,
    request: Ruma<create_receipt::v3::Request>,
) -> Result<create_receipt::v3::Response> {
    let user = &request.session()?.user_id;
    let body = &request.body;
    let kind = match body.receipt_type {
        ReceiptType::Read => ReceiptKind::Read,
        ReceiptType::ReadPrivate => ReceiptKind::ReadPrivate,
        ReceiptType::FullyRead => {
            if body.thread.as_str().is_some() {
                return Err(Error::invalid_param(
                    "thread_id cannot be used with m.fully_read",
                ));
            }
            let markers = ReadMarkers {
                fully_read: Some(&body.event_id),
                ..ReadMarkers::default()
            };
            state
                .receipts
                .set_read_markers(&state.rooms, &state.accounts, user, &body.room_id, markers)
                .await?;
            return Ok(create_receipt::v3::Response::new());
        }
        _ => return Err(Error::invalid_param("Unknown receipt type")),
    };
    state
        .receipts
        .set(
            &state.rooms,
            user,
            &body.room_id,
            kind,
            &body.event_id,
            &body.thread,
        )
        .await?;
    mark_read(&state, user, &body.room_id, &body.event_id, &body.thread).await?;
    if kind == ReceiptKind::Read && state.federation.is_some() {
        crate::federation::share_read_receipt(
            &state.rooms,
            &state.sending,
            &body.room_id,
            user,
            &body.event_id,
            &body.thread,
        )
        .await?;
    }
    state.presence.active(user);
    Ok(create_receipt::v3::Response::new())
}

/// `POST /rooms/{roomId}/read_markers`.
pub async fn read_markers(
    State(state): State<AppState>,
    request: Ruma<set_read_marker::v3::Request>,
) -> Result<set_read_marker::v3::Response> {
    let user = &request.session()?.user_id;
    let body = &request.body;
    let markers = ReadMarkers {
        fully_read: body.fully_read.as_deref(),
        read: body.read_receipt.as_deref(),
        read_private: body.private_read_receipt.as_deref(),
    };
    state
        .receipts
        .set_read_markers(&state.rooms, &state.accounts, user, &body.room_id, markers)
        .await?;
    for event_id in [markers.read, markers.read_private].into_iter().flatten() {
        mark_read(
            &state,
            user,
            &body.room_id,
            event_id,
            &ReceiptThread::Unthreaded,
        )
        .await?;
    }
    Ok(set_read_marker::v3::Response::new())
}

/// A stored `m.read` / `m.read.private` receipt clears the notifications it
/// covers (Client-Server API "Receiving notifications"; `crate::push`).
async fn mark_read(
    state: &AppState,
    user: &UserId,
    room_id: &RoomId,
    event_id: &EventId,
    thread: &ReceiptThread,
) -> Result<()> {
    if let Some(position) = state.rooms.position_of(event_id)? {
        state
            .push
            .mark_read(user, room_id, thread, position)
            .await?;
    }
    Ok(())
}
