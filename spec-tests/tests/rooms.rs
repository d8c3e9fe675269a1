//! Rooms on one server: creation, conversation, membership rules, power levels,
//! transaction ids, pagination and history visibility — over plain HTTP.

use spec_tests::{assert_error, assert_ok, enc, json, Session, TestServer, Value};

const PW: &str = "correct horse battery";

async fn send_text(
    server: &TestServer,
    who: &Session,
    room: &str,
    txn: &str,
    text: &str,
) -> (spec_tests::StatusCode, Value) {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
        enc(room)
    );
    server
        .put(
            &path,
            who.token(),
            json!({"msgtype": "m.text", "body": text}),
        )
        .await
}

async fn messages(
    server: &TestServer,
    who: &Session,
    room: &str,
    query: &str,
) -> (spec_tests::StatusCode, Value) {
    let path = format!("/_matrix/client/v3/rooms/{}/messages?{query}", enc(room));
    server.get(&path, who.token()).await
}

fn bodies(chunk: &Value) -> Vec<String> {
    chunk["chunk"]
        .as_array()
        .expect("chunk")
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn two_users_converse_in_every_supported_room_version() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    for version in ["10", "11", "12"] {
        let room = server
            .create_room(
                &alice,
                json!({"preset": "public_chat", "room_version": version, "name": "Lobby"}),
            )
            .await;
        if version == "12" {
            assert!(
                !room.contains(':'),
                "v12 room ids carry no server name: {room}"
            );
        }
        let path = format!("/_matrix/client/v3/join/{}", enc(&room));
        assert_eq!(
            assert_ok(server.post(&path, bob.token(), json!({})).await)["room_id"],
            room.as_str()
        );
        let sent = assert_ok(send_text(&server, &alice, &room, "t1", "hello bob").await);
        assert!(sent["event_id"].as_str().unwrap().starts_with('$'));
        assert_ok(send_text(&server, &bob, &room, "t1", "hi alice").await);

        let page = assert_ok(messages(&server, &bob, &room, "dir=b&limit=10").await);
        assert_eq!(
            bodies(&page),
            ["hi alice", "hello bob"],
            "version {version}"
        );
        let event_id = sent["event_id"].as_str().unwrap();
        let event = assert_ok(
            server
                .get(
                    &format!(
                        "/_matrix/client/v3/rooms/{}/event/{}",
                        enc(&room),
                        enc(event_id)
                    ),
                    bob.token(),
                )
                .await,
        );
        assert_eq!(event["sender"], alice.user_id.as_str());
        assert_eq!(event["room_id"], room.as_str());

        let name = assert_ok(
            server
                .get(
                    &format!("/_matrix/client/v3/rooms/{}/state/m.room.name/", enc(&room)),
                    bob.token(),
                )
                .await,
        );
        assert_eq!(name["name"], "Lobby");
        let joined = assert_ok(
            server
                .get(
                    &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)),
                    alice.token(),
                )
                .await,
        );
        assert!(
            joined["joined"][&alice.user_id].is_object()
                && joined["joined"][&bob.user_id].is_object(),
            "{joined}"
        );
        let rooms = assert_ok(
            server
                .get("/_matrix/client/v3/joined_rooms", bob.token())
                .await,
        );
        assert!(rooms["joined_rooms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == room.as_str()));
        let create = assert_ok(
            server
                .get(
                    &format!(
                        "/_matrix/client/v3/rooms/{}/state/m.room.create/",
                        enc(&room)
                    ),
                    bob.token(),
                )
                .await,
        );
        assert_eq!(create["room_version"], version);
    }
}

