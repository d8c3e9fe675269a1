//! Received events (`remote`): acceptance, forks and their resolution,
//! rejection and soft failure, with events signed by a second server.

use feathur_federation::{finalize_pdu, SigningKey};
use ruma::{
    events::{StateEventType, TimelineEventType},
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedUserId, RoomId, RoomVersionId, UInt, UserId,
};
use serde_json::{json, value::to_raw_value, Value};

use super::{
    auth,
    pdu::{build_unsigned_pdu, UnsignedPdu},
    testing::{fixture, user, Fixture},
    Change, Membership, Outcome, Pdu,
};

const OTHER: &str = "other.example";

fn remote(name: &str) -> OwnedUserId {
    UserId::parse(format!("@{name}:{OTHER}")).unwrap()
}

/// Signs events as `other.example`.
struct Peer {
    key: SigningKey,
}

impl Peer {
    fn new() -> Peer {
        Peer {
            key: SigningKey::generate().unwrap(),
        }
    }

    /// An event by `sender` on top of `prev` (default: the room's forward
    /// extremities), with auth events from the room's current state and
    /// `ts` as its `origin_server_ts`. (One argument per PDU field a test
    /// varies.)
    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        f: &Fixture,
        room: &RoomId,
        sender: &UserId,
        kind: &str,
        state_key: Option<&str>,
        content: Value,
        prev: Option<Vec<OwnedEventId>>,
        ts: u64,
    ) -> Pdu {
        let rooms = &f.rooms;
        let version = rooms.room_info(room).unwrap().unwrap().version;
        let rules = version.rules().unwrap();
        let kind = TimelineEventType::from(kind);
        let content = to_raw_value(&content).unwrap();
        let auth_events: Vec<OwnedEventId> =
            auth::auth_types(&rules, &kind, sender, state_key, &content)
                .unwrap()
                .iter()
                .filter_map(|(t, k)| rooms.current_state_event(room, t, k).unwrap())
                .map(|p| p.event_id)
                .collect();
        let prev = prev.unwrap_or_else(|| rooms.forward_extremities(room).unwrap());
        let depth = prev
            .iter()
            .map(|p| rooms.get_pdu(p).unwrap().unwrap().depth)
            .max()
            .unwrap_or(0);
        let mut json = build_unsigned_pdu(UnsignedPdu {
            rules: &rules,
            room_id: Some(room),
            sender,
            kind: &kind,
            state_key,
            content: &content,
            prev_events: &prev,
            auth_events: &auth_events,
            depth: depth + 1,
            origin_server_ts: MilliSecondsSinceUnixEpoch(UInt::new(ts).unwrap()),
            redacts: None,
        })
        .unwrap();
        let event_id = finalize_pdu(&self.key, OTHER, &rules, &mut json).unwrap();
        Pdu::from_json(event_id, room, json).unwrap()
    }

    fn join(&self, f: &Fixture, room: &RoomId, who: &UserId, ts: u64) -> Pdu {
        let content = json!({"membership": "join"});
        self.event(
            f,
            room,
            who,
            "m.room.member",
            Some(who.as_str()),
            content,
            None,
            ts,
        )
    }
}

fn now() -> u64 {
    MilliSecondsSinceUnixEpoch::now().get().into()
}

async fn public_room(f: &Fixture, version: RoomVersionId) -> ruma::OwnedRoomId {
    f.room(&user("alice"), version, &[]).await
}

#[tokio::test]
async fn a_remote_join_and_a_fork_are_accepted_and_merged() {
    for version in [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12] {
        let f = fixture();
        let peer = Peer::new();
        let alice = user("alice");
        let bob = remote("bob");
        let room = public_room(&f, version.clone()).await;

        let join = peer.join(&f, &room, &bob, now());
        let outcome = f.rooms.accept_remote(join.clone(), None).await.unwrap();
        assert_eq!(outcome, Outcome::Accepted, "{version}");
        assert_eq!(
            f.rooms.membership(&room, &bob).unwrap(),
            Some(Membership::Join)
        );
        assert!(f.rooms.position_of(&join.event_id).unwrap().is_some());
        let servers = f.rooms.servers_in_room(&room).unwrap();
        assert!(servers.iter().any(|s| s == OTHER), "{servers:?}");
        // Receiving it again changes nothing.
        let again = f.rooms.accept_remote(join.clone(), None).await.unwrap();
        assert_eq!(again, Outcome::AlreadyKnown);

        // Both servers send on top of the join at once: a fork.
        let from_bob = peer.event(
            &f,
            &room,
            &bob,
            "m.room.message",
            None,
            json!({"body": "hi from bob"}),
            Some(vec![join.event_id.clone()]),
            now(),
        );
        let from_alice = f.text(&room, &alice, "hi from alice").await;
        let outcome = f.rooms.accept_remote(from_bob.clone(), None).await.unwrap();
        assert_eq!(outcome, Outcome::Accepted);
        let mut leaves = f.rooms.forward_extremities(&room).unwrap();
        leaves.sort();
        let mut expected = vec![from_alice.clone(), from_bob.event_id.clone()];
        expected.sort();
        assert_eq!(leaves, expected, "{version}");

        // Our next event merges the branches.
        let merge = f.text(&room, &alice, "merged").await;
        let merge = f.rooms.get_pdu(&merge).unwrap().unwrap();
        let mut prev = merge.prev_events.clone();
        prev.sort();
        assert_eq!(prev, expected);
        assert_eq!(
            f.rooms.forward_extremities(&room).unwrap(),
            vec![merge.event_id]
        );
    }
}

