//! The authorisation rules (Server-Server API "Authorisation rules", "Auth
//! events selection"), as thin wrappers over ruma-state-res so the room
//! service speaks in [`Pdu`]s and one error type.

use ruma::{
    events::{StateEventType, TimelineEventType},
    room_version_rules::RoomVersionRules,
    state_res::{
        auth_types_for_event, check_state_dependent_auth_rules, check_state_independent_auth_rules,
    },
    EventId, UserId,
};
use serde_json::value::RawValue as RawJsonValue;

use super::pdu::Pdu;

/// Why an event may not be built or accepted. The text is ruma's reason and
/// is meant for the client (`M_FORBIDDEN` / `M_BAD_JSON` message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The content cannot be read for auth selection (e.g. a member event
    /// without a valid `membership`): the event is malformed.
    #[error("{0}")]
    InvalidEvent(String),
    /// The auth rules refuse the event.
    #[error("{0}")]
    Forbidden(String),
}

/// The (type, state_key) pairs whose current events must be this event's
/// `auth_events` ("Auth events selection"): power levels, the sender's
/// membership, the create event before v12, and for memberships the target's
/// membership, join rules, third-party invite and authorising user.
pub fn auth_types(
    rules: &RoomVersionRules,
    kind: &TimelineEventType,
    sender: &UserId,
    state_key: Option<&str>,
    content: &RawJsonValue,
) -> Result<Vec<(StateEventType, String)>, AuthError> {
    auth_types_for_event(kind, sender, state_key, content, &rules.authorization)
        .map_err(AuthError::InvalidEvent)
}

/// Full auth check of `event`: the state-independent rules against its own
/// `auth_events` (looked up with `fetch_event`), then the state-dependent
/// rules against a state (`fetch_state(type, state_key)`).
///
/// For a local event the state is the room's current state; for a received
/// one the spec runs the state-dependent part against the auth events, the
/// state before the event and the current state ("Checks performed on
/// receipt of a PDU") — call [`check_against_state`] for the extra passes.
/// Both fetchers must return `None` for rejected events. Signatures must
/// already have been verified.
pub fn check(
    rules: &RoomVersionRules,
    event: &Pdu,
    fetch_event: impl Fn(&EventId) -> Option<Pdu>,
    fetch_state: impl Fn(&StateEventType, &str) -> Option<Pdu>,
) -> Result<(), AuthError> {
    check_state_independent_auth_rules(&rules.authorization, event, fetch_event)
        .map_err(AuthError::Forbidden)?;
    check_against_state(rules, event, fetch_state)
}

