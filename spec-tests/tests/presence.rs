//! Presence over plain HTTP (Client-Server API, module "Presence"):
//! `PUT/GET /presence/{userId}/status`, `m.presence` in `/sync`'s top-level
//! `presence` section, `set_presence` on `/sync`, and `[presence] enabled`.

use std::time::{Duration, Instant};

use spec_tests::{assert_error, assert_ok, enc, json, Session, TestServer, Value};

const PW: &str = "correct horse battery";

/// Alice's public room, joined by Bob.
async fn shared_room(server: &TestServer, alice: &Session, bob: &Session) -> String {
    let resp = assert_ok(
        server
            .post(
                "/_matrix/client/v3/createRoom",
                alice.token(),
                json!({"preset": "public_chat"}),
            )
            .await,
    );
    let room = resp["room_id"].as_str().expect("room_id").to_owned();
    let join = format!("/_matrix/client/v3/join/{}", enc(&room));
    assert_ok(server.post(&join, bob.token(), json!({})).await);
    room
}

async fn sync(server: &TestServer, who: &Session, query: &str) -> Value {
    let path = format!("/_matrix/client/v3/sync?{query}");
    assert_ok(server.get(&path, who.token()).await)
}

fn next_batch(sync: &Value) -> String {
    sync["next_batch"].as_str().expect("next_batch").to_owned()
}

fn status_path(user: &Session) -> String {
    format!("/_matrix/client/v3/presence/{}/status", enc(&user.user_id))
}

/// The `m.presence` events about `user` in a sync response.
fn presence_of(sync: &Value, user: &Session) -> Vec<Value> {
    sync["presence"]["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["type"] == "m.presence" && e["sender"] == user.user_id.as_str())
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Syncs from `since` (as `who`, with `query` appended) until `deadline`,
/// collecting the presence events about `about`; returns them and the last
/// token.
async fn collect(
    server: &TestServer,
    who: &Session,
    about: &Session,
    mut since: String,
    query: &str,
    deadline: Duration,
) -> (Vec<Value>, String) {
    let started = Instant::now();
    let mut seen = Vec::new();
    while started.elapsed() < deadline {
        let resp = sync(server, who, &format!("since={since}&timeout=500&{query}")).await;
        seen.extend(presence_of(&resp, about));
        since = next_batch(&resp);
    }
    (seen, since)
}

#[tokio::test]
async fn put_then_get_shows_state_message_and_last_active_ago() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let body = json!({"presence": "unavailable", "status_msg": "at lunch"});
    assert_ok(server.put(&status_path(&alice), alice.token(), body).await);
    let resp = assert_ok(server.get(&status_path(&alice), alice.token()).await);
    assert_eq!(resp["presence"], "unavailable", "{resp}");
    assert_eq!(resp["status_msg"], "at lunch", "{resp}");
    assert!(resp["last_active_ago"].is_u64(), "{resp}");

    // Only for yourself.
    let bob = server.register("bob", PW).await;
    let body = json!({"presence": "online"});
    assert_error(
        &server.put(&status_path(&alice), bob.token(), body).await,
        403,
        "M_FORBIDDEN",
    );
    // Bob shares no room with Alice: not allowed to see it.
    assert_error(
        &server.get(&status_path(&alice), bob.token()).await,
        403,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn a_room_member_sees_the_change_once_and_a_stranger_never() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let carol = server.register("carol", PW).await;
    shared_room(&server, &alice, &bob).await;
    let bob_since = next_batch(&sync(&server, &bob, "set_presence=offline").await);
    let carol_since = next_batch(&sync(&server, &carol, "set_presence=offline").await);

    let body = json!({"presence": "unavailable", "status_msg": "busy"});
    assert_ok(server.put(&status_path(&alice), alice.token(), body).await);

    // A long-poll wakes for the (batched) change.
    let started = Instant::now();
    let resp = sync(
        &server,
        &bob,
        &format!("since={bob_since}&timeout=10000&set_presence=offline"),
    )
    .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    let events = presence_of(&resp, &alice);
    assert_eq!(events.len(), 1, "{resp}");
    assert_eq!(events[0]["content"]["presence"], "unavailable");
    assert_eq!(events[0]["content"]["status_msg"], "busy");
    assert!(events[0]["content"]["last_active_ago"].is_u64());
    // Not again.
    let (again, _) = collect(
        &server,
        &bob,
        &alice,
        next_batch(&resp),
        "set_presence=offline",
        Duration::from_secs(1),
    )
    .await;
    assert!(again.is_empty(), "{again:?}");

    let (seen, _) = collect(
        &server,
        &carol,
        &alice,
        carol_since,
        "set_presence=offline",
        Duration::from_secs(1),
    )
    .await;
    assert!(seen.is_empty(), "{seen:?}");
    let initial = sync(&server, &carol, "set_presence=offline").await;
    assert!(presence_of(&initial, &alice).is_empty(), "{initial}");
}

#[tokio::test]
async fn set_presence_on_sync() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    shared_room(&server, &alice, &bob).await;

    // `offline`: the sync does not mark Alice online.
    sync(&server, &alice, "set_presence=offline").await;
    let resp = assert_ok(server.get(&status_path(&alice), bob.token()).await);
    assert_eq!(resp["presence"], "offline", "{resp}");

    // The default (`online`) does, and Bob hears of it.
    let since = next_batch(&sync(&server, &bob, "set_presence=offline").await);
    sync(&server, &alice, "").await;
    let resp = assert_ok(server.get(&status_path(&alice), bob.token()).await);
    assert_eq!(resp["presence"], "online", "{resp}");
    assert_eq!(resp["currently_active"], true, "{resp}");
    let (seen, _) = collect(
        &server,
        &bob,
        &alice,
        since,
        "set_presence=offline",
        Duration::from_secs(1),
    )
    .await;
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0]["content"]["presence"], "online");

    // `unavailable`.
    sync(&server, &alice, "set_presence=unavailable").await;
    let resp = assert_ok(server.get(&status_path(&alice), alice.token()).await);
    assert_eq!(resp["presence"], "unavailable", "{resp}");
}

#[tokio::test]
async fn disabled_presence_sends_nothing() {
    let server = TestServer::start_with_toml("[presence]\nenabled = false").await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    shared_room(&server, &alice, &bob).await;
    let since = next_batch(&sync(&server, &bob, "").await);

    let body = json!({"presence": "online", "status_msg": "hello"});
    assert_ok(server.put(&status_path(&alice), alice.token(), body).await);
    let resp = assert_ok(server.get(&status_path(&alice), bob.token()).await);
    assert_eq!(resp["presence"], "offline", "{resp}");
    assert!(resp.get("status_msg").is_none(), "{resp}");

    let (seen, _) = collect(&server, &bob, &alice, since, "", Duration::from_secs(1)).await;
    assert!(seen.is_empty(), "{seen:?}");
    let initial = sync(&server, &bob, "").await;
    assert!(initial["presence"]["events"]
        .as_array()
        .is_none_or(|e| e.is_empty()));
}