#[tokio::test]
async fn events_failing_the_auth_rules_are_rejected_and_kept_apart() {
    let f = fixture();
    let peer = Peer::new();
    let room = public_room(&f, RoomVersionId::V11).await;
    let mallory = remote("mallory");
    // Not a member: may not send.
    let message = peer.event(
        &f,
        &room,
        &mallory,
        "m.room.message",
        None,
        json!({"body": "let me in"}),
        None,
        now(),
    );
    let outcome = f.rooms.accept_remote(message.clone(), None).await.unwrap();
    assert!(matches!(outcome, Outcome::Rejected(_)), "{outcome:?}");
    assert!(f.rooms.knows_event(&message.event_id).unwrap());
    assert!(f.rooms.get_pdu(&message.event_id).unwrap().is_none());
    assert!(f.rooms.position_of(&message.event_id).unwrap().is_none());
    assert!(!f
        .rooms
        .forward_extremities(&room)
        .unwrap()
        .contains(&message.event_id));
    // An event naming the rejected one as an auth event is rejected too.
    let again = f.rooms.accept_remote(message, None).await.unwrap();
    assert!(matches!(again, Outcome::Rejected(_)));
}

#[tokio::test]
async fn an_event_allowed_by_its_own_state_but_not_the_current_is_soft_failed() {
    let f = fixture();
    let peer = Peer::new();
    let alice = user("alice");
    let bob = remote("bob");
    let room = public_room(&f, RoomVersionId::V11).await;
    let join = peer.join(&f, &room, &bob, now());
    assert_eq!(
        f.rooms.accept_remote(join.clone(), None).await.unwrap(),
        Outcome::Accepted
    );
    // Bob's server has not seen the ban yet and sends on top of his join.
    let late = peer.event(
        &f,
        &room,
        &bob,
        "m.room.message",
        None,
        json!({"body": "am I still here?"}),
        Some(vec![join.event_id.clone()]),
        now(),
    );
    f.rooms
        .change_membership(&room, &alice, &bob, Change::Ban, None)
        .await
        .unwrap();
    let extremities = f.rooms.forward_extremities(&room).unwrap();
    let outcome = f.rooms.accept_remote(late.clone(), None).await.unwrap();
    assert!(matches!(outcome, Outcome::SoftFailed(_)), "{outcome:?}");
    // Stored, but neither in the timeline nor built upon.
    assert!(f.rooms.get_pdu(&late.event_id).unwrap().is_some());
    assert!(f.rooms.position_of(&late.event_id).unwrap().is_none());
    assert_eq!(f.rooms.forward_extremities(&room).unwrap(), extremities);
    assert_eq!(
        f.rooms.membership(&room, &bob).unwrap(),
        Some(Membership::Ban)
    );
}

#[tokio::test]
async fn concurrent_state_changes_resolve_the_same_on_every_order() {
    for version in [RoomVersionId::V11, RoomVersionId::V12] {
        let f = fixture();
        let peer = Peer::new();
        let alice = user("alice");
        let bob = remote("bob");
        let room = public_room(&f, version.clone()).await;
        let join = peer.join(&f, &room, &bob, now());
        f.rooms.accept_remote(join, None).await.unwrap();
        // Alice makes bob an admin, so both may set the topic.
        let mut levels: Value = serde_json::from_str(
            f.rooms
                .current_state_event(&room, &StateEventType::RoomPowerLevels, "")
                .unwrap()
                .unwrap()
                .content
                .get(),
        )
        .unwrap();
        levels["users"][bob.as_str()] = json!(100);
        f.rooms
            .send(
                &room,
                &alice,
                super::NewEvent {
                    kind: TimelineEventType::RoomPowerLevels,
                    state_key: Some(String::new()),
                    content: to_raw_value(&levels).unwrap(),
                    redacts: None,
                },
                None,
            )
            .await
            .unwrap();
        let base = f.rooms.forward_extremities(&room).unwrap();

        // Alice sets the topic here; bob's server sets it concurrently, a
        // little later by the clock.
        f.rooms
            .send(
                &room,
                &alice,
                super::NewEvent {
                    kind: TimelineEventType::RoomTopic,
                    state_key: Some(String::new()),
                    content: to_raw_value(&json!({"topic": "alice's"})).unwrap(),
                    redacts: None,
                },
                None,
            )
            .await
            .unwrap();
        let bobs = peer.event(
            &f,
            &room,
            &bob,
            "m.room.topic",
            Some(""),
            json!({"topic": "bob's"}),
            Some(base),
            now() + 60_000,
        );
        assert_eq!(
            f.rooms.accept_remote(bobs.clone(), None).await.unwrap(),
            Outcome::Accepted
        );
        // Equal power: the later event is applied last and wins.
        let topic = f
            .rooms
            .current_state_event(&room, &StateEventType::RoomTopic, "")
            .unwrap()
            .unwrap();
        assert_eq!(topic.event_id, bobs.event_id, "{version}");
        assert_eq!(f.rooms.forward_extremities(&room).unwrap().len(), 2);
    }
}
