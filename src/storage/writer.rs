//! Group commit in two stages: apply, then sync.
//!
//! One OS thread, the *applier*, performs every write. It takes one waiting
//! batch, drains every other batch already queued (up to
//! [`MAX_GROUP_BATCHES`] / [`MAX_GROUP_BYTES`]) and writes them as ONE
//! RocksDB `WriteBatch` without syncing: the group is atomic, visible to
//! reads at once, and in the OS's page cache (a killed process loses none
//! of it). It then tells each committer that its batch is *applied* and
//! hands the group to the second thread, the *syncer*, which syncs the WAL
//! (one fsync covers every group applied before it) and tells each
//! committer that its batch is *durable*.
//!
//! Why two stages: a writer that holds a lock while its batch goes to disk
//! (a room's head: its extremities and current state) can release the lock
//! once the batch is applied; the next writer builds on it while the fsync
//! runs, and the next fsync covers both. Nobody is answered before their
//! batch is durable ([`Storage::commit`](super::Storage::commit) waits for
//! both stages).
//!
//! A failed sync leaves applied but not durable data behind: the writer is
//! then *poisoned* and refuses every later batch (RocksDB itself stops
//! writing after such an error), so nothing more is built on it.
//!
//! Dropping the [`Writer`] closes the queue; both threads finish every batch
//! already sent, then exit, and the drop waits for them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use rocksdb::{WriteBatch, WriteOptions, DB};
use tokio::sync::oneshot;

use super::error::StorageError;
use super::table::Batch;

/// At most this many batches share one write...
pub const MAX_GROUP_BATCHES: usize = 1024;
/// ...and a group stops growing once it holds this many key + value bytes.
pub const MAX_GROUP_BYTES: usize = 8 << 20;

/// What a failed write tells each of its waiters.
#[derive(Clone, Debug)]
enum WriteFailure {
    Rocks(rocksdb::Error),
    MissingTable(&'static str),
    /// An earlier sync failed; see the module docs.
    Poisoned,
}

impl From<WriteFailure> for StorageError {
    fn from(f: WriteFailure) -> Self {
        match f {
            WriteFailure::Rocks(e) => StorageError::Rocks(e),
            WriteFailure::MissingTable(name) => StorageError::MissingTable(name),
            WriteFailure::Poisoned => StorageError::WriterPoisoned,
        }
    }
}

type Outcome = Result<(), WriteFailure>;

/// How to answer a committer: async callers await a oneshot, blocking ones
/// a std channel (a oneshot's `blocking_recv` panics inside a runtime).
enum Reply {
    Async(oneshot::Sender<Outcome>),
    Blocking(mpsc::SyncSender<Outcome>),
}

impl Reply {
    fn send(self, outcome: Outcome) {
        // A committer that went away no longer needs an answer.
        match self {
            Reply::Async(tx) => {
                let _ = tx.send(outcome);
            }
            Reply::Blocking(tx) => {
                let _ = tx.send(outcome);
            }
        }
    }
}

struct Request {
    /// `None`: a sync barrier (durable once everything applied before it is).
    batch: Option<Batch>,
    /// Told when the batch is applied (visible), if anyone asked.
    applied: Option<oneshot::Sender<Outcome>>,
    /// Told when the batch is durable.
    durable: Reply,
    /// Dropped by the applier right after the write: a committer's lock
    /// stays held until its batch is visible, even if the committer's
    /// future is dropped meanwhile (a client that went away).
    hold: Option<Box<dyn Send>>,
}

/// Counters, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Synced WAL writes performed (one per sync).
    pub wal_writes: u64,
    /// Batches committed (successfully or not).
    pub batches: u64,
}

#[derive(Default)]
struct Shared {
    wal_writes: AtomicU64,
    batches: AtomicU64,
    /// Batches handed to the queue so far.
    submitted: AtomicU64,
    /// Set when a sync failed: every later batch is refused.
    poisoned: AtomicBool,
    /// Tests hold the applier between receiving a batch and draining the
    /// queue, to make grouping deterministic.
    paused: Mutex<bool>,
    resumed: Condvar,
}

