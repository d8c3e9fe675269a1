//! The published room directory (Client-Server API "Published room
//! directory": `/directory/list/room/{roomId}`, `GET`/`POST /publicRooms`).
//!
//! Every published room is listed, whatever its join rule: publishing is the
//! decision, and each entry says how the room can be joined. Entries are
//! read from current state on each request and ordered by joined members
//! (most first), then room id. `since` tokens name the boundary entry of the
//! page they came from (`n`: entries after it, `p`: entries before it), so
//! pages stay consistent while rooms are published or unpublished.

use std::{cmp::Reverse, collections::HashMap};

use ruma::{
    directory::{Filter, PublicRoomsChunk, PublicRoomsChunkInit, RoomNetwork, RoomTypeFilter},
    events::StateEventType,
    room::{JoinRuleKind, RoomType},
    OwnedRoomId, RoomAliasId, RoomId, ServerName, UInt,
};
use serde_json::Value;

use super::{Directory, Requester};
use crate::{
    error::{Error, Result},
    rooms::{Membership, Rooms},
};

/// Entries per page when the client gives no (or a zero) `limit`.
const DEFAULT_LIMIT: usize = 100;
/// The most entries one page holds.
const MAX_LIMIT: usize = 500;

/// One `/publicRooms` request, as the API layer parsed it.
pub struct PublicRoomsQuery<'a> {
    /// The directory asked for; `None` or our name for ours.
    pub server: Option<&'a ServerName>,
    pub limit: Option<UInt>,
    pub since: Option<&'a str>,
    pub filter: &'a Filter,
    pub network: &'a RoomNetwork,
}

/// One page of the directory.
pub struct PublicRoomsPage {
    pub chunk: Vec<PublicRoomsChunk>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    /// How many rooms match the query in all pages.
    pub total_room_count_estimate: u64,
}

/// The directory order: most joined members first, then room id.
type SortKey = (Reverse<u64>, OwnedRoomId);

enum Since {
    After(SortKey),
    Before(SortKey),
}

fn make_token(direction: char, key: &SortKey) -> String {
    format!("{direction}{}_{}", key.0 .0, key.1)
}

fn parse_token(token: &str) -> Result<Since> {
    let invalid = || Error::invalid_param(format!("Invalid pagination token {token:?}"));
    let mut chars = token.chars();
    let direction = chars.next().ok_or_else(invalid)?;
    let (members, room_id) = chars.as_str().split_once('_').ok_or_else(invalid)?;
    let members = members.parse::<u64>().map_err(|_| invalid())?;
    let room_id = RoomId::parse(room_id).map_err(|_| invalid())?;
    let key = (Reverse(members), room_id);
    match direction {
        'n' => Ok(Since::After(key)),
        'p' => Ok(Since::Before(key)),
        _ => Err(invalid()),
    }
}

/// The content of the current state event `(kind, "")` of each listed kind.
fn current_contents(
    rooms: &Rooms,
    room_id: &RoomId,
    kinds: &[&str],
) -> Result<HashMap<String, Value>> {
    let mut contents = HashMap::new();
    for ((kind, state_key), event_id) in rooms.current_state_ids(room_id)? {
        let kind = kind.to_string();
        if !state_key.is_empty() || !kinds.contains(&kind.as_str()) {
            continue;
        }
        if let Some(pdu) = rooms.get_pdu(&event_id)? {
            contents.insert(
                kind,
                serde_json::from_str(pdu.content.get()).unwrap_or_default(),
            );
        }
    }
    Ok(contents)
}

/// Whether the room's current history visibility is `world_readable`.
pub(super) fn world_readable(rooms: &Rooms, room_id: &RoomId) -> Result<bool> {
    Ok(rooms
        .current_state_event(room_id, &StateEventType::RoomHistoryVisibility, "")?
        .and_then(|pdu| serde_json::from_str::<Value>(pdu.content.get()).ok())
        .is_some_and(|c| c["history_visibility"] == "world_readable"))
}

/// A room's directory entry, from its current state.
fn summary(rooms: &Rooms, room_id: &RoomId) -> Result<PublicRoomsChunk> {
    let state = current_contents(
        rooms,
        room_id,
        &[
            "m.room.create",
            "m.room.name",
            "m.room.topic",
            "m.room.canonical_alias",
            "m.room.avatar",
            "m.room.join_rules",
            "m.room.history_visibility",
            "m.room.guest_access",
        ],
    )?;
    let text = |kind: &str, field: &str| {
        state
            .get(kind)
            .and_then(|c| c.get(field))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
    };
    let joined = rooms
        .members(room_id)?
        .iter()
        .filter(|(_, m)| *m == Membership::Join)
        .count();
    let mut chunk = PublicRoomsChunk::from(PublicRoomsChunkInit {
        num_joined_members: UInt::new_saturating(joined as u64),
        room_id: room_id.to_owned(),
        world_readable: text("m.room.history_visibility", "history_visibility").as_deref()
            == Some("world_readable"),
        guest_can_join: text("m.room.guest_access", "guest_access").as_deref() == Some("can_join"),
    });
    chunk.name = text("m.room.name", "name");
    chunk.topic = text("m.room.topic", "topic");
    chunk.canonical_alias =
        text("m.room.canonical_alias", "alias").and_then(|alias| RoomAliasId::parse(alias).ok());
    chunk.avatar_url = text("m.room.avatar", "url").map(Into::into);
    // Without a join rules event only invited users may join (auth rules).
    chunk.join_rule = text("m.room.join_rules", "join_rule").map_or(JoinRuleKind::Invite, |rule| {
        JoinRuleKind::from(rule.as_str())
    });
    chunk.room_type = text("m.room.create", "type").map(|t| RoomType::from(t.as_str()));
    Ok(chunk)
}

