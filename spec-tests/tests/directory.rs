//! Room aliases and the published room directory on one server (Client-Server
//! API "Room aliases", "Room directory", "Published room directory").

use std::collections::HashMap;

use spec_tests::{assert_error, assert_ok, enc, json, Session, TestServer, Value};

const PW: &str = "correct horse battery";

async fn join(server: &TestServer, who: &Session, room: &str) {
    let path = format!("/_matrix/client/v3/join/{}", enc(room));
    assert_ok(server.post(&path, who.token(), json!({})).await);
}

fn alias_path(alias: &str) -> String {
    format!("/_matrix/client/v3/directory/room/{}", enc(alias))
}

fn visibility_path(room: &str) -> String {
    format!("/_matrix/client/v3/directory/list/room/{}", enc(room))
}

async fn publish(server: &TestServer, who: &Session, room: &str) {
    let body = json!({"visibility": "public"});
    assert_ok(server.put(&visibility_path(room), who.token(), body).await);
}

fn room_ids(page: &Value) -> Vec<String> {
    page["chunk"]
        .as_array()
        .unwrap_or_else(|| panic!("no chunk: {page}"))
        .iter()
        .map(|r| r["room_id"].as_str().expect("room_id").to_owned())
        .collect()
}

#[tokio::test]
async fn alias_create_resolve_conflict_delete() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    let alias = format!("#lobby:{}", server.server_name());
    let put = |who: &Session, alias: &str, room: &str| {
        let (path, token, room) = (alias_path(alias), who.access_token.clone(), room.to_owned());
        let server = &server;
        async move {
            server
                .put(&path, Some(&token), json!({ "room_id": room }))
                .await
        }
    };

    assert_eq!(assert_ok(put(&alice, &alias, &room).await), json!({}));
    // Resolving needs no access token.
    let resolved = assert_ok(server.get(&alias_path(&alias), None).await);
    assert_eq!(resolved["room_id"], room.as_str());
    assert_eq!(resolved["servers"], json!([server.server_name()]));

    assert_error(&put(&alice, &alias, &room).await, 409, "M_UNKNOWN");
    let other = format!("#other:{}", server.server_name());
    assert_error(&put(&bob, &other, &room).await, 403, "M_FORBIDDEN");
    let unknown_room = format!("!nope:{}", server.server_name());
    assert_error(
        &put(&alice, &other, &unknown_room).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &put(&alice, "#far:elsewhere.test", &room).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server.get(&alias_path("#far:elsewhere.test"), None).await,
        404,
        "M_NOT_FOUND",
    );

    // A member without power over the canonical alias may not delete others' aliases…
    join(&server, &bob, &room).await;
    let path = alias_path(&alias);
    assert_error(
        &server.delete(&path, bob.token(), None).await,
        403,
        "M_FORBIDDEN",
    );
    // …but may create and delete their own; a room admin may delete any.
    let bobs = format!("#bobs:{}", server.server_name());
    assert_ok(put(&bob, &bobs, &room).await);
    assert_ok(server.delete(&alias_path(&bobs), bob.token(), None).await);
    assert_ok(put(&bob, &bobs, &room).await);
    assert_ok(server.delete(&alias_path(&bobs), alice.token(), None).await);

    assert_ok(server.delete(&path, alice.token(), None).await);
    assert_error(&server.get(&path, None).await, 404, "M_NOT_FOUND");
    assert_error(
        &server.delete(&path, alice.token(), None).await,
        404,
        "M_NOT_FOUND",
    );
    // The name is free again.
    assert_ok(put(&bob, &alias, &room).await);
}

