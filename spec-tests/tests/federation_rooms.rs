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
        let _ = before;

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
