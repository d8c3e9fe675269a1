//! Device-list changes between two stream positions: `/sync`'s
//! `device_lists` and `GET /keys/changes` (Client-Server API "Tracking the
//! device list for a user").
//!
//! `changed` holds the users who share a joined room with the caller (or
//! are the caller) and whose devices or keys changed in `(since, upto]` —
//! each change is a `pos_keychange` row at its own stream position, so a
//! change is reported by exactly the sync whose range holds it — and the
//! users who *began* to share a room with the caller in that range (their
//! devices are new to the caller's client). `left` holds the users who
//! stopped sharing any room with the caller in the range ("users who may
//! have left all the end-to-end encrypted rooms they previously shared").
//!
//! Membership changes are read from the rooms the caller is or was in that
//! have events in the range (a quiet room changed no membership): a
//! room the caller joined in the range contributes all its members; a room
//! the caller left contributes its members as `left` candidates; a room the
//! caller stayed in contributes the member events in the range (or, past
//! [`SCAN_LIMIT`] events, the difference of its joined members at both
//! ends). A candidate for `left` who still shares another room is dropped.
//! Rooms count whether encrypted or not: a superset the client tolerates.

use std::collections::BTreeSet;

use ruma::{
    events::{StateEventType, TimelineEventType},
    OwnedUserId, RoomId, UserId,
};

use super::{joined_rooms, E2ee};
use crate::{
    error::Result,
    rooms::{Membership, Rooms},
    storage::table::Order,
};

/// Events of one room scanned for membership changes before the room's
/// joined members at both ends are compared instead.
const SCAN_LIMIT: usize = 200;

/// What `device_lists` / `/keys/changes` report.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DeviceListChanges {
    pub changed: Vec<OwnedUserId>,
    pub left: Vec<OwnedUserId>,
}

impl E2ee {
    /// Device-list changes for `user` over the stream positions `(since, upto]`.
    pub fn device_list_changes(
        &self,
        rooms: &Rooms,
        user: &UserId,
        since: u64,
        upto: u64,
    ) -> Result<DeviceListChanges> {
        if since >= upto {
            return Ok(DeviceListChanges::default());
        }
        let mut shared_rooms = BTreeSet::new();
        let mut changed = BTreeSet::new();
        let mut left_candidates = BTreeSet::new();
        for (room, membership) in rooms.user_rooms(user)? {
            // No event in the range: no membership changed; the index says
            // whether the room is shared (one seek instead of a state lookup).
            let quiet = rooms
                .room_events_between(&room, Some(since), upto.saturating_add(1), 1)?
                .is_empty();
            if quiet {
                if membership == Membership::Join {
                    shared_rooms.insert(room);
                }
                continue;
            }
            let Some((member, position)) = rooms.member_event_at(&room, user, upto)? else {
                continue;
            };
            let fresh = position > since;
            match Membership::of(&member) {
                Some(Membership::Join) => {
                    if fresh {
                        changed.extend(joined_members(rooms, &room)?);
                    } else {
                        let (joined, gone) = membership_changes(rooms, &room, since, upto)?;
                        changed.extend(joined);
                        left_candidates.extend(gone);
                    }
                    shared_rooms.insert(room);
                }
                Some(Membership::Leave | Membership::Ban) if fresh => {
                    left_candidates.extend(joined_members(rooms, &room)?);
                }
                _ => {}
            }
        }

        // Key changes in the range, of users still sharing a room.
        let shares = |other: &UserId| -> Result<bool> {
            Ok(other == user
                || joined_rooms(&self.inner.memberships, other)?
                    .iter()
                    .any(|room| shared_rooms.contains(room)))
        };
        for row in self.inner.changes.iter_from(&(since + 1), Order::Ascending) {
            let (position, changer) = row?;
            if position > upto {
                break;
            }
            if !changed.contains(&changer) && shares(&changer)? {
                changed.insert(changer);
            }
        }
        let mut left = BTreeSet::new();
        for candidate in left_candidates {
            if candidate != user && !shares(&candidate)? {
                left.insert(candidate);
            }
        }
        changed.retain(|u| !left.contains(u));
        Ok(DeviceListChanges {
            changed: changed.into_iter().collect(),
            left: left.into_iter().collect(),
        })
    }
}

fn joined_members(rooms: &Rooms, room: &RoomId) -> Result<Vec<OwnedUserId>> {
    Ok(rooms
        .members(room)?
        .into_iter()
        .filter(|(_, m)| *m == Membership::Join)
        .map(|(u, _)| u)
        .collect())
}

/// Users who joined, and users who left or were banned, in `(since, upto]`.
fn membership_changes(
    rooms: &Rooms,
    room: &RoomId,
    since: u64,
    upto: u64,
) -> Result<(Vec<OwnedUserId>, Vec<OwnedUserId>)> {
    let events =
        rooms.room_events_between(room, Some(since), upto.saturating_add(1), SCAN_LIMIT + 1)?;
    if events.len() > SCAN_LIMIT {
        return joined_difference(rooms, room, since, upto);
    }
    let (mut joined, mut gone) = (Vec::new(), Vec::new());
    // Newest first: the last membership of a user in the range decides.
    let mut seen = BTreeSet::new();
    for (_, event_id) in events {
        let Some(pdu) = rooms.get_pdu(&event_id)? else {
            continue;
        };
        if pdu.kind != TimelineEventType::RoomMember {
            continue;
        }
        let Some(Ok(member)) = pdu.state_key.as_deref().map(UserId::parse) else {
            continue;
        };
        if !seen.insert(member.clone()) {
            continue;
        }
        match Membership::of(&pdu) {
            Some(Membership::Join) => joined.push(member),
            Some(Membership::Leave | Membership::Ban) => gone.push(member),
            _ => {}
        }
    }
    Ok((joined, gone))
}

/// [`membership_changes`] for a busy range: joined members at `upto`
/// against those at `since`.
fn joined_difference(
    rooms: &Rooms,
    room: &RoomId,
    since: u64,
    upto: u64,
) -> Result<(Vec<OwnedUserId>, Vec<OwnedUserId>)> {
    let joined_at = |position: u64| -> Result<BTreeSet<OwnedUserId>> {
        let mut joined = BTreeSet::new();
        for ((kind, state_key), event_id) in rooms.state_ids_at(room, position)? {
            if kind != StateEventType::RoomMember {
                continue;
            }
            let Some(pdu) = rooms.get_pdu(&event_id)? else {
                continue;
            };
            if let (Some(Membership::Join), Ok(member)) =
                (Membership::of(&pdu), UserId::parse(&state_key))
            {
                joined.insert(member);
            }
        }
        Ok(joined)
    };
    let (before, after) = (joined_at(since)?, joined_at(upto)?);
    Ok((
        after.difference(&before).cloned().collect(),
        before.difference(&after).cloned().collect(),
    ))
}
