//! Device keys, one-time and fallback keys, claims, device removal.

use std::collections::{BTreeMap, BTreeSet};

use ruma::{OneTimeKeyAlgorithm, UInt};
use serde_json::json;

use super::*;

fn wanted(device: &Device) -> BTreeMap<OwnedUserId, Vec<OwnedDeviceId>> {
    BTreeMap::from([(device.user.clone(), Vec::new())])
}

fn claim_request(
    device: &Device,
) -> BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, OneTimeKeyAlgorithm>> {
    BTreeMap::from([(
        device.user.clone(),
        BTreeMap::from([(device.id.clone(), OneTimeKeyAlgorithm::SignedCurve25519)]),
    )])
}

/// The key ids a claim handed out for `device`.
async fn claim_ids(env: &Env, device: &Device) -> Vec<String> {
    let response = env.e2ee.claim(&claim_request(device)).await.unwrap();
    response
        .one_time_keys
        .get(&device.user)
        .and_then(|d| d.get(&device.id))
        .map(|keys| keys.keys().map(|k| k.to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn device_keys_are_checked_stored_and_queried() {
    let env = env();
    let alice = env.device("alice", "PHONE").await;
    let bob = env.device("bob", "LAPTOP").await;

    // Bad signature, other device, other user: refused, nothing stored.
    let mut forged = alice.device_keys();
    forged["algorithms"] = json!(["m.megolm.v1.aes-sha2"]);
    assert_eq!(
        errcode(env.upload(&alice, Some(forged), &[], &[]).await),
        (400, "M_INVALID_SIGNATURE".to_owned())
    );
    let mut unsigned = alice.device_keys();
    unsigned.as_object_mut().unwrap().remove("signatures");
    assert_eq!(
        errcode(env.upload(&alice, Some(unsigned), &[], &[]).await).0,
        400
    );
    assert_eq!(
        errcode(env.upload(&alice, Some(bob.device_keys()), &[], &[]).await),
        (400, "M_INVALID_PARAM".to_owned())
    );
    assert_eq!(
        errcode(
            env.upload(&alice, Some(json!({"nonsense": 1})), &[], &[])
                .await
        ),
        (400, "M_BAD_JSON".to_owned())
    );
    let query = env
        .e2ee
        .query(&env.accounts, &bob.user, &wanted(&alice))
        .unwrap();
    assert!(query.device_keys[&alice.user].is_empty());

    env.upload(&alice, Some(alice.device_keys()), &[], &[])
        .await
        .unwrap();
    let query = env
        .e2ee
        .query(&env.accounts, &bob.user, &wanted(&alice))
        .unwrap();
    let keys = json_of(&query.device_keys[&alice.user][&alice.id]);
    assert_eq!(
        keys["keys"][format!("ed25519:{}", alice.id)],
        alice.ed25519()
    );
    assert_eq!(keys["unsigned"]["device_display_name"], "PHONE phone");
    // Named devices only; unknown ones are left out.
    let named = BTreeMap::from([(alice.user.clone(), vec!["NOPE".into()])]);
    let query = env.e2ee.query(&env.accounts, &bob.user, &named).unwrap();
    assert!(query.device_keys[&alice.user].is_empty());

    // The same keys again: fine. Another identity for the device: refused.
    env.upload(&alice, Some(alice.device_keys()), &[], &[])
        .await
        .unwrap();
    let impostor = Device {
        key: SigningKey::generate().unwrap(),
        user: alice.user.clone(),
        id: alice.id.clone(),
    };
    assert_eq!(
        errcode(
            env.upload(&impostor, Some(impostor.device_keys()), &[], &[])
                .await
        ),
        (400, "M_INVALID_PARAM".to_owned())
    );
    let query = env
        .e2ee
        .query(&env.accounts, &bob.user, &wanted(&alice))
        .unwrap();
    let keys = json_of(&query.device_keys[&alice.user][&alice.id]);
    assert_eq!(
        keys["keys"][format!("ed25519:{}", alice.id)],
        alice.ed25519()
    );

    // Remote users are failures (no federation yet), unknown local users absent.
    let remote = BTreeMap::from([
        (OwnedUserId::try_from("@x:remote.test").unwrap(), Vec::new()),
        (user("nobody"), Vec::new()),
    ]);
    let query = env.e2ee.query(&env.accounts, &bob.user, &remote).unwrap();
    assert!(query.failures.contains_key("remote.test"));
    assert!(query.device_keys.is_empty());
}

#[tokio::test]
async fn one_time_keys_go_out_once_in_order_then_the_fallback() {
    let env = env();
    let alice = env.device("alice", "PHONE").await;
    let otks: Vec<(String, Value)> = (0..3)
        .map(|n| (format!("signed_curve25519:K{n}"), alice.one_time_key(n)))
        .collect();
    let otks: Vec<(&str, Value)> = otks.iter().map(|(i, k)| (i.as_str(), k.clone())).collect();
    let fallback = alice.sign(json!({"key": "ZmFsbGJhY2s", "fallback": true}));
    let counts = env
        .upload(
            &alice,
            Some(alice.device_keys()),
            &otks,
            &[("signed_curve25519:F1", fallback.clone())],
        )
        .await
        .unwrap();
    assert_eq!(
        counts[&OneTimeKeyAlgorithm::SignedCurve25519],
        UInt::new(3).unwrap()
    );
    // A retried upload adds nothing; a reused id with other content is refused.
    let counts = env.upload(&alice, None, &otks, &[]).await.unwrap();
    assert_eq!(
        counts[&OneTimeKeyAlgorithm::SignedCurve25519],
        UInt::new(3).unwrap()
    );
    let clash = [("signed_curve25519:K0", alice.one_time_key(9))];
    assert_eq!(
        errcode(env.upload(&alice, None, &clash, &[]).await),
        (400, "M_INVALID_PARAM".to_owned())
    );
    let two_fallbacks = [
        ("signed_curve25519:F2", fallback.clone()),
        ("signed_curve25519:F3", fallback.clone()),
    ];
    assert_eq!(
        errcode(env.upload(&alice, None, &[], &two_fallbacks).await).0,
        400
    );
    let unused = env
        .e2ee
        .unused_fallback_key_types(&alice.user, &alice.id)
        .unwrap();
    assert_eq!(unused, [OneTimeKeyAlgorithm::SignedCurve25519]);

    for n in 0..3 {
        assert_eq!(
            claim_ids(&env, &alice).await,
            [format!("signed_curve25519:K{n}")]
        );
    }
    let counts = env
        .e2ee
        .one_time_key_counts(&alice.user, &alice.id)
        .unwrap();
    assert_eq!(counts[&OneTimeKeyAlgorithm::SignedCurve25519], UInt::MIN);
    // Exhausted: the fallback key, again and again, now marked used.
    assert_eq!(claim_ids(&env, &alice).await, ["signed_curve25519:F1"]);
    assert_eq!(claim_ids(&env, &alice).await, ["signed_curve25519:F1"]);
    assert!(env
        .e2ee
        .unused_fallback_key_types(&alice.user, &alice.id)
        .unwrap()
        .is_empty());
    // The same fallback key re-uploaded stays used; a new one is unused.
    env.upload(&alice, None, &[], &[("signed_curve25519:F1", fallback)])
        .await
        .unwrap();
    assert!(env
        .e2ee
        .unused_fallback_key_types(&alice.user, &alice.id)
        .unwrap()
        .is_empty());
    let new = alice.sign(json!({"key": "bmV3", "fallback": true}));
    env.upload(&alice, None, &[], &[("signed_curve25519:F2", new)])
        .await
        .unwrap();
    assert_eq!(claim_ids(&env, &alice).await, ["signed_curve25519:F2"]);

    // Unknown devices and remote users.
    let mut request = claim_request(&alice);
    request.get_mut(&alice.user).unwrap().clear();
    request
        .get_mut(&alice.user)
        .unwrap()
        .insert("NOPE".into(), OneTimeKeyAlgorithm::SignedCurve25519);
    request.insert(
        OwnedUserId::try_from("@x:remote.test").unwrap(),
        BTreeMap::new(),
    );
    let response = env.e2ee.claim(&request).await.unwrap();
    assert!(response.one_time_keys.is_empty());
    assert!(response.failures.contains_key("remote.test"));
}

#[tokio::test]
async fn concurrent_claims_never_share_a_key() {
    let env = std::sync::Arc::new(env());
    let alice = env.device("alice", "PHONE").await;
    let otks: Vec<(String, Value)> = (0..20)
        .map(|n| (format!("signed_curve25519:K{n:02}"), alice.one_time_key(n)))
        .collect();
    let otks: Vec<(&str, Value)> = otks.iter().map(|(i, k)| (i.as_str(), k.clone())).collect();
    env.upload(&alice, None, &otks, &[]).await.unwrap();
    let request = std::sync::Arc::new(claim_request(&alice));
    let tasks: Vec<_> = (0..30)
        .map(|_| {
            let (env, request) = (env.clone(), request.clone());
            tokio::spawn(async move { env.e2ee.claim(&request).await.unwrap() })
        })
        .collect();
    let mut handed_out = Vec::new();
    for task in tasks {
        let response = task.await.unwrap();
        for keys in response.one_time_keys.values().flat_map(|d| d.values()) {
            handed_out.extend(keys.keys().map(|k| k.to_string()));
        }
    }
    let distinct: BTreeSet<_> = handed_out.iter().collect();
    assert_eq!(
        handed_out.len(),
        20,
        "30 claims for 20 keys: {handed_out:?}"
    );
    assert_eq!(distinct.len(), 20);
}

#[tokio::test]
async fn deleting_a_device_deletes_its_keys_and_inbox() {
    let env = env();
    let alice = env.device("alice", "PHONE").await;
    let bob = env.device("bob", "LAPTOP").await;
    let otk = [("signed_curve25519:K", alice.one_time_key(1))];
    env.upload(&alice, Some(alice.device_keys()), &otk, &[])
        .await
        .unwrap();
    let messages = BTreeMap::from([(
        alice.user.clone(),
        BTreeMap::from([(
            ruma::to_device::DeviceIdOrAllDevices::DeviceId(alice.id.clone()),
            raw(&json!({"n": 1})),
        )]),
    )]);
    let send = crate::to_device::Send {
        sender: &bob.user,
        sender_device: &bob.id,
        event_type: "org.example.ping",
        txn_id: "t1",
        messages: &messages,
    };
    env.to_device.send(&env.accounts, send).await.unwrap();
    let before = env.f.rooms.committed_position();

    env.accounts
        .remove_devices(&alice.user, std::slice::from_ref(&alice.id))
        .await
        .unwrap();
    let query = env
        .e2ee
        .query(&env.accounts, &bob.user, &wanted(&alice))
        .unwrap();
    // (In this fixture alice has no account row: without devices she is unknown.)
    assert!(query
        .device_keys
        .get(&alice.user)
        .is_none_or(|d| d.is_empty()));
    assert!(claim_ids(&env, &alice).await.is_empty());
    // A device with the same id later finds neither keys nor messages.
    let again = env.device("alice", "PHONE").await;
    let (events, _) = env
        .to_device
        .for_sync(
            &again.user,
            &again.id,
            None,
            env.f.rooms.committed_position(),
        )
        .await
        .unwrap();
    assert!(events.is_empty());
    assert!(
        env.e2ee
            .one_time_key_counts(&again.user, &again.id)
            .unwrap()[&OneTimeKeyAlgorithm::SignedCurve25519]
            == UInt::MIN
    );
    // And the removal is a device-list change on the stream.
    let after = env.f.rooms.committed_position();
    let changes = env
        .e2ee
        .device_list_changes(&env.f.rooms, &alice.user, before, after)
        .unwrap();
    assert_eq!(changes.changed, ids(&[&alice.user]));
}
