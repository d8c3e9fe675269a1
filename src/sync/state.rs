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

use std::collections::BTreeSet;

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
    pub(super) fn room_state(&self, rooms: &Rooms, q: &StateQuery<'_>) -> Result<State> {
        let after = q.request.use_state_after;
        let target = match (after, q.timeline.first()) {
            (false, Some((_, first))) => rooms.state_ids_before(first)?,
            _ => rooms.state_ids_at(q.room_id, q.upto)?,
        };
        let incremental = !q.full && q.since.is_some();
        let base = match q.since {
            Some(since) if incremental => Some(rooms.state_ids_at(q.room_id, since)?),
            _ => None,
        };
        let changed = |key: &(StateEventType, String), id: &OwnedEventId| {
            base.as_ref().is_none_or(|base| base.get(key) != Some(id))
        };
        let lazy = match q.request.filter.room.state.lazy_load_options {
            LazyLoadOptions::Disabled => None,
            LazyLoadOptions::Enabled {
                include_redundant_members,
            } => Some(include_redundant_members),
        };

        // (member for `m.room.member` events, event id)
        let mut ids: Vec<(Option<OwnedUserId>, OwnedEventId)> = Vec::new();
        for (key, id) in &target {
            let is_member = key.0 == StateEventType::RoomMember;
            // Lazy loading: member events here only as changes in the gap.
            if changed(key, id) && (lazy.is_none() || !is_member || incremental) {
                let member = is_member
                    .then(|| OwnedUserId::try_from(key.1.as_str()).ok())
                    .flatten();
                ids.push((member, id.clone()));
            }
        }
        let device = q
            .request
            .device
            .as_ref()
            .map(|d| (q.user.to_owned(), d.clone()));
        if let Some(redundant) = lazy {
            let mut needed: BTreeSet<OwnedUserId> = q
                .timeline
                .iter()
                .map(|(_, pdu)| pdu.sender.clone())
                .collect();
            needed.insert(q.user.to_owned());
            for member in needed {
                let key = (StateEventType::RoomMember, member.to_string());
                let Some(id) = target.get(&key) else {
                    continue;
                };
                if ids.iter().any(|(_, listed)| listed == id) {
                    continue;
                }
                let known = match (&device, q.since) {
                    (Some(device), Some(since)) if incremental && !redundant => self
                        .sent_members
                        .already_sent(device, &q.room_id.to_owned(), &member, id, since),
                    _ => false,
                };
                if !known {
                    ids.push((Some(member), id.clone()));
                }
            }
        }

        let mut events = Vec::new();
        let mut sent_members = Vec::new();
        for (member, event_id) in ids {
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
        if let (Some(_), Some(device)) = (lazy, &device) {
            let room = q.room_id.to_owned();
            self.sent_members
                .record(device, &room, sent_members, q.upto, !incremental);
        }
        let events = StateEvents::with_events(events);
        Ok(if after {
            State::After(events)
        } else {
            State::Before(events)
        })
    }
}
