//! Server-side key backups (Client-Server API "End-to-End Encryption":
//! "Server-side key backups", `/room_keys/version` and `/room_keys/keys`).
//!
//! Versions are numbered per user from 1 and never reused: a deleted
//! version stays as a tombstone (deleting it again succeeds, as the spec
//! asks; reading it is 404). The latest non-deleted version is the current
//! one; keys may be stored only into it (403 `M_WRONG_ROOM_KEYS_VERSION`
//! with `current_version` otherwise). Each version keeps its key `count`
//! and an `etag` that changes whenever its keys change.
//!
//! A key for a session that is already backed up replaces the stored one
//! only if it is better, in the spec's order: `is_verified` true wins; then
//! the lower `first_message_index`; then the lower `forwarded_count`.
//! `session_data` is algorithm-dependent, so only these three fields are
//! read (ruma's `KeyBackupData` would insist on the megolm layout); the
//! rest is stored as sent.

use std::collections::BTreeMap;

use axum::http::StatusCode;
use ruma::{
    api::{
        client::backup::{BackupAlgorithm, KeyBackupData, RoomKeyBackup},
        error::{ErrorKind, WrongRoomKeysVersionErrorData},
    },
    serde::Raw,
    OwnedRoomId, OwnedUserId, UInt, UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{device_keys::to_raw, E2ee};
use crate::error::{Error, Result};

/// One backup version of a user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackupVersion {
    /// `{"algorithm": …, "auth_data": {…}}` as the client sent it.
    pub algorithm: Value,
    /// Bumped on every change to the version's keys.
    pub etag: u64,
    pub count: u64,
    pub deleted: bool,
}

/// A version as `GET /room_keys/version` answers it.
#[derive(Debug)]
pub struct VersionInfo {
    pub version: String,
    pub algorithm: Raw<BackupAlgorithm>,
    pub count: UInt,
    pub etag: String,
}

/// What a key change answers: the version's new `etag` and `count`.
#[derive(Debug)]
pub struct KeysUpdated {
    pub etag: String,
    pub count: UInt,
}

/// The metadata that decides which of two keys for a session to keep.
#[derive(Deserialize)]
struct Quality {
    first_message_index: UInt,
    forwarded_count: UInt,
    is_verified: bool,
    #[allow(dead_code)]
    session_data: serde_json::Map<String, Value>,
}

impl Quality {
    /// Whether `self` should replace `stored` (see the module docs).
    fn beats(&self, stored: &Quality) -> bool {
        if self.is_verified != stored.is_verified {
            return self.is_verified;
        }
        if self.first_message_index != stored.first_message_index {
            return self.first_message_index < stored.first_message_index;
        }
        self.forwarded_count < stored.forwarded_count
    }
}

fn unknown_version() -> Error {
    Error::not_found("Unknown backup version")
}

/// A version id as a number; ids that are not are unknown versions.
fn parse_version(version: &str) -> Option<u64> {
    version.parse().ok().filter(|v: &u64| *v > 0)
}

/// The algorithm object, checked: ruma's `BackupAlgorithm` plus `auth_data`
/// being an object. Returns the JSON to store.
fn checked_algorithm(raw: &Raw<BackupAlgorithm>) -> Result<Value> {
    raw.deserialize()
        .map_err(|e| Error::bad_json(format!("Invalid backup algorithm: {e}")))?;
    let mut value: Value = serde_json::from_str(raw.json().get())
        .map_err(|e| Error::bad_json(format!("Invalid backup algorithm: {e}")))?;
    if !value["auth_data"].is_object() {
        return Err(Error::bad_json("auth_data must be an object"));
    }
    if let Some(object) = value.as_object_mut() {
        object.retain(|k, _| k == "algorithm" || k == "auth_data");
    }
    Ok(value)
}

fn count(n: u64) -> UInt {
    UInt::new(n).unwrap_or(UInt::MAX)
}

impl E2ee {
    /// The user's current (latest non-deleted) version.
    fn current_backup(&self, user: &OwnedUserId) -> Result<Option<(u64, BackupVersion)>> {
        let rows = self.inner.backups.iter_prefix_from(
            user,
            None,
            crate::storage::table::Order::Descending,
        );
        for row in rows {
            let ((_, version), info) = row?;
            if !info.deleted {
                return Ok(Some((version, info)));
            }
        }
        Ok(None)
    }

    /// A version that exists and is not deleted.
    fn live_backup(&self, user: &OwnedUserId, version: &str) -> Result<(u64, BackupVersion)> {
        let number = parse_version(version).ok_or_else(unknown_version)?;
        match self.inner.backups.get(&(user.clone(), number))? {
            Some(info) if !info.deleted => Ok((number, info)),
            _ => Err(unknown_version()),
        }
    }

