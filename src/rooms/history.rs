//! History from before this server joined a room, fetched from other
//! servers with `backfill` (Server-Server API "Backfilling and retrieving
//! missing events") when a `/messages` reaches the start of our timeline.
//!
//! Such events have no stream position (they are older than everything a
//! `/sync` could report), so they live in their own per-room sequence,
//! `roomidbackseq_eventid`: (short room id, n) → event id, `n` growing
//! towards the past. `/messages` continues into it with `b<n>` tokens once
//! the timeline is exhausted. The events themselves are stored as outliers
//! (checked against their auth events); with no state of their own they are
//! shown under the room's default history visibility (`shared`: to members).

use ruma::{
    api::client::filter::RoomEventFilter, events::TimelineEventType, OwnedEventId, RoomId, UserId,
};

use super::{context::matches_filter, timeline::Direction, Pdu, Rooms};
use crate::{error::Result, storage::table::Order};

/// A page of backfilled history.
pub struct HistoryPage {
    pub events: Vec<Pdu>,
    /// Where the next page starts (`b<n>`); `None` when nothing more is stored.
    pub next: Option<u64>,
}

impl Rooms {
    /// Up to `limit` stored history events of the room from sequence `from`
    /// on (towards the past), visible to `user_id` and matching `filter`.
    pub fn history_page(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        from: u64,
        limit: usize,
        filter: &RoomEventFilter,
    ) -> Result<HistoryPage> {
        self.check_can_read(room_id, user_id)?;
        let Some(shortroomid) = self.ids.room(room_id)? else {
            return Ok(HistoryPage {
                events: Vec::new(),
                next: None,
            });
        };
        let mut events = Vec::new();
        let mut next = None;
        for row in self.history.iter_prefix_from(
            &shortroomid,
            Some(&(shortroomid, from)),
            Order::Ascending,
        ) {
            let ((_, seq), event_id) = row?;
            next = Some(seq + 1);
            if let Some(pdu) = self.get_pdu(&event_id)? {
                if matches_filter(filter, &pdu) && self.can_see(user_id, &pdu)? {
                    events.push(pdu);
                    if events.len() == limit {
                        break;
                    }
                }
            }
        }
        if events.len() < limit {
            // Everything stored was read: the next page needs new history.
            next = next.or(Some(from));
        }
        Ok(HistoryPage { events, next })
    }

    /// The room's newest history row (sequence number, event id): the
    /// oldest event fetched so far.
    fn last_history(&self, shortroomid: u64) -> Result<Option<(u64, OwnedEventId)>> {
        Ok(self
            .history
            .iter_prefix_from(
                &shortroomid,
                Some(&(shortroomid, u64::MAX)),
                Order::Descending,
            )
            .next()
            .transpose()?
            .map(|((_, seq), id)| (seq, id)))
    }

    /// The oldest event we hold of the room's main line: the last history
    /// event fetched, else the first timeline event. `None` when that is
    /// the create event (there is nothing older) or the room is unknown.
    pub fn history_frontier(&self, room_id: &RoomId) -> Result<Option<OwnedEventId>> {
        let Some(shortroomid) = self.ids.room(room_id)? else {
            return Ok(None);
        };
        let last = self.last_history(shortroomid)?.map(|(_, id)| id);
        let oldest = match last {
            Some(id) => Some(id),
            None => self
                .timeline
                .page(shortroomid, None, Direction::Forward, 1)?
                .into_iter()
                .next()
                .map(|(_, id)| id),
        };
        let Some(oldest) = oldest else {
            return Ok(None);
        };
        match self.get_pdu(&oldest)? {
            Some(pdu)
                if pdu.kind == TimelineEventType::RoomCreate || pdu.prev_events.is_empty() =>
            {
                Ok(None)
            }
            Some(_) => Ok(Some(oldest)),
            None => Ok(None),
        }
    }

    /// Appends stored events (outliers) to the room's history, newest
    /// first, skipping any already there or in the timeline.
    pub async fn append_history(&self, room_id: &RoomId, mut events: Vec<Pdu>) -> Result<usize> {
        let guard = self.lock_room(room_id).await;
        let Some(shortroomid) = self.ids.room(room_id)? else {
            return Ok(0);
        };
        let mut next = self
            .last_history(shortroomid)?
            .map_or(0, |(seq, _)| seq + 1);
        events.sort_by_key(|e| std::cmp::Reverse(e.depth));
        let mut batch = self.storage.batch();
        let mut added = 0;
        for pdu in events {
            if self.timeline.position_of(&pdu.event_id)?.is_some()
                || self.history_index.contains(&pdu.event_id)?
            {
                continue;
            }
            batch.put(&self.history, &(shortroomid, next), &pdu.event_id)?;
            batch.put(&self.history_index, &pdu.event_id, &next)?;
            next += 1;
            added += 1;
        }
        self.storage
            .apply_holding(batch, guard)
            .await?
            .wait()
            .await?;
        Ok(added)
    }
}