impl Shared {
    fn wait_while_paused(&self) {
        let mut paused = self.paused.lock();
        while *paused {
            self.resumed.wait(&mut paused);
        }
    }
}

/// A batch that is applied; await it to know that it is durable. Dropping it
/// does not undo or stop anything.
#[must_use = "await durability before acknowledging the write"]
pub struct Durable(oneshot::Receiver<Outcome>);

impl Durable {
    /// Nothing to wait for (an empty batch).
    pub(crate) fn ready() -> Durable {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(Ok(()));
        Durable(rx)
    }

    /// Waits until the batch is in a synced WAL write.
    pub async fn wait(self) -> Result<(), StorageError> {
        Ok(self.0.await.map_err(|_| StorageError::WriterGone)??)
    }
}

/// Handle on the writer threads, owned by `Storage`.
pub(crate) struct Writer {
    queue: Option<mpsc::Sender<Request>>,
    threads: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Writer {
    /// Starts the applier and syncer threads for `db`.
    pub(crate) fn start(db: Arc<DB>) -> Result<Writer, StorageError> {
        let (queue, rx) = mpsc::channel();
        let (to_syncer, syncer_rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let syncer = {
            let (db, shared) = (Arc::clone(&db), Arc::clone(&shared));
            std::thread::Builder::new()
                .name("feathur-db-sync".into())
                .spawn(move || run_syncer(&db, &syncer_rx, &shared))?
        };
        let applier = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("feathur-db-writer".into())
                .spawn(move || run_applier(&db, &rx, &to_syncer, &shared))?
        };
        Ok(Writer {
            queue: Some(queue),
            // The applier first: its exit closes the syncer's queue.
            threads: vec![applier, syncer],
            shared,
        })
    }

    fn submit(&self, request: Request) -> Result<(), StorageError> {
        let queue = self.queue.as_ref().ok_or(StorageError::WriterGone)?;
        queue.send(request).map_err(|_| StorageError::WriterGone)?;
        self.shared.submitted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Queues `batch` and waits, without blocking the runtime, until it is
    /// applied (visible to reads, not yet durable). If this future is dropped
    /// after the batch was queued, the batch is still committed. `hold` is
    /// dropped once the batch is visible (or its write failed).
    pub(crate) async fn apply(
        &self,
        batch: Batch,
        hold: Option<Box<dyn Send>>,
    ) -> Result<Durable, StorageError> {
        let (applied_tx, applied_rx) = oneshot::channel();
        let (durable_tx, durable_rx) = oneshot::channel();
        self.submit(Request {
            batch: Some(batch),
            applied: Some(applied_tx),
            durable: Reply::Async(durable_tx),
            hold,
        })?;
        applied_rx.await.map_err(|_| StorageError::WriterGone)??;
        Ok(Durable(durable_rx))
    }

    /// Waits until every batch applied before this call is durable.
    pub(crate) async fn sync_barrier(&self) -> Result<(), StorageError> {
        let (durable_tx, durable_rx) = oneshot::channel();
        self.submit(Request {
            batch: None,
            applied: None,
            durable: Reply::Async(durable_tx),
            hold: None,
        })?;
        Durable(durable_rx).wait().await
    }

    /// Applies `batch` and waits until it is durable, blocking the calling
    /// thread.
    pub(crate) fn commit_blocking(&self, batch: Batch) -> Result<(), StorageError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(Request {
            batch: Some(batch),
            applied: None,
            durable: Reply::Blocking(tx),
            hold: None,
        })?;
        Ok(rx.recv().map_err(|_| StorageError::WriterGone)??)
    }

    pub(crate) fn stats(&self) -> WriteStats {
        WriteStats {
            wal_writes: self.shared.wal_writes.load(Ordering::SeqCst),
            batches: self.shared.batches.load(Ordering::SeqCst),
        }
    }

    #[cfg(test)]
    pub(crate) fn pause(&self) {
        *self.shared.paused.lock() = true;
    }

    #[cfg(test)]
    pub(crate) fn resume(&self) {
        *self.shared.paused.lock() = false;
        self.shared.resumed.notify_all();
    }

    #[cfg(test)]
    pub(crate) fn submitted(&self) -> u64 {
        self.shared.submitted.load(Ordering::SeqCst)
    }

    #[cfg(test)]
    pub(crate) fn poison(&self) {
        self.shared.poisoned.store(true, Ordering::SeqCst);
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue lets the threads drain what is left and exit.
        drop(self.queue.take());
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                tracing::error!("database writer thread panicked");
            }
        }
    }
}

