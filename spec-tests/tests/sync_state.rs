//! `/sync` beyond the core loop (Client-Server API "Syncing", "Filtering"):
//! account data waking a long-poll, lazy-loading room members
//! (`lazy_load_members`, `include_redundant_members`), `use_state_after`
//! (`state_after`, also under MSC4222's unstable names), and `limited` ignoring events the timeline filter drops.

use std::time::{Duration, Instant};

use spec_tests::{assert_ok, enc, json, Session, TestServer, Value};

const PW: &str = "correct horse battery";

async fn join(server: &TestServer, who: &Session, room: &str) {
    assert_ok(
        server
            .post(
                &format!("/_matrix/client/v3/join/{}", enc(room)),
                who.token(),
                json!({}),
            )
            .await,
    );
}

async fn send(server: &TestServer, who: &Session, room: &str, kind: &str, content: Value) {
    let txn = format!("t{}", rand_suffix());
    let path = format!("/_matrix/client/v3/rooms/{}/send/{kind}/{txn}", enc(room));
    assert_ok(server.put(&path, who.token(), content).await);
}

async fn send_text(server: &TestServer, who: &Session, room: &str, text: &str) {
    let content = json!({"msgtype": "m.text", "body": text});
    send(server, who, room, "m.room.message", content).await;
}

async fn put_state(server: &TestServer, who: &Session, room: &str, kind: &str, content: Value) {
    let path = format!("/_matrix/client/v3/rooms/{}/state/{kind}/", enc(room));
    assert_ok(server.put(&path, who.token(), content).await);
}

fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

async fn sync(server: &TestServer, who: &Session, query: &str) -> Value {
    assert_ok(
        server
            .get(&format!("/_matrix/client/v3/sync?{query}"), who.token())
            .await,
    )
}

fn next_batch(sync: &Value) -> String {
    sync["next_batch"].as_str().expect("next_batch").to_owned()
}

/// A filter as a URL query value.
fn filter(value: Value) -> String {
    format!("filter={}", enc(&value.to_string()))
}

/// The state keys of the `m.room.member` events in a list of events.
fn members(events: &Value) -> Vec<String> {
    let mut out: Vec<String> = events
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap_or_default().to_owned())
        .collect();
    out.sort();
    out
}

