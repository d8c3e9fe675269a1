//! The sender against a fake transport: limits, order, back-off, recovery,
//! restart and independence of destinations.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use ruma::{
    api::federation::transactions::edu::Edu, serde::Raw, EventId, OwnedEventId, OwnedServerName,
    ServerName, TransactionId,
};
use serde_json::{json, value::RawValue, Value};

use super::*;
use crate::storage::{OpenMode, Storage};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Behaviour {
    Accept,
    Unavailable,
    Reject,
    /// Never answers (a peer that accepts the connection and stalls).
    Hang,
}

#[derive(Debug, Clone)]
struct Attempt {
    destination: OwnedServerName,
    txn_id: String,
    pdus: Vec<String>,
    edus: Vec<Value>,
    at: Instant,
    accepted: bool,
}

#[derive(Default)]
struct FakeTransport {
    behaviour: Mutex<HashMap<OwnedServerName, Behaviour>>,
    attempts: Mutex<Vec<Attempt>>,
}

impl FakeTransport {
    fn set(&self, destination: &str, behaviour: Behaviour) {
        self.behaviour
            .lock()
            .insert(destination.try_into().unwrap(), behaviour);
    }

    fn attempts_to(&self, destination: &str) -> Vec<Attempt> {
        self.attempts
            .lock()
            .iter()
            .filter(|a| a.destination == destination)
            .cloned()
            .collect()
    }

    fn delivered_to(&self, destination: &str) -> Vec<Attempt> {
        let mut attempts = self.attempts_to(destination);
        attempts.retain(|a| a.accepted);
        attempts
    }
}

impl Transport for FakeTransport {
    fn send_transaction<'a>(
        &'a self,
        destination: &'a ServerName,
        txn_id: &'a TransactionId,
        pdus: Vec<Box<RawValue>>,
        edus: Vec<Raw<Edu>>,
    ) -> TransportFuture<'a> {
        Box::pin(async move {
            assert!(
                pdus.len() <= MAX_PDUS_PER_TRANSACTION && edus.len() <= MAX_EDUS_PER_TRANSACTION
            );
            let behaviour = self
                .behaviour
                .lock()
                .get(destination)
                .copied()
                .unwrap_or(Behaviour::Accept);
            let pdu_ids = pdus
                .iter()
                .map(|p| {
                    let v: Value = serde_json::from_str(p.get()).unwrap();
                    v["event_id"].as_str().unwrap().to_owned()
                })
                .collect();
            self.attempts.lock().push(Attempt {
                destination: destination.to_owned(),
                txn_id: txn_id.to_string(),
                pdus: pdu_ids,
                edus: edus
                    .iter()
                    .map(|e| serde_json::from_str(e.json().get()).unwrap())
                    .collect(),
                at: Instant::now(),
                accepted: behaviour == Behaviour::Accept,
            });
            match behaviour {
                Behaviour::Accept => Ok(PduResults::new()),
                Behaviour::Unavailable => Err(TransportError::Unavailable("down".into())),
                Behaviour::Reject => Err(TransportError::Rejected("no".into())),
                Behaviour::Hang => std::future::pending().await,
            }
        })
    }
}

/// Every event exists, except those listed as missing.
#[derive(Default)]
struct FakePdus {
    missing: Mutex<HashSet<OwnedEventId>>,
}

impl PduSource for FakePdus {
    fn pdu_json(&self, event_id: &EventId) -> crate::error::Result<Option<Box<RawValue>>> {
        if self.missing.lock().contains(event_id) {
            return Ok(None);
        }
        Ok(Some(
            serde_json::value::to_raw_value(&json!({ "event_id": event_id })).unwrap(),
        ))
    }
}

const OWN: &str = "own.example";

fn fast() -> SendingConfig {
    SendingConfig {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(160),
        attempt_timeout: Duration::from_secs(30),
    }
}

struct Fixture {
    storage: Arc<Storage>,
    sending: Sending,
    transport: Arc<FakeTransport>,
    pdus: Arc<FakePdus>,
}

