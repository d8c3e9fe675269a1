//! Redactions, relations, threads and event context over plain HTTP
//! (Client-Server API "Redactions", "Relationships API", "Threading",
//! "Event replacements", "Event annotations and reactions", "Event context").

use std::collections::HashSet;

use spec_tests::{assert_error, assert_ok, enc, json, Session, StatusCode, TestServer, Value};

const PW: &str = "correct horse battery";

/// One room on the test server, with path builders and senders.
struct Room<'a> {
    server: &'a TestServer,
    id: String,
}

impl<'a> Room<'a> {
    async fn create(server: &'a TestServer, creator: &Session) -> Room<'a> {
        let body = json!({"preset": "public_chat"});
        let created = server
            .post("/_matrix/client/v3/createRoom", creator.token(), body)
            .await;
        let id = assert_ok(created)["room_id"].as_str().unwrap().to_owned();
        Room { server, id }
    }

    fn v3(&self, rest: &str) -> String {
        format!("/_matrix/client/v3/rooms/{}/{rest}", enc(&self.id))
    }

    fn v1(&self, rest: &str) -> String {
        format!("/_matrix/client/v1/rooms/{}/{rest}", enc(&self.id))
    }

    async fn join(&self, who: &Session) {
        assert_ok(
            self.server
                .post(&self.v3("join"), who.token(), json!({}))
                .await,
        );
    }

    async fn send(&self, who: &Session, kind: &str, txn: &str, content: Value) -> String {
        let path = self.v3(&format!("send/{kind}/{txn}"));
        let sent = assert_ok(self.server.put(&path, who.token(), content).await);
        sent["event_id"].as_str().unwrap().to_owned()
    }

    async fn text(&self, who: &Session, txn: &str, body: &str) -> String {
        let content = json!({"msgtype": "m.text", "body": body});
        self.send(who, "m.room.message", txn, content).await
    }

    async fn redact(&self, who: &Session, event: &str, txn: &str) -> (StatusCode, Value) {
        let path = self.v3(&format!("redact/{}/{txn}", enc(event)));
        let body = json!({"reason": "spam"});
        self.server.put(&path, who.token(), body).await
    }

    async fn get(&self, who: &Session, path: &str) -> Value {
        assert_ok(self.server.get(path, who.token()).await)
    }

    async fn event(&self, who: &Session, event: &str) -> Value {
        self.get(who, &self.v3(&format!("event/{}", enc(event))))
            .await
    }
}

fn ids(chunk: &Value) -> Vec<String> {
    chunk
        .as_array()
        .expect("an array of events")
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

fn find<'v>(events: &'v Value, id: &str) -> &'v Value {
    let events = events.as_array().expect("an array of events");
    events.iter().find(|e| e["event_id"] == id).expect(id)
}

#[tokio::test]
async fn a_redacted_message_is_served_redacted_on_every_read_path() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let room = Room::create(&server, &alice).await;
    let secret = room.text(&alice, "m1", "my secret").await;
    room.text(&alice, "m2", "after").await;
    let first = assert_ok(room.redact(&alice, &secret, "r1").await);
    // The same transaction again is the same redaction.
    let again = assert_ok(room.redact(&alice, &secret, "r1").await);
    assert_eq!(first["event_id"], again["event_id"]);
    let redaction = first["event_id"].as_str().unwrap();

    let check = |event: &Value, path: &str| {
        assert_eq!(event["content"], json!({}), "{path}: {event}");
        let because = &event["unsigned"]["redacted_because"];
        assert_eq!(because["event_id"], redaction, "{path}: {event}");
        assert_eq!(because["content"]["reason"], "spam", "{path}");
        assert_eq!(because["redacts"], secret.as_str(), "{path}");
    };
    check(&room.event(&alice, &secret).await, "/event");
    let page = room.get(&alice, &room.v3("messages?dir=b&limit=10")).await;
    check(find(&page["chunk"], &secret), "/messages");
    let context = room
        .get(&alice, &room.v3(&format!("context/{}", enc(&secret))))
        .await;
    check(&context["event"], "/context");
    let around = room
        .get(&alice, &room.v3(&format!("context/{}", enc(redaction))))
        .await;
    check(find(&around["events_before"], &secret), "/context before");
    assert!(!page.to_string().contains("my secret"));

    // A redacted state event: its content is gone from /state too.
    let topic = room.v3("state/m.room.topic/");
    let set = assert_ok(
        server
            .put(&topic, alice.token(), json!({"topic": "t"}))
            .await,
    );
    let topic_id = set["event_id"].as_str().unwrap();
    assert_ok(room.redact(&alice, topic_id, "r2").await);
    let state = room.get(&alice, &room.v3("state")).await;
    let event = find(&state, topic_id);
    assert_eq!(event["content"], json!({}));
    assert!(event["unsigned"]["redacted_because"].is_object());
    assert_eq!(room.get(&alice, &topic).await, json!({}));
}