/// Only the state-dependent rules, against one state: for the second and
/// third passes on a received PDU (state before it; current state, where a
/// failure means soft-fail rather than rejection).
pub fn check_against_state(
    rules: &RoomVersionRules,
    event: &Pdu,
    fetch_state: impl Fn(&StateEventType, &str) -> Option<Pdu>,
) -> Result<(), AuthError> {
    check_state_dependent_auth_rules(&rules.authorization, event, fetch_state)
        .map_err(AuthError::Forbidden)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use feathur_federation::{finalize_pdu, room_id_for_create_event, SigningKey};
    use ruma::{MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, RoomVersionId, UInt};
    use serde_json::{json, value::to_raw_value, Value};

    use super::*;
    use crate::rooms::pdu::{build_unsigned_pdu, UnsignedPdu};

    const ALICE: &str = "@alice:example.org";
    const BOB: &str = "@bob:example.org";
    const CAROL: &str = "@carol:other.org";

    /// A room in memory: every event built, signed and auth-checked the way
    /// the room service does it, on one linear DAG.
    struct Room {
        rules: RoomVersionRules,
        key: SigningKey,
        room_id: OwnedRoomId,
        events: HashMap<OwnedEventId, Pdu>,
        state: HashMap<(StateEventType, String), OwnedEventId>,
        head: Vec<OwnedEventId>,
        depth: u64,
    }

    impl Room {
        /// create (with `create_content` merged in) → creator join → power
        /// levels (`users`) → invite-only join rules.
        fn new(version: RoomVersionId, create_content: Value, users: Value) -> Room {
            let rules = version.rules().unwrap();
            let mut content = json!({"room_version": version.as_str()});
            if !rules.authorization.use_room_create_sender {
                content["creator"] = ALICE.into();
            }
            content
                .as_object_mut()
                .unwrap()
                .extend(create_content.as_object().unwrap().clone());
            let v12 = rules.authorization.room_create_event_id_as_room_id;
            let mut room = Room {
                rules,
                key: SigningKey::generate().unwrap(),
                room_id: "!placeholder:example.org".try_into().unwrap(),
                events: HashMap::new(),
                state: HashMap::new(),
                head: Vec::new(),
                depth: 0,
            };
            let create = room.build(ALICE, "m.room.create", Some(""), content, !v12);
            if v12 {
                room.room_id = room_id_for_create_event(&create.event_id).unwrap();
            }
            let create = Pdu::from_json(create.event_id, &room.room_id, create.json).unwrap();
            room.accept(create).unwrap();
            room.send(
                ALICE,
                "m.room.member",
                Some(ALICE),
                json!({"membership": "join"}),
            )
            .unwrap();
            room.send(
                ALICE,
                "m.room.power_levels",
                Some(""),
                json!({"users": users}),
            )
            .unwrap();
            room.send(
                ALICE,
                "m.room.join_rules",
                Some(""),
                json!({"join_rule": "invite"}),
            )
            .unwrap();
            room
        }

        /// Builds and signs an event on the current head, with auth events
        /// picked from the current state.
        fn build(
            &self,
            sender: &str,
            kind: &str,
            state_key: Option<&str>,
            content: Value,
            with_room_id: bool,
        ) -> Pdu {
            let sender = UserId::parse(sender).unwrap();
            let kind = TimelineEventType::from(kind);
            let content = to_raw_value(&content).unwrap();
            let auth_events: Vec<OwnedEventId> =
                auth_types(&self.rules, &kind, &sender, state_key, &content)
                    .unwrap()
                    .iter()
                    .filter_map(|key| self.state.get(key).cloned())
                    .collect();
            let mut json = build_unsigned_pdu(UnsignedPdu {
                rules: &self.rules,
                room_id: with_room_id.then_some(&*self.room_id),
                sender: &sender,
                kind: &kind,
                state_key,
                content: &content,
                prev_events: &self.head,
                auth_events: &auth_events,
                depth: self.depth + 1,
                origin_server_ts: MilliSecondsSinceUnixEpoch(UInt::from(1_000_000u32)),
                redacts: None,
            })
            .unwrap();
            let event_id = finalize_pdu(
                &self.key,
                sender.server_name().as_str(),
                &self.rules,
                &mut json,
            )
            .unwrap();
            Pdu::from_json(event_id, &self.room_id, json).unwrap()
        }

        /// Auth-checks `pdu` against the current state and appends it.
        fn accept(&mut self, pdu: Pdu) -> Result<Pdu, AuthError> {
            check(
                &self.rules,
                &pdu,
                |id| self.events.get(id).cloned(),
                |kind, key| {
                    self.state
                        .get(&(kind.clone(), key.to_owned()))
                        .and_then(|id| self.events.get(id))
                        .cloned()
                },
            )?;
            if let Some(state_key) = &pdu.state_key {
                self.state.insert(
                    (pdu.kind.to_string().into(), state_key.clone()),
                    pdu.event_id.clone(),
                );
            }
            self.head = vec![pdu.event_id.clone()];
            self.depth = pdu.depth;
            self.events.insert(pdu.event_id.clone(), pdu.clone());
            Ok(pdu)
        }

        fn send(
            &mut self,
            sender: &str,
            kind: &str,
            state_key: Option<&str>,
            content: Value,
        ) -> Result<Pdu, AuthError> {
            let pdu = self.build(sender, kind, state_key, content, true);
            self.accept(pdu)
        }

        fn member(
            &mut self,
            sender: &str,
            target: &str,
            membership: &str,
        ) -> Result<Pdu, AuthError> {
            self.send(
                sender,
                "m.room.member",
                Some(target),
                json!({"membership": membership}),
            )
        }

        fn power_levels(&mut self, sender: &str, users: Value) -> Result<Pdu, AuthError> {
            self.send(
                sender,
                "m.room.power_levels",
                Some(""),
                json!({"users": users}),
            )
        }
    }

    const VERSIONS: [RoomVersionId; 3] =
        [RoomVersionId::V10, RoomVersionId::V11, RoomVersionId::V12];

    /// The creator holds 100 before v12; from v12 creators are implicit and
    /// may not be listed.
    fn room(version: RoomVersionId) -> Room {
        let users = if version == RoomVersionId::V12 {
            json!({})
        } else {
            json!({ALICE: 100})
        };
        Room::new(version, json!({}), users)
    }

    fn assert_forbidden(result: Result<Pdu, AuthError>, what: &str) {
        assert!(
            matches!(result, Err(AuthError::Forbidden(_))),
            "{what}: {result:?}"
        );
    }

    #[test]
    fn room_setup_and_messages_pass() {
        for version in VERSIONS {
            let mut room = room(version.clone());
            assert_eq!(room.events.len(), 4, "{version}");
            room.send(ALICE, "m.room.message", None, json!({"body": "hi"}))
                .unwrap();
            let create_in_auth = room.events.values().any(|e| {
                e.auth_events
                    .iter()
                    .any(|id| room.events[id].kind == TimelineEventType::RoomCreate)
            });
            assert_eq!(create_in_auth, version != RoomVersionId::V12, "{version}");
        }
    }

    #[test]
    fn stranger_cannot_join_invite_only_room() {
        for version in VERSIONS {
            let mut room = room(version.clone());
            assert_forbidden(room.member(CAROL, CAROL, "join"), version.as_str());
        }
    }

    #[test]
    fn invite_then_join_works() {
        for version in VERSIONS {
            let mut room = room(version.clone());
            assert_forbidden(room.member(BOB, CAROL, "invite"), "non-member invites");
            room.member(ALICE, CAROL, "invite").unwrap();
            room.member(CAROL, CAROL, "join").unwrap();
            room.send(CAROL, "m.room.message", None, json!({"body": "hello"}))
                .unwrap();
        }
    }

    #[test]
    fn non_member_message_is_refused() {
        for version in VERSIONS {
            let mut room = room(version.clone());
            assert_forbidden(
                room.send(BOB, "m.room.message", None, json!({"body": "x"})),
                version.as_str(),
            );
            room.member(ALICE, BOB, "invite").unwrap();
            assert_forbidden(
                room.send(BOB, "m.room.message", None, json!({"body": "x"})),
                "invited only",
            );
        }
    }

    /// A room where Bob has joined with power `bob` and Carol with 0.
    fn room_with_members(version: RoomVersionId, bob: i64) -> Room {
        let mut room = room(version.clone());
        for user in [BOB, CAROL] {
            room.member(ALICE, user, "invite").unwrap();
            room.member(user, user, "join").unwrap();
        }
        let users = if version == RoomVersionId::V12 {
            json!({BOB: bob})
        } else {
            json!({ALICE: 100, BOB: bob})
        };
        room.power_levels(ALICE, users).unwrap();
        room
    }

    #[test]
    fn power_zero_cannot_set_power_levels() {
        for version in VERSIONS {
            let mut room = room_with_members(version.clone(), 0);
            assert_forbidden(
                room.power_levels(CAROL, json!({CAROL: 100})),
                version.as_str(),
            );
            assert_forbidden(
                room.send(CAROL, "m.room.name", Some(""), json!({"name": "n"})),
                "state needs 50",
            );
        }
    }

    #[test]
    fn cannot_raise_own_power_above_own_level() {
        for version in VERSIONS {
            let mut room = room_with_members(version.clone(), 50);
            let base = if version == RoomVersionId::V12 {
                json!({})
            } else {
                json!({ALICE: 100})
            };
            let with = |extra: Value| {
                let mut users = base.clone();
                users
                    .as_object_mut()
                    .unwrap()
                    .extend(extra.as_object().unwrap().clone());
                users
            };
            assert_forbidden(
                room.power_levels(BOB, with(json!({BOB: 51}))),
                version.as_str(),
            );
            // Bob may give Carol up to his own level, not beyond.
            assert_forbidden(
                room.power_levels(BOB, with(json!({BOB: 50, CAROL: 51}))),
                "above own",
            );
            room.power_levels(BOB, with(json!({BOB: 50, CAROL: 50})))
                .unwrap();
        }
    }

    #[test]
    fn kick_needs_power() {
        for version in VERSIONS {
            let mut room = room_with_members(version.clone(), 0);
            assert_forbidden(room.member(BOB, CAROL, "leave"), version.as_str());
            room.member(ALICE, CAROL, "leave").unwrap();
            assert_forbidden(
                room.send(CAROL, "m.room.message", None, json!({})),
                "kicked",
            );
        }
    }

    #[test]
    fn banned_user_cannot_join() {
        for version in VERSIONS {
            let mut room = room(version.clone());
            room.send(
                ALICE,
                "m.room.join_rules",
                Some(""),
                json!({"join_rule": "public"}),
            )
            .unwrap();
            room.member(CAROL, CAROL, "join").unwrap();
            room.member(ALICE, CAROL, "ban").unwrap();
            assert_forbidden(room.member(CAROL, CAROL, "join"), version.as_str());
            room.member(BOB, BOB, "join").unwrap();
        }
    }

    #[test]
    fn v12_creators_have_infinite_power() {
        let mut room = Room::new(
            RoomVersionId::V12,
            json!({"additional_creators": [BOB]}),
            json!({}),
        );
        room.member(ALICE, BOB, "invite").unwrap();
        room.member(BOB, BOB, "join").unwrap();
        room.member(ALICE, CAROL, "invite").unwrap();
        room.member(CAROL, CAROL, "join").unwrap();
        // Neither creator is in `users`, yet both may change power levels…
        room.power_levels(ALICE, json!({CAROL: 50})).unwrap();
        room.power_levels(BOB, json!({CAROL: 100})).unwrap();
        // …but may not list a creator, and a 100 non-creator cannot outrank them.
        assert_forbidden(
            room.power_levels(ALICE, json!({BOB: 100})),
            "creator listed",
        );
        assert_forbidden(room.member(CAROL, BOB, "ban"), "ban a creator");
        room.member(BOB, CAROL, "ban").unwrap();
    }

    #[test]
    fn wrong_auth_events_are_refused() {
        let mut room = room(RoomVersionId::V11);
        let mut pdu = room.build(ALICE, "m.room.message", None, json!({}), true);
        pdu.auth_events.pop();
        assert_forbidden(room.accept(pdu), "missing create event");
        let mut pdu = room.build(ALICE, "m.room.message", None, json!({}), true);
        let join_rules = room.state[&(StateEventType::RoomJoinRules, String::new())].clone();
        pdu.auth_events.push(join_rules);
        assert_forbidden(room.accept(pdu), "unexpected auth event");
    }

    #[test]
    fn auth_types_follow_room_version() {
        let alice = UserId::parse(ALICE).unwrap();
        let join = to_raw_value(&json!({"membership": "join"})).unwrap();
        let member = TimelineEventType::RoomMember;
        let v11 = auth_types(&RoomVersionRules::V11, &member, &alice, Some(BOB), &join).unwrap();
        assert!(v11.contains(&(StateEventType::RoomCreate, String::new())));
        assert!(v11.contains(&(StateEventType::RoomJoinRules, String::new())));
        assert!(v11.contains(&(StateEventType::RoomMember, BOB.to_owned())));
        let v12 = auth_types(&RoomVersionRules::V12, &member, &alice, Some(BOB), &join).unwrap();
        assert!(!v12.contains(&(StateEventType::RoomCreate, String::new())));
        let create = TimelineEventType::RoomCreate;
        assert!(
            auth_types(&RoomVersionRules::V11, &create, &alice, Some(""), &join)
                .unwrap()
                .is_empty()
        );
        let bad = to_raw_value(&json!({"membership": 5})).unwrap();
        assert!(matches!(
            auth_types(&RoomVersionRules::V11, &member, &alice, Some(BOB), &bad),
            Err(AuthError::InvalidEvent(_))
        ));
    }
}
