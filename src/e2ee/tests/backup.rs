//! Server-side key backups.

use ruma::{api::client::backup::KeyBackupData, OwnedRoomId, UInt};

use super::*;

fn algorithm(public_key: &str) -> Raw<ruma::api::client::backup::BackupAlgorithm> {
    raw(&json!({
        "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
        "auth_data": { "public_key": public_key, "signatures": {} },
    }))
}

fn session(verified: bool, first_index: u32, forwarded: u32, tag: &str) -> Raw<KeyBackupData> {
    raw(&json!({
        "first_message_index": first_index,
        "forwarded_count": forwarded,
        "is_verified": verified,
        "session_data": { "ephemeral": "ZQ", "ciphertext": tag, "mac": "bQ" },
    }))
}

fn keys(
    room: &OwnedRoomId,
    sessions: &[(&str, Raw<KeyBackupData>)],
) -> BTreeMap<OwnedRoomId, BTreeMap<String, Raw<KeyBackupData>>> {
    BTreeMap::from([(
        room.clone(),
        sessions
            .iter()
            .map(|(id, data)| (id.to_string(), data.clone()))
            .collect(),
    )])
}

#[tokio::test]
async fn versions_etags_counts_and_the_better_key() {
    let env = env();
    let alice = user("alice");
    let e2ee = &env.e2ee;
    let room: OwnedRoomId = "!room:example.org".try_into().unwrap();
    assert_eq!(
        errcode(e2ee.backup_info(&alice, None)),
        (404, "M_NOT_FOUND".to_owned())
    );
    let put = e2ee.put_backup_keys(
        &alice,
        "1",
        keys(&room, &[("s", session(false, 0, 0, "a"))]),
    );
    assert_eq!(errcode(put.await), (404, "M_NOT_FOUND".to_owned()));
    let bad = raw(&json!({"algorithm": "m.megolm_backup.v1.curve25519-aes-sha2"}));
    assert_eq!(errcode(e2ee.create_backup(&alice, &bad).await).0, 400);

    let v1 = e2ee
        .create_backup(&alice, &algorithm("a2V5MQ"))
        .await
        .unwrap();
    let v2 = e2ee
        .create_backup(&alice, &algorithm("a2V5Mg"))
        .await
        .unwrap();
    assert_eq!((v1.as_str(), v2.as_str()), ("1", "2"));
    let latest = e2ee.backup_info(&alice, None).unwrap();
    assert_eq!((latest.version.as_str(), latest.count), ("2", UInt::MIN));
    assert_eq!(
        json_of(&latest.algorithm)["auth_data"]["public_key"],
        "a2V5Mg"
    );

    // Keys go only into the current version.
    let put = e2ee.put_backup_keys(
        &alice,
        "1",
        keys(&room, &[("s", session(false, 0, 0, "a"))]),
    );
    assert_eq!(
        errcode(put.await),
        (403, "M_WRONG_ROOM_KEYS_VERSION".to_owned())
    );
    let done = e2ee
        .put_backup_keys(
            &alice,
            "2",
            keys(&room, &[("s1", session(false, 5, 1, "first"))]),
        )
        .await
        .unwrap();
    assert_eq!(done.count, UInt::new(1).unwrap());
    let etag1 = done.etag;

    // A worse key is ignored (etag unchanged); better ones replace it.
    let worse = e2ee
        .put_backup_keys(
            &alice,
            "2",
            keys(&room, &[("s1", session(false, 6, 0, "worse"))]),
        )
        .await
        .unwrap();
    assert_eq!(
        (worse.etag.as_str(), worse.count),
        (etag1.as_str(), UInt::new(1).unwrap())
    );
    let stored = |e2ee: &E2ee| json_of(&e2ee.backup_key(&alice, "2", &room, "s1").unwrap());
    assert_eq!(stored(e2ee)["session_data"]["ciphertext"], "first");
    for (better, tag) in [
        (session(false, 5, 0, "fewer-forwards"), "fewer-forwards"),
        (session(false, 2, 9, "lower-index"), "lower-index"),
        (session(true, 9, 9, "verified"), "verified"),
    ] {
        let done = e2ee
            .put_backup_keys(&alice, "2", keys(&room, &[("s1", better)]))
            .await
            .unwrap();
        assert_ne!(done.etag, etag1);
        assert_eq!(stored(e2ee)["session_data"]["ciphertext"], tag);
    }
    // An unverified key never beats a verified one.
    e2ee.put_backup_keys(
        &alice,
        "2",
        keys(&room, &[("s1", session(false, 0, 0, "x"))]),
    )
    .await
    .unwrap();
    assert_eq!(stored(e2ee)["session_data"]["ciphertext"], "verified");

    // Shape errors change nothing.
    let broken = raw(&json!({"first_message_index": 0}));
    let put = e2ee.put_backup_keys(
        &alice,
        "2",
        keys(&room, &[("s2", session(false, 0, 0, "ok")), ("s3", broken)]),
    );
    assert_eq!(errcode(put.await), (400, "M_BAD_JSON".to_owned()));
    assert_eq!(
        e2ee.backup_info(&alice, Some("2")).unwrap().count,
        UInt::new(1).unwrap()
    );

    e2ee.put_backup_keys(
        &alice,
        "2",
        keys(&room, &[("s2", session(false, 0, 0, "two"))]),
    )
    .await
    .unwrap();
    let all = e2ee.backup_keys(&alice, "2", None).unwrap();
    assert_eq!(all[&room].sessions.len(), 2);
    let deleted = e2ee
        .delete_backup_keys(&alice, "2", Some(&room), Some("s1"))
        .await
        .unwrap();
    assert_eq!(deleted.count, UInt::new(1).unwrap());
    assert_eq!(errcode(e2ee.backup_key(&alice, "2", &room, "s1")).0, 404);

    // Update: only auth_data, same algorithm, matching version.
    let other = raw(&json!({"algorithm": "org.example.other", "auth_data": {}}));
    assert_eq!(
        errcode(e2ee.update_backup(&alice, "2", &other).await).0,
        400
    );
    let mismatched = raw(&json!({
        "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
        "auth_data": {"public_key": "bmV3"},
        "version": "1",
    }));
    assert_eq!(
        errcode(e2ee.update_backup(&alice, "2", &mismatched).await).0,
        400
    );
    e2ee.update_backup(&alice, "2", &algorithm("bmV3"))
        .await
        .unwrap();
    let info = e2ee.backup_info(&alice, Some("2")).unwrap();
    assert_eq!(json_of(&info.algorithm)["auth_data"]["public_key"], "bmV3");

    // Delete: version 2 and its keys go; 1 is current again; 2 is never reused.
    e2ee.delete_backup(&alice, "2").await.unwrap();
    e2ee.delete_backup(&alice, "2").await.unwrap();
    assert_eq!(errcode(e2ee.delete_backup(&alice, "9").await).0, 404);
    assert_eq!(errcode(e2ee.backup_info(&alice, Some("2"))).0, 404);
    assert_eq!(errcode(e2ee.backup_keys(&alice, "2", None)).0, 404);
    assert_eq!(e2ee.backup_info(&alice, None).unwrap().version, "1");
    let v3 = e2ee
        .create_backup(&alice, &algorithm("a2V5Mw"))
        .await
        .unwrap();
    assert_eq!(v3, "3");
    // Another user's backups are separate.
    assert_eq!(errcode(e2ee.backup_info(&user("bob"), None)).0, 404);
}
