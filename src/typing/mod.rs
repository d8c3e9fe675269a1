//! Typing notifications (Client-Server API, module "Typing Notifications":
//! `PUT /rooms/{roomId}/typing/{userId}` and the `m.typing` ephemeral event
//! in `/sync`).
//!
//! Typing state lives in memory only (the spec: "the server *does not
//! remember* users who are not currently typing"); a restart forgets it.
//!
//! ## Stream positions
//!
//! `/sync` tokens are one global stream position (`s<position>`). Rather than
//! making tokens composite, each *visible* change of a room's typing list
//! (someone starts, stops, or times out) takes a position on that same
//! stream: a durable marker (`Stream::allocate_marker`) committed inside an
//! `InFlight` guard, exactly like an account data stamp. So
//! - a token never passes a typing change that a later sync could skip: the
//!   committed position covers the change only once it is recorded here;
//! - positions are never reused after a restart (the marker is on disk), so
//!   an old token cannot hide a new event;
//! - the room's members are woken through the usual path (`InFlight::changed`
//!   → `rooms::stream` → the `/sync` notifier).
//!
//! The room's entry remembers the position of its last change; an incremental
//! sync includes `m.typing` (the *current* list, as the spec's REPLACE
//! semantics want) only when that position lies in `(since, next_batch]`.
//! Refreshing an ongoing typing notification (clients resend every ~20 s)
//! changes nothing visible: it moves the deadline and costs no write.
//! Timeouts are capped at [`MAX_TIMEOUT`]; a timer task per request ends the
//! notification on time if no newer request extended it. A member who
//! leaves (or is kicked or banned) stops typing at once ([`Typing::attach`]).

use std::{collections::HashMap, future::Future, pin::Pin, sync::Arc, time::Duration};

use parking_lot::Mutex;
use ruma::{events::TimelineEventType, OwnedRoomId, OwnedUserId, RoomId, UserId};
use tokio::time::Instant;

use crate::{
    error::{Error, Result},
    rooms::{stream::Stream, EventHook, Membership, Pdu, Rooms},
    storage::Storage,
};

/// The longest a single request may keep a user marked as typing.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(120);

/// One room's typing users.
#[derive(Default)]
struct RoomTyping {
    /// User → when their notification ends.
    users: HashMap<OwnedUserId, Instant>,
    /// Stream position of the last visible change (0: none yet). Entries are
    /// kept when the list empties: a sync from before the change must still
    /// learn that nobody types any more.
    position: u64,
}

impl RoomTyping {
    fn current(&self, now: Instant) -> Vec<OwnedUserId> {
        let mut users: Vec<_> = self
            .users
            .iter()
            .filter(|(_, deadline)| **deadline > now)
            .map(|(user, _)| user.clone())
            .collect();
        users.sort_unstable();
        users
    }
}

struct Inner {
    storage: Arc<Storage>,
    rooms: Mutex<HashMap<OwnedRoomId, RoomTyping>>,
}

/// The typing domain. Cheap to clone (shared state).
#[derive(Clone)]
pub struct Typing {
    inner: Arc<Inner>,
}

