//! Send-to-device messaging (Client-Server API, module "Send-to-Device
//! messaging"), local delivery: `PUT /sendToDevice/{eventType}/{txnId}` and
//! `/sync`'s top-level `to_device`, removed once the device syncs past them.

use std::time::{Duration, Instant};

use spec_tests::{assert_ok, enc, json, Session, TestServer, Value};

const PW: &str = "to-device-pw";
const KIND: &str = "org.example.ping";

async fn send(server: &TestServer, from: &Session, txn: &str, messages: Value) {
    let path = format!("/_matrix/client/v3/sendToDevice/{KIND}/{}", enc(txn));
    let body = assert_ok(
        server
            .put(&path, from.token(), json!({ "messages": messages }))
            .await,
    );
    assert_eq!(body, json!({}));
}

async fn sync(server: &TestServer, who: &Session, since: Option<&str>, timeout_ms: u64) -> Value {
    let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
    if let Some(since) = since {
        path.push_str(&format!("&since={}", enc(since)));
    }
    assert_ok(server.get(&path, who.token()).await)
}

fn next_batch(sync: &Value) -> String {
    sync["next_batch"].as_str().expect("next_batch").to_owned()
}

/// The `content` of each to-device event, after checking sender and type.
fn to_device(sync: &Value, sender: &Session) -> Vec<Value> {
    sync["to_device"]["events"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|event| {
            assert_eq!(event["sender"], sender.user_id.as_str(), "{event}");
            assert_eq!(event["type"], KIND, "{event}");
            event["content"].clone()
        })
        .collect()
}

#[tokio::test]
async fn delivered_once_until_acknowledged_also_across_a_restart() {
    let mut server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let t0 = next_batch(&sync(&server, &bob, None, 0).await);

    // A waiting long-poll is woken by the message.
    let waiting = {
        let (server_url, bob) = (server.base_url().to_owned(), bob.clone());
        let t0 = t0.clone();
        tokio::spawn(async move {
            let client = spec_tests::HttpClient::new(&server_url);
            let started = Instant::now();
            let path = format!("/_matrix/client/v3/sync?timeout=20000&since={}", enc(&t0));
            let body = assert_ok(client.get(&path, bob.token()).await);
            (body, started.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let messages = json!({ &bob.user_id: { &bob.device_id: {"n": 1} } });
    send(&server, &alice, "txn1", messages).await;
    let (woken, waited) = waiting.await.unwrap();
    assert!(waited < Duration::from_secs(10), "woken after {waited:?}");
    assert_eq!(to_device(&woken, &alice), [json!({"n": 1})]);

    let first = sync(&server, &bob, Some(&t0), 0).await;
    assert_eq!(to_device(&first, &alice), [json!({"n": 1})]);
    let t1 = next_batch(&first);
    // Retried with the old token: not acknowledged yet, so delivered again.
    let retried = sync(&server, &bob, Some(&t0), 0).await;
    assert_eq!(to_device(&retried, &alice), [json!({"n": 1})]);
    // Synced with the new token: acknowledged and deleted.
    let acknowledged = sync(&server, &bob, Some(&t1), 0).await;
    assert!(
        to_device(&acknowledged, &alice).is_empty(),
        "{acknowledged}"
    );
    assert!(to_device(&sync(&server, &bob, None, 0).await, &alice).is_empty());

    server.restart().await;
    assert!(to_device(&sync(&server, &bob, Some(&t0), 0).await, &alice).is_empty());
    assert!(to_device(&sync(&server, &bob, None, 0).await, &alice).is_empty());
}

#[tokio::test]
async fn star_reaches_every_device_of_the_user() {
    let server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let phone = server.register("bob", PW).await;
    let laptop = server.login("bob", PW).await;
    assert_ne!(phone.device_id, laptop.device_id);
    send(
        &server,
        &alice,
        "all",
        json!({ &phone.user_id: { "*": {"hello": "all"} } }),
    )
    .await;
    for device in [&phone, &laptop] {
        let body = sync(&server, device, None, 0).await;
        assert_eq!(
            to_device(&body, &alice),
            [json!({"hello": "all"})],
            "{}",
            device.device_id
        );
    }
    // Alice's own device got nothing.
    assert!(to_device(&sync(&server, &alice, None, 0).await, &alice).is_empty());
}

#[tokio::test]
async fn the_same_transaction_id_delivers_once() {
    let mut server = TestServer::start().await;
    let alice = server.register("alice", PW).await;
    let bob = server.register("bob", PW).await;
    let messages = |n: u32| json!({ &bob.user_id: { &bob.device_id: {"n": n} } });
    send(&server, &alice, "same", messages(1)).await;
    send(&server, &alice, "same", messages(1)).await;
    server.restart().await;
    send(&server, &alice, "same", messages(1)).await;
    send(&server, &alice, "other", messages(2)).await;
    let body = sync(&server, &bob, None, 0).await;
    assert_eq!(to_device(&body, &alice), [json!({"n": 1}), json!({"n": 2})]);
}
