//! Interning: room ids, event ids and `(event type, state key)` pairs get
//! u64 "short ids", so the hot tables (state snapshots, timeline, edges)
//! key on 8 bytes instead of 40-byte-plus strings.
//!
//! Tables (key → value):
//! - `roomid_shortroomid` / `shortroomid_roomid`: room id ⇄ short room id
//! - `eventid_shorteventid` / `shorteventid_eventid`: event id ⇄ short event id
//! - `statekey_shortstatekey` / `shortstatekey_statekey`: (type, state key) ⇄ short state key
//!
//! All kinds, and state snapshot ids (`rooms::state`), draw from ONE counter.
//! It is not stored: every allocated id is the key of a row in one of the
//! `ID_TABLES`, written in the same batch as the mapping, so at start-up
//! the counter is the greatest last key among them (one reverse seek each).
//! A single persisted counter value would not do: batches of different rooms
//! commit in any order, so an older, smaller value could overwrite a newer
//! one and a crash would then re-issue committed ids. Ids are never deleted,
//! so the high-water mark never shrinks. Ids start at 1.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use ruma::{events::StateEventType, EventId, OwnedEventId, OwnedRoomId, RoomId};
use serde::{de::DeserializeOwned, Serialize};

use crate::storage::{Batch, Cf, KeyCodec, Storage, StorageError, Table};

/// Tables keyed by ids from the shared counter: their greatest keys are the
/// counter's high-water mark. Whoever allocates with [`ShortIds::allocate`]
/// must write a row keyed by the id into one of these in the same batch.
const ID_TABLES: [Cf; 4] = [
    Cf::ShortRoomIdRoomId,
    Cf::ShortEventIdEventId,
    Cf::ShortStateKeyStateKey,
    Cf::ShortStateHashStateDiff,
];

/// Pending entries are swept (those now on disk dropped) once there are this
/// many, then whenever their number doubles since the last sweep.
const MIN_SWEEP: usize = 1024;
/// A sweep keeps at most this many entries (the newest ids): entries of
/// batches that were dropped must not pile up forever. A batch is expected
/// to commit before this many other new ids are interned.
const MAX_PENDING: usize = 16 * 1024;

/// Interning of long identifiers to short ids. A cheap, `Send + Sync` handle:
/// clones share the counter and the pending maps.
///
/// Safe for concurrent use without any lock of the caller's: two batches
/// that intern the same new id, even for different rooms (state keys such as
/// `("m.room.member", "@bob:x")` are shared by every room), get the same
/// short id, because ids handed out but not yet seen on disk are remembered
/// in memory, and every batch that uses such an id writes its mapping rows
/// (the same bytes each time), so whichever commits first makes it durable.
/// (The one condition: a batch commits before [`MAX_PENDING`] other new ids
/// are interned, which bounds the memory held for batches that were dropped.)
/// So call `*_or_create` for every batch that uses an id: an id returned for
/// a batch that is dropped is not durable, and reusing the bare number in
/// another batch would write a reference without its mapping.
///
/// Read-only lookups ([`room`](ShortIds::room), [`event`](ShortIds::event),
/// [`state_key`](ShortIds::state_key), and the reverse ones) see committed
/// mappings only.
#[derive(Clone)]
pub struct ShortIds {
    inner: Arc<Inner>,
}

struct Inner {
    /// The greatest id handed out (committed or not).
    counter: AtomicU64,
    rooms: Interner<OwnedRoomId>,
    events: Interner<OwnedEventId>,
    state_keys: Interner<(String, String)>,
}

