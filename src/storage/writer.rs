//! Group commit in two stages: apply, then sync.
//!
//! *Apply*: the committer writes its batch into RocksDB itself, without
//! syncing (RocksDB groups concurrent writers into one log write). The batch
//! is atomic, visible to reads at once, and in the OS's page cache: a killed
//! process loses none of it. When RocksDB would stall the write (too many
//! unflushed files), the runtime is told the worker blocks
//! (`block_in_place`), so its other tasks move to another thread.
//!
//! *Sync*: one thread, the *syncer*, takes every committer waiting for
//! durability, syncs the WAL once (covering every batch applied before it)
//! and answers them all: concurrent committers share one fsync. A committer
//! joins the queue only when it awaits its [`Durable`]: a batch nobody
//! waits for (derived data such as push counts) costs no sync of its own
//! and is made durable by the next one.
//!
//! Why two stages: a writer that holds a lock while its batch goes to disk
//! (a room's head: its extremities and current state) releases the lock
//! once the batch is applied; the next writer builds on it while the fsync
//! runs, and the next fsync covers both. Nobody is answered before their
//! batch is durable ([`Storage::commit`](super::Storage::commit) waits for
//! both stages).
//!
//! A failed sync leaves applied but not durable data behind: the writer is
//! then *poisoned* and refuses every later batch (RocksDB itself stops
//! writing after such an error), so nothing more is built on it.
//!
//! Dropping the [`Writer`] closes the syncer's queue; it answers every
//! waiter already queued, then exits, and the drop waits for it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use rocksdb::{WriteBatch, WriteOptions, DB};
use tokio::sync::oneshot;

use super::error::StorageError;
use super::table::Batch;

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
    /// The syncer's queue; emptied when the [`Writer`] drops, which closes
    /// the channel (pending [`Durable`]s hold this struct, not the sender).
    queue: Mutex<Option<mpsc::Sender<Reply>>>,
    wal_writes: AtomicU64,
    batches: AtomicU64,
    /// Waiters handed to the syncer so far.
    submitted: AtomicU64,
    /// Set when a sync failed: every later batch is refused.
    poisoned: AtomicBool,
    /// Tests hold the syncer between receiving a waiter and draining the
    /// queue, to make grouping deterministic.
    paused: Mutex<bool>,
    resumed: Condvar,
}

impl Shared {
    /// Queues a waiter for the next sync.
    fn wait_for_sync(&self, reply: Reply) -> Result<(), StorageError> {
        let queue = self.queue.lock();
        let queue = queue.as_ref().ok_or(StorageError::WriterGone)?;
        queue.send(reply).map_err(|_| StorageError::WriterGone)?;
        self.submitted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn wait_while_paused(&self) {
        let mut paused = self.paused.lock();
        while *paused {
            self.resumed.wait(&mut paused);
        }
    }
}

/// A batch that is applied; await it to know that it is durable. Dropping it
/// does not undo or stop anything, and costs no sync: the syncer is asked
/// only when someone waits (a sync covers every batch applied before it, so
/// asking late is as good as asking at once).
#[must_use = "await durability before acknowledging the write"]
pub struct Durable(Option<Arc<Shared>>);

impl Durable {
    /// Nothing to wait for (an empty batch).
    pub(crate) fn ready() -> Durable {
        Durable(None)
    }