#[tokio::test]
async fn only_the_redact_level_may_redact_other_users_events() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = Room::create(&server, &alice).await;
    room.join(&bob).await;
    let from_alice = room.text(&alice, "a1", "hello").await;
    let from_bob = room.text(&bob, "b1", "hi").await;

    assert_error(
        &room.redact(&bob, &from_alice, "r1").await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(
        room.event(&bob, &from_alice).await["content"]["body"],
        "hello"
    );
    // Nor by sending the redaction event directly.
    let path = room.v3("send/m.room.redaction/r2");
    let direct = json!({"redacts": from_alice});
    assert_error(
        &server.put(&path, bob.token(), direct).await,
        403,
        "M_FORBIDDEN",
    );

    assert_ok(room.redact(&bob, &from_bob, "r3").await);
    assert_ok(room.redact(&alice, &from_alice, "r4").await);
    let unknown = "$notanevent:nowhere";
    assert_error(
        &room.redact(&alice, unknown, "r5").await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn relations_filter_and_page_reactions_and_edits() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = Room::create(&server, &alice).await;
    room.join(&bob).await;
    let parent = room.text(&alice, "p", "helo").await;
    let mut reactions = Vec::new();
    for n in 0..30 {
        let relates =
            json!({"rel_type": "m.annotation", "event_id": parent, "key": format!("k{n}")});
        let content = json!({"m.relates_to": relates});
        reactions.push(
            room.send(&bob, "m.reaction", &format!("r{n}"), content)
                .await,
        );
    }
    let relates = json!({"rel_type": "m.annotation", "event_id": parent, "key": "k0"});
    let path = room.v3("send/m.reaction/dup");
    let dup = server
        .put(&path, bob.token(), json!({"m.relates_to": relates}))
        .await;
    assert_error(&dup, 400, "M_DUPLICATE_ANNOTATION");
    let mut edits = Vec::new();
    for (n, body) in ["hello", "hello!"].iter().enumerate() {
        let content = json!({"msgtype": "m.text", "body": format!("* {body}"),
            "m.new_content": {"msgtype": "m.text", "body": body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": parent}});
        edits.push(
            room.send(&alice, "m.room.message", &format!("e{n}"), content)
                .await,
        );
    }

    // Newest first, 7 at a time: every reaction exactly once.
    let base = room.v1(&format!(
        "relations/{}/m.annotation/m.reaction",
        enc(&parent)
    ));
    let (mut seen, mut from) = (Vec::new(), None::<String>);
    loop {
        let path = match &from {
            Some(token) => format!("{base}?limit=7&from={}", enc(token)),
            None => format!("{base}?limit=7"),
        };
        let page = room.get(&bob, &path).await;
        let chunk = ids(&page["chunk"]);
        assert!(chunk.len() <= 7, "{page}");
        seen.extend(chunk);
        match page["next_batch"].as_str() {
            Some(next) => from = Some(next.to_owned()),
            None => break,
        }
    }
    let mut newest_first = reactions.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);
    // Forwards, too.
    let forward = room.get(&bob, &format!("{base}?dir=f&limit=100")).await;
    assert_eq!(ids(&forward["chunk"]), reactions);

    let all = room
        .get(
            &bob,
            &room.v1(&format!("relations/{}?limit=100", enc(&parent))),
        )
        .await;
    assert_eq!(ids(&all["chunk"]).len(), 32);
    assert!(all.get("next_batch").is_none() && all.get("recursion_depth").is_none());
    let replace = room
        .get(
            &bob,
            &room.v1(&format!("relations/{}/m.replace", enc(&parent))),
        )
        .await;
    let mut newest_edit_first = edits.clone();
    newest_edit_first.reverse();
    assert_eq!(ids(&replace["chunk"]), newest_edit_first);
    let wrong_type = format!("relations/{}/m.annotation/m.room.message", enc(&parent));
    let none = room.get(&bob, &room.v1(&wrong_type)).await;
    assert_eq!(none["chunk"], json!([]));
    let recursed = format!("relations/{}/m.replace?recurse=true", enc(&parent));
    assert_eq!(
        room.get(&bob, &room.v1(&recursed)).await["recursion_depth"],
        3
    );

    // The original keeps its content and bundles its newest edit.
    let original = room.event(&bob, &parent).await;
    assert_eq!(original["content"]["body"], "helo");
    let edit = &original["unsigned"]["m.relations"]["m.replace"];
    assert!(
        edits.iter().any(|e| edit["event_id"] == e.as_str()),
        "{original}"
    );
    assert!(original["unsigned"]["m.relations"]
        .get("m.annotation")
        .is_none());

    // A redacted reaction leaves the list.
    assert_ok(room.redact(&bob, &reactions[0], "x").await);
    let after = room.get(&bob, &format!("{base}?limit=100")).await;
    assert_eq!(ids(&after["chunk"]).len(), 29);
    let missing = room.v1("relations/$unknown");
    assert_error(&server.get(&missing, bob.token()).await, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn threads_are_listed_by_activity_with_their_summary() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = Room::create(&server, &alice).await;
    room.join(&bob).await;
    let first = room.text(&alice, "t1", "first thread").await;
    let second = room.text(&alice, "t2", "second thread").await;
    let reply = |root: &str, body: &str| {
        json!({"msgtype": "m.text", "body": body,
            "m.relates_to": {"rel_type": "m.thread", "event_id": root}})
    };
    room.send(&bob, "m.room.message", "r1", reply(&first, "a"))
        .await;
    room.send(&alice, "m.room.message", "r2", reply(&second, "b"))
        .await;
    let latest = room
        .send(&bob, "m.room.message", "r3", reply(&first, "c"))
        .await;

    let threads = room.get(&alice, &room.v1("threads")).await;
    assert_eq!(ids(&threads["chunk"]), [first.clone(), second.clone()]);
    let summary = &threads["chunk"][0]["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(summary["count"], 2);
    assert_eq!(summary["latest_event"]["event_id"], latest.as_str());
    assert_eq!(summary["latest_event"]["content"]["body"], "c");
    assert_eq!(summary["current_user_participated"], true);

    let mine = room
        .get(&bob, &room.v1("threads?include=participated"))
        .await;
    assert_eq!(ids(&mine["chunk"]), [first.as_str()]);
    let paged = room.get(&alice, &room.v1("threads?limit=1")).await;
    assert_eq!(ids(&paged["chunk"]), [first.as_str()]);
    let next = paged["next_batch"].as_str().expect("a next_batch");
    let rest = room
        .get(
            &alice,
            &room.v1(&format!("threads?limit=1&from={}", enc(next))),
        )
        .await;
    assert_eq!(ids(&rest["chunk"]), [second]);

    // The root carries the summary on /event too; a thread off a reply is refused.
    let root = room.event(&bob, &first).await;
    let summary = &root["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(summary["count"], 2);
    assert_eq!(summary["current_user_participated"], true);
    let path = room.v3("send/m.room.message/nested");
    let nested = server.put(&path, bob.token(), reply(&latest, "d")).await;
    assert_error(&nested, 400, "M_UNKNOWN");
}

#[tokio::test]
async fn context_returns_neighbours_and_tokens_that_continue_with_messages() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let room = Room::create(&server, &alice).await;
    room.join(&bob).await;
    let mut sent = Vec::new();
    for n in 0..50 {
        let who = if n % 2 == 0 { &alice } else { &bob };
        sent.push(room.text(who, &format!("m{n}"), &format!("m{n}")).await);
    }
    let body_of = |events: &Value| -> Vec<String> {
        let events = events.as_array().expect("events");
        events
            .iter()
            .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
            .collect()
    };

    let path = room.v3(&format!("context/{}?limit=6", enc(&sent[25])));
    let context = room.get(&bob, &path).await;
    assert_eq!(context["event"]["event_id"], sent[25].as_str());
    assert_eq!(body_of(&context["events_before"]), ["m24", "m23", "m22"]);
    assert_eq!(body_of(&context["events_after"]), ["m26", "m27", "m28"]);
    let state = context["state"].as_array().expect("state");
    assert!(state.iter().any(|e| e["type"] == "m.room.create"));

    let start = context["start"].as_str().expect("start");
    let end = context["end"].as_str().expect("end");
    let older = room
        .get(
            &bob,
            &room.v3(&format!("messages?dir=b&limit=3&from={}", enc(start))),
        )
        .await;
    assert_eq!(body_of(&older["chunk"]), ["m21", "m20", "m19"]);
    let newer = room
        .get(
            &bob,
            &room.v3(&format!("messages?dir=f&limit=3&from={}", enc(end))),
        )
        .await;
    assert_eq!(body_of(&newer["chunk"]), ["m29", "m30", "m31"]);

    // A filter narrows the neighbours, never the event itself.
    let filter = enc(&json!({"senders": [alice.user_id]}).to_string());
    let path = room.v3(&format!(
        "context/{}?limit=4&filter={filter}",
        enc(&sent[25])
    ));
    let filtered = room.get(&bob, &path).await;
    assert_eq!(filtered["event"]["sender"], bob.user_id.as_str());
    assert_eq!(body_of(&filtered["events_before"]), ["m24", "m22"]);
    assert_eq!(body_of(&filtered["events_after"]), ["m26", "m28"]);

    // At the edges, and for an event nobody can see.
    let last = room.v3(&format!("context/{}?limit=4", enc(&sent[49])));
    let at_end = room.get(&bob, &last).await;
    assert_eq!(at_end["events_after"].as_array().map_or(0, Vec::len), 0);
    let unknown = room.v3("context/$nope");
    assert_error(&server.get(&unknown, bob.token()).await, 404, "M_NOT_FOUND");
    let seen: HashSet<_> = ids(&at_end["events_before"]).into_iter().collect();
    assert_eq!(seen.len(), 2);
}
