//! Receipts and read markers (Client-Server API, modules "Receipts" and
//! "Fully read markers"): `POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`,
//! `POST /rooms/{roomId}/read_markers`, and the `m.receipt` ephemeral event
//! in `/sync`.
//!
//! - A receipt is one row per (room, user, receipt type, thread): "each
//!   `user_id`, `receipt_type`, and categorisation (unthreaded, or
//!   `thread_id`) tuple must be associated with only a single `event_id`".
//!   A new receipt replaces the old one, also when it points at an older
//!   event: the spec lets clients move a receipt back ("If a client sends an
//!   `m.read` receipt which is 'behind' the `m.read.private` receipt, other
//!   users will see that change happen"), and never asks the server to refuse.
//! - Every change takes a durable position on the global stream (a marker of
//!   `rooms::stream`, inside an `InFlight` guard), so `/sync` tokens order
//!   receipts with events and incremental syncs send only what changed.
//!   `m.read` wakes the room's members; `m.read.private` only its owner, the
//!   only user who may ever see it ("Servers MUST NOT send the
//!   `m.read.private` receipt to any other user than the one which
//!   originally sent it").
//! - `m.fully_read` is room account data, set by the server only (`markers`).
//!
//! Tables (key → value):
//! - `roomuserslot_receipt`: (room id, user id, "type thread") → [`Receipt`]
//!   (thread empty for unthreaded receipts)
//! - `roomidpos_receipt`: (room id, stream position) → (user id, slot): a
//!   room's receipt changes in stream order, for incremental syncs. Rows a
//!   receipt no longer sits at are deleted with the move (or skipped on
//!   read, when two moves raced).

mod ephemeral;
mod markers;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
mod thread;

use std::{collections::BTreeMap, sync::Arc};

use ruma::{
    events::receipt::ReceiptThread, EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId,
    OwnedUserId, RoomId, UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::{
    error::{Error, Result},
    rooms::Rooms,
    storage::{table::Order, Cf, Storage, Table},
};

pub use self::{ephemeral::Ephemeral, markers::ReadMarkers};

/// The receipt types stored here (`m.fully_read` is a marker, not a receipt).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptKind {
    /// `m.read`: public.
    Read,
    /// `m.read.private`: only its owner sees it.
    ReadPrivate,
}

impl ReceiptKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptKind::Read => "m.read",
            ReceiptKind::ReadPrivate => "m.read.private",
        }
    }

    fn parse(s: &str) -> Option<ReceiptKind> {
        match s {
            "m.read" => Some(ReceiptKind::Read),
            "m.read.private" => Some(ReceiptKind::ReadPrivate),
            _ => None,
        }
    }
}

/// One stored receipt.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub event_id: OwnedEventId,
    /// Milliseconds since the epoch, set by the server.
    pub ts: u64,
    /// `None`: unthreaded; `"main"` or a thread root's event id.
    pub thread: Option<String>,
    /// Stream position of this change.
    pub position: u64,
}

/// The receipts domain.
pub struct Receipts {
    storage: Arc<Storage>,
    slots: Table<(OwnedRoomId, OwnedUserId, String), Receipt>,
    changes: Table<(OwnedRoomId, u64), (OwnedUserId, String)>,
}

/// The slot key: receipt type and thread ("" when unthreaded).
fn slot(kind: ReceiptKind, thread: Option<&str>) -> String {
    format!("{} {}", kind.as_str(), thread.unwrap_or(""))
}

fn kind_of_slot(slot: &str) -> Option<ReceiptKind> {
    slot.split_once(' ')
        .and_then(|(kind, _)| ReceiptKind::parse(kind))
}

impl Receipts {
    pub fn new(storage: Arc<Storage>) -> Receipts {
        Receipts {
            slots: storage.table(Cf::RoomUserSlotReceipt),
            changes: storage.table(Cf::RoomIdPosReceipt),
            storage,
        }
    }

    /// `POST /rooms/{roomId}/receipt/{m.read | m.read.private}/{eventId}`:
    /// the caller must have joined the room (403), the event must be one of
    /// the room's that they may see (404 `M_NOT_FOUND`), and a `thread_id`
    /// must name the event's thread (400 `M_INVALID_PARAM`, see `thread`).
    pub async fn set(
        &self,
        rooms: &Rooms,
        user: &UserId,
        room_id: &RoomId,
        kind: ReceiptKind,
        event_id: &EventId,
        thread: &ReceiptThread,
    ) -> Result<()> {
        let thread = thread::validate_shape(thread)?;
        check_joined(rooms, room_id, user)?;
        let pdu = visible_event(rooms, user, room_id, event_id)?;
        if let Some(thread) = &thread {
            thread::check_in_thread(rooms, &pdu, thread)?;
        }
        self.store(rooms, user, room_id, kind, event_id, thread)
            .await
    }

