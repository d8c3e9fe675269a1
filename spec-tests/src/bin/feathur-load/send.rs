//! W1, the `send` scenario: N senders in one room (or a room per sender),
//! each with one request in flight, sending back to back.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use spec_tests::{enc, json, Method, Value};

use crate::{create_room, join, percentile, register_many, Api, Options};

/// Every sender count of `--senders` in turn; the results as JSON.
pub async fn scenario(api: &Arc<Api>, options: &Options) -> Result<Value, String> {
    let mut runs = Vec::new();
    for (run, &senders) in options.senders.iter().enumerate() {
        let per_sender = (options.messages / senders).max(1);
        let result = one(api, run, senders, per_sender, options)
            .await
            .map_err(|e| format!("with {senders} senders: {e}"))?;
        runs.push(result);
    }
    Ok(json!({"room_per_sender": options.room_per_sender, "runs": runs}))
}

async fn one(
    api: &Arc<Api>,
    run: usize,
    senders: usize,
    per_sender: usize,
    options: &Options,
) -> Result<Value, String> {
    let tokens = register_many(api, &format!("w1r{run}s"), senders).await?;
    let mut rooms = Vec::new();
    if options.room_per_sender {
        for token in &tokens {
            rooms.push(create_room(api, token, &options.room_version).await?);
        }
    } else {
        let room = create_room(api, &tokens[0], &options.room_version).await?;
        for token in &tokens[1..] {
            join(api, token, &room).await?;
        }
        rooms = vec![room; tokens.len()];
    }

    // A sender stops after its share of --messages or after --send-secs.
    let limit = options.send_secs.map(Duration::from_secs);
    let deadline = Instant::now() + limit.unwrap_or(Duration::from_secs(600));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (sender, (token, room)) in tokens.into_iter().zip(rooms).enumerate() {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            for n in 0..per_sender {
                if Instant::now() > deadline {
                    break;
                }
                let path = format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/r{run}s{sender}m{n}",
                    enc(&room)
                );
                let body = json!({"msgtype": "m.text", "body": format!("message {n}")});
                let t = Instant::now();
                match api
                    .call(Method::PUT, &path, Some(&token), Some(&body))
                    .await
                {
                    Ok((200, _)) => latencies.push(t.elapsed()),
                    Ok((status, answer)) => errors.push(format!("{status} {answer}")),
                    Err(e) => errors.push(e),
                }
                if errors.len() > 100 {
                    break;
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        let (l, e) = task.await.map_err(|e| e.to_string())?;
        latencies.extend(l);
        errors.extend(e);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let total = latencies.len();
    let per_sec = total as f64 / elapsed.as_secs_f64();
    let (p50, p99, max) = (
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    println!(
        "send senders={senders:<3} rooms={:<3} messages={total:<6} errors={:<3} \
         room_version={} sends/s={per_sec:>8.0}  p50={p50:.2}ms  p99={p99:.2}ms  max={max:.2}ms",
        if options.room_per_sender { senders } else { 1 },
        errors.len(),
        options.room_version,
    );
    if let Some(first) = errors.first() {
        eprintln!("send: first error of {}: {first}", errors.len());
    }
    Ok(json!({
        "senders": senders,
        "messages": total,
        "errors": errors.len(),
        "secs": elapsed.as_secs_f64(),
        "per_sec": per_sec,
        "p50_ms": p50,
        "p99_ms": p99,
        "max_ms": max,
    }))
}
