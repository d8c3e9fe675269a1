use std::time::Duration;

use super::*;
use crate::receipts::testing::{fixture, user};

fn code(result: Result<()>) -> u16 {
    result.unwrap_err().status().as_u16()
}

#[tokio::test]
async fn only_members_type_and_only_for_themselves() {
    let f = fixture();
    let (alice, bob) = (user("alice"), user("bob"));
    let room = f.room(&alice).await;
    let typing = Typing::new(f.storage.clone());
    let ten = Some(Duration::from_secs(10));
    assert_eq!(
        code(typing.set(&f.rooms, &room, &bob, &bob, ten).await),
        403
    );
    assert_eq!(
        code(typing.set(&f.rooms, &room, &alice, &bob, ten).await),
        403
    );
    assert!(typing
        .for_sync(&room, None, f.rooms.committed_position())
        .is_none());
}

#[tokio::test]
async fn changes_take_positions_and_refreshes_do_not() {
    let f = fixture();
    let (alice, bob) = (user("alice"), user("bob"));
    let room = f.room(&alice).await;
    f.join(&room, &bob).await;
    let typing = Typing::new(f.storage.clone());
    let since = f.rooms.committed_position();
    let ten = Some(Duration::from_secs(10));

    typing
        .set(&f.rooms, &room, &alice, &alice, ten)
        .await
        .unwrap();
    let after_start = f.rooms.committed_position();
    assert!(after_start > since);
    assert_eq!(
        typing.for_sync(&room, Some(since), after_start),
        Some(vec![alice.clone()])
    );
    assert_eq!(
        typing.for_sync(&room, None, after_start),
        Some(vec![alice.clone()])
    );
    // Nothing new since the last token.
    assert_eq!(typing.for_sync(&room, Some(after_start), after_start), None);

    // A refresh moves no position.
    typing
        .set(&f.rooms, &room, &alice, &alice, ten)
        .await
        .unwrap();
    assert_eq!(f.rooms.committed_position(), after_start);

    // Stopping is a change: an empty list for a sync from before it.
    typing
        .set(&f.rooms, &room, &alice, &alice, None)
        .await
        .unwrap();
    let after_stop = f.rooms.committed_position();
    assert_eq!(
        typing.for_sync(&room, Some(after_start), after_stop),
        Some(vec![])
    );
    assert_eq!(typing.for_sync(&room, None, after_stop), None);
}

#[tokio::test]
async fn notifications_expire_on_time_as_a_change() {
    let f = fixture();
    let alice = user("alice");
    let room = f.room(&alice).await;
    let typing = Typing::new(f.storage.clone());
    let short = Some(Duration::from_millis(100));
    typing
        .set(&f.rooms, &room, &alice, &alice, short)
        .await
        .unwrap();
    let started = f.rooms.committed_position();
    assert_eq!(
        typing.for_sync(&room, None, started),
        Some(vec![alice.clone()])
    );
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if f.rooms.committed_position() > started {
            break;
        }
    }
    let now = f.rooms.committed_position();
    assert!(now > started, "the expiry took no stream position");
    assert_eq!(typing.for_sync(&room, Some(started), now), Some(vec![]));
}

#[tokio::test]
async fn the_timeout_is_capped() {
    let f = fixture();
    let alice = user("alice");
    let room = f.room(&alice).await;
    let typing = Typing::new(f.storage.clone());
    let long = Some(Duration::from_secs(24 * 3600));
    typing
        .set(&f.rooms, &room, &alice, &alice, long)
        .await
        .unwrap();
    let map = typing.inner.rooms.lock();
    let deadline = map[&room].users[&alice];
    assert!(deadline <= Instant::now() + MAX_TIMEOUT);
}

#[tokio::test]
async fn leaving_ends_typing_at_once() {
    let f = fixture();
    let (alice, bob) = (user("alice"), user("bob"));
    let room = f.room(&alice).await;
    f.join(&room, &bob).await;
    let typing = Typing::new(f.storage.clone());
    typing.attach(&f.rooms);
    typing
        .set(&f.rooms, &room, &bob, &bob, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    let since = f.rooms.committed_position();
    assert_eq!(typing.for_sync(&room, None, since), Some(vec![bob.clone()]));

    f.rooms
        .change_membership(&room, &bob, &bob, crate::rooms::Change::Leave, None)
        .await
        .unwrap();
    let upto = f.rooms.committed_position();
    assert_eq!(
        typing.for_sync(&room, Some(since), upto),
        Some(vec![]),
        "the leave's sync says nobody types"
    );
    // A message is no membership change: nothing more happens.
    f.text(&room, &alice, "hi").await;
    assert!(typing
        .for_sync(&room, Some(upto), f.rooms.committed_position())
        .is_none());
}
