//! Load generator: starts a real `feathur` (or targets a running server) and
//! measures it — the figures in `docs/performance.md`.
//!
//! ```text
//! cargo build --release --bin feathur
//! cargo build --release -p spec-tests --bin loadgen
//! target/release/loadgen --feathur target/release/feathur --senders 1,10 --messages 2000
//! target/release/loadgen --feathur target/release/feathur --scenario wake --members 1,200
//! target/release/loadgen --feathur target/release/feathur --scenario idle --polls 1000
//! target/release/loadgen --feathur target/release/feathur --scenario initial --rooms 100
//! ```
//!
//! Scenarios:
//!
//! - `send` (default): local sends into one room (or a room per sender).
//! - `wake`: N members long-poll `/sync` on one room; one sender sends; the
//!   time from the send's start to each member's poll returning with it.
//! - `idle`: many long-polls held open; the server's CPU time and RSS.
//! - `initial`: one user in many rooms of many members; initial sync time by
//!   timeline limit, with and without lazy-loaded members.
//!
//! Every request loop is bounded in count and by a deadline; traffic goes only
//! to the loopback server it started (or `--url`, which must be loopback).

use std::{future::Future, sync::Arc, time::Duration};

use spec_tests::{enc, json, HttpClient, TestServer, Value};
use tokio::task::JoinSet;

mod send;
mod sync;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Send,
    Wake,
    Idle,
    Initial,
}

pub(crate) struct Options {
    feathur: Option<String>,
    url: Option<String>,
    scenario: Scenario,
    senders: Vec<usize>,
    messages: usize,
    room_version: String,
    /// Each sender in a room of its own instead of all in one.
    room_per_sender: bool,
    /// wake: waiting members per run.
    pub members: Vec<usize>,
    /// wake: send/wake rounds per run.
    pub rounds: usize,
    /// idle: concurrent long-polls, spread over `poll_users` users.
    pub polls: usize,
    pub poll_users: usize,
    /// idle: measuring window (seconds), after the polls have settled.
    pub window_secs: u64,
    /// initial: rooms the user is in, members per room, messages per room.
    pub rooms: usize,
    pub room_members: usize,
    pub room_messages: usize,
}

const USAGE: &str = "usage: loadgen [--feathur BIN | --url http://127.0.0.1:PORT] \
     [--scenario send|wake|idle|initial] [--room-version 12]\n  \
     send:    [--senders 1,10] [--messages N] [--room-per-sender]\n  \
     wake:    [--members 1,200] [--rounds 50]\n  \
     idle:    [--polls 1000] [--poll-users 100] [--window-secs 20]\n  \
     initial: [--rooms 100] [--room-members 100] [--room-messages 5]";

fn number<T: std::str::FromStr>(arg: &str, value: String) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("bad {arg} value {value}"))
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        feathur: None,
        url: None,
        scenario: Scenario::Send,
        senders: vec![1, 10],
        messages: 2000,
        room_version: "12".into(),
        room_per_sender: false,
        members: vec![1, 200],
        rounds: 50,
        polls: 1000,
        poll_users: 100,
        window_secs: 20,
        rooms: 100,
        room_members: 100,
        room_messages: 5,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let list = |v: String| -> Result<Vec<usize>, String> {
            v.split(',').map(|n| number(&arg, n.to_owned())).collect()
        };
        match arg.as_str() {
            "--feathur" => options.feathur = Some(value()?),
            "--url" => options.url = Some(value()?),
            "--scenario" => {
                options.scenario = match value()?.as_str() {
                    "send" => Scenario::Send,
                    "wake" => Scenario::Wake,
                    "idle" => Scenario::Idle,
                    "initial" => Scenario::Initial,
                    other => return Err(format!("unknown scenario {other}\n{USAGE}")),
                }
            }
            "--senders" => options.senders = list(value()?)?,
            "--messages" => options.messages = number(&arg, value()?)?,
            "--room-version" => options.room_version = value()?,
            "--room-per-sender" => options.room_per_sender = true,
            "--members" => options.members = list(value()?)?,
            "--rounds" => options.rounds = number(&arg, value()?)?,
            "--polls" => options.polls = number(&arg, value()?)?,
            "--poll-users" => options.poll_users = number(&arg, value()?)?,
            "--window-secs" => options.window_secs = number(&arg, value()?)?,
            "--rooms" => options.rooms = number(&arg, value()?)?,
            "--room-members" => options.room_members = number(&arg, value()?)?,
            "--room-messages" => options.room_messages = number(&arg, value()?)?,
            "--help" | "-h" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other}\n{USAGE}")),
        }
    }
    if let Some(url) = &options.url {
        let host = url.trim_start_matches("http://");
        if !(host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]"))
        {
            return Err("--url must point at a loopback address".into());
        }
    }
    // Bounds that keep every scenario finite and the idle polls open for the
    // whole window (the server caps a poll at 30 s).
    if options.members.iter().any(|&m| m == 0 || m > 2000) || options.rounds > 1000 {
        return Err("--members must be 1..=2000 and --rounds at most 1000".into());
    }
    if options.polls > 5000 || options.poll_users == 0 || !(1..=25).contains(&options.window_secs) {
        return Err("--polls at most 5000, --poll-users at least 1, --window-secs 1..=25".into());
    }
    if options.rooms == 0 || options.rooms > 1000 || !(1..=1000).contains(&options.room_members) {
        return Err("--rooms and --room-members must be 1..=1000".into());
    }
    Ok(options)
}

