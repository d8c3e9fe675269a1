use serde_json::{json, Value};

use super::*;
use crate::{
    config::Config,
    receipts::testing::{fixture, user, Fixture},
};

fn accounts(f: &Fixture) -> Accounts {
    let config = Config {
        server_name: "example.org".try_into().unwrap(),
        ..Config::default()
    };
    Accounts::new(f.storage.clone(), &config)
}

async fn device(accounts: &Accounts, user: &OwnedUserId, id: &str) -> OwnedDeviceId {
    let id: OwnedDeviceId = id.into();
    accounts
        .login(user, Some(id.clone()), None, None)
        .await
        .unwrap();
    id
}

fn messages(to: &OwnedUserId, device: &str, content: Value) -> Messages {
    let device = match device {
        "*" => DeviceIdOrAllDevices::AllDevices,
        id => DeviceIdOrAllDevices::DeviceId(id.into()),
    };
    let raw = Raw::from_json(serde_json::value::to_raw_value(&content).unwrap());
    BTreeMap::from([(to.clone(), BTreeMap::from([(device, raw)]))])
}

fn contents(events: &[Raw<AnyToDeviceEvent>]) -> Vec<Value> {
    events
        .iter()
        .map(|e| serde_json::from_str::<Value>(e.json().get()).unwrap()["content"].clone())
        .collect()
}

async fn send(to_device: &ToDevice, accounts: &Accounts, from: &UserId, txn: &str, m: &Messages) {
    let request = Send {
        sender: from,
        sender_device: "SENDER".into(),
        event_type: "org.example.ping",
        txn_id: txn,
        messages: m,
    };
    to_device.send(accounts, request).await.unwrap();
}

#[tokio::test]
async fn delivered_until_acknowledged_and_deduplicated_by_txn() {
    let f = fixture();
    let accounts = accounts(&f);
    let to_device = ToDevice::new(f.storage.clone(), f.rooms.stream().clone());
    let (alice, bob) = (user("alice"), user("bob"));
    let phone = device(&accounts, &bob, "PHONE").await;
    let since = f.rooms.committed_position();

    let m = messages(&bob, "PHONE", json!({"n": 1}));
    send(&to_device, &accounts, &alice, "t1", &m).await;
    send(&to_device, &accounts, &alice, "t1", &m).await;
    let upto = f.rooms.committed_position();
    assert!(upto > since);
    let (events, end) = to_device
        .for_sync(&bob, &phone, Some(since), upto)
        .await
        .unwrap();
    assert_eq!(contents(&events), [json!({"n": 1})]);
    assert_eq!(end, upto);
    let event: Value = serde_json::from_str(events[0].json().get()).unwrap();
    assert_eq!(event["sender"], alice.as_str());
    assert_eq!(event["type"], "org.example.ping");

    // Retried with the old token: again. Synced past it: gone for good.
    let (again, _) = to_device
        .for_sync(&bob, &phone, Some(since), upto)
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    let (after, _) = to_device
        .for_sync(&bob, &phone, Some(upto), upto)
        .await
        .unwrap();
    assert!(after.is_empty());
    let (initial, _) = to_device.for_sync(&bob, &phone, None, upto).await.unwrap();
    assert!(initial.is_empty());
}

#[tokio::test]
async fn a_full_batch_ends_the_response_at_its_last_message() {
    let f = fixture();
    let accounts = accounts(&f);
    let to_device = ToDevice::new(f.storage.clone(), f.rooms.stream().clone());
    let (alice, bob) = (user("alice"), user("bob"));
    let phone = device(&accounts, &bob, "PHONE").await;
    let total = MAX_PER_SYNC + 5;
    for n in 0..total {
        let m = messages(&bob, "PHONE", json!({ "n": n }));
        send(&to_device, &accounts, &alice, &format!("t{n}"), &m).await;
    }
    let upto = f.rooms.committed_position();
    let (first, end) = to_device.for_sync(&bob, &phone, None, upto).await.unwrap();
    assert_eq!(first.len(), MAX_PER_SYNC);
    assert!(end < upto);
    let (rest, end2) = to_device
        .for_sync(&bob, &phone, Some(end), upto)
        .await
        .unwrap();
    assert_eq!(end2, upto);
    let all: Vec<Value> = contents(&first)
        .into_iter()
        .chain(contents(&rest))
        .collect();
    let expected: Vec<Value> = (0..total).map(|n| json!({ "n": n })).collect();
    assert_eq!(all, expected);
}

#[tokio::test]
async fn star_reaches_every_device_and_a_named_device_wins() {
    let f = fixture();
    let accounts = accounts(&f);
    let to_device = ToDevice::new(f.storage.clone(), f.rooms.stream().clone());
    let (alice, bob) = (user("alice"), user("bob"));
    let phone = device(&accounts, &bob, "PHONE").await;
    let laptop = device(&accounts, &bob, "LAPTOP").await;
    let mut m = messages(&bob, "*", json!({"to": "all"}));
    m.extend(messages(&user("carol"), "*", json!({})));
    let named = messages(&bob, "LAPTOP", json!({"to": "laptop"}));
    m.get_mut(&bob).unwrap().extend(named[&bob].clone());
    let remote = UserId::parse("@dave:elsewhere.example").unwrap();
    m.extend(messages(&remote, "*", json!({})));
    send(&to_device, &accounts, &alice, "t", &m).await;
    let upto = f.rooms.committed_position();
    let (on_phone, _) = to_device.for_sync(&bob, &phone, None, upto).await.unwrap();
    assert_eq!(contents(&on_phone), [json!({"to": "all"})]);
    let (on_laptop, _) = to_device.for_sync(&bob, &laptop, None, upto).await.unwrap();
    assert_eq!(contents(&on_laptop), [json!({"to": "laptop"})]);
}
