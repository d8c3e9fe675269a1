//! End-to-end encryption support (Client-Server API, module "End-to-End
//! Encryption"): the server is the key directory. Olm and Megolm happen in
//! clients; the server stores and hands out what they publish.
//!
//! - `device_keys`: `POST /keys/upload` (device identity keys, with their
//!   self-signature checked) and `POST /keys/query`.
//! - `one_time`: one-time and fallback keys, their counts for `/sync`, and
//!   `POST /keys/claim` (each one-time key handed out once).
//! - `cross_signing`: `/keys/device_signing/upload`, `/keys/signatures/upload`.
//! - `changes`: the device-list change stream: every change to a user's
//!   devices or keys gets a position on the global stream (a
//!   `rooms::stream` marker), so `/sync`'s `device_lists` and
//!   `GET /keys/changes` report it exactly once per token range.
//! - `backup`: server-side key backups (`/room_keys/*`).
//! - `signing`: ed25519 signature checks over canonical JSON (ruma).
//!
//! Local users only: keys of users on other servers are asked of their
//! servers by the API layer (`crate::federation`), which also serves ours.
//!
//! Tables (key → value):
//! - `userdeviceid_devicekeys`: (user, device) → signed device keys as uploaded
//! - `userdeviceidalgseq_onetimekey`: (user, device, algorithm, sequence) → one-time key
//! - `userdeviceidalg_onetimekeycount`: (user, device, algorithm) → unclaimed count
//! - `userdeviceidalg_fallbackkey`: (user, device, algorithm) → [`one_time::FallbackKey`]
//! - `useridusage_crosssigningkey`: (user, usage) → cross-signing key as uploaded
//! - `useridtargetsigner_signatures`: (user, signed key, signer) → signatures
//! - `pos_keychange`: stream position → user whose keys or devices changed
//! - `useridversion_backup` / `useridversionroomsession_backupkey`: backups
//!
//! It reads the rooms' `userroomid_membership` index (read-only) to find
//! whom a change concerns.

mod backup;
mod changes;
mod cross_signing;
mod device_keys;
mod one_time;
mod signing;

use std::{
    collections::BTreeMap,
    hash::{Hash, Hasher},
    sync::Arc,
};

use axum::http::StatusCode;
use ruma::{
    api::error::ErrorKind, OwnedDeviceId, OwnedRoomId, OwnedServerName, OwnedUserId, UserId,
};
use serde_json::Value;

use crate::{
    accounts::{DeviceRemovalListener, DevicesRemoved},
    error::{Error, Result},
    rooms::{
        stream::{InFlight, Stream},
        Membership,
    },
    storage::{Batch, Cf, Storage, Table},
    to_device::ToDevice,
};

pub use self::{
    backup::BackupVersion, changes::DeviceListChanges, cross_signing::SigningKeys,
    device_keys::Upload, one_time::FallbackKey,
};

/// Stripes of the per-user lock (key uploads, claims, backups).
const LOCK_STRIPES: usize = 64;

/// The signatures one signer made over one key: key id → signature.
type Signatures = BTreeMap<String, String>;

struct Inner {
    storage: Arc<Storage>,
    stream: Arc<Stream>,
    server_name: OwnedServerName,
    to_device: ToDevice,
    device_keys: Table<(OwnedUserId, OwnedDeviceId), Value>,
    one_time: Table<(OwnedUserId, OwnedDeviceId, String, u64), one_time::StoredKey>,
    one_time_counts: Table<(OwnedUserId, OwnedDeviceId, String), u64>,
    fallback: Table<(OwnedUserId, OwnedDeviceId, String), FallbackKey>,
    cross_signing: Table<(OwnedUserId, String), Value>,
    signatures: Table<(OwnedUserId, String, OwnedUserId), Signatures>,
    changes: Table<u64, OwnedUserId>,
    backups: Table<(OwnedUserId, u64), BackupVersion>,
    backup_keys: Table<(OwnedUserId, u64, OwnedRoomId, String), Value>,
    /// The rooms' membership index, read-only.
    memberships: Table<(OwnedUserId, OwnedRoomId), Membership>,
    /// Every read-check-write of a user's keys or backups runs under the
    /// user's stripe, so e.g. two claims never take the same one-time key.
    locks: [tokio::sync::Mutex<()>; LOCK_STRIPES],
    /// Told when a local user's device list changed (federation sends
    /// `m.device_list_update`); unset without federation.
    outbox: std::sync::OnceLock<Arc<dyn DeviceListOutbox>>,
}

