//! Event relationships (Client-Server API "Forming relationships between
//! events", "Relationships API", "Threading", "Event annotations and
//! reactions"): the relation indexes, the checks on new local relations,
//! `GET /relations` and `GET /threads`.
//!
//! Tables (key → value), written when an event whose content has an
//! `m.relates_to` with a `rel_type` is staged, and deleted when that event is
//! redacted ("when a child event is redacted then the relationship is
//! broken"; redaction strips `m.relates_to`):
//! - `eventidpos_relation`: (parent, child's stream position) → [`Relation`]:
//!   all children of an event in order; one seek per page
//! - `eventidreltypepos_relation`: (parent, rel_type, position) → [`Relation`]:
//!   the children of one relationship type (`/relations/{id}/{relType}`,
//!   thread summaries, duplicate annotations)
//! - `roomidpos_threadroot`: (short room id, position of the thread's newest
//!   reply) → thread root: a room's threads by latest activity (`/threads`)
//!
//! Positions are the timeline's stream positions, so children sort in the
//! order the server appended them (the spec's "topological" order), and the
//! pagination tokens are the `s<position>` tokens of `/messages` and `/sync`,
//! which the Relationships API accepts as `from`/`to`. The tables and their
//! scans are in `index`.

mod index;

use std::collections::HashSet;

use axum::http::StatusCode;
use ruma::{api::error::ErrorKind, EventId, RoomId, UserId};

use self::index::Rows;
pub(super) use self::index::{relates_to, Relation, RelationIndex};
use super::{timeline::Direction, NewEvent, Pdu, Rooms};
use crate::{
    error::{Error, Result},
    storage::Batch,
};

pub(super) const THREAD: &str = "m.thread";
pub(super) const ANNOTATION: &str = "m.annotation";
pub(super) const REFERENCE: &str = "m.reference";
pub(super) const REPLACE: &str = "m.replace";

/// How deep `recurse=true` follows relations: the spec asks for at least 3.
pub const MAX_RECURSION_DEPTH: u32 = 3;

/// `GET /relations/{eventId}[/{relType}[/{eventType}]]` after the path's
/// parent: filters, `s<position>` bounds and paging.
#[derive(Debug, Clone, Copy)]
pub struct RelationsQuery<'a> {
    pub rel_type: Option<&'a str>,
    pub event_type: Option<&'a str>,
    /// Exclusive: children strictly beyond this position in `dir`.
    pub from: Option<u64>,
    /// Inclusive: the child at this position is the last one returned.
    pub to: Option<u64>,
    pub dir: Direction,
    pub limit: usize,
    pub recurse: bool,
}

/// One page of `/relations`.
#[derive(Debug)]
pub struct RelationsPage {
    /// The children the user may see, with their bundled aggregations.
    pub events: Vec<Pdu>,
    /// Where the next page starts; `None` when there are no more.
    pub next: Option<u64>,
    /// How deep relations were followed, only when `recurse` was asked.
    pub recursion_depth: Option<u32>,
}

/// One page of `/threads`.
#[derive(Debug)]
pub struct ThreadsPage {
    /// Thread roots by latest activity, with their bundled aggregations.
    pub roots: Vec<Pdu>,
    /// Where the next page starts; `None` when there are no more.
    pub next: Option<u64>,
}

