//! Room state snapshots, stored as layers of deltas.
//!
//! A snapshot is a [`StateMap`] (short state key → short event id). Storing a
//! full copy per state event would grow with members × changes (Synapse's
//! `state_groups_state` reached 51 GB on a 20-user server), so a snapshot is
//! stored as a *layer*: a parent snapshot plus the pairs added and the keys
//! removed relative to it. A layer with no parent is a base: the full state.
//!
//! Layers fold as in Conduit: a new snapshot is stored relative to its
//! parent only if its diff is smaller than the parent's own; otherwise the
//! diff is taken against the grandparent, and so on down. Diffs thus shrink
//! going up a chain, chains stay short (bounded by [`MAX_DEPTH`] besides),
//! and a load reads a few layers. When the diff against a base reaches half
//! the new state, a new base is cheaper to read than a deep delta.
//!
//! Tables (key → value):
//! - `shortstatehash_statediff`: snapshot id → layer (parent, depth, added pairs, removed keys)
//! - `shorteventid_shortstatehash`: short event id → snapshot of the state *before* it
//! - `roomid_shortstatehash`: short room id → snapshot of the current state
//!
//! Snapshot ids come from the [`ShortIds`] counter (the layer row is the
//! witness that recovers it after a restart).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::short::ShortIds;
use crate::storage::{Batch, Cf, Storage, StorageError, Table};

/// Short state key → short event id.
pub type StateMap = BTreeMap<u64, u64>;

/// The longest chain of delta layers above a base.
pub const MAX_DEPTH: u32 = 16;
/// The cache keeps at most this many full snapshots...
const CACHE_SNAPSHOTS: usize = 256;
/// ...holding at most this many pairs in all (a few tens of MB).
const CACHE_PAIRS: usize = 1 << 20;
/// A snapshot saved into a batch not yet committed stays usable (as a
/// parent, or to load) until at least this many newer ones are saved.
pub const MAX_IN_FLIGHT: usize = 4096;

/// One stored snapshot (`shortstatehash_statediff` value): its parent and
/// what changed relative to it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct StateLayer {
    /// `None` for a base layer, whose `added` is the whole state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    parent: Option<u64>,
    /// Delta layers between this one and its base (0 for a base).
    #[serde(default)]
    depth: u32,
    /// (short state key, short event id) pairs set by this layer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    added: Vec<(u64, u64)>,
    /// Short state keys this layer removes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    removed: Vec<u64>,
}

impl StateLayer {
    /// Stored entries: the measure of a layer's size.
    fn len(&self) -> usize {
        self.added.len() + self.removed.len()
    }

    fn apply_to(&self, state: &mut StateMap) {
        for key in &self.removed {
            state.remove(key);
        }
        state.extend(self.added.iter().copied());
    }
}

/// A snapshot as the store works with it: full state plus layer facts.
#[derive(Clone)]
struct Snapshot {
    state: Arc<StateMap>,
    parent: Option<u64>,
    depth: u32,
    diff_len: usize,
}

/// State snapshots of every room. Cheap to clone; `Send + Sync`.
#[derive(Clone)]
pub struct StateStore {
    ids: ShortIds,
    layers: Table<u64, StateLayer>,
    event_state: Table<u64, u64>,
    room_state: Table<u64, u64>,
    cache: Arc<Mutex<Cache>>,
    in_flight: Arc<Mutex<InFlight>>,
}

/// Layers saved into batches that may not be committed yet, so that several
/// saves can be chained before one commit. Entries go once seen on disk, or
/// (dropped batches) once [`MAX_IN_FLIGHT`] newer ones exist; checked when
/// the map has doubled since the last sweep, so amortised O(1) per save.
struct InFlight {
    layers: BTreeMap<u64, StateLayer>,
    sweep_at: usize,
}

impl std::fmt::Debug for StateStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateStore").finish_non_exhaustive()
    }
}

impl StateStore {
    pub fn new(storage: &Arc<Storage>, ids: ShortIds) -> StateStore {
        StateStore {
            ids,
            layers: storage.table(Cf::ShortStateHashStateDiff),
            event_state: storage.table(Cf::ShortEventIdShortStateHash),
            room_state: storage.table(Cf::RoomIdShortStateHash),
            cache: Arc::new(Mutex::new(Cache::default())),
            in_flight: Arc::new(Mutex::new(InFlight {
                layers: BTreeMap::new(),
                sweep_at: MAX_IN_FLIGHT / 4,
            })),
        }
    }

    /// The full state of a snapshot: a committed one, or one saved into a
    /// batch not yet committed (within [`MAX_IN_FLIGHT`] saves).
    pub fn load(&self, snapshot: u64) -> Result<Arc<StateMap>, StorageError> {
        Ok(self.snapshot(snapshot)?.state)
    }