/// `filter.generic_search_term` (case-insensitive, in name, topic, canonical
/// alias and room id) and `filter.room_types` (`null` = rooms without a type).
fn matches(filter: &Filter, room: &PublicRoomsChunk) -> bool {
    let term_ok = filter.generic_search_term.as_deref().is_none_or(|term| {
        let term = term.to_lowercase();
        [
            room.name.as_deref(),
            room.topic.as_deref(),
            room.canonical_alias.as_ref().map(|a| a.as_str()),
            Some(room.room_id.as_str()),
        ]
        .into_iter()
        .flatten()
        .any(|field| field.to_lowercase().contains(&term))
    });
    let type_ok = filter.room_types.is_empty()
        || filter.room_types.iter().any(|wanted| match wanted {
            RoomTypeFilter::Default => room.room_type.is_none(),
            other => other.as_str() == room.room_type.as_ref().map(RoomType::as_str),
        });
    term_ok && type_ok
}

impl Directory {
    /// `GET /directory/list/room/{roomId}`: whether the room is published;
    /// 404 `M_NOT_FOUND` for a room this server does not know.
    pub fn is_published(&self, rooms: &Rooms, room_id: &RoomId) -> Result<bool> {
        if rooms.room_info(room_id)?.is_none() {
            return Err(Error::not_found(format!("Unknown room {room_id}")));
        }
        Ok(self.published.contains(&room_id.to_owned())?)
    }

    /// Publishes or unpublishes a room without any check: for `createRoom`
    /// with `visibility: public`, on behalf of the room's creator.
    pub async fn set_published(&self, room_id: &RoomId, published: bool) -> Result<()> {
        let mut batch = self.storage.batch();
        if published {
            batch.put(&self.published, &room_id.to_owned(), &())?;
        } else {
            batch.delete(&self.published, &room_id.to_owned());
        }
        self.storage.commit(batch).await?;
        tracing::info!(%room_id, published, "room directory visibility changed");
        Ok(())
    }

    /// `PUT /directory/list/room/{roomId}`: 404 for an unknown room; allowed
    /// to joined members who may send `m.room.canonical_alias` (the room's
    /// curators: whoever decides how the room is addressed decides whether
    /// it is advertised) and to administrators; else 403.
    pub async fn set_visibility(
        &self,
        rooms: &Rooms,
        requester: Requester<'_>,
        room_id: &RoomId,
        published: bool,
    ) -> Result<()> {
        if rooms.room_info(room_id)?.is_none() {
            return Err(Error::not_found(format!("Unknown room {room_id}")));
        }
        let allowed = requester.is_admin
            || (rooms.is_joined(room_id, requester.user_id)?
                && rooms.can_send_state(
                    room_id,
                    requester.user_id,
                    StateEventType::RoomCanonicalAlias,
                )?);
        if !allowed {
            return Err(Error::forbidden(
                "Only room members allowed to change the canonical alias may change \
                 the room's directory visibility",
            ));
        }
        self.set_published(room_id, published).await
    }

    /// `GET`/`POST /publicRooms`: one page of the published rooms matching
    /// the query. Another server's directory needs federation (404 for now);
    /// no third-party network has rooms here, so asking for one lists none.
    pub fn public_rooms(
        &self,
        rooms: &Rooms,
        query: PublicRoomsQuery<'_>,
    ) -> Result<PublicRoomsPage> {
        if query
            .server
            .is_some_and(|server| server != self.server_name)
        {
            return Err(Error::not_found(
                "Listing another server's room directory needs federation, which is not \
                 available yet",
            ));
        }
        let since = query.since.map(parse_token).transpose()?;
        let mut entries: Vec<(SortKey, PublicRoomsChunk)> = Vec::new();
        if !matches!(query.network, RoomNetwork::ThirdParty(_)) {
            for row in self.published.iter() {
                let (room_id, ()) = row?;
                if rooms.room_info(&room_id)?.is_none() {
                    continue;
                }
                let room = summary(rooms, &room_id)?;
                if matches(query.filter, &room) {
                    entries.push(((Reverse(room.num_joined_members.into()), room_id), room));
                }
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));

        let total = entries.len();
        let limit = query
            .limit
            .and_then(|l| usize::try_from(u64::from(l)).ok())
            .filter(|&l| l > 0)
            .map_or(DEFAULT_LIMIT, |l| l.min(MAX_LIMIT));
        let (start, end) = match &since {
            None => (0, limit.min(total)),
            Some(Since::After(key)) => {
                let start = entries.partition_point(|(k, _)| k <= key);
                (start, (start + limit).min(total))
            }
            Some(Since::Before(key)) => {
                let end = entries.partition_point(|(k, _)| k < key);
                (end.saturating_sub(limit), end)
            }
        };
        let (next_batch, prev_batch) = if start < end {
            (
                (end < total).then(|| make_token('n', &entries[end - 1].0)),
                (start > 0).then(|| make_token('p', &entries[start].0)),
            )
        } else {
            (None, None)
        };
        let chunk = entries.drain(start..end).map(|(_, room)| room).collect();
        Ok(PublicRoomsPage {
            chunk,
            next_batch,
            prev_batch,
            total_room_count_estimate: total as u64,
        })
    }
}
