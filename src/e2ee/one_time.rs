//! One-time and fallback keys (Client-Server API "End-to-End Encryption":
//! "One-time and fallback keys", `POST /keys/upload`, `POST /keys/claim`,
//! and `/sync`'s `device_one_time_keys_count` and
//! `device_unused_fallback_key_types`).
//!
//! One-time keys are kept per algorithm in upload order ("One-time keys are
//! given out in the order that they were uploaded") and each is handed out
//! exactly once: a claim takes the first key and deletes it inside one batch
//! while holding the owner's lock, so concurrent claims never see the same
//! key. A key id uploaded again with the same content is a retried upload
//! and ignored; with other content it is refused (400 `M_INVALID_PARAM`).
//!
//! A fallback key ("The fallback key is not deleted once used, but should
//! be replaced when additional one-time keys are being uploaded") is kept
//! per algorithm; a new one replaces the old. A claim that finds no one-time
//! key hands out the fallback key and marks it used, which `/sync` reports
//! by leaving its algorithm out of `device_unused_fallback_key_types`.

use std::collections::{BTreeMap, BTreeSet};

use ruma::{
    api::client::keys::claim_keys, encryption::OneTimeKey, serde::Raw, OneTimeKeyAlgorithm,
    OwnedDeviceId, OwnedOneTimeKeyId, OwnedUserId, UInt, UserId,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{device_keys::to_raw, federation_failure, signing, E2ee};
use crate::{
    error::{Error, Result},
    storage::Batch,
};

/// An unclaimed one-time key: its full id (`<algorithm>:<key id>`) and the
/// key object (or string) as uploaded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredKey {
    pub id: String,
    pub key: Value,
}

/// A device's fallback key for one algorithm.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FallbackKey {
    pub id: String,
    pub key: Value,
    /// Handed out by a claim since it was uploaded.
    pub used: bool,
}

/// Checks an uploaded one-time or fallback key's shape; its stored form.
fn checked_key(id: &OwnedOneTimeKeyId, raw: &Raw<OneTimeKey>) -> Result<Value> {
    raw.deserialize()
        .map_err(|e| Error::bad_json(format!("Invalid key {id}: {e}")))?;
    signing::stored_form(raw.json().get())
}

fn api_counts(counts: &BTreeMap<String, u64>) -> BTreeMap<OneTimeKeyAlgorithm, UInt> {
    // Always name signed_curve25519: clients read a missing count as "unknown"
    // rather than "none left", and would not replenish.
    let mut out = BTreeMap::from([(OneTimeKeyAlgorithm::SignedCurve25519, UInt::MIN)]);
    for (algorithm, count) in counts {
        let count = UInt::new(*count).unwrap_or(UInt::MAX);
        out.insert(OneTimeKeyAlgorithm::from(algorithm.as_str()), count);
    }
    out
}

impl E2ee {
    /// Checks the uploaded one-time keys and adds the new ones to `batch`;
    /// returns the counts the device will have.
    pub(super) fn stage_one_time_keys(
        &self,
        batch: &mut Batch,
        user: &OwnedUserId,
        device: &OwnedDeviceId,
        keys: &BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>,
    ) -> Result<BTreeMap<OneTimeKeyAlgorithm, UInt>> {
        let inner = &self.inner;
        let mut by_algorithm: BTreeMap<String, Vec<(String, Value)>> = BTreeMap::new();
        for (id, raw) in keys {
            let value = checked_key(id, raw)?;
            by_algorithm
                .entry(id.algorithm().to_string())
                .or_default()
                .push((id.to_string(), value));
        }
        let mut counts = self.counts(user, device)?;
        for (algorithm, new_keys) in by_algorithm {
            let prefix = (user.clone(), device.clone(), algorithm.clone());
            let mut existing = BTreeMap::new();
            let mut next = 0;
            for row in inner.one_time.iter_prefix(&prefix) {
                let ((_, _, _, sequence), stored) = row?;
                next = sequence + 1;
                existing.insert(stored.id, stored.key);
            }
            let count = counts.entry(algorithm.clone()).or_default();
            for (id, key) in new_keys {
                match existing.get(&id) {
                    Some(old) if *old == key => continue,
                    Some(_) => {
                        return Err(Error::invalid_param(format!(
                            "One-time key {id} was already uploaded with different content"
                        )))
                    }
                    None => {}
                }
                let row = (user.clone(), device.clone(), algorithm.clone(), next);
                batch.put(&inner.one_time, &row, &StoredKey { id, key })?;
                next += 1;
                *count += 1;
            }
            batch.put(&inner.one_time_counts, &prefix, count)?;
        }
        Ok(api_counts(&counts))
    }

