//! The `/sync` scenarios: `fanout` and `idle` (W3) and `initial` (W2).

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use spec_tests::{enc, json, Method, Value};
use tokio::task::JoinSet;

use crate::footprint::{cpu_time, rss_bytes, status_field};
use crate::{
    bounded, create_room, join, percentile, register, register_many, send_text, sync, Api, Options,
};

/// Small sync answers: the poll only needs the room's new events.
const POLL_FILTER: &str =
    r#"{"room":{"timeline":{"limit":10},"state":{"lazy_load_members":true}}}"#;

/// Whether `room`'s timeline in a sync answer holds a message with `body`.
fn has_message(resp: &Value, room: &str, body: &str) -> bool {
    resp["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .is_some_and(|events| events.iter().any(|e| e["content"]["body"] == body))
}

fn next_batch(resp: &Value) -> Result<String, String> {
    resp["next_batch"]
        .as_str()
        .map(str::to_owned)
        .ok_or(format!("sync answer without next_batch: {resp}"))
}

/// Every member count of `--members` in turn; the results as JSON.
pub async fn fanout(api: &Arc<Api>, options: &Options) -> Result<Value, String> {
    let mut runs = Vec::new();
    for (run, &members) in options.members.iter().enumerate() {
        runs.push(fanout_one(api, run, members, options).await?);
    }
    Ok(json!({ "runs": runs }))
}

/// `members` users long-poll one room; a sender sends; for each member, the
/// time from the start of the send request to its poll returning with the
/// message. `rounds` rounds, the polls re-armed each round.
async fn fanout_one(
    api: &Arc<Api>,
    run: usize,
    members: usize,
    options: &Options,
) -> Result<Value, String> {
    let setup = Instant::now();
    let sender = register(api, &format!("w3r{run}s")).await?;
    let room = Arc::new(create_room(api, &sender, &options.room_version).await?);
    let tokens = register_many(api, &format!("w3r{run}m"), members).await?;
    bounded(members, 4, |i| {
        let (api, token, room) = (api.clone(), tokens[i].clone(), room.clone());
        async move { join(&api, &token, &room).await }
    })
    .await?;
    let filter = Arc::new(enc(POLL_FILTER));
    let mut since = bounded(members, 8, |i| {
        let (api, token, filter) = (api.clone(), tokens[i].clone(), filter.clone());
        async move { next_batch(&sync(&api, &token, &format!("filter={filter}")).await?) }
    })
    .await?;
    eprintln!(
        "fanout: {members} members set up in {:.1}s",
        setup.elapsed().as_secs_f64()
    );

    // Time for the polls to reach the server and park before the send.
    let arm = Duration::from_millis(200 + 2 * members as u64);
    let mut latencies = Vec::with_capacity(members * options.rounds);
    let mut send_times = Vec::with_capacity(options.rounds);
    let mut early_returns = 0;
    for round in 0..options.rounds {
        let marker = format!("fanout {run} round {round}");
        let mut polls = JoinSet::new();
        for (i, member_since) in since.iter().enumerate() {
            let (api, token, room) = (api.clone(), tokens[i].clone(), room.clone());
            let (filter, marker, mut since) =
                (filter.clone(), marker.clone(), member_since.clone());
            polls.spawn(async move {
                let deadline = Instant::now() + Duration::from_secs(45);
                // A poll may return early with other news; at most 10 re-polls.
                for attempt in 0..10 {
                    if Instant::now() > deadline {
                        break;
                    }
                    let query = format!("since={since}&timeout=30000&filter={filter}");
                    let resp = sync(&api, &token, &query).await?;
                    let at = Instant::now();
                    since = next_batch(&resp)?;
                    if has_message(&resp, &room, &marker) {
                        return Ok((i, at, since, attempt));
                    }
                }
                Err(format!("member {i} never saw {marker:?}"))
            });
        }
        tokio::time::sleep(arm).await;
        let sent = Instant::now();
        send_text(api, &sender, &room, &format!("w{run}r{round}"), &marker).await?;
        send_times.push(sent.elapsed());
        while let Some(done) = polls.join_next().await {
            let (i, at, next, attempt) = done.map_err(|e| e.to_string())??;
            latencies.push(at.saturating_duration_since(sent));
            since[i] = next;
            early_returns += attempt;
        }
    }
    latencies.sort();
    send_times.sort();
    let (p50, p99, max) = (
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    let send_p50 = percentile(&send_times, 0.50);
    println!(
        "fanout members={members:<4} rounds={} deliveries={:<6} p50={p50:.2}ms p99={p99:.2}ms \
         max={max:.2}ms  (send p50={send_p50:.2}ms; polls returned early {early_returns}×)",
        options.rounds,
        latencies.len(),
    );
    Ok(json!({
        "members": members,
        "rounds": options.rounds,
        "deliveries": latencies.len(),
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": max,
        "send_p50_ms": send_p50,
        "early_returns": early_returns,
    }))
}

/// (CPU time used, % of one core) by `pid` over `window`; the kernel counts
/// in clock ticks (10 ms), so one tick in 20 s reads as 0.05 %.
async fn cpu_over(pid: u32, window: Duration) -> Result<(Duration, f64), String> {
    let before = cpu_time(pid)?;
    let started = Instant::now();
    tokio::time::sleep(window).await;
    let used = cpu_time(pid)?.saturating_sub(before);
    let percent = 100.0 * used.as_secs_f64() / started.elapsed().as_secs_f64();
    Ok((used, percent))
}

/// `polls` long-polls over `poll_users` users, held open while the server's
/// CPU time and RSS are read. The polls of one user differ in their timeout
/// (30,000 ms + a few), so that no server can answer them as one request:
/// they stand for distinct clients.
pub async fn idle(api: &Arc<Api>, pid: u32, options: &Options) -> Result<Value, String> {
    let (polls, users) = (options.polls, options.poll_users);
    let window = Duration::from_secs(options.window_secs);
    let setup = Instant::now();
    let tokens = register_many(api, "idle", users).await?;
    let filter = Arc::new(enc(POLL_FILTER));
    let since = bounded(users, 8, |i| {
        let (api, token, filter) = (api.clone(), tokens[i].clone(), filter.clone());
        async move { next_batch(&sync(&api, &token, &format!("filter={filter}")).await?) }
    })
    .await?;
    eprintln!(
        "idle: {users} users set up in {:.1}s",
        setup.elapsed().as_secs_f64()
    );
    let rss_before = rss_bytes(pid)?;
    let threads_before = status_field(pid, "Threads");
    let (used_no_polls, cpu_no_polls) = cpu_over(pid, window).await?;

    let returned = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for j in 0..polls {
        let (api, token) = (api.clone(), tokens[j % users].clone());
        let (filter, since, returned) =
            (filter.clone(), since[j % users].clone(), returned.clone());
        let timeout = 30_000 + j / users;
        set.spawn(async move {
            // A poll that returns (with news, or at its timeout) is re-armed
            // from its new `next_batch`, at most 5 times.
            let mut since = since;
            for _ in 0..5 {
                let query = format!("since={since}&timeout={timeout}&filter={filter}");
                let resp = sync(&api, &token, &query).await;
                returned.fetch_add(1, Ordering::Relaxed);
                since = next_batch(&resp?)?;
            }
            Ok::<(), String>(())
        });
    }
    // Let every poll reach the server and park.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let early = returned.load(Ordering::Relaxed);
    let (used_polls, cpu_polls) = cpu_over(pid, window).await?;
    let rss_during = rss_bytes(pid)?;
    let threads_during = status_field(pid, "Threads");
    let returned_in_window = returned.load(Ordering::Relaxed) - early;
    set.abort_all();
    while let Some(done) = set.join_next().await {
        if let Ok(Err(e)) = done {
            return Err(e);
        }
    }
    println!(
        "idle polls={polls} users={users} window={}s  CPU without polls={}ms ({cpu_no_polls:.2}%) \
         with polls={}ms ({cpu_polls:.2}% of one core)  RSS before={:.1}MB during={:.1}MB  \
         threads {threads_before}→{threads_during}  polls returned before the window={early} \
         during={returned_in_window}",
        window.as_secs(),
        used_no_polls.as_millis(),
        used_polls.as_millis(),
        rss_before as f64 / 1e6,
        rss_during as f64 / 1e6,
    );
    Ok(json!({
        "polls": polls,
        "users": users,
        "window_secs": window.as_secs(),
        "cpu_ms_no_polls": used_no_polls.as_millis() as u64,
        "cpu_percent_no_polls": cpu_no_polls,
        "cpu_ms_polls": used_polls.as_millis() as u64,
        "cpu_percent_polls": cpu_polls,
        "rss_bytes_before": rss_before,
        "rss_bytes_during": rss_during,
        "returned_before_window": early,
        "returned_in_window": returned_in_window,
    }))
}

/// The filters of W2: (timeline limit, lazy-loaded members).
const INITIAL_FILTERS: [(u32, bool); 4] = [(1, true), (5, true), (20, true), (10, false)];

/// `room_members` users, all in each of `rooms` rooms, `room_messages`
/// messages per room. For each filter, `samples` initial syncs, each by a
/// different one of the first `users` users where there are enough (a
/// server may cache an answer for a repeated identical request; Synapse
/// does), timed from request to the last byte of the answer.
pub async fn initial(api: &Arc<Api>, options: &Options) -> Result<Value, String> {
    let (rooms, members) = (options.rooms, options.room_members);
    let setup = Instant::now();
    let tokens = Arc::new(register_many(api, "w2u", members).await?);
    let registered = setup.elapsed();
    let room_ids = Arc::new(
        // One at a time: a server may serialise room creation anyway.
        bounded(rooms, 1, |_| {
            let (api, token) = (api.clone(), tokens[0].clone());
            let version = options.room_version.clone();
            async move { create_room(&api, &token, &version).await }
        })
        .await?,
    );
    let created = setup.elapsed();
    // Joins within a room go one after another; rooms in parallel.
    let deadline = Instant::now() + Duration::from_secs(3600);
    bounded(rooms, 8, |r| {
        let (api, tokens, room_ids) = (api.clone(), tokens.clone(), room_ids.clone());
        async move {
            for token in &tokens[1..] {
                if Instant::now() > deadline {
                    return Err("joins passed their one-hour deadline".to_owned());
                }
                join(&api, token, &room_ids[r]).await?;
            }
            Ok(())
        }
    })
    .await?;
    let joined = setup.elapsed();
    bounded(rooms, 8, |r| {
        let (api, tokens, room_ids) = (api.clone(), tokens.clone(), room_ids.clone());
        let count = options.room_messages;
        async move {
            for m in 0..count {
                let token = &tokens[m % tokens.len()];
                send_text(&api, token, &room_ids[r], &format!("i{r}m{m}"), "hello").await?;
            }
            Ok(())
        }
    })
    .await?;
    let joins = rooms * (members - 1);
    let join_secs = (joined - created).as_secs_f64();
    eprintln!(
        "initial: {members} users registered in {:.1}s, {rooms} rooms created in {:.1}s, \
         {joins} joins in {join_secs:.1}s ({:.0}/s), messages in {:.1}s",
        registered.as_secs_f64(),
        (created - registered).as_secs_f64(),
        joins as f64 / join_secs,
        (setup.elapsed() - joined).as_secs_f64(),
    );

    let mut results = Vec::new();
    let mut next_user = 0;
    for (limit, lazy) in INITIAL_FILTERS {
        let filter = format!(
            r#"{{"room":{{"timeline":{{"limit":{limit}}},"state":{{"lazy_load_members":{lazy}}}}}}}"#
        );
        let path = format!("/_matrix/client/v3/sync?filter={}", enc(&filter));
        let mut times = Vec::new();
        let (mut bytes, mut room_count, mut state_events) = (0, 0, 0);
        for _ in 0..options.samples {
            let token = &tokens[next_user % options.users];
            next_user += 1;
            let started = Instant::now();
            let resp = api.request(Method::GET, &path, Some(token), None).await?;
            times.push(started.elapsed());
            if resp.status != 200 {
                return Err(format!("initial sync: {} {}", resp.status, resp.body));
            }
            let joined = resp.body["rooms"]["join"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            bytes = resp.bytes;
            room_count = joined.len();
            state_events = joined
                .values()
                .map(|r| r["state"]["events"].as_array().map_or(0, Vec::len))
                .sum::<usize>();
        }
        times.sort();
        let (median, min, max) = (
            percentile(&times, 0.5),
            percentile(&times, 0.0),
            percentile(&times, 1.0),
        );
        println!(
            "initial rooms={room_count} members={members} limit={limit:<2} lazy={lazy:<5} \
             median={median:.0}ms min={min:.0}ms max={max:.0}ms  bytes={bytes} \
             state events={state_events}",
        );
        results.push(json!({
            "limit": limit,
            "lazy": lazy,
            "samples": times.len(),
            "median_ms": median,
            "min_ms": min,
            "max_ms": max,
            "bytes": bytes,
            "rooms": room_count,
            "state_events": state_events,
        }));
    }
    Ok(json!({
        "users": options.users,
        "rooms": rooms,
        "room_members": members,
        "room_messages": options.room_messages,
        "setup": {
            "register_secs": registered.as_secs_f64(),
            "joins": joins,
            "join_secs": join_secs,
        },
        "filters": results,
    }))
}