fn non_member_types(events: &Value) -> Vec<String> {
    let mut out: Vec<String> = events
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["type"] != "m.room.member")
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn account_data_wakes_a_long_poll() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({})).await;
    let mut since = next_batch(&sync(&server, &alice, "").await);

    for (path, body, check) in [
        (
            format!(
                "/_matrix/client/v3/user/{}/account_data/org.example.theme",
                enc(&alice.user_id)
            ),
            json!({"dark": true}),
            "global",
        ),
        (
            format!(
                "/_matrix/client/v3/user/{}/rooms/{}/tags/u.work",
                enc(&alice.user_id),
                enc(&room)
            ),
            json!({"order": 0.5}),
            "tag",
        ),
    ] {
        // Polls until the change arrives (other news, such as the user's
        // own presence, may end a poll first).
        let poll = {
            let (url, token) = (server.base_url().to_owned(), alice.access_token.clone());
            let (mut since, room) = (since.clone(), room.clone());
            tokio::spawn(async move {
                let client = spec_tests::HttpClient::new(&url);
                loop {
                    let query = format!("since={since}&timeout=20000");
                    let resp = client
                        .get(&format!("/_matrix/client/v3/sync?{query}"), Some(&token))
                        .await;
                    let resp = assert_ok(resp);
                    let room_data = &resp["rooms"]["join"][&room]["account_data"];
                    if !resp["account_data"].is_null() || !room_data.is_null() {
                        return resp;
                    }
                    since = next_batch(&resp);
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(300)).await;
        let put_at = Instant::now();
        assert_ok(server.put(&path, alice.token(), body).await);
        let woken = poll.await.unwrap();
        let latency = put_at.elapsed();
        assert!(latency < Duration::from_secs(1), "{check}: {latency:?}");
        if check == "global" {
            let events = &woken["account_data"]["events"];
            assert_eq!(events[0]["type"], "org.example.theme", "{woken}");
            assert_eq!(events[0]["content"]["dark"], true);
        } else {
            let events = &woken["rooms"]["join"][&room]["account_data"]["events"];
            assert_eq!(events[0]["type"], "m.tag", "{woken}");
            assert_eq!(events[0]["content"]["tags"]["u.work"]["order"], 0.5);
        }
        since = next_batch(&woken);
    }
}

/// Registers `name` and joins it to `room`.
async fn member(server: &TestServer, name: &str, room: &str) -> Session {
    let who = server.register(name, PW).await;
    join(server, &who, room).await;
    who
}

#[tokio::test]
async fn lazy_loading_sends_only_the_members_the_timeline_needs() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let body = json!({"preset": "public_chat", "name": "Lobby", "topic": "hi"});
    let room = server.create_room(&alice, body).await;
    let mut others = Vec::new();
    for i in 0..19 {
        others.push(member(&server, &format!("user{i:02}"), &room).await);
    }
    let (bob, carol) = (&others[3], &others[11]);
    send_text(&server, bob, &room, "from bob").await;
    send_text(&server, carol, &room, "from carol").await;

    let lazy = |extra: Value| {
        let mut state = json!({"lazy_load_members": true});
        if let (Some(s), Some(e)) = (state.as_object_mut(), extra.as_object()) {
            s.extend(e.clone());
        }
        filter(json!({"room": {"timeline": {"limit": 2}, "state": state}}))
    };
    let plain = sync(
        &server,
        &alice,
        &filter(json!({"room": {"timeline": {"limit": 2}}})),
    )
    .await;
    let full_state = &plain["rooms"]["join"][&room]["state"]["events"];
    assert_eq!(members(full_state).len(), 20, "{full_state}");

    let initial = sync(&server, &alice, &lazy(json!({}))).await;
    let joined = &initial["rooms"]["join"][&room];
    let senders: Vec<_> = joined["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["sender"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(senders, [bob.user_id.clone(), carol.user_id.clone()]);
    let mut expected = vec![
        alice.user_id.clone(),
        bob.user_id.clone(),
        carol.user_id.clone(),
    ];
    expected.sort();
    let state = &joined["state"]["events"];
    assert_eq!(members(state), expected, "{state}");
    // Every other kind of state is there in full.
    assert_eq!(non_member_types(state), non_member_types(full_state));
    assert!(non_member_types(state).contains(&"m.room.topic".to_owned()));

    // Incremental: a join in the gap is sent, bob (already sent) is not...
    let since = next_batch(&initial);
    let dave = member(&server, "dave", &room).await;
    send_text(&server, &others[0], &room, "gap").await;
    send_text(&server, bob, &room, "bob again").await;
    let query = |extra: Value| format!("since={since}&{}", lazy(extra));
    let next = sync(&server, &alice, &query(json!({}))).await;
    let joined = &next["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["limited"], true, "{joined}");
    let mut expected = vec![dave.user_id.clone(), others[0].user_id.clone()];
    expected.sort();
    assert_eq!(members(&joined["state"]["events"]), expected, "{joined}");
    // ... unless redundant members are asked for.
    let redundant = sync(
        &server,
        &alice,
        &query(json!({"include_redundant_members": true})),
    )
    .await;
    let state = &redundant["rooms"]["join"][&room]["state"]["events"];
    expected.extend([bob.user_id.clone(), alice.user_id.clone()]);
    expected.sort();
    assert_eq!(members(state), expected, "{state}");
}

#[tokio::test]
async fn use_state_after_returns_the_state_at_the_end_of_the_timeline() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({"name": "Old"})).await;
    let initial = sync(&server, &alice, "use_state_after=true").await;
    let joined = &initial["rooms"]["join"][&room];
    assert!(joined.get("state").is_none(), "{joined}");
    let after = &joined["state_after"]["events"];
    assert!(non_member_types(after).contains(&"m.room.name".to_owned()));
    assert_eq!(members(after), [alice.user_id.as_str()]);

    let since = next_batch(&initial);
    put_state(
        &server,
        &alice,
        &room,
        "m.room.name",
        json!({"name": "New"}),
    )
    .await;
    send_text(&server, &alice, &room, "renamed").await;
    let query = format!("since={since}&use_state_after=true");
    let next = sync(&server, &alice, &query).await;
    let joined = &next["rooms"]["join"][&room];
    assert!(joined.get("state").is_none(), "{joined}");
    let after = joined["state_after"]["events"].as_array().unwrap();
    assert_eq!(after.len(), 1, "{joined}");
    assert_eq!(after[0]["type"], "m.room.name");
    assert_eq!(after[0]["content"]["name"], "New");

    // The default: the change is in the timeline, `state` (before it) is empty.
    let before = sync(&server, &alice, &format!("since={since}")).await;
    let joined = &before["rooms"]["join"][&room];
    assert!(joined.get("state_after").is_none(), "{joined}");
    assert!(joined["state"]["events"]
        .as_array()
        .is_none_or(Vec::is_empty));

    // Nothing new: a room with only an empty `state_after` is left out.
    let quiet = format!("since={}&use_state_after=true", next_batch(&next));
    let quiet = sync(&server, &alice, &quiet).await;
    assert!(quiet["rooms"]["join"].get(&room).is_none(), "{quiet}");
}

/// matrix-js-sdk asks with MSC4222's unstable parameter and reads the
/// unstable field name.
#[tokio::test]
async fn the_unstable_msc4222_names_are_understood() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server
        .create_room(&alice, json!({"name": "Unstable"}))
        .await;
    let initial = sync(&server, &alice, "org.matrix.msc4222.use_state_after=true").await;
    let joined = &initial["rooms"]["join"][&room];
    assert!(joined.get("state").is_none(), "{joined}");
    assert!(joined.get("state_after").is_none(), "{joined}");
    let after = &joined["org.matrix.msc4222.state_after"]["events"];
    assert!(
        non_member_types(after).contains(&"m.room.name".to_owned()),
        "{joined}"
    );
    assert_eq!(members(after), [alice.user_id.as_str()]);
    assert!(joined["timeline"]["events"]
        .as_array()
        .is_some_and(|e| !e.is_empty()));

    let since = next_batch(&initial);
    put_state(
        &server,
        &alice,
        &room,
        "m.room.name",
        json!({"name": "Renamed"}),
    )
    .await;
    let query = format!("since={since}&org.matrix.msc4222.use_state_after=true");
    let next = sync(&server, &alice, &query).await;
    let after = &next["rooms"]["join"][&room]["org.matrix.msc4222.state_after"]["events"];
    assert_eq!(after[0]["content"]["name"], "Renamed", "{next}");
}

#[tokio::test]
async fn limited_ignores_events_the_timeline_filter_drops() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({})).await;
    let since = next_batch(&sync(&server, &alice, "").await);
    for i in 0..5 {
        send(&server, &alice, &room, "org.example.noise", json!({"n": i})).await;
    }
    for text in ["one", "two", "three"] {
        send_text(&server, &alice, &room, text).await;
    }
    let timeline = |limit: u32| {
        let f = json!({"room": {"timeline": {"limit": limit, "not_types": ["org.example.noise"]}}});
        format!("since={since}&{}", filter(f))
    };
    let resp = sync(&server, &alice, &timeline(3)).await;
    let t = &resp["rooms"]["join"][&room]["timeline"];
    assert_eq!(t["events"].as_array().unwrap().len(), 3, "{t}");
    assert_ne!(t["limited"], true, "{t}");
    // One message more than the limit: limited.
    let resp = sync(&server, &alice, &timeline(2)).await;
    let t = &resp["rooms"]["join"][&room]["timeline"];
    assert_eq!(t["events"].as_array().unwrap().len(), 2, "{t}");
    assert_eq!(t["limited"], true, "{t}");
}
