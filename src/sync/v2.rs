//! `GET /sync` (Client-Server API "Syncing", `GET /_matrix/client/v3/sync`).
//!
//! One response covers the stream positions `(since, upto]`, where `upto`
//! is the committed position read at the start ("next_batch"). Per room:
//! - **join**: `timeline` = the newest `timeline.limit` events in the range
//!   the user may see (`Rooms::can_see`) and the filter passes, oldest first,
//!   `limited` when older ones in the range were left out, `prev_batch` = the
//!   position of the first returned event (so `/messages?dir=b&from=prev_batch`
//!   continues exactly with the events skipped). `state` = the state at the
//!   *start* of the timeline ("state before the first timeline event"): all of
//!   it on an initial or `full_state` sync or when the user joined within the
//!   range, otherwise only what differs from the state at `since` (so the
//!   state changes inside the gap of a limited timeline are included); or
//!   `state_after` with `use_state_after`, and lazy-loaded members: see
//!   `super::state`.
//! - **invite** / **knock**: stripped state, once (when the membership falls
//!   in the range, or on an initial sync).
//! - **leave** (also bans and kicks): when the leave falls in the range, or
//!   with `room.include_leave` on an initial or full-state sync; the
//!   timeline ends with the leave.
//!
//! Top-level `to_device` ("Send-to-Device messaging"): `crate::to_device`;
//! `device_lists` and key counts ("End-to-End Encryption"): `super::e2ee`.
//!
//! Long-poll: register with the notifier *before* reading, answer at once if
//! anything is new, otherwise wait for a wake-up or the timeout and read again.

use std::time::Duration;

use ruma::{
    api::client::{
        filter::FilterDefinition,
        sync::sync_events::v3::{
            GlobalAccountData, InviteState, InvitedRoom, JoinedRoom, KnockState, KnockedRoom,
            LeftRoom, Response, RoomAccountData, RoomSummary, State, Timeline,
        },
    },
    serde::Raw,
    OwnedDeviceId, OwnedRoomId, RoomId, UInt, UserId,
};
use serde_json::{json, Value};
use tokio::time::Instant;

use super::{account_data::Entry, filter, state::StateQuery, SyncService};
use crate::{
    error::{Error, Result},
    rooms::{
        make_token,
        sync_support::{matches_filter, membership_of},
        Membership, Pdu, Rooms,
    },
};

/// Long-polls wait at most this long, whatever the client asks.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// How many events one room's timeline may scan past filtered-out or
/// invisible ones before it reports `limited` and stops.
const SCAN_BUDGET: usize = 1000;

/// A `/sync` request, parsed.
pub struct SyncRequest {
    pub since: Option<u64>,
    pub full_state: bool,
    pub filter: FilterDefinition,
    pub timeout: Duration,
    /// The requesting device: lazy loading remembers per device which
    /// member events it was sent (`super::lazy`).
    pub device: Option<OwnedDeviceId>,
    /// `use_state_after`: rooms carry `state_after` instead of `state`.
    pub use_state_after: bool,
}

/// A room's timeline as read for one response.
struct RoomTimeline {
    /// Oldest first, with their stream positions.
    events: Vec<(u64, Pdu)>,
    limited: bool,
    /// `/messages` continues backwards from here.
    prev_batch: u64,
    /// The room had no event at all in the range (filtered or not).
    range_empty: bool,
}

fn raw<T>(value: &Value) -> Result<Raw<T>> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|e| Error::internal(format!("event not serialisable: {e}")))
}

/// A room event in the sync format (`ClientEventWithoutRoomID`).
pub(super) fn sync_event<T>(pdu: &Pdu) -> Result<Raw<T>> {
    let mut event = pdu.to_client_event();
    if let Some(object) = event.as_object_mut() {
        object.remove("room_id");
    }
    raw(&event)
}

fn is_empty(response: &Response) -> bool {
    response.rooms.is_empty()
        && response.account_data.is_empty()
        && response.presence.is_empty()
        && response.to_device.is_empty()
        && response.device_lists.is_empty()
}