    /// Saves `new_state` as a snapshot derived from `parent` (`None` for a
    /// room's first) and returns its id. Only the difference to the parent,
    /// or to an ancestor (see the module docs), is written to `batch`. A state
    /// equal to the parent's (or to the ancestor diffed against) returns that
    /// snapshot's id and writes nothing. The snapshot exists only if `batch`
    /// commits: use it as a parent in that same batch or after the commit,
    /// never in another batch that may commit without it.
    pub fn save(
        &self,
        parent: Option<u64>,
        new_state: &StateMap,
        batch: &mut Batch,
    ) -> Result<u64, StorageError> {
        let Some(mut below_id) = parent else {
            return self.store_base(new_state, batch);
        };
        let mut below = self.snapshot(below_id)?;
        loop {
            let (added, removed) = diff(&below.state, new_state);
            let diff_len = added.len() + removed.len();
            if diff_len == 0 {
                return Ok(below_id);
            }
            let layer = match below.parent {
                // Fold: a diff at least as big as the layer below it would
                // make chains grow with every change; diff one layer lower.
                Some(next) if below.depth >= MAX_DEPTH || diff_len >= below.diff_len => {
                    below_id = next;
                    below = self.snapshot(next)?;
                    continue;
                }
                None if diff_len * 2 >= new_state.len() => {
                    return self.store_base(new_state, batch);
                }
                _ => StateLayer {
                    parent: Some(below_id),
                    depth: below.depth + 1,
                    added,
                    removed,
                },
            };
            return self.store(layer, new_state, batch);
        }
    }

    /// The snapshot after applying one state event to `parent`: the pair
    /// replaces any other with the same short state key.
    pub fn with_event(
        &self,
        parent: Option<u64>,
        shortstatekey: u64,
        shorteventid: u64,
        batch: &mut Batch,
    ) -> Result<u64, StorageError> {
        let mut state = match parent {
            Some(parent) => self.load(parent)?.as_ref().clone(),
            None => StateMap::new(),
        };
        state.insert(shortstatekey, shorteventid);
        self.save(parent, &state, batch)
    }

    /// The snapshot of the room state *before* an event.
    pub fn event_state_before(&self, shorteventid: u64) -> Result<Option<u64>, StorageError> {
        self.event_state.get(&shorteventid)
    }

    pub fn set_event_state_before(
        &self,
        shorteventid: u64,
        snapshot: u64,
        batch: &mut Batch,
    ) -> Result<(), StorageError> {
        batch.put(&self.event_state, &shorteventid, &snapshot)
    }

    /// The snapshot of a room's current state.
    pub fn room_current(&self, shortroomid: u64) -> Result<Option<u64>, StorageError> {
        self.room_state.get(&shortroomid)
    }

    pub fn set_room_current(
        &self,
        shortroomid: u64,
        snapshot: u64,
        batch: &mut Batch,
    ) -> Result<(), StorageError> {
        batch.put(&self.room_state, &shortroomid, &snapshot)
    }

    fn store_base(&self, state: &StateMap, batch: &mut Batch) -> Result<u64, StorageError> {
        let layer = StateLayer {
            added: state.iter().map(|(&k, &v)| (k, v)).collect(),
            ..StateLayer::default()
        };
        self.store(layer, state, batch)
    }

    fn store(
        &self,
        layer: StateLayer,
        state: &StateMap,
        batch: &mut Batch,
    ) -> Result<u64, StorageError> {
        let id = self.ids.allocate();
        batch.put(&self.layers, &id, &layer)?;
        let snapshot = Snapshot {
            state: Arc::new(state.clone()),
            parent: layer.parent,
            depth: layer.depth,
            diff_len: layer.len(),
        };
        self.cache.lock().insert(id, snapshot);

        let mut in_flight = self.in_flight.lock();
        in_flight.layers.insert(id, layer);
        if in_flight.layers.len() >= in_flight.sweep_at {
            let table = &self.layers;
            // A read error keeps the entry: it may still be needed.
            in_flight
                .layers
                .retain(|id, _| !matches!(table.contains(id), Ok(true)));
            while in_flight.layers.len() > MAX_IN_FLIGHT {
                in_flight.layers.pop_first();
            }
            in_flight.sweep_at = (MAX_IN_FLIGHT / 4).max(in_flight.layers.len() * 2);
        }
        Ok(id)
    }

