use super::*;
use crate::receipts::testing::{fixture, user};
use serde_json::Value;

fn service(f: &crate::receipts::testing::Fixture) -> Presence {
    Presence::new(f.storage.clone(), f.rooms.stream().clone(), true)
}

/// Waits (real time) until the open batch is published.
async fn settle() {
    tokio::time::sleep(BATCH_WINDOW * 3).await;
}

fn position(presence: &Presence, who: &UserId) -> u64 {
    presence.inner.users.lock().map[who].position
}

#[test]
fn timers_move_online_to_unavailable_then_offline() {
    let start = Instant::now();
    let mut entry = Entry::new(start);
    entry.state = PresenceState::Online;
    entry.syncing = 1;
    assert!(!entry.expire(start + IDLE_TIMEOUT));
    assert!(entry.expire(start + IDLE_TIMEOUT + Duration::from_secs(1)));
    assert_eq!(entry.state, PresenceState::Unavailable);
    // Still syncing: no TTL.
    assert!(!entry.expire(start + IDLE_TIMEOUT * 2));
    entry.syncing = 0;
    entry.last_seen = start + IDLE_TIMEOUT * 2;
    assert!(!entry.expire(start + IDLE_TIMEOUT * 2 + SYNC_TTL));
    assert!(entry.expire(start + IDLE_TIMEOUT * 2 + SYNC_TTL + Duration::from_secs(1)));
    assert_eq!(entry.state, PresenceState::Offline);
    assert!(!entry.expire(start + IDLE_TIMEOUT * 10));
}

#[test]
fn another_servers_user_follows_their_server_then_the_remote_ttl() {
    let start = Instant::now();
    let mut entry = Entry::new(start);
    entry.remote = true;
    entry.state = PresenceState::Online;
    // Neither our idle timer nor the sync TTL applies to them.
    assert!(!entry.expire(start + IDLE_TIMEOUT * 2));
    assert_eq!(entry.state, PresenceState::Online);
    assert!(!entry.expire(start + REMOTE_TTL));
    assert!(entry.expire(start + REMOTE_TTL + Duration::from_secs(1)));
    assert_eq!(entry.state, PresenceState::Offline);
}

#[test]
fn content_has_last_active_ago_and_currently_active() {
    let start = Instant::now();
    let mut entry = Entry::new(start);
    entry.state = PresenceState::Online;
    entry.status_msg = Some("lunch".into());
    let content = entry.content(start + Duration::from_secs(2));
    assert_eq!(content["presence"], "online");
    assert_eq!(content["last_active_ago"], 2000);
    assert_eq!(content["currently_active"], true);
    assert_eq!(content["status_msg"], "lunch");
    let later = entry.content(start + ACTIVE_GRANULARITY * 2);
    assert_eq!(later["currently_active"], false);
    entry.state = PresenceState::Unavailable;
    assert!(entry.content(start).get("currently_active").is_none());
}