/// The applier: one group per iteration until the queue closes.
fn run_applier(
    db: &DB,
    rx: &mpsc::Receiver<Request>,
    to_syncer: &mpsc::Sender<Vec<Reply>>,
    shared: &Shared,
) {
    // Not synced here: the syncer makes groups durable.
    let no_sync = WriteOptions::default();
    while let Ok(first) = rx.recv() {
        shared.wait_while_paused();
        let mut bytes = first.batch.as_ref().map_or(0, |b| b.bytes);
        let mut group = vec![first];
        while group.len() < MAX_GROUP_BATCHES && bytes < MAX_GROUP_BYTES {
            let Ok(next) = rx.try_recv() else { break };
            bytes += next.batch.as_ref().map_or(0, |b| b.bytes);
            group.push(next);
        }

        let batches = group.iter().filter(|r| r.batch.is_some()).count();
        let outcome = if shared.poisoned.load(Ordering::SeqCst) {
            Err(WriteFailure::Poisoned)
        } else {
            write_group(db, &no_sync, &group)
        };
        shared.batches.fetch_add(batches as u64, Ordering::SeqCst);
        for request in &mut group {
            drop(request.hold.take());
        }
        if let Err(e) = &outcome {
            tracing::error!(batches, error = ?e, "database write failed");
            for request in group {
                if let Some(applied) = request.applied {
                    let _ = applied.send(outcome.clone());
                }
                request.durable.send(outcome.clone());
            }
            continue;
        }
        let mut durable = Vec::with_capacity(group.len());
        for request in group {
            if let Some(applied) = request.applied {
                let _ = applied.send(Ok(()));
            }
            durable.push(request.durable);
        }
        if let Err(mpsc::SendError(replies)) = to_syncer.send(durable) {
            for reply in replies {
                reply.send(Err(WriteFailure::Poisoned));
            }
        }
    }
}

/// The syncer: one WAL sync for every group applied since the last one.
fn run_syncer(db: &DB, rx: &mpsc::Receiver<Vec<Reply>>, shared: &Shared) {
    while let Ok(mut waiters) = rx.recv() {
        while let Ok(more) = rx.try_recv() {
            waiters.extend(more);
        }
        // Every waiter's group was applied before it was sent here, so this
        // sync covers all of them.
        let outcome = db.flush_wal(true).map_err(WriteFailure::Rocks);
        shared.wal_writes.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = &outcome {
            shared.poisoned.store(true, Ordering::SeqCst);
            tracing::error!(
                error = ?e,
                "syncing the database log failed; refusing further writes until restart"
            );
        }
        for reply in waiters {
            reply.send(outcome.clone());
        }
    }
}

/// Concatenates the group's operations, in order, into one write.
fn write_group(db: &DB, options: &WriteOptions, group: &[Request]) -> Outcome {
    let mut wb = WriteBatch::default();
    for op in group
        .iter()
        .filter_map(|r| r.batch.as_ref())
        .flat_map(|b| &b.ops)
    {
        let cf = db
            .cf_handle(op.cf.name())
            .ok_or(WriteFailure::MissingTable(op.cf.name()))?;
        match &op.value {
            Some(value) => wb.put_cf(cf, &op.key, value),
            None => wb.delete_cf(cf, &op.key),
        }
    }
    if wb.is_empty() {
        return Ok(());
    }
    db.write_opt(wb, options).map_err(WriteFailure::Rocks)
}
