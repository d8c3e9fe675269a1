//! `GET /rooms/{roomId}/context/{eventId}` (Client-Server API "Event
//! context"): the events around one event, and the room state there.

use std::collections::HashSet;

use ruma::{
    api::client::filter::{RoomEventFilter, UrlFilter},
    events::{StateEventType, TimelineEventType},
    EventId, OwnedUserId, RoomId, UserId,
};
use serde_json::{Map, Value};

use super::{timeline::Direction, Pdu, Rooms};
use crate::error::{Error, Result};

/// The answer to `/context`; events carry their bundled aggregations.
#[derive(Debug)]
pub struct Context {
    pub event: Pdu,
    /// Newest first, as the spec orders `events_before`.
    pub before: Vec<Pdu>,
    /// Oldest first.
    pub after: Vec<Pdu>,
    /// A `/messages` token to page backwards from the oldest event returned.
    pub start: u64,
    /// A `/messages` token to page forwards from the newest event returned.
    pub end: u64,
    /// The state after the last event returned (filtered like the events).
    pub state: Vec<Pdu>,
}

impl Rooms {
    /// Up to `limit` visible events around `event_id`: `limit / 2` before
    /// and the rest after, as Synapse splits it (the spec only says the
    /// limit counts both lists). `filter` applies to both lists and to the
    /// state, never to the event itself. 404 when the event is not visible.
    pub fn context(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
        limit: usize,
        filter: &RoomEventFilter,
    ) -> Result<Context> {
        let event = self.visible_pdu(user_id, room_id, event_id)?;
        let Some((shortroomid, position)) = self.timeline.position_of(event_id)? else {
            return Err(Error::not_found("Event not found"));
        };
        let before_limit = limit / 2;
        let scan = |dir, limit| self.scan(user_id, shortroomid, position, dir, limit, filter);
        let (before, start) = scan(Direction::Backward, before_limit)?;
        let (after, end) = scan(Direction::Forward, limit - before_limit)?;

        let last = after.last().unwrap_or(&event);
        let mut state = (*self.state_before(last)?).clone();
        if let Some(state_key) = &last.state_key {
            let kind = StateEventType::from(last.kind.to_string());
            let short = self.ids.state_key(&kind, state_key)?;
            if let (Some(key), Some(event)) = (short, self.ids.event(&last.event_id)?) {
                state.insert(key, event);
            }
        }
        // Lazy-loading members: only the senders of the events returned.
        let senders: Option<HashSet<&OwnedUserId>> = (!filter.lazy_load_options.is_disabled())
            .then(|| {
                let events = before.iter().chain(&after);
                events.chain([&event]).map(|e| &e.sender).collect()
            });
        let mut state_events = Vec::new();
        for (_, id) in self.resolve_state_map(&state)? {
            let Some(pdu) = self.get_pdu(&id)? else {
                continue;
            };
            let lazy_skip = pdu.kind == TimelineEventType::RoomMember
                && senders.as_ref().is_some_and(|senders| {
                    !senders
                        .iter()
                        .any(|s| pdu.state_key.as_deref() == Some(s.as_str()))
                });
            if matches_filter(filter, &pdu) && !lazy_skip {
                state_events.push(pdu);
            }
        }

        let bundle = |events: Vec<Pdu>| -> Result<Vec<Pdu>> {
            events
                .into_iter()
                .map(|e| self.with_aggregations(user_id, e))
                .collect()
        };
        Ok(Context {
            event: self.with_aggregations(user_id, event)?,
            before: bundle(before)?,
            after: bundle(after)?,
            start,
            end,
            state: state_events,
        })
    }

    /// Up to `limit` visible events matching `filter` strictly beyond
    /// `position` in `dir`, and the position of the last event looked at
    /// (`position` itself when none): where `/messages` continues.
    fn scan(
        &self,
        user_id: &UserId,
        shortroomid: u64,
        position: u64,
        dir: Direction,
        limit: usize,
        filter: &RoomEventFilter,
    ) -> Result<(Vec<Pdu>, u64)> {
        let (mut events, mut cursor) = (Vec::new(), position);
        while events.len() < limit {
            let page = self
                .timeline
                .page(shortroomid, Some(cursor), dir, limit.max(16))?;
            let exhausted = page.len() < limit.max(16);
            for (at, id) in page {
                cursor = at;
                if let Some(pdu) = self.get_pdu(&id)? {
                    if matches_filter(filter, &pdu) && self.can_see(user_id, &pdu)? {
                        events.push(pdu);
                        if events.len() == limit {
                            break;
                        }
                    }
                }
            }
            if exhausted {
                break;
            }
        }
        Ok((events, cursor))
    }
}

