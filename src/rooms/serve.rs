//! What a resident server hands to other servers (Server-Server API
//! "Joining Rooms", "Leaving Rooms", "Retrieving events", "Backfilling and
//! retrieving missing events"): membership templates, state and auth
//! chains at an event, missing events and backfill, each filtered by the
//! history visibility rules as they apply to servers.

use std::collections::{BTreeSet, HashSet};

use axum::http::StatusCode;
use ruma::{
    api::error::ErrorKind, events::StateEventType, CanonicalJsonObject, EventId,
    MilliSecondsSinceUnixEpoch, OwnedEventId, RoomId, RoomVersionId, ServerName, UserId,
};
use serde::Deserialize;

use super::{auth, pdu, Membership, Pdu, Rooms};
use crate::error::{Error, Result};

/// Most events one `get_missing_events` or `backfill` answer carries.
pub const MAX_EVENTS_PER_ANSWER: usize = 100;

#[derive(Deserialize)]
struct HistoryVisibilityContent {
    history_visibility: String,
}

impl Rooms {
    /// A `make_join` / `make_leave` / `make_knock` template for `user_id`
    /// (whose server asks): the unsigned event on top of the current state,
    /// refused if the room's rules would not allow it now.
    pub fn membership_template(
        &self,
        room_id: &RoomId,
        user_id: &UserId,
        membership: &str,
        supported: Option<&[RoomVersionId]>,
    ) -> Result<(RoomVersionId, CanonicalJsonObject)> {
        let Some(info) = self.room_info(room_id)? else {
            return Err(Error::not_found("Unknown room"));
        };
        if !self.participates(room_id)? {
            return Err(Error::not_found("This server is not in the room"));
        }
        if let Some(supported) = supported {
            if !supported.contains(&info.version) {
                return Err(Error::new(
                    StatusCode::BAD_REQUEST,
                    ErrorKind::IncompatibleRoomVersion(
                        ruma::api::error::IncompatibleRoomVersionErrorData::new(
                            info.version.clone(),
                        ),
                    ),
                    format!(
                        "The room is version {}, which you do not support",
                        info.version
                    ),
                ));
            }
        }
        let rules = Self::rules(&info.version)?;
        let mut content = serde_json::json!({ "membership": membership });
        if membership == "join" {
            if let Some(authoriser) = self.join_authoriser(room_id, user_id)? {
                content["join_authorised_via_users_server"] = authoriser.as_str().into();
            }
        }
        let content = serde_json::value::to_raw_value(&content)
            .map_err(|e| Error::internal(e.to_string()))?;
        let kind = ruma::events::TimelineEventType::RoomMember;
        let auth_types = auth::auth_types(&rules, &kind, user_id, Some(user_id.as_str()), &content)
            .map_err(|e| Error::bad_json(e.to_string()))?;
        let current = self.current_state_snapshot(room_id)?;
        let mut auth_events = Vec::new();
        for (kind, key) in &auth_types {
            if let Some(pdu) = self.state_event_in(&current, kind, key)? {
                auth_events.push(pdu.event_id);
            }
        }
        let prev_events = self
            .extremities
            .get(&room_id.to_owned())?
            .unwrap_or_default();
        let mut depth = 0;
        for prev in &prev_events {
            if let Some(pdu) = self.get_pdu(prev)? {
                depth = depth.max(pdu.depth);
            }
        }
        let json = pdu::build_unsigned_pdu(pdu::UnsignedPdu {
            rules: &rules,
            room_id: Some(room_id),
            sender: user_id,
            kind: &kind,
            state_key: Some(user_id.as_str()),
            content: &content,
            prev_events: &prev_events,
            auth_events: &auth_events,
            depth: depth + 1,
            origin_server_ts: MilliSecondsSinceUnixEpoch::now(),
            redacts: None,
        })
        .map_err(|e| Error::internal(format!("building a template failed: {e}")))?;
        // The rules are checked on the template as if it were the event.
        let probe_id = OwnedEventId::try_from("$template-probe")
            .map_err(|e| Error::internal(e.to_string()))?;
        let probe = Pdu::from_json(probe_id, room_id, json.clone())
            .map_err(|e| Error::internal(format!("reading a template failed: {e}")))?;
        auth::check_against_state(&rules, &probe, |kind, key| {
            self.state_event_in(&current, kind, key).ok().flatten()
        })
        .map_err(|e| Error::forbidden(format!("You may not {membership} this room: {e}")))?;
        Ok((info.version, json))
    }

