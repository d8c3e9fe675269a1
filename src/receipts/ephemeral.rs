//! A joined room's `ephemeral` section in `/sync` (Client-Server API
//! "Syncing": `rooms.join.{roomId}.ephemeral`): `m.typing` (module "Typing
//! Notifications") and `m.receipt` (module "Receipts"), each only when it
//! changed within the sync's stream range, and filtered by the request's
//! `room.ephemeral` filter (`types` / `not_types` / `rooms` / `not_rooms`).

use std::sync::Arc;

use ruma::{
    api::client::filter::{Filter, RoomEventFilter},
    events::AnySyncEphemeralRoomEvent,
    serde::Raw,
    RoomId, UserId,
};
use serde_json::{json, Value};

use super::Receipts;
use crate::{
    error::{Error, Result},
    sync::filter::account_data_allowed,
    typing::Typing,
};

/// What `/sync` asks for a joined room's ephemeral events; shared by the
/// sync service (attached at start-up).
#[derive(Clone)]
pub struct Ephemeral {
    typing: Typing,
    receipts: Arc<Receipts>,
}

impl Ephemeral {
    pub fn new(typing: Typing, receipts: Arc<Receipts>) -> Ephemeral {
        Ephemeral { typing, receipts }
    }

    /// The room's ephemeral events for `user` over `(since, upto]` (`since
    /// = None`: an initial sync, or the user's first sync of this room:
    /// everything current).
    pub fn room_events(
        &self,
        user: &UserId,
        room_id: &RoomId,
        filter: &RoomEventFilter,
        since: Option<u64>,
        upto: u64,
    ) -> Result<Vec<Raw<AnySyncEphemeralRoomEvent>>> {
        let mut events = Vec::new();
        if !room_passes(filter, room_id) {
            return Ok(events);
        }
        if type_passes(filter, "m.typing") {
            if let Some(users) = self.typing.for_sync(room_id, since, upto) {
                events.push(raw(
                    &json!({ "type": "m.typing", "content": { "user_ids": users } }),
                )?);
            }
        }
        if type_passes(filter, "m.receipt") {
            if let Some(content) = self.receipts.for_sync(user, room_id, since, upto)? {
                events.push(raw(&json!({ "type": "m.receipt", "content": content }))?);
            }
        }
        // The filter's `limit`: "the maximum number of events to return".
        if let Some(limit) = filter.limit {
            events.truncate(usize::try_from(u64::from(limit)).unwrap_or(usize::MAX));
        }
        Ok(events)
    }
}

fn room_passes(filter: &RoomEventFilter, room_id: &RoomId) -> bool {
    !filter.not_rooms.iter().any(|r| r == room_id)
        && filter
            .rooms
            .as_ref()
            .is_none_or(|rooms| rooms.iter().any(|r| r == room_id))
}

/// `types` / `not_types` with `*` wildcards, as for account data.
fn type_passes(filter: &RoomEventFilter, kind: &str) -> bool {
    let mut types = Filter::default();
    types.types = filter.types.clone();
    types.not_types = filter.not_types.clone();
    account_data_allowed(&types, kind)
}

fn raw<T>(value: &Value) -> Result<Raw<T>> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|e| Error::internal(format!("event not serialisable: {e}")))
}
