//! Typing notifications, receipts and read markers over plain HTTP
//! (Client-Server API modules "Typing Notifications", "Receipts", "Fully
//! read markers"), as seen through `/sync`'s `ephemeral` and `account_data`.

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

async fn send(server: &TestServer, who: &Session, room: &str, body: Value) -> String {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
        enc(room),
        rand_txn()
    );
    let resp = assert_ok(server.put(&path, who.token(), body).await);
    resp["event_id"].as_str().expect("event_id").to_owned()
}

fn rand_txn() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("txn{}", N.fetch_add(1, Ordering::SeqCst))
}

async fn text(server: &TestServer, who: &Session, room: &str, body: &str) -> String {
    send(
        server,
        who,
        room,
        json!({"msgtype": "m.text", "body": body}),
    )
    .await
}

async fn sync(server: &TestServer, who: &Session, query: &str) -> Value {
    let path = format!("/_matrix/client/v3/sync?{query}");
    assert_ok(server.get(&path, who.token()).await)
}

fn next_batch(sync: &Value) -> String {
    sync["next_batch"].as_str().expect("next_batch").to_owned()
}

/// The room's ephemeral events of `kind` in a sync response.
fn ephemeral(sync: &Value, room: &str, kind: &str) -> Vec<Value> {
    sync["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .filter(|e| e["type"] == kind)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

fn typing_path(room: &str, user: &Session) -> String {
    format!(
        "/_matrix/client/v3/rooms/{}/typing/{}",
        enc(room),
        enc(&user.user_id)
    )
}

fn receipt_path(room: &str, kind: &str, event: &str) -> String {
    format!(
        "/_matrix/client/v3/rooms/{}/receipt/{kind}/{}",
        enc(room),
        enc(event)
    )
}

#[tokio::test]
async fn typing_shows_for_the_other_member_and_expires() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = shared_room(&server, &alice, &bob).await;
    let since = next_batch(&sync(&server, &bob, "").await);

    let body = json!({"typing": true, "timeout": 1500});
    assert_ok(
        server
            .put(&typing_path(&room, &alice), alice.token(), body)
            .await,
    );
    let resp = sync(&server, &bob, &format!("since={since}&timeout=5000")).await;
    let typing = ephemeral(&resp, &room, "m.typing");
    assert_eq!(typing.len(), 1, "{resp}");
    assert_eq!(typing[0]["content"]["user_ids"], json!([alice.user_id]));
    let since = next_batch(&resp);

    // Nothing changes until the timeout ends it: the next poll waits for
    // the expiry and reports an empty list.
    let started = Instant::now();
    let resp = sync(&server, &bob, &format!("since={since}&timeout=10000")).await;
    let typing = ephemeral(&resp, &room, "m.typing");
    assert_eq!(typing.len(), 1, "{resp}");
    assert_eq!(typing[0]["content"]["user_ids"], json!([]));
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "{waited:?}");
    assert!(waited < Duration::from_secs(8), "{waited:?}");
}

