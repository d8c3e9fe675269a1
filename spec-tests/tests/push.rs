//! Push rules and unread counts over plain HTTP (Client-Server API, "Push
//! Notifications": "Push Rules: API", "Predefined Rules", "Receiving
//! notifications"; `unread_notifications` / `unread_thread_notifications`
//! in `/sync`).

use spec_tests::{assert_error, assert_ok, enc, json, Session, TestServer, Value};

const PW: &str = "correct horse battery";
const RULES: &str = "/_matrix/client/v3/pushrules/global";

fn rule_ids(rules: &Value, kind: &str) -> Vec<String> {
    rules[kind]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["rule_id"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn find<'a>(rules: &'a Value, kind: &str, id: &str) -> &'a Value {
    rules[kind]
        .as_array()
        .and_then(|a| a.iter().find(|r| r["rule_id"] == id))
        .unwrap_or_else(|| panic!("{kind} rule {id} missing: {rules}"))
}

#[tokio::test]
async fn a_new_user_has_the_predefined_rules() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;

    let all = assert_ok(
        server
            .get("/_matrix/client/v3/pushrules/", alice.token())
            .await,
    );
    let global = &all["global"];
    let master = find(global, "override", ".m.rule.master");
    assert_eq!(master["enabled"], false);
    assert_eq!(master["default"], true);
    let mention = find(global, "override", ".m.rule.is_user_mention");
    assert_eq!(
        mention["conditions"][0]["value"], alice.user_id,
        "{mention}"
    );
    find(global, "override", ".m.rule.is_room_mention");
    find(global, "underride", ".m.rule.message");
    // Removed from the spec by MSC4210 (v1.17): mentions are `m.mentions`.
    assert!(!rule_ids(global, "override").contains(&".m.rule.contains_display_name".into()));

    let scope = assert_ok(server.get(&format!("{RULES}/"), alice.token()).await);
    assert_eq!(&scope, global);
    let one = assert_ok(
        server
            .get(&format!("{RULES}/override/.m.rule.master"), alice.token())
            .await,
    );
    assert_eq!(one["rule_id"], ".m.rule.master");
    assert_eq!(one["enabled"], false);
    // Without a token: 401.
    assert_error(
        &server.get("/_matrix/client/v3/pushrules/", None).await,
        401,
        "M_MISSING_TOKEN",
    );
}

#[tokio::test]
async fn a_keyword_rule_can_be_added_moved_changed_and_deleted() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let tok = alice.token();
    let put = |path: String, body: Value| {
        let server = &server;
        async move { server.put(&path, tok, body).await }
    };

    let cake = json!({"pattern": "cake", "actions": ["notify"]});
    assert_ok(put(format!("{RULES}/content/cake"), cake).await);
    let pie = json!({"pattern": "pie*", "actions": ["notify"]});
    assert_ok(put(format!("{RULES}/content/pie?before=cake"), pie.clone()).await);
    let rules = assert_ok(server.get(&format!("{RULES}/"), tok).await);
    assert_eq!(rule_ids(&rules, "content")[..2], ["pie", "cake"]);

    let got = assert_ok(server.get(&format!("{RULES}/content/cake"), tok).await);
    assert_eq!(got["pattern"], "cake");
    assert_eq!(got["enabled"], true);
    assert_eq!(got["default"], false);

    // Disable, then change the actions.
    assert_ok(
        put(
            format!("{RULES}/content/cake/enabled"),
            json!({"enabled": false}),
        )
        .await,
    );
    let enabled = assert_ok(
        server
            .get(&format!("{RULES}/content/cake/enabled"), tok)
            .await,
    );
    assert_eq!(enabled, json!({"enabled": false}));
    let loud = json!(["notify", {"set_tweak": "highlight"}]);
    assert_ok(
        put(
            format!("{RULES}/content/cake/actions"),
            json!({"actions": loud}),
        )
        .await,
    );
    let actions = assert_ok(
        server
            .get(&format!("{RULES}/content/cake/actions"), tok)
            .await,
    );
    assert_eq!(actions["actions"][0], "notify");
    assert_eq!(actions["actions"][1]["set_tweak"], "highlight");
    // Re-putting a rule keeps its enabled state.
    let cake = json!({"pattern": "cake", "actions": ["notify"]});
    assert_ok(put(format!("{RULES}/content/cake"), cake).await);
    let got = assert_ok(server.get(&format!("{RULES}/content/cake"), tok).await);
    assert_eq!(got["enabled"], false);

    // Predefined rules can be switched but not deleted.
    assert_ok(
        put(
            format!("{RULES}/override/.m.rule.master/enabled"),
            json!({"enabled": true}),
        )
        .await,
    );
    let master = assert_ok(
        server
            .get(&format!("{RULES}/override/.m.rule.master"), tok)
            .await,
    );
    assert_eq!(master["enabled"], true);
    let resp = server
        .delete(&format!("{RULES}/override/.m.rule.master"), tok, None)
        .await;
    assert_error(&resp, 400, "M_INVALID_PARAM");

    // Bad placement and reserved ids.
    let resp = put(format!("{RULES}/content/tea?before=nope"), pie.clone()).await;
    assert_error(&resp, 400, "M_INVALID_PARAM");
    let resp = put(
        format!("{RULES}/override/x?after=.m.rule.master"),
        json!({"actions": [], "conditions": []}),
    )
    .await;
    assert_error(&resp, 400, "M_INVALID_PARAM");
    let resp = put(format!("{RULES}/content/.mine"), pie).await;
    assert_error(&resp, 400, "M_INVALID_PARAM");

    // The rules are the user's `m.push_rules` account data in /sync.
    let sync = assert_ok(server.get("/_matrix/client/v3/sync", tok).await);
    let data = sync["account_data"]["events"]
        .as_array()
        .and_then(|a| a.iter().find(|e| e["type"] == "m.push_rules"))
        .cloned()
        .unwrap_or_else(|| panic!("no m.push_rules: {sync}"));
    assert_eq!(
        rule_ids(&data["content"]["global"], "content")[..2],
        ["pie", "cake"]
    );

    // Delete, then it is gone; unknown rules are 404.
    let resp = server
        .delete(&format!("{RULES}/content/cake"), tok, None)
        .await;
    assert_ok(resp);
    for path in [
        format!("{RULES}/content/cake"),
        format!("{RULES}/content/cake/enabled"),
        format!("{RULES}/room/!nope:localhost"),
    ] {
        assert_error(&server.get(&path, tok).await, 404, "M_NOT_FOUND");
    }
    let resp = server
        .delete(&format!("{RULES}/content/cake"), tok, None)
        .await;
    assert_error(&resp, 404, "M_NOT_FOUND");
    let resp = put(
        format!("{RULES}/content/cake/enabled"),
        json!({"enabled": true}),
    )
    .await;
    assert_error(&resp, 404, "M_NOT_FOUND");
}