impl Typing {
    pub fn new(storage: Arc<Storage>) -> Typing {
        Typing {
            inner: Arc::new(Inner {
                storage,
                rooms: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// `PUT /rooms/{roomId}/typing/{userId}`: `timeout = Some(t)` marks
    /// `target` as typing for `t` (capped at [`MAX_TIMEOUT`]), `None` ends it.
    /// Only for yourself and only in a room you have joined (403
    /// `M_FORBIDDEN` otherwise).
    pub async fn set(
        &self,
        rooms: &Rooms,
        room_id: &RoomId,
        sender: &UserId,
        target: &UserId,
        timeout: Option<Duration>,
    ) -> Result<()> {
        if sender != target {
            return Err(Error::forbidden(
                "Cannot set the typing state of another user",
            ));
        }
        if !rooms.is_joined(room_id, sender)? {
            return Err(Error::forbidden("You are not in this room"));
        }
        let now = Instant::now();
        let deadline = timeout.map(|t| now + t.min(MAX_TIMEOUT));
        let changed = {
            let mut map = self.inner.rooms.lock();
            let room = map.entry(room_id.to_owned()).or_default();
            match deadline {
                Some(deadline) => room
                    .users
                    .insert(sender.to_owned(), deadline)
                    .is_none_or(|old| old <= now),
                None => room.users.remove(sender).is_some_and(|old| old > now),
            }
        };
        if let Some(deadline) = deadline {
            let inner = Arc::clone(&self.inner);
            let stream = Arc::clone(rooms.stream());
            let room_id = room_id.to_owned();
            tokio::spawn(async move {
                tokio::time::sleep_until(deadline).await;
                if let Err(e) = inner.expire(&stream, &room_id).await {
                    tracing::warn!(%room_id, "ending typing notifications: {e}");
                }
            });
        }
        if changed {
            self.inner.publish(rooms.stream(), room_id).await?;
        }
        Ok(())
    }

    /// Makes a member's leave, kick or ban end their typing notification.
    pub fn attach(&self, rooms: &Rooms) {
        rooms.add_event_hook(Arc::new(self.clone()));
    }

    /// The room's `m.typing` user list for a sync over `(since, upto]`:
    /// `Some` when it changed in that range (or, on an initial sync, when
    /// someone is typing), `None` when there is nothing to report.
    pub fn for_sync(
        &self,
        room_id: &RoomId,
        since: Option<u64>,
        upto: u64,
    ) -> Option<Vec<OwnedUserId>> {
        let map = self.inner.rooms.lock();
        let room = map.get(room_id)?;
        let users = room.current(Instant::now());
        let report = match since {
            None => !users.is_empty(),
            Some(since) => room.position > since && room.position <= upto,
        };
        report.then_some(users)
    }
}

/// A membership other than `join` ends the member's typing at once, rather
/// than leaving the room showing them typing until the timeout.
impl EventHook for Typing {
    fn committed<'a>(
        &'a self,
        rooms: &'a Rooms,
        pdu: &'a Pdu,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>> {
        Box::pin(async move {
            if pdu.kind != TimelineEventType::RoomMember
                || Membership::of(pdu) == Some(Membership::Join)
            {
                return;
            }
            let Some(user) = pdu.state_key.as_deref().and_then(|k| UserId::parse(k).ok()) else {
                return;
            };
            let now = Instant::now();
            let stopped = self
                .inner
                .rooms
                .lock()
                .get_mut(&pdu.room_id)
                .and_then(|room| room.users.remove(&user))
                .is_some_and(|deadline| deadline > now);
            if stopped {
                if let Err(e) = self.inner.publish(rooms.stream(), &pdu.room_id).await {
                    tracing::warn!(room_id = %pdu.room_id, "ending typing on leave: {e}");
                }
            }
        })
    }
}

impl Inner {
    /// Ends the notifications of `room_id` whose time is up; a visible
    /// change takes a stream position and wakes the members.
    async fn expire(&self, stream: &Arc<Stream>, room_id: &RoomId) -> Result<()> {
        let now = Instant::now();
        let expired = {
            let mut map = self.rooms.lock();
            let Some(room) = map.get_mut(room_id) else {
                return Ok(());
            };
            let before = room.users.len();
            room.users.retain(|_, deadline| *deadline > now);
            room.users.len() != before
        };
        if expired {
            self.publish(stream, room_id).await?;
        }
        Ok(())
    }

    /// Records a visible change of `room_id`'s list at a new, durable stream
    /// position, then wakes the room's members (see the module docs).
    async fn publish(&self, stream: &Arc<Stream>, room_id: &RoomId) -> Result<()> {
        let mut in_flight = stream.begin();
        let mut batch = self.storage.batch();
        let position = stream.allocate_marker(&mut batch)?;
        self.storage.commit(batch).await?;
        // Before `done`: the committed position (and so any token) passes
        // `position` only once a sync can see it here.
        if let Some(room) = self.rooms.lock().get_mut(room_id) {
            room.position = room.position.max(position);
        }
        in_flight.changed(Some(room_id.to_owned()), Vec::new());
        in_flight.done();
        Ok(())
    }
}

#[cfg(test)]
mod tests;