/// Hears about committed device-list changes of local users.
pub trait DeviceListOutbox: Send + Sync {
    fn local_user_changed(&self, user: &UserId);
}

/// The E2EE domain. Cheap to clone (shared state).
#[derive(Clone)]
pub struct E2ee {
    inner: Arc<Inner>,
}

impl E2ee {
    pub fn new(
        storage: Arc<Storage>,
        stream: Arc<Stream>,
        server_name: OwnedServerName,
        to_device: ToDevice,
    ) -> E2ee {
        E2ee {
            inner: Arc::new(Inner {
                device_keys: storage.table(Cf::UserDeviceIdDeviceKeys),
                one_time: storage.table(Cf::UserDeviceIdAlgSeqOneTimeKey),
                one_time_counts: storage.table(Cf::UserDeviceIdAlgOneTimeKeyCount),
                fallback: storage.table(Cf::UserDeviceIdAlgFallbackKey),
                cross_signing: storage.table(Cf::UserIdUsageCrossSigningKey),
                signatures: storage.table(Cf::UserIdTargetSignerSignatures),
                changes: storage.table(Cf::PosKeyChange),
                backups: storage.table(Cf::UserIdVersionBackup),
                backup_keys: storage.table(Cf::UserIdVersionRoomSessionBackupKey),
                memberships: storage.table(Cf::UserRoomIdMembership),
                locks: std::array::from_fn(|_| tokio::sync::Mutex::new(())),
                outbox: std::sync::OnceLock::new(),
                storage,
                stream,
                server_name,
                to_device,
            }),
        }
    }

    /// Local users' device-list changes are reported to `outbox` from now on.
    pub fn set_device_list_outbox(&self, outbox: Arc<dyn DeviceListOutbox>) {
        let _ = self.inner.outbox.set(outbox);
    }

    /// A local device was renamed: a device-list change if the device has
    /// keys (its name is shown with them as `device_display_name`).
    pub async fn device_renamed(&self, user: &UserId, device: &ruma::DeviceId) -> Result<()> {
        let key = (user.to_owned(), device.to_owned());
        if !self.inner.device_keys.contains(&key)? {
            return Ok(());
        }
        self.record_change(user).await
    }

    /// Another server reported that `user`'s devices or keys changed
    /// (`m.device_list_update`, `m.signing_key_update`): our users who share
    /// a room with them see it in `device_lists.changed` and query anew
    /// (remote keys are always asked of their server, so nothing is cached).
    pub async fn remote_device_list_changed(&self, user: &UserId) -> Result<()> {
        if self.is_local(user) {
            return Ok(());
        }
        self.record_change(user).await
    }

    /// Records that `user`'s devices or keys changed, with nothing else.
    async fn record_change(&self, user: &UserId) -> Result<()> {
        let mut batch = self.inner.storage.batch();
        let change = self.begin_change(&mut batch, user)?;
        self.inner.storage.commit(batch).await?;
        change.committed();
        Ok(())
    }

    fn is_local(&self, user: &UserId) -> bool {
        user.server_name() == self.inner.server_name
    }

    fn stripe(user: &UserId) -> usize {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        user.hash(&mut hasher);
        (hasher.finish() % LOCK_STRIPES as u64) as usize
    }