    /// The room state before `event_id` and its full auth chain (`/state`,
    /// `/state_ids`, the `send_join` answer). 404 if we do not know the
    /// event's place in the room.
    pub fn state_and_auth_chain_before(
        &self,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<(Vec<Pdu>, Vec<Pdu>)> {
        let pdu = self
            .get_pdu(event_id)?
            .filter(|pdu| pdu.room_id == room_id)
            .ok_or_else(|| Error::not_found("Unknown event"))?;
        if !self.has_state_at(event_id)? {
            return Err(Error::not_found(
                "The state at this event is not known here",
            ));
        }
        let state_ids = self.state_ids_before(&pdu)?;
        let mut state = Vec::with_capacity(state_ids.len());
        for id in state_ids.values() {
            if let Some(pdu) = self.get_pdu(id)? {
                state.push(pdu);
            }
        }
        let auth_chain = self.auth_chain_pdus(state.iter().map(|p| p.event_id.clone()))?;
        Ok((state, auth_chain))
    }

    /// The stored events of the auth chain of `start` (`/event_auth`, the
    /// auth chain of a state answer), oldest first.
    pub fn auth_chain_pdus(
        &self,
        start: impl IntoIterator<Item = OwnedEventId>,
    ) -> Result<Vec<Pdu>> {
        let start: Vec<OwnedEventId> = start.into_iter().collect();
        let mut ids = self.auth_chain_ids(start.iter().cloned())?;
        // The chain of a state includes the state's own auth events but not
        // necessarily the state events themselves.
        for id in &start {
            ids.remove(id);
        }
        let mut chain = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(pdu) = self.get_pdu(&id)? {
                chain.push(pdu);
            }
        }
        chain.sort_by_key(|p| p.depth);
        Ok(chain)
    }

    /// The events between `earliest` and `latest` that a server is missing
    /// (`get_missing_events`): walking `prev_events` back from `latest`,
    /// not past `earliest` or below `min_depth`, at most `limit`, oldest
    /// first. Events `server` may not see are sent redacted.
    pub fn missing_events(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        earliest: &[OwnedEventId],
        latest: &[OwnedEventId],
        limit: usize,
        min_depth: u64,
    ) -> Result<Vec<CanonicalJsonObject>> {
        let stop: HashSet<&OwnedEventId> = earliest.iter().collect();
        let mut seen: HashSet<OwnedEventId> = latest.iter().cloned().collect();
        let mut queue: Vec<OwnedEventId> = Vec::new();
        for id in latest {
            if let Some(pdu) = self.get_pdu(id)?.filter(|p| p.room_id == room_id) {
                queue.extend(pdu.prev_events);
            }
        }
        let mut found = Vec::new();
        let limit = limit.min(MAX_EVENTS_PER_ANSWER);
        while let Some(id) = queue.pop() {
            if found.len() >= limit {
                break;
            }
            if stop.contains(&id) || !seen.insert(id.clone()) {
                continue;
            }
            let Some(pdu) = self.get_pdu(&id)?.filter(|p| p.room_id == room_id) else {
                continue;
            };
            if pdu.depth < min_depth {
                continue;
            }
            queue.extend(pdu.prev_events.iter().cloned());
            found.push(pdu);
        }
        found.sort_by_key(|p| p.depth);
        self.visible_to_server(server, found)
    }

