//! The `/sync` scenarios: `wake`, `idle` and `initial`.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use spec_tests::{enc, HttpClient, Method, Value};
use tokio::task::JoinSet;

use crate::{
    bounded, create_room, join, percentile, register, register_many, send_text, sync, Options,
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

/// `members` users long-poll one room; a sender sends; for each member, the
/// time from the start of the send request to its poll returning with the
/// message. `rounds` rounds, the polls re-armed each round.
pub async fn wake(
    client: &Arc<HttpClient>,
    run: usize,
    members: usize,
    options: &Options,
) -> Result<(), String> {
    let setup = Instant::now();
    let sender = register(client, &format!("wake{run}s")).await?;
    let room = Arc::new(create_room(client, &sender, &options.room_version).await?);
    let tokens = register_many(client, &format!("wake{run}m"), members).await?;
    bounded(members, 4, |i| {
        let (client, token, room) = (client.clone(), tokens[i].clone(), room.clone());
        async move { join(&client, &token, &room).await }
    })
    .await?;
    let filter = Arc::new(enc(POLL_FILTER));
    let mut since = bounded(members, 8, |i| {
        let (client, token, filter) = (client.clone(), tokens[i].clone(), filter.clone());
        async move { next_batch(&sync(&client, &token, &format!("filter={filter}")).await?) }
    })
    .await?;
    eprintln!(
        "wake: {members} members set up in {:.1}s",
        setup.elapsed().as_secs_f64()
    );

    // Time for the polls to reach the server and park before the send.
    let arm = Duration::from_millis(200 + 2 * members as u64);
    let mut latencies = Vec::with_capacity(members * options.rounds);
    let mut send_times = Vec::with_capacity(options.rounds);
    let mut early_returns = 0;
    for round in 0..options.rounds {
        let marker = format!("wake {run} round {round}");
        let mut polls = JoinSet::new();
        for (i, member_since) in since.iter().enumerate() {
            let (client, token, room) = (client.clone(), tokens[i].clone(), room.clone());
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
                    let resp = sync(&client, &token, &query).await?;
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
        send_text(client, &sender, &room, &format!("w{run}r{round}"), &marker).await?;
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
    println!(
        "wake members={members:<4} rounds={} wake-ups={:<6} p50={:.2}ms p99={:.2}ms \
         max={:.2}ms  (send p50={:.2}ms; polls returned early {early_returns}×)",
        options.rounds,
        latencies.len(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        percentile(&send_times, 0.50),
    );
    Ok(())
}

/// The process's user + system CPU time, from `/proc/<pid>/stat`.
fn cpu_time(pid: u32) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')').ok_or("bad /proc stat")? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().map_err(|e| e.to_string())?
        + fields[12].parse::<u64>().map_err(|e| e.to_string())?;
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(Duration::from_secs_f64(ticks as f64 / per_second))
}

/// A line of `/proc/<pid>/status` such as `VmRSS` or `Threads`, as text.
fn status_field(pid: u32, field: &str) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(&format!("{field}:")))
                .map(|l| l[field.len() + 1..].trim().to_owned())
        })
        .unwrap_or_else(|| "?".into())
}

/// CPU % of one core used by `pid` over `window`.
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
/// CPU time and RSS are read.
pub async fn idle(client: &Arc<HttpClient>, pid: u32, options: &Options) -> Result<(), String> {
    let (polls, users) = (options.polls, options.poll_users);
    let window = Duration::from_secs(options.window_secs);
    let setup = Instant::now();
    let tokens = register_many(client, "idle", users).await?;
    let filter = Arc::new(enc(POLL_FILTER));
    let since = bounded(users, 8, |i| {
        let (client, token, filter) = (client.clone(), tokens[i].clone(), filter.clone());
        async move { next_batch(&sync(&client, &token, &format!("filter={filter}")).await?) }
    })
    .await?;
    eprintln!(
        "idle: {users} users set up in {:.1}s",
        setup.elapsed().as_secs_f64()
    );
    let rss_before = status_field(pid, "VmRSS");
    let threads_before = status_field(pid, "Threads");
    let (used_no_polls, cpu_no_polls) = cpu_over(pid, window).await?;

    let returned = Arc::new(AtomicUsize::new(0));
    let mut set = JoinSet::new();
    for j in 0..polls {
        let (client, token) = (client.clone(), tokens[j % users].clone());
        let (filter, since, returned) =
            (filter.clone(), since[j % users].clone(), returned.clone());
        set.spawn(async move {
            // A poll that returns (with news, or at its timeout) is re-armed
            // from its new `next_batch`, at most 5 times.
            let mut since = since;
            for _ in 0..5 {
                let query = format!("since={since}&timeout=30000&filter={filter}");
                let resp = sync(&client, &token, &query).await;
                returned.fetch_add(1, Ordering::Relaxed);
                since = next_batch(&resp?)?;
            }
            Ok(())
        });
    }
    // Let every poll reach the server and park.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let early = returned.load(Ordering::Relaxed);
    let (used_polls, cpu_polls) = cpu_over(pid, window).await?;
    let rss_during = status_field(pid, "VmRSS");
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
         with polls={}ms ({cpu_polls:.2}% of one core)  RSS before={rss_before} during={rss_during}  \
         threads {threads_before}→{threads_during}  polls returned before the window={early} \
         during={returned_in_window}",
        window.as_secs(),
        used_no_polls.as_millis(),
        used_polls.as_millis(),
    );
    Ok(())
}

