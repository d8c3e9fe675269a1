//! Inbound PDUs (Server-Server API "Transactions", "Checks performed on
//! receipt of a PDU", "Retrieving events"): per PDU, in order:
//! room known and origin allowed by its ACL → format, signatures, content
//! hash (`Federation::verify_pdu`) → unknown auth events fetched
//! (`/event_auth`) and stored as outliers → unknown `prev_events` fetched
//! with `get_missing_events`, or, if a gap remains, the state before the
//! event with `/state` → the room's auth checks, soft failure, state
//! resolution and storage (`Rooms::accept_remote`).

use std::collections::BTreeMap;

use ruma::{
    api::federation::{
        authorization::get_event_authorization, event::get_missing_events, event::get_room_state,
        transactions::send_transaction_message,
    },
    OwnedEventId, OwnedServerName, RoomId, RoomVersionId, ServerName, UInt,
};
use serde_json::value::RawValue;

use super::Federation;
use crate::{
    error::{Error, Result},
    rooms::{Applied, Outcome, Pdu, Rooms},
};

/// Per-PDU answers of one transaction (`None`: accepted), as stored for
/// retries of the same transaction.
pub type TransactionResults = BTreeMap<OwnedEventId, Option<String>>;

/// Most PDUs and EDUs one transaction may carry ("Transactions").
pub const MAX_PDUS: usize = 50;
pub const MAX_EDUS: usize = 100;

/// How many missing `prev_events` one `get_missing_events` asks for before
/// falling back to fetching the state.
const MISSING_EVENTS_LIMIT: u32 = 10;

/// Receives the EDUs of a transaction (typing, receipts, presence, device
/// lists, to-device), implemented where those domains are reachable.
pub trait EduSink: Send + Sync {
    fn edu<'a>(
        &'a self,
        origin: &'a ServerName,
        edu: &'a serde_json::Value,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;
}

