//! Read accessors for `/sync` (`src/sync/`): a user's rooms, memberships and
//! state as of a stream position, a room's events between two positions,
//! stripped state for invites; and the committed stream position.

use std::{collections::BTreeMap, sync::Arc};

use ruma::{
    events::{StateEventType, TimelineEventType},
    OwnedEventId, OwnedRoomId, RoomId, UserId,
};
use serde_json::Value;

use super::{stream::Stream, timeline::Direction, Membership, Pdu, Rooms, StateMap};
use crate::error::Result;

pub use super::context::matches_filter;

/// Room state as (type, state key) → event id.
pub type StateIds = BTreeMap<(StateEventType, String), OwnedEventId>;

/// The state types an invite or knock shows of its room (Client-Server API
/// "Stripped state": the spec recommends these).
const STRIPPED_TYPES: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

/// The membership a member event sets.
pub fn membership_of(pdu: &Pdu) -> Option<Membership> {
    Membership::of(pdu)
}

impl Rooms {
    /// The writers-in-flight tracker: committed position and wake-ups.
    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// The highest stream position at or below which everything is durable:
    /// the only safe `/sync` token.
    pub fn committed_position(&self) -> u64 {
        self.stream.committed()
    }

    /// Every room the user has a membership in (and has not forgotten).
    pub fn user_rooms(&self, user_id: &UserId) -> Result<Vec<(OwnedRoomId, Membership)>> {
        let mut rooms = Vec::new();
        for row in self.user_memberships.iter_prefix(&user_id.to_owned()) {
            let ((_, room_id), membership) = row?;
            rooms.push((room_id, membership));
        }
        Ok(rooms)
    }

    /// The user's member event as of stream position `upto`, with its
    /// position: the current one unless it is newer than `upto`.
    pub fn member_event_at(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        upto: u64,
    ) -> Result<Option<(Pdu, u64)>> {
        let current =
            self.current_state_event(room_id, &StateEventType::RoomMember, user_id.as_str())?;
        if let Some(pdu) = current {
            if let Some(position) = self.position_of(&pdu.event_id)? {
                if position <= upto {
                    return Ok(Some((pdu, position)));
                }
            }
        }
        let state = self.state_snapshot_at(room_id, upto)?;
        let Some(pdu) =
            self.state_event_in(&state, &StateEventType::RoomMember, user_id.as_str())?
        else {
            return Ok(None);
        };
        Ok(self.position_of(&pdu.event_id)?.map(|p| (pdu, p)))
    }

    /// Up to `limit` events of a room strictly between `after` and `before`
    /// (exclusive both; `after = None`: from the room's start), newest first.
    pub fn room_events_between(
        &self,
        room_id: &RoomId,
        after: Option<u64>,
        before: u64,
        limit: usize,
    ) -> Result<Vec<(u64, OwnedEventId)>> {
        let Some(shortroomid) = self.ids.room(room_id)? else {
            return Ok(Vec::new());
        };
        Ok(self.timeline.between(shortroomid, after, before, limit)?)
    }

    /// The state after the room's last event at or before `position`, as
    /// short ids (empty if the room had no event yet). Snapshots are cheap
    /// to compare; [`Rooms::resolve_state_entries`] turns only the entries
    /// a caller needs into ids, so a `/sync` with nothing new in a large
    /// room costs a compare, not a resolve of every member.
    pub fn state_snapshot_at(&self, room_id: &RoomId, position: u64) -> Result<Arc<StateMap>> {
        let Some(shortroomid) = self.ids.room(room_id)? else {
            return Ok(Arc::default());
        };
        let last = self.timeline.page(
            shortroomid,
            Some(position.saturating_add(1)),
            Direction::Backward,
            1,
        )?;
        let Some((_, event_id)) = last.into_iter().next() else {
            return Ok(Arc::default());
        };
        match self.get_pdu(&event_id)? {
            Some(pdu) => self.state_snapshot_after(&pdu),
            None => Ok(Arc::default()),
        }
    }

    /// The room's current state as short ids (empty for an unknown room),
    /// for callers that look up several of its events
    /// ([`Rooms::state_event_in`]).
    pub fn current_state_snapshot(&self, room_id: &RoomId) -> Result<Arc<StateMap>> {
        Ok(self
            .current_state_snapshot_with_id(room_id)?
            .map(|(_, state)| state)
            .unwrap_or_default())
    }

    /// The id of the room's current state snapshot: equal ids, equal states.
    pub fn current_state_id(&self, room_id: &RoomId) -> Result<Option<u64>> {
        let Some(shortroomid) = self.ids.room(room_id)? else {
            return Ok(None);
        };
        Ok(self.state.room_current(shortroomid)?)
    }

