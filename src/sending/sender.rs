//! One destination's sender task: take the recorded transaction or form a
//! new one from the head of the queue, deliver it, forget it on success,
//! back off exponentially on failure; sleep until woken when the queue is
//! empty. Exits when the server shuts down.

use std::{sync::Arc, time::Duration};

use ruma::{api::federation::transactions::edu::Edu, serde::Raw};
use serde_json::value::RawValue;
use tokio::sync::watch;

use super::{
    queue::{InFlightTxn, Item},
    Destination, Inner, TransportError,
};
use crate::error::Result;

/// How an attempt ended.
enum Outcome {
    /// Delivered (or refused for good): the transaction is finished.
    Done,
    /// Try again after the back-off.
    Retry,
    /// The queue is empty.
    Idle,
}

pub(super) async fn run(
    inner: Arc<Inner>,
    destination: Arc<Destination>,
    mut stop: watch::Receiver<bool>,
) {
    let name = &destination.name;
    let mut backoff: Option<Duration> = None;
    loop {
        let work = async {
            match next_transaction(&inner, &destination).await {
                Ok(Some(txn)) => attempt(&inner, &destination, &txn).await,
                Ok(None) => Outcome::Idle,
                Err(e) => {
                    tracing::error!(destination = %name, "reading the federation queue: {e}");
                    Outcome::Retry
                }
            }
        };
        let outcome = tokio::select! {
            outcome = work => outcome,
            _ = stop.wait_for(|stopped| *stopped) => return,
        };
        match outcome {
            Outcome::Done => backoff = None,
            Outcome::Idle => {
                tokio::select! {
                    _ = destination.wake.notified() => {}
                    _ = stop.wait_for(|stopped| *stopped) => return,
                }
            }
            Outcome::Retry => {
                let delay = next_backoff(backoff, &inner.config);
                backoff = Some(delay);
                tracing::debug!(destination = %name, retry_in = ?delay, "backing off");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = destination.retry.notified() => backoff = None,
                    _ = stop.wait_for(|stopped| *stopped) => return,
                }
            }
        }
    }
}

/// Doubles the wait after each failure, from the initial back-off up to the cap.
fn next_backoff(previous: Option<Duration>, config: &super::SendingConfig) -> Duration {
    match previous {
        None => config.initial_backoff,
        Some(previous) => previous.saturating_mul(2),
    }
    .min(config.max_backoff)
}

/// The recorded transaction of `destination`, or a new one recorded now
/// from the head of its queue; `None` when nothing is queued.
async fn next_transaction(inner: &Inner, destination: &Destination) -> Result<Option<InFlightTxn>> {
    if let Some(txn) = inner.queue.in_flight(&destination.name)? {
        return Ok(Some(txn));
    }
    let seqs = inner.queue.head(&destination.name)?;
    if seqs.is_empty() {
        return Ok(None);
    }
    let txn = InFlightTxn {
        txn_id: inner.next_txn_id(),
        seqs,
    };
    let mut batch = inner.storage.batch();
    inner.queue.begin(&mut batch, &destination.name, &txn)?;
    inner.storage.commit(batch).await?;
    Ok(Some(txn))
}

/// Sends `txn` once and, unless it is to be retried, removes it from the queue.
async fn attempt(inner: &Inner, destination: &Destination, txn: &InFlightTxn) -> Outcome {
    let name = &destination.name;
    let Some(running) = inner.running.get() else {
        return Outcome::Retry;
    };
    let (pdus, edus) = match load(inner, destination, txn) {
        Ok(contents) => contents,
        Err(e) => {
            tracing::error!(destination = %name, "loading a transaction: {e}");
            return Outcome::Retry;
        }
    };
    let delivered = if pdus.is_empty() && edus.is_empty() {
        // Every PDU vanished: nothing to send, but the items must go.
        true
    } else {
        let (pdu_count, edu_count) = (pdus.len(), edus.len());
        let send = running
            .transport
            .send_transaction(name, &txn.txn_id, pdus, edus);
        match tokio::time::timeout(inner.config.attempt_timeout, send).await {
            Ok(Ok(results)) => {
                for (event_id, result) in results {
                    if let Err(reason) = result {
                        tracing::info!(destination = %name, %event_id, %reason, "peer refused a PDU");
                    }
                }
                tracing::debug!(destination = %name, txn_id = %txn.txn_id, pdu_count, edu_count, "transaction delivered");
                true
            }
            Ok(Err(TransportError::Rejected(reason))) => {
                tracing::warn!(destination = %name, txn_id = %txn.txn_id, %reason, "transaction rejected; dropping it");
                true
            }
            Ok(Err(e @ TransportError::Unavailable(_))) => {
                tracing::warn!(destination = %name, txn_id = %txn.txn_id, "delivery failed: {e}");
                false
            }
            Err(_) => {
                tracing::warn!(destination = %name, txn_id = %txn.txn_id, "delivery timed out");
                false
            }
        }
    };
    if !delivered {
        return Outcome::Retry;
    }
    let mut batch = inner.storage.batch();
    inner.queue.finish(&mut batch, name, txn);
    match inner.storage.commit(batch).await {
        Ok(()) => Outcome::Done,
        Err(e) => {
            // Sent but not forgotten: the retry resends the same id, which
            // the receiver recognises.
            tracing::error!(destination = %name, "removing a sent transaction: {e}");
            Outcome::Retry
        }
    }
}

/// A transaction's content: PDU JSON and EDUs.
type Loaded = (Vec<Box<RawValue>>, Vec<Raw<Edu>>);

/// The JSON of a transaction's PDUs and EDUs, in queue order.
fn load(inner: &Inner, destination: &Destination, txn: &InFlightTxn) -> Result<Loaded> {
    let Some(running) = inner.running.get() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let (mut pdus, mut edus) = (Vec::new(), Vec::new());
    for item in inner.queue.items(&destination.name, &txn.seqs)? {
        match item {
            Item::Pdu(event_id) => match running.pdus.pdu_json(&event_id)? {
                Some(json) => pdus.push(json),
                None => tracing::warn!(
                    destination = %destination.name, %event_id,
                    "a queued PDU no longer exists; not sending it"
                ),
            },
            Item::Edu(json) => edus.push(Raw::from_json(json)),
        }
    }
    Ok((pdus, edus))
}