#[tokio::test]
async fn a_long_poll_wakes_on_typing_and_sees_it_stop() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = shared_room(&server, &alice, &bob).await;
    let since = next_batch(&sync(&server, &bob, "").await);

    let poll = {
        let (url, token) = (server.base_url().to_owned(), bob.access_token.clone());
        let query = format!("/_matrix/client/v3/sync?since={since}&timeout=20000");
        tokio::spawn(async move {
            let started = Instant::now();
            let resp = spec_tests::HttpClient::new(&url)
                .get(&query, Some(&token))
                .await;
            (started.elapsed(), assert_ok(resp))
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let body = json!({"typing": true, "timeout": 30000});
    assert_ok(
        server
            .put(&typing_path(&room, &alice), alice.token(), body)
            .await,
    );
    let (waited, resp) = poll.await.unwrap();
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    let typing = ephemeral(&resp, &room, "m.typing");
    assert_eq!(typing[0]["content"]["user_ids"], json!([alice.user_id]));

    // A refresh is no news; stopping is.
    let since = next_batch(&resp);
    let body = json!({"typing": true, "timeout": 30000});
    assert_ok(
        server
            .put(&typing_path(&room, &alice), alice.token(), body)
            .await,
    );
    let idle = sync(&server, &bob, &format!("since={since}&timeout=500")).await;
    assert!(ephemeral(&idle, &room, "m.typing").is_empty(), "{idle}");
    let body = json!({"typing": false});
    assert_ok(
        server
            .put(&typing_path(&room, &alice), alice.token(), body)
            .await,
    );
    let resp = sync(&server, &bob, &format!("since={since}&timeout=5000")).await;
    let typing = ephemeral(&resp, &room, "m.typing");
    assert_eq!(typing[0]["content"]["user_ids"], json!([]), "{resp}");
}

#[tokio::test]
async fn receipts_appear_once_and_private_ones_only_for_their_owner() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = shared_room(&server, &alice, &bob).await;
    let event = text(&server, &alice, &room, "read me").await;
    let alice_since = next_batch(&sync(&server, &alice, "").await);
    let bob_since = next_batch(&sync(&server, &bob, "").await);

    let unread = |sync: &Value| sync["rooms"]["join"][&room]["unread_notifications"].clone();
    let before = sync(&server, &bob, "").await;
    assert_eq!(unread(&before)["notification_count"], 1, "{before}");
    let public = receipt_path(&room, "m.read", &event);
    assert_ok(server.post(&public, bob.token(), json!({})).await);
    // The receipt clears Bob's unread count.
    let after = sync(&server, &bob, "").await;
    assert_eq!(unread(&after)["notification_count"], 0, "{after}");
    let resp = sync(
        &server,
        &alice,
        &format!("since={alice_since}&timeout=5000"),
    )
    .await;
    let receipts = ephemeral(&resp, &room, "m.receipt");
    assert_eq!(receipts.len(), 1, "{resp}");
    let entry = &receipts[0]["content"][&event]["m.read"][&bob.user_id];
    assert!(entry["ts"].is_u64(), "{resp}");
    assert!(entry.get("thread_id").is_none());
    // Once: the next incremental sync has no receipt.
    let again = sync(
        &server,
        &alice,
        &format!("since={}&timeout=0", next_batch(&resp)),
    )
    .await;
    assert!(ephemeral(&again, &room, "m.receipt").is_empty(), "{again}");
    // An initial sync lists it.
    let initial = sync(&server, &alice, "").await;
    assert_eq!(
        ephemeral(&initial, &room, "m.receipt").len(),
        1,
        "{initial}"
    );

    // Alice reads privately: Bob never learns it, Alice does.
    let bobs = text(&server, &bob, &room, "and me").await;
    let alice_mid = next_batch(&sync(&server, &alice, "").await);
    let private = receipt_path(&room, "m.read.private", &bobs);
    assert_ok(server.post(&private, alice.token(), json!({})).await);
    let own = sync(&server, &alice, &format!("since={alice_mid}&timeout=5000")).await;
    let receipts = ephemeral(&own, &room, "m.receipt");
    assert!(receipts[0]["content"][&bobs]["m.read.private"][&alice.user_id].is_object());
    let theirs = sync(&server, &bob, &format!("since={bob_since}&timeout=0")).await;
    assert!(!theirs.to_string().contains("m.read.private"), "{theirs}");
    let initial = sync(&server, &bob, "").await;
    assert!(!initial.to_string().contains("m.read.private"), "{initial}");
}

#[tokio::test]
async fn threaded_receipts_round_trip_their_thread_id() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = shared_room(&server, &alice, &bob).await;
    let root = text(&server, &alice, &room, "root").await;
    let reply = send(
        &server,
        &alice,
        &room,
        json!({"msgtype": "m.text", "body": "in thread",
               "m.relates_to": {"rel_type": "m.thread", "event_id": root}}),
    )
    .await;
    let since = next_batch(&sync(&server, &alice, "").await);

    let path = receipt_path(&room, "m.read", &reply);
    assert_ok(
        server
            .post(&path, bob.token(), json!({"thread_id": root}))
            .await,
    );
    let path = receipt_path(&room, "m.read", &root);
    assert_ok(
        server
            .post(&path, bob.token(), json!({"thread_id": "main"}))
            .await,
    );
    let resp = sync(&server, &alice, &format!("since={since}&timeout=5000")).await;
    let content = &ephemeral(&resp, &room, "m.receipt")[0]["content"];
    assert_eq!(
        content[&reply]["m.read"][&bob.user_id]["thread_id"],
        root.as_str()
    );
    assert_eq!(content[&root]["m.read"][&bob.user_id]["thread_id"], "main");

    // A thread id that does not fit the event, or an empty one: 400.
    let path = receipt_path(&room, "m.read", &reply);
    let resp = server
        .post(&path, bob.token(), json!({"thread_id": "main"}))
        .await;
    assert_error(&resp, 400, "M_INVALID_PARAM");
    let resp = server
        .post(&path, bob.token(), json!({"thread_id": ""}))
        .await;
    assert_error(&resp, 400, "M_INVALID_PARAM");
    // An unknown event: 404.
    let path = receipt_path(&room, "m.read", "$unknown:localhost");
    let resp = server.post(&path, bob.token(), json!({})).await;
    assert_error(&resp, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn read_markers_set_fully_read_and_the_receipt() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = shared_room(&server, &alice, &bob).await;
    let event = text(&server, &alice, &room, "marker").await;
    let bob_since = next_batch(&sync(&server, &bob, "").await);
    let alice_since = next_batch(&sync(&server, &alice, "").await);

    let path = format!("/_matrix/client/v3/rooms/{}/read_markers", enc(&room));
    let body = json!({"m.fully_read": event, "m.read": event});
    assert_ok(server.post(&path, bob.token(), body).await);

    let data_path = format!(
        "/_matrix/client/v3/user/{}/rooms/{}/account_data/m.fully_read",
        enc(&bob.user_id),
        enc(&room)
    );
    let data = assert_ok(server.get(&data_path, bob.token()).await);
    assert_eq!(data["event_id"], event.as_str());
    // Still refused when a client writes it directly.
    let resp = server
        .put(&data_path, bob.token(), json!({"event_id": event}))
        .await;
    assert_error(&resp, 405, "M_BAD_JSON");

    let resp = sync(&server, &bob, &format!("since={bob_since}&timeout=5000")).await;
    let events = resp["rooms"]["join"][&room]["account_data"]["events"].to_string();
    assert!(
        events.contains("m.fully_read") && events.contains(&event),
        "{resp}"
    );
    let resp = sync(
        &server,
        &alice,
        &format!("since={alice_since}&timeout=5000"),
    )
    .await;
    let receipts = ephemeral(&resp, &room, "m.receipt");
    assert!(
        receipts[0]["content"][&event]["m.read"][&bob.user_id].is_object(),
        "{resp}"
    );

    // The receipt endpoint's m.fully_read does the same.
    let later = text(&server, &alice, &room, "later").await;
    let path = receipt_path(&room, "m.fully_read", &later);
    assert_ok(server.post(&path, bob.token(), json!({})).await);
    let data = assert_ok(server.get(&data_path, bob.token()).await);
    assert_eq!(data["event_id"], later.as_str());
}

#[tokio::test]
async fn non_members_cannot_type_or_send_receipts() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let eve = server.register("eve", PW).await;
    let room = shared_room(&server, &alice, &bob).await;
    let event = text(&server, &alice, &room, "private").await;

    let body = json!({"typing": true, "timeout": 1000});
    let resp = server
        .put(&typing_path(&room, &eve), eve.token(), body.clone())
        .await;
    assert_error(&resp, 403, "M_FORBIDDEN");
    // Nor for somebody else.
    let resp = server
        .put(&typing_path(&room, &alice), bob.token(), body)
        .await;
    assert_error(&resp, 403, "M_FORBIDDEN");

    let resp = server
        .post(
            &receipt_path(&room, "m.read", &event),
            eve.token(),
            json!({}),
        )
        .await;
    assert_error(&resp, 403, "M_FORBIDDEN");
    let path = format!("/_matrix/client/v3/rooms/{}/read_markers", enc(&room));
    let resp = server
        .post(&path, eve.token(), json!({"m.read": event}))
        .await;
    assert_error(&resp, 403, "M_FORBIDDEN");
}