impl Fixture {
    fn open(dir: &Path, config: SendingConfig) -> Fixture {
        let storage = Storage::open(dir, OpenMode::ReadWrite).unwrap();
        let sending = Sending::new(storage.clone(), OWN.try_into().unwrap(), config);
        Fixture {
            storage,
            sending,
            transport: Arc::default(),
            pdus: Arc::default(),
        }
    }

    fn start(&self) {
        self.sending
            .start(self.transport.clone(), self.pdus.clone())
            .unwrap();
    }

    async fn pdu(&self, destinations: &[&str], n: usize) {
        let names: Vec<OwnedServerName> = destinations.iter().map(|d| server(d)).collect();
        self.sending
            .send_pdu(names.iter().map(|n| &**n), &event(n))
            .await
            .unwrap();
    }

    async fn edu(&self, destination: &str, n: usize) {
        self.sending
            .send_edu(&server(destination), &edu(n))
            .await
            .unwrap();
    }

    fn queued(&self, destination: &str) -> usize {
        self.sending.inner.queue.len(&server(destination))
    }

    /// Stops the sender and closes the database, so it can be reopened.
    async fn close(self) {
        self.sending.shutdown().await;
        drop(self.sending);
        assert_eq!(Arc::strong_count(&self.storage), 1, "storage still in use");
    }
}

fn server(name: &str) -> OwnedServerName {
    name.try_into().unwrap()
}

fn event(n: usize) -> OwnedEventId {
    EventId::parse(format!("$event{n}")).unwrap()
}

fn event_ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|n| event(n).to_string()).collect()
}

fn edu(n: usize) -> Raw<Edu> {
    let json = json!({ "edu_type": "m.typing", "content": { "n": n } });
    Raw::from_json(serde_json::value::to_raw_value(&json).unwrap())
}

fn edu_numbers(attempt: &Attempt) -> Vec<u64> {
    attempt
        .edus
        .iter()
        .map(|e| e["content"]["n"].as_u64().unwrap())
        .collect()
}

/// Polls `condition` until it holds; fails the test after 10 s.
async fn until(what: &str, condition: impl Fn() -> bool) {
    let started = Instant::now();
    while !condition() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn transactions_respect_the_limits_and_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(dir.path(), fast());
    // Interleaved PDUs and EDUs, queued before the sender starts.
    for n in 0..130 {
        if n < 120 {
            f.pdu(&["b.example"], n).await;
        }
        f.edu("b.example", n).await;
    }
    f.start();
    until("everything delivered", || f.queued("b.example") == 0).await;
    let sent = f.transport.delivered_to("b.example");
    let shape: Vec<(usize, usize)> = sent.iter().map(|a| (a.pdus.len(), a.edus.len())).collect();
    // A transaction ends at the first item that would break a limit.
    assert_eq!(shape, [(50, 50), (50, 50), (20, 30)]);
    let pdus: Vec<String> = sent.iter().flat_map(|a| a.pdus.clone()).collect();
    assert_eq!(pdus, event_ids(0..120));
    let edus: Vec<u64> = sent.iter().flat_map(edu_numbers).collect();
    assert_eq!(edus, (0..130).collect::<Vec<u64>>());
    let ids: HashSet<&str> = sent.iter().map(|a| a.txn_id.as_str()).collect();
    assert_eq!(ids.len(), 3, "each transaction has its own id");

    // EDUs alone: 100 per transaction.
    let dir = tempfile::tempdir().unwrap();
    let g = Fixture::open(dir.path(), fast());
    for n in 0..150 {
        g.edu("c.example", n).await;
    }
    g.start();
    until("EDUs delivered", || g.queued("c.example") == 0).await;
    let shape: Vec<usize> = g
        .transport
        .delivered_to("c.example")
        .iter()
        .map(|a| a.edus.len())
        .collect();
    assert_eq!(shape, [100, 50]);
}