/// Percentile of sorted durations, in milliseconds.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

pub(crate) async fn register(client: &HttpClient, name: &str) -> Result<String, String> {
    let (_, challenge) = client
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({"username": name, "password": "load-test-password"}),
        )
        .await;
    let session = challenge["session"].as_str().unwrap_or_default().to_owned();
    let (status, body) = client
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({"username": name, "password": "load-test-password",
                   "auth": {"type": "m.login.dummy", "session": session}}),
        )
        .await;
    body["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or(format!("registering {name} failed: {status} {body}"))
}

/// Registers `prefix0` … `prefix{n-1}`, a few at a time; their access tokens.
pub(crate) async fn register_many(
    client: &Arc<HttpClient>,
    prefix: &str,
    n: usize,
) -> Result<Vec<String>, String> {
    bounded(n, 4, |i| {
        let client = client.clone();
        let name = format!("{prefix}{i}");
        async move { register(&client, &name).await }
    })
    .await
}

pub(crate) async fn create_room(
    client: &HttpClient,
    token: &str,
    room_version: &str,
) -> Result<String, String> {
    let body = json!({"preset": "public_chat", "room_version": room_version});
    let (status, created) = client
        .post("/_matrix/client/v3/createRoom", Some(token), body)
        .await;
    created["room_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or(format!("createRoom: {status} {created}"))
}

pub(crate) async fn join(client: &HttpClient, token: &str, room: &str) -> Result<(), String> {
    let path = format!("/_matrix/client/v3/join/{}", enc(room));
    let (status, body) = client.post(&path, Some(token), json!({})).await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("join: {status} {body}"))
    }
}

pub(crate) async fn send_text(
    client: &HttpClient,
    token: &str,
    room: &str,
    txn: &str,
    text: &str,
) -> Result<(), String> {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
        enc(room)
    );
    let body = json!({"msgtype": "m.text", "body": text});
    let (status, answer) = client.put(&path, Some(token), body).await;
    if status.is_success() {
        Ok(())
    } else {
        Err(format!("send: {status} {answer}"))
    }
}

/// `GET /sync?{query}`, which must succeed.
pub(crate) async fn sync(client: &HttpClient, token: &str, query: &str) -> Result<Value, String> {
    let (status, body) = client
        .get(&format!("/_matrix/client/v3/sync?{query}"), Some(token))
        .await;
    if status.is_success() {
        Ok(body)
    } else {
        Err(format!("sync?{query}: {status} {body}"))
    }
}

/// Runs `task(0..n)` with at most `concurrency` in flight; results in order.
pub(crate) async fn bounded<T, F, Fut>(
    n: usize,
    concurrency: usize,
    task: F,
) -> Result<Vec<T>, String>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, String>> + Send + 'static,
{
    let mut set = JoinSet::new();
    let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
    let mut next = 0;
    while next < n || !set.is_empty() {
        while next < n && set.len() < concurrency.max(1) {
            let fut = task(next);
            let i = next;
            set.spawn(async move { (i, fut.await) });
            next += 1;
        }
        if let Some(done) = set.join_next().await {
            let (i, result) = done.map_err(|e| e.to_string())?;
            out[i] = Some(result?);
        }
    }
    Ok(out.into_iter().flatten().collect())
}

#[tokio::main]
async fn main() {
    let options = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    if let Some(bin) = &options.feathur {
        // The server runs in its temp dir, so a relative path must be resolved here.
        let bin = std::fs::canonicalize(bin).unwrap_or_else(|_| bin.into());
        std::env::set_var("FEATHUR_BIN", bin);
    }
    let server = match &options.url {
        Some(_) => None,
        // Loopback listener: registration is open by default there.
        None => Some(
            TestServer::builder()
                .toml("[log]\nlevel = \"warn\"")
                .start()
                .await,
        ),
    };
    let url = match (&options.url, &server) {
        (Some(url), _) => url.clone(),
        (None, Some(server)) => server.base_url().to_owned(),
        (None, None) => unreachable!("a server was started"),
    };
    let pid = server.as_ref().and_then(TestServer::pid);
    let client = Arc::new(HttpClient::new(&url));
    let result = match options.scenario {
        Scenario::Send => run_send(&client, &options).await,
        Scenario::Wake => {
            let mut result = Ok(());
            for (run, &members) in options.members.iter().enumerate() {
                result = sync::wake(&client, run, members, &options).await;
                if result.is_err() {
                    break;
                }
            }
            result
        }
        Scenario::Idle => match pid {
            Some(pid) => sync::idle(&client, pid, &options).await,
            None => Err("the idle scenario needs a server it started (no --url)".into()),
        },
        Scenario::Initial => sync::initial(&client, &options).await,
    };
    if let Err(e) = result {
        eprintln!("{:?} scenario failed: {e}", options.scenario);
        std::process::exit(1);
    }
}

async fn run_send(client: &Arc<HttpClient>, options: &Options) -> Result<(), String> {
    for (run, &senders) in options.senders.iter().enumerate() {
        let per_sender = (options.messages / senders.max(1)).max(1);
        send::scenario(
            client.clone(),
            run,
            senders,
            per_sender,
            &options.room_version,
            options.room_per_sender,
        )
        .await
        .map_err(|e| format!("with {senders} senders: {e}"))?;
    }
    Ok(())
}