    /// `POST /room_keys/version`: the new version's id.
    pub async fn create_backup(
        &self,
        user: &UserId,
        algorithm: &Raw<BackupAlgorithm>,
    ) -> Result<String> {
        let algorithm = checked_algorithm(algorithm)?;
        let user = user.to_owned();
        let _lock = self.lock_user(&user).await;
        let last = self
            .inner
            .backups
            .iter_prefix_from(&user, None, crate::storage::table::Order::Descending)
            .next()
            .transpose()?
            .map_or(0, |((_, version), _)| version);
        let version = last + 1;
        let info = BackupVersion {
            algorithm,
            etag: 0,
            count: 0,
            deleted: false,
        };
        let mut batch = self.inner.storage.batch();
        batch.put(&self.inner.backups, &(user, version), &info)?;
        self.inner.storage.commit(batch).await?;
        Ok(version.to_string())
    }

    /// `GET /room_keys/version[/{version}]` (`None`: the current one).
    pub fn backup_info(&self, user: &UserId, version: Option<&str>) -> Result<VersionInfo> {
        let user = user.to_owned();
        let (number, info) = match version {
            Some(version) => self.live_backup(&user, version)?,
            None => self
                .current_backup(&user)?
                .ok_or_else(|| Error::not_found("No backup version exists"))?,
        };
        Ok(VersionInfo {
            version: number.to_string(),
            algorithm: to_raw(&info.algorithm)?,
            count: count(info.count),
            etag: info.etag.to_string(),
        })
    }

    /// `PUT /room_keys/version/{version}`: only `auth_data` may change.
    pub async fn update_backup(
        &self,
        user: &UserId,
        version: &str,
        algorithm: &Raw<BackupAlgorithm>,
    ) -> Result<()> {
        // The body is the algorithm object plus an optional `version`.
        let body: Value = serde_json::from_str(algorithm.json().get())
            .map_err(|e| Error::bad_json(format!("Invalid body: {e}")))?;
        if let Some(named) = body.get("version") {
            if named.as_str() != Some(version) {
                return Err(Error::invalid_param(
                    "The version in the body does not match the version in the path",
                ));
            }
        }
        let new = checked_algorithm(algorithm)?;
        let user = user.to_owned();
        let _lock = self.lock_user(&user).await;
        let (number, mut info) = self.live_backup(&user, version)?;
        if new["algorithm"] != info.algorithm["algorithm"] {
            return Err(Error::invalid_param(
                "The algorithm does not match the backup's algorithm",
            ));
        }
        info.algorithm = new;
        let mut batch = self.inner.storage.batch();
        batch.put(&self.inner.backups, &(user, number), &info)?;
        self.inner.storage.commit(batch).await?;
        Ok(())
    }

    /// `DELETE /room_keys/version/{version}`: the version and its keys; a
    /// version deleted before is fine, one that never existed is 404.
    pub async fn delete_backup(&self, user: &UserId, version: &str) -> Result<()> {
        let user = user.to_owned();
        let number = parse_version(version).ok_or_else(unknown_version)?;
        let _lock = self.lock_user(&user).await;
        let key = (user.clone(), number);
        let Some(mut info) = self.inner.backups.get(&key)? else {
            return Err(unknown_version());
        };
        if info.deleted {
            return Ok(());
        }
        let mut batch = self.inner.storage.batch();
        for row in self.inner.backup_keys.iter_prefix(&key) {
            batch.delete(&self.inner.backup_keys, &row?.0);
        }
        info.deleted = true;
        info.count = 0;
        batch.put(&self.inner.backups, &key, &info)?;
        self.inner.storage.commit(batch).await?;
        Ok(())
    }

