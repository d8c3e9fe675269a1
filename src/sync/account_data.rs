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
//! (this service's notifier, set at start-up) after the commit; the woken
//! long-poll re-reads, stamps the change and returns it. A stamp's position
//! may still lie above the committed position when another writer is in
//! flight; the stamping writer therefore notes the owner
//! ([`crate::rooms::stream::InFlight::changed`]), so the owner's syncs are
//! woken again once the committed position covers the stamp.

use std::collections::BTreeMap;

use ruma::{OwnedRoomId, OwnedUserId, UserId};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::SyncService;
use crate::{error::Result, rooms::Rooms};

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
    /// last change (new stamps are committed before this returns).
    pub(super) async fn account_data(&self, rooms: &Rooms, user: &UserId) -> Result<Vec<Entry>> {
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