/// One user in `rooms` rooms of `room_members` members (the same users in
/// every room), `room_messages` messages per room; initial sync time by
/// timeline limit, with and without lazy-loaded members.
pub async fn initial(client: &Arc<HttpClient>, options: &Options) -> Result<(), String> {
    let (rooms, members) = (options.rooms, options.room_members);
    let setup = Instant::now();
    let tokens = Arc::new(register_many(client, "init", members).await?);
    let registered = setup.elapsed();
    let room_ids = Arc::new(
        // One at a time: concurrent createRoom by one user answered 500.
        bounded(rooms, 1, |_| {
            let (client, token) = (client.clone(), tokens[0].clone());
            let version = options.room_version.clone();
            async move { create_room(&client, &token, &version).await }
        })
        .await?,
    );
    let created = setup.elapsed();
    // Joins within a room go one after another; rooms in parallel.
    let deadline = Instant::now() + Duration::from_secs(900);
    bounded(rooms, 8, |r| {
        let (client, tokens, room_ids) = (client.clone(), tokens.clone(), room_ids.clone());
        async move {
            for token in &tokens[1..] {
                if Instant::now() > deadline {
                    return Err("joins passed their 15-minute deadline".to_owned());
                }
                join(&client, token, &room_ids[r]).await?;
            }
            Ok(())
        }
    })
    .await?;
    let joined = setup.elapsed();
    bounded(rooms, 8, |r| {
        let (client, tokens, room_ids) = (client.clone(), tokens.clone(), room_ids.clone());
        let count = options.room_messages;
        async move {
            for m in 0..count {
                let token = &tokens[m % tokens.len()];
                send_text(&client, token, &room_ids[r], &format!("i{r}m{m}"), "hello").await?;
            }
            Ok(())
        }
    })
    .await?;
    let joins = rooms * (members - 1);
    eprintln!(
        "initial: {members} users registered in {:.1}s, {rooms} rooms created in {:.1}s, \
         {joins} joins in {:.1}s ({:.0}/s), messages in {:.1}s",
        registered.as_secs_f64(),
        (created - registered).as_secs_f64(),
        (joined - created).as_secs_f64(),
        joins as f64 / (joined - created).as_secs_f64(),
        (setup.elapsed() - joined).as_secs_f64(),
    );

    for lazy in [false, true] {
        for limit in [1, 5, 20] {
            let filter = format!(
                r#"{{"room":{{"timeline":{{"limit":{limit}}},"state":{{"lazy_load_members":{lazy}}}}}}}"#
            );
            let path = format!("/_matrix/client/v3/sync?filter={}", enc(&filter));
            let mut times = Vec::new();
            let (mut bytes, mut room_count, mut state_events) = (0, 0, 0);
            for _ in 0..3 {
                let started = Instant::now();
                let resp = client
                    .raw(Method::GET, &path, Some(&tokens[0]), &[], None)
                    .await;
                times.push(started.elapsed());
                if !resp.status.is_success() {
                    return Err(format!("initial sync: {} {}", resp.status, resp.text()));
                }
                let body = resp.json().ok_or("initial sync answer is not JSON")?;
                let joined = body["rooms"]["join"]
                    .as_object()
                    .cloned()
                    .unwrap_or_default();
                bytes = resp.body.len();
                room_count = joined.len();
                state_events = joined
                    .values()
                    .map(|r| r["state"]["events"].as_array().map_or(0, Vec::len))
                    .sum::<usize>();
            }
            times.sort();
            println!(
                "initial rooms={room_count} members={members} limit={limit:<2} lazy={lazy:<5} \
                 median={:.0}ms min={:.0}ms max={:.0}ms  bytes={bytes} state events={state_events}",
                percentile(&times, 0.5),
                percentile(&times, 0.0),
                percentile(&times, 1.0),
            );
        }
    }
    Ok(())
}
