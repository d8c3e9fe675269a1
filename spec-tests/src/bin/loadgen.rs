//! Load generator: starts a real `feathur` (or targets a running server) and
//! measures local sends into one room — the figures in `docs/performance.md`.
//!
//! ```text
//! cargo run --release -p spec-tests --bin loadgen -- \
//!     --feathur target/release/feathur --senders 1,10 --messages 2000
//! ```
//!
//! Every request loop is bounded by `--messages` and a deadline; traffic goes
//! only to the loopback server it started (or `--url`, which must be loopback).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use spec_tests::{enc, json, HttpClient, TestServer};

struct Options {
    feathur: Option<String>,
    url: Option<String>,
    senders: Vec<usize>,
    messages: usize,
    room_version: String,
    /// Each sender in a room of its own instead of all in one.
    room_per_sender: bool,
}

fn parse_args() -> Result<Options, String> {
    let mut options = Options {
        feathur: None,
        url: None,
        senders: vec![1, 10],
        messages: 2000,
        room_version: "12".into(),
        room_per_sender: false,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--feathur" => options.feathur = Some(value()?),
            "--url" => options.url = Some(value()?),
            "--senders" => {
                options.senders = value()?
                    .split(',')
                    .map(|n| n.parse().map_err(|_| format!("bad --senders value {n}")))
                    .collect::<Result<_, _>>()?
            }
            "--messages" => {
                options.messages = value()?.parse().map_err(|_| "bad --messages".to_owned())?
            }
            "--room-version" => options.room_version = value()?,
            "--room-per-sender" => options.room_per_sender = true,
            "--help" | "-h" => {
                return Err(
                    "usage: loadgen [--feathur BIN | --url http://127.0.0.1:PORT] \
                     [--senders 1,10] [--messages N] [--room-version 12] [--room-per-sender]"
                        .into(),
                )
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if let Some(url) = &options.url {
        let host = url.trim_start_matches("http://");
        if !(host.starts_with("127.") || host.starts_with("localhost") || host.starts_with("[::1]"))
        {
            return Err("--url must point at a loopback address".into());
        }
    }
    Ok(options)
}

/// Percentile of sorted durations, in milliseconds.
fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

async fn register(client: &HttpClient, name: &str) -> Result<String, String> {
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

/// `senders` users in one room, each sending `per_sender` messages back to back.
async fn scenario(
    client: Arc<HttpClient>,
    run: usize,
    senders: usize,
    per_sender: usize,
    room_version: &str,
    room_per_sender: bool,
) -> Result<(), String> {
    let mut tokens = Vec::new();
    for i in 0..senders {
        tokens.push(register(&client, &format!("load{run}x{i}")).await?);
    }
    let create = |token: String| {
        let client = client.clone();
        let body = json!({"preset": "public_chat", "room_version": room_version});
        async move {
            let (status, created) = client
                .post("/_matrix/client/v3/createRoom", Some(&token), body)
                .await;
            created["room_id"]
                .as_str()
                .map(str::to_owned)
                .ok_or(format!("createRoom: {status} {created}"))
        }
    };
    let mut rooms = Vec::new();
    if room_per_sender {
        for token in &tokens {
            rooms.push(create(token.clone()).await?);
        }
    } else {
        let room = create(tokens[0].clone()).await?;
        for token in &tokens[1..] {
            let (status, body) = client
                .post(
                    &format!("/_matrix/client/v3/join/{}", enc(&room)),
                    Some(token),
                    json!({}),
                )
                .await;
            if !status.is_success() {
                return Err(format!("join: {status} {body}"));
            }
        }
        rooms = vec![room; tokens.len()];
    }

    let deadline = Instant::now() + Duration::from_secs(600);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (sender, (token, room)) in tokens.into_iter().zip(rooms).enumerate() {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(per_sender);
            for n in 0..per_sender {
                if Instant::now() > deadline {
                    return Err("deadline passed".to_owned());
                }
                let path = format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/s{sender}m{n}",
                    enc(&room)
                );
                let t = Instant::now();
                let (status, body) = client
                    .put(
                        &path,
                        Some(&token),
                        json!({"msgtype": "m.text", "body": format!("message {n}")}),
                    )
                    .await;
                if !status.is_success() {
                    return Err(format!("send: {status} {body}"));
                }
                latencies.push(t.elapsed());
            }
            Ok(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.map_err(|e| e.to_string())??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let total = latencies.len();
    println!(
        "senders={senders:<3} rooms={:<3} messages={total:<6} room_version={room_version} \
         sends/s={:>8.0}  p50={:.2}ms  p99={:.2}ms  max={:.2}ms",
        if room_per_sender { senders } else { 1 },
        total as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    Ok(())
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
    let client = Arc::new(HttpClient::new(&url));
    for (run, &senders) in options.senders.iter().enumerate() {
        let per_sender = (options.messages / senders.max(1)).max(1);
        if let Err(e) = scenario(
            client.clone(),
            run,
            senders,
            per_sender,
            &options.room_version,
            options.room_per_sender,
        )
        .await
        {
            eprintln!("scenario with {senders} senders failed: {e}");
            std::process::exit(1);
        }
    }
}
