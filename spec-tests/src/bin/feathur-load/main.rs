//! `feathur-load`: drives a homeserver through the Client-Server API and
//! measures it — the figures in `docs/performance.md`. It speaks only the
//! spec (registration with `m.login.dummy`, rooms, sends, /sync), so it
//! measures Synapse as well as Feathur.
//!
//! ```text
//! cargo build --release -p feathur --bin feathur -p spec-tests --bin feathur-load
//! # start a Feathur of its own (in a temp dir, on a free loopback port):
//! target/release/feathur-load --feathur target/release/feathur --senders 1,10 --messages 2000
//! # or any running homeserver on loopback with open registration:
//! target/release/feathur-load --url http://127.0.0.1:8008 --pid PID --data-dir DIR \
//!     --scenario footprint --json out.json
//! # side-by-side table from JSON results (what spec-tests/bench/compare.sh runs):
//! target/release/feathur-load report --result feathur=a.json --result synapse=b.json --doc -
//! ```
//!
//! Scenarios (the issue's workload names in brackets):
//!
//! - `send` [W1]: N concurrent senders in one room (or a room per sender):
//!   messages/s, p50/p99 latency, errors.
//! - `initial` [W2]: users in many rooms of many members; seconds per initial
//!   sync, timeline limit 1/5/20 with lazy-loaded members and 10 with all.
//! - `fanout` [W3] (alias `wake`): K members long-poll one room, one sender
//!   sends; delivery latency from the send's start to each poll's answer.
//! - `idle` [W3]: many long-polls held open; the server's CPU and RSS (`--pid`).
//! - `footprint` [W6]: RSS idle; RSS and on-disk bytes after E events
//!   (`--pid`, `--data-dir`); bytes per event.
//!
//! Every request loop is bounded in count and by a deadline; traffic goes
//! only to a loopback server.

use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};

use spec_tests::{enc, json, Method, TestServer, Value};
use tokio::task::JoinSet;

mod api;
mod footprint;
mod report;
mod send;
mod sync;

pub(crate) use api::Api;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Send,
    Fanout,
    Idle,
    Initial,
    Footprint,
}

impl Scenario {
    fn key(self) -> &'static str {
        match self {
            Scenario::Send => "send",
            Scenario::Fanout => "fanout",
            Scenario::Idle => "idle",
            Scenario::Initial => "initial",
            Scenario::Footprint => "footprint",
        }
    }
}

pub(crate) struct Options {
    feathur: Option<String>,
    url: Option<String>,
    /// The server's process id, for CPU and RSS from /proc.
    pid: Option<u32>,
    /// The server's data directory, for on-disk bytes.
    data_dir: Option<PathBuf>,
    label: String,
    json: Option<PathBuf>,
    scenarios: Vec<Scenario>,
    room_version: String,
    /// send: sender counts, total messages per count, seconds per count.
    senders: Vec<usize>,
    messages: usize,
    send_secs: Option<u64>,
    /// Each sender in a room of its own instead of all in one.
    room_per_sender: bool,
    /// fanout: waiting members per run, send/wake rounds per run.
    pub members: Vec<usize>,
    pub rounds: usize,
    /// idle: concurrent long-polls, spread over `poll_users` users.
    pub polls: usize,
    pub poll_users: usize,
    /// idle: measuring window (seconds), after the polls have settled.
    pub window_secs: u64,
    /// initial: syncing users, rooms, members per room, messages per room,
    /// initial syncs timed per filter.
    pub users: usize,
    pub rooms: usize,
    pub room_members: usize,
    pub room_messages: usize,
    pub samples: usize,
    /// footprint: events to send.
    pub events: usize,
}

const USAGE: &str = "usage: feathur-load [--feathur BIN | --url http://127.0.0.1:PORT [--pid PID] \
     [--data-dir DIR]] [--scenario send|initial|fanout|idle|footprint[,…]] \
     [--label NAME] [--json FILE] [--room-version 12]\n  \
     send:      [--senders 1,10,50] [--messages N] [--send-secs S] [--room-per-sender]\n  \
     initial:   [--users 50] [--rooms 100] [--room-members 100] [--room-messages 5] [--samples 3]\n  \
     fanout:    [--members 1,200] [--rounds 50]\n  \
     idle:      [--polls 1000] [--poll-users 100] [--window-secs 20]\n  \
     footprint: [--events 100000]\n\
     feathur-load report --result NAME=FILE… [--fact TEXT…] [--doc FILE|-]";

