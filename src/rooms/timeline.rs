//! Room timelines ordered by one global stream position.
//!
//! Every event appended to any room takes the next position of a single
//! server-wide counter, so a position is both an event's place in its room
//! and a point in the server's history: the backbone of `/sync` tokens
//! ("everything after position N").
//!
//! Tables (key → value):
//! - `roomidpos_eventid`: (short room id, position) → event id; one prefix
//!   scan is a room's timeline in order, either way from any position
//! - `eventid_roompos`: event id → (short room id, position)
//! - `pos_shortroomid`: position → short room id; the global stream
//!
//! The counter is not stored as a value: batches of different rooms commit
//! in any order, so a stored "highest position" could be overwritten by an
//! older, smaller one. Instead `pos_shortroomid`, keyed by position alone
//! and written with every append, yields the highest committed position with
//! one reverse seek at start-up. A forward scan of it from a `/sync` token
//! can list the rooms that have news since.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ruma::{EventId, OwnedEventId};

use crate::storage::table::Order;
use crate::storage::{Batch, Cf, Storage, StorageError, Table};

/// Which way to page through a timeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Oldest first: events after the starting point.
    Forward,
    /// Newest first: events before the starting point.
    Backward,
}

/// The timelines of all rooms. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct Timeline {
    /// The highest position handed out (committed or in flight).
    position: Arc<AtomicU64>,
    events: Table<(u64, u64), OwnedEventId>,
    positions: Table<OwnedEventId, (u64, u64)>,
    stream: Table<u64, u64>,
}

impl std::fmt::Debug for Timeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Timeline")
            .field("position", &self.current_position())
            .finish_non_exhaustive()
    }
}

impl Timeline {
    /// Opens the timeline tables and recovers the highest stream position.
    pub fn new(storage: &Arc<Storage>) -> Result<Timeline, StorageError> {
        let stream: Table<u64, u64> = storage.table(Cf::PosShortRoomId);
        let highest = stream.last_key()?.unwrap_or(0);
        Ok(Timeline {
            position: Arc::new(AtomicU64::new(highest)),
            events: storage.table(Cf::RoomIdPosEventId),
            positions: storage.table(Cf::EventIdRoomPos),
            stream,
        })
    }