impl Rooms {
    /// Stage hook: indexes `pdu` under its parent when it declares a
    /// relationship. A parent in another room makes it no relationship; an
    /// unknown parent is indexed (children are checked again on read).
    pub(super) fn index_relation(
        &self,
        batch: &mut Batch,
        shortroomid: u64,
        position: u64,
        pdu: &Pdu,
    ) -> Result<()> {
        // Every staged event comes through here: skip the parse for the
        // many without a relationship. A PDU's content is canonical JSON, so
        // the key is never written with escapes.
        if !pdu.content.get().contains("\"m.relates_to\"") {
            return Ok(());
        }
        let Some(relates) = relates_to(&pdu.content) else {
            return Ok(());
        };
        if let Some(parent) = self.get_pdu(&relates.event_id)? {
            if parent.room_id != pdu.room_id {
                return Ok(());
            }
        }
        let relation = Relation {
            child: pdu.event_id.clone(),
            rel_type: relates.rel_type,
            kind: pdu.kind.to_string(),
            sender: pdu.sender.clone(),
            key: relates.key,
        };
        let parent = &relates.event_id;
        Ok(self
            .relations
            .add(batch, shortroomid, parent, position, &relation)?)
    }

    /// Redaction hook: `pdu` (as it was before redaction) no longer relates.
    pub(super) fn unindex_relation(&self, batch: &mut Batch, pdu: &Pdu) -> Result<()> {
        let Some(relates) = relates_to(&pdu.content) else {
            return Ok(());
        };
        let Some((shortroomid, position)) = self.timeline.position_of(&pdu.event_id)? else {
            return Ok(());
        };
        let (parent, rel_type) = (&relates.event_id, relates.rel_type.as_str());
        Ok(self
            .relations
            .remove(batch, shortroomid, parent, position, rel_type)?)
    }

