//! The committed stream position and the wake-ups that follow commits.
//!
//! Stream positions are handed out by [`Timeline::next_position`] *before*
//! their batch commits, and batches of different rooms commit in any order:
//! while event 5 (room A) is still on its way to disk, event 6 (room B) may
//! already be durable. A `/sync` token must never pass a position whose
//! event is not durable yet, or the next incremental sync (which reads only
//! *after* the token) would skip it for good.
//!
//! So every writer that may allocate positions holds an [`InFlight`] guard
//! from before it allocates until its batch has committed (or is known
//! never to). A guard remembers the highest position allocated when it
//! began (`start`); every position it allocates is above that. Hence every
//! position `<= min(start of active guards)` belongs to a finished writer,
//! and that minimum (or the highest allocated position, when no writer is
//! active) is the **committed position**: see [`Stream::committed`].
//!
//! Wake-ups: a writer notes, after its commit, which room changed and whom
//! to wake besides the room's members. The note is *held* until the
//! committed position covers everything the writer may have allocated, then
//! delivered to the [`StreamListener`] (the `/sync` notifier). A long-poll
//! that registers interest, then reads up to the committed position, thus
//! either sees an event or is woken for it later: no wake-up is lost.

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;
use ruma::{OwnedRoomId, OwnedUserId};

use super::{timeline::Timeline, Membership};
use crate::storage::{Batch, Cf, Storage, StorageError, Table};

/// Whoever wants to hear about committed changes (the `/sync` notifier).
pub trait StreamListener: Send + Sync {
    /// Whether nobody is waiting: then the members of a changed room are
    /// not even looked up.
    fn is_idle(&self) -> bool;
    /// Wakes these users' waiting syncs.
    fn wake(&self, users: &[OwnedUserId]);
}

/// What a writer changed: a room (whose joined and invited members are
/// woken) and/or users to wake regardless (the target of a membership
/// change, the owner of changed account data).
#[derive(Debug, Clone, Default)]
struct Note {
    room: Option<OwnedRoomId>,
    users: Vec<OwnedUserId>,
}

#[derive(Default)]
struct Inner {
    /// `start` of every active writer (a multiset: start → count).
    active: BTreeMap<u64, usize>,
    /// Notes of finished writers with the highest position they may have
    /// used, waiting for the committed position to reach it.
    held: Vec<(u64, Note)>,
}

/// Tracks writers in flight; shared by [`Rooms`](super::Rooms) and its guards.
pub struct Stream {
    inner: Mutex<Inner>,
    timeline: Timeline,
    storage: Arc<Storage>,
    members: Table<(OwnedRoomId, OwnedUserId), Membership>,
    positions: Table<u64, u64>,
    listener: OnceLock<Arc<dyn StreamListener>>,
}

/// The value of `pos_shortroomid` for a position that carries no room event
/// (short ids start at 1): it only makes the position durable.
pub const NO_ROOM: u64 = 0;

impl Stream {
    pub(super) fn new(storage: &Arc<Storage>, timeline: Timeline) -> Arc<Stream> {
        Arc::new(Stream {
            inner: Mutex::new(Inner::default()),
            timeline,
            storage: storage.clone(),
            members: storage.table(Cf::RoomUserIdMembership),
            positions: storage.table(Cf::PosShortRoomId),
            listener: OnceLock::new(),
        })
    }

    /// Sets the listener; only the first call has an effect.
    pub fn set_listener(&self, listener: Arc<dyn StreamListener>) {
        let _ = self.listener.set(listener);
    }

    /// The highest position at or below which every event is durable.
    pub fn committed(&self) -> u64 {
        let inner = self.inner.lock();
        Self::committed_locked(&inner, &self.timeline)
    }

    fn committed_locked(inner: &Inner, timeline: &Timeline) -> u64 {
        match inner.active.first_key_value() {
            Some((&start, _)) => start,
            None => timeline.current_position(),
        }
    }

