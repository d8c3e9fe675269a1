//! The persistent part of the sender: per-destination queues and the
//! transaction currently being sent to each destination.
//!
//! Tables (key → value):
//! - `destinationseq_sendingitem`: (destination, sequence number) → [`Item`].
//!   Sequence numbers grow per destination, so a prefix scan is the queue in
//!   order.
//! - `destination_sendingtxn`: destination → [`InFlightTxn`]: the id and the
//!   exact items of the transaction being sent. It is written before the first
//!   attempt and removed with its items after success, so every retry, also
//!   after a restart, sends the same items under the same id, and the
//!   receiver's deduplication by transaction id (Server-Server API,
//!   "Transactions") holds.

use ruma::{OwnedEventId, OwnedServerName, OwnedTransactionId, ServerName};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::storage::{table::Order, Batch, Cf, Storage, StorageError, Table};

/// Most PDUs one transaction may carry (Server-Server API, "Transactions").
pub const MAX_PDUS_PER_TRANSACTION: usize = 50;
/// Most EDUs one transaction may carry (Server-Server API, "Transactions").
pub const MAX_EDUS_PER_TRANSACTION: usize = 100;

/// One queued unit of work for a destination.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Item {
    /// A PDU, by event id: its signed JSON is read when the transaction is
    /// sent, so a PDU queued for many servers is stored once.
    Pdu(OwnedEventId),
    /// An EDU, as the JSON object to send (`{"edu_type": …, "content": …}`).
    Edu(Box<RawValue>),
}

/// The transaction being sent to one destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct InFlightTxn {
    pub(super) txn_id: OwnedTransactionId,
    /// Sequence numbers of its items, in order.
    pub(super) seqs: Vec<u64>,
}

#[derive(Clone)]
pub(super) struct Queue {
    items: Table<(OwnedServerName, u64), Item>,
    txns: Table<OwnedServerName, InFlightTxn>,
}

impl Queue {
    pub(super) fn new(storage: &Storage) -> Queue {
        Queue {
            items: storage.table(Cf::DestinationSeqSendingItem),
            txns: storage.table(Cf::DestinationSendingTxn),
        }
    }

    /// The highest sequence number queued for `destination`, if any.
    pub(super) fn last_seq(&self, destination: &ServerName) -> Result<Option<u64>, StorageError> {
        let prefix = destination.to_owned();
        match self
            .items
            .iter_prefix_from(&prefix, None, Order::Descending)
            .next()
        {
            Some(row) => Ok(Some(row?.0 .1)),
            None => Ok(None),
        }
    }

    pub(super) fn put(
        &self,
        batch: &mut Batch,
        destination: &ServerName,
        seq: u64,
        item: &Item,
    ) -> Result<(), StorageError> {
        batch.put(&self.items, &(destination.to_owned(), seq), item)
    }

    /// Every destination with queued items: one seek per destination.
    pub(super) fn destinations(&self) -> Result<Vec<OwnedServerName>, StorageError> {
        let mut found: Vec<OwnedServerName> = Vec::new();
        loop {
            let next = match found.last() {
                None => self.items.iter().next(),
                // No sequence number reaches u64::MAX, so this key sorts
                // after every key of the last destination found.
                Some(last) => self
                    .items
                    .iter_from(&(last.clone(), u64::MAX), Order::Ascending)
                    .next(),
            };
            match next {
                None => return Ok(found),
                Some(row) => found.push(row?.0 .0),
            }
        }
    }

    pub(super) fn in_flight(
        &self,
        destination: &ServerName,
    ) -> Result<Option<InFlightTxn>, StorageError> {
        self.txns.get(&destination.to_owned())
    }

    /// The oldest queued items, in order, up to the spec's limits. Stops at
    /// the first item that would break a limit, so later items never
    /// overtake earlier ones.
    pub(super) fn head(&self, destination: &ServerName) -> Result<Vec<u64>, StorageError> {
        let (mut seqs, mut pdus, mut edus) = (Vec::new(), 0, 0);
        for row in self.items.iter_prefix(&destination.to_owned()) {
            let ((_, seq), item) = match row {
                Ok(row) => row,
                Err(e) => {
                    // A corrupt entry cannot be sent; skip it rather than
                    // block the queue behind it.
                    tracing::warn!(%destination, "unreadable queued item skipped: {e}");
                    continue;
                }
            };
            let count = match item {
                Item::Pdu(_) => &mut pdus,
                Item::Edu(_) => &mut edus,
            };
            let limit = match item {
                Item::Pdu(_) => MAX_PDUS_PER_TRANSACTION,
                Item::Edu(_) => MAX_EDUS_PER_TRANSACTION,
            };
            if *count == limit {
                break;
            }
            *count += 1;
            seqs.push(seq);
        }
        Ok(seqs)
    }

    /// The items of a transaction, in order; ones that vanished are skipped.
    pub(super) fn items(
        &self,
        destination: &ServerName,
        seqs: &[u64],
    ) -> Result<Vec<Item>, StorageError> {
        let mut items = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            if let Some(item) = self.items.get(&(destination.to_owned(), seq))? {
                items.push(item);
            }
        }
        Ok(items)
    }

    /// Records `txn` as the one being sent to `destination`.
    pub(super) fn begin(
        &self,
        batch: &mut Batch,
        destination: &ServerName,
        txn: &InFlightTxn,
    ) -> Result<(), StorageError> {
        batch.put(&self.txns, &destination.to_owned(), txn)
    }

    /// Removes a finished transaction and its items.
    pub(super) fn finish(&self, batch: &mut Batch, destination: &ServerName, txn: &InFlightTxn) {
        let destination = destination.to_owned();
        for &seq in &txn.seqs {
            batch.delete(&self.items, &(destination.clone(), seq));
        }
        batch.delete(&self.txns, &destination);
    }

    /// How many items are queued for `destination` (tests and diagnostics).
    #[cfg(test)]
    pub(super) fn len(&self, destination: &ServerName) -> usize {
        self.items.iter_prefix(&destination.to_owned()).count()
    }
}
