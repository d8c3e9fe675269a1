//! Device identity keys (Client-Server API "End-to-End Encryption":
//! `POST /keys/upload`, `POST /keys/query`).
//!
//! An upload's `device_keys` must be for the caller's own user and device
//! and carry the device's self-signature (`signatures[user]["ed25519:<device>"]`
//! by the `ed25519:<device>` key it publishes). A device's identity keys are
//! fixed once published: an upload with different keys is refused (400
//! `M_INVALID_PARAM`) rather than silently swapping the identity other users
//! have verified; a client that lost its keys logs in as a new device. The
//! same keys re-uploaded (e.g. with more signatures) replace the stored
//! object and count as a device-list change; an identical upload changes
//! nothing. The whole upload (identity, one-time and fallback keys) is
//! validated before anything is written, and written in one batch.

use std::collections::BTreeMap;

use ruma::{
    api::client::keys::get_keys,
    encryption::{DeviceKeys, OneTimeKey},
    serde::Raw,
    DeviceId, OneTimeKeyAlgorithm, OwnedDeviceId, OwnedOneTimeKeyId, OwnedUserId, UInt, UserId,
};
use serde_json::Value;

use super::{federation_failure, invalid_signature, signing, E2ee};
use crate::{
    accounts::Accounts,
    error::{Error, Result},
    storage::Batch,
};

/// One `POST /keys/upload` request, as the handler received it.
pub struct Upload<'a> {
    pub user: &'a UserId,
    pub device: &'a DeviceId,
    pub device_keys: Option<&'a Raw<DeviceKeys>>,
    pub one_time_keys: &'a BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>,
    pub fallback_keys: &'a BTreeMap<OwnedOneTimeKeyId, Raw<OneTimeKey>>,
}

/// The name a device's keys carry in the signatures table.
pub(super) fn device_target(device: &DeviceId) -> String {
    format!("device:{device}")
}

pub(super) fn to_raw<T>(value: &Value) -> Result<Raw<T>> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|e| Error::internal(format!("key not serialisable: {e}")))
}

impl E2ee {
    /// `POST /keys/upload`: returns the device's one-time key counts.
    pub async fn upload(&self, upload: Upload<'_>) -> Result<BTreeMap<OneTimeKeyAlgorithm, UInt>> {
        let user = upload.user.to_owned();
        let device = upload.device.to_owned();
        let _lock = self.lock_user(&user).await;
        let mut batch = self.inner.storage.batch();
        let identity_changed = match upload.device_keys {
            Some(raw) => self.stage_device_keys(&mut batch, &user, &device, raw)?,
            None => false,
        };
        let counts = self.stage_one_time_keys(&mut batch, &user, &device, upload.one_time_keys)?;
        self.stage_fallback_keys(&mut batch, &user, &device, upload.fallback_keys)?;
        let change = match identity_changed {
            true => Some(self.begin_change(&mut batch, &user)?),
            false => None,
        };
        self.inner.storage.commit(batch).await?;
        if let Some(change) = change {
            change.committed();
        }
        Ok(counts)
    }

    /// Checks `device_keys` and adds them to `batch`; whether they changed.
    fn stage_device_keys(
        &self,
        batch: &mut Batch,
        user: &OwnedUserId,
        device: &OwnedDeviceId,
        raw: &Raw<DeviceKeys>,
    ) -> Result<bool> {
        let keys: DeviceKeys = raw
            .deserialize()
            .map_err(|e| Error::bad_json(format!("Invalid device_keys: {e}")))?;
        if &keys.user_id != user || &keys.device_id != device {
            return Err(Error::invalid_param(
                "device_keys must name the user and device of the access token",
            ));
        }
        let ed25519_id = format!("ed25519:{device}");
        let Some(ed25519) = keys
            .keys
            .iter()
            .find(|(id, _)| id.as_str() == ed25519_id)
            .map(|(_, key)| key.clone())
        else {
            return Err(Error::invalid_param(format!(
                "device_keys.keys lacks the device's {ed25519_id} key"
            )));
        };
        let value = signing::stored_form(raw.json().get())?;
        let object = signing::canonical(&value)
            .map_err(|e| Error::bad_json(format!("Invalid device_keys: {e}")))?;
        signing::verify(&object, user, &ed25519_id, &ed25519)
            .map_err(|e| invalid_signature(format!("device_keys: {e}")))?;

        let key = (user.clone(), device.clone());
        if let Some(existing) = self.inner.device_keys.get(&key)? {
            if existing == value {
                return Ok(false);
            }
            let same_identity = serde_json::from_value::<DeviceKeys>(existing)
                .is_ok_and(|old| old.keys == keys.keys);
            if !same_identity {
                return Err(Error::invalid_param(
                    "This device already published different identity keys; they cannot be \
                     replaced (log in as a new device instead)",
                ));
            }
        }
        batch.put(&self.inner.device_keys, &key, &value)?;
        Ok(true)
    }