impl SyncService {
    /// Answers a `/sync` request, waiting up to `timeout` for news when it
    /// is incremental and nothing is new.
    pub async fn sync(
        &self,
        rooms: &Rooms,
        user: &UserId,
        request: SyncRequest,
    ) -> Result<Response> {
        let deadline = Instant::now() + request.timeout.min(MAX_TIMEOUT);
        // Registered before the first read: a change after it wakes us.
        let mut waiter = self.notifier.register(user);
        loop {
            let response = self.build(rooms, user, &request).await?;
            let answer_now = request.since.is_none() || request.full_state || !is_empty(&response);
            if answer_now || !waiter.wait_until(deadline).await {
                return Ok(response);
            }
        }
    }

    /// One response for `(since, committed position]`.
    async fn build(&self, rooms: &Rooms, user: &UserId, request: &SyncRequest) -> Result<Response> {
        // Stamp account data first: new stamps then lie at or below `upto`.
        let account_data = self.account_data(rooms, user, request.since).await?;
        let upto = rooms.committed_position();
        let since = request.since.map(|s| s.min(upto));
        // To-device first: a full batch ends the whole response at its last
        // message, so the token skips none (`crate::to_device`).
        let (to_device, upto) = match (self.to_device.get(), &request.device) {
            (Some(inbox), Some(device)) => inbox.for_sync(user, device, since, upto).await?,
            _ => (Vec::new(), upto),
        };
        let in_range = |position: u64| position <= upto && since.is_none_or(|s| position > s);
        let filter = &request.filter;
        let mut response = Response::new(make_token(upto));
        response.to_device.events = to_device;
        let device = request.device.as_ref();
        self.e2ee_sections(rooms, user, device, since, upto, &mut response)?;

        let mut global = Vec::new();
        for entry in account_data
            .iter()
            .filter(|e| e.room.is_none() && in_range(e.position))
        {
            if filter::account_data_allowed(&filter.account_data, &entry.kind) {
                global.push(raw(
                    &json!({ "type": entry.kind, "content": entry.content }),
                )?);
            }
        }
        response.account_data = GlobalAccountData::new();
        response.account_data.events = global;
        // Presence (module "Presence"); a full-state sync gets the current set.
        if let Some(presence) = self.presence.get() {
            let since = since.filter(|_| !request.full_state);
            response.presence.events = presence.for_sync(user, &filter.presence, since, upto)?;
        }

        for (room_id, _) in rooms.user_rooms(user)? {
            if !filter::room_allowed(filter, &room_id) {
                continue;
            }
            let Some((member, member_pos)) = rooms.member_event_at(&room_id, user, upto)? else {
                continue;
            };
            let room_data = room_account_data(&account_data, &room_id, filter, &in_range)?;
            let fresh = since.is_none_or(|s| member_pos > s);
            match membership_of(&member) {
                Some(Membership::Join) => {
                    let joined = self.joined_room(
                        rooms, user, &room_id, request, since, upto, member_pos, room_data,
                    )?;
                    if let Some(joined) = joined {
                        response.rooms.join.insert(room_id, joined);
                    }
                }
                Some(Membership::Invite) if fresh => {
                    let events: Vec<_> = rooms
                        .stripped_state(&member)?
                        .iter()
                        .map(raw)
                        .collect::<Result<_>>()?;
                    response
                        .rooms
                        .invite
                        .insert(room_id, InvitedRoom::from(InviteState::from(events)));
                }
                Some(Membership::Knock) if fresh => {
                    let mut state = KnockState::new();
                    state.events = rooms
                        .stripped_state(&member)?
                        .iter()
                        .map(raw)
                        .collect::<Result<_>>()?;
                    response
                        .rooms
                        .knock
                        .insert(room_id, KnockedRoom::from(state));
                }
                Some(Membership::Leave | Membership::Ban) => {
                    let archived =
                        filter.room.include_leave && (since.is_none() || request.full_state);
                    if since.is_some_and(|s| member_pos > s) || archived {
                        let (timeline, state, _) = self.room_contents(
                            rooms, user, &room_id, request, since, member_pos, true,
                        )?;
                        let mut left = LeftRoom::new();
                        left.timeline = timeline;
                        left.state = state;
                        left.account_data = room_data;
                        response.rooms.leave.insert(room_id, left);
                    }
                }
                _ => {}
            }
        }
        Ok(response)
    }

