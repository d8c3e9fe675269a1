//! `/sync` (Client-Server API "Syncing"): what changed for a user since a
//! token, waiting for it when nothing has.
//!
//! - `notifier`: per-user wake-ups; the rooms service feeds it after commits
//!   (`rooms::stream`), once the committed stream position covers them.
//! - `v2`: `GET /sync`: rooms (join / invite / knock / leave) with timeline,
//!   state, summary and account data, and the long-poll loop.
//! - `filter`: stored filters and the filter a request names.
//! - `account_data`: stream positions for account data changes.
//! - `state`: a room's `state` / `state_after` section, lazy-loading members.
//! - `lazy`: which member events each device was sent (lazy loading).
//! - `e2ee`: `device_lists`, one-time key counts, unused fallback key types.
//!
//! Tokens are stream positions (`s<position>`, `rooms::make_token`), the
//! same tokens `/messages` takes; `next_batch` is always the *committed*
//! stream position (`Rooms::committed_position`), never one still in flight.
//!
//! Tables (key → value):
//! - `useridfilterid_filter`: (user id, filter id) → filter JSON
//! - `userscopetype_accountdatapos`: (user id, room id or "", type) →
//!   (content digest, position of the last change)
//!
//! It reads the accounts' account data tables directly (read-only).

mod account_data;
mod e2ee;
pub mod filter;
mod lazy;
pub mod notifier;
mod state;
mod v2;

use std::sync::{Arc, OnceLock};

use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde_json::Value;

use crate::{
    rooms::Rooms,
    storage::{Cf, Storage, Table},
};

pub use self::{notifier::Notifier, v2::SyncRequest};

/// The sync domain. Build once and hand the notifier to the rooms service
/// ([`SyncService::attach`]).
pub struct SyncService {
    storage: Arc<Storage>,
    notifier: Arc<Notifier>,
    filters: Table<(OwnedUserId, String), String>,
    stamps: Table<(OwnedUserId, String, String), (u64, u64)>,
    global_data: Table<(OwnedUserId, String), Value>,
    room_data: Table<(OwnedUserId, OwnedRoomId, String), Value>,
    /// Typing and receipts for rooms' `ephemeral` sections, once attached.
    ephemeral: OnceLock<crate::receipts::Ephemeral>,
    /// Member events sent per device under lazy loading (`lazy`).
    sent_members: lazy::SentMembers,
    /// Presence for the top-level `presence` section, once attached.
    presence: OnceLock<crate::presence::Presence>,
    /// Device inboxes for the top-level `to_device` section, once attached.
    to_device: OnceLock<crate::to_device::ToDevice>,
    /// Which users' account data is known to be stamped (`account_data`).
    account_data_marks: Arc<account_data::Marks>,
    /// Key directory for the E2EE sections, once attached.
    e2ee: OnceLock<crate::e2ee::E2ee>,
}

impl SyncService {
    pub fn new(storage: Arc<Storage>) -> SyncService {
        SyncService {
            notifier: Notifier::new(),
            filters: storage.table(Cf::UserIdFilterIdFilter),
            stamps: storage.table(Cf::UserScopeTypeAccountDataPos),
            global_data: storage.table(Cf::UserIdTypeAccountData),
            room_data: storage.table(Cf::UserRoomIdTypeAccountData),
            ephemeral: OnceLock::new(),
            sent_members: lazy::SentMembers::default(),
            presence: OnceLock::new(),
            to_device: OnceLock::new(),
            account_data_marks: Arc::default(),
            e2ee: OnceLock::new(),
            storage,
        }
    }

    /// Makes `rooms` wake waiting syncs after each committed event.
    pub fn attach(&self, rooms: &Rooms) {
        rooms.stream().set_listener(self.notifier.clone());
    }

    /// Makes `/sync` report typing and receipts; only the first call counts.
    pub fn attach_ephemeral(&self, ephemeral: crate::receipts::Ephemeral) {
        let _ = self.ephemeral.set(ephemeral);
    }

    /// Makes `/sync` report presence; only the first call counts.
    pub fn attach_presence(&self, presence: crate::presence::Presence) {
        let _ = self.presence.set(presence);
    }

    /// Makes `/sync` deliver to-device messages; only the first call counts.
    pub fn attach_to_device(&self, to_device: crate::to_device::ToDevice) {
        let _ = self.to_device.set(to_device);
    }

    /// The listener the accounts domain tells of account data writes.
    pub fn account_data_listener(&self) -> Arc<dyn crate::accounts::AccountDataListener> {
        Arc::new(account_data::ChangeListener {
            marks: self.account_data_marks.clone(),
            notifier: self.notifier.clone(),
        })
    }

    /// Makes `/sync` report device lists and key counts; only the first call counts.
    pub fn attach_e2ee(&self, e2ee: crate::e2ee::E2ee) {
        let _ = self.e2ee.set(e2ee);
    }

    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    /// Wakes `user`'s waiting syncs (for changes outside room timelines).
    pub fn notify_user(&self, user: &UserId) {
        self.notifier.notify_user(user);
    }
}