    /// A snapshot from the cache, or built from its chain of layers (down to
    /// a base or to a cached ancestor) and cached.
    fn snapshot(&self, id: u64) -> Result<Snapshot, StorageError> {
        if let Some(found) = self.cache.lock().get(id) {
            return Ok(found);
        }
        let top = self.layer(id)?;
        let mut below: Vec<StateLayer> = Vec::new();
        let mut state = StateMap::new();
        let mut next = top.parent.map(|parent| (id, parent));
        while let Some((child, parent)) = next {
            // Ids are allocated increasing, so a parent is always older;
            // this also makes a corrupt cycle impossible to loop on.
            if parent >= child {
                return Err(corrupt(format!(
                    "state snapshot {child} has parent {parent}"
                )));
            }
            if let Some(cached) = self.cache.lock().get(parent) {
                state = StateMap::clone(&cached.state);
                break;
            }
            let layer = self.layer(parent)?;
            next = layer.parent.map(|grandparent| (parent, grandparent));
            below.push(layer);
        }
        for layer in below.iter().rev() {
            layer.apply_to(&mut state);
        }
        top.apply_to(&mut state);
        let snapshot = Snapshot {
            state: Arc::new(state),
            parent: top.parent,
            depth: top.depth,
            diff_len: top.len(),
        };
        self.cache.lock().insert(id, snapshot.clone());
        Ok(snapshot)
    }

    fn layer(&self, id: u64) -> Result<StateLayer, StorageError> {
        if let Some(layer) = self.in_flight.lock().layers.get(&id) {
            return Ok(layer.clone());
        }
        self.layers
            .get(&id)?
            .ok_or_else(|| corrupt(format!("state snapshot {id} does not exist")))
    }
}

/// What turns `from` into `to`: pairs to set and keys to remove. One merge
/// walk over both sorted maps, as this runs for every saved state.
fn diff(from: &StateMap, to: &StateMap) -> (Vec<(u64, u64)>, Vec<u64>) {
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    let (mut old, mut new) = (from.iter().peekable(), to.iter().peekable());
    loop {
        match (old.peek(), new.peek()) {
            (Some(&(ok, ov)), Some(&(nk, nv))) if ok == nk => {
                if ov != nv {
                    added.push((*nk, *nv));
                }
                old.next();
                new.next();
            }
            (Some(&(ok, _)), Some(&(nk, _))) if ok < nk => {
                removed.push(*ok);
                old.next();
            }
            (Some((ok, _)), None) => {
                removed.push(**ok);
                old.next();
            }
            (_, Some(&(nk, nv))) => {
                added.push((*nk, *nv));
                new.next();
            }
            (None, None) => return (added, removed),
        }
    }
}

/// A snapshot id that leads nowhere is a dangling reference in the database.
fn corrupt(message: String) -> StorageError {
    StorageError::CorruptValue {
        table: Cf::ShortStateHashStateDiff.name(),
        source: serde::de::Error::custom(message),
    }
}

/// Recently used full snapshots (a room's current state is loaded for every
/// event), bounded by count and by pairs; least recently used goes first.
#[derive(Default)]
struct Cache {
    entries: HashMap<u64, (Snapshot, u64)>,
    pairs: usize,
    clock: u64,
}

impl Cache {
    fn get(&mut self, id: u64) -> Option<Snapshot> {
        self.clock += 1;
        let (snapshot, used) = self.entries.get_mut(&id)?;
        *used = self.clock;
        Some(snapshot.clone())
    }