#[tokio::test]
async fn local_aliases_are_for_members_or_world_readable_rooms() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = server
        .create_room(&alice, json!({"preset": "private_chat"}))
        .await;
    let aliases = |room: &str| format!("/_matrix/client/v3/rooms/{}/aliases", enc(room));
    assert_eq!(
        assert_ok(server.get(&aliases(&room), alice.token()).await),
        json!({"aliases": []})
    );
    let mut expected = Vec::new();
    for name in ["zeta", "alpha"] {
        let alias = format!("#{name}:{}", server.server_name());
        let body = json!({ "room_id": room });
        assert_ok(server.put(&alias_path(&alias), alice.token(), body).await);
        expected.push(alias);
    }
    expected.sort();
    let mut listed: Vec<String> = serde_json::from_value(
        assert_ok(server.get(&aliases(&room), alice.token()).await)["aliases"].clone(),
    )
    .unwrap();
    listed.sort();
    assert_eq!(listed, expected);

    assert_error(
        &server.get(&aliases(&room), bob.token()).await,
        403,
        "M_FORBIDDEN",
    );
    let unknown = format!("!nope:{}", server.server_name());
    assert_error(
        &server.get(&aliases(&unknown), bob.token()).await,
        403,
        "M_FORBIDDEN",
    );
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.history_visibility/",
        enc(&room)
    );
    let body = json!({"history_visibility": "world_readable"});
    assert_ok(server.put(&path, alice.token(), body).await);
    let seen = assert_ok(server.get(&aliases(&room), bob.token()).await);
    assert_eq!(seen["aliases"].as_array().map(Vec::len), Some(2));
}

#[tokio::test]
async fn canonical_alias_must_point_to_the_room() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = server
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    let other = server
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    let here = format!("#here:{}", server.server_name());
    let there = format!("#there:{}", server.server_name());
    assert_ok(
        server
            .put(&alias_path(&here), alice.token(), json!({"room_id": room}))
            .await,
    );
    assert_ok(
        server
            .put(
                &alias_path(&there),
                alice.token(),
                json!({"room_id": other}),
            )
            .await,
    );
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.canonical_alias/",
        enc(&room)
    );
    let send = |content: Value| server.put(&path, alice.token(), content);

    let nowhere = format!("#nowhere:{}", server.server_name());
    assert_error(&send(json!({ "alias": nowhere })).await, 400, "M_BAD_ALIAS");
    assert_error(&send(json!({ "alias": there })).await, 400, "M_BAD_ALIAS");
    assert_error(
        &send(json!({ "alt_aliases": [here, there] })).await,
        400,
        "M_BAD_ALIAS",
    );
    assert_error(
        &send(json!({ "alias": "no-hash" })).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_ok(send(json!({ "alias": here, "alt_aliases": [here] })).await);
    assert_ok(send(json!({})).await);
}

