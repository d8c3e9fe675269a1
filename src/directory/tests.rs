//! The directory's rules against a real room service on a temporary database:
//! reservations, `createRoom`'s alias, join-by-alias resolution and the
//! `m.room.canonical_alias` check (which the black-box tests reach only once
//! the room handlers call them).

use std::sync::Arc;

use axum::http::StatusCode;
use feathur_federation::SigningKey;
use ruma::{
    directory::{Filter, RoomNetwork},
    OwnedRoomId, OwnedServerName, OwnedUserId, RoomAliasId, RoomVersionId, UserId,
};
use serde_json::{json, value::to_raw_value, Map};

use super::{Directory, PublicRoomsQuery, Requester};
use crate::{
    error::Error,
    rooms::{Change, CreateRoom, MemberProfile, NewEvent, Preset, Rooms},
    storage::{OpenMode, Storage},
};

struct Fixture {
    _dir: tempfile::TempDir,
    rooms: Rooms,
    directory: Directory,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::open(&dir.path().join("db"), OpenMode::ReadWrite).unwrap();
    let server: OwnedServerName = "example.org".try_into().unwrap();
    let rooms = Rooms::new(
        storage.clone(),
        server.clone(),
        Arc::new(SigningKey::generate().unwrap()),
        RoomVersionId::V11,
    )
    .unwrap();
    Fixture {
        _dir: dir,
        directory: Directory::new(storage, server),
        rooms,
    }
}

fn user(name: &str) -> OwnedUserId {
    UserId::parse(format!("@{name}:example.org")).unwrap()
}

fn alias(text: &str) -> &RoomAliasId {
    <&RoomAliasId>::try_from(text).unwrap()
}

fn as_user(user_id: &UserId) -> Requester<'_> {
    Requester {
        user_id,
        is_admin: false,
    }
}

fn errcode<T>(result: Result<T, Error>) -> (StatusCode, String) {
    match result {
        Err(Error::Matrix { status, kind, .. }) => (status, kind.errcode().to_string()),
        Err(other) => panic!("expected a Matrix error, got {other}"),
        Ok(_) => panic!("expected an error, got success"),
    }
}

async fn public_room(f: &Fixture, creator: &UserId) -> OwnedRoomId {
    let request = CreateRoom {
        version: None,
        preset: Preset::PublicChat,
        creation_content: Map::new(),
        power_level_override: None,
        initial_state: Vec::new(),
        name: None,
        topic: None,
        invite: Vec::new(),
        is_direct: false,
        creator_profile: MemberProfile::default(),
        canonical_alias: None,
    };
    f.rooms.create_room(creator, request).await.unwrap()
}

#[tokio::test]
async fn reservation_blocks_the_alias_until_committed_or_dropped() {
    let f = fixture();
    let alice = user("alice");
    let room = public_room(&f, &alice).await;

    let reservation = f.directory.reserve_for_new_room("lobby").unwrap();
    assert_eq!(reservation.alias().as_str(), "#lobby:example.org");
    assert_eq!(
        errcode(f.directory.reserve_for_new_room("lobby")),
        (StatusCode::BAD_REQUEST, "M_ROOM_IN_USE".into())
    );
    let put = f
        .directory
        .create_alias(
            &f.rooms,
            as_user(&alice),
            alias("#lobby:example.org"),
            &room,
        )
        .await;
    assert_eq!(errcode(put), (StatusCode::CONFLICT, "M_UNKNOWN".into()));
    drop(reservation);

    let reservation = f.directory.reserve_for_new_room("lobby").unwrap();
    reservation.commit(&room, &alice).await.unwrap();
    assert_eq!(
        f.directory
            .resolve_alias(alias("#lobby:example.org"))
            .unwrap()
            .room_id,
        room
    );
    assert_eq!(
        errcode(f.directory.reserve_for_new_room("lobby")),
        (StatusCode::BAD_REQUEST, "M_ROOM_IN_USE".into())
    );
    for bad in ["", "a:b", "with space", "nul\0"] {
        assert_eq!(
            errcode(f.directory.reserve_for_new_room(bad)),
            (StatusCode::BAD_REQUEST, "M_INVALID_PARAM".into()),
            "{bad:?}"
        );
    }
}

#[tokio::test]
async fn remote_and_unknown_aliases_do_not_resolve() {
    let f = fixture();
    assert_eq!(
        errcode(f.directory.resolve_alias(alias("#x:other.org"))),
        (StatusCode::NOT_FOUND, "M_NOT_FOUND".into())
    );
    assert_eq!(
        errcode(f.directory.resolve_alias(alias("#x:example.org"))),
        (StatusCode::NOT_FOUND, "M_NOT_FOUND".into())
    );
}