    /// Allocates the next stream position (the first is 1). A committed
    /// position is never handed out again, also across restarts, provided
    /// it was written through [`append`](Timeline::append). One whose batch
    /// is dropped leaves a gap, or is reused after a restart (nothing
    /// durable refers to it): so never give a client a token above the
    /// highest *committed* position.
    pub fn next_position(&self) -> u64 {
        self.position.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The highest position allocated, committed or in flight. Batches
    /// commit in any order, so events below it may still be in flight.
    pub fn current_position(&self) -> u64 {
        self.position.load(Ordering::SeqCst)
    }

    /// Appends an event at `position` (from [`next_position`](Timeline::next_position))
    /// to a room's timeline.
    pub fn append(
        &self,
        shortroomid: u64,
        position: u64,
        event_id: &EventId,
        batch: &mut Batch,
    ) -> Result<(), StorageError> {
        let event_id = event_id.to_owned();
        batch.put(&self.events, &(shortroomid, position), &event_id)?;
        batch.put(&self.positions, &event_id, &(shortroomid, position))?;
        batch.put(&self.stream, &position, &shortroomid)
    }

    /// The (short room id, position) of a committed event.
    pub fn position_of(&self, event_id: &EventId) -> Result<Option<(u64, u64)>, StorageError> {
        self.positions.get(&event_id.to_owned())
    }

    /// Up to `limit` events of a room, with their positions, strictly after
    /// `from` (forward, oldest first) or strictly before it (backward,
    /// newest first). `from = None` starts at the room's first event
    /// (forward) or its last (backward). One seek, then a sequential read.
    pub fn page(
        &self,
        shortroomid: u64,
        from: Option<u64>,
        dir: Direction,
        limit: usize,
    ) -> Result<Vec<(u64, OwnedEventId)>, StorageError> {
        // The first position to include; `None` when nothing lies beyond
        // `from` in that direction.
        let (start, order) = match dir {
            Direction::Forward => (from.map_or(Some(0), |p| p.checked_add(1)), Order::Ascending),
            Direction::Backward => (
                from.map_or(Some(u64::MAX), |p| p.checked_sub(1)),
                Order::Descending,
            ),
        };
        let Some(start) = start else {
            return Ok(Vec::new());
        };
        self.events
            .iter_prefix_from(&shortroomid, Some(&(shortroomid, start)), order)
            .take(limit)
            .map(|entry| entry.map(|((_, position), event_id)| (position, event_id)))
            .collect()
    }

    /// Up to `limit` events of a room strictly between `after` and `before`,
    /// newest first. The scan stops at `after`, so a short range in a long
    /// room reads only the range (what a woken `/sync` asks for).
    pub fn between(
        &self,
        shortroomid: u64,
        after: Option<u64>,
        before: u64,
        limit: usize,
    ) -> Result<Vec<(u64, OwnedEventId)>, StorageError> {
        let Some(start) = before.checked_sub(1) else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for entry in self.events.iter_prefix_from(
            &shortroomid,
            Some(&(shortroomid, start)),
            Order::Descending,
        ) {
            let ((_, position), event_id) = entry?;
            if after.is_some_and(|after| position <= after) || out.len() >= limit {
                break;
            }
            out.push((position, event_id));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::OpenMode;

    fn event(n: u64) -> OwnedEventId {
        OwnedEventId::try_from(format!("$e{n}")).unwrap()
    }

    fn open(dir: &std::path::Path) -> (Arc<Storage>, Timeline) {
        let storage = Storage::open(dir, OpenMode::ReadWrite).unwrap();
        let timeline = Timeline::new(&storage).unwrap();
        (storage, timeline)
    }

    /// Pages through a whole room and returns what it saw, in page order.
    fn walk(
        timeline: &Timeline,
        room: u64,
        dir: Direction,
        limit: usize,
    ) -> Vec<(u64, OwnedEventId)> {
        let mut seen = Vec::new();
        let mut from = None;
        loop {
            let page = timeline.page(room, from, dir, limit).unwrap();
            assert!(page.len() <= limit);
            let Some((last, _)) = page.last() else {
                return seen;
            };
            from = Some(*last);
            seen.extend(page);
        }
    }

    #[test]
    fn interleaved_rooms_page_both_ways_and_positions_survive_reopen() {
        const EVENTS: u64 = 1000;
        let rooms = [7u64, 8, u64::MAX];
        let dir = tempfile::tempdir().unwrap();
        let (storage, timeline) = open(dir.path());
        assert_eq!(timeline.current_position(), 0);
        let mut expected: [Vec<(u64, OwnedEventId)>; 3] = Default::default();
        let mut batch = storage.batch();
        for n in 0..EVENTS {
            // An uneven interleaving: room i gets events where n % 5 maps to it.
            let which = [0, 1, 0, 2, 1][(n % 5) as usize];
            let position = timeline.next_position();
            timeline
                .append(rooms[which], position, &event(n), &mut batch)
                .unwrap();
            expected[which].push((position, event(n)));
            if n % 13 == 0 {
                storage.commit_blocking(std::mem::take(&mut batch)).unwrap();
            }
        }
        storage.commit_blocking(batch).unwrap();
        assert_eq!(timeline.current_position(), EVENTS);

        for (room, want) in rooms.iter().zip(&expected) {
            for limit in [1, 2, 3, 10, 64, 1000, 5000] {
                assert_eq!(&walk(&timeline, *room, Direction::Forward, limit), want);
                let mut back = walk(&timeline, *room, Direction::Backward, limit);
                back.reverse();
                assert_eq!(&back, want);
            }
            // From a position in the middle, exclusive, either way.
            let (middle, _) = want[want.len() / 2];
            let after = timeline
                .page(*room, Some(middle), Direction::Forward, 3)
                .unwrap();
            assert_eq!(after, want[want.len() / 2 + 1..][..3]);
            let before = timeline
                .page(*room, Some(middle), Direction::Backward, 2)
                .unwrap();
            let mut want_before = want[..want.len() / 2][want.len() / 2 - 2..].to_vec();
            want_before.reverse();
            assert_eq!(before, want_before);
            let (first, _) = want[0];
            assert!(timeline
                .page(*room, Some(first), Direction::Backward, 9)
                .unwrap()
                .is_empty());
            for (position, id) in want {
                assert_eq!(timeline.position_of(id).unwrap(), Some((*room, *position)));
            }
        }
        assert!(timeline
            .page(9, None, Direction::Backward, 5)
            .unwrap()
            .is_empty());
        assert!(timeline
            .page(7, Some(0), Direction::Backward, 5)
            .unwrap()
            .is_empty());
        assert!(timeline
            .page(7, Some(u64::MAX), Direction::Forward, 5)
            .unwrap()
            .is_empty());
        assert!(timeline
            .page(7, None, Direction::Forward, 0)
            .unwrap()
            .is_empty());
        assert_eq!(timeline.position_of(&event(EVENTS)).unwrap(), None);
        // Allocated but never committed: nothing durable refers to it, so a
        // restart may hand it out again.
        assert_eq!(timeline.next_position(), EVENTS + 1);
        drop((timeline, storage));

        let (storage, timeline) = open(dir.path());
        assert_eq!(timeline.current_position(), EVENTS);
        let next = timeline.next_position();
        assert_eq!(next, EVENTS + 1);
        let mut batch = storage.batch();
        timeline
            .append(rooms[0], next, &event(EVENTS), &mut batch)
            .unwrap();
        storage.commit_blocking(batch).unwrap();
        let last = timeline
            .page(rooms[0], None, Direction::Backward, 1)
            .unwrap();
        assert_eq!(last, [(next, event(EVENTS))]);
        drop((timeline, storage));
        let (_storage, timeline) = open(dir.path());
        assert_eq!(timeline.next_position(), next + 1);
    }
}