    /// Rules for relations a local client sends: no thread off an event that
    /// is itself a child ("Validation of `m.thread` relationships": 400
    /// `M_UNKNOWN`), no second identical annotation from one sender
    /// ("Avoiding duplicate annotations": 400 `M_DUPLICATE_ANNOTATION`).
    pub(super) fn check_local_relation(
        &self,
        room_id: &RoomId,
        sender: &UserId,
        event: &NewEvent,
    ) -> Result<()> {
        let Some(relates) = relates_to(&event.content) else {
            return Ok(());
        };
        match relates.rel_type.as_str() {
            THREAD => {
                let parent = self.get_pdu(&relates.event_id)?;
                if parent.is_some_and(|p| p.room_id == room_id && relates_to(&p.content).is_some())
                {
                    return Err(Error::new(
                        StatusCode::BAD_REQUEST,
                        ErrorKind::Unknown,
                        "Cannot start a thread from an event with a relation",
                    ));
                }
            }
            ANNOTATION if relates.key.is_some() => {
                let kind = event.kind.to_string();
                let annotations = self.relations.children(
                    &relates.event_id,
                    Some(ANNOTATION),
                    None,
                    Direction::Forward,
                );
                for row in annotations {
                    let (_, existing) = row?;
                    if existing.sender == sender
                        && existing.kind == kind
                        && existing.key == relates.key
                    {
                        return Err(Error::new(
                            StatusCode::BAD_REQUEST,
                            ErrorKind::DuplicateAnnotation,
                            "You already sent this annotation",
                        ));
                    }
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// `GET /relations`: the children of an event the user may see, newest
    /// first by default. 404 when the parent is unknown or not visible, also
    /// to non-members ("Relationships API").
    pub fn relations(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        parent_id: &EventId,
        query: &RelationsQuery<'_>,
    ) -> Result<RelationsPage> {
        let parent = match self.visible_pdu(user_id, room_id, parent_id) {
            Err(e) if e.status() == StatusCode::FORBIDDEN => {
                return Err(Error::not_found("Event not found"))
            }
            result => result?,
        };
        let candidates: Rows<'_> = if query.recurse {
            Box::new(
                self.descendants(&parent.event_id, query)?
                    .into_iter()
                    .map(Ok),
            )
        } else {
            let children =
                self.relations
                    .children(&parent.event_id, query.rel_type, query.from, query.dir);
            Box::new(children.filter(|row| {
                row.as_ref()
                    .map_or(true, |(_, relation)| matches_type(query, relation))
            }))
        };
        let past_to = |position: u64| match (query.to, query.dir) {
            (Some(to), Direction::Backward) => position < to,
            (Some(to), Direction::Forward) => position > to,
            (None, _) => false,
        };
        let (mut events, mut next, mut last) = (Vec::new(), None, None);
        for row in candidates {
            let (position, relation) = row?;
            if past_to(position) {
                break;
            }
            if events.len() >= query.limit {
                next = last;
                break;
            }
            last = Some(position);
            if let Some(child) = self.get_pdu(&relation.child)? {
                if child.room_id == room_id && self.can_see(user_id, &child)? {
                    events.push(self.with_aggregations(user_id, child)?);
                }
            }
        }
        Ok(RelationsPage {
            events,
            next,
            recursion_depth: query.recurse.then_some(MAX_RECURSION_DEPTH),
        })
    }

    /// Every child matching the filters up to [`MAX_RECURSION_DEPTH`] levels
    /// down, following only matching children ("Relationships API": a match
    /// reached only through a non-matching event is left out), beyond
    /// `query.from` and sorted in `query.dir`.
    fn descendants(
        &self,
        parent: &EventId,
        query: &RelationsQuery<'_>,
    ) -> Result<Vec<(u64, Relation)>> {
        let (mut found, mut seen) = (Vec::new(), HashSet::new());
        let mut level = vec![parent.to_owned()];
        for _ in 0..MAX_RECURSION_DEPTH {
            let mut next_level = Vec::new();
            for id in &level {
                for row in self
                    .relations
                    .children(id, query.rel_type, None, Direction::Forward)
                {
                    let (position, relation) = row?;
                    if matches_type(query, &relation) && seen.insert(relation.child.clone()) {
                        next_level.push(relation.child.clone());
                        found.push((position, relation));
                    }
                }
            }
            if next_level.is_empty() {
                break;
            }
            level = next_level;
        }
        found.retain(|(position, _)| match (query.from, query.dir) {
            (Some(from), Direction::Backward) => *position < from,
            (Some(from), Direction::Forward) => *position > from,
            (None, _) => true,
        });
        found.sort_unstable_by_key(|(position, _)| *position);
        if query.dir == Direction::Backward {
            found.reverse();
        }
        Ok(found)
    }

    /// `GET /threads`: the room's thread roots the user may see, most
    /// recently active first; with `participated`, only threads whose root
    /// or a reply the user sent ("Server-side aggregation of `m.thread`
    /// relationships").
    pub fn threads(
        &self,
        user_id: &UserId,
        room_id: &RoomId,
        participated: bool,
        from: Option<u64>,
        limit: usize,
    ) -> Result<ThreadsPage> {
        self.check_can_read(room_id, user_id)?;
        let (mut roots, mut next, mut last) = (Vec::new(), None, None);
        let Some(shortroomid) = self.ids.room(room_id)? else {
            return Ok(ThreadsPage { roots, next });
        };
        for row in self.relations.thread_roots(shortroomid, from) {
            let (position, root_id) = row?;
            if roots.len() >= limit {
                next = last;
                break;
            }
            last = Some(position);
            let Some(root) = self.get_pdu(&root_id)? else {
                continue;
            };
            if root.room_id != room_id || !self.can_see(user_id, &root)? {
                continue;
            }
            if participated && !self.participated(user_id, &root)? {
                continue;
            }
            roots.push(self.with_aggregations(user_id, root)?);
        }
        Ok(ThreadsPage { roots, next })
    }

    /// Whether the user sent the thread root or a reply in the thread.
    pub(super) fn participated(&self, user_id: &UserId, root: &Pdu) -> Result<bool> {
        if root.sender == user_id {
            return Ok(true);
        }
        for row in self
            .relations
            .children(&root.event_id, Some(THREAD), None, Direction::Forward)
        {
            if row?.1.sender == user_id {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

fn matches_type(query: &RelationsQuery<'_>, relation: &Relation) -> bool {
    query.event_type.is_none_or(|kind| relation.kind == kind)
}
