//! Read paths and the visibility rule every one of them applies (Client-Server
//! API: "History visibility"; "/messages", "/event", "/state", "/members").

use std::sync::Arc;

use ruma::{api::client::filter::RoomEventFilter, events::StateEventType, EventId, RoomId, UserId};
use serde::Deserialize;

use super::{context::matches_filter, timeline::Direction, Membership, Pdu, Rooms, StateMap};
use crate::error::{Error, Result};

/// One page of `/messages`.
pub struct Page {
    pub events: Vec<Pdu>,
    /// Where the next page starts; `None` when this direction is exhausted.
    pub end: Option<u64>,
}

/// Pagination tokens are stream positions, `s` + decimal, shared with `/sync`.
pub fn parse_token(token: &str) -> Option<u64> {
    token.strip_prefix('s')?.parse().ok()
}

pub fn make_token(position: u64) -> String {
    format!("s{position}")
}

#[derive(Deserialize)]
struct HistoryVisibilityContent {
    history_visibility: String,
}

impl Rooms {
    /// The room state just before `pdu` (empty for the create event).
    pub(super) fn state_before(&self, pdu: &Pdu) -> Result<Arc<StateMap>> {
        let Some(short) = self.ids.event(&pdu.event_id)? else {
            return Ok(Arc::new(StateMap::new()));
        };
        match self.state.event_state_before(short)? {
            Some(snapshot) => Ok(self.state.load(snapshot)?),
            None => Ok(Arc::new(StateMap::new())),
        }
    }

    /// The spec's history visibility rule for one event and one user, using the
    /// visibility and the user's membership at that event.
    pub fn can_see(&self, user_id: &UserId, pdu: &Pdu) -> Result<bool> {
        let state = self.state_before(pdu)?;
        let visibility = self
            .state_event_in(&state, &StateEventType::RoomHistoryVisibility, "")?
            .and_then(|e| serde_json::from_str::<HistoryVisibilityContent>(e.content.get()).ok())
            .map(|c| c.history_visibility)
            .unwrap_or_else(|| "shared".to_owned());
        if visibility == "world_readable" {
            return Ok(true);
        }
        // A user's own membership event counts as the membership it sets.
        let at_event = if pdu.state_key.as_deref() == Some(user_id.as_str())
            && pdu.kind == ruma::events::TimelineEventType::RoomMember
        {
            Membership::of(pdu)
        } else {
            self.state_event_in(&state, &StateEventType::RoomMember, user_id.as_str())?
                .and_then(|e| Membership::of(&e))
        };
        Ok(match visibility.as_str() {
            _ if at_event == Some(Membership::Join) => true,
            // The spec allows users who joined at any point after the event;
            // being joined now is the conservative reading of that.
            "shared" => self.is_joined(&pdu.room_id, user_id)?,
            "invited" => at_event == Some(Membership::Invite),
            _ => false,
        })
    }

    pub fn is_joined(&self, room_id: &RoomId, user_id: &UserId) -> Result<bool> {
        Ok(self.membership(room_id, user_id)? == Some(Membership::Join))
    }

    /// 403 unless the user is in the room now, or has been, or it is world-readable:
    /// the gate for room read endpoints (each event is still filtered by [`can_see`]).
    pub fn check_can_read(&self, room_id: &RoomId, user_id: &UserId) -> Result<()> {
        if self.room_info(room_id)?.is_none() {
            return Err(Error::forbidden("You are not in this room"));
        }
        if self.membership(room_id, user_id)?.is_some() {
            return Ok(());
        }
        let world_readable = self
            .current_state_event(room_id, &StateEventType::RoomHistoryVisibility, "")?
            .and_then(|e| serde_json::from_str::<HistoryVisibilityContent>(e.content.get()).ok())
            .is_some_and(|c| c.history_visibility == "world_readable");
        if world_readable {
            Ok(())
        } else {
            Err(Error::forbidden("You are not in this room"))
        }
    }