    async fn store(
        &self,
        rooms: &Rooms,
        user: &UserId,
        room_id: &RoomId,
        kind: ReceiptKind,
        event_id: &EventId,
        thread: Option<String>,
    ) -> Result<()> {
        let key = (
            room_id.to_owned(),
            user.to_owned(),
            slot(kind, thread.as_deref()),
        );
        let previous = self.slots.get(&key)?;
        let stream = rooms.stream();
        let mut in_flight = stream.begin();
        let mut batch = self.storage.batch();
        let position = stream.allocate_marker(&mut batch)?;
        let receipt = Receipt {
            event_id: event_id.to_owned(),
            ts: MilliSecondsSinceUnixEpoch::now().get().into(),
            thread,
            position,
        };
        if let Some(previous) = previous {
            batch.delete(&self.changes, &(key.0.clone(), previous.position));
        }
        batch.put(&self.slots, &key, &receipt)?;
        batch.put(
            &self.changes,
            &(key.0.clone(), position),
            &(key.1.clone(), key.2.clone()),
        )?;
        self.storage.commit(batch).await?;
        match kind {
            ReceiptKind::Read => in_flight.changed(Some(room_id.to_owned()), Vec::new()),
            ReceiptKind::ReadPrivate => in_flight.changed(None, vec![user.to_owned()]),
        }
        in_flight.done();
        Ok(())
    }

    /// A user's receipt of one type and thread (`None`: unthreaded).
    pub fn get(
        &self,
        room_id: &RoomId,
        user: &UserId,
        kind: ReceiptKind,
        thread: Option<&str>,
    ) -> Result<Option<Receipt>> {
        let key = (room_id.to_owned(), user.to_owned(), slot(kind, thread));
        Ok(self.slots.get(&key)?)
    }

    /// The content of the room's `m.receipt` event for `viewer` over the
    /// stream range `(since, upto]` (every receipt up to `upto` when `since`
    /// is `None`), grouped by event id: `{event: {type: {user: {ts,
    /// thread_id?}}}}`; `None` when there is nothing to send. Others'
    /// `m.read.private` receipts are never included.
    pub fn for_sync(
        &self,
        viewer: &UserId,
        room_id: &RoomId,
        since: Option<u64>,
        upto: u64,
    ) -> Result<Option<Value>> {
        let mut rows = Vec::new();
        match since {
            None => {
                for row in self.slots.iter_prefix(&room_id.to_owned()) {
                    let ((_, user, slot), receipt) = row?;
                    if receipt.position <= upto {
                        rows.push((user, slot, receipt));
                    }
                }
            }
            Some(since) => {
                let room = room_id.to_owned();
                let start = (room.clone(), since.saturating_add(1));
                for row in self
                    .changes
                    .iter_prefix_from(&room, Some(&start), Order::Ascending)
                {
                    let ((_, position), (user, slot)) = row?;
                    if position > upto {
                        break;
                    }
                    let key = (room.clone(), user, slot);
                    match self.slots.get(&key)? {
                        Some(receipt) if receipt.position == position => {
                            rows.push((key.1, key.2, receipt));
                        }
                        // Moved on since (a raced move left this row).
                        _ => {}
                    }
                }
            }
        }
        let mut content: BTreeMap<OwnedEventId, Map<String, Value>> = BTreeMap::new();
        for (user, slot, receipt) in rows {
            let Some(kind) = kind_of_slot(&slot) else {
                continue;
            };
            if kind == ReceiptKind::ReadPrivate && user != viewer {
                continue;
            }
            let mut info = json!({ "ts": receipt.ts });
            if let Some(thread) = &receipt.thread {
                info["thread_id"] = json!(thread);
            }
            let by_type = content.entry(receipt.event_id).or_default();
            let users = by_type
                .entry(kind.as_str().to_owned())
                .or_insert_with(|| json!({}));
            users[user.as_str()] = info;
        }
        if content.is_empty() {
            return Ok(None);
        }
        Ok(Some(json!(content)))
    }
}

/// 403 `M_FORBIDDEN` unless `user` has joined `room_id`.
fn check_joined(rooms: &Rooms, room_id: &RoomId, user: &UserId) -> Result<()> {
    if rooms.is_joined(room_id, user)? {
        Ok(())
    } else {
        Err(Error::forbidden("You are not in this room"))
    }
}

/// The event if it belongs to the room and `user` may see it; 404
/// `M_NOT_FOUND` otherwise (not 403: do not confirm that it exists).
fn visible_event(
    rooms: &Rooms,
    user: &UserId,
    room_id: &RoomId,
    event_id: &EventId,
) -> Result<crate::rooms::Pdu> {
    match rooms.get_pdu(event_id)? {
        Some(pdu) if pdu.room_id == room_id && rooms.can_see(user, &pdu)? => Ok(pdu),
        _ => Err(Error::not_found("Event not found")),
    }
}