#[tokio::test]
async fn invite_only_rooms_and_bans() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let eve = server.register("eve", PW).await;
    let room = server
        .create_room(&alice, json!({"preset": "private_chat"}))
        .await;
    let join = format!("/_matrix/client/v3/rooms/{}/join", enc(&room));

    // Not invited: refused, and nothing of the room can be read.
    assert_error(
        &server.post(&join, eve.token(), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &messages(&server, &eve, &room, "dir=b").await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &send_text(&server, &eve, &room, "x", "let me in").await,
        403,
        "M_FORBIDDEN",
    );

    // Invited: may join.
    let invite = format!("/_matrix/client/v3/rooms/{}/invite", enc(&room));
    assert_ok(
        server
            .post(&invite, alice.token(), json!({"user_id": bob.user_id}))
            .await,
    );
    assert_ok(server.post(&join, bob.token(), json!({})).await);

    // Bob (power 0) cannot kick or ban.
    let ban = format!("/_matrix/client/v3/rooms/{}/ban", enc(&room));
    assert_error(
        &server
            .post(&ban, bob.token(), json!({"user_id": alice.user_id}))
            .await,
        403,
        "M_FORBIDDEN",
    );

    // Alice bans bob: he is out and cannot come back even with a new invite.
    assert_ok(
        server
            .post(
                &ban,
                alice.token(),
                json!({"user_id": bob.user_id, "reason": "spam"}),
            )
            .await,
    );
    assert_error(
        &send_text(&server, &bob, &room, "y", "still here?").await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &server.post(&join, bob.token(), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    let unban = format!("/_matrix/client/v3/rooms/{}/unban", enc(&room));
    assert_ok(
        server
            .post(&unban, alice.token(), json!({"user_id": bob.user_id}))
            .await,
    );
    assert_error(
        &server.post(&join, bob.token(), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    let member = assert_ok(
        server
            .get(
                &format!(
                    "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                    enc(&room),
                    enc(&bob.user_id)
                ),
                alice.token(),
            )
            .await,
    );
    assert_eq!(member["membership"], "leave");
}

#[tokio::test]
async fn power_level_escalation_is_refused() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    for version in ["11", "12"] {
        let room = server
            .create_room(
                &alice,
                json!({"preset": "public_chat", "room_version": version}),
            )
            .await;
        assert_ok(
            server
                .post(
                    &format!("/_matrix/client/v3/join/{}", enc(&room)),
                    bob.token(),
                    json!({}),
                )
                .await,
        );
        let pl_path = format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.power_levels/",
            enc(&room)
        );
        let mut levels = assert_ok(server.get(&pl_path, bob.token()).await);
        levels["users"][&bob.user_id] = json!(100);
        assert_error(
            &server.put(&pl_path, bob.token(), levels.clone()).await,
            403,
            "M_FORBIDDEN",
        );
        let topic = format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.topic/",
            enc(&room)
        );
        assert_error(
            &server
                .put(&topic, bob.token(), json!({"topic": "mine now"}))
                .await,
            403,
            "M_FORBIDDEN",
        );
        // The creator may grant power, after which bob may set the topic.
        levels["users"][&bob.user_id] = json!(50);
        assert_ok(server.put(&pl_path, alice.token(), levels).await);
        assert_ok(
            server
                .put(&topic, bob.token(), json!({"topic": "ours"}))
                .await,
        );
        let read = assert_ok(server.get(&topic, alice.token()).await);
        assert_eq!(read["topic"], "ours");
    }
}

#[tokio::test]
async fn transaction_ids_survive_a_restart() {
    let mut server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({})).await;
    let first = assert_ok(send_text(&server, &alice, &room, "txn-1", "once").await);
    let again = assert_ok(send_text(&server, &alice, &room, "txn-1", "once").await);
    assert_eq!(first["event_id"], again["event_id"]);
    server.kill9();
    server.restart().await;
    let after = assert_ok(send_text(&server, &alice, &room, "txn-1", "once").await);
    assert_eq!(first["event_id"], after["event_id"]);
    let page = assert_ok(messages(&server, &alice, &room, "dir=b&limit=50").await);
    assert_eq!(bodies(&page), ["once"]);
}

