//! `GET /rooms/{roomId}/context/{eventId}` (Client-Server API "Event
//! context"). `start`/`end` are `/messages` tokens.

use axum::extract::State;
use ruma::{api::client::context::get_context, serde::Raw};

use super::rooms::raw;
use crate::{
    api::ruma::Ruma,
    error::Result,
    rooms::{self, Pdu},
    AppState,
};

/// Most events `/context` returns around the event.
const MAX_LIMIT: usize = 100;

pub async fn context(
    State(state): State<AppState>,
    request: Ruma<get_context::v3::Request>,
) -> Result<get_context::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    // `limit=0` is valid here: the event alone.
    let limit = usize::try_from(body.limit).map_or(MAX_LIMIT, |l| l.min(MAX_LIMIT));
    let context = state.rooms.context(
        &session.user_id,
        &body.room_id,
        &body.event_id,
        limit,
        &body.filter,
    )?;
    let mut response = get_context::v3::Response::new();
    response.start = Some(rooms::make_token(context.start));
    response.end = Some(rooms::make_token(context.end));
    response.event = Some(raw(&context.event.to_client_event())?);
    response.events_before = raws(&context.before)?;
    response.events_after = raws(&context.after)?;
    response.state = raws(&context.state)?;
    Ok(response)
}

fn raws<T>(events: &[Pdu]) -> Result<Vec<Raw<T>>> {
    events.iter().map(|e| raw(&e.to_client_event())).collect()
}