impl Federation {
    /// `PUT /send/{txnId}`: processes the PDUs and hands the EDUs to `edus`.
    /// Idempotent per (origin, transaction id): a retry gets the first answer.
    pub async fn receive_transaction(
        &self,
        rooms: &Rooms,
        edus: &dyn EduSink,
        origin: &ServerName,
        request: send_transaction_message::v1::Request,
    ) -> Result<TransactionResults> {
        if request.origin != origin {
            return Err(Error::forbidden(
                "The transaction's origin is not the server that signed the request",
            ));
        }
        if request.pdus.len() > MAX_PDUS || request.edus.len() > MAX_EDUS {
            return Err(Error::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                ruma::api::error::ErrorKind::TooLarge,
                format!("A transaction carries at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs"),
            ));
        }
        let lock = self
            .txn_locks
            .lock()
            .entry(origin.to_owned())
            .or_default()
            .clone();
        let _guard = lock.lock().await;
        let key = (origin.to_owned(), request.transaction_id.to_string());
        if let Some(results) = self.txn_results.get(&key)? {
            return Ok(results);
        }
        let mut results = TransactionResults::new();
        // Each PDU is checked against what the previous ones wrote as soon
        // as that is applied; the transaction's last commit (its results)
        // makes them all durable with one sync, before the answer.
        let mut applied = Vec::new();
        let mut outcome = Ok(());
        for raw in &request.pdus {
            match self.receive_pdu(rooms, origin, raw, &mut applied).await {
                Ok(Some((event_id, result))) => {
                    results.insert(event_id, result.err());
                }
                Ok(None) => {}
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        if outcome.is_ok() {
            // Before the results are stored: a transaction retried after a
            // crash here is processed again, so no to-device message is lost.
            for edu in &request.edus {
                if let Ok(value) = edu.deserialize_as::<serde_json::Value>() {
                    edus.edu(origin, &value).await;
                }
            }
            let mut batch = rooms.storage().batch();
            batch.put(&self.txn_results, &key, &results)?;
            outcome = rooms.storage().commit(batch).await.map_err(Error::from);
        }
        // Also after an error: what was applied commits anyway, and its
        // hooks and wake-ups must run.
        for pending in applied {
            rooms.finish(pending).await?;
        }
        outcome?;
        Ok(results)
    }

    /// One PDU of a transaction. `None`: not for a room we are in (ignored,
    /// as the spec allows); otherwise the event id and our verdict.
    async fn receive_pdu(
        &self,
        rooms: &Rooms,
        origin: &ServerName,
        raw: &RawValue,
        applied: &mut Vec<Applied>,
    ) -> Result<Option<(OwnedEventId, std::result::Result<(), String>)>> {
        let Some(room_id) = super::room_id_of(raw) else {
            return Ok(None);
        };
        let Some(info) = rooms.room_info(&room_id)? else {
            return Ok(None);
        };
        let pdu = match self.verify_pdu(&room_id, &info.version, raw).await {
            Ok(pdu) => pdu,
            Err(reason) => {
                tracing::info!(%origin, %room_id, %reason, "dropped a received PDU");
                // Without a verified event id there is no key to answer under.
                let event_id = super::rules(&info.version).ok().and_then(|rules| {
                    let json = serde_json::from_str(raw.get()).ok()?;
                    feathur_federation::event_id(&json, &rules).ok()
                });
                return Ok(event_id.map(|id| (id, Err(reason))));
            }
        };
        let event_id = pdu.event_id.clone();
        if let Err(e) = super::check_acl(rooms, &room_id, origin)
            .and_then(|()| super::check_acl(rooms, &room_id, pdu.sender.server_name()))
        {
            return Ok(Some((event_id, Err(e.to_string()))));
        }
        let result = self
            .process_pdu(rooms, origin, &info.version, pdu, true, applied)
            .await;
        Ok(Some((event_id, result)))
    }

    /// Fetches what `pdu` needs, then has the room check and store it.
    /// `fetch_prev`: look for missing `prev_events` with
    /// `get_missing_events` (not done for the events that call returns).
    /// What it stores is pushed on `applied`, for the caller to finish.
    async fn process_pdu(
        &self,
        rooms: &Rooms,
        origin: &ServerName,
        version: &RoomVersionId,
        pdu: Pdu,
        fetch_prev: bool,
        applied: &mut Vec<Applied>,
    ) -> std::result::Result<(), String> {
        let event_id = pdu.event_id.clone();
        if let Some(reason) = rooms.rejection(&event_id).map_err(|e| e.to_string())? {
            return Err(reason);
        }
        if rooms.has_state_at(&event_id).map_err(|e| e.to_string())? {
            return Ok(());
        }
        self.fetch_auth_events(rooms, origin, version, &pdu)
            .await
            .map_err(|e| e.to_string())?;

        let mut missing = rooms
            .prev_events_without_state(&pdu)
            .map_err(|e| e.to_string())?;
        if !missing.is_empty() && fetch_prev {
            if let Err(e) = self
                .fetch_missing_prev(rooms, origin, version, &pdu, applied)
                .await
            {
                tracing::info!(%event_id, "get_missing_events failed: {e}");
            }
            missing = rooms
                .prev_events_without_state(&pdu)
                .map_err(|e| e.to_string())?;
        }
        let state_before = if missing.is_empty() {
            None
        } else {
            Some(
                self.fetch_state_before(rooms, origin, version, &pdu)
                    .await
                    .map_err(|e| format!("could not fetch the state before the event: {e}"))?,
            )
        };
        let (outcome, stored) = rooms
            .accept_remote_applied(pdu, state_before)
            .await
            .map_err(|e| e.to_string())?;
        applied.push(stored);
        match outcome {
            Outcome::Accepted | Outcome::AlreadyKnown | Outcome::SoftFailed(_) => Ok(()),
            Outcome::Rejected(reason) => Err(reason),
        }
    }

    /// Stores `pdu`'s unknown auth events (with their own auth chains) as
    /// outliers, from `/event_auth` on `origin` (also for backfill).
    pub(super) async fn fetch_auth_events(
        &self,
        rooms: &Rooms,
        origin: &ServerName,
        version: &RoomVersionId,
        pdu: &Pdu,
    ) -> Result<()> {
        if rooms.unknown_auth_events(pdu)?.is_empty() {
            return Ok(());
        }
        let request =
            get_event_authorization::v1::Request::new(pdu.room_id.clone(), pdu.event_id.clone());
        let response = self
            .client
            .send(origin, request)
            .await
            .map_err(|e| Error::bad_gateway(format!("/event_auth failed: {e}")))?;
        self.store_outliers(rooms, &pdu.room_id, version, &response.auth_chain)
            .await?;
        Ok(())
    }

    /// Verifies `raws` and stores them as outliers, oldest (by depth)
    /// first so each finds its auth events. Returns the event ids of those
    /// that verified.
    pub(super) async fn store_outliers(
        &self,
        rooms: &Rooms,
        room_id: &RoomId,
        version: &RoomVersionId,
        raws: &[Box<RawValue>],
    ) -> Result<Vec<OwnedEventId>> {
        let mut pdus = Vec::with_capacity(raws.len());
        for raw in raws {
            match self.verify_pdu(room_id, version, raw).await {
                Ok(pdu) => pdus.push(pdu),
                Err(reason) => tracing::info!(%room_id, %reason, "dropped a fetched event"),
            }
        }
        pdus.sort_by_key(|p| p.depth);
        let mut ids = Vec::with_capacity(pdus.len());
        for pdu in pdus {
            ids.push(pdu.event_id.clone());
            if let Some(reason) = rooms.store_outlier(version, pdu).await? {
                tracing::info!(%room_id, %reason, "a fetched event failed its auth rules");
            }
        }
        Ok(ids)
    }

    /// `get_missing_events` from our forward extremities to `pdu`; the
    /// events returned are processed oldest first.
    async fn fetch_missing_prev(
        &self,
        rooms: &Rooms,
        origin: &ServerName,
        version: &RoomVersionId,
        pdu: &Pdu,
        applied: &mut Vec<Applied>,
    ) -> Result<()> {
        let mut request = get_missing_events::v1::Request::new(
            pdu.room_id.clone(),
            rooms.forward_extremities(&pdu.room_id)?,
            vec![pdu.event_id.clone()],
        );
        request.limit = UInt::from(MISSING_EVENTS_LIMIT);
        let response = self
            .client
            .send(origin, request)
            .await
            .map_err(|e| Error::bad_gateway(format!("get_missing_events failed: {e}")))?;
        let mut events = Vec::new();
        for raw in &response.events {
            match self.verify_pdu(&pdu.room_id, version, raw).await {
                Ok(event) => events.push(event),
                Err(reason) => tracing::info!(%reason, "dropped a missing event"),
            }
        }
        events.sort_by_key(|p| p.depth);
        for event in events {
            let id = event.event_id.clone();
            if let Err(reason) =
                Box::pin(self.process_pdu(rooms, origin, version, event, false, applied)).await
            {
                tracing::info!(event_id = %id, %reason, "a missing event was not accepted");
            }
        }
        Ok(())
    }

    /// The state before `pdu` from `origin` (`/state`): its events and
    /// their auth chain stored as outliers; returns the state's event ids.
    async fn fetch_state_before(
        &self,
        rooms: &Rooms,
        origin: &ServerName,
        version: &RoomVersionId,
        pdu: &Pdu,
    ) -> Result<Vec<OwnedEventId>> {
        let request = get_room_state::v1::Request::new(pdu.event_id.clone(), pdu.room_id.clone());
        let response = self
            .client
            .send(origin, request)
            .await
            .map_err(|e| Error::bad_gateway(format!("/state failed: {e}")))?;
        self.store_outliers(rooms, &pdu.room_id, version, &response.auth_chain)
            .await?;
        self.store_outliers(rooms, &pdu.room_id, version, &response.pdus)
            .await
    }
}

/// The servers to try for a room: `preferred` first, then the others, ours
/// left out, each once.
pub fn candidate_servers(
    own: &ServerName,
    preferred: impl IntoIterator<Item = OwnedServerName>,
) -> Vec<OwnedServerName> {
    let mut out: Vec<OwnedServerName> = Vec::new();
    for server in preferred {
        if server != own && !out.contains(&server) {
            out.push(server);
        }
    }
    out
}