    /// `PUT /room_keys/keys[/{roomId}[/{sessionId}]]`: stores each key
    /// unless the stored one is better; only into the current version.
    pub async fn put_backup_keys(
        &self,
        user: &UserId,
        version: &str,
        keys: BTreeMap<OwnedRoomId, BTreeMap<String, Raw<KeyBackupData>>>,
    ) -> Result<KeysUpdated> {
        let user = user.to_owned();
        let mut checked = Vec::new();
        for (room, sessions) in keys {
            for (session, raw) in sessions {
                let value: Value = serde_json::from_str(raw.json().get())
                    .map_err(|e| Error::bad_json(format!("Invalid key data: {e}")))?;
                let quality: Quality = serde_json::from_value(value.clone()).map_err(|e| {
                    Error::bad_json(format!("Invalid key data for {room} {session}: {e}"))
                })?;
                checked.push((room.clone(), session, value, quality));
            }
        }
        let _lock = self.lock_user(&user).await;
        let Some((current, mut info)) = self.current_backup(&user)? else {
            return Err(unknown_version());
        };
        if parse_version(version) != Some(current) {
            return Err(Error::new(
                StatusCode::FORBIDDEN,
                ErrorKind::WrongRoomKeysVersion(WrongRoomKeysVersionErrorData::new(
                    current.to_string(),
                )),
                "Wrong backup version: keys go into the current backup",
            ));
        }
        let mut batch = self.inner.storage.batch();
        let mut changed = false;
        let mut written = BTreeMap::new();
        for (room, session, value, quality) in checked {
            let key = (user.clone(), current, room, session);
            let stored = match written.get(&key) {
                Some(value) => Some(Value::clone(value)),
                None => self.inner.backup_keys.get(&key)?,
            };
            match stored {
                None => info.count += 1,
                // A stored key that cannot be read is replaced.
                Some(stored) => {
                    if let Ok(old) = serde_json::from_value::<Quality>(stored) {
                        if !quality.beats(&old) {
                            continue;
                        }
                    }
                }
            }
            batch.put(&self.inner.backup_keys, &key, &value)?;
            written.insert(key, value);
            changed = true;
        }
        if changed {
            info.etag += 1;
            batch.put(&self.inner.backups, &(user, current), &info)?;
            self.inner.storage.commit(batch).await?;
        }
        Ok(KeysUpdated {
            etag: info.etag.to_string(),
            count: count(info.count),
        })
    }

    /// `GET /room_keys/keys[/{roomId}]`: the keys of a version, of all
    /// rooms or one.
    pub fn backup_keys(
        &self,
        user: &UserId,
        version: &str,
        room: Option<&OwnedRoomId>,
    ) -> Result<BTreeMap<OwnedRoomId, RoomKeyBackup>> {
        let user = user.to_owned();
        let (number, _) = self.live_backup(&user, version)?;
        let mut rooms: BTreeMap<OwnedRoomId, BTreeMap<String, Raw<KeyBackupData>>> =
            BTreeMap::new();
        let rows: Vec<_> = match room {
            Some(room) => self
                .inner
                .backup_keys
                .iter_prefix(&(user.clone(), number, room.clone()))
                .collect(),
            None => self
                .inner
                .backup_keys
                .iter_prefix(&(user.clone(), number))
                .collect(),
        };
        for row in rows {
            let ((_, _, room, session), value) = row?;
            rooms
                .entry(room)
                .or_default()
                .insert(session, to_raw(&value)?);
        }
        Ok(rooms
            .into_iter()
            .map(|(room, sessions)| (room, RoomKeyBackup::new(sessions)))
            .collect())
    }

    /// `GET /room_keys/keys/{roomId}/{sessionId}`.
    pub fn backup_key(
        &self,
        user: &UserId,
        version: &str,
        room: &OwnedRoomId,
        session: &str,
    ) -> Result<Raw<KeyBackupData>> {
        let user = user.to_owned();
        let (number, _) = self.live_backup(&user, version)?;
        let key = (user, number, room.clone(), session.to_owned());
        match self.inner.backup_keys.get(&key)? {
            Some(value) => to_raw(&value),
            None => Err(Error::not_found("No such key in the backup")),
        }
    }

    /// `DELETE /room_keys/keys[/{roomId}[/{sessionId}]]`.
    pub async fn delete_backup_keys(
        &self,
        user: &UserId,
        version: &str,
        room: Option<&OwnedRoomId>,
        session: Option<&str>,
    ) -> Result<KeysUpdated> {
        let user = user.to_owned();
        let _lock = self.lock_user(&user).await;
        let (number, mut info) = self.live_backup(&user, version)?;
        let inner = &self.inner;
        let doomed: Vec<_> = match (room, session) {
            (Some(room), Some(session)) => {
                let key = (user.clone(), number, room.clone(), session.to_owned());
                match inner.backup_keys.contains(&key)? {
                    true => vec![key],
                    false => Vec::new(),
                }
            }
            (Some(room), None) => inner
                .backup_keys
                .iter_prefix(&(user.clone(), number, room.clone()))
                .map(|row| row.map(|(key, _)| key))
                .collect::<std::result::Result<_, _>>()?,
            (None, _) => inner
                .backup_keys
                .iter_prefix(&(user.clone(), number))
                .map(|row| row.map(|(key, _)| key))
                .collect::<std::result::Result<_, _>>()?,
        };
        if !doomed.is_empty() {
            let mut batch = inner.storage.batch();
            for key in &doomed {
                batch.delete(&inner.backup_keys, key);
            }
            info.count = info.count.saturating_sub(doomed.len() as u64);
            info.etag += 1;
            batch.put(&inner.backups, &(user, number), &info)?;
            inner.storage.commit(batch).await?;
        }
        Ok(KeysUpdated {
            etag: info.etag.to_string(),
            count: count(info.count),
        })
    }
}