    /// An event the user may see, or 404 (not 403: do not confirm its
    /// existence), as served to them: with its bundled aggregations.
    pub fn visible_event(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<Pdu> {
        let pdu = self.visible_pdu(user_id, room_id, event_id)?;
        self.with_aggregations(user_id, pdu)
    }

    /// [`visible_event`](Self::visible_event) as stored, without aggregations.
    pub(super) fn visible_pdu(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<Pdu> {
        self.check_can_read(room_id, user_id)?;
        match self.get_pdu(event_id)? {
            Some(pdu) if pdu.room_id == room_id && self.can_see(user_id, &pdu)? => Ok(pdu),
            _ => Err(Error::not_found("Event not found")),
        }
    }

    /// `/messages`: up to `limit` visible events after/before `from`.
    pub fn messages(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        from: Option<u64>,
        dir: Direction,
        limit: usize,
        filter: &RoomEventFilter,
    ) -> Result<Page> {
        self.check_can_read(room_id, user_id)?;
        let Some(shortroomid) = self.ids.room(room_id)? else {
            return Ok(Page {
                events: Vec::new(),
                end: None,
            });
        };
        if limit == 0 {
            // Nothing asked for, nothing consumed: the client may go on from `from`.
            return Ok(Page {
                events: Vec::new(),
                end: from,
            });
        }
        // A filter that matches little must not turn one request into a scan of
        // the whole room: past this many events the page ends early and the
        // client continues from `end`.
        let scan_budget = limit.saturating_mul(10).max(1000);
        let mut scanned = 0;
        let mut events = Vec::new();
        let mut cursor = from;
        loop {
            let batch = self.timeline.page(shortroomid, cursor, dir, limit.max(1))?;
            let exhausted = batch.len() < limit.max(1);
            for (position, event_id) in batch {
                cursor = Some(position);
                scanned += 1;
                if let Some(pdu) = self.get_pdu(&event_id)? {
                    if matches_filter(filter, &pdu) && self.can_see(user_id, &pdu)? {
                        events.push(self.with_aggregations(user_id, pdu)?);
                        if events.len() == limit {
                            return Ok(Page {
                                events,
                                end: cursor,
                            });
                        }
                    }
                }
            }
            if exhausted {
                return Ok(Page { events, end: None });
            }
            if scanned >= scan_budget {
                return Ok(Page {
                    events,
                    end: cursor,
                });
            }
        }
    }

    /// The room state as of stream position `position` (a `/sync` or
    /// `/messages` token): the state after the room's last event at or before
    /// it. Served only if the user may see that event.
    pub fn state_at_position(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        position: u64,
    ) -> Result<Vec<Pdu>> {
        self.check_can_read(room_id, user_id)?;
        let Some(shortroomid) = self.ids.room(room_id)? else {
            return Ok(Vec::new());
        };
        let last = self.timeline.page(
            shortroomid,
            Some(position.saturating_add(1)),
            Direction::Backward,
            1,
        )?;
        let Some((_, event_id)) = last.into_iter().next() else {
            return Ok(Vec::new());
        };
        let Some(pdu) = self.get_pdu(&event_id)? else {
            return Ok(Vec::new());
        };
        if !self.can_see(user_id, &pdu)? {
            return Err(Error::forbidden(
                "You could not see this room at that point",
            ));
        }
        let mut map = (*self.state_before(&pdu)?).clone();
        if let Some(state_key) = &pdu.state_key {
            let event_type = StateEventType::from(pdu.kind.to_string());
            if let (Some(key), Some(short)) = (
                self.ids.state_key(&event_type, state_key)?,
                self.ids.event(&pdu.event_id)?,
            ) {
                map.insert(key, short);
            }
        }
        let mut out = Vec::with_capacity(map.len());
        for (_, event_id) in self.resolve_state_map(&map)? {
            if let Some(pdu) = self.get_pdu(&event_id)? {
                out.push(pdu);
            }
        }
        Ok(out)
    }

    /// The current member events of `users` (for lazy-loading members).
    pub fn member_events(&self, room_id: &RoomId, users: &[&UserId]) -> Result<Vec<Pdu>> {
        let mut out = Vec::new();
        for user in users {
            if let Some(pdu) =
                self.current_state_event(room_id, &StateEventType::RoomMember, user.as_str())?
            {
                out.push(pdu);
            }
        }
        Ok(out)
    }

    /// The room state the user may see: current state while they are joined (or
    /// the room is world-readable), otherwise the state when they left.
    pub fn state_for(&self, user_id: &UserId, room_id: &RoomId) -> Result<Vec<Pdu>> {
        self.check_can_read(room_id, user_id)?;
        let state =
            if self.is_joined(room_id, user_id)? || self.membership(room_id, user_id)?.is_none() {
                self.current_state_ids(room_id)?
            } else {
                match self.current_state_event(
                    room_id,
                    &StateEventType::RoomMember,
                    user_id.as_str(),
                )? {
                    Some(leave) => {
                        let mut map = (*self.state_before(&leave)?).clone();
                        if let Some(shortstatekey) = self
                            .ids
                            .state_key(&StateEventType::RoomMember, user_id.as_str())?
                        {
                            if let Some(short) = self.ids.event(&leave.event_id)? {
                                map.insert(shortstatekey, short);
                            }
                        }
                        self.resolve_state_map(&map)?
                    }
                    None => Vec::new(),
                }
            };
        let mut out = Vec::with_capacity(state.len());
        for (_, event_id) in state {
            if let Some(pdu) = self.get_pdu(&event_id)? {
                out.push(pdu);
            }
        }
        Ok(out)
    }
}
