//! Two Feathur servers sharing rooms over TLS on loopback (Server-Server
//! API "Joining Rooms", "Transactions", "Inviting to a room", "Leaving
//! Rooms"): one server named by IP literal, the other by hostname.

use std::time::{Duration, Instant};

use spec_tests::{assert_ok, enc, json, PeerName, Session, TestServer, Value};

/// How long an event may take to cross to the other server.
const DELIVERY: Duration = Duration::from_secs(30);

async fn pair() -> (TestServer, TestServer) {
    let (a, b) = tokio::join!(
        TestServer::builder().peer(PeerName::Ip).start(),
        TestServer::builder().peer(PeerName::Localhost).start(),
    );
    (a, b)
}

async fn send_text(server: &TestServer, who: &Session, room: &str, body: &str) -> String {
    server.send_text(who, room, body).await
}

async fn timeline(server: &TestServer, who: &Session, room: &str) -> Vec<Value> {
    server.room_timeline(who, room).await
}

async fn wait_for_event(server: &TestServer, who: &Session, room: &str, event_id: &str) -> Value {
    server.wait_for_event(who, room, event_id, DELIVERY).await
}

async fn membership(server: &TestServer, who: &Session, room: &str, user: &str) -> Option<String> {
    server.membership_of(who, room, user).await
}

async fn wait_for_membership(
    server: &TestServer,
    who: &Session,
    room: &str,
    user: &str,
    wanted: &str,
) {
    server
        .wait_for_membership(who, room, user, wanted, DELIVERY)
        .await
}

#[tokio::test]
async fn join_by_alias_and_talk_both_ways() {
    for version in ["10", "11", "12"] {
        let (a, b) = pair().await;
        let alice = a.register("alice", "secret-pw-1").await;
        let bob = b.register("bob", "secret-pw-2").await;
        let room = a
            .create_room(
                &alice,
                json!({
                    "preset": "public_chat",
                    "room_alias_name": "lounge",
                    "room_version": version,
                    "name": "Lounge",
                }),
            )
            .await;
        let before = send_text(&a, &alice, &room, "before bob").await;

        // Bob joins by alias: query/directory, make_join, send_join.
        let alias = format!("#lounge:{}", a.server_name());
        let joined = assert_ok(
            b.post(
                &format!("/_matrix/client/v3/join/{}", enc(&alias)),
                bob.token(),
                json!({}),
            )
            .await,
        );
        assert_eq!(joined["room_id"], room.as_str(), "v{version}");
        wait_for_membership(&a, &alice, &room, &bob.user_id, "join").await;
        assert_eq!(
            membership(&b, &bob, &room, &alice.user_id).await.as_deref(),
            Some("join"),
            "v{version}: bob's server has the room state"
        );
        let (_, name) = b
            .get(
                &format!("/_matrix/client/v3/rooms/{}/state/m.room.name", enc(&room)),
                bob.token(),
            )
            .await;
        assert_eq!(name["name"], "Lounge", "v{version}");
        // History from before the join comes from alice's server (backfill).
        let old = wait_for_event(&b, &bob, &room, &before).await;
        assert_eq!(old["content"]["body"], "before bob", "v{version}");

        // Messages both ways.
        let from_alice = send_text(&a, &alice, &room, "hello bob").await;
        let seen = wait_for_event(&b, &bob, &room, &from_alice).await;
        assert_eq!(seen["content"]["body"], "hello bob");
        assert_eq!(seen["sender"], alice.user_id.as_str());
        let from_bob = send_text(&b, &bob, &room, "hello alice").await;
        let seen = wait_for_event(&a, &alice, &room, &from_bob).await;
        assert_eq!(seen["content"]["body"], "hello alice");

        // Several in a row arrive once each and in order.
        let mut sent = Vec::new();
        for i in 0..5 {
            sent.push(send_text(&a, &alice, &room, &format!("burst {i}")).await);
        }
        wait_for_event(&b, &bob, &room, sent.last().unwrap()).await;
        let ids: Vec<String> = timeline(&b, &bob, &room)
            .await
            .iter()
            .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
            .filter(|id| sent.contains(id))
            .collect();
        assert_eq!(ids, sent, "v{version}");

        // Bob leaves; alice's server sees it.
        assert_ok(
            b.post(
                &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
                bob.token(),
                json!({}),
            )
            .await,
        );
        wait_for_membership(&a, &alice, &room, &bob.user_id, "leave").await;
    }
}

