//! The durability promise under load: an event whose send was answered 200
//! survives `kill -9` and a SIGTERM shutdown taken while eight senders send
//! concurrently, is served by `/event` and `/messages` exactly once, and its
//! transaction id still maps to the same event id after the restart.
//!
//! The kill moment is random; the seed is printed so that a failing round can
//! be replayed with `FEATHUR_DURABILITY_SEED=…`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use spec_tests::{assert_ok, enc, install_crypto_provider, json, Session, TestServer, Value};

const SENDERS: usize = 8;
const KILL_ROUNDS: usize = 5;
/// Upper bound on sends per sender per round (a round normally ends sooner,
/// when the server goes away).
const MAX_SENDS_PER_ROUND: usize = 5_000;
/// The stop comes a random delay after this many sends of the round were
/// acknowledged, so that every round has acknowledged sends to check (a
/// loaded debug build can take a while for its first few).
const ACKS_BEFORE_STOP: usize = 16;

/// A send the server answered with 200.
#[derive(Clone, Debug)]
struct Ack {
    txn: String,
    body: String,
    event_id: String,
}

/// What one sender saw in one round.
#[derive(Debug, Default)]
struct SenderLog {
    acked: Vec<Ack>,
    /// The send whose answer never came (txn, body): it may or may not be stored.
    unanswered: Option<(String, String)>,
    /// Non-200 answers (status and body), which should not happen.
    rejected: Vec<String>,
}

/// A small xorshift generator: the test needs a few random delays, not a crate.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("FEATHUR_DURABILITY_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|d| d.as_nanos() as u64)
                    .unwrap_or(1)
            })
            | 1;
        eprintln!("durability: FEATHUR_DURABILITY_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// An HTTP client that reports connection failures instead of panicking
/// (the harness's client panics, which is right everywhere but here).
fn raw_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("building the reqwest client")
}

fn send_path(room: &str, txn: &str) -> String {
    format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
        enc(room),
        enc(txn)
    )
}

/// `PUT …/send/m.room.message/{txn}`; `Err` when no HTTP answer came back.
async fn try_send(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    room: &str,
    txn: &str,
    body: &str,
) -> Result<(u16, Value), String> {
    let resp = http
        .put(format!("{base}{}", send_path(room, txn)))
        .bearer_auth(token)
        .json(&json!({"msgtype": "m.text", "body": body}))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.map_err(|e| e.to_string())?;
    Ok((
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    ))
}

/// One sender sending back to back until `stop` is set or the server stops
/// answering.
async fn sender_loop(
    base: String,
    token: String,
    room: String,
    label: String,
    stop: Arc<AtomicBool>,
    acks: Arc<AtomicUsize>,
) -> SenderLog {
    let http = raw_client();
    let mut log = SenderLog::default();
    for n in 0..MAX_SENDS_PER_ROUND {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let txn = format!("{label}-n{n}");
        let body = format!("durable {label} n{n}");
        match try_send(&http, &base, &token, &room, &txn, &body).await {
            Ok((200, answer)) => match answer["event_id"].as_str() {
                Some(id) => {
                    log.acked.push(Ack {
                        txn,
                        body,
                        event_id: id.to_owned(),
                    });
                    acks.fetch_add(1, Ordering::Relaxed);
                }
                None => {
                    log.rejected.push(format!("200 without event_id: {answer}"));
                    break;
                }
            },
            Ok((status, answer)) => {
                // A server shutting down may refuse politely; the send is
                // not acknowledged and may be retried like an unanswered one.
                log.rejected.push(format!("{status} {answer}"));
                log.unanswered = Some((txn, body));
                break;
            }
            Err(_) => {
                log.unanswered = Some((txn, body));
                break;
            }
        }
    }
    log
}