    /// Waits until the batch is in a synced WAL write.
    pub async fn wait(self) -> Result<(), StorageError> {
        let Some(shared) = self.0 else {
            return Ok(());
        };
        let (tx, rx) = oneshot::channel();
        shared.wait_for_sync(Reply::Async(tx))?;
        Ok(rx.await.map_err(|_| StorageError::WriterGone)??)
    }
}

/// Handle on the syncer thread, owned by `Storage`.
pub(crate) struct Writer {
    db: Arc<DB>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Writer {
    /// Starts the syncer thread for `db`.
    pub(crate) fn start(db: Arc<DB>) -> Result<Writer, StorageError> {
        let (to_syncer, rx) = mpsc::channel();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Some(to_syncer)),
            ..Shared::default()
        });
        let thread = {
            let (db, shared) = (Arc::clone(&db), Arc::clone(&shared));
            std::thread::Builder::new()
                .name("feathur-db-sync".into())
                .spawn(move || run_syncer(&db, &rx, &shared))?
        };
        Ok(Writer {
            db,
            thread: Some(thread),
            shared,
        })
    }

    /// Writes `batch` unsynced. `Err(None)`: RocksDB would stall.
    fn write(&self, batch: &Batch, may_stall: bool) -> Result<(), Option<WriteFailure>> {
        if self.shared.poisoned.load(Ordering::SeqCst) {
            return Err(Some(WriteFailure::Poisoned));
        }
        let mut options = WriteOptions::default();
        options.set_no_slowdown(!may_stall);
        let outcome = write_batch(&self.db, &options, batch);
        if let Err(WriteFailure::Rocks(e)) = &outcome {
            if !may_stall && e.kind() == rocksdb::ErrorKind::Incomplete {
                return Err(None);
            }
        }
        self.shared.batches.fetch_add(1, Ordering::SeqCst);
        if let Err(e) = &outcome {
            tracing::error!(error = ?e, "database write failed");
        }
        outcome.map_err(Some)
    }

    /// Applies `batch` (visible to reads, not yet durable) and returns what
    /// to await for durability. The write is done when this returns: there
    /// is no queue in which a dropped caller could leave it half-way.
    pub(crate) fn apply(&self, batch: Batch) -> Result<Durable, StorageError> {
        match self.write(&batch, false) {
            Ok(()) => {}
            Err(Some(failure)) => return Err(failure.into()),
            Err(None) => {
                // RocksDB would stall: let the runtime move its other tasks
                // off this worker while it waits. The write still happens
                // within this call, so a dropped future cannot leave it
                // half-way (the stream's barrier relies on that).
                let blocking = || self.write(&batch, true);
                let outcome = match tokio::runtime::Handle::try_current()
                    .map(|handle| handle.runtime_flavor())
                {
                    Ok(tokio::runtime::RuntimeFlavor::MultiThread) => {
                        tokio::task::block_in_place(blocking)
                    }
                    _ => blocking(),
                };
                outcome.map_err(|f| StorageError::from(f.unwrap_or(WriteFailure::Poisoned)))?;
            }
        }
        Ok(Durable(Some(Arc::clone(&self.shared))))
    }

    /// Waits until every batch applied before this call is durable.
    pub(crate) async fn sync_barrier(&self) -> Result<(), StorageError> {
        Durable(Some(Arc::clone(&self.shared))).wait().await
    }

    /// Applies `batch` and waits until it is durable, blocking the calling
    /// thread.
    pub(crate) fn commit_blocking(&self, batch: Batch) -> Result<(), StorageError> {
        self.write(&batch, true)
            .map_err(|f| StorageError::from(f.unwrap_or(WriteFailure::Poisoned)))?;
        let (tx, rx) = mpsc::sync_channel(1);
        self.shared.wait_for_sync(Reply::Blocking(tx))?;
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

    /// Waiters handed to the syncer so far.
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
        // Closing the queue lets the syncer answer what is left and exit.
        drop(self.shared.queue.lock().take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("database sync thread panicked");
            }
        }
    }
}

/// The syncer: one WAL sync for every waiter queued since the last one.
fn run_syncer(db: &DB, rx: &mpsc::Receiver<Reply>, shared: &Shared) {
    while let Ok(first) = rx.recv() {
        shared.wait_while_paused();
        let mut waiters = vec![first];
        while let Ok(more) = rx.try_recv() {
            waiters.push(more);
        }
        // Every waiter's batch was applied before it was queued here, so
        // this sync covers all of them.
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

/// One batch as one RocksDB write.
fn write_batch(db: &DB, options: &WriteOptions, batch: &Batch) -> Outcome {
    let mut wb = WriteBatch::default();
    for op in &batch.ops {
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
