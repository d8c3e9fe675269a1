//! What the sender needs from the network: one call that delivers a
//! transaction (Server-Server API, `PUT /_matrix/federation/v1/send/{txnId}`).
//!
//! The real implementation (X-Matrix signing, server discovery, the HTTPS
//! client) lives in `feathur-federation` and is plugged in at start-up;
//! tests use a fake. Keeping the sender behind this trait is also what lets
//! a later out-of-process delivery worker reuse the queue unchanged.

use std::{collections::BTreeMap, future::Future, pin::Pin};

use ruma::{
    api::federation::transactions::edu::Edu, serde::Raw, OwnedEventId, ServerName, TransactionId,
};
use serde_json::value::RawValue;

/// The receiver's verdict on each PDU of a delivered transaction: `Err`
/// holds its reason for refusing one. A refused PDU is not retried; the
/// transaction itself was delivered.
pub type PduResults = BTreeMap<OwnedEventId, Result<(), String>>;

/// The future returned by [`Transport::send_transaction`].
pub type TransportFuture<'a> =
    Pin<Box<dyn Future<Output = Result<PduResults, TransportError>> + Send + 'a>>;

/// Why a transaction was not delivered.
#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// Try again later with the same transaction id: the peer could not be
    /// reached, timed out, answered 5xx or 429, or could not yet verify our
    /// signature. The queue keeps the transaction and backs off.
    #[error("destination unavailable: {0}")]
    Unavailable(String),
    /// The peer answered that it will never accept this transaction as sent
    /// (a 4xx about the request itself, e.g. `M_BAD_JSON`). Retrying cannot
    /// help and would block everything queued behind it, so the queue drops
    /// the transaction and logs why.
    #[error("transaction rejected: {0}")]
    Rejected(String),
}

/// Delivers transactions to other servers.
///
/// Implementations must give up in bounded time (the sender also applies its
/// own timeout) and must not retry on their own: retries, back-off and the
/// transaction id's stability are the queue's job. Written as a boxed future
/// (`Box::pin(async move { … })`) so the sender can hold `Arc<dyn Transport>`.
pub trait Transport: Send + Sync {
    /// `PUT /_matrix/federation/v1/send/{txn_id}` on `destination` with
    /// at most 50 PDUs and 100 EDUs; `origin` and `origin_server_ts` are the
    /// transport's to fill in.
    fn send_transaction<'a>(
        &'a self,
        destination: &'a ServerName,
        txn_id: &'a TransactionId,
        pdus: Vec<Box<RawValue>>,
        edus: Vec<Raw<Edu>>,
    ) -> TransportFuture<'a>;
}

/// The transport used until the federation client is plugged in: every
/// delivery fails as [`TransportError::Unavailable`], so queued items stay
/// queued (and durable) until a real transport takes over.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unconfigured;

impl Transport for Unconfigured {
    fn send_transaction<'a>(
        &'a self,
        _destination: &'a ServerName,
        _txn_id: &'a TransactionId,
        _pdus: Vec<Box<RawValue>>,
        _edus: Vec<Raw<Edu>>,
    ) -> TransportFuture<'a> {
        Box::pin(async {
            Err(TransportError::Unavailable(
                "no outbound federation client is configured".to_owned(),
            ))
        })
    }
}