async fn send(server: &TestServer, who: &Session, room: &str, txn: &str, content: Value) {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
        enc(room)
    );
    assert_ok(server.put(&path, who.token(), content).await);
}

async fn sync(server: &TestServer, who: &Session, query: &str) -> Value {
    assert_ok(
        server
            .get(&format!("/_matrix/client/v3/sync?{query}"), who.token())
            .await,
    )
}

fn counts(sync: &Value, room: &str) -> (Value, Value) {
    let unread = &sync["rooms"]["join"][room]["unread_notifications"];
    (
        unread["notification_count"].clone(),
        unread["highlight_count"].clone(),
    )
}

#[tokio::test]
async fn unread_counts_follow_messages_mentions_and_own_replies() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let created = server
        .post(
            "/_matrix/client/v3/createRoom",
            alice.token(),
            json!({"preset": "public_chat"}),
        )
        .await;
    let room = assert_ok(created)["room_id"].as_str().unwrap().to_owned();
    let join = format!("/_matrix/client/v3/join/{}", enc(&room));
    assert_ok(server.post(&join, bob.token(), json!({})).await);
    let first = sync(&server, &bob, "").await;
    assert_eq!(counts(&first, &room), (json!(0), json!(0)));
    let since = first["next_batch"].as_str().unwrap().to_owned();

    send(
        &server,
        &alice,
        &room,
        "1",
        json!({"msgtype": "m.text", "body": "hi"}),
    )
    .await;
    send(
        &server,
        &alice,
        &room,
        "2",
        json!({"msgtype": "m.text", "body": "tea?"}),
    )
    .await;
    let mention = json!({
        "msgtype": "m.text", "body": "bob!",
        "m.mentions": {"user_ids": [bob.user_id]},
    });
    send(&server, &alice, &room, "3", mention).await;

    let second = sync(&server, &bob, &format!("since={since}")).await;
    assert_eq!(counts(&second, &room), (json!(3), json!(1)), "{second}");
    // Nobody is notified of their own messages.
    let own = sync(&server, &alice, "").await;
    assert_eq!(counts(&own, &room), (json!(0), json!(0)));

    // Bob's reply counts as his read receipt.
    let since = second["next_batch"].as_str().unwrap().to_owned();
    send(
        &server,
        &bob,
        &room,
        "4",
        json!({"msgtype": "m.text", "body": "yes"}),
    )
    .await;
    let third = sync(&server, &bob, &format!("since={since}")).await;
    assert_eq!(counts(&third, &room), (json!(0), json!(0)), "{third}");

    // Threads, counted apart when the filter asks for it.
    let root = send_id(
        &server,
        &alice,
        &room,
        "5",
        json!({"msgtype": "m.text", "body": "q"}),
    )
    .await;
    let reply = json!({
        "msgtype": "m.text", "body": "in thread",
        "m.relates_to": {"rel_type": "m.thread", "event_id": root},
    });
    send(&server, &alice, &room, "6", reply).await;
    let filter = enc(r#"{"room":{"timeline":{"unread_thread_notifications":true}}}"#);
    let fourth = sync(&server, &bob, &format!("filter={filter}")).await;
    assert_eq!(counts(&fourth, &room), (json!(1), json!(0)), "{fourth}");
    let threads = &fourth["rooms"]["join"][&room]["unread_thread_notifications"];
    assert_eq!(threads[&root]["notification_count"], 1, "{fourth}");
    let plain = sync(&server, &bob, "").await;
    assert_eq!(counts(&plain, &room), (json!(2), json!(0)));
}

async fn send_id(server: &TestServer, who: &Session, room: &str, txn: &str, body: Value) -> String {
    let path = format!(
        "/_matrix/client/v3/rooms/{}/send/m.room.message/{txn}",
        enc(room)
    );
    let resp = assert_ok(server.put(&path, who.token(), body).await);
    resp["event_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn the_first_sync_carries_the_default_push_rules() {
    // Clients read m.push_rules from sync's account data (Push Notifications:
    // "Push Rules"), so a new account has them stored from the start.
    let server = TestServer::start().await;
    let alice = server.register("alice", "correct horse battery").await;
    let sync = assert_ok(server.get("/_matrix/client/v3/sync", alice.token()).await);
    let events = sync["account_data"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let rules = events
        .iter()
        .find(|e| e["type"] == "m.push_rules")
        .unwrap_or_else(|| panic!("no m.push_rules in the first sync: {sync}"));
    let overrides = rules["content"]["global"]["override"].as_array().unwrap();
    assert!(
        overrides.iter().any(|r| r["rule_id"] == ".m.rule.master"),
        "{rules}"
    );
}