    /// Adds the removal of every key of `device` to `batch`; whether the
    /// device had published identity keys.
    pub(super) fn remove_device_keys_into(
        &self,
        batch: &mut Batch,
        user: &UserId,
        device: &OwnedDeviceId,
    ) -> Result<bool> {
        let inner = &self.inner;
        let key = (user.to_owned(), device.clone());
        let had_keys = inner.device_keys.contains(&key)?;
        batch.delete(&inner.device_keys, &key);
        for row in inner.one_time.iter_prefix(&key) {
            batch.delete(&inner.one_time, &row?.0);
        }
        for row in inner.one_time_counts.iter_prefix(&key) {
            batch.delete(&inner.one_time_counts, &row?.0);
        }
        for row in inner.fallback.iter_prefix(&key) {
            batch.delete(&inner.fallback, &row?.0);
        }
        let target = (user.to_owned(), device_target(device));
        for row in inner.signatures.iter_prefix(&target) {
            batch.delete(&inner.signatures, &row?.0);
        }
        Ok(had_keys)
    }

    /// `POST /keys/query` for `requester`: device keys of local users (all
    /// their devices, or the listed ones), with the signatures `requester`
    /// may see, and their cross-signing keys. Remote users are asked of
    /// their servers by the API layer (`federation::keys`); any that reach
    /// this function are listed in `failures`.
    pub fn query(
        &self,
        accounts: &Accounts,
        requester: &UserId,
        wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> Result<get_keys::v3::Response> {
        let mut response = get_keys::v3::Response::new();
        for (user, devices) in wanted {
            if !self.is_local(user) {
                response
                    .failures
                    .insert(user.server_name().to_string(), federation_failure());
                continue;
            }
            // Only devices that still exist: keys never outlive their device.
            let listed = accounts.list_devices(user)?;
            if listed.is_empty() && !accounts.exists(user)? {
                continue;
            }
            let mut found = BTreeMap::new();
            for (device_id, device) in listed {
                if !devices.is_empty() && !devices.contains(&device_id) {
                    continue;
                }
                let key = (user.clone(), device_id.clone());
                let Some(mut value) = self.inner.device_keys.get(&key)? else {
                    continue;
                };
                self.merge_signatures(&mut value, user, &device_target(&device_id), requester)?;
                if let (Some(name), Some(object)) = (device.display_name, value.as_object_mut()) {
                    object.insert(
                        "unsigned".to_owned(),
                        serde_json::json!({ "device_display_name": name }),
                    );
                }
                found.insert(device_id, to_raw(&value)?);
            }
            response.device_keys.insert(user.clone(), found);
            let cross = self.cross_signing_for(user, requester)?;
            if let Some(master) = cross.master {
                response.master_keys.insert(user.clone(), master);
            }
            if let Some(self_signing) = cross.self_signing {
                response
                    .self_signing_keys
                    .insert(user.clone(), self_signing);
            }
            if let Some(user_signing) = cross.user_signing {
                response
                    .user_signing_keys
                    .insert(user.clone(), user_signing);
            }
        }
        Ok(response)
    }

    /// Adds to `value` the signatures stored for `(user, target)` that
    /// `requester` may see: the key owner's own, and the requester's.
    pub(super) fn merge_signatures(
        &self,
        value: &mut Value,
        user: &OwnedUserId,
        target: &str,
        requester: &UserId,
    ) -> Result<()> {
        let prefix = (user.clone(), target.to_owned());
        for row in self.inner.signatures.iter_prefix(&prefix) {
            let ((_, _, signer), signatures) = row?;
            if signer == *user || signer.as_str() == requester.as_str() {
                signing::merge_signatures(value, &signer, &signatures);
            }
        }
        Ok(())
    }
}
