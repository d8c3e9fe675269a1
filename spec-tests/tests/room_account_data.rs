//! Per-room account data and room tags: owner-only, round-trips, and the
//! server-managed types refused.

use spec_tests::{assert_error, assert_ok, enc, json, TestServer};

const PW: &str = "correct horse battery";

#[tokio::test]
async fn room_account_data_and_tags_round_trip() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = assert_ok(
        server
            .post("/_matrix/client/v3/createRoom", alice.token(), json!({}))
            .await,
    )["room_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let base = format!(
        "/_matrix/client/v3/user/{}/rooms/{}",
        enc(&alice.user_id),
        enc(&room)
    );

    let data = format!("{base}/account_data/org.example.draft");
    assert_error(&server.get(&data, alice.token()).await, 404, "M_NOT_FOUND");
    assert_ok(
        server
            .put(&data, alice.token(), json!({"text": "half a thought"}))
            .await,
    );
    assert_eq!(
        assert_ok(server.get(&data, alice.token()).await),
        json!({"text": "half a thought"})
    );
    assert_error(&server.get(&data, bob.token()).await, 403, "M_FORBIDDEN");
    assert_error(
        &server.put(&data, bob.token(), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    let fully_read = format!("{base}/account_data/m.fully_read");
    assert_error(
        &server
            .put(&fully_read, alice.token(), json!({"event_id": "$x"}))
            .await,
        405,
        "M_BAD_JSON",
    );

    // The same type in another room is separate.
    let other = format!(
        "/_matrix/client/v3/user/{}/rooms/{}/account_data/org.example.draft",
        enc(&alice.user_id),
        enc("!other:localhost")
    );
    assert_error(&server.get(&other, alice.token()).await, 404, "M_NOT_FOUND");

    let tags = format!("{base}/tags");
    assert_eq!(
        assert_ok(server.get(&tags, alice.token()).await),
        json!({"tags": {}})
    );
    assert_ok(
        server
            .put(
                &format!("{tags}/m.favourite"),
                alice.token(),
                json!({"order": 0.25}),
            )
            .await,
    );
    assert_ok(
        server
            .put(&format!("{tags}/u.work"), alice.token(), json!({}))
            .await,
    );
    let got = assert_ok(server.get(&tags, alice.token()).await);
    assert_eq!(got["tags"]["m.favourite"]["order"], 0.25);
    assert!(got["tags"]["u.work"].is_object(), "{got}");
    assert_ok(
        server
            .delete(&format!("{tags}/u.work"), alice.token(), None)
            .await,
    );
    let got = assert_ok(server.get(&tags, alice.token()).await);
    assert_eq!(got, json!({"tags": {"m.favourite": {"order": 0.25}}}));
    // Tags are also the room's m.tag account data.
    let as_data = assert_ok(
        server
            .get(&format!("{base}/account_data/m.tag"), alice.token())
            .await,
    );
    assert_eq!(as_data, got);
    assert_error(&server.get(&tags, bob.token()).await, 403, "M_FORBIDDEN");
}