#[tokio::test]
async fn a_failing_peer_is_retried_with_back_off_and_the_same_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let config = SendingConfig {
        max_backoff: Duration::from_secs(2),
        ..fast()
    };
    let f = Fixture::open(dir.path(), config);
    f.transport.set("b.example", Behaviour::Unavailable);
    f.start();
    f.pdu(&["b.example"], 1).await;
    until("five attempts", || {
        f.transport.attempts_to("b.example").len() >= 5
    })
    .await;
    // Items queued while the peer is down wait for their own transaction.
    f.pdu(&["b.example"], 2).await;

    let attempts = f.transport.attempts_to("b.example");
    let first = &attempts[0];
    assert!(attempts
        .iter()
        .all(|a| a.txn_id == first.txn_id && a.pdus == first.pdus));
    let gaps: Vec<Duration> = attempts.windows(2).map(|w| w[1].at - w[0].at).collect();
    // 20, 40, 80, 160 ms: doubling (sleeps never end early).
    for (gap, expected) in gaps.iter().zip([20u64, 40, 80, 160]) {
        assert!(*gap >= Duration::from_millis(expected), "{gaps:?}");
    }
    assert_eq!(f.queued("b.example"), 2);

    // The peer comes back: the same transaction goes through, then the rest.
    f.transport.set("b.example", Behaviour::Accept);
    until("delivered after recovery", || f.queued("b.example") == 0).await;
    let delivered = f.transport.delivered_to("b.example");
    assert_eq!(delivered[0].txn_id, first.txn_id);
    assert_eq!(delivered[0].pdus, event_ids(1..2));
    assert_eq!(delivered[1].pdus, event_ids(2..3));
    assert_ne!(delivered[1].txn_id, first.txn_id);
    // After a success the back-off starts over: 20 ms again, not the 640 ms
    // that doubling on from before the recovery would give.
    let before = f.transport.attempts_to("b.example").len();
    f.transport.set("b.example", Behaviour::Unavailable);
    f.pdu(&["b.example"], 3).await;
    until("failing again", || {
        f.transport.attempts_to("b.example").len() >= before + 2
    })
    .await;
    let again = f.transport.attempts_to("b.example");
    let gap = again[before + 1].at - again[before].at;
    assert!(
        gap < Duration::from_millis(500),
        "back-off was not reset: {gap:?}"
    );
}

#[tokio::test]
async fn retry_now_ends_a_long_back_off() {
    let dir = tempfile::tempdir().unwrap();
    let config = SendingConfig {
        initial_backoff: Duration::from_secs(3600),
        max_backoff: Duration::from_secs(3600),
        attempt_timeout: Duration::from_secs(30),
    };
    let f = Fixture::open(dir.path(), config);
    f.transport.set("b.example", Behaviour::Unavailable);
    f.start();
    f.pdu(&["b.example"], 1).await;
    until("first attempt", || {
        !f.transport.attempts_to("b.example").is_empty()
    })
    .await;
    f.transport.set("b.example", Behaviour::Accept);
    // A new item does not cut the back-off short...
    f.pdu(&["b.example"], 2).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(f.transport.delivered_to("b.example").is_empty());
    // ...hearing from the peer does.
    f.sending.retry_now(&server("b.example"));
    until("delivered", || f.queued("b.example") == 0).await;
}

#[tokio::test]
async fn a_restart_resumes_the_queue_with_the_same_transaction_id() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(dir.path(), fast());
    f.transport.set("b.example", Behaviour::Unavailable);
    for n in 0..60 {
        f.pdu(&["b.example"], n).await;
    }
    f.edu("c.example", 7).await;
    f.transport.set("c.example", Behaviour::Hang);
    f.start();
    until("attempts", || {
        !f.transport.attempts_to("b.example").is_empty()
            && !f.transport.attempts_to("c.example").is_empty()
    })
    .await;
    let failed = f.transport.attempts_to("b.example")[0].clone();
    assert_eq!(failed.pdus, event_ids(0..50));
    let stalled = f.transport.attempts_to("c.example")[0].clone();
    f.close().await;

    let f = Fixture::open(dir.path(), fast());
    assert_eq!(f.queued("b.example"), 60);
    assert_eq!(
        f.queued("c.example"),
        1,
        "a delivery never answered stays queued"
    );
    f.start();
    until("resumed and delivered", || {
        f.queued("b.example") == 0 && f.queued("c.example") == 0
    })
    .await;
    let delivered = f.transport.delivered_to("b.example");
    assert_eq!(delivered[0].txn_id, failed.txn_id);
    assert_eq!(delivered[0].pdus, event_ids(0..50));
    assert_eq!(delivered[1].pdus, event_ids(50..60));
    assert_ne!(delivered[1].txn_id, failed.txn_id);
    let resent = &f.transport.delivered_to("c.example")[0];
    assert_eq!(
        (resent.txn_id.as_str(), edu_numbers(resent)),
        (stalled.txn_id.as_str(), vec![7])
    );
    // New work after the restart continues the sequence.
    f.pdu(&["b.example"], 60).await;
    until("new item", || {
        f.transport.delivered_to("b.example").len() == 3
    })
    .await;
    assert_eq!(
        f.transport.delivered_to("b.example")[2].pdus,
        event_ids(60..61)
    );
}