/// Every `m.room.message` body in the room with its event ids, read through
/// `/messages` backwards from the newest event.
async fn bodies_in_room(
    server: &TestServer,
    who: &Session,
    room: &str,
) -> HashMap<String, Vec<String>> {
    let mut bodies: HashMap<String, Vec<String>> = HashMap::new();
    let mut from: Option<String> = None;
    for _ in 0..1_000 {
        let mut path = format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1000",
            enc(room)
        );
        if let Some(f) = &from {
            path.push_str(&format!("&from={}", enc(f)));
        }
        let page = assert_ok(server.get(&path, who.token()).await);
        let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
        for event in &chunk {
            if event["type"] == "m.room.message" {
                if let (Some(body), Some(id)) = (
                    event["content"]["body"].as_str(),
                    event["event_id"].as_str(),
                ) {
                    bodies
                        .entry(body.to_owned())
                        .or_default()
                        .push(id.to_owned());
                }
            }
        }
        match page["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
            _ => return bodies,
        }
    }
    panic!("/messages did not reach the start of the room in 1,000 pages");
}

/// Eight users in one room; the room id and the sessions.
async fn room_with_senders(server: &TestServer) -> (String, Vec<Session>) {
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        senders.push(
            server
                .register(&format!("sender{i}"), "durability-pw")
                .await,
        );
    }
    let room = server
        .create_room(&senders[0], json!({"preset": "public_chat"}))
        .await;
    for s in &senders[1..] {
        assert_ok(
            server
                .post(
                    &format!("/_matrix/client/v3/join/{}", enc(&room)),
                    s.token(),
                    json!({}),
                )
                .await,
        );
    }
    (room, senders)
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Stop {
    Kill9,
    Term,
}