#[tokio::test]
async fn canonical_alias_must_point_to_the_room() {
    let f = fixture();
    let alice = user("alice");
    let room = public_room(&f, &alice).await;
    let other = public_room(&f, &alice).await;
    f.directory
        .create_alias(&f.rooms, as_user(&alice), alias("#here:example.org"), &room)
        .await
        .unwrap();
    f.directory
        .create_alias(
            &f.rooms,
            as_user(&alice),
            alias("#there:example.org"),
            &other,
        )
        .await
        .unwrap();
    let check = |content: serde_json::Value| {
        f.directory
            .check_canonical_alias(&f.rooms, &room, &to_raw_value(&content).unwrap())
    };

    check(json!({"alias": "#here:example.org"})).unwrap();
    check(json!({})).unwrap();
    check(json!({"alias": null, "alt_aliases": []})).unwrap();
    let bad_alias = (StatusCode::BAD_REQUEST, "M_BAD_ALIAS".to_owned());
    assert_eq!(
        errcode(check(json!({"alias": "#there:example.org"}))),
        bad_alias
    );
    assert_eq!(
        errcode(check(json!({"alias": "#nowhere:example.org"}))),
        bad_alias
    );
    assert_eq!(
        errcode(check(json!({"alias": "#far:other.org"}))),
        bad_alias
    );
    assert_eq!(
        errcode(check(
            json!({"alt_aliases": ["#here:example.org", "#nowhere:example.org"]})
        )),
        bad_alias
    );
    let invalid = (StatusCode::BAD_REQUEST, "M_INVALID_PARAM".to_owned());
    assert_eq!(errcode(check(json!({"alias": "not-an-alias"}))), invalid);
    assert_eq!(
        errcode(check(json!({"alt_aliases": "#here:example.org"}))),
        invalid
    );

    // Aliases already in the current event are not checked again.
    let event = NewEvent {
        kind: "m.room.canonical_alias".into(),
        state_key: Some(String::new()),
        content: to_raw_value(&json!({"alt_aliases": ["#stale:example.org"]})).unwrap(),
        redacts: None,
    };
    f.rooms.send(&room, &alice, event, None).await.unwrap();
    check(json!({"alias": "#here:example.org", "alt_aliases": ["#stale:example.org"]})).unwrap();
}

#[tokio::test]
async fn deleting_and_publishing_need_canonical_alias_power() {
    let f = fixture();
    let (alice, bob) = (user("alice"), user("bob"));
    let room = public_room(&f, &alice).await;
    f.rooms
        .change_membership(
            &room,
            &bob,
            &bob,
            Change::Join(MemberProfile::default()),
            None,
        )
        .await
        .unwrap();
    f.directory
        .create_alias(&f.rooms, as_user(&bob), alias("#bobs:example.org"), &room)
        .await
        .unwrap();
    f.directory
        .create_alias(
            &f.rooms,
            as_user(&alice),
            alias("#alices:example.org"),
            &room,
        )
        .await
        .unwrap();

    let forbidden = (StatusCode::FORBIDDEN, "M_FORBIDDEN".to_owned());
    let by_bob = f
        .directory
        .delete_alias(&f.rooms, as_user(&bob), alias("#alices:example.org"))
        .await;
    assert_eq!(errcode(by_bob), forbidden);
    assert_eq!(
        errcode(
            f.directory
                .set_visibility(&f.rooms, as_user(&bob), &room, true)
                .await
        ),
        forbidden
    );
    let admin = Requester {
        user_id: &bob,
        is_admin: true,
    };
    f.directory
        .set_visibility(&f.rooms, admin, &room, true)
        .await
        .unwrap();
    assert!(f.directory.is_published(&f.rooms, &room).unwrap());

    // Alice (power 100) may delete Bob's alias; Bob may delete his own.
    f.directory
        .delete_alias(&f.rooms, as_user(&alice), alias("#bobs:example.org"))
        .await
        .unwrap();
    assert_eq!(
        f.directory.aliases_of(&room).unwrap(),
        vec![alias("#alices:example.org").to_owned()]
    );
    f.directory
        .set_visibility(&f.rooms, as_user(&alice), &room, false)
        .await
        .unwrap();
    assert!(!f.directory.is_published(&f.rooms, &room).unwrap());
}

#[tokio::test]
async fn paging_walks_both_ways() {
    let f = fixture();
    let alice = user("alice");
    let mut all = Vec::new();
    for _ in 0..7 {
        let room = public_room(&f, &alice).await;
        f.directory.set_published(&room, true).await.unwrap();
        all.push(room);
    }
    all.sort();
    let page = |since: Option<&str>| {
        f.directory
            .public_rooms(
                &f.rooms,
                PublicRoomsQuery {
                    server: None,
                    limit: Some(3u32.into()),
                    since,
                    filter: &Filter::new(),
                    network: &RoomNetwork::Matrix,
                },
            )
            .unwrap()
    };
    let ids = |p: &super::PublicRoomsPage| -> Vec<OwnedRoomId> {
        p.chunk.iter().map(|c| c.room_id.clone()).collect()
    };
    let first = page(None);
    assert_eq!(first.total_room_count_estimate, 7);
    assert_eq!(ids(&first), all[0..3]);
    assert!(first.prev_batch.is_none());
    let second = page(first.next_batch.as_deref());
    assert_eq!(ids(&second), all[3..6]);
    let third = page(second.next_batch.as_deref());
    assert_eq!(ids(&third), all[6..7]);
    assert!(third.next_batch.is_none());
    let back = page(third.prev_batch.as_deref());
    assert_eq!(ids(&back), all[3..6]);
    let back = page(back.prev_batch.as_deref());
    assert_eq!(ids(&back), all[0..3]);
    assert!(back.prev_batch.is_none());
}
