//! Account data in `/sync` (Client-Server API "Client Config": the global
//! `account_data` section and each room's `account_data`).
//!
//! An incremental sync returns the account data that changed since its
//! token, so each entry needs the stream position of its last change. The
//! writers (`accounts`, and server-managed types set elsewhere) know nothing
//! of stream positions; instead each sync *stamps*: it compares a digest of
//! every entry of the user with the one recorded in
//! `userscopetype_accountdatapos` and, for entries that are new or differ,
//! records the digest with a fresh stream position (a durable marker of
//! `rooms::stream`). Tokens handed out before the stamp are below it, so the
//! change reaches every client exactly as an event would. Cost: one prefix
//! scan of the user's account data per sync; a write only when something
//! changed.
//!
//! Wake-ups: every account data write in `accounts` tells its listener
//! ([`ChangeListener`], set at start-up) after the commit; the woken
//! long-poll re-reads, stamps the change and returns it.
//!
//! Most syncs have no account data news (a message in a busy room wakes
//! every member), so [`Marks`] remembers in memory, per user, the newest
//! stamp once a scan found nothing to stamp; until the listener reports a
//! write, an incremental sync whose token is past that stamp skips the scan. A stamp's position
//! may still lie above the committed position when another writer is in
//! flight; the stamping writer therefore notes the owner
//! ([`crate::rooms::stream::InFlight::changed`]), so the owner's syncs are
//! woken again once the committed position covers the stamp.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

use parking_lot::Mutex;
use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Notifier, SyncService};
use crate::{error::Result, rooms::Rooms};

/// What is known of a user's account data stamps without a scan.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// Everything is stamped; the newest stamp is this position.
    Clean(u64),
    /// Written since the last scan (the number tells writes apart).
    Dirty(u64),
}

/// Per-user [`Mark`]s; users absent have not been scanned since start-up.
#[derive(Default)]
pub struct Marks {
    users: Mutex<HashMap<OwnedUserId, Mark>>,
    writes: AtomicU64,
}

impl Marks {
    fn get(&self, user: &UserId) -> Option<Mark> {
        self.users.lock().get(user).copied()
    }

    /// Records a scan that started at `seen`: only if no write came since
    /// (otherwise the next sync scans again).
    fn scanned(&self, user: &UserId, seen: Option<Mark>, newest: u64) {
        let mut users = self.users.lock();
        if users.get(user).copied() == seen {
            users.insert(user.to_owned(), Mark::Clean(newest));
        }
    }

    fn written(&self, user: &UserId) {
        let write = self.writes.fetch_add(1, Ordering::Relaxed);
        self.users
            .lock()
            .insert(user.to_owned(), Mark::Dirty(write));
    }
}

/// The accounts domain's account data listener: marks the user's account
/// data as changed, then wakes their waiting syncs.
pub struct ChangeListener {
    pub(super) marks: Arc<Marks>,
    pub(super) notifier: Arc<Notifier>,
}

impl crate::accounts::AccountDataListener for ChangeListener {
    fn account_data_changed(&self, user_id: &UserId) {
        self.marks.written(user_id);
        self.notifier.notify_user(user_id);
    }
}

/// One account data entry with the position of its last change.
pub struct Entry {
    /// `None` for global account data.
    pub room: Option<OwnedRoomId>,
    pub kind: String,
    pub content: Value,
    pub position: u64,
}

fn digest(content: &Value) -> u64 {
    let bytes = serde_json::to_vec(content).unwrap_or_default();
    let hash = Sha256::digest(&bytes);
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    u64::from_be_bytes(first)
}

impl SyncService {
    /// Every account data entry of `user`, stamped with the position of its
    /// last change (new stamps are committed before this returns); or none
    /// when the marks show nothing changed after `since`.
    pub(super) async fn account_data(
        &self,
        rooms: &Rooms,
        user: &UserId,
        since: Option<u64>,
    ) -> Result<Vec<Entry>> {
        let seen = self.account_data_marks.get(user);
        if let (Some(Mark::Clean(newest)), Some(since)) = (seen, since) {
            if newest <= since {
                return Ok(Vec::new());
            }
        }
        let owner: OwnedUserId = user.to_owned();
        let mut current: Vec<(Option<OwnedRoomId>, String, Value)> = Vec::new();
        for row in self.global_data.iter_prefix(&owner) {
            let ((_, kind), content) = row?;
            current.push((None, kind, content));
        }
        for row in self.room_data.iter_prefix(&owner) {
            let ((_, room, kind), content) = row?;
            current.push((Some(room), kind, content));
        }
        let mut stamps: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for row in self.stamps.iter_prefix(&owner) {
            let ((_, scope, kind), stamp) = row?;
            stamps.insert((scope, kind), stamp);
        }

        let scope =
            |room: &Option<OwnedRoomId>| room.as_ref().map_or(String::new(), |r| r.to_string());
        let changed: Vec<usize> = current
            .iter()
            .enumerate()
            .filter(|(_, (room, kind, content))| {
                stamps
                    .get(&(scope(room), kind.clone()))
                    .is_none_or(|(hash, _)| *hash != digest(content))
            })
            .map(|(i, _)| i)
            .collect();
        if !changed.is_empty() {
            let mut in_flight = rooms.stream().begin();
            let mut batch = self.storage.batch();
            let position = rooms.stream().allocate_marker(&mut batch)?;
            for &i in &changed {
                let (room, kind, content) = &current[i];
                let stamp = (digest(content), position);
                batch.put(
                    &self.stamps,
                    &(owner.clone(), scope(room), kind.clone()),
                    &stamp,
                )?;
                stamps.insert((scope(room), kind.clone()), stamp);
            }
            self.storage.commit(batch).await?;
            in_flight.changed(None, vec![owner.clone()]);
            in_flight.done();
        } else {
            let newest = stamps.values().map(|(_, p)| *p).max().unwrap_or(0);
            self.account_data_marks.scanned(user, seen, newest);
        }
        Ok(current
            .into_iter()
            .map(|(room, kind, content)| {
                let position = stamps
                    .get(&(scope(&room), kind.clone()))
                    .map_or(0, |(_, p)| *p);
                Entry {
                    room,
                    kind,
                    content,
                    position,
                }
            })
            .collect())
    }
}