#[tokio::test]
async fn pagination_returns_every_event_once_in_both_directions() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server.create_room(&alice, json!({})).await;
    const N: usize = 1000;
    for i in 0..N {
        assert_ok(send_text(&server, &alice, &room, &format!("t{i}"), &format!("m{i}")).await);
    }
    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();

    let mut backwards = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let query = match &from {
            Some(t) => format!("dir=b&limit=37&from={t}"),
            None => "dir=b&limit=37".into(),
        };
        let page = assert_ok(messages(&server, &alice, &room, &query).await);
        backwards.extend(bodies(&page));
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    backwards.reverse();
    assert_eq!(backwards, expected);

    let mut forwards = Vec::new();
    let mut from: Option<String> = None;
    loop {
        let query = match &from {
            Some(t) => format!("dir=f&limit=101&from={t}"),
            None => "dir=f&limit=101".into(),
        };
        let page = assert_ok(messages(&server, &alice, &room, &query).await);
        forwards.extend(bodies(&page));
        match page["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    assert_eq!(forwards, expected);
}

#[tokio::test]
async fn history_visibility_is_enforced() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    for (visibility, bob_sees_before_join) in
        [("joined", false), ("shared", true), ("invited", false)]
    {
        let room = server.create_room(&alice, json!({
            "preset": "public_chat",
            "initial_state": [{"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": visibility}}]
        })).await;
        let secret = assert_ok(send_text(&server, &alice, &room, "s", "before bob").await);
        let secret_id = secret["event_id"].as_str().unwrap().to_owned();
        assert_ok(
            server
                .post(
                    &format!("/_matrix/client/v3/join/{}", enc(&room)),
                    bob.token(),
                    json!({}),
                )
                .await,
        );
        assert_ok(send_text(&server, &alice, &room, "a", "after bob").await);

        let page = assert_ok(messages(&server, &bob, &room, "dir=b&limit=100").await);
        let seen = bodies(&page);
        assert!(
            seen.contains(&"after bob".to_owned()),
            "{visibility}: {seen:?}"
        );
        assert_eq!(
            seen.contains(&"before bob".to_owned()),
            bob_sees_before_join,
            "{visibility}: {seen:?}"
        );
        let event = server
            .get(
                &format!(
                    "/_matrix/client/v3/rooms/{}/event/{}",
                    enc(&room),
                    enc(&secret_id)
                ),
                bob.token(),
            )
            .await;
        if bob_sees_before_join {
            assert_ok(event);
        } else {
            assert_error(&event, 404, "M_NOT_FOUND");
        }
    }
    // A stranger never reads a room that is not world-readable.
    let eve = server.register("eve", PW).await;
    let room = server
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    assert_error(
        &messages(&server, &eve, &room, "dir=b").await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &server
            .get(
                &format!("/_matrix/client/v3/rooms/{}/state", enc(&room)),
                eve.token(),
            )
            .await,
        403,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn bad_room_requests_get_matrix_errors() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/createRoom",
                alice.token(),
                json!({"room_version": "999"}),
            )
            .await,
        400,
        "M_UNSUPPORTED_ROOM_VERSION",
    );
    let unknown = "!nope:localhost";
    assert_error(
        &send_text(&server, &alice, unknown, "t", "x").await,
        404,
        "M_NOT_FOUND",
    );
    let room = server.create_room(&alice, json!({})).await;
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/t2",
        enc(&room)
    );
    assert_error(
        &server.put(&path, alice.token(), json!([1, 2])).await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &messages(&server, &alice, &room, "dir=b&from=garbage").await,
        400,
        "M_INVALID_PARAM",
    );
}