#[tokio::test]
async fn a_dead_or_stalled_peer_does_not_hold_up_others() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(dir.path(), fast());
    f.transport.set("stalled.example", Behaviour::Hang);
    f.transport.set("dead.example", Behaviour::Unavailable);
    f.start();
    let all = ["stalled.example", "dead.example", "live.example"];
    for n in 0..3 {
        f.pdu(&all, n).await;
    }
    until("live delivered", || f.queued("live.example") == 0).await;
    f.pdu(&all, 3).await;
    until("live delivered again", || f.queued("live.example") == 0).await;
    let live: Vec<String> = f
        .transport
        .delivered_to("live.example")
        .iter()
        .flat_map(|a| a.pdus.clone())
        .collect();
    assert_eq!(live, event_ids(0..4));
    assert_eq!(f.queued("stalled.example"), 4);
    assert_eq!(f.queued("dead.example"), 4);
    // Shutting down does not wait for the stalled delivery.
    tokio::time::timeout(Duration::from_secs(5), f.sending.shutdown())
        .await
        .expect("shutdown waited for a stalled peer");
}

#[tokio::test]
async fn rejected_and_vanished_items_do_not_block_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(dir.path(), fast());
    f.pdus.missing.lock().insert(event(1));
    f.pdu(&["b.example"], 0).await;
    f.pdu(&["b.example"], 1).await;
    f.start();
    until("sent", || f.queued("b.example") == 0).await;
    // The vanished PDU is left out.
    assert_eq!(
        f.transport.delivered_to("b.example")[0].pdus,
        event_ids(0..1)
    );

    // A transaction of only vanished PDUs is dropped without a request.
    f.pdu(&["b.example"], 1).await;
    until("dropped", || f.queued("b.example") == 0).await;
    assert_eq!(f.transport.attempts_to("b.example").len(), 1);

    // A rejected transaction is dropped; the next one goes out.
    f.transport.set("b.example", Behaviour::Reject);
    f.pdu(&["b.example"], 2).await;
    until("rejected", || f.queued("b.example") == 0).await;
    f.transport.set("b.example", Behaviour::Accept);
    f.pdu(&["b.example"], 3).await;
    until("next", || f.queued("b.example") == 0).await;
    let attempts = f.transport.attempts_to("b.example");
    assert_eq!(attempts.len(), 3);
    assert!(!attempts[1].accepted);
    assert_eq!(attempts[2].pdus, event_ids(3..4));
}

#[tokio::test]
async fn nothing_is_queued_for_this_server() {
    let dir = tempfile::tempdir().unwrap();
    let f = Fixture::open(dir.path(), fast());
    let mut batch = f.storage.batch();
    let own = server(OWN);
    let other = server("b.example");
    let queued = f
        .sending
        .queue_pdu(&mut batch, [&*own, &*other], &event(0))
        .unwrap();
    let more = f.sending.queue_edu(&mut batch, &own, &edu(0)).unwrap();
    assert!(more.is_empty());
    assert_eq!(batch.len(), 1);
    f.storage.commit(batch).await.unwrap();
    f.sending.wake(queued);
    assert_eq!(f.queued(OWN), 0);
    assert_eq!(f.queued("b.example"), 1);
}
