//! The device-list change stream: `device_lists` / `/keys/changes`.

use crate::rooms::Change;

use super::*;

#[tokio::test]
async fn changes_of_room_mates_joins_and_leaves() {
    let env = env();
    let rooms = &env.f.rooms;
    let alice = env.device("alice", "A").await;
    let bob = env.device("bob", "B").await;
    let carol = env.device("carol", "C").await;
    let room = env.f.room(&alice.user).await;
    env.f.join(&room, &bob.user).await;
    let t0 = rooms.committed_position();

    // Bob (a room mate) and carol (a stranger) publish keys.
    env.upload(&bob, Some(bob.device_keys()), &[], &[])
        .await
        .unwrap();
    env.upload(&carol, Some(carol.device_keys()), &[], &[])
        .await
        .unwrap();
    let t1 = rooms.committed_position();
    let changes = env
        .e2ee
        .device_list_changes(rooms, &alice.user, t0, t1)
        .unwrap();
    assert_eq!(changes.changed, ids(&[&bob.user]));
    assert!(changes.left.is_empty());
    // Reported once: the next range is empty; an empty range is empty.
    let t2 = rooms.committed_position();
    let changes = env
        .e2ee
        .device_list_changes(rooms, &alice.user, t1, t2)
        .unwrap();
    assert_eq!(changes, Default::default());
    // Own changes count too.
    env.upload(&alice, Some(alice.device_keys()), &[], &[])
        .await
        .unwrap();
    let t3 = rooms.committed_position();
    let changes = env
        .e2ee
        .device_list_changes(rooms, &alice.user, t2, t3)
        .unwrap();
    assert_eq!(changes.changed, ids(&[&alice.user]));

    // Carol joins: she now shares a room, so her devices are news to alice.
    env.f.join(&room, &carol.user).await;
    let t4 = rooms.committed_position();
    let changes = env
        .e2ee
        .device_list_changes(rooms, &alice.user, t3, t4)
        .unwrap();
    assert_eq!(changes.changed, ids(&[&carol.user]));

    // Bob leaves the only shared room: left, not changed.
    rooms
        .change_membership(&room, &bob.user, &bob.user, Change::Leave, None)
        .await
        .unwrap();
    env.upload(
        &bob,
        None,
        &[("signed_curve25519:X", bob.one_time_key(1))],
        &[],
    )
    .await
    .unwrap();
    let t5 = rooms.committed_position();
    let changes = env
        .e2ee
        .device_list_changes(rooms, &alice.user, t4, t5)
        .unwrap();
    assert!(changes.changed.is_empty(), "{changes:?}");
    assert_eq!(changes.left, ids(&[&bob.user]));
    // ... and bob, having left, sees the others as left.
    let changes = env
        .e2ee
        .device_list_changes(rooms, &bob.user, t4, t5)
        .unwrap();
    assert_eq!(changes.left, ids(&[&alice.user, &carol.user]));

    // Alice joins a room of dave's: dave's devices are new to her.
    let dave = env.device("dave", "D").await;
    let other = env.f.room(&dave.user).await;
    let t6 = rooms.committed_position();
    env.f.join(&other, &alice.user).await;
    let t7 = rooms.committed_position();
    let changes = env
        .e2ee
        .device_list_changes(rooms, &alice.user, t6, t7)
        .unwrap();
    assert_eq!(changes.changed, ids(&[&alice.user, &dave.user]));
}

#[tokio::test]
async fn a_key_change_wakes_room_mates() {
    use std::sync::{Arc, Mutex};

    #[derive(Default)]
    struct Recorder(Mutex<Vec<OwnedUserId>>);
    impl crate::rooms::stream::StreamListener for Recorder {
        fn is_idle(&self) -> bool {
            false
        }
        fn wake(&self, users: &[OwnedUserId]) {
            self.0.lock().unwrap().extend_from_slice(users);
        }
    }

    let env = env();
    let alice = env.device("alice", "A").await;
    let bob = env.device("bob", "B").await;
    let room = env.f.room(&alice.user).await;
    env.f.join(&room, &bob.user).await;
    let recorder = Arc::new(Recorder::default());
    env.f.rooms.stream().set_listener(recorder.clone());
    env.upload(&bob, Some(bob.device_keys()), &[], &[])
        .await
        .unwrap();
    let woken = recorder.0.lock().unwrap().clone();
    assert!(
        woken.contains(&alice.user) && woken.contains(&bob.user),
        "{woken:?}"
    );
}