fn number<T: std::str::FromStr>(arg: &str, value: String) -> Result<T, String> {
    value
        .parse()
        .map_err(|_| format!("bad {arg} value {value}"))
}

fn parse_args(args: Vec<String>) -> Result<Options, String> {
    let mut options = Options {
        feathur: None,
        url: None,
        pid: None,
        data_dir: None,
        label: "server".into(),
        json: None,
        scenarios: vec![Scenario::Send],
        senders: vec![1, 10],
        messages: 2000,
        send_secs: None,
        room_version: "12".into(),
        room_per_sender: false,
        members: vec![1, 200],
        rounds: 50,
        polls: 1000,
        poll_users: 100,
        window_secs: 20,
        users: 1,
        rooms: 100,
        room_members: 100,
        room_messages: 5,
        samples: 3,
        events: 100_000,
    };
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        let list = |v: String| -> Result<Vec<usize>, String> {
            v.split(',').map(|n| number(&arg, n.to_owned())).collect()
        };
        match arg.as_str() {
            "--feathur" => options.feathur = Some(value()?),
            "--url" => options.url = Some(value()?),
            "--pid" => options.pid = Some(number(&arg, value()?)?),
            "--data-dir" => options.data_dir = Some(value()?.into()),
            "--label" => options.label = value()?,
            "--json" => options.json = Some(value()?.into()),
            "--scenario" => {
                options.scenarios = value()?
                    .split(',')
                    .map(|s| match s {
                        "send" | "w1" => Ok(Scenario::Send),
                        "fanout" | "wake" | "w3" => Ok(Scenario::Fanout),
                        "idle" => Ok(Scenario::Idle),
                        "initial" | "w2" => Ok(Scenario::Initial),
                        "footprint" | "w6" => Ok(Scenario::Footprint),
                        other => Err(format!("unknown scenario {other}\n{USAGE}")),
                    })
                    .collect::<Result<_, _>>()?
            }
            "--senders" => options.senders = list(value()?)?,
            "--messages" => options.messages = number(&arg, value()?)?,
            "--send-secs" => options.send_secs = Some(number(&arg, value()?)?),
            "--room-version" => options.room_version = value()?,
            "--room-per-sender" => options.room_per_sender = true,
            "--members" => options.members = list(value()?)?,
            "--rounds" => options.rounds = number(&arg, value()?)?,
            "--polls" => options.polls = number(&arg, value()?)?,
            "--poll-users" => options.poll_users = number(&arg, value()?)?,
            "--window-secs" => options.window_secs = number(&arg, value()?)?,
            "--users" => options.users = number(&arg, value()?)?,
            "--rooms" => options.rooms = number(&arg, value()?)?,
            "--room-members" => options.room_members = number(&arg, value()?)?,
            "--room-messages" => options.room_messages = number(&arg, value()?)?,
            "--samples" => options.samples = number(&arg, value()?)?,
            "--events" => options.events = number(&arg, value()?)?,
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
    // whole window (Feathur caps a poll at 30 s).
    if options.senders.iter().any(|&s| s == 0 || s > 1000) || options.send_secs > Some(600) {
        return Err("--senders must be 1..=1000 and --send-secs at most 600".into());
    }
    if options.members.iter().any(|&m| m == 0 || m > 2000) || options.rounds > 1000 {
        return Err("--members must be 1..=2000 and --rounds at most 1000".into());
    }
    if options.polls > 5000 || options.poll_users == 0 || !(1..=25).contains(&options.window_secs) {
        return Err("--polls at most 5000, --poll-users at least 1, --window-secs 1..=25".into());
    }
    if options.rooms == 0 || options.rooms > 1000 || !(1..=1000).contains(&options.room_members) {
        return Err("--rooms and --room-members must be 1..=1000".into());
    }
    if options.users == 0 || options.users > options.room_members || options.samples == 0 {
        return Err("--users must be 1..=--room-members and --samples at least 1".into());
    }
    if options.events > 10_000_000 {
        return Err("--events at most 10,000,000".into());
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

/// Registers `name` through user-interactive auth with `m.login.dummy` (the
/// spec's flow; Synapse and Feathur both offer it when registration is
/// open). Returns the access token.
pub(crate) async fn register(api: &Api, name: &str) -> Result<String, String> {
    let body = json!({"username": name, "password": "load-test-password",
                      "initial_device_display_name": "feathur-load"});
    let (_, challenge) = api
        .call(
            Method::POST,
            "/_matrix/client/v3/register",
            None,
            Some(&body),
        )
        .await?;
    let mut body = body;
    body["auth"] = json!({"type": "m.login.dummy"});
    if let Some(session) = challenge["session"].as_str() {
        body["auth"]["session"] = json!(session);
    }
    let answer = api
        .ok(
            Method::POST,
            "/_matrix/client/v3/register",
            None,
            Some(&body),
        )
        .await
        .map_err(|e| format!("registering {name}: {e}"))?;
    answer["access_token"]
        .as_str()
        .map(str::to_owned)
        .ok_or(format!("registering {name}: no access_token in {answer}"))
}

/// Registers `prefix0` … `prefix{n-1}`, a few at a time; their access tokens.
pub(crate) async fn register_many(
    api: &Arc<Api>,
    prefix: &str,
    n: usize,
) -> Result<Vec<String>, String> {
    bounded(n, 4, |i| {
        let api = api.clone();
        let name = format!("{prefix}{i}");
        async move { register(&api, &name).await }
    })
    .await
}

pub(crate) async fn create_room(
    api: &Api,
    token: &str,
    room_version: &str,
) -> Result<String, String> {
    let body = json!({"preset": "public_chat", "room_version": room_version});
    let created = api
        .ok(
            Method::POST,
            "/_matrix/client/v3/createRoom",
            Some(token),
            Some(&body),
        )
        .await
        .map_err(|e| format!("createRoom: {e}"))?;
    created["room_id"]
        .as_str()
        .map(str::to_owned)
        .ok_or(format!("createRoom: no room_id in {created}"))
}

pub(crate) async fn join(api: &Api, token: &str, room: &str) -> Result<(), String> {
    let path = format!("/_matrix/client/v3/join/{}", enc(room));
    api.ok(Method::POST, &path, Some(token), Some(&json!({})))
        .await
        .map(drop)
        .map_err(|e| format!("join: {e}"))
}

pub(crate) async fn send_text(
    api: &Api,
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
    api.ok(Method::PUT, &path, Some(token), Some(&body))
        .await
        .map(drop)
        .map_err(|e| format!("send: {e}"))
}

/// `GET /sync?{query}`, which must succeed.
pub(crate) async fn sync(api: &Api, token: &str, query: &str) -> Result<Value, String> {
    api.ok(
        Method::GET,
        &format!("/_matrix/client/v3/sync?{query}"),
        Some(token),
        None,
    )
    .await
    .map_err(|e| format!("sync?{query}: {e}"))
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

/// Lifts the open-files limit to its hard maximum: a thousand long-polls are
/// a thousand sockets.
fn raise_fd_limit() {
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// Adds `results` under `scenario` to the JSON file (created if missing), so
/// that several invocations can fill one file per server.
fn write_json(path: &PathBuf, label: &str, scenario: &str, results: Value) -> Result<(), String> {
    let mut doc = match std::fs::read(path) {
        Ok(bytes) => {
            serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display()))?
        }
        Err(_) => json!({"label": label, "scenarios": {}}),
    };
    doc["label"] = json!(label);
    doc["scenarios"][scenario] = results;
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    std::fs::write(path, text + "\n").map_err(|e| format!("{}: {e}", path.display()))
}

#[tokio::main]
async fn main() {
    raise_fd_limit();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("report") {
        if let Err(e) = report::main(&args[1..]) {
            eprintln!("report: {e}");
            std::process::exit(1);
        }
        return;
    }
    let mut options = match parse_args(args) {
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
    if let Some(server) = &server {
        options.pid = server.pid();
        options.data_dir = Some(server.data_dir().to_owned());
        if options.label == "server" {
            options.label = "feathur".into();
        }
    }
    let api = Arc::new(Api::new(&url));
    for scenario in options.scenarios.clone() {
        let result = match scenario {
            Scenario::Send => send::scenario(&api, &options).await,
            Scenario::Fanout => sync::fanout(&api, &options).await,
            Scenario::Idle => match options.pid {
                Some(pid) => sync::idle(&api, pid, &options).await,
                None => Err("the idle scenario needs --pid (or --feathur)".into()),
            },
            Scenario::Initial => sync::initial(&api, &options).await,
            Scenario::Footprint => footprint::scenario(&api, &options).await,
        };
        match result {
            Ok(value) => {
                if let Some(path) = &options.json {
                    if let Err(e) = write_json(path, &options.label, scenario.key(), value) {
                        eprintln!("writing the JSON results: {e}");
                        std::process::exit(1);
                    }
                }
            }
            Err(e) => {
                eprintln!("{} scenario failed: {e}", scenario.key());
                std::process::exit(1);
            }
        }
    }
}