    /// [`Rooms::current_state_snapshot`] with its id; `None` for a room
    /// without state.
    pub fn current_state_snapshot_with_id(
        &self,
        room_id: &RoomId,
    ) -> Result<Option<(u64, Arc<StateMap>)>> {
        let Some(snapshot) = self.current_state_id(room_id)? else {
            return Ok(None);
        };
        Ok(Some((snapshot, self.state.load(snapshot)?)))
    }

    /// The room state just before `pdu`, as short ids.
    pub fn state_snapshot_before(&self, pdu: &Pdu) -> Result<Arc<StateMap>> {
        self.state_before(pdu)
    }

    /// The room state just after `pdu` (with `pdu` itself if it is state).
    pub fn state_snapshot_after(&self, pdu: &Pdu) -> Result<Arc<StateMap>> {
        let before = self.state_before(pdu)?;
        if pdu.state_key.is_none() {
            return Ok(before);
        }
        let mut map = (*before).clone();
        self.apply_state_event(&mut map, pdu)?;
        Ok(Arc::new(map))
    }

    fn apply_state_event(&self, map: &mut StateMap, pdu: &Pdu) -> Result<()> {
        if let Some(state_key) = &pdu.state_key {
            let event_type = StateEventType::from(pdu.kind.to_string());
            if let (Some(key), Some(short)) = (
                self.ids.state_key(&event_type, state_key)?,
                self.ids.event(&pdu.event_id)?,
            ) {
                map.insert(key, short);
            }
        }
        Ok(())
    }

    /// The short state key of `(type, state_key)`, if any event ever used it.
    pub fn short_state_key(&self, kind: &StateEventType, state_key: &str) -> Result<Option<u64>> {
        Ok(self.ids.state_key(kind, state_key)?)
    }

    /// `(type, state_key)` of a short state key.
    pub fn state_key_of(&self, short: u64) -> Result<Option<(StateEventType, String)>> {
        Ok(self.ids.state_key_of(short)?)
    }

    /// The event ids of short event ids.
    pub fn event_id_of(&self, short: u64) -> Result<Option<OwnedEventId>> {
        Ok(self.ids.event_id(short)?)
    }

    /// The room state after its last event at or before `position`.
    pub fn state_ids_at(&self, room_id: &RoomId, position: u64) -> Result<StateIds> {
        let map = self.state_snapshot_at(room_id, position)?;
        Ok(self.resolve_state_map(&map)?.into_iter().collect())
    }

    /// The room state just before `pdu`.
    pub fn state_ids_before(&self, pdu: &Pdu) -> Result<StateIds> {
        let map = self.state_before(pdu)?;
        Ok(self.resolve_state_map(&map)?.into_iter().collect())
    }

    /// The room state just after `pdu` (with `pdu` itself if it is state).
    pub fn state_ids_after(&self, pdu: &Pdu) -> Result<StateIds> {
        let map = self.state_snapshot_after(pdu)?;
        Ok(self.resolve_state_map(&map)?.into_iter().collect())
    }

    /// The room's current key state events as full PDUs: the stripped
    /// state an invite carries over federation (since Matrix 1.16 it must
    /// be PDUs there).
    pub fn stripped_state_pdus(&self, room_id: &RoomId) -> Result<Vec<Pdu>> {
        let mut out = Vec::new();
        for kind in STRIPPED_TYPES {
            if let Some(pdu) =
                self.current_state_event(room_id, &StateEventType::from(*kind), "")?
            {
                out.push(pdu);
            }
        }
        Ok(out)
    }

    /// Stripped state for an invite or knock: the room's key state events
    /// before `member_event`, then `member_event` itself.
    pub fn stripped_state(&self, member_event: &Pdu) -> Result<Vec<Value>> {
        if let Some(mut stripped) = self.invite_state(&member_event.event_id)? {
            let mut own = member_event.to_stripped_state();
            own["event_id"] = Value::from(member_event.event_id.as_str());
            own["origin_server_ts"] = serde_json::json!(member_event.origin_server_ts);
            stripped.push(own);
            return Ok(stripped);
        }
        let state = self.state_before(member_event)?;
        let mut out = Vec::new();
        for kind in STRIPPED_TYPES {
            if let Some(pdu) = self.state_event_in(&state, &StateEventType::from(*kind), "")? {
                out.push(pdu.to_stripped_state());
            }
        }
        let mut own = member_event.to_stripped_state();
        if member_event.kind == TimelineEventType::RoomMember {
            own["event_id"] = Value::from(member_event.event_id.as_str());
            own["origin_server_ts"] = serde_json::json!(member_event.origin_server_ts);
        }
        out.push(own);
        Ok(out)
    }
}