    #[allow(clippy::too_many_arguments)]
    fn joined_room(
        &self,
        rooms: &Rooms,
        user: &UserId,
        room_id: &RoomId,
        request: &SyncRequest,
        since: Option<u64>,
        upto: u64,
        member_pos: u64,
        account_data: RoomAccountData,
    ) -> Result<Option<JoinedRoom>> {
        // Joined within the range: the room is new to the client, give it all.
        let full = request.full_state || since.is_none_or(|s| member_pos > s);
        let (timeline, state, members_changed) =
            self.room_contents(rooms, user, room_id, request, since, upto, full)?;
        let ephemeral = match self.ephemeral.get() {
            Some(source) => source.room_events(
                user,
                room_id,
                &request.filter.room.ephemeral,
                since.filter(|_| !full),
                upto,
            )?,
            None => Vec::new(),
        };
        if !full
            && timeline.is_empty()
            && state.is_empty()
            && account_data.is_empty()
            && ephemeral.is_empty()
        {
            return Ok(None);
        }
        let mut joined = JoinedRoom::new();
        joined.ephemeral.events = ephemeral;
        joined.timeline = timeline;
        joined.state = state;
        joined.account_data = account_data;
        // The summary's fields may be omitted when unchanged ("RoomSummary"):
        // recomputed only when the client gets the room anew or a membership
        // event goes out, not for every message in a large room.
        if full || members_changed {
            joined.summary = summary(rooms, room_id, user)?;
        }
        // Counts up to `upto`, as the timeline (`push`; spec "Receiving notifications").
        let threads = request.filter.room.timeline.unread_thread_notifications;
        let unread = crate::push::unread_counts(&self.storage, user, room_id, upto, threads)?;
        joined.unread_notifications = unread.room;
        joined.unread_thread_notifications = unread.threads;
        Ok(Some(joined))
    }

    /// Timeline and state of one room for positions `(since, upto]`.
    #[allow(clippy::too_many_arguments)]
    fn room_contents(
        &self,
        rooms: &Rooms,
        user: &UserId,
        room_id: &RoomId,
        request: &SyncRequest,
        since: Option<u64>,
        upto: u64,
        full: bool,
    ) -> Result<(Timeline, State, bool)> {
        let limit = filter::timeline_limit(&request.filter);
        let read = read_timeline(rooms, user, room_id, &request.filter, since, upto, limit)?;
        // Nothing in the range: no state can have changed (every state change
        // is an event with a stream position), so skip the snapshots.
        if !full && read.range_empty {
            let state = if request.use_state_after {
                State::After(Default::default())
            } else {
                State::default()
            };
            return Ok((Timeline::new(), state, false));
        }
        let members_in_timeline = read
            .events
            .iter()
            .any(|(_, pdu)| pdu.kind == ruma::events::TimelineEventType::RoomMember);
        let (state, members_in_state) = self.room_state(
            rooms,
            &StateQuery {
                user,
                room_id,
                request,
                since,
                upto,
                full,
                timeline: &read.events,
            },
        )?;
        let mut timeline = Timeline::new();
        timeline.limited = read.limited;
        timeline.prev_batch = Some(make_token(read.prev_batch));
        for (_, pdu) in read.events {
            let pdu = rooms.with_aggregations(user, pdu)?;
            timeline.events.push(sync_event(&pdu)?);
        }
        if !full && timeline.events.is_empty() && !timeline.limited {
            timeline = Timeline::new();
        }
        Ok((timeline, state, members_in_timeline || members_in_state))
    }
}

