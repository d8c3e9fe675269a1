//! Outbound federation delivery (Server-Server API, "Transactions"): one
//! persistent queue per destination server and one sender task per
//! destination that drains it in transactions of at most 50 PDUs and 100
//! EDUs.
//!
//! Guarantees:
//! - **Durable**: items are queued in the caller's batch ([`Sending::queue_pdu`],
//!   [`Sending::queue_edu`]), so an event and its deliveries commit together;
//!   they leave the queue only after the peer accepted their transaction. A
//!   restart resumes every non-empty queue ([`Sending::start`]).
//! - **Idempotent retries**: a transaction's id and items are recorded before
//!   its first attempt; every retry, also after a restart, resends exactly
//!   that (`queue`).
//! - **Independent destinations**: each destination has its own task and
//!   back-off, so a slow or dead peer delays only its own queue.
//! - **Ordered**: items committed one after another go out in that order
//!   (a room's events are committed in order under the room lock).
//!
//! Where it hooks in: `Rooms::send` calls [`Sending::queue_pdu`] for every
//! other server with a joined member, in the event's own batch, then
//! [`Sending::wake`] after the commit; to-device messages are staged with
//! [`Sending::queue_edu`] in their own batch; typing, receipts, presence and
//! device-list updates go through [`Sending::send_edu`]. Inbound requests
//! from a server that was backed off call [`Sending::retry_now`]. The real
//! [`Transport`] is `federation::ClientTransport` (the X-Matrix client of
//! `feathur-federation`); [`Unconfigured`] keeps everything queued (tests).

mod queue;
mod sender;
#[cfg(test)]
mod tests;
mod transport;

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, OnceLock,
    },
    time::Duration,
};

use parking_lot::Mutex;
use ruma::{
    api::federation::transactions::edu::Edu, serde::Raw, EventId, MilliSecondsSinceUnixEpoch,
    OwnedServerName, ServerName,
};
use serde_json::value::RawValue;
use tokio::{sync::Notify, task::JoinHandle};

use crate::{
    error::Result,
    storage::{Batch, Storage},
};

pub use queue::{MAX_EDUS_PER_TRANSACTION, MAX_PDUS_PER_TRANSACTION};
pub use transport::{PduResults, Transport, TransportError, TransportFuture, Unconfigured};

/// Reads the signed JSON of a PDU to send, by event id (the rooms domain
/// implements it; the queue stores only event ids).
pub trait PduSource: Send + Sync {
    /// The PDU as sent over federation; `None` if the event is unknown
    /// (it is then left out of the transaction).
    fn pdu_json(&self, event_id: &EventId) -> Result<Option<Box<RawValue>>>;
}

/// Timing of deliveries.
#[derive(Debug, Clone)]
pub struct SendingConfig {
    /// Wait after the first failed attempt; it doubles with each failure...
    pub initial_backoff: Duration,
    /// ...up to this (`[federation] max_backoff`).
    pub max_backoff: Duration,
    /// One attempt is abandoned (and retried later) after this long.
    pub attempt_timeout: Duration,
}

/// Wait after a destination's first failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(2);
/// How long one delivery attempt may take before it counts as failed.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(120);

impl SendingConfig {
    /// The production timings with the configured back-off cap.
    pub fn with_max_backoff(max_backoff: Duration) -> SendingConfig {
        SendingConfig {
            initial_backoff: INITIAL_BACKOFF.min(max_backoff),
            max_backoff,
            attempt_timeout: ATTEMPT_TIMEOUT,
        }
    }
}

/// Destinations whose queues got new items in a batch: hand it to
/// [`Sending::wake`] once that batch has committed.
#[must_use = "wake the destinations after the batch has committed"]
#[derive(Default)]
pub struct Queued {
    destinations: Vec<Arc<Destination>>,
}

impl Queued {
    /// Adds the destinations of `other`.
    pub fn merge(&mut self, other: Queued) {
        self.destinations.extend(other.destinations);
    }

    pub fn is_empty(&self) -> bool {
        self.destinations.is_empty()
    }
}

/// One destination's in-memory state; its items live in the queue tables.
struct Destination {
    name: OwnedServerName,
    /// Next sequence number for its queue.
    next_seq: AtomicU64,
    /// New items were committed.
    wake: Notify,
    /// The peer is reachable again: end the back-off now.
    retry: Notify,
    /// Its sender task has been spawned.
    started: AtomicBool,
}

/// What a running sender needs; set once by [`Sending::start`].
struct Running {
    transport: Arc<dyn Transport>,
    pdus: Arc<dyn PduSource>,
    runtime: tokio::runtime::Handle,
}

