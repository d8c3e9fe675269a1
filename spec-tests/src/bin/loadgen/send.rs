//! The `send` scenario: local sends into one room (or a room per sender).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use spec_tests::{enc, json, HttpClient};

use crate::{percentile, register};

/// `senders` users in one room, each sending `per_sender` messages back to back.
pub async fn scenario(
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