/// Starts the senders, stops the server the given way `delay` after
/// [`ACKS_BEFORE_STOP`] sends were acknowledged, and collects what each
/// sender saw.
async fn round_under_load(
    server: &mut TestServer,
    room: &str,
    senders: &[Session],
    label: &str,
    delay: Duration,
    how: Stop,
) -> Vec<SenderLog> {
    let stop = Arc::new(AtomicBool::new(false));
    let acks = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = senders
        .iter()
        .enumerate()
        .map(|(i, s)| {
            tokio::spawn(sender_loop(
                server.base_url().to_owned(),
                s.access_token.clone(),
                room.to_owned(),
                format!("{label}-s{i}"),
                stop.clone(),
                acks.clone(),
            ))
        })
        .collect();
    let waiting = Instant::now();
    while acks.load(Ordering::Relaxed) < ACKS_BEFORE_STOP {
        assert!(
            waiting.elapsed() < Duration::from_secs(30),
            "{label}: fewer than {ACKS_BEFORE_STOP} sends acknowledged in 30 s"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    tokio::time::sleep(delay).await;
    match how {
        Stop::Kill9 => server.kill9(),
        Stop::Term => {
            let status = tokio::task::block_in_place(|| server.stop());
            assert!(
                status.success(),
                "SIGTERM under load must exit 0, got {status}; log:\n{}",
                spec_tests::tail(&server.log(), 40)
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut logs = Vec::new();
    for t in tasks {
        logs.push(t.await.expect("sender task"));
    }
    logs
}

/// Restarts the server and checks the promise for this round's logs; `all`
/// accumulates every acknowledged send so far, across rounds.
async fn restart_and_verify(
    server: &mut TestServer,
    room: &str,
    senders: &[Session],
    logs: Vec<SenderLog>,
    all: &mut Vec<Ack>,
    label: &str,
) {
    server.restart().await;
    let http = raw_client();
    let base = server.base_url().to_owned();
    let acked_now: usize = logs.iter().map(|l| l.acked.len()).sum();
    let unanswered = logs.iter().filter(|l| l.unanswered.is_some()).count();
    eprintln!("{label}: {acked_now} sends acknowledged, {unanswered} unanswered");

    for (i, log) in logs.iter().enumerate() {
        let token = &senders[i].access_token;
        // Re-sending an acknowledged txn id returns the same event id.
        for ack in &log.acked {
            let (status, answer) = try_send(&http, &base, token, room, &ack.txn, &ack.body)
                .await
                .unwrap_or_else(|e| panic!("{label}: re-send of {} failed: {e}", ack.txn));
            assert_eq!(status, 200, "{label}: re-send of {}: {answer}", ack.txn);
            assert_eq!(
                answer["event_id"].as_str(),
                Some(ack.event_id.as_str()),
                "{label}: re-sending acknowledged txn {} gave another event id",
                ack.txn
            );
            // The event is served by /event.
            let path = format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                enc(room),
                enc(&ack.event_id)
            );
            let (status, event) = server.get(&path, senders[i].token()).await;
            assert_eq!(
                status.as_u16(),
                200,
                "{label}: acknowledged event {} ({}) is not served: {event}",
                ack.event_id,
                ack.body
            );
            assert_eq!(event["content"]["body"], ack.body.as_str());
        }
        // A client retries the send that got no answer with the same txn id:
        // it must land once, whether or not it was stored before the stop.
        if let Some((txn, body)) = &log.unanswered {
            let (status, answer) = try_send(&http, &base, token, room, txn, body)
                .await
                .unwrap_or_else(|e| panic!("{label}: retry of {txn} failed: {e}"));
            assert_eq!(status, 200, "{label}: retry of {txn}: {answer}");
            let event_id = answer["event_id"].as_str().expect("event_id").to_owned();
            let (again, answer2) = try_send(&http, &base, token, room, txn, body)
                .await
                .expect("second retry");
            assert_eq!(again, 200);
            assert_eq!(answer2["event_id"].as_str(), Some(event_id.as_str()));
            all.push(Ack {
                txn: txn.clone(),
                body: body.clone(),
                event_id,
            });
        }
        assert!(
            log.rejected.is_empty() || log.unanswered.is_some(),
            "{label}: sender {i} got refusals: {:?}",
            log.rejected
        );
        all.extend(log.acked.iter().cloned());
    }

    // /messages serves every acknowledged event exactly once, and no body
    // twice at all.
    let bodies = bodies_in_room(server, &senders[0], room).await;
    for (body, ids) in &bodies {
        assert_eq!(
            ids.len(),
            1,
            "{label}: {body:?} is in the room {} times: {ids:?}",
            ids.len()
        );
    }
    for ack in all.iter() {
        let ids = bodies.get(&ack.body).unwrap_or_else(|| {
            panic!(
                "{label}: acknowledged {:?} ({}) is missing from /messages",
                ack.body, ack.event_id
            )
        });
        assert_eq!(ids, &vec![ack.event_id.clone()], "{label}: {:?}", ack.body);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_sends_survive_kill9_under_load() {
    let started = Instant::now();
    let mut rng = Rng::seeded();
    let mut server = TestServer::start().await;
    let (room, senders) = room_with_senders(&server).await;
    let mut all = Vec::new();
    for round in 0..KILL_ROUNDS {
        let delay = Duration::from_millis(rng.below(300));
        let label = format!("kill{round}");
        eprintln!("{label}: kill -9 {delay:?} after {ACKS_BEFORE_STOP} acknowledgements");
        let logs = round_under_load(&mut server, &room, &senders, &label, delay, Stop::Kill9).await;
        restart_and_verify(&mut server, &room, &senders, logs, &mut all, &label).await;
    }
    assert!(
        !all.is_empty(),
        "no send was acknowledged in {KILL_ROUNDS} rounds: the test proved nothing"
    );
    eprintln!(
        "{} acknowledged sends checked over {KILL_ROUNDS} kill -9 rounds in {:?}",
        all.len(),
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_sends_survive_sigterm_under_load() {
    let mut rng = Rng::seeded();
    let mut server = TestServer::start().await;
    let (room, senders) = room_with_senders(&server).await;
    let mut all = Vec::new();
    for round in 0..2 {
        let delay = Duration::from_millis(rng.below(300));
        let label = format!("term{round}");
        eprintln!("{label}: SIGTERM {delay:?} after {ACKS_BEFORE_STOP} acknowledgements");
        let logs = round_under_load(&mut server, &room, &senders, &label, delay, Stop::Term).await;
        restart_and_verify(&mut server, &room, &senders, logs, &mut all, &label).await;
    }
    assert!(
        !all.is_empty(),
        "no send was acknowledged: the test proved nothing"
    );
}
