//! Which member events a device was already sent, for lazy-loading room
//! members (Client-Server API "Filtering" → "Lazy-loading room members":
//! with `lazy_load_members` and without `include_redundant_members` the
//! server need not resend member events the client already has).
//!
//! The choice: an in-memory cache per (user, device) of
//! `room → member → (member event id, next_batch of the response that sent
//! it)`, like Synapse's. The spec lets a server send redundant members, so
//! the cache only saves bandwidth; what correctness needs is that a needed
//! member is never withheld from a client that does not have it. Hence:
//!
//! - an entry is trusted only for a request whose `since` is at or past the
//!   `next_batch` of the response that sent it (the client has processed
//!   that response, or a later one); a retried request from an older token
//!   gets the members again;
//! - an initial or `full_state` sync of a room resets that room's entries,
//!   so a client that starts over is not assumed to remember anything;
//! - entries are bounded (per room, per device, number of devices) and
//!   expire; whatever is evicted is simply sent again. A restart forgets
//!   everything, with the same effect.
//!
//! Known limit: two concurrent syncs of the *same* device could each assume
//! the other's response reached the client; clients sync one request at a
//! time per device.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use parking_lot::Mutex;
use ruma::{OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedUserId, UserId};

/// Devices remembered; the least recently used goes first.
const MAX_DEVICES: usize = 10_000;
/// Members remembered per room and device; a full room starts over.
const MAX_MEMBERS_PER_ROOM: usize = 1_000;
/// A device not seen for this long is forgotten.
const IDLE_EXPIRY: Duration = Duration::from_secs(30 * 60);

type DeviceKey = (OwnedUserId, OwnedDeviceId);

#[derive(Default)]
struct DeviceCache {
    last_used: Option<Instant>,
    rooms: HashMap<OwnedRoomId, HashMap<OwnedUserId, (OwnedEventId, u64)>>,
}

/// The per-device record of member events sent under lazy loading.
#[derive(Default)]
pub struct SentMembers {
    devices: Mutex<HashMap<DeviceKey, DeviceCache>>,
}

impl SentMembers {
    /// Whether `device` was sent `event_id` as `member`'s event in `room`
    /// by a response it has acknowledged (its `since` is at or past it).
    pub fn already_sent(
        &self,
        device: &DeviceKey,
        room: &OwnedRoomId,
        member: &UserId,
        event_id: &OwnedEventId,
        since: u64,
    ) -> bool {
        let devices = self.devices.lock();
        devices
            .get(device)
            .filter(|cache| cache.last_used.is_some_and(|t| t.elapsed() < IDLE_EXPIRY))
            .and_then(|cache| cache.rooms.get(room))
            .and_then(|members| members.get(member))
            .is_some_and(|(sent, at)| sent == event_id && *at <= since)
    }

    /// Records that a response with `next_batch` sent these member events;
    /// `reset` forgets the room's earlier entries first (initial or full
    /// state sync of the room).
    pub fn record(
        &self,
        device: &DeviceKey,
        room: &OwnedRoomId,
        sent: impl IntoIterator<Item = (OwnedUserId, OwnedEventId)>,
        next_batch: u64,
        reset: bool,
    ) {
        let mut devices = self.devices.lock();
        if !devices.contains_key(device) && devices.len() >= MAX_DEVICES {
            evict(&mut devices);
        }
        let cache = devices.entry(device.clone()).or_default();
        if cache.last_used.is_none_or(|t| t.elapsed() >= IDLE_EXPIRY) {
            cache.rooms.clear();
        }
        cache.last_used = Some(Instant::now());
        let members = cache.rooms.entry(room.clone()).or_default();
        if reset {
            members.clear();
        }
        for (member, event_id) in sent {
            if members.len() >= MAX_MEMBERS_PER_ROOM && !members.contains_key(&member) {
                members.clear();
            }
            members.insert(member, (event_id, next_batch));
        }
    }
}

/// Drops expired devices, or else the least recently used one.
fn evict(devices: &mut HashMap<DeviceKey, DeviceCache>) {
    devices.retain(|_, cache| cache.last_used.is_some_and(|t| t.elapsed() < IDLE_EXPIRY));
    if devices.len() < MAX_DEVICES {
        return;
    }
    let oldest = devices
        .iter()
        .min_by_key(|(_, cache)| cache.last_used)
        .map(|(key, _)| key.clone());
    if let Some(key) = oldest {
        devices.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use ruma::{owned_device_id, owned_event_id, owned_room_id, owned_user_id};

    use super::*;

    #[test]
    fn trusted_only_from_the_sending_response_on() {
        let sent = SentMembers::default();
        let device = (owned_user_id!("@a:x"), owned_device_id!("D"));
        let room = owned_room_id!("!r:x");
        let (bob, event) = (owned_user_id!("@b:x"), owned_event_id!("$e"));
        sent.record(&device, &room, [(bob.clone(), event.clone())], 10, true);
        // A retry from before the response: not known to have arrived.
        assert!(!sent.already_sent(&device, &room, &bob, &event, 9));
        assert!(sent.already_sent(&device, &room, &bob, &event, 10));
        // Another event of the member, or another device: not sent.
        let other = owned_event_id!("$f");
        assert!(!sent.already_sent(&device, &room, &bob, &other, 10));
        let phone = (owned_user_id!("@a:x"), owned_device_id!("P"));
        assert!(!sent.already_sent(&phone, &room, &bob, &event, 10));
        // A full sync of the room starts over.
        sent.record(&device, &room, [], 12, true);
        assert!(!sent.already_sent(&device, &room, &bob, &event, 12));
    }
}