/// Whether `pdu` passes a `RoomEventFilter` ("Filtering"): rooms, senders,
/// types (with `*` wildcards; `not_*` win) and `contains_url`. The filter's
/// own `limit` is not applied: the endpoint's `limit` is.
pub fn matches_filter(filter: &RoomEventFilter, pdu: &Pdu) -> bool {
    let kind = pdu.kind.to_string();
    let listed = |list: &[String]| list.iter().any(|pattern| glob(pattern, &kind));
    let has_url = || {
        serde_json::from_str::<Map<String, Value>>(pdu.content.get())
            .is_ok_and(|content| content.get("url").is_some_and(Value::is_string))
    };
    !filter.not_rooms.contains(&pdu.room_id)
        && filter
            .rooms
            .as_ref()
            .is_none_or(|rooms| rooms.contains(&pdu.room_id))
        && !filter.not_senders.contains(&pdu.sender)
        && filter
            .senders
            .as_ref()
            .is_none_or(|senders| senders.contains(&pdu.sender))
        && !listed(&filter.not_types)
        && filter.types.as_deref().is_none_or(listed)
        && match filter.url_filter {
            Some(UrlFilter::EventsWithUrl) => has_url(),
            Some(UrlFilter::EventsWithoutUrl) => !has_url(),
            _ => true,
        }
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use ruma::{OwnedEventId, RoomVersionId};
    use serde_json::json;

    use super::*;
    use crate::rooms::testing::{fixture, no_filter, user};

    #[tokio::test]
    async fn context_splits_the_limit_and_its_tokens_continue_with_messages() {
        let f = fixture();
        let (alice, bob) = (user("alice"), user("bob"));
        let room = f.room(&alice, RoomVersionId::V11, &[]).await;
        f.join(&room, &bob).await;
        let mut ids: Vec<OwnedEventId> = Vec::new();
        for n in 0..20 {
            let who = if n % 2 == 0 { &alice } else { &bob };
            ids.push(f.text(&room, who, &format!("m{n}")).await);
        }
        let body = |pdu: &Pdu| pdu.to_client_event()["content"]["body"].clone();
        let ctx = f
            .rooms
            .context(&bob, &room, &ids[10], 5, &no_filter())
            .unwrap();
        assert_eq!(ctx.event.event_id, ids[10]);
        let before: Vec<_> = ctx.before.iter().map(body).collect();
        let after: Vec<_> = ctx.after.iter().map(body).collect();
        assert_eq!(
            (before, after),
            (
                vec![json!("m9"), json!("m8")],
                vec![json!("m11"), json!("m12"), json!("m13")]
            )
        );
        let older = f
            .rooms
            .messages(
                &bob,
                &room,
                Some(ctx.start),
                Direction::Backward,
                2,
                &no_filter(),
            )
            .unwrap();
        let older: Vec<_> = older.events.iter().map(body).collect();
        assert_eq!(older, [json!("m7"), json!("m6")]);
        let newer = f
            .rooms
            .messages(
                &bob,
                &room,
                Some(ctx.end),
                Direction::Forward,
                1,
                &no_filter(),
            )
            .unwrap();
        assert_eq!(body(&newer.events[0]), "m14");
        // The state is the room's at the last event returned.
        assert!(ctx
            .state
            .iter()
            .any(|e| e.state_key.as_deref() == Some(bob.as_str())));

        // Only Alice's messages, and lazy-loaded members: hers alone.
        let mut filter = no_filter();
        filter.senders = Some(vec![alice.clone()]);
        filter.lazy_load_options = ruma::api::client::filter::LazyLoadOptions::Enabled {
            include_redundant_members: false,
        };
        let ctx = f.rooms.context(&bob, &room, &ids[19], 4, &filter).unwrap();
        let before: Vec<_> = ctx.before.iter().map(body).collect();
        assert_eq!(before, [json!("m18"), json!("m16")]);
        assert!(ctx.after.is_empty());
        let members: Vec<_> = ctx
            .state
            .iter()
            .filter(|e| e.kind == TimelineEventType::RoomMember)
            .collect();
        assert_eq!(members.len(), 1);
        assert_eq!(members[0].state_key.as_deref(), Some(alice.as_str()));
        assert_eq!(ctx.end, f.rooms.position_of(&ids[19]).unwrap().unwrap());

        let nowhere = ruma::owned_event_id!("$nowhere");
        assert!(f
            .rooms
            .context(&bob, &room, &nowhere, 4, &no_filter())
            .is_err());
    }

    #[test]
    fn glob_matches_wildcards() {
        for (pattern, text, expected) in [
            ("m.room.message", "m.room.message", true),
            ("m.room.message", "m.room.messages", false),
            ("m.room.*", "m.room.member", true),
            ("m.room.*", "m.reaction", false),
            ("*", "anything", true),
            ("*.member", "m.room.member", true),
            ("m.*.m*r", "m.room.member", true),
            ("m.*.m*r", "m.room.message", false),
            ("a*a", "a", false),
            ("", "", true),
        ] {
            assert_eq!(glob(pattern, text), expected, "{pattern} vs {text}");
        }
    }
}
