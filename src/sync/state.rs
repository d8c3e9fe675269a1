//! A room's `state` (or `state_after`) section in `/sync` (Client-Server
//! API "Syncing", `GET /_matrix/client/v3/sync`).
//!
//! - **`state`** (default): the state at the *start* of the returned
//!   timeline ("state before the first timeline event"), as a delta from the
//!   state at `since` on an incremental sync, in full on an initial or
//!   `full_state` sync (or when the user joined within the range).
//! - **`state_after`** (`use_state_after=true`, Matrix 1.16, MSC4222): the
//!   state at the *end* of the timeline (the room's state at the response's
//!   position), delta from `since` or full as above. `state` is then
//!   omitted, and clients take no state from the timeline, so the delta
//!   includes the state events inside the timeline too.
//! - **Lazy-loading room members** (`room.state.lazy_load_members`;
//!   "Filtering" → "Lazy-loading room members"): non-member state is
//!   unchanged; of the `m.room.member` events only these are sent:
//!   - the members of the senders of the returned timeline events and the
//!     syncing user's own membership, as of the start (`state`) or end
//!     (`state_after`) of the timeline; on an incremental sync those this
//!     device was already sent are left out ([`super::lazy`]) unless
//!     `include_redundant_members` is set;
//!   - on an incremental sync, every member event that changed between
//!     `since` and the start (end) of the timeline: the spec requires the
//!     membership changes in the gap of a limited sync "regardless as to
//!     whether or not they are redundant" so joins, leaves and profile
//!     changes are not lost.
//!
//! The state filter's other fields (`types`, `senders`, …) then apply.

use std::{collections::BTreeSet, sync::Arc};

use ruma::{
    api::client::sync::sync_events::v3::StateEvents,
    api::client::{filter::LazyLoadOptions, sync::sync_events::v3::State},
    events::StateEventType,
    OwnedEventId, OwnedUserId, RoomId, UserId,
};

use super::{v2::sync_event, SyncRequest, SyncService};
use crate::{
    error::Result,
    rooms::{sync_support::matches_filter, Pdu, Rooms},
};

/// What one room's state section is computed from.
pub(super) struct StateQuery<'a> {
    pub user: &'a UserId,
    pub room_id: &'a RoomId,
    pub request: &'a SyncRequest,
    pub since: Option<u64>,
    /// The end of the range: the response's `next_batch` for joined rooms,
    /// the leave for left ones.
    pub upto: u64,
    /// Send all state, not a delta from `since`.
    pub full: bool,
    /// The returned timeline, oldest first.
    pub timeline: &'a [(u64, Pdu)],
}

impl SyncService {
    /// The room's `state` or `state_after` section (see the module docs).
    ///
    /// Works on short-id snapshots: the delta from `since` is a compare of
    /// two maps, and only the entries sent are resolved to events, so a room
    /// of thousands of members costs little when little changed.
    ///
    /// Also says whether any `m.room.member` event was sent (the room
    /// summary is recomputed only then).
    pub(super) fn room_state(&self, rooms: &Rooms, q: &StateQuery<'_>) -> Result<(State, bool)> {
        let after = q.request.use_state_after;
        let target = match (after, q.timeline.first()) {
            (false, Some((_, first))) => rooms.state_snapshot_before(first)?,
            _ => rooms.state_snapshot_at(q.room_id, q.upto)?,
        };
        let incremental = !q.full && q.since.is_some();
        let base = match q.since {
            Some(since) if incremental => Some(rooms.state_snapshot_at(q.room_id, since)?),
            _ => None,
        };
        let lazy = match q.request.filter.room.state.lazy_load_options {
            LazyLoadOptions::Disabled => None,
            LazyLoadOptions::Enabled {
                include_redundant_members,
            } => Some(include_redundant_members),
        };

        // (member for `m.room.member` events, short event id)
        let mut ids: Vec<(Option<OwnedUserId>, u64)> = Vec::new();
        let unchanged = base
            .as_ref()
            .is_some_and(|base| Arc::ptr_eq(base, &target) || **base == *target);
        if !unchanged {
            for (&key, &event) in target.iter() {
                if base
                    .as_ref()
                    .is_some_and(|base| base.get(&key) == Some(&event))
                {
                    continue;
                }
                let Some((kind, state_key)) = rooms.state_key_of(key)? else {
                    continue;
                };
                let is_member = kind == StateEventType::RoomMember;
                // Lazy loading: member events here only as changes in the gap.
                if lazy.is_none() || !is_member || incremental {
                    let member = is_member
                        .then(|| OwnedUserId::try_from(state_key).ok())
                        .flatten();
                    ids.push((member, event));
                }
            }
        }
        let device = q
            .request
            .device
            .as_ref()
            .map(|d| (q.user.to_owned(), d.clone()));
        if let Some(redundant) = lazy {
            let mut needed: BTreeSet<&UserId> =
                q.timeline.iter().map(|(_, pdu)| &*pdu.sender).collect();
            needed.insert(q.user);
            for member in needed {
                let Some(key) =
                    rooms.short_state_key(&StateEventType::RoomMember, member.as_str())?
                else {
                    continue;
                };
                let Some(&event) = target.get(&key) else {
                    continue;
                };
                if ids.iter().any(|(_, listed)| *listed == event) {
                    continue;
                }
                let event_id = || -> Result<Option<OwnedEventId>> { rooms.event_id_of(event) };
                let known = match (&device, q.since) {
                    (Some(device), Some(since)) if incremental && !redundant => match event_id()? {
                        Some(id) => self.sent_members.already_sent(
                            device,
                            &q.room_id.to_owned(),
                            member,
                            &id,
                            since,
                        ),
                        None => true,
                    },
                    _ => false,
                };
                if !known {
                    ids.push((Some(member.to_owned()), event));
                }
            }
        }

        let mut events = Vec::new();
        let mut sent_members = Vec::new();
        for (member, event) in ids {
            let Some(event_id) = rooms.event_id_of(event)? else {
                continue;
            };
            let Some(pdu) = rooms.get_pdu(&event_id)? else {
                continue;
            };
            if matches_filter(&q.request.filter.room.state, &pdu) {
                events.push(sync_event(&pdu)?);
                if let Some(member) = member {
                    sent_members.push((member, event_id));
                }
            }
        }
        let members_sent = !sent_members.is_empty();
        if let (Some(_), Some(device)) = (lazy, &device) {
            let room = q.room_id.to_owned();
            self.sent_members
                .record(device, &room, sent_members, q.upto, !incremental);
        }
        let events = StateEvents::with_events(events);
        let state = if after {
            State::After(events)
        } else {
            State::Before(events)
        };
        Ok((state, members_sent))
    }
}