/// The newest `limit` events in `(since, upto]` that the user may see and
/// the timeline filter passes.
///
/// `limited` ("true if the number of events returned was limited by the
/// `limit` on the filter") is set only when another event the user would
/// have been shown lies in the range: events the filter drops or the user
/// may not see do not count, so the scan goes on past them (within
/// [`SCAN_BUDGET`]; running out of budget counts as limited).
fn read_timeline(
    rooms: &Rooms,
    user: &UserId,
    room_id: &RoomId,
    filter: &FilterDefinition,
    since: Option<u64>,
    upto: u64,
    limit: usize,
) -> Result<RoomTimeline> {
    let mut events = Vec::new();
    let mut limited = false;
    // `page_end` walks the range; `cursor` stops at the last event scanned
    // while the timeline still had room (`prev_batch` when none is taken).
    let mut page_end = upto.saturating_add(1);
    let mut cursor = page_end;
    let mut scanned = 0;
    let chunk = limit.clamp(1, 100) + 1;
    'scan: loop {
        let page = rooms.room_events_between(room_id, since, page_end, chunk)?;
        let exhausted = page.len() < chunk;
        for (position, event_id) in page {
            if scanned == SCAN_BUDGET {
                limited = true;
                break 'scan;
            }
            let full = events.len() == limit;
            page_end = position;
            if !full {
                cursor = position;
            }
            scanned += 1;
            let Some(pdu) = rooms.get_pdu(&event_id)? else {
                continue;
            };
            if matches_filter(&filter.room.timeline, &pdu) && visible(rooms, user, &pdu)? {
                if full {
                    // One more event the client would see: limited.
                    limited = true;
                    break 'scan;
                }
                events.push((position, pdu));
            }
        }
        if exhausted {
            break;
        }
    }
    events.reverse();
    let prev_batch = events.first().map_or(cursor, |(position, _)| *position);
    Ok(RoomTimeline {
        events,
        limited,
        prev_batch,
        range_empty: scanned == 0,
    })
}

/// [`Rooms::can_see`], and a user's own membership events always (their
/// leave or ban ends the `leave` section's timeline even where the room's
/// history is hidden from non-members).
fn visible(rooms: &Rooms, user: &UserId, pdu: &Pdu) -> Result<bool> {
    let own_membership = pdu.kind == ruma::events::TimelineEventType::RoomMember
        && pdu.state_key.as_deref() == Some(user.as_str());
    Ok(own_membership || rooms.can_see(user, pdu)?)
}

fn room_account_data(
    entries: &[Entry],
    room_id: &OwnedRoomId,
    filter: &FilterDefinition,
    in_range: &impl Fn(u64) -> bool,
) -> Result<RoomAccountData> {
    let mut data = RoomAccountData::new();
    for entry in entries {
        let for_room = entry.room.as_ref() == Some(room_id);
        let kind_ok = filter::account_data_allowed(&room_filter_as_filter(filter), &entry.kind);
        if for_room && in_range(entry.position) && kind_ok {
            data.events.push(raw(
                &json!({ "type": entry.kind, "content": entry.content }),
            )?);
        }
    }
    Ok(data)
}

/// `room.account_data` is a room event filter; its `types`/`not_types` apply.
fn room_filter_as_filter(filter: &FilterDefinition) -> ruma::api::client::filter::Filter {
    let mut out = ruma::api::client::filter::Filter::default();
    out.types = filter.room.account_data.types.clone();
    out.not_types = filter.room.account_data.not_types.clone();
    out
}

/// `summary` (Client-Server API "_RoomSummary_"): up to five heroes (other
/// joined, then invited members, by user id) and the member counts.
fn summary(rooms: &Rooms, room_id: &RoomId, user: &UserId) -> Result<RoomSummary> {
    let members = rooms.members(room_id)?;
    let count = |m: Membership| members.iter().filter(|(_, x)| *x == m).count();
    let mut heroes: Vec<_> = members
        .iter()
        .filter(|(id, m)| id != user && *m == Membership::Join)
        .chain(
            members
                .iter()
                .filter(|(id, m)| id != user && *m == Membership::Invite),
        )
        .map(|(id, _)| id.clone())
        .take(5)
        .collect();
    heroes.sort();
    let mut summary = RoomSummary::new();
    summary.heroes = heroes;
    summary.joined_member_count = UInt::new(count(Membership::Join) as u64);
    summary.invited_member_count = UInt::new(count(Membership::Invite) as u64);
    Ok(summary)
}