struct Inner {
    storage: Arc<Storage>,
    queue: queue::Queue,
    own_name: OwnedServerName,
    config: SendingConfig,
    destinations: Mutex<HashMap<OwnedServerName, Arc<Destination>>>,
    running: OnceLock<Running>,
    /// Transaction ids: start time in ms and a counter, unique across restarts.
    boot_ms: u64,
    next_txn: AtomicU64,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// The outbound federation sender. Cheap to clone.
#[derive(Clone)]
pub struct Sending {
    inner: Arc<Inner>,
}

impl Sending {
    /// A sender for this server (`own_name` never receives anything). Items
    /// can be queued at once; nothing is sent before [`start`](Self::start).
    pub fn new(storage: Arc<Storage>, own_name: OwnedServerName, config: SendingConfig) -> Sending {
        Sending {
            inner: Arc::new(Inner {
                queue: queue::Queue::new(&storage),
                storage,
                own_name,
                config,
                destinations: Mutex::new(HashMap::new()),
                running: OnceLock::new(),
                boot_ms: MilliSecondsSinceUnixEpoch::now().get().into(),
                next_txn: AtomicU64::new(0),
                stop: tokio::sync::watch::channel(false).0,
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Stages `event_id` for every server in `destinations` (except this
    /// one) into `batch`. Call [`wake`](Self::wake) with the result after
    /// the batch has committed.
    pub fn queue_pdu<'a>(
        &self,
        batch: &mut Batch,
        destinations: impl IntoIterator<Item = &'a ServerName>,
        event_id: &EventId,
    ) -> Result<Queued> {
        let item = queue::Item::Pdu(event_id.to_owned());
        let mut queued = Queued::default();
        for destination in destinations {
            queued.merge(self.stage(batch, destination, &item)?);
        }
        Ok(queued)
    }

    /// Stages an EDU for `destination` into `batch` (nothing for this
    /// server itself). Call [`wake`](Self::wake) after the commit.
    pub fn queue_edu(
        &self,
        batch: &mut Batch,
        destination: &ServerName,
        edu: &Raw<Edu>,
    ) -> Result<Queued> {
        let item = queue::Item::Edu(edu.json().to_owned());
        self.stage(batch, destination, &item)
    }

    fn stage(
        &self,
        batch: &mut Batch,
        destination: &ServerName,
        item: &queue::Item,
    ) -> Result<Queued> {
        if destination == &*self.inner.own_name {
            return Ok(Queued::default());
        }
        let destination = self.inner.destination(destination)?;
        let seq = destination.next_seq.fetch_add(1, Ordering::SeqCst);
        self.inner.queue.put(batch, &destination.name, seq, item)?;
        Ok(Queued {
            destinations: vec![destination],
        })
    }

    /// Tells the senders of `queued` that their new items are durable.
    pub fn wake(&self, queued: Queued) {
        for destination in queued.destinations {
            destination.wake.notify_one();
            self.inner.ensure_sender(&destination);
        }
    }

    /// Queues `event_id` for `destinations` in a batch of its own.
    pub async fn send_pdu<'a>(
        &self,
        destinations: impl IntoIterator<Item = &'a ServerName>,
        event_id: &EventId,
    ) -> Result<()> {
        let mut batch = self.inner.storage.batch();
        let queued = self.queue_pdu(&mut batch, destinations, event_id)?;
        self.inner.storage.commit(batch).await?;
        self.wake(queued);
        Ok(())
    }

    /// Queues an EDU for `destination` in a batch of its own.
    pub async fn send_edu(&self, destination: &ServerName, edu: &Raw<Edu>) -> Result<()> {
        let mut batch = self.inner.storage.batch();
        let queued = self.queue_edu(&mut batch, destination, edu)?;
        self.inner.storage.commit(batch).await?;
        self.wake(queued);
        Ok(())
    }

    /// `destination` is reachable again (e.g. it just sent us a request):
    /// end its back-off and retry now.
    pub fn retry_now(&self, destination: &ServerName) {
        let found = self.inner.destinations.lock().get(destination).cloned();
        if let Some(destination) = found {
            destination.retry.notify_one();
        }
    }

    /// Starts delivering: spawns a sender for every destination with queued
    /// items (what a previous run left) and, from now on, for each
    /// destination when it first gets items. Only the first call counts.
    pub fn start(&self, transport: Arc<dyn Transport>, pdus: Arc<dyn PduSource>) -> Result<()> {
        let running = Running {
            transport,
            pdus,
            runtime: tokio::runtime::Handle::current(),
        };
        if self.inner.running.set(running).is_err() {
            return Ok(());
        }
        let pending = self.inner.queue.destinations()?;
        if !pending.is_empty() {
            tracing::info!(destinations = pending.len(), "resuming federation queues");
        }
        for name in pending {
            let destination = self.inner.destination(&name)?;
            self.inner.ensure_sender(&destination);
        }
        Ok(())
    }

    /// Stops every sender and waits for them. A transaction in flight is
    /// abandoned; it is still recorded and is resent, with the same id, on
    /// the next start.
    pub async fn shutdown(&self) {
        self.inner.stop.send_replace(true);
        let tasks = std::mem::take(&mut *self.inner.tasks.lock());
        for task in tasks {
            if let Err(e) = task.await {
                tracing::error!("a federation sender task failed: {e}");
            }
        }
    }
}

impl Inner {
    /// The in-memory state of `name`, created on first use with the next
    /// sequence number after what the queue already holds.
    fn destination(&self, name: &ServerName) -> Result<Arc<Destination>> {
        let mut destinations = self.destinations.lock();
        if let Some(destination) = destinations.get(name) {
            return Ok(destination.clone());
        }
        let next_seq = self.queue.last_seq(name)?.map_or(0, |seq| seq + 1);
        let destination = Arc::new(Destination {
            name: name.to_owned(),
            next_seq: AtomicU64::new(next_seq),
            wake: Notify::new(),
            retry: Notify::new(),
            started: AtomicBool::new(false),
        });
        destinations.insert(name.to_owned(), destination.clone());
        Ok(destination)
    }

    /// Spawns the sender of `destination` unless it runs already, the
    /// sender is not started yet, or it is shutting down.
    fn ensure_sender(self: &Arc<Self>, destination: &Arc<Destination>) {
        let Some(running) = self.running.get() else {
            return;
        };
        if *self.stop.borrow() || destination.started.swap(true, Ordering::SeqCst) {
            return;
        }
        let task = running.runtime.spawn(sender::run(
            self.clone(),
            destination.clone(),
            self.stop.subscribe(),
        ));
        let mut tasks = self.tasks.lock();
        tasks.retain(|task| !task.is_finished());
        tasks.push(task);
    }

    fn next_txn_id(&self) -> ruma::OwnedTransactionId {
        let n = self.next_txn.fetch_add(1, Ordering::SeqCst);
        format!("{}_{n}", self.boot_ms).into()
    }
}