#[tokio::test]
async fn only_for_yourself_and_ignored_when_disabled() {
    let f = fixture();
    let (alice, bob) = (user("alice"), user("bob"));
    let presence = service(&f);
    let err = presence
        .set(&alice, &bob, PresenceState::Online, None)
        .unwrap_err();
    assert_eq!(err.status().as_u16(), 403);

    let off = Presence::new(f.storage.clone(), f.rooms.stream().clone(), false);
    off.set(&alice, &alice, PresenceState::Online, Some("hi".into()))
        .unwrap();
    assert_eq!(off.status(&alice).presence, PresenceState::Offline);
    assert!(off.syncing(&alice, &PresenceState::Online).await.is_none());
    assert!(off
        .for_sync(&alice, &Default::default(), None, 0)
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn quick_changes_share_one_position() {
    let f = fixture();
    let (alice, bob) = (user("alice"), user("bob"));
    let room = f.room(&alice).await;
    f.join(&room, &bob).await;
    let presence = service(&f);
    let before = f.rooms.committed_position();
    for i in 0..10 {
        let state = if i % 2 == 0 {
            PresenceState::Online
        } else {
            PresenceState::Unavailable
        };
        presence
            .set(&alice, &alice, state, Some(format!("{i}")))
            .unwrap();
        presence
            .set(&bob, &bob, PresenceState::Online, None)
            .unwrap();
    }
    settle().await;
    let after = f.rooms.committed_position();
    assert_eq!(after, before + 1, "one marker for the whole batch");
    assert_eq!(position(&presence, &alice), after);
    assert_eq!(position(&presence, &bob), after);

    // Bob sees Alice's last state (and his own) once, in (before, after].
    let events = presence
        .for_sync(&bob, &Default::default(), Some(before), after)
        .unwrap();
    assert_eq!(events.len(), 2);
    let alice_event: Value = serde_json::from_str(events[0].json().get()).unwrap();
    assert_eq!(alice_event["sender"], alice.as_str());
    assert_eq!(alice_event["content"]["status_msg"], "9");
    assert_eq!(alice_event["content"]["presence"], "unavailable");
    assert!(presence
        .for_sync(&bob, &Default::default(), Some(after), after)
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn strangers_do_not_see_each_other() {
    let f = fixture();
    let (alice, carol) = (user("alice"), user("carol"));
    f.room(&alice).await;
    let presence = service(&f);
    presence
        .set(&alice, &alice, PresenceState::Online, None)
        .unwrap();
    settle().await;
    let upto = f.rooms.committed_position();
    let seen = presence
        .for_sync(&carol, &Default::default(), None, upto)
        .unwrap();
    assert!(seen.is_empty());
    assert!(!presence.may_see(&carol, &alice).unwrap());
    assert!(presence.may_see(&alice, &alice).unwrap());
    // Alice sees herself.
    let own = presence
        .for_sync(&alice, &Default::default(), None, upto)
        .unwrap();
    assert_eq!(own.len(), 1);
}

#[tokio::test]
async fn sync_heartbeat_and_set_presence() {
    let f = fixture();
    let alice = user("alice");
    let presence = service(&f);
    assert!(presence
        .syncing(&alice, &PresenceState::Offline)
        .await
        .is_none());
    assert_eq!(presence.status(&alice).presence, PresenceState::Offline);
    let guard = presence.syncing(&alice, &PresenceState::Unavailable).await;
    assert_eq!(presence.status(&alice).presence, PresenceState::Unavailable);
    drop(guard);
    let _guard = presence.syncing(&alice, &PresenceState::Online).await;
    let status = presence.status(&alice);
    assert_eq!(status.presence, PresenceState::Online);
    assert_eq!(status.currently_active, Some(true));
}

/// The timer pass over the table (what the task runs every
/// [`CHECK_INTERVAL`]), at synthetic instants: the crate's tokio lacks
/// `test-util`, so the clock cannot be paused.
#[tokio::test]
async fn idle_and_ttl_expiry_over_the_table() {
    let f = fixture();
    let alice = user("alice");
    let presence = service(&f);
    let start = Instant::now();
    let guard = presence.syncing(&alice, &PresenceState::Online).await;
    // The sync's own transition was published at once.
    let before = f.rooms.committed_position();
    assert_eq!(position(&presence, &alice), before);
    presence.inner.expire(start + IDLE_TIMEOUT - CHECK_INTERVAL);
    assert_eq!(presence.status(&alice).presence, PresenceState::Online);
    presence.inner.expire(start + IDLE_TIMEOUT + CHECK_INTERVAL);
    assert_eq!(presence.status(&alice).presence, PresenceState::Unavailable);
    drop(guard);
    let dropped = Instant::now();
    presence.inner.expire(dropped + SYNC_TTL - CHECK_INTERVAL);
    assert_eq!(presence.status(&alice).presence, PresenceState::Unavailable);
    presence.inner.expire(dropped + SYNC_TTL + CHECK_INTERVAL);
    assert_eq!(presence.status(&alice).presence, PresenceState::Offline);
    // Online, unavailable and offline within one window: one position.
    settle().await;
    assert_eq!(f.rooms.committed_position(), before + 1);
}

/// Activity (sending, reading) brings an idle user back online, but never
/// overrides a state the user chose.
#[tokio::test]
async fn activity_ends_idleness_not_a_chosen_state() {
    let f = fixture();
    let alice = user("alice");
    let presence = service(&f);
    let start = Instant::now();
    let _guard = presence.syncing(&alice, &PresenceState::Online).await;
    presence.inner.expire(start + IDLE_TIMEOUT + CHECK_INTERVAL);
    assert_eq!(presence.status(&alice).presence, PresenceState::Unavailable);
    settle().await;
    let idle_at = f.rooms.committed_position();

    presence.active(&alice);
    let status = presence.status(&alice);
    assert_eq!(status.presence, PresenceState::Online);
    assert_eq!(status.currently_active, Some(true));
    settle().await;
    assert_eq!(
        f.rooms.committed_position(),
        idle_at + 1,
        "one published change"
    );

    presence
        .set(&alice, &alice, PresenceState::Unavailable, None)
        .unwrap();
    settle().await;
    presence.active(&alice);
    assert_eq!(presence.status(&alice).presence, PresenceState::Unavailable);
    // Unknown users stay unknown.
    presence.active(&user("bob"));
    assert_eq!(
        presence.status(&user("bob")).presence,
        PresenceState::Offline
    );
}