    /// Registers a writer; hold the guard until the batch has committed.
    pub fn begin(self: &Arc<Self>) -> InFlight {
        let mut inner = self.inner.lock();
        // Read under the lock: no position is allocated by a writer that
        // is not registered, so none can slip below `start` unnoticed.
        let start = self.timeline.current_position();
        *inner.active.entry(start).or_default() += 1;
        InFlight {
            stream: Arc::clone(self),
            start,
            notes: Vec::new(),
            done: false,
        }
    }

    /// Allocates a position that carries no room event (e.g. an account
    /// data change) and makes it durable with `batch`: the timeline's
    /// counter recovers from `pos_shortroomid`, so it is never reused.
    /// Call within an [`InFlight`] guard.
    pub fn allocate_marker(&self, batch: &mut Batch) -> Result<u64, StorageError> {
        let position = self.timeline.next_position();
        batch.put(&self.positions, &position, &NO_ROOM)?;
        Ok(position)
    }

    /// Ends a writer; delivers the notes the committed position now covers.
    fn finish(&self, start: u64, notes: Vec<Note>) {
        let ready = {
            let mut inner = self.inner.lock();
            if let Some(count) = inner.active.get_mut(&start) {
                *count -= 1;
                if *count == 0 {
                    inner.active.remove(&start);
                }
            }
            let bound = self.timeline.current_position();
            inner
                .held
                .extend(notes.into_iter().map(|note| (bound, note)));
            let committed = Self::committed_locked(&inner, &self.timeline);
            let (ready, held): (Vec<_>, Vec<_>) = std::mem::take(&mut inner.held)
                .into_iter()
                .partition(|(bound, _)| *bound <= committed);
            inner.held = held;
            ready
        };
        if !ready.is_empty() {
            self.deliver(ready.into_iter().map(|(_, note)| note));
        }
    }

    fn deliver(&self, notes: impl Iterator<Item = Note>) {
        let Some(listener) = self.listener.get() else {
            return;
        };
        if listener.is_idle() {
            return;
        }
        let mut users = Vec::new();
        for note in notes {
            users.extend(note.users);
            if let Some(room) = note.room {
                for row in self.members.iter_prefix(&room) {
                    match row {
                        Ok(((_, user), Membership::Join | Membership::Invite)) => users.push(user),
                        Ok(_) => {}
                        Err(e) => tracing::warn!(%room, "listing members to wake: {e}"),
                    }
                }
            }
        }
        users.sort_unstable();
        users.dedup();
        listener.wake(&users);
    }

    #[cfg(test)]
    pub(super) fn held(&self) -> usize {
        self.inner.lock().held.len()
    }
}

/// A writer in flight (see the module docs). Dropped without
/// [`done`](InFlight::done), e.g. on an error or a cancelled request, it
/// cannot know whether its batch reached the writer thread: it then waits
/// for a later commit (the writer is FIFO) before it lets the committed
/// position pass it.
#[must_use = "hold the guard until the batch has committed"]
pub struct InFlight {
    stream: Arc<Stream>,
    start: u64,
    notes: Vec<Note>,
    done: bool,
}

impl InFlight {
    /// Records, after a successful commit, that `room` changed (its joined
    /// and invited members are woken) and that `users` must be woken too.
    pub fn changed(&mut self, room: Option<OwnedRoomId>, users: Vec<OwnedUserId>) {
        self.notes.push(Note { room, users });
    }