#[tokio::test]
async fn publishing_lists_the_room_with_its_state() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let body = json!({"preset": "public_chat", "name": "The Pub", "topic": "Beer and chat"});
    let room = server.create_room(&alice, body).await;
    let alias = format!("#pub:{}", server.server_name());
    assert_ok(
        server
            .put(&alias_path(&alias), alice.token(), json!({"room_id": room}))
            .await,
    );
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.canonical_alias/",
        enc(&room)
    );
    assert_ok(
        server
            .put(&path, alice.token(), json!({ "alias": alias }))
            .await,
    );
    join(&server, &bob, &room).await;

    assert_eq!(
        assert_ok(server.get(&visibility_path(&room), None).await),
        json!({"visibility": "private"})
    );
    let unknown = format!("!nope:{}", server.server_name());
    assert_error(
        &server.get(&visibility_path(&unknown), None).await,
        404,
        "M_NOT_FOUND",
    );
    let public = json!({"visibility": "public"});
    assert_error(
        &server
            .put(&visibility_path(&unknown), alice.token(), public.clone())
            .await,
        404,
        "M_NOT_FOUND",
    );
    // Bob (power 0) may not publish; Alice may.
    assert_error(
        &server
            .put(&visibility_path(&room), bob.token(), public)
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(
        assert_ok(server.get("/_matrix/client/v3/publicRooms", None).await)["chunk"],
        json!([])
    );
    publish(&server, &alice, &room).await;
    assert_eq!(
        assert_ok(server.get(&visibility_path(&room), None).await),
        json!({"visibility": "public"})
    );

    // GET needs no token; POST does.
    let listed = assert_ok(server.get("/_matrix/client/v3/publicRooms", None).await);
    assert_eq!(listed["total_room_count_estimate"], 1);
    let entry = &listed["chunk"][0];
    assert_eq!(entry["room_id"], room.as_str());
    assert_eq!(entry["name"], "The Pub");
    assert_eq!(entry["topic"], "Beer and chat");
    assert_eq!(entry["canonical_alias"], alias.as_str());
    assert_eq!(entry["num_joined_members"], 2);
    assert_eq!(entry["world_readable"], false);
    assert_eq!(entry["guest_can_join"], false);
    assert!(
        entry["join_rule"].is_null() || entry["join_rule"] == "public",
        "{entry}"
    );
    assert_error(
        &server
            .post("/_matrix/client/v3/publicRooms", None, json!({}))
            .await,
        401,
        "M_MISSING_TOKEN",
    );
    let found = assert_ok(
        server
            .post("/_matrix/client/v3/publicRooms", bob.token(), json!({}))
            .await,
    );
    assert_eq!(room_ids(&found), vec![room.clone()]);

    // Other networks and other servers' directories.
    let third_party = json!({"third_party_instance_id": "irc-libera"});
    let none = assert_ok(
        server
            .post("/_matrix/client/v3/publicRooms", bob.token(), third_party)
            .await,
    );
    assert_eq!(none["chunk"], json!([]));
    let all = json!({"include_all_networks": true});
    let everything = assert_ok(
        server
            .post("/_matrix/client/v3/publicRooms", bob.token(), all)
            .await,
    );
    assert_eq!(room_ids(&everything), vec![room.clone()]);
    let elsewhere = "/_matrix/client/v3/publicRooms?server=elsewhere.test";
    assert_error(&server.get(elsewhere, None).await, 404, "M_NOT_FOUND");

    let private = json!({"visibility": "private"});
    assert_ok(
        server
            .put(&visibility_path(&room), alice.token(), private)
            .await,
    );
    let after = assert_ok(server.get("/_matrix/client/v3/publicRooms", None).await);
    assert_eq!(after["chunk"], json!([]));
}

