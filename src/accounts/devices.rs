//! Devices and their access tokens (Client-Server API: "Device management",
//! "Login", "Logout"). A device has at most one live access token.

use ruma::{OwnedDeviceId, OwnedUserId};

use super::{
    now_ms,
    tokens::{new_access_token, new_device_id, TokenHash},
    Accounts, Device, Session,
};
use crate::{error::Result, storage::Batch};

/// What a client gets after login or registration.
pub struct LoggedIn {
    pub access_token: String,
    pub device_id: OwnedDeviceId,
}

impl Accounts {
    /// Starts a session on `device_id` (or a new device): an existing device of
    /// the user keeps its display name and gets a fresh token, its old one revoked.
    pub fn login_into(
        &self,
        batch: &mut Batch,
        user_id: &OwnedUserId,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        ip: Option<String>,
    ) -> Result<LoggedIn> {
        let device_id = device_id.unwrap_or_else(|| new_device_id().into());
        let key = (user_id.clone(), device_id.clone());
        let now = now_ms();
        let device = match self.devices.get(&key)? {
            Some(mut existing) => {
                if let Some(old) = self.device_tokens.get(&key)? {
                    batch.delete(&self.sessions, &old.0);
                }
                if display_name.is_some() {
                    existing.display_name = display_name;
                }
                existing.last_seen_ts = Some(now);
                existing.last_seen_ip = ip.or(existing.last_seen_ip);
                existing
            }
            None => Device {
                display_name,
                created_ts: now,
                last_seen_ts: Some(now),
                last_seen_ip: ip,
            },
        };
        let access_token = new_access_token();
        let hash = TokenHash::of(&access_token);
        batch.put(&self.devices, &key, &device)?;
        batch.put(&self.device_tokens, &key, &hash)?;
        let session = Session {
            user_id: user_id.clone(),
            device_id: device_id.clone(),
        };
        batch.put(&self.sessions, &hash.0, &session)?;
        Ok(LoggedIn {
            access_token,
            device_id,
        })
    }

    pub async fn login(
        &self,
        user_id: &OwnedUserId,
        device_id: Option<OwnedDeviceId>,
        display_name: Option<String>,
        ip: Option<String>,
    ) -> Result<LoggedIn> {
        let mut batch = self.storage.batch();
        let logged_in = self.login_into(&mut batch, user_id, device_id, display_name, ip)?;
        self.storage.commit(batch).await?;
        Ok(logged_in)
    }

    pub fn list_devices(&self, user_id: &OwnedUserId) -> Result<Vec<(OwnedDeviceId, Device)>> {
        self.devices
            .iter_prefix(user_id)
            .map(|row| {
                row.map(|((_, device_id), device)| (device_id, device))
                    .map_err(Into::into)
            })
            .collect()
    }

    pub fn device(
        &self,
        user_id: &OwnedUserId,
        device_id: &OwnedDeviceId,
    ) -> Result<Option<Device>> {
        Ok(self.devices.get(&(user_id.clone(), device_id.clone()))?)
    }

    /// Renames a device; `false` if the user has no such device.
    pub async fn rename_device(
        &self,
        user_id: &OwnedUserId,
        device_id: &OwnedDeviceId,
        display_name: Option<String>,
    ) -> Result<bool> {
        let key = (user_id.clone(), device_id.clone());
        let Some(mut device) = self.devices.get(&key)? else {
            return Ok(false);
        };
        device.display_name = display_name;
        let mut batch = self.storage.batch();
        batch.put(&self.devices, &key, &device)?;
        self.storage.commit(batch).await?;
        Ok(true)
    }

    /// Removes devices and revokes their tokens; unknown ids are ignored, as the
    /// spec asks of `/delete_devices`.
    pub async fn remove_devices(
        &self,
        user_id: &OwnedUserId,
        devices: &[OwnedDeviceId],
    ) -> Result<()> {
        let mut batch = self.storage.batch();
        for device_id in devices {
            self.remove_device_into(&mut batch, user_id, device_id)?;
        }
        // Their keys and to-device inboxes go in the same batch (`e2ee`).
        let hook = self.devices_removing(&mut batch, user_id, devices)?;
        if !batch.is_empty() {
            self.storage.commit(batch).await?;
        }
        if let Some(hook) = hook {
            hook.committed();
        }
        Ok(())
    }

    /// Logs out every device of the user (`/logout/all`).
    pub async fn remove_all_devices(&self, user_id: &OwnedUserId) -> Result<()> {
        let ids: Vec<_> = self
            .list_devices(user_id)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        self.remove_devices(user_id, &ids).await
    }

    pub(super) fn remove_device_into(
        &self,
        batch: &mut Batch,
        user_id: &OwnedUserId,
        device_id: &OwnedDeviceId,
    ) -> Result<()> {
        let key = (user_id.clone(), device_id.clone());
        if let Some(hash) = self.device_tokens.get(&key)? {
            batch.delete(&self.sessions, &hash.0);
        }
        batch.delete(&self.device_tokens, &key);
        batch.delete(&self.devices, &key);
        Ok(())
    }
}