#[tokio::test]
async fn invite_a_remote_user_who_joins_and_is_kicked() {
    let (a, b) = pair().await;
    let alice = a.register("alice", "secret-pw-1").await;
    let bob = b.register("bob", "secret-pw-2").await;
    let room = a
        .create_room(&alice, json!({"preset": "private_chat", "name": "Secret"}))
        .await;

    // The invite is countersigned by bob's server and shows in bob's sync.
    assert_ok(
        a.post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            alice.token(),
            json!({"user_id": bob.user_id}),
        )
        .await,
    );
    let deadline = Instant::now() + DELIVERY;
    loop {
        let sync = assert_ok(b.get("/_matrix/client/v3/sync", bob.token()).await);
        let invite = &sync["rooms"]["invite"][&room];
        if invite.is_object() {
            let events = invite["invite_state"]["events"].as_array().unwrap();
            assert!(
                events
                    .iter()
                    .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Secret"),
                "{invite}"
            );
            assert!(
                events.iter().any(|e| e["type"] == "m.room.member"
                    && e["state_key"] == bob.user_id.as_str()
                    && e["content"]["membership"] == "invite"),
                "{invite}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no invite in bob's sync: {sync}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Bob accepts by room id: his server joins through the inviter's.
    assert_ok(
        b.post(
            &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
            bob.token(),
            json!({}),
        )
        .await,
    );
    wait_for_membership(&a, &alice, &room, &bob.user_id, "join").await;
    let hello = send_text(&b, &bob, &room, "thanks for the invite").await;
    wait_for_event(&a, &alice, &room, &hello).await;

    // A kick of a remote user reaches their server.
    assert_ok(
        a.post(
            &format!("/_matrix/client/v3/rooms/{}/kick", enc(&room)),
            alice.token(),
            json!({"user_id": bob.user_id, "reason": "bye"}),
        )
        .await,
    );
    wait_for_membership(&b, &bob, &room, &bob.user_id, "leave").await;
}

#[tokio::test]
async fn unsigned_and_forged_requests_are_refused() {
    let a = TestServer::builder().peer(PeerName::Ip).start().await;
    spec_tests::install_crypto_provider();
    let client = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let base = format!("https://127.0.0.1:{}", a.federation_port());
    // No signature at all.
    let response = client
        .put(format!("{base}/_matrix/federation/v1/send/txn1"))
        .json(&json!({"origin": "evil.example", "origin_server_ts": 1, "pdus": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errcode"], "M_UNAUTHORIZED", "{body}");
    // A signature from a server that does not exist (its keys cannot be
    // fetched): refused the same way.
    let response = client
        .get(format!(
            "{base}/_matrix/federation/v1/make_join/{}/{}",
            enc("!room:127.0.0.1"),
            enc("@mallory:127.0.0.1:1")
        ))
        .header(
            "Authorization",
            "X-Matrix origin=\"127.0.0.1:1\",key=\"ed25519:x\",sig=\"aGVsbG8\"",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

/// Alice on `a` hosts a public room that bob on `b` has joined.
async fn shared_room(a: &TestServer, b: &TestServer) -> (Session, Session, String) {
    let alice = a.register("alice", "secret-pw-1").await;
    let bob = b.register("bob", "secret-pw-2").await;
    let room = a
        .create_room(&alice, json!({"preset": "public_chat", "name": "Shared"}))
        .await;
    assert_ok(join_via(b, &bob, &room, &a.server_name()).await);
    wait_for_membership(a, &alice, &room, &bob.user_id, "join").await;
    (alice, bob, room)
}

/// Syncs `who` until `found` accepts a response.
async fn sync_until(
    server: &TestServer,
    who: &Session,
    what: &str,
    found: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + DELIVERY;
    let mut since: Option<String> = None;
    loop {
        let path = match &since {
            Some(s) => format!("/_matrix/client/v3/sync?timeout=1000&since={s}"),
            None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
        };
        let sync = assert_ok(server.get(&path, who.token()).await);
        if found(&sync) {
            return sync;
        }
        since = sync["next_batch"].as_str().map(str::to_owned);
        assert!(Instant::now() < deadline, "no {what} within {DELIVERY:?}");
    }
}

#[tokio::test]
async fn typing_and_read_receipts_cross_servers() {
    let (a, b) = pair().await;
    let (alice, bob, room) = shared_room(&a, &b).await;
    assert_ok(
        a.put(
            &format!(
                "/_matrix/client/v3/rooms/{}/typing/{}",
                enc(&room),
                enc(&alice.user_id)
            ),
            alice.token(),
            json!({"typing": true, "timeout": 20000}),
        )
        .await,
    );
    sync_until(&b, &bob, "typing from the other server", |sync| {
        sync["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()
            .is_some_and(|events| {
                events.iter().any(|e| {
                    e["type"] == "m.typing"
                        && e["content"]["user_ids"]
                            .as_array()
                            .is_some_and(|ids| ids.iter().any(|id| id == alice.user_id.as_str()))
                })
            })
    })
    .await;

    let message = send_text(&a, &alice, &room, "read me").await;
    wait_for_event(&b, &bob, &room, &message).await;
    assert_ok(
        b.post(
            &format!(
                "/_matrix/client/v3/rooms/{}/receipt/m.read/{}",
                enc(&room),
                enc(&message)
            ),
            bob.token(),
            json!({}),
        )
        .await,
    );
    sync_until(&a, &alice, "a read receipt from the other server", |sync| {
        sync["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()
            .is_some_and(|events| {
                events.iter().any(|e| {
                    e["type"] == "m.receipt"
                        && e["content"][&message]["m.read"][&bob.user_id].is_object()
                })
            })
    })
    .await;
}

#[tokio::test]
async fn events_sent_while_a_server_is_down_arrive_after_it_restarts() {
    let (a, mut b) = pair().await;
    let (alice, bob, room) = shared_room(&a, &b).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(send_text(&a, &alice, &room, &format!("before {i}")).await);
    }
    b.kill9();
    for i in 0..10 {
        sent.push(send_text(&a, &alice, &room, &format!("while down {i}")).await);
    }
    b.restart().await;
    for i in 0..5 {
        sent.push(send_text(&a, &alice, &room, &format!("after {i}")).await);
    }
    wait_for_event(&b, &bob, &room, sent.last().unwrap()).await;
    let deadline = Instant::now() + DELIVERY;
    loop {
        let seen: Vec<String> = timeline(&b, &bob, &room)
            .await
            .iter()
            .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
            .filter(|id| sent.contains(id))
            .collect();
        if seen.len() == sent.len() {
            assert_eq!(seen, sent, "every event once, in order");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {} events arrived",
            seen.len(),
            sent.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The room's current state as `type|state_key → event id`.
async fn state_ids(server: &TestServer, who: &Session, room: &str) -> Vec<(String, String)> {
    let state = assert_ok(
        server
            .get(
                &format!("/_matrix/client/v3/rooms/{}/state", enc(room)),
                who.token(),
            )
            .await,
    );
    let mut ids: Vec<(String, String)> = state
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                format!("{}|{}", e["type"], e["state_key"]),
                e["event_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn concurrent_power_level_changes_while_partitioned_resolve_alike() {
    let (a, mut b) = pair().await;
    let (alice, bob, room) = shared_room(&a, &b).await;
    // Bob becomes an admin, so both sides may change power levels.
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.power_levels",
        enc(&room)
    );
    let mut levels = assert_ok(a.get(&path, alice.token()).await);
    levels["users"][&bob.user_id] = json!(100);
    let promoted = assert_ok(a.put(&path, alice.token(), levels.clone()).await);
    wait_for_event(&b, &bob, &room, promoted["event_id"].as_str().unwrap()).await;

    // Partition: bob's server goes down; alice changes the levels.
    b.stop();
    let carol = format!("@carol:{}", a.server_name());
    let mut by_alice = levels.clone();
    by_alice["users"][&carol] = json!(50);
    let alices = assert_ok(a.put(&path, alice.token(), by_alice.clone()).await);
    // Bob's server comes back and bob changes them at once, before alice's
    // change can reach him: two branches.
    b.restart().await;
    let dave = format!("@dave:{}", b.server_name());
    let mut by_bob = levels.clone();
    by_bob["users"][&dave] = json!(50);
    let bobs = assert_ok(b.put(&path, bob.token(), by_bob.clone()).await);
    // Each branch reaches the other server (bob's fetches alice's change as
    // a missing event, or receives it from the queue).
    wait_for_event(&a, &alice, &room, bobs["event_id"].as_str().unwrap()).await;
    wait_for_event(&b, &bob, &room, alices["event_id"].as_str().unwrap()).await;

    // Both servers end with the same resolved state.
    let deadline = Instant::now() + DELIVERY;
    loop {
        let (on_a, on_b) = (
            state_ids(&a, &alice, &room).await,
            state_ids(&b, &bob, &room).await,
        );
        if on_a == on_b {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the servers disagree on the room state:\n{on_a:#?}\n{on_b:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The agreed power levels are one of the two branches' own.
    for (server, who) in [(&a, &alice), (&b, &bob)] {
        let resolved = assert_ok(server.get(&path, who.token()).await);
        assert!(
            resolved == by_alice || resolved == by_bob,
            "power levels after the merge are neither branch's: {resolved}"
        );
    }
    // And keep talking.
    let after = send_text(&b, &bob, &room, "after the merge").await;
    wait_for_event(&a, &alice, &room, &after).await;
}

#[tokio::test]
async fn another_servers_public_directory() {
    let (a, b) = pair().await;
    let alice = a.register("alice", "secret-pw-1").await;
    let bob = b.register("bob", "secret-pw-2").await;
    let room = a
        .create_room(
            &alice,
            json!({"preset": "public_chat", "visibility": "public", "name": "Listed"}),
        )
        .await;
    let listed = assert_ok(
        b.get(
            &format!(
                "/_matrix/client/v3/publicRooms?server={}",
                enc(&a.server_name())
            ),
            bob.token(),
        )
        .await,
    );
    let chunk = listed["chunk"].as_array().unwrap();
    assert!(
        chunk
            .iter()
            .any(|r| r["room_id"] == room.as_str() && r["name"] == "Listed"),
        "{listed}"
    );
}

#[tokio::test]
async fn a_server_denied_by_the_acl_is_not_heard() {
    let (a, b) = pair().await;
    let (alice, bob, room) = shared_room(&a, &b).await;
    let acl = json!({"allow": ["*"], "deny": [b.server_name().split(':').next().unwrap(), b.server_name()], "allow_ip_literals": true});
    assert_ok(
        a.put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.server_acl",
                enc(&room)
            ),
            alice.token(),
            acl,
        )
        .await,
    );
    // Bob's server may still send (it does not know yet, or ignores it),
    // but alice's server refuses what comes from it.
    let (status, _) = b
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/denied1",
                enc(&room)
            ),
            bob.token(),
            json!({"msgtype": "m.text", "body": "can you hear me?"}),
        )
        .await;
    let probe = send_text(&a, &alice, &room, "probe").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let events = timeline(&a, &alice, &room).await;
    assert!(
        !events
            .iter()
            .any(|e| e["content"]["body"] == "can you hear me?"),
        "a denied server's event was accepted (send answered {status}): {events:#?}"
    );
    assert!(events.iter().any(|e| e["event_id"] == probe.as_str()));
}

#[tokio::test]
async fn knocking_on_a_room_on_another_server() {
    let (a, b) = pair().await;
    let alice = a.register("alice", "secret-pw-1").await;
    let bob = b.register("bob", "secret-pw-2").await;
    let room = a
        .create_room(
            &alice,
            json!({
                "preset": "private_chat",
                "room_version": "11",
                "name": "Knock knock",
                "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}],
            }),
        )
        .await;
    assert_ok(
        b.post(
            &format!(
                "/_matrix/client/v3/knock/{}?via={}",
                enc(&room),
                enc(&a.server_name())
            ),
            bob.token(),
            json!({"reason": "let me in"}),
        )
        .await,
    );
    wait_for_membership(&a, &alice, &room, &bob.user_id, "knock").await;
    // Bob's sync shows the knock with the room's stripped state.
    sync_until(&b, &bob, "the knock in sync", |sync| {
        sync["rooms"]["knock"][&room]["knock_state"]["events"]
            .as_array()
            .is_some_and(|events| {
                events
                    .iter()
                    .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Knock knock")
            })
    })
    .await;
    // Alice lets him in: an invite, which he accepts.
    assert_ok(
        a.post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            alice.token(),
            json!({"user_id": bob.user_id}),
        )
        .await,
    );
    assert_ok(join_via(&b, &bob, &room, &a.server_name()).await);
    wait_for_membership(&a, &alice, &room, &bob.user_id, "join").await;
}

#[tokio::test]
async fn three_servers_share_one_room() {
    let (a, b, c) = tokio::join!(
        TestServer::builder().peer(PeerName::Ip).start(),
        TestServer::builder().peer(PeerName::Localhost).start(),
        TestServer::builder().peer(PeerName::Ip).start(),
    );
    let alice = a.register("alice", "secret-pw-1").await;
    let bob = b.register("bob", "secret-pw-2").await;
    let carol = c.register("carol", "secret-pw-3").await;
    let room = a
        .create_room(
            &alice,
            json!({"preset": "public_chat", "room_alias_name": "agora"}),
        )
        .await;
    let alias = format!("#agora:{}", a.server_name());
    for (server, who) in [(&b, &bob), (&c, &carol)] {
        assert_ok(
            server
                .post(
                    &format!("/_matrix/client/v3/join/{}", enc(&alias)),
                    who.token(),
                    json!({}),
                )
                .await,
        );
    }
    // The resident server passed carol's join on to bob's server.
    wait_for_membership(&b, &bob, &room, &carol.user_id, "join").await;
    wait_for_membership(&c, &carol, &room, &bob.user_id, "join").await;

    // Each server's message reaches both others.
    let from_a = send_text(&a, &alice, &room, "from a").await;
    let from_b = send_text(&b, &bob, &room, "from b").await;
    let from_c = send_text(&c, &carol, &room, "from c").await;
    for (server, who) in [(&a, &alice), (&b, &bob), (&c, &carol)] {
        for id in [&from_a, &from_b, &from_c] {
            wait_for_event(server, who, &room, id).await;
        }
    }
    // And all three agree on the room state.
    let deadline = Instant::now() + DELIVERY;
    loop {
        let (sa, sb, sc) = (
            state_ids(&a, &alice, &room).await,
            state_ids(&b, &bob, &room).await,
            state_ids(&c, &carol, &room).await,
        );
        if sa == sb && sb == sc {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the servers disagree:\n{sa:#?}\n{sb:#?}\n{sc:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn presence_crosses_servers() {
    let (a, b) = pair().await;
    let (alice, bob, _room) = shared_room(&a, &b).await;
    assert_ok(
        a.put(
            &format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id)),
            alice.token(),
            json!({"presence": "online", "status_msg": "at lunch"}),
        )
        .await,
    );
    sync_until(&b, &bob, "alice's presence from her server", |sync| {
        sync["presence"]["events"].as_array().is_some_and(|events| {
            events.iter().any(|e| {
                e["sender"] == alice.user_id.as_str()
                    && e["content"]["presence"] == "online"
                    && e["content"]["status_msg"] == "at lunch"
            })
        })
    })
    .await;
    let status = assert_ok(
        b.get(
            &format!("/_matrix/client/v3/presence/{}/status", enc(&alice.user_id)),
            bob.token(),
        )
        .await,
    );
    assert_eq!(status["presence"], "online", "{status}");
}

async fn join_via(
    server: &TestServer,
    who: &Session,
    room: &str,
    via: &str,
) -> (spec_tests::StatusCode, Value) {
    let path = format!("/_matrix/client/v3/join/{}?via={}", enc(room), enc(via));
    server.post(&path, who.token(), json!({})).await
}

#[tokio::test]
async fn restricted_rooms_admit_members_of_an_allowed_room_locally_and_across_servers() {
    let (a, b) = pair().await;
    let alice = a.register("alice", "secret-pw-1").await;
    let carol = a.register("carol", "secret-pw-3").await;
    let bob = b.register("bob", "secret-pw-2").await;
    let space = a
        .create_room(
            &alice,
            json!({"preset": "public_chat", "room_alias_name": "space"}),
        )
        .await;
    let restricted = a
        .create_room(
            &alice,
            json!({
                "preset": "private_chat",
                "room_version": "10",
                "initial_state": [{
                    "type": "m.room.join_rules",
                    "state_key": "",
                    "content": {
                        "join_rule": "restricted",
                        "allow": [{"type": "m.room_membership", "room_id": space}],
                    },
                }],
            }),
        )
        .await;
    let via = a.server_name();
    // Not in the space yet: refused, here and over federation.
    let refused = join_via(&a, &carol, &restricted, &via).await;
    assert_eq!(refused.0, 403, "{refused:?}");
    let refused = join_via(&b, &bob, &restricted, &via).await;
    assert_eq!(refused.0, 403, "{refused:?}");
    // Members of the space get in.
    assert_ok(join_via(&a, &carol, &space, &via).await);
    assert_ok(join_via(&a, &carol, &restricted, &via).await);
    assert_ok(join_via(&b, &bob, &space, &via).await);
    wait_for_membership(&a, &alice, &space, &bob.user_id, "join").await;
    assert_ok(join_via(&b, &bob, &restricted, &via).await);
    wait_for_membership(&a, &alice, &restricted, &bob.user_id, "join").await;
    let hello = send_text(&b, &bob, &restricted, "let in by the space").await;
    wait_for_event(&a, &alice, &restricted, &hello).await;
}

#[tokio::test]
async fn a_server_answers_as_notary_for_keys_it_has_seen() {
    let (a, b) = pair().await;
    // Sharing a room makes b fetch a's keys.
    let _ = shared_room(&a, &b).await;
    spec_tests::install_crypto_provider();
    let client = reqwest::Client::builder()
        .no_proxy()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let url = format!(
        "https://127.0.0.1:{}/_matrix/key/v2/query",
        b.federation_port()
    );
    let body = json!({"server_keys": {a.server_name(): {}, b.server_name(): {}}});
    let response = client.post(&url).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    let docs = answer["server_keys"].as_array().unwrap();
    for name in [a.server_name(), b.server_name()] {
        let doc = docs
            .iter()
            .find(|d| d["server_name"] == name.as_str())
            .unwrap_or_else(|| panic!("no keys for {name}: {answer}"));
        assert!(doc["verify_keys"]
            .as_object()
            .is_some_and(|k| !k.is_empty()));
        // Signed by the server itself and by the notary.
        assert!(doc["signatures"][&name].is_object(), "{doc}");
        assert!(doc["signatures"][b.server_name()].is_object(), "{doc}");
    }
}

#[tokio::test]
async fn profiles_and_aliases_of_another_server() {
    let (a, b) = pair().await;
    let alice = a.register("alice", "secret-pw-1").await;
    let bob = b.register("bob", "secret-pw-2").await;
    assert_ok(
        a.put(
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                enc(&alice.user_id)
            ),
            alice.token(),
            json!({"displayname": "Alice of A"}),
        )
        .await,
    );
    let profile = assert_ok(
        b.get(
            &format!("/_matrix/client/v3/profile/{}", enc(&alice.user_id)),
            bob.token(),
        )
        .await,
    );
    assert_eq!(profile["displayname"], "Alice of A", "{profile}");
    let field = assert_ok(
        b.get(
            &format!(
                "/_matrix/client/v3/profile/{}/displayname",
                enc(&alice.user_id)
            ),
            bob.token(),
        )
        .await,
    );
    assert_eq!(field["displayname"], "Alice of A", "{field}");
    let unknown = b
        .get(
            &format!(
                "/_matrix/client/v3/profile/{}",
                enc(&format!("@nobody:{}", a.server_name()))
            ),
            bob.token(),
        )
        .await;
    assert_eq!(unknown.0, 404, "{unknown:?}");

    let room = a
        .create_room(
            &alice,
            json!({"preset": "public_chat", "room_alias_name": "hall"}),
        )
        .await;
    let alias = format!("#hall:{}", a.server_name());
    let resolved = assert_ok(
        b.get(
            &format!("/_matrix/client/v3/directory/room/{}", enc(&alias)),
            bob.token(),
        )
        .await,
    );
    assert_eq!(resolved["room_id"], room.as_str(), "{resolved}");
    assert!(resolved["servers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|s| s == a.server_name().as_str()));
}