impl std::fmt::Debug for ShortIds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShortIds")
            .field("counter", &self.inner.counter.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl ShortIds {
    /// Opens the interning tables and recovers the counter from disk.
    pub fn new(storage: &Arc<Storage>) -> Result<ShortIds, StorageError> {
        let mut highest = 0;
        for cf in ID_TABLES {
            let table: Table<u64, serde_json::Value> = storage.table(cf);
            highest = highest.max(table.last_key()?.unwrap_or(0));
        }
        Ok(ShortIds {
            inner: Arc::new(Inner {
                counter: AtomicU64::new(highest),
                rooms: Interner::new(storage, Cf::RoomIdShortRoomId, Cf::ShortRoomIdRoomId),
                events: Interner::new(storage, Cf::EventIdShortEventId, Cf::ShortEventIdEventId),
                state_keys: Interner::new(
                    storage,
                    Cf::StateKeyShortStateKey,
                    Cf::ShortStateKeyStateKey,
                ),
            }),
        })
    }

    /// A fresh id from the shared counter. The caller must write a row keyed
    /// by it into one of the `ID_TABLES` in the batch that uses it, or a
    /// restart could hand it out again.
    pub(super) fn allocate(&self) -> u64 {
        self.inner.counter.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The committed short id of a room.
    pub fn room(&self, room_id: &RoomId) -> Result<Option<u64>, StorageError> {
        self.inner.rooms.get(&room_id.to_owned())
    }

    /// The short id of a room, allocating one (written into `batch`) if new.
    pub fn room_or_create(&self, room_id: &RoomId, batch: &mut Batch) -> Result<u64, StorageError> {
        let inner = &*self.inner;
        inner
            .rooms
            .get_or_create(&room_id.to_owned(), &inner.counter, batch)
    }

    /// The room of a committed short room id.
    pub fn room_id(&self, short: u64) -> Result<Option<OwnedRoomId>, StorageError> {
        self.inner.rooms.reverse.get(&short)
    }

    /// The committed short id of an event.
    pub fn event(&self, event_id: &EventId) -> Result<Option<u64>, StorageError> {
        self.inner.events.get(&event_id.to_owned())
    }

    /// The short id of an event, allocating one (written into `batch`) if new.
    pub fn event_or_create(
        &self,
        event_id: &EventId,
        batch: &mut Batch,
    ) -> Result<u64, StorageError> {
        let inner = &*self.inner;
        inner
            .events
            .get_or_create(&event_id.to_owned(), &inner.counter, batch)
    }

    /// The event of a committed short event id.
    pub fn event_id(&self, short: u64) -> Result<Option<OwnedEventId>, StorageError> {
        self.inner.events.reverse.get(&short)
    }

    /// The committed short id of a `(type, state key)` pair.
    pub fn state_key(
        &self,
        event_type: &StateEventType,
        state_key: &str,
    ) -> Result<Option<u64>, StorageError> {
        self.inner
            .state_keys
            .get(&state_pair(event_type, state_key))
    }

    /// The short id of a `(type, state key)` pair, allocating one (written
    /// into `batch`) if new.
    pub fn state_key_or_create(
        &self,
        event_type: &StateEventType,
        state_key: &str,
        batch: &mut Batch,
    ) -> Result<u64, StorageError> {
        let inner = &*self.inner;
        let pair = state_pair(event_type, state_key);
        inner.state_keys.get_or_create(&pair, &inner.counter, batch)
    }

    /// The `(type, state key)` pair of a committed short state key.
    pub fn state_key_of(
        &self,
        short: u64,
    ) -> Result<Option<(StateEventType, String)>, StorageError> {
        let pair = self.inner.state_keys.reverse.get(&short)?;
        Ok(pair.map(|(event_type, state_key)| (event_type.into(), state_key)))
    }
}

fn state_pair(event_type: &StateEventType, state_key: &str) -> (String, String) {
    (event_type.to_string(), state_key.to_owned())
}

/// One kind of interned identifier: `K` → short id and back.
struct Interner<K> {
    forward: Table<K, u64>,
    reverse: Table<u64, K>,
    /// Ids handed out whose mapping may not be committed yet.
    pending: Mutex<Pending<K>>,
}

struct Pending<K> {
    ids: HashMap<K, u64>,
    sweep_at: usize,
}

impl<K> Interner<K>
where
    K: KeyCodec + Serialize + DeserializeOwned + Hash + Eq + Clone,
{
    fn new(storage: &Storage, forward: Cf, reverse: Cf) -> Self {
        Interner {
            forward: storage.table(forward),
            reverse: storage.table(reverse),
            pending: Mutex::new(Pending {
                ids: HashMap::new(),
                sweep_at: MIN_SWEEP,
            }),
        }
    }

    fn get(&self, key: &K) -> Result<Option<u64>, StorageError> {
        self.forward.get(key)
    }

    fn get_or_create(
        &self,
        key: &K,
        counter: &AtomicU64,
        batch: &mut Batch,
    ) -> Result<u64, StorageError> {
        // The common case, an id already committed, takes no lock.
        if let Some(id) = self.forward.get(key)? {
            return Ok(id);
        }
        let mut pending = self.pending.lock();
        let id = match pending.ids.get(key) {
            Some(&id) => id,
            None => {
                // Committed (and swept) since the unlocked read? Sweeps
                // need this lock, so this second read settles it.
                if let Some(id) = self.forward.get(key)? {
                    return Ok(id);
                }
                let id = counter.fetch_add(1, Ordering::SeqCst) + 1;
                pending.ids.insert(key.clone(), id);
                id
            }
        };
        // Written by every batch that uses a pending id: identical bytes,
        // and durable as soon as any one of those batches commits.
        batch.put(&self.forward, key, &id)?;
        batch.put(&self.reverse, &id, key)?;
        if pending.ids.len() >= pending.sweep_at {
            self.sweep(&mut pending);
        }
        Ok(id)
    }

    /// Forgets pending ids whose mapping is now on disk, and the oldest
    /// beyond [`MAX_PENDING`] (batches that were dropped: failed writes,
    /// rejected events). The next sweep waits until the map has doubled, so
    /// sweeping stays amortised O(1) per allocation.
    fn sweep(&self, pending: &mut Pending<K>) {
        let forward = &self.forward;
        // A read error keeps the entry: forgetting an uncommitted id could
        // let the key be interned twice.
        pending
            .ids
            .retain(|key, id| !matches!(forward.get(key), Ok(Some(found)) if found == *id));
        if pending.ids.len() > MAX_PENDING {
            let mut ids: Vec<u64> = pending.ids.values().copied().collect();
            let excess = ids.len() - MAX_PENDING;
            let (_, &mut cutoff, _) = ids.select_nth_unstable(excess - 1);
            pending.ids.retain(|_, id| *id > cutoff);
        }
        pending.sweep_at = MIN_SWEEP.max(pending.ids.len() * 2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::OpenMode;

    fn open(dir: &std::path::Path) -> (Arc<Storage>, ShortIds) {
        let storage = Storage::open(dir, OpenMode::ReadWrite).unwrap();
        let ids = ShortIds::new(&storage).unwrap();
        (storage, ids)
    }

    fn event(n: u64) -> OwnedEventId {
        OwnedEventId::try_from(format!("$event{n}")).unwrap()
    }

    #[test]
    fn interns_round_trip_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, ids) = open(dir.path());
        let room = OwnedRoomId::try_from("!r:x.org").unwrap();
        let member = StateEventType::RoomMember;
        let mut batch = storage.batch();
        let r = ids.room_or_create(&room, &mut batch).unwrap();
        let e = ids.event_or_create(&event(1), &mut batch).unwrap();
        let k = ids
            .state_key_or_create(&member, "@a:x.org", &mut batch)
            .unwrap();
        let custom = StateEventType::from("org.example.custom");
        let c = ids.state_key_or_create(&custom, "", &mut batch).unwrap();
        // Same key in the same (uncommitted) batch: same id.
        assert_eq!(ids.room_or_create(&room, &mut batch).unwrap(), r);
        assert_eq!(
            ids.state_key_or_create(&member, "@a:x.org", &mut batch)
                .unwrap(),
            k
        );
        assert_eq!(ids.state_key(&member, "@a:x.org").unwrap(), None); // not committed
        let mut all = vec![r, e, k, c];
        all.sort_unstable();
        all.dedup();
        assert_eq!(all, [1, 2, 3, 4]);
        storage.commit_blocking(batch).unwrap();

        assert_eq!(ids.room(&room).unwrap(), Some(r));
        assert_eq!(ids.room_id(r).unwrap(), Some(room.clone()));
        assert_eq!(ids.event(&event(1)).unwrap(), Some(e));
        assert_eq!(ids.event_id(e).unwrap(), Some(event(1)));
        assert_eq!(ids.state_key(&member, "@a:x.org").unwrap(), Some(k));
        assert_eq!(ids.state_key(&member, "@b:x.org").unwrap(), None);
        assert_eq!(
            ids.state_key_of(k).unwrap(),
            Some((member.clone(), "@a:x.org".into()))
        );
        assert_eq!(ids.state_key_of(c).unwrap(), Some((custom, String::new())));
        assert_eq!(ids.event_id(99).unwrap(), None);
        // A batch that is dropped leaves a gap, never a duplicate.
        let mut dropped = storage.batch();
        assert_eq!(ids.event_or_create(&event(2), &mut dropped).unwrap(), 5);
        drop(dropped);
        // Still pending: the next batch gets the same id and its mapping.
        let mut retry = storage.batch();
        assert_eq!(ids.event_or_create(&event(2), &mut retry).unwrap(), 5);
        assert_eq!(retry.len(), 2);
        drop((ids, storage));

        let (storage, ids) = open(dir.path());
        let mut batch = storage.batch();
        assert_eq!(ids.room_or_create(&room, &mut batch).unwrap(), r);
        assert!(batch.is_empty(), "known ids write nothing");
        assert_eq!(ids.event_or_create(&event(2), &mut batch).unwrap(), 5);
        storage.commit_blocking(batch).unwrap();
        drop((ids, storage));
        let (_storage, ids) = open(dir.path());
        assert_eq!(ids.allocate(), 6);
    }

    #[test]
    fn pending_ids_are_forgotten_once_committed() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, ids) = open(dir.path());
        for chunk in 0..(MIN_SWEEP as u64 / 100 + 2) {
            let mut batch = storage.batch();
            for i in 0..100 {
                ids.event_or_create(&event(chunk * 100 + i), &mut batch)
                    .unwrap();
            }
            storage.commit_blocking(batch).unwrap();
        }
        let pending = ids.inner.events.pending.lock().ids.len();
        assert!(pending < MIN_SWEEP / 2, "{pending} still pending");

        // Batches that are never committed: memory stays bounded, and the
        // newest pending ids are kept.
        let mut dropped = storage.batch();
        let ours = ids.event_or_create(&event(u64::MAX), &mut dropped).unwrap();
        for n in 0..2 * MAX_PENDING as u64 {
            ids.event_or_create(&event(1 << 40 | n), &mut dropped)
                .unwrap();
        }
        let pending = ids.inner.events.pending.lock().ids.len();
        assert!(pending <= 2 * MAX_PENDING, "{pending} still pending");
        let newest = event(1 << 40 | (2 * MAX_PENDING as u64 - 1));
        let newest_id = ids.event_or_create(&newest, &mut dropped).unwrap();
        assert_eq!(newest_id, ours + 2 * MAX_PENDING as u64);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_interning_of_the_same_keys_agrees() {
        const TASKS: usize = 8;
        const KEYS: usize = 300;
        let dir = tempfile::tempdir().unwrap();
        let (storage, ids) = open(dir.path());
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| {
                let (storage, ids) = (Arc::clone(&storage), ids.clone());
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    // Different tasks walk the keys in different orders and
                    // commit in chunks, so pending and committed ids mix.
                    for chunk in (0..KEYS).collect::<Vec<_>>().chunks(7 + task) {
                        let mut batch = storage.batch();
                        for &i in chunk {
                            let key = format!("@u{}:x.org", (i * (task + 1)) % KEYS);
                            let id = ids.state_key_or_create(
                                &StateEventType::RoomMember,
                                &key,
                                &mut batch,
                            )?;
                            got.push((key, id));
                        }
                        storage.commit(batch).await?;
                    }
                    Ok::<_, StorageError>(got)
                })
            })
            .collect();
        let mut seen = HashMap::new();
        for task in tasks {
            for (key, id) in task.await.unwrap().unwrap() {
                assert_eq!(*seen.entry(key).or_insert(id), id);
            }
        }
        assert_eq!(seen.len(), KEYS);
        for (key, id) in &seen {
            let found = ids.state_key(&StateEventType::RoomMember, key).unwrap();
            assert_eq!(found, Some(*id));
            assert_eq!(
                ids.state_key_of(*id).unwrap().map(|p| p.1).as_ref(),
                Some(key)
            );
        }
    }
}