    /// Checks the uploaded fallback keys (at most one per algorithm) and
    /// adds them to `batch`, replacing the device's previous ones. The same
    /// key uploaded again keeps its `used` mark.
    pub(super) fn stage_fallback_keys(
        &self,
        batch: &mut Batch,
        user: &OwnedUserId,
        device: &OwnedDeviceId,
        keys: &BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>,
    ) -> Result<()> {
        let mut seen = BTreeSet::new();
        for (id, raw) in keys {
            let algorithm = id.algorithm().to_string();
            if !seen.insert(algorithm.clone()) {
                return Err(Error::invalid_param(format!(
                    "At most one fallback key per algorithm; got several for {algorithm}"
                )));
            }
            let key = checked_key(id, raw)?;
            let row = (user.clone(), device.clone(), algorithm);
            let used = match self.inner.fallback.get(&row)? {
                Some(old) if old.id == id.as_str() && old.key == key => old.used,
                _ => false,
            };
            let fallback = FallbackKey {
                id: id.to_string(),
                key,
                used,
            };
            batch.put(&self.inner.fallback, &row, &fallback)?;
        }
        Ok(())
    }

    /// Unclaimed one-time keys per algorithm.
    fn counts(&self, user: &OwnedUserId, device: &OwnedDeviceId) -> Result<BTreeMap<String, u64>> {
        let mut counts = BTreeMap::new();
        for row in self
            .inner
            .one_time_counts
            .iter_prefix(&(user.clone(), device.clone()))
        {
            let ((_, _, algorithm), count) = row?;
            counts.insert(algorithm, count);
        }
        Ok(counts)
    }

    /// `device_one_time_keys_count` of `/sync` (and of `/keys/upload`).
    pub fn one_time_key_counts(
        &self,
        user: &UserId,
        device: &OwnedDeviceId,
    ) -> Result<BTreeMap<OneTimeKeyAlgorithm, UInt>> {
        Ok(api_counts(&self.counts(&user.to_owned(), device)?))
    }

    /// `device_unused_fallback_key_types` of `/sync`.
    pub fn unused_fallback_key_types(
        &self,
        user: &UserId,
        device: &OwnedDeviceId,
    ) -> Result<Vec<OneTimeKeyAlgorithm>> {
        let mut types = Vec::new();
        for row in self
            .inner
            .fallback
            .iter_prefix(&(user.to_owned(), device.clone()))
        {
            let ((_, _, algorithm), fallback) = row?;
            if !fallback.used {
                types.push(OneTimeKeyAlgorithm::from(algorithm.as_str()));
            }
        }
        Ok(types)
    }

    /// `POST /keys/claim`: one key per requested (user, device, algorithm),
    /// a one-time key while any is left, else the fallback key. Unknown
    /// users and devices are left out; remote users' servers are listed in
    /// `failures` (no federation yet).
    pub async fn claim(
        &self,
        wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, OneTimeKeyAlgorithm>>,
    ) -> Result<claim_keys::v3::Response> {
        let mut failures = BTreeMap::new();
        let mut local = Vec::new();
        for user in wanted.keys() {
            if self.is_local(user) {
                local.push(user);
            } else {
                failures.insert(user.server_name().to_string(), federation_failure());
            }
        }
        // All owners locked, all takes in one batch, committed before any
        // lock is released: a key is never handed out twice.
        let guards = self.lock_users(local.iter().copied()).await;
        let mut batch = self.inner.storage.batch();
        let mut claimed: BTreeMap<OwnedUserId, claim_keys::v3::OneTimeKeys> = BTreeMap::new();
        for user in local {
            for (device, algorithm) in &wanted[user] {
                if let Some((id, key)) = self.take_key(&mut batch, user, device, algorithm)? {
                    claimed
                        .entry(user.clone())
                        .or_default()
                        .entry(device.clone())
                        .or_default()
                        .insert(id, key);
                }
            }
        }
        self.inner.storage.commit(batch).await?;
        drop(guards);
        let mut response = claim_keys::v3::Response::new(claimed);
        response.failures = failures;
        Ok(response)
    }

    /// Takes the device's oldest one-time key of `algorithm` (or its
    /// fallback key) into `batch`. Call with the owner's lock held.
    fn take_key(
        &self,
        batch: &mut Batch,
        user: &OwnedUserId,
        device: &OwnedDeviceId,
        algorithm: &OneTimeKeyAlgorithm,
    ) -> Result<Option<(OwnedOneTimeKeyId, Raw<OneTimeKey>)>> {
        let inner = &self.inner;
        let prefix = (user.clone(), device.clone(), algorithm.to_string());
        if let Some(row) = inner.one_time.iter_prefix(&prefix).next() {
            let (row_key, stored) = row?;
            batch.delete(&inner.one_time, &row_key);
            let count = inner.one_time_counts.get(&prefix)?.unwrap_or(1);
            batch.put(&inner.one_time_counts, &prefix, &count.saturating_sub(1))?;
            return Ok(Some((key_id(&stored.id)?, to_raw(&stored.key)?)));
        }
        let Some(mut fallback) = inner.fallback.get(&prefix)? else {
            return Ok(None);
        };
        if !fallback.used {
            fallback.used = true;
            batch.put(&inner.fallback, &prefix, &fallback)?;
        }
        Ok(Some((key_id(&fallback.id)?, to_raw(&fallback.key)?)))
    }
}

fn key_id(id: &str) -> Result<OwnedOneTimeKeyId> {
    OwnedOneTimeKeyId::try_from(id).map_err(|e| Error::internal(format!("stored key id {id}: {e}")))
}