    /// Up to `limit` events from `from` (included) backwards through
    /// `prev_events` (`backfill`), newest first, redacted where `server`
    /// may not see them.
    pub fn backfill(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        from: &[OwnedEventId],
        limit: usize,
    ) -> Result<Vec<CanonicalJsonObject>> {
        let limit = limit.min(MAX_EVENTS_PER_ANSWER);
        // Highest depth first, so the answer is the most recent history.
        let mut frontier: BTreeSet<(u64, OwnedEventId)> = BTreeSet::new();
        let mut seen: HashSet<OwnedEventId> = HashSet::new();
        for id in from {
            if let Some(pdu) = self.get_pdu(id)?.filter(|p| p.room_id == room_id) {
                if seen.insert(pdu.event_id.clone()) {
                    frontier.insert((pdu.depth, pdu.event_id));
                }
            }
        }
        let mut found = Vec::new();
        while let Some((_, id)) = frontier.pop_last() {
            if found.len() >= limit {
                break;
            }
            let Some(pdu) = self.get_pdu(&id)? else {
                continue;
            };
            for prev in &pdu.prev_events {
                if seen.insert(prev.clone()) {
                    if let Some(prev_pdu) = self.get_pdu(prev)? {
                        frontier.insert((prev_pdu.depth, prev.clone()));
                    }
                }
            }
            found.push(pdu);
        }
        self.visible_to_server(server, found)
    }

    /// The PDUs as `server` may receive them: whole if it may see them,
    /// redacted otherwise (Server-Server API: events a server may not see
    /// are sent redacted, so the DAG stays connected).
    fn visible_to_server(
        &self,
        server: &ServerName,
        pdus: Vec<Pdu>,
    ) -> Result<Vec<CanonicalJsonObject>> {
        let mut out = Vec::with_capacity(pdus.len());
        for pdu in pdus {
            if self.server_can_see(server, &pdu)? {
                out.push(std::sync::Arc::unwrap_or_clone(pdu.json));
                continue;
            }
            let Some(info) = self.room_info(&pdu.room_id)? else {
                continue;
            };
            let rules = Self::rules(&info.version)?;
            let redacted =
                feathur_federation::redact_pdu(std::sync::Arc::unwrap_or_clone(pdu.json), &rules)
                    .map_err(|e| Error::internal(format!("redacting an event failed: {e}")))?;
            out.push(redacted);
        }
        Ok(out)
    }

    /// History visibility for a server (Client-Server API "History
    /// visibility", applied to servers as the Server-Server API asks): by
    /// the visibility and the server's members' memberships at the event.
    pub fn server_can_see(&self, server: &ServerName, pdu: &Pdu) -> Result<bool> {
        if server == self.server_name {
            return Ok(true);
        }
        let state = self.state_before(pdu)?;
        let visibility = self
            .state_event_in(&state, &StateEventType::RoomHistoryVisibility, "")?
            .and_then(|e| serde_json::from_str::<HistoryVisibilityContent>(e.content.get()).ok())
            .map(|c| c.history_visibility)
            .unwrap_or_else(|| "shared".to_owned());
        if visibility == "world_readable" {
            return Ok(true);
        }
        // The server's members' memberships at the event.
        let mut at_event = Vec::new();
        for (&key, &event) in state.iter() {
            let Some((kind, state_key)) = self.ids.state_key_of(key)? else {
                continue;
            };
            if kind != StateEventType::RoomMember {
                continue;
            }
            let Ok(user) = UserId::parse(state_key.as_str()) else {
                continue;
            };
            if user.server_name() != server {
                continue;
            }
            if let Some(id) = self.ids.event_id(event)? {
                if let Some(member) = self.get_pdu(&id)? {
                    at_event.extend(Membership::of(&member));
                }
            }
        }
        if pdu.kind == ruma::events::TimelineEventType::RoomMember
            && pdu
                .state_key
                .as_deref()
                .and_then(|k| UserId::parse(k).ok())
                .is_some_and(|u| u.server_name() == server)
        {
            // A server always sees its own users' membership events.
            return Ok(true);
        }
        Ok(match visibility.as_str() {
            "shared" => {
                at_event.contains(&Membership::Join) || self.server_in_room(server, &pdu.room_id)?
            }
            "invited" => {
                at_event.contains(&Membership::Join) || at_event.contains(&Membership::Invite)
            }
            _ => at_event.contains(&Membership::Join),
        })
    }
}