#[tokio::test]
async fn knocking_needs_a_knock_join_rule() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server
        .create_room(
            &alice,
            json!({"room_version": "12", "initial_state": [
                {"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}
            ]}),
        )
        .await;
    let knock = format!("/_matrix/client/v3/knock/{}", enc(&room));
    let resp = assert_ok(
        server
            .post(&knock, bob.token(), json!({"reason": "hello"}))
            .await,
    );
    assert_eq!(resp["room_id"], room.as_str());
    let member = assert_ok(
        server
            .get(
                &format!(
                    "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                    enc(&room),
                    enc(&bob.user_id)
                ),
                alice.token(),
            )
            .await,
    );
    assert_eq!(member["membership"], "knock");
    assert_eq!(member["reason"], "hello");
    // A knocking user is not a member: cannot send.
    assert_error(
        &send_text(&server, &bob, &room, "k1", "let me in").await,
        403,
        "M_FORBIDDEN",
    );
    // Alice accepts by inviting; bob joins.
    let invite = format!("/_matrix/client/v3/rooms/{}/invite", enc(&room));
    assert_ok(
        server
            .post(&invite, alice.token(), json!({"user_id": bob.user_id}))
            .await,
    );
    server.join_room(&bob, &room).await;
    assert_ok(send_text(&server, &bob, &room, "k2", "thanks").await);

    // In an invite-only room knocking is refused.
    let closed = server
        .create_room(&alice, json!({"preset": "private_chat"}))
        .await;
    let knock = format!("/_matrix/client/v3/knock/{}", enc(&closed));
    assert_error(
        &server.post(&knock, bob.token(), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn upgrading_a_room_tombstones_it_and_carries_state_over() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let old = server.create_room(&alice,
        json!({"preset": "public_chat", "room_version": "11", "name": "Old name", "topic": "kept"}),
    )
    .await;
    assert_ok(
        server
            .post(
                &format!("/_matrix/client/v3/join/{}", enc(&old)),
                bob.token(),
                json!({}),
            )
            .await,
    );
    let upgrade = format!("/_matrix/client/v3/rooms/{}/upgrade", enc(&old));
    // Bob (power 0) may not send the tombstone, so may not upgrade.
    assert_error(
        &server
            .post(&upgrade, bob.token(), json!({"new_version": "12"}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    let new = assert_ok(
        server
            .post(&upgrade, alice.token(), json!({"new_version": "12"}))
            .await,
    )["replacement_room"]
        .as_str()
        .unwrap()
        .to_owned();
    let state =
        |room: &str, kind: &str| format!("/_matrix/client/v3/rooms/{}/state/{kind}/", enc(room));
    let tombstone = assert_ok(
        server
            .get(&state(&old, "m.room.tombstone"), bob.token())
            .await,
    );
    assert_eq!(tombstone["replacement_room"], new.as_str());
    let create = assert_ok(
        server
            .get(&state(&new, "m.room.create"), alice.token())
            .await,
    );
    assert_eq!(create["room_version"], "12");
    assert_eq!(create["predecessor"]["room_id"], old.as_str());
    assert_eq!(
        assert_ok(server.get(&state(&new, "m.room.name"), alice.token()).await)["name"],
        "Old name"
    );
    assert_eq!(
        assert_ok(
            server
                .get(&state(&new, "m.room.topic"), alice.token())
                .await
        )["topic"],
        "kept"
    );
    let join_rules = assert_ok(
        server
            .get(&state(&new, "m.room.join_rules"), alice.token())
            .await,
    );
    assert_eq!(join_rules["join_rule"], "public");
    // The creator of a v12 room is not listed in its power levels.
    let levels = assert_ok(
        server
            .get(&state(&new, "m.room.power_levels"), alice.token())
            .await,
    );
    assert!(levels["users"].get(&alice.user_id).is_none(), "{levels}");
    // In the old room only moderators may speak now.
    assert_error(
        &send_text(&server, &bob, &old, "after", "hello?").await,
        403,
        "M_FORBIDDEN",
    );
    assert_ok(send_text(&server, &alice, &old, "after", "see you there").await);
    // And bob can follow into the new room.
    assert_ok(
        server
            .post(
                &format!("/_matrix/client/v3/join/{}", enc(&new)),
                bob.token(),
                json!({}),
            )
            .await,
    );
}

#[tokio::test]
async fn messages_filters_and_members_at_a_point_in_time() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    assert_ok(send_text(&server, &alice, &room, "a1", "from alice").await);
    let before_bob = assert_ok(messages(&server, &alice, &room, "dir=b&limit=1").await)["start"]
        .as_str()
        .unwrap()
        .to_owned();
    server.join_room(&bob, &room).await;
    assert_ok(send_text(&server, &bob, &room, "b1", "from bob").await);
    let topic = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.topic/",
        enc(&room)
    );
    assert_ok(
        server
            .put(&topic, alice.token(), json!({"topic": "t"}))
            .await,
    );

    // Only bob's messages.
    let filter = enc(&json!({"senders": [bob.user_id], "types": ["m.room.message"]}).to_string());
    let page = assert_ok(messages(&server, &alice, &room, &format!("dir=b&filter={filter}")).await);
    assert_eq!(bodies(&page), ["from bob"]);
    assert_eq!(page["chunk"].as_array().unwrap().len(), 1, "{page}");
    // Everything but messages, with wildcards.
    let filter = enc(&json!({"not_types": ["m.room.mess*"]}).to_string());
    let page = assert_ok(
        messages(
            &server,
            &alice,
            &room,
            &format!("dir=b&limit=100&filter={filter}"),
        )
        .await,
    );
    assert!(
        page["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["type"] != "m.room.message"),
        "{page}"
    );
    // Lazy-loaded members: the senders' member events come along.
    let filter = enc(&json!({"types": ["m.room.message"], "lazy_load_members": true}).to_string());
    let page = assert_ok(messages(&server, &alice, &room, &format!("dir=b&filter={filter}")).await);
    let members: Vec<&str> = page["state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert!(
        members.contains(&bob.user_id.as_str()) && members.contains(&alice.user_id.as_str()),
        "{page}"
    );

    // Members now, and before bob joined.
    let members_path = format!("/_matrix/client/v3/rooms/{}/members", enc(&room));
    let now = assert_ok(server.get(&members_path, alice.token()).await);
    assert_eq!(now["chunk"].as_array().unwrap().len(), 2);
    let then = assert_ok(
        server
            .get(&format!("{members_path}?at={before_bob}"), alice.token())
            .await,
    );
    let then: Vec<&str> = then["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert_eq!(then, [alice.user_id.as_str()]);
    let joined_only = assert_ok(
        server
            .get(
                &format!("{members_path}?membership=join&not_membership=leave"),
                alice.token(),
            )
            .await,
    );
    assert_eq!(joined_only["chunk"].as_array().unwrap().len(), 2);
    assert_error(
        &server
            .get(&format!("{members_path}?at=garbage"), alice.token())
            .await,
        400,
        "M_INVALID_PARAM",
    );
}

#[tokio::test]
async fn upgrading_moves_local_aliases_and_the_listing() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let old = server
        .create_room(
            &alice,
            json!({"preset": "public_chat", "visibility": "public", "room_alias_name": "lobby"}),
        )
        .await;
    let alias = format!("#lobby:{}", server.server_name());
    let upgrade = format!("/_matrix/client/v3/rooms/{}/upgrade", enc(&old));
    let new = assert_ok(
        server
            .post(&upgrade, alice.token(), json!({"new_version": "12"}))
            .await,
    )["replacement_room"]
        .as_str()
        .unwrap()
        .to_owned();
    let resolved = assert_ok(
        server
            .get(
                &format!("/_matrix/client/v3/directory/room/{}", enc(&alias)),
                None,
            )
            .await,
    );
    assert_eq!(resolved["room_id"], new.as_str());
    let state = |room: &str| {
        format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.canonical_alias/",
            enc(room)
        )
    };
    assert_eq!(
        assert_ok(server.get(&state(&new), alice.token()).await)["alias"],
        alias.as_str()
    );
    assert!(assert_ok(server.get(&state(&old), alice.token()).await)
        .get("alias")
        .is_none());
    let listing = |room: &str| format!("/_matrix/client/v3/directory/list/room/{}", enc(room));
    assert_eq!(
        assert_ok(server.get(&listing(&new), None).await)["visibility"],
        "public"
    );
    assert_eq!(
        assert_ok(server.get(&listing(&old), None).await)["visibility"],
        "private"
    );
}

#[tokio::test]
async fn identical_concurrent_room_creations_get_distinct_rooms() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    // Same creator, same content, same instant: in v12 the room id is the
    // create event's hash, so the server must make the events differ.
    let body = || json!({"room_version": "12"});
    let path = "/_matrix/client/v3/createRoom";
    let (a, b, c, d) = tokio::join!(
        server.post(path, alice.token(), body()),
        server.post(path, alice.token(), body()),
        server.post(path, alice.token(), body()),
        server.post(path, alice.token(), body()),
    );
    let mut ids: Vec<String> = [a, b, c, d]
        .into_iter()
        .map(|resp| assert_ok(resp)["room_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 4, "{ids:?}");
    let joined = assert_ok(
        server
            .get("/_matrix/client/v3/joined_rooms", alice.token())
            .await,
    );
    assert_eq!(joined["joined_rooms"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn membership_posts_without_a_body_are_accepted() {
    // matrix-nio and others POST /join and /leave with no body at all.
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    let join = server
        .raw(
            spec_tests::Method::POST,
            &format!("/_matrix/client/v3/join/{}", enc(&room)),
            bob.token(),
            &[],
            None,
        )
        .await;
    assert_eq!(join.status, 200, "{}", join.text());
    let leave = server
        .raw(
            spec_tests::Method::POST,
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            bob.token(),
            &[],
            None,
        )
        .await;
    assert_eq!(leave.status, 200, "{}", leave.text());
    // A required field still missing is M_BAD_JSON, not a silent default.
    let login = server
        .raw(
            spec_tests::Method::POST,
            "/_matrix/client/v3/login",
            None,
            &[],
            None,
        )
        .await;
    assert_eq!(login.status, 400, "{}", login.text());
    assert_eq!(login.json().unwrap()["errcode"], "M_BAD_JSON");
}
