//! Recently read PDUs, parsed. The same few events are read over and over:
//! a received event's auth events (create, power levels, the sender's
//! membership) for each of its three auth checks, and for every event of
//! the room after it; a woken `/sync` of each member of a busy room reads
//! the same new message. Parsing them from their stored JSON each time was
//! over a quarter of the inbound pipeline's CPU.
//!
//! PDUs are written once, but a redaction rewrites its target (and a
//! redacted redaction's copy in its own target). So the cache is cleared
//! after any redaction commits, and a generation number keeps a reader that
//! fetched the old form before that commit from caching it afterwards.

use std::collections::HashMap;

use parking_lot::Mutex;
use ruma::{EventId, OwnedEventId};

use super::Pdu;

/// Entries kept before the cache starts over (a few MB of parsed events).
const CAPACITY: usize = 8192;

#[derive(Default)]
pub(super) struct PduCache {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    generation: u64,
    entries: HashMap<OwnedEventId, Pdu>,
}

impl PduCache {
    pub(super) fn get(&self, event_id: &EventId) -> Option<Pdu> {
        self.inner.lock().entries.get(event_id).cloned()
    }

    /// The generation to pass to [`PduCache::insert`], taken before the read.
    pub(super) fn generation(&self) -> u64 {
        self.inner.lock().generation
    }

    /// Caches `pdu` as read from storage, unless a redaction committed since
    /// `generation` was taken.
    pub(super) fn insert(&self, generation: u64, pdu: &Pdu) {
        let mut inner = self.inner.lock();
        if inner.generation != generation {
            return;
        }
        if inner.entries.len() >= CAPACITY {
            inner.entries.clear();
        }
        inner.entries.insert(pdu.event_id.clone(), pdu.clone());
    }

    /// A redaction committed: stored events may have changed.
    pub(super) fn invalidate(&self) {
        let mut inner = self.inner.lock();
        inner.generation += 1;
        inner.entries.clear();
    }
}

#[cfg(test)]
mod tests {
    use ruma::RoomVersionId;

    use crate::rooms::testing::{fixture, user};

    #[tokio::test]
    async fn a_redaction_replaces_the_cached_event() {
        let f = fixture();
        let alice = user("alice");
        let room = f.room(&alice, RoomVersionId::V11, &[]).await;
        let message = f.text(&room, &alice, "secret").await;
        // Read (and cached) before the redaction...
        let before = f.rooms.get_pdu(&message).unwrap().unwrap();
        assert!(!before.is_redacted());
        f.redact(&room, &alice, &message, "r1").await.unwrap();
        // ...and read in its redacted form after it.
        let after = f.rooms.get_pdu(&message).unwrap().unwrap();
        assert!(after.is_redacted());
        assert!(!after.content.get().contains("secret"));
    }
}