    async fn lock_user(&self, user: &UserId) -> tokio::sync::MutexGuard<'_, ()> {
        self.inner.locks[Self::stripe(user)].lock().await
    }

    /// The locks of several users, taken in stripe order (no deadlock
    /// between two requests naming the same users in another order).
    async fn lock_users<'a>(
        &self,
        users: impl Iterator<Item = &'a OwnedUserId>,
    ) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        let mut stripes: Vec<usize> = users.map(|u| Self::stripe(u)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.inner.locks[stripe].lock().await);
        }
        guards
    }

    /// Starts recording that `user`'s devices or keys change with `batch`:
    /// a new stream position and its `pos_keychange` row. Finish with
    /// [`KeyChange::committed`] after the batch committed.
    fn begin_change(&self, batch: &mut Batch, user: &UserId) -> Result<KeyChange> {
        let in_flight = self.inner.stream.begin();
        let position = self.inner.stream.allocate_marker(batch)?;
        batch.put(&self.inner.changes, &position, &user.to_owned())?;
        Ok(KeyChange {
            in_flight,
            user: user.to_owned(),
            inner: self.inner.clone(),
        })
    }
}

/// A key change in flight (see [`E2ee::begin_change`]).
struct KeyChange {
    in_flight: InFlight,
    user: OwnedUserId,
    inner: Arc<Inner>,
}

impl KeyChange {
    /// The batch committed: wake the user's own syncs and those of everyone
    /// in the user's joined rooms (their `device_lists.changed`), once the
    /// committed stream position covers the change.
    fn committed(mut self) {
        let rooms = joined_rooms(&self.inner.memberships, &self.user).unwrap_or_else(|e| {
            tracing::warn!(user = %self.user, "listing rooms to wake for a key change: {e}");
            Vec::new()
        });
        for room in rooms {
            self.in_flight.changed(Some(room), Vec::new());
        }
        if self.user.server_name() == self.inner.server_name {
            if let Some(outbox) = self.inner.outbox.get() {
                outbox.local_user_changed(&self.user);
            }
        }
        self.in_flight.changed(None, vec![self.user]);
        self.in_flight.done();
    }
}

/// The rooms `user` is joined to, from the membership index.
fn joined_rooms(
    memberships: &Table<(OwnedUserId, OwnedRoomId), Membership>,
    user: &UserId,
) -> Result<Vec<OwnedRoomId>> {
    let mut rooms = Vec::new();
    for row in memberships.iter_prefix(&user.to_owned()) {
        let ((_, room), membership) = row?;
        if membership == Membership::Join {
            rooms.push(room);
        }
    }
    Ok(rooms)
}

/// `M_INVALID_SIGNATURE` (400), which ruma's `ErrorKind` has no variant for.
pub(crate) fn invalid_signature(message: impl Into<String>) -> Error {
    let kind = serde_json::from_value::<ErrorKind>(serde_json::json!({
        "errcode": "M_INVALID_SIGNATURE"
    }))
    .unwrap_or(ErrorKind::InvalidParam);
    Error::new(StatusCode::BAD_REQUEST, kind, message)
}

/// What `/keys/query` and `/keys/claim` say about a server we cannot ask.
fn federation_failure() -> Value {
    serde_json::json!({
        "status": 503,
        "message": "This server does not federate yet: keys of remote users are unavailable",
    })
}

/// Deleting devices deletes their keys and to-device inboxes in the same
/// batch, and counts as a device-list change when a device had keys
/// (`/keys/changes`: "removed an existing device with identity keys").
impl DeviceRemovalListener for E2ee {
    fn removing(
        &self,
        batch: &mut Batch,
        user_id: &UserId,
        devices: &[OwnedDeviceId],
    ) -> Result<Box<dyn DevicesRemoved>> {
        let mut had_keys = false;
        for device in devices {
            had_keys |= self.remove_device_keys_into(batch, user_id, device)?;
            self.inner
                .to_device
                .remove_inbox_into(batch, user_id, device)?;
        }
        let change = if had_keys {
            Some(self.begin_change(batch, user_id)?)
        } else {
            None
        };
        Ok(Box::new(RemovalDone(change)))
    }
}

struct RemovalDone(Option<KeyChange>);

impl DevicesRemoved for RemovalDone {
    fn committed(self: Box<Self>) {
        if let Some(change) = self.0 {
            change.committed();
        }
    }
}

#[cfg(test)]
mod tests;
