//! `POST /rooms/{roomId}/read_markers` (Client-Server API "Fully read
//! markers"): `m.fully_read` goes to the room's account data, which only
//! the server may write; `m.read` / `m.read.private` are treated exactly as
//! `POST /receipt/{type}/{eventId}` (unthreaded).

use ruma::{EventId, RoomId, UserId};

use super::{check_joined, visible_event, ReceiptKind, Receipts};
use crate::{accounts::Accounts, error::Result, rooms::Rooms};

/// The markers one request moves; all optional.
#[derive(Debug, Default, Clone, Copy)]
pub struct ReadMarkers<'a> {
    pub fully_read: Option<&'a EventId>,
    pub read: Option<&'a EventId>,
    pub read_private: Option<&'a EventId>,
}

impl Receipts {
    /// Moves the given markers. Every event must be one of the room's that
    /// the user may see (404 `M_NOT_FOUND`, checked before anything is
    /// written); the caller must have joined the room (403).
    pub async fn set_read_markers(
        &self,
        rooms: &Rooms,
        accounts: &Accounts,
        user: &UserId,
        room_id: &RoomId,
        markers: ReadMarkers<'_>,
    ) -> Result<()> {
        check_joined(rooms, room_id, user)?;
        for event_id in [markers.fully_read, markers.read, markers.read_private]
            .into_iter()
            .flatten()
        {
            visible_event(rooms, user, room_id, event_id)?;
        }
        if let Some(event_id) = markers.fully_read {
            accounts
                .set_fully_read(&user.to_owned(), &room_id.to_owned(), event_id)
                .await?;
            // "the server MUST send the updated account data event through
            // to the client via the event stream": wake its waiting syncs,
            // which stamp and deliver the change.
            let mut wake = rooms.stream().begin();
            wake.changed(None, vec![user.to_owned()]);
            wake.done();
        }
        let receipts = [
            (markers.read, ReceiptKind::Read),
            (markers.read_private, ReceiptKind::ReadPrivate),
        ];
        for (event_id, kind) in receipts {
            if let Some(event_id) = event_id {
                self.store(rooms, user, room_id, kind, event_id, None)
                    .await?;
            }
        }
        Ok(())
    }
}