    /// Every batch of this writer has committed.
    pub fn done(mut self) {
        self.done = true;
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let notes = std::mem::take(&mut self.notes);
        let nothing_allocated = self.stream.timeline.current_position() == self.start;
        if self.done || nothing_allocated {
            self.stream.finish(self.start, notes);
            return;
        }
        let stream = Arc::clone(&self.stream);
        let start = self.start;
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    // A no-op write queued behind whatever this writer sent.
                    let mut barrier = stream.storage.batch();
                    barrier.delete(&stream.positions, &u64::MAX);
                    if let Err(e) = stream.storage.commit(barrier).await {
                        tracing::warn!("stream barrier commit failed: {e}");
                    }
                    stream.finish(start, notes);
                });
            }
            Err(_) => self.stream.finish(self.start, notes),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::storage::OpenMode;

    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl StreamListener for Counter {
        fn is_idle(&self) -> bool {
            false
        }
        fn wake(&self, users: &[OwnedUserId]) {
            self.0.fetch_add(users.len(), Ordering::SeqCst);
        }
    }

    #[test]
    fn committed_position_waits_for_older_writers() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), OpenMode::ReadWrite).unwrap();
        let timeline = Timeline::new(&storage).unwrap();
        let stream = Stream::new(&storage, timeline.clone());
        let counter = Arc::new(Counter::default());
        stream.set_listener(counter.clone());
        assert_eq!(stream.committed(), 0);

        let mut older = stream.begin();
        assert_eq!(timeline.next_position(), 1);
        let mut newer = stream.begin();
        assert_eq!(timeline.next_position(), 2);
        assert_eq!(stream.committed(), 0);

        // The newer writer finishes first: position 1 may still be in
        // flight, so neither the token nor the wake-up may pass it.
        newer.changed(None, vec![ruma::owned_user_id!("@b:x")]);
        newer.done();
        assert_eq!(stream.committed(), 0);
        assert_eq!(counter.0.load(Ordering::SeqCst), 0);
        assert_eq!(stream.held(), 1);

        older.changed(None, vec![ruma::owned_user_id!("@a:x")]);
        older.done();
        assert_eq!(stream.committed(), 2);
        assert_eq!(counter.0.load(Ordering::SeqCst), 2);
        assert_eq!(stream.held(), 0);

        // A writer that allocates nothing and fails releases at once.
        drop(stream.begin());
        assert_eq!(stream.committed(), 2);
    }

    #[derive(Default)]
    struct Recorder(parking_lot::Mutex<Vec<OwnedUserId>>);

    impl StreamListener for Recorder {
        fn is_idle(&self) -> bool {
            false
        }
        fn wake(&self, users: &[OwnedUserId]) {
            self.0.lock().extend_from_slice(users);
        }
    }

    #[tokio::test]
    async fn sends_wake_members_and_the_target_of_a_membership_change() {
        use crate::rooms::{
            testing::{fixture, user},
            Change,
        };
        let f = fixture();
        let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
        let room = f.room(&alice, ruma::RoomVersionId::V11, &[]).await;
        f.join(&room, &bob).await;
        let recorder = Arc::new(Recorder::default());
        f.rooms.stream().set_listener(recorder.clone());

        f.text(&room, &alice, "hi").await;
        assert_eq!(*recorder.0.lock(), [alice.clone(), bob.clone()]);
        assert_eq!(
            f.rooms.committed_position(),
            f.rooms.timeline.current_position()
        );

        // Bob leaves: no longer a member, but the change is his.
        recorder.0.lock().clear();
        f.membership(&room, &bob, Change::Leave).await;
        assert_eq!(*recorder.0.lock(), [alice.clone(), bob.clone()]);

        // A refused event wakes nobody and does not hold the position back.
        recorder.0.lock().clear();
        let refused = f
            .send(
                &room,
                &carol,
                "m.room.message",
                serde_json::json!({"body": "no"}),
            )
            .await;
        assert!(refused.is_err());
        assert!(recorder.0.lock().is_empty());
        assert_eq!(
            f.rooms.committed_position(),
            f.rooms.timeline.current_position()
        );
    }

    #[tokio::test]
    async fn an_abandoned_writer_releases_after_a_barrier() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(dir.path(), OpenMode::ReadWrite).unwrap();
        let timeline = Timeline::new(&storage).unwrap();
        let stream = Stream::new(&storage, timeline.clone());
        let guard = stream.begin();
        timeline.next_position();
        drop(guard);
        for _ in 0..200 {
            if stream.committed() == 1 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        panic!("the committed position never passed an abandoned writer");
    }
}
