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
//!
//! Least recently used entries go first, one per insert: starting over
//! when full dropped thousands of events at once under the lock, a pause
//! of tens of milliseconds for every reader.

use hashlink::LruCache;
use parking_lot::Mutex;
use ruma::{EventId, OwnedEventId};

use super::Pdu;

/// Entries kept (a few MB of parsed events); beyond it the least recently
/// used goes.
const CAPACITY: usize = 8192;

pub(super) struct PduCache {
    inner: Mutex<Inner>,
}

struct Inner {
    generation: u64,
    entries: LruCache<OwnedEventId, Pdu>,
}

impl Default for PduCache {
    fn default() -> Self {
        PduCache::with_capacity(CAPACITY)
    }
}

impl PduCache {
    fn with_capacity(capacity: usize) -> PduCache {
        PduCache {
            inner: Mutex::new(Inner {
                generation: 0,
                entries: LruCache::new(capacity),
            }),
        }
    }

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
        let evicted = inner.entries.insert(pdu.event_id.clone(), pdu.clone());
        drop(inner);
        drop(evicted);
    }

    /// A redaction committed: stored events may have changed.
    pub(super) fn invalidate(&self) {
        let mut inner = self.inner.lock();
        inner.generation += 1;
        let capacity = inner.entries.capacity();
        let old = std::mem::replace(&mut inner.entries, LruCache::new(capacity));
        // Dropped outside the lock: readers need not wait for it.
        drop(inner);
        drop(old);
    }
}

#[cfg(test)]
mod tests {
    use ruma::RoomVersionId;

    use super::PduCache;
    use crate::rooms::testing::{fixture, user};

    #[tokio::test]
    async fn a_full_cache_drops_the_least_recently_used_event_only() {
        let f = fixture();
        let alice = user("alice");
        let room = f.room(&alice, RoomVersionId::V11, &[]).await;
        let mut pdus = Vec::new();
        for body in ["one", "two", "three"] {
            let id = f.text(&room, &alice, body).await;
            pdus.push(f.rooms.get_pdu(&id).unwrap().unwrap());
        }
        let cache = PduCache::with_capacity(2);
        let generation = cache.generation();
        cache.insert(generation, &pdus[0]);
        cache.insert(generation, &pdus[1]);
        // Reading the first makes the second the least recently used.
        assert!(cache.get(&pdus[0].event_id).is_some());
        cache.insert(generation, &pdus[2]);
        assert!(cache.get(&pdus[0].event_id).is_some());
        assert!(cache.get(&pdus[1].event_id).is_none());
        assert!(cache.get(&pdus[2].event_id).is_some());
    }

    #[tokio::test]
    async fn a_read_from_before_an_invalidation_is_not_cached() {
        let f = fixture();
        let alice = user("alice");
        let room = f.room(&alice, RoomVersionId::V11, &[]).await;
        let id = f.text(&room, &alice, "one").await;
        let pdu = f.rooms.get_pdu(&id).unwrap().unwrap();
        let cache = PduCache::with_capacity(2);
        let generation = cache.generation();
        cache.invalidate();
        cache.insert(generation, &pdu);
        assert!(cache.get(&id).is_none());
        cache.insert(cache.generation(), &pdu);
        assert!(cache.get(&id).is_some());
    }

    #[tokio::test]
    async fn a_sent_event_is_cached_once_applied_and_a_redaction_clears_it() {
        let f = fixture();
        let alice = user("alice");
        let room = f.room(&alice, RoomVersionId::V11, &[]).await;
        let message = f.text(&room, &alice, "hello").await;
        assert!(f.rooms.pdu_cache.get(&message).is_some());
        f.redact(&room, &alice, &message, "r1").await.unwrap();
        assert!(f.rooms.pdu_cache.get(&message).is_none());
    }

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