    fn insert(&mut self, id: u64, snapshot: Snapshot) {
        self.clock += 1;
        self.pairs += snapshot.state.len();
        if let Some((old, _)) = self.entries.insert(id, (snapshot, self.clock)) {
            self.pairs -= old.state.len();
        }
        // Eviction scans for the oldest entry: O(entries), a few hundred.
        while self.entries.len() > 1
            && (self.entries.len() > CACHE_SNAPSHOTS || self.pairs > CACHE_PAIRS)
        {
            let oldest = self.entries.iter().min_by_key(|(_, (_, used))| *used);
            let Some(oldest) = oldest.map(|(&id, _)| id) else {
                break;
            };
            if let Some((old, _)) = self.entries.remove(&oldest) {
                self.pairs -= old.state.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::OpenMode;

    /// xorshift64: a deterministic sequence without a crate.
    struct Rng(u64);

    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0 % n
        }
    }

    /// One step of the history: a state event, a removal, or several pairs
    /// at once (as a state resolution would produce).
    enum Change {
        Set(u64, u64),
        Remove(u64),
        SetMany(Vec<(u64, u64)>),
    }

    fn replay(changes: &[Change]) -> StateMap {
        let mut state = StateMap::new();
        for change in changes {
            match change {
                Change::Set(k, v) => drop(state.insert(*k, *v)),
                Change::Remove(k) => drop(state.remove(k)),
                Change::SetMany(pairs) => state.extend(pairs.iter().copied()),
            }
        }
        state
    }

    fn open(dir: &std::path::Path) -> (Arc<Storage>, StateStore) {
        let storage = Storage::open(dir, OpenMode::ReadWrite).unwrap();
        let ids = ShortIds::new(&storage).unwrap();
        let store = StateStore::new(&storage, ids);
        (storage, store)
    }

    #[test]
    fn snapshots_equal_replay_and_stay_delta_sized() {
        const EVENTS: u64 = 500;
        const KEYS: u64 = 50;
        let dir = tempfile::tempdir().unwrap();
        let (storage, store) = open(dir.path());
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let mut changes = Vec::new();
        let mut snapshots = Vec::new();
        let mut parent = None;
        let mut batch = storage.batch();
        for event in 1..=EVENTS {
            let key = 1000 + rng.below(KEYS);
            let change = match rng.below(20) {
                0 => Change::Remove(key),
                1 => Change::SetMany(
                    (0..5)
                        .map(|i| (1000 + rng.below(KEYS), event * 10 + i))
                        .collect(),
                ),
                _ => Change::Set(key, event),
            };
            changes.push(change);
            let snapshot = match changes.last() {
                Some(Change::Set(k, v)) => store.with_event(parent, *k, *v, &mut batch),
                _ => store.save(parent, &replay(&changes), &mut batch),
            };
            snapshots.push(snapshot.unwrap());
            parent = snapshots.last().copied();
            // Commit every few events: saves also chain on in-flight parents.
            if event % 7 == 0 {
                storage.commit_blocking(std::mem::take(&mut batch)).unwrap();
            }
        }
        storage.commit_blocking(batch).unwrap();

        let check = |store: &StateStore, order: &mut dyn Iterator<Item = usize>| {
            for i in order {
                let want = replay(&changes[..=i]);
                assert_eq!(
                    *store.load(snapshots[i]).unwrap(),
                    want,
                    "snapshot of event {i}"
                );
            }
        };
        check(&store, &mut (0..snapshots.len()));

        let layers: Vec<StateLayer> = store.layers.iter().map(|r| r.unwrap().1).collect();
        let stored: usize = layers.iter().map(StateLayer::len).sum();
        let full: usize = (0..changes.len())
            .map(|i| replay(&changes[..=i]).len())
            .sum();
        assert!(
            stored * 8 < full,
            "{stored} pairs stored for {full} in full states"
        );
        assert!(layers.iter().all(|layer| layer.depth <= MAX_DEPTH));
        drop((store, storage));

        // A cold cache: every chain is read from disk, newest first.
        let (_storage, store) = open(dir.path());
        check(&store, &mut (0..snapshots.len()).rev());
    }

    #[test]
    fn big_room_chained_in_one_batch_stores_little_per_event() {
        const MEMBERS: u64 = 2000;
        const EVENTS: u64 = 400;
        let dir = tempfile::tempdir().unwrap();
        let (storage, store) = open(dir.path());
        let mut batch = storage.batch();
        let mut state: StateMap = (0..MEMBERS).map(|k| (k, k)).collect();
        let mut parent = Some(store.save(None, &state, &mut batch).unwrap());
        let mut snapshots = Vec::new();
        let mut rng = Rng(12345);
        for event in 0..EVENTS {
            // Joins of new members and changes of existing ones.
            let key = rng.below(2 * MEMBERS);
            state.insert(key, MEMBERS + event);
            parent = Some(
                store
                    .with_event(parent, key, MEMBERS + event, &mut batch)
                    .unwrap(),
            );
            snapshots.push((parent, state.clone()));
        }
        // More snapshots than the cache holds, none committed yet.
        for (snapshot, want) in snapshots.iter().step_by(37) {
            assert_eq!(*store.load(snapshot.unwrap()).unwrap(), *want);
        }
        storage.commit_blocking(batch).unwrap();
        let stored: usize = store.layers.iter().map(|r| r.unwrap().1.len()).sum();
        let per_event = (stored - MEMBERS as usize) / EVENTS as usize;
        assert!(
            per_event < 20,
            "{stored} pairs stored: {per_event} per event"
        );
    }

    #[test]
    fn pointers_and_missing_snapshots() {
        let dir = tempfile::tempdir().unwrap();
        let (storage, store) = open(dir.path());
        let mut batch = storage.batch();
        let first = store.with_event(None, 1, 10, &mut batch).unwrap();
        let same = store.with_event(Some(first), 1, 10, &mut batch).unwrap();
        assert_eq!(same, first, "an unchanged state is the same snapshot");
        store.set_event_state_before(10, first, &mut batch).unwrap();
        store.set_room_current(3, first, &mut batch).unwrap();
        storage.commit_blocking(batch).unwrap();
        assert_eq!(store.event_state_before(10).unwrap(), Some(first));
        assert_eq!(store.event_state_before(11).unwrap(), None);
        assert_eq!(store.room_current(3).unwrap(), Some(first));
        assert_eq!(store.room_current(4).unwrap(), None);
        let err = store.load(first + 100).unwrap_err();
        assert!(matches!(err, StorageError::CorruptValue { .. }), "{err}");
    }
}
