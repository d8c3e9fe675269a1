//! `GET /sync` over plain HTTP (Client-Server API "Syncing"): initial and
//! incremental syncs, long-polling, limited timelines continued with
//! `/messages`, invites, leaves, privacy between rooms, and filters.

use std::time::{Duration, Instant};

use spec_tests::{assert_ok, enc, json, Session, TestServer, Value};

const PW: &str = "correct horse battery";

async fn send_text(server: &TestServer, who: &Session, room: &str, text: &str) -> String {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
        enc(room),
        enc(text)
    );
    let resp = assert_ok(
        server
            .put(
                &path,
                who.token(),
                json!({"msgtype": "m.text", "body": text}),
            )
            .await,
    );
    resp["event_id"].as_str().expect("event_id").to_owned()
}

async fn sync(server: &TestServer, who: &Session, query: &str) -> Value {
    assert_ok(
        server
            .get(&format!("/_matrix/client/v3/sync?{query}"), who.token())
            .await,
    )
}

fn timeline(sync: &Value, room: &str) -> Vec<Value> {
    sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn bodies(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn types(events: &Value) -> Vec<String> {
    events
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn next_batch(sync: &Value) -> String {
    sync["next_batch"].as_str().expect("next_batch").to_owned()
}

#[tokio::test]
async fn initial_sync_shows_a_new_room_and_incremental_sync_only_what_is_new() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({"name": "Tea"})).await;

    let first = sync(&server, &alice, "").await;
    let joined = &first["rooms"]["join"][&room];
    let events = timeline(&first, &room);
    assert_eq!(events[events.len() - 1]["type"], "m.room.name");
    assert!(events.iter().all(|e| e.get("room_id").is_none()));
    assert!(joined["timeline"]["prev_batch"].is_string());
    // State plus timeline hold the whole room once: state is what came
    // before the timeline's first event.
    let state_types = types(&joined["state"]["events"]);
    let timeline_types = types(&joined["timeline"]["events"]);
    let mut all: Vec<_> = state_types.iter().chain(&timeline_types).cloned().collect();
    all.sort();
    all.dedup();
    for kind in [
        "m.room.create",
        "m.room.member",
        "m.room.power_levels",
        "m.room.name",
    ] {
        assert!(all.contains(&kind.to_owned()), "{kind} missing: {all:?}");
    }
    assert!(!state_types
        .iter()
        .any(|t| timeline_types.contains(t) && t == "m.room.name"));
    assert_eq!(joined["summary"]["m.joined_member_count"], 1);

    let since = next_batch(&first);
    let event_id = send_text(&server, &alice, &room, "hello").await;
    let second = sync(&server, &alice, &format!("since={since}")).await;
    let events = timeline(&second, &room);
    assert_eq!(events.len(), 1, "{second}");
    assert_eq!(events[0]["event_id"], event_id.as_str());
    assert_eq!(
        second["rooms"]["join"][&room]["timeline"]["limited"],
        json!(null)
    );
    assert!(second["rooms"]["join"][&room]["state"]["events"].is_null());

    // Nothing new: an empty answer with the same token.
    let third = sync(&server, &alice, &format!("since={}", next_batch(&second))).await;
    assert!(third["rooms"]["join"].get(&room).is_none(), "{third}");
    assert_eq!(next_batch(&third), next_batch(&second));
}

#[tokio::test]
async fn a_long_poll_wakes_when_another_user_sends_and_otherwise_waits() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    server.join_room(&bob, &room).await;
    let since = next_batch(&sync(&server, &alice, "").await);

    // Nothing happens: the poll lasts about its timeout.
    let started = Instant::now();
    let idle = sync(&server, &alice, &format!("since={since}&timeout=1500")).await;
    let waited = started.elapsed();
    assert!(idle["rooms"]["join"].get(&room).is_none());
    assert!(waited >= Duration::from_millis(1400), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");

    let poll = {
        let (server_url, token) = (server.base_url().to_owned(), alice.access_token.clone());
        let query = format!("since={since}&timeout=20000");
        tokio::spawn(async move {
            let started = Instant::now();
            let client = spec_tests::HttpClient::new(&server_url);
            let resp = client
                .get(&format!("/_matrix/client/v3/sync?{query}"), Some(&token))
                .await;
            (started.elapsed(), assert_ok(resp))
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sent_at = Instant::now();
    send_text(&server, &bob, &room, "wake up").await;
    let (_, woken) = poll.await.unwrap();
    let latency = sent_at.elapsed();
    assert!(latency < Duration::from_secs(5), "{latency:?}");
    assert_eq!(bodies(&timeline(&woken, &room)), ["wake up"]);
}

#[tokio::test]
async fn a_limited_timeline_continues_exactly_with_messages() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({})).await;
    let filter = enc(r#"{"room":{"timeline":{"limit":5}}}"#);
    let since = next_batch(&sync(&server, &alice, &format!("filter={filter}")).await);
    // A state change inside the gap must show up in `state`.
    let topic = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.topic/",
        enc(&room)
    );
    assert_ok(
        server
            .put(&topic, alice.token(), json!({"topic": "gap"}))
            .await,
    );
    for n in 0..20 {
        send_text(&server, &alice, &room, &format!("m{n}")).await;
    }
    let resp = sync(&server, &alice, &format!("since={since}&filter={filter}")).await;
    let joined = &resp["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["limited"], true);
    let events = timeline(&resp, &room);
    assert_eq!(bodies(&events), ["m15", "m16", "m17", "m18", "m19"]);
    assert_eq!(types(&joined["state"]["events"]), ["m.room.topic"]);

    let prev = joined["timeline"]["prev_batch"].as_str().unwrap();
    let path = format!(
        "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=15&from={prev}",
        enc(&room)
    );
    let page = assert_ok(server.get(&path, alice.token()).await);
    let mut skipped = bodies(page["chunk"].as_array().unwrap());
    skipped.reverse();
    let want: Vec<String> = (0..15).map(|n| format!("m{n}")).collect();
    assert_eq!(skipped, want);

    // Stored filters work the same way.
    let created = assert_ok(
        server
            .post(
                &format!("/_matrix/client/v3/user/{}/filter", enc(&alice.user_id)),
                alice.token(),
                json!({"room": {"timeline": {"limit": 2}}}),
            )
            .await,
    );
    let id = created["filter_id"].as_str().unwrap();
    let stored = assert_ok(
        server
            .get(
                &format!(
                    "/_matrix/client/v3/user/{}/filter/{id}",
                    enc(&alice.user_id)
                ),
                alice.token(),
            )
            .await,
    );
    assert_eq!(stored["room"]["timeline"]["limit"], 2);
    let resp = sync(&server, &alice, &format!("since={since}&filter={id}")).await;
    assert_eq!(bodies(&timeline(&resp, &room)), ["m18", "m19"]);
}

#[tokio::test]
async fn invites_leaves_and_privacy() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let secret = server.create_room(&alice, json!({"name": "Secret"})).await;
    send_text(&server, &alice, &secret, "not for bob").await;
    let room = server.create_room(&alice, json!({"name": "Club"})).await;
    let bob_since = next_batch(&sync(&server, &bob, "").await);

    let invite = format!("/_matrix/client/v3/rooms/{}/invite", enc(&room));
    assert_ok(
        server
            .post(&invite, alice.token(), json!({"user_id": bob.user_id}))
            .await,
    );
    let resp = sync(&server, &bob, &format!("since={bob_since}&timeout=5000")).await;
    let stripped = &resp["rooms"]["invite"][&room]["invite_state"]["events"];
    let kinds = types(stripped);
    for kind in [
        "m.room.create",
        "m.room.join_rules",
        "m.room.name",
        "m.room.member",
    ] {
        assert!(
            kinds.contains(&kind.to_owned()),
            "{kind} missing: {kinds:?}"
        );
    }
    assert!(resp["rooms"]["join"].get(&secret).is_none());
    let bob_since = next_batch(&resp);

    server.join_room(&bob, &room).await;
    let resp = sync(&server, &bob, &format!("since={bob_since}")).await;
    assert!(resp["rooms"]["invite"].get(&room).is_none());
    let joined = &resp["rooms"]["join"][&room];
    assert!(types(&joined["state"]["events"]).contains(&"m.room.create".to_owned()));
    let bob_since = next_batch(&resp);

    send_text(&server, &alice, &room, "bye soon").await;
    assert_ok(
        server
            .post(
                &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
                bob.token(),
                json!({}),
            )
            .await,
    );
    send_text(&server, &alice, &room, "after bob left").await;
    send_text(&server, &alice, &secret, "still secret").await;
    let resp = sync(&server, &bob, &format!("since={bob_since}")).await;
    let left = &resp["rooms"]["leave"][&room]["timeline"]["events"];
    let left: Vec<Value> = left.as_array().cloned().unwrap_or_default();
    assert_eq!(bodies(&left), ["bye soon"]);
    assert_eq!(left.last().unwrap()["type"], "m.room.member");
    assert_eq!(left.last().unwrap()["content"]["membership"], "leave");
    assert!(resp["rooms"]["join"].get(&room).is_none());
    assert!(resp["rooms"]["join"].get(&secret).is_none());

    // Never a word from the room Bob was never in, initial sync included.
    let all = sync(&server, &bob, "").await.to_string();
    assert!(
        !all.contains(&secret) && !all.contains("not for bob") && !all.contains("still secret")
    );
    assert!(!all.contains("after bob left"));
    let archived = sync(
        &server,
        &bob,
        &format!("filter={}", enc(r#"{"room":{"include_leave":true}}"#)),
    )
    .await;
    assert!(
        archived["rooms"]["leave"].get(&room).is_some(),
        "{archived}"
    );
}

#[tokio::test]
async fn account_data_arrives_once() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let since = next_batch(&sync(&server, &alice, "").await);
    let path = format!(
        "/_matrix/client/v3/user/{}/account_data/org.example.theme",
        enc(&alice.user_id)
    );
    assert_ok(
        server
            .put(&path, alice.token(), json!({"dark": true}))
            .await,
    );
    let resp = sync(&server, &alice, &format!("since={since}")).await;
    let events = &resp["account_data"]["events"];
    assert_eq!(types(events), ["org.example.theme"]);
    assert_eq!(events[0]["content"]["dark"], true);
    let again = sync(&server, &alice, &format!("since={}", next_batch(&resp))).await;
    assert!(again["account_data"]["events"].is_null(), "{again}");
    // An initial sync has all of it: the theme and the default push rules
    // stored at registration.
    let initial = sync(&server, &alice, "").await;
    let mut all = types(&initial["account_data"]["events"]);
    all.sort();
    assert_eq!(all, ["m.push_rules", "org.example.theme"]);
}
