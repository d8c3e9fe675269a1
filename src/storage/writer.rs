//! Group commit: one OS thread performs every write.
//!
//! A synced WAL write (fsync) costs about the same for one batch as for a
//! thousand, so the thread takes one waiting batch, drains every other batch
//! already queued (up to [`MAX_GROUP_BATCHES`] / [`MAX_GROUP_BYTES`]), writes
//! them as ONE RocksDB `WriteBatch` with `sync = true`, then answers each
//! waiter. Concurrent committers thus share one fsync. A group is applied
//! atomically, so each batch in it is too; if the write fails every waiter
//! of the group gets the error.
//!
//! Dropping the [`Writer`] closes the queue; the thread finishes every batch
//! already sent, then exits, and the drop waits for it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex};
use rocksdb::{WriteBatch, WriteOptions, DB};
use tokio::sync::oneshot;

use super::error::StorageError;
use super::table::Batch;

/// At most this many batches share one WAL write...
pub const MAX_GROUP_BATCHES: usize = 1024;
/// ...and a group stops growing once it holds this many key + value bytes.
pub const MAX_GROUP_BYTES: usize = 8 << 20;

/// What a failed group write tells each of its waiters.
#[derive(Clone, Debug)]
enum WriteFailure {
    Rocks(rocksdb::Error),
    MissingTable(&'static str),
}

impl From<WriteFailure> for StorageError {
    fn from(f: WriteFailure) -> Self {
        match f {
            WriteFailure::Rocks(e) => StorageError::Rocks(e),
            WriteFailure::MissingTable(name) => StorageError::MissingTable(name),
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

struct Request {
    batch: Batch,
    reply: Reply,
}

/// Counters, for metrics and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteStats {
    /// Synced WAL writes performed (one per group).
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
    /// Tests hold the thread between receiving a batch and draining the
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

/// Handle on the writer thread, owned by `Storage`.
pub(crate) struct Writer {
    queue: Option<mpsc::Sender<Request>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Writer {
    /// Starts the writer thread for `db`.
    pub(crate) fn start(db: Arc<DB>) -> Result<Writer, StorageError> {
        let (queue, rx) = mpsc::channel();
        let shared = Arc::new(Shared::default());
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("feathur-db-writer".into())
            .spawn(move || run(&db, &rx, &thread_shared))?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
            shared,
        })
    }

    fn submit(&self, batch: Batch, reply: Reply) -> Result<(), StorageError> {
        let queue = self.queue.as_ref().ok_or(StorageError::WriterGone)?;
        queue
            .send(Request { batch, reply })
            .map_err(|_| StorageError::WriterGone)?;
        self.shared.submitted.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    /// Queues `batch` and waits, without blocking the runtime, until it is
    /// in a synced WAL write. If this future is dropped after the batch was
    /// queued, the batch is still committed.
    pub(crate) async fn commit(&self, batch: Batch) -> Result<(), StorageError> {
        let (tx, rx) = oneshot::channel();
        self.submit(batch, Reply::Async(tx))?;
        Ok(rx.await.map_err(|_| StorageError::WriterGone)??)
    }

    /// Same as [`Writer::commit`], blocking the calling thread.
    pub(crate) fn commit_blocking(&self, batch: Batch) -> Result<(), StorageError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.submit(batch, Reply::Blocking(tx))?;
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
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue lets the thread drain what is left and exit.
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("database writer thread panicked");
            }
        }
    }
}

/// The writer thread: one group per iteration until the queue closes.
fn run(db: &DB, rx: &mpsc::Receiver<Request>, shared: &Shared) {
    let mut sync = WriteOptions::default();
    sync.set_sync(true);
    while let Ok(first) = rx.recv() {
        shared.wait_while_paused();
        let mut bytes = first.batch.bytes;
        let mut group = vec![first];
        while group.len() < MAX_GROUP_BATCHES && bytes < MAX_GROUP_BYTES {
            let Ok(next) = rx.try_recv() else { break };
            bytes += next.batch.bytes;
            group.push(next);
        }

        let outcome = write_group(db, &sync, &group);
        shared.wal_writes.fetch_add(1, Ordering::SeqCst);
        shared
            .batches
            .fetch_add(group.len() as u64, Ordering::SeqCst);
        if let Err(e) = &outcome {
            tracing::error!(batches = group.len(), error = ?e, "database write failed");
        }
        for request in group {
            // A committer that went away no longer needs an answer.
            match request.reply {
                Reply::Async(tx) => {
                    let _ = tx.send(outcome.clone());
                }
                Reply::Blocking(tx) => {
                    let _ = tx.send(outcome.clone());
                }
            }
        }
    }
}

/// Concatenates the group's operations, in order, into one synced write.
fn write_group(db: &DB, sync: &WriteOptions, group: &[Request]) -> Outcome {
    let mut wb = WriteBatch::default();
    for op in group.iter().flat_map(|r| &r.batch.ops) {
        let cf = db
            .cf_handle(op.cf.name())
            .ok_or(WriteFailure::MissingTable(op.cf.name()))?;
        match &op.value {
            Some(value) => wb.put_cf(cf, &op.key, value),
            None => wb.delete_cf(cf, &op.key),
        }
    }
    db.write_opt(wb, sync).map_err(WriteFailure::Rocks)
}
