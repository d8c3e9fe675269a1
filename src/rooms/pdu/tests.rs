//! Tests of the stored event type: parsing, storage round trips, client format.

use feathur_federation::{finalize_pdu, room_id_for_create_event, SigningKey};
use ruma::{int, owned_event_id, owned_room_id, owned_user_id, uint};
use serde_json::{json, value::to_raw_value};

use super::*;

/// `UnsignedPdu` defaults for a v11 message from Alice in `!room`.
fn build(
    rules: &RoomVersionRules,
    room: Option<&RoomId>,
    kind: &str,
    state_key: Option<&str>,
    content: Value,
    redacts: Option<&EventId>,
) -> Result<CanonicalJsonObject, PduBuildError> {
    let prev = [owned_event_id!("$prev")];
    build_unsigned_pdu(UnsignedPdu {
        rules,
        room_id: room,
        sender: &owned_user_id!("@alice:example.org"),
        kind: &kind.into(),
        state_key,
        content: &to_raw_value(&content).unwrap(),
        prev_events: if room.is_some() { &prev } else { &[] },
        auth_events: &[],
        depth: 7,
        origin_server_ts: MilliSecondsSinceUnixEpoch(uint!(1234)),
        redacts,
    })
}

/// Builds, signs and parses one event; `room` `None` means a v12 create.
fn signed(
    rules: &RoomVersionRules,
    room: Option<&RoomId>,
    kind: &str,
    state_key: Option<&str>,
    content: Value,
    redacts: Option<&EventId>,
) -> Pdu {
    let mut json = build(rules, room, kind, state_key, content, redacts).unwrap();
    let key = SigningKey::generate().unwrap();
    let event_id = finalize_pdu(&key, "example.org", rules, &mut json).unwrap();
    let room = room.map_or_else(|| room_id_for_create_event(&event_id).unwrap(), Into::into);
    Pdu::from_json(event_id, &room, json).unwrap()
}

#[test]
fn parses_and_round_trips_through_storage() {
    let room = owned_room_id!("!room:example.org");
    let mut pdu = signed(
        &RoomVersionRules::V11,
        Some(&room),
        "m.room.message",
        None,
        json!({"body": "hi"}),
        None,
    );
    assert_eq!(
        (pdu.sender.as_str(), pdu.depth, pdu.origin_server_ts.0),
        ("@alice:example.org", 7, uint!(1234))
    );
    assert_eq!(
        (pdu.kind.clone(), pdu.is_state()),
        (TimelineEventType::RoomMessage, false)
    );
    assert_eq!((pdu.prev_events.len(), pdu.auth_events.len()), (1, 0));
    assert_eq!(pdu.content.get(), r#"{"body":"hi"}"#);
    pdu.unsigned = json!({"transaction_id": "t1"}).as_object().cloned();
    let stored = serde_json::to_string(&pdu).unwrap();
    let loaded: Pdu = serde_json::from_str(&stored).unwrap();
    assert_eq!((&loaded.json, &loaded.unsigned), (&pdu.json, &pdu.unsigned));
    assert_eq!(serde_json::to_string(&loaded).unwrap(), stored);
    assert_eq!(
        loaded.to_client_event(),
        json!({"content": {"body": "hi"}, "event_id": pdu.event_id,
        "origin_server_ts": 1234, "room_id": room, "sender": "@alice:example.org",
        "type": "m.room.message", "unsigned": {"transaction_id": "t1"}})
    );

    let name = signed(
        &RoomVersionRules::V10,
        Some(&room),
        "m.room.name",
        Some(""),
        json!({"name": "N"}),
        None,
    );
    assert!(name.is_state() && name.to_client_event()["state_key"] == "");
    assert_eq!(
        name.to_stripped_state(),
        json!({"content": {"name": "N"},
        "sender": "@alice:example.org", "state_key": "", "type": "m.room.name"})
    );
}

#[test]
fn v12_create_has_no_room_id() {
    let pdu = signed(
        &RoomVersionRules::V12,
        None,
        "m.room.create",
        Some(""),
        json!({}),
        None,
    );
    assert!(!pdu.json.contains_key("room_id"));
    assert_eq!(ruma::state_res::Event::room_id(&pdu), None);
    assert_eq!(pdu.room_id.as_str()[1..], pdu.event_id.as_str()[1..]);
    assert_eq!(pdu.to_client_event()["room_id"], pdu.room_id.as_str());
    let create = |rules, room| build(rules, room, "m.room.create", Some(""), json!({}), None);
    assert!(matches!(
        create(&RoomVersionRules::V11, None),
        Err(PduBuildError::MissingRoomId)
    ));
    let v12 = create(&RoomVersionRules::V12, Some(&pdu.room_id));
    assert!(matches!(v12, Err(PduBuildError::UnexpectedRoomId)));
}

#[test]
fn redacts_follows_room_version() {
    let (room, target) = (
        owned_room_id!("!room:example.org"),
        owned_event_id!("$target"),
    );
    let redaction = |rules| {
        signed(
            rules,
            Some(&room),
            "m.room.redaction",
            None,
            json!({}),
            Some(&target),
        )
    };
    let v10 = redaction(&RoomVersionRules::V10);
    assert_eq!(
        (&v10.json["redacts"], v10.redacts.as_ref()),
        (&"$target".into(), Some(&target))
    );
    let v11 = redaction(&RoomVersionRules::V11);
    assert!(!v11.json.contains_key("redacts") && v11.redacts.as_ref() == Some(&target));
    let event = v11.to_client_event();
    assert!(event["content"]["redacts"] == "$target" && event["redacts"] == "$target");
    let mut json = (*v11.json).clone();
    json.insert("redacts".into(), "$other".into());
    assert!(Pdu::from_json(v11.event_id.clone(), &room, json).is_err());
}

#[test]
fn malformed_json_is_an_error_not_a_panic() {
    let room = owned_room_id!("!room:example.org");
    let pdu = signed(
        &RoomVersionRules::V11,
        Some(&room),
        "m.room.message",
        None,
        json!({}),
        None,
    );
    let other = Pdu::from_json(
        pdu.event_id.clone(),
        &owned_room_id!("!b:example.org"),
        pdu.json.clone(),
    );
    assert!(matches!(other, Err(PduParseError::RoomMismatch { .. })));
    let bad: [(&str, Option<CanonicalJsonValue>); 6] = [
        ("room_id", None),
        ("sender", Some(CanonicalJsonValue::Null)),
        ("depth", Some(int!(-1).into())),
        ("prev_events", Some("x".into())),
        ("content", Some("x".into())),
        ("state_key", Some(int!(1).into())),
    ];
    for (field, value) in bad {
        let mut json = (*pdu.json).clone();
        match value {
            Some(value) => json.insert(field.into(), value),
            None => json.remove(field),
        };
        assert!(
            Pdu::from_json(pdu.event_id.clone(), &room, json).is_err(),
            "{field}"
        );
    }
    let list = build(
        &RoomVersionRules::V11,
        Some(&room),
        "m.room.message",
        None,
        json!([1]),
        None,
    );
    assert!(matches!(list, Err(PduBuildError::ContentNotObject)));
    let float = build(
        &RoomVersionRules::V11,
        Some(&room),
        "m.room.message",
        None,
        json!({"f": 1.5}),
        None,
    );
    assert!(matches!(float, Err(PduBuildError::NotCanonical(_))));
}