#[tokio::test]
async fn paging_filters_and_room_types() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let mut rooms = Vec::new();
    for i in 0..25 {
        let body = json!({"preset": "public_chat", "name": format!("Room {i:02}"), "topic": format!("topic-{i}")});
        let room = server.create_room(&alice, body).await;
        publish(&server, &alice, &room).await;
        rooms.push(room);
    }
    // Bob joins three rooms: with two members they come first.
    for room in &rooms[20..23] {
        join(&server, &bob, room).await;
    }
    let space = server.create_room(&alice,
        json!({"preset": "public_chat", "name": "A space", "creation_content": {"type": "m.space"}}),
    )
    .await;
    publish(&server, &alice, &space).await;
    // Never published: never listed.
    server
        .create_room(&alice, json!({"preset": "private_chat"}))
        .await;

    // Page forward with POST and a room type filter for rooms without a type.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut pages = Vec::new();
    let mut since: Option<String> = None;
    loop {
        let mut body = json!({"limit": 10, "filter": {"room_types": [null]}});
        if let Some(token) = &since {
            body["since"] = json!(token);
        }
        let page = assert_ok(
            server
                .post("/_matrix/client/v3/publicRooms", bob.token(), body)
                .await,
        );
        assert_eq!(page["total_room_count_estimate"], 25, "{page}");
        for id in room_ids(&page) {
            *seen.entry(id).or_default() += 1;
        }
        pages.push(page.clone());
        match page["next_batch"].as_str() {
            Some(next) => since = Some(next.to_owned()),
            None => break,
        }
        assert!(pages.len() < 10, "paging does not end");
    }
    assert_eq!(
        pages.iter().map(|p| room_ids(p).len()).collect::<Vec<_>>(),
        vec![10, 10, 5]
    );
    assert_eq!(seen.len(), 25);
    assert!(seen.values().all(|&n| n == 1), "{seen:?}");
    assert!(rooms.iter().all(|r| seen.contains_key(r)));
    assert!(!seen.contains_key(&space));
    let mut first_three = room_ids(&pages[0])[..3].to_vec();
    first_three.sort();
    let mut busiest = rooms[20..23].to_vec();
    busiest.sort();
    assert_eq!(first_three, busiest, "most joined members first");
    assert!(pages[0]["prev_batch"].is_null());

    // The same walk with GET, then back from the last page.
    let mut get_seen = Vec::new();
    let mut path = "/_matrix/client/v3/publicRooms?limit=10".to_owned();
    let last = loop {
        let page = assert_ok(server.get(&path, None).await);
        get_seen.extend(room_ids(&page));
        match page["next_batch"].as_str() {
            Some(next) => {
                path = format!(
                    "/_matrix/client/v3/publicRooms?limit=10&since={}",
                    enc(next)
                )
            }
            None => break page,
        }
    };
    assert_eq!(
        get_seen.len(),
        26,
        "GET lists every published room, the space too"
    );
    let prev = last["prev_batch"]
        .as_str()
        .expect("prev_batch on the last page");
    let path = format!(
        "/_matrix/client/v3/publicRooms?limit=10&since={}",
        enc(prev)
    );
    let back = assert_ok(server.get(&path, None).await);
    assert_eq!(room_ids(&back), get_seen[10..20].to_vec());
    assert_error(
        &server
            .get("/_matrix/client/v3/publicRooms?since=garbage", None)
            .await,
        400,
        "M_INVALID_PARAM",
    );

    // Search terms: case-insensitive, in name and topic.
    let search = |term: &str| json!({"filter": {"generic_search_term": term}});
    let hit = assert_ok(
        server
            .post(
                "/_matrix/client/v3/publicRooms",
                bob.token(),
                search("rOOm 07"),
            )
            .await,
    );
    assert_eq!(room_ids(&hit), vec![rooms[7].clone()]);
    let hit = assert_ok(
        server
            .post(
                "/_matrix/client/v3/publicRooms",
                bob.token(),
                search("TOPIC-13"),
            )
            .await,
    );
    assert_eq!(room_ids(&hit), vec![rooms[13].clone()]);
    let spaces = json!({"filter": {"room_types": ["m.space"]}});
    let hit = assert_ok(
        server
            .post("/_matrix/client/v3/publicRooms", bob.token(), spaces)
            .await,
    );
    assert_eq!(room_ids(&hit), vec![space.clone()]);
    assert_eq!(hit["chunk"][0]["room_type"], "m.space");
}

#[tokio::test]
async fn create_room_with_alias_and_join_by_alias() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let body = json!({"room_alias_name": "lobby", "visibility": "public", "name": "Lobby"});
    let room = server.create_room(&alice, body).await;
    let alias = format!("#lobby:{}", server.server_name());
    let resolved = assert_ok(server.get(&alias_path(&alias), None).await);
    assert_eq!(resolved["room_id"], room.as_str());
    let path = format!(
        "/_matrix/client/v3/rooms/{}/state/m.room.canonical_alias/",
        enc(&room)
    );
    assert_eq!(
        assert_ok(server.get(&path, alice.token()).await)["alias"],
        alias.as_str()
    );
    let listed = assert_ok(server.get("/_matrix/client/v3/publicRooms", None).await);
    assert_eq!(room_ids(&listed), vec![room.clone()]);

    let taken = server
        .post(
            "/_matrix/client/v3/createRoom",
            alice.token(),
            json!({"room_alias_name": "lobby"}),
        )
        .await;
    assert_error(&taken, 400, "M_ROOM_IN_USE");
    let invalid = server
        .post(
            "/_matrix/client/v3/createRoom",
            alice.token(),
            json!({"room_alias_name": "a b"}),
        )
        .await;
    assert_error(&invalid, 400, "M_INVALID_PARAM");

    let path = format!("/_matrix/client/v3/join/{}", enc(&alias));
    let joined = assert_ok(server.post(&path, bob.token(), json!({})).await);
    assert_eq!(joined["room_id"], room.as_str());
    let unknown = format!(
        "/_matrix/client/v3/join/{}",
        enc(&format!("#nope:{}", server.server_name()))
    );
    assert_error(
        &server.post(&unknown, bob.token(), json!({})).await,
        404,
        "M_NOT_FOUND",
    );
}
